"""The simulator on the `tiny` preset: contract, invariants, realism, determinism, files."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from core.schemas import EPISODE_SCHEMA, LABELED_SCHEMA, SCENARIOS, validate_table
from darkpool.market.config import PRESETS, SimConfig
from darkpool.market.invariants import check_all
from darkpool.market.simulate import FILES, REGIME_SCHEMA, simulate, write

TINY = PRESETS["tiny"]


@pytest.fixture(scope="module")
def tiny():
    return simulate(TINY)


def _col(table, name):
    return table.column(name).to_numpy(zero_copy_only=False)


def test_contract_and_invariants(tiny) -> None:
    assert tiny.events.schema.equals(LABELED_SCHEMA)
    assert tiny.episodes.schema.equals(EPISODE_SCHEMA)
    assert tiny.regimes.schema.equals(REGIME_SCHEMA)
    validate_table(tiny.events)
    assert check_all(tiny) == []


def test_every_scenario_and_the_anomaly_rate(tiny) -> None:
    scen = set(_col(tiny.episodes, "scenario"))
    assert scen == set(SCENARIOS[1:])
    rate = _col(tiny.events, "label").mean()
    assert abs(rate - TINY.anomaly_rate) < 0.01
    intensity = _col(tiny.episodes, "intensity")
    assert intensity.min() < 0.4 and intensity.max() > 0.7  # blatant and subtle


def test_no_single_column_gives_the_game_away(tiny) -> None:
    ev = tiny.events
    normal = _col(ev, "label") == 0
    kind, qty, part, contra = (_col(ev, c) for c in ("event", "qty", "participant", "contra"))
    fill = normal & (kind == "fill")
    firm = np.array([p.split(".")[0] for p in part])
    contra_firm = np.array([c.split(".")[0] if c else "" for c in contra])
    assert (firm[fill] == contra_firm[fill]).mean() > 0.01  # benign same-firm crosses
    assert (kind[normal] == "cancel").mean() > 0.2  # cancelling is normal
    assert (qty[normal] >= 10_000).sum() > 10  # so are large blocks
    assert 0.2 < _col(ev, "hidden")[normal].mean() < 0.8
    # manipulators are ordinary participants: most of them also trade normally
    manip = set(pc.list_flatten(tiny.episodes.column("participants")).to_pylist())
    assert len(manip & set(part[normal])) >= 0.5 * len(manip)


def test_off_market_prints_range_from_one_tick_to_blatant() -> None:
    r = simulate(PRESETS["default"].replace(n_events=100_000, anomaly_rate=0.1, n_instruments=8))
    ev = r.events
    kind, scen, price, bid, ask = (_col(ev, c) for c in ("event", "scenario", "price", "bid", "ask"))
    omp = (kind == "fill") & (scen == "off_market_print")
    out_ticks = np.maximum(bid[omp] - price[omp], price[omp] - ask[omp]) / r.config.tick
    assert (out_ticks >= 1 - 1e-6).all()
    assert out_ticks.min() < 2.5 and out_ticks.max() > 20


def test_scenario_signatures(tiny) -> None:
    ev = tiny.events
    for e in tiny.episodes.to_pylist():
        rows = ev.filter(
            (pc.field("label") == 1) & (pc.field("instrument") == e["instrument"])
            & (pc.field("scenario") == e["scenario"]) & pc.field("participant").isin(e["participants"])
            & (pc.field("ts") >= e["start_ts"]) & (pc.field("ts") <= e["end_ts"])
        )
        assert rows.num_rows == e["n_events"]
        kinds = _col(rows, "event")
        if e["scenario"] == "quote_stuffing":
            assert (kinds == "new").sum() == (kinds == "cancel").sum() > 0
        elif e["scenario"] == "wash_trade":
            fills = rows.filter(pc.equal(rows.column("event"), "fill"))
            assert set(_col(fills, "contra")) <= set(e["participants"])
        elif e["scenario"] == "marking_the_close":
            assert e["end_ts"] < TINY.close_ns and e["start_ts"] > TINY.close_ns - 15 * 60 * 10**9
        elif e["scenario"] == "spoofing_layering":
            assert (kinds == "cancel").sum() >= 2 and (kinds == "fill").sum() >= 1


def test_deterministic_by_seed(tiny) -> None:
    again = simulate(TINY)
    assert again.events.equals(tiny.events) and again.episodes.equals(tiny.episodes)
    other = simulate(TINY.replace(seed=TINY.seed + 1))
    assert not other.events.equals(tiny.events)


def test_exact_size_and_options() -> None:
    cfg = SimConfig(n_instruments=3, n_events=3_333, duration_s=900, anomaly_rate=0.0, seed=3)
    r = simulate(cfg)
    assert r.events.num_rows == 3_333 and r.episodes.num_rows == 0
    assert check_all(r) == []
    assert len(set(_col(r.events, "instrument"))) == 3


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"n_instruments": 0}, "n_instruments"), ({"anomaly_rate": 0.7}, "anomaly_rate"),
     ({"duration_s": 30}, "duration_s"), ({"n_events": 5}, "n_events")],
)
def test_bad_config_names_the_field(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TINY.replace(**changes)


def test_write_files(tiny, tmp_path) -> None:
    paths = write(tiny, tmp_path)
    assert {p.name for p in paths.values()} == set(FILES.values())
    assert pq.read_table(paths["events"]).equals(tiny.events)
    assert pq.read_table(paths["episodes"]).equals(tiny.episodes)
    assert pq.read_table(paths["regimes"]).equals(tiny.regimes)


def _auc(y: np.ndarray, x: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties at their average rank."""
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    rank = (np.cumsum(counts) - (counts - 1) / 2)[inv]
    n1 = int(y.sum())
    return float((rank[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * (len(y) - n1)))


def test_no_single_column_separates_the_labels() -> None:
    """A detector must not win on one column: every contract column (and the obvious
    derived cues) alone ranks anomalous rows only weakly (ROC AUC < 0.75 either way)."""
    ev = simulate(PRESETS["default"].replace(n_events=60_000, n_instruments=12)).events
    y = _col(ev, "label")
    c = {n: _col(ev, n) for n in ("qty", "bid", "ask", "price", "ts", "hidden", "event", "side", "venue")}
    spread = c["ask"] - c["bid"]
    firm = pc.utf8_slice_codeunits(ev.column("participant"), 0, 4)  # "F123.A1" -> "F123"
    contra_firm = pc.utf8_slice_codeunits(pc.fill_null(ev.column("contra"), ""), 0, 4)
    cues = {
        "qty": c["qty"], "odd_lot": c["qty"] % 100 != 0, "hidden": c["hidden"], "spread": spread,
        "price_vs_mid": (c["price"] - (c["ask"] + c["bid"]) / 2) / spread, "price": c["price"],
        "same_firm": pc.equal(firm, contra_firm).to_numpy(zero_copy_only=False), "time_of_day": c["ts"],
        **{f"event={k}": c["event"] == k for k in ("new", "cancel", "fill")},
        **{f"side={k}": c["side"] == k for k in ("B", "S")},
        **{f"venue={k}": c["venue"] == k for k in set(c["venue"])},
    }
    auc = {k: _auc(y, np.asarray(v, dtype=float)) for k, v in cues.items()}
    strong = {k: round(max(a, 1 - a), 3) for k, a in auc.items() if max(a, 1 - a) >= 0.75}
    assert not strong, f"single-column giveaways: {strong}"


def test_invariants_catch_broken_data(tiny) -> None:
    """The checks are not vacuous: each kind of corruption is reported."""
    import dataclasses

    import pyarrow as pa

    ev = tiny.events

    def with_col(name: str, values) -> object:
        i = ev.schema.get_field_index(name)
        return dataclasses.replace(tiny, coded=ev.set_column(i, ev.schema.field(i), pa.array(values, ev.schema.field(i).type)))

    kind, label, price = _col(ev, "event"), _col(ev, "label"), _col(ev, "price").copy()
    normal_fill = int(np.flatnonzero((kind == "fill") & (label == 0))[0])
    off = price.copy()
    off[normal_fill] = _col(ev, "ask")[normal_fill] + 0.05
    flipped = label.copy()
    flipped[int(np.flatnonzero(label == 0)[0])] = 1
    cancel = int(np.flatnonzero(kind == "cancel")[0])
    moved = price.copy()
    moved[cancel] += 0.01
    cases = {
        "not sorted": dataclasses.replace(tiny, coded=ev.take(pa.array(np.arange(ev.num_rows)[::-1]))),
        "outside the NBBO": with_col("price", off),
        "label and scenario disagree": with_col("label", flipped),
        "cancel's price": with_col("price", moved),
    }
    for needle, broken in cases.items():
        assert any(needle in p for p in check_all(broken)), needle


def test_zipf_activity_gives_a_few_hot_names_and_a_long_quiet_tail() -> None:
    """--activity zipf: the busiest of 500 names carries ~1/10 of the flow, the median name
    ~1/5 of the mean; tiers keeps every name within 3 : 1 : 0.3 of each other."""
    counts = {}
    for activity in ("tiers", "zipf"):
        r = simulate(PRESETS["default"].replace(n_instruments=500, n_events=200_000, duration_s=600,
                                                anomaly_rate=0.0, activity=activity))  # fmt: skip
        normal = r.events.filter(pc.equal(r.events["label"], 0))
        c = np.sort(pc.value_counts(normal["instrument"]).field("counts").to_numpy())[::-1]
        counts[activity] = c
    z, t = counts["zipf"], counts["tiers"]
    assert z[0] / z.sum() > 0.08 and np.median(z) < 0.3 * z.mean()
    assert t[0] / t.sum() < 0.01 and np.median(t) > 0.5 * t.mean()
