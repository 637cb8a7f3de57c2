"""`darkpool inject`: episodes injected into a history (a tiny simulated market with its
labels and manipulation rows dropped), written in the layout of `darkpool generate`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from core.schemas import EPISODE_SCHEMA, EVENT_SCHEMA, LABELED_SCHEMA
from darkpool.cli import cli
from darkpool.market.config import PRESETS
from darkpool.market.inject import InjectConfig, InjectError, _tick, inject, read_background
from darkpool.market.injectors import INJECTORS
from darkpool.market.invariants import check_all
from darkpool.market.simulate import FILES, simulate


@pytest.fixture(scope="module")
def background() -> pa.Table:
    market = simulate(PRESETS["tiny"].replace(n_events=8_000, seed=11)).events
    return market.filter(pc.equal(market.column("label"), 0)).select(EVENT_SCHEMA.names)


@pytest.fixture(scope="module")
def background_file(background: pa.Table, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bg") / "history.parquet"
    pq.write_table(background, path)
    return path


@pytest.fixture(scope="module")
def result(background: pa.Table):
    return inject(background, InjectConfig(rate=0.03, seed=5))


def _np(t: pa.Table, name: str) -> np.ndarray:
    return t.column(name).to_numpy(zero_copy_only=False)


def _injected(out: pa.Table, background: pa.Table) -> np.ndarray:
    """Rows of `out` that were not in the background: injected order ids continue its numbering."""
    bg_max = max(int(o[1:]) for o in _np(background, "order_id"))
    return np.array([int(o[1:]) > bg_max for o in _np(out, "order_id")])


def test_layout_invariants_and_rate(result, background: pa.Table) -> None:
    ev = result.events
    assert ev.schema.equals(LABELED_SCHEMA) and result.episodes.schema.equals(EPISODE_SCHEMA)
    assert check_all(result) == []  # sorted, NBBO, labels vs episodes, order lifecycles, regimes tile
    assert (np.diff(_np(ev, "ts")) >= 0).all()
    share = _np(ev, "label").mean()
    assert 0.02 < share < 0.045, share  # target 0.03, within an episode or two


def test_every_scenario_has_rows_and_an_episode(background: pa.Table) -> None:
    picked = ("wash_trade", "marking_the_close", "pinging")
    out = inject(background, InjectConfig(rate=0.01, scenarios=picked, seed=2))
    labeled = set(pc.unique(out.events.filter(pc.equal(out.events.column("label"), 1)).column("scenario")).to_pylist())
    assert labeled == set(picked) == set(out.episodes.column("scenario").to_pylist())
    full = inject(background, InjectConfig(rate=0.005, seed=2))  # tiny rate: still one of each
    assert set(full.episodes.column("scenario").to_pylist()) == set(INJECTORS)


def test_background_rows_are_unchanged(result, background: pa.Table) -> None:
    ev = result.events
    injected = _injected(ev, background)
    kept = ev.filter(pa.array(~injected))
    assert kept.select(EVENT_SCHEMA.names).equals(background)  # same rows, same order, same values
    assert set(_np(kept, "scenario")) == {"normal"} and not _np(kept, "label").any()
    assert _np(ev, "label")[injected].sum() == _np(ev, "label").sum()


def test_injected_prices_follow_the_background_nbbo(result, background: pa.Table) -> None:
    ev = result.events
    inj = ev.filter(pa.array(_injected(ev, background)))
    bg = background.to_pandas()
    for row in inj.to_pylist()[::7]:  # bid/ask = the background's as of the row (its instrument)
        same = bg[(bg.instrument == row["instrument"]) & (bg.ts <= row["ts"])]
        quote = same.iloc[-1] if len(same) else bg[bg.instrument == row["instrument"]].iloc[0]
        assert (row["bid"], row["ask"]) == (quote.bid, quote.ask)
    price, bid, ask = (_np(inj, c) for c in ("price", "bid", "ask"))
    fill, off = _np(inj, "event") == "fill", _np(inj, "scenario") == "off_market_print"
    inside = (price >= bid - 1e-9) & (price <= ask + 1e-9)
    assert inside[fill & ~off].all() and not inside[fill & off].any()
    limits = price[_np(inj, "event") != "fill"]
    assert np.allclose(limits * 100, np.rint(limits * 100))  # the background's 0.01 tick


def test_same_seed_same_files_other_seed_other_episodes(background_file: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    for name, seed in (("a", 4), ("b", 4), ("c", 5)):
        res = runner.invoke(cli, ["inject", "--background", str(background_file), "--out", str(tmp_path / name),
                                  "--seed", str(seed), "--rate", "0.02", "--check"])
        assert res.exit_code == 0, res.output
        assert "all invariants hold" in res.output
    for f in FILES.values():
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert (tmp_path / "a" / FILES["events"]).read_bytes() != (tmp_path / "c" / FILES["events"]).read_bytes()


def test_sizes_follow_the_background(background: pa.Table) -> None:
    """A background trading 10x larger orders gets ~10x larger injected orders."""
    big = background.set_column(background.schema.get_field_index("qty"), "qty",
                                pc.multiply(background.column("qty"), 10))
    med = []
    for bg in (background, big):
        ev = inject(bg, InjectConfig(rate=0.03, seed=1)).events
        new = ev.filter(pa.array(_injected(ev, bg) & (_np(ev, "event") == "new")))
        med.append(np.median(_np(new, "qty")))
    assert 5 < med[1] / med[0] < 20


def test_tick_inference() -> None:
    assert _tick(np.array([10.01, 10.02, 12.5])) == 0.01
    assert _tick(np.array([1.2345, 1.2346])) == 0.0001
    assert _tick(np.array([100.0, 100.5, 101.0])) == 0.5


def test_bad_inputs_give_one_line_errors(background_file: Path, background: pa.Table, tmp_path: Path) -> None:
    runner = CliRunner()
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    partial = tmp_path / "partial.parquet"
    pq.write_table(background.drop(["bid", "contra"]), partial)
    labeled = tmp_path / "labeled.parquet"
    pq.write_table(simulate(PRESETS["tiny"].replace(n_events=2_000)).events, labeled)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    good = str(background_file)
    cases = [
        (["--background", str(tmp_path / "nope.parquet")], "does not exist"),
        (["--background", str(junk)], "cannot read"),
        (["--background", str(partial)], "missing column(s) contra, bid"),
        (["--background", str(labeled)], "already has anomalous rows"),
        (["--background", good, "--scenarios", "wash_trade,spoofing"], "spoofing is not a pattern; choose among "
                                                                         "wash_trade, spoofing_layering"),
        (["--background", good, "--rate", "0.6"], "'--rate': must be > 0 and < 0.5"),
        (["--background", good, "--rate", "0"], "'--rate': must be > 0 and < 0.5"),
        (["--background", good, "--out", str(blocker / "sub")], "is not writable"),
    ]
    for args, words in cases:
        if "--out" not in args:
            args = [*args, "--out", str(tmp_path / "out")]
        res = runner.invoke(cli, ["inject", *args])
        # 1: a bad input file; 2: a bad option (click's usage lines above the error)
        last = res.output.strip().splitlines()[-1]
        assert res.exit_code in (1, 2) and last.startswith("Error: ") and words in last, (args, res.output)
        assert "Traceback" not in res.output
    with pytest.raises(InjectError, match="is not in the event contract: row 0: field 'side'"):
        bad = background.set_column(background.schema.get_field_index("side"), "side",
                                    pa.array(["X"] * background.num_rows))
        path = tmp_path / "bad.parquet"
        pq.write_table(bad, path)
        read_background(path)


def test_two_sessions_other_names_and_tick(background: pa.Table) -> None:
    """A history of two days, accounts named FIRM-desk, ids of another prefix, a $3 stock
    on a 0.0005 tick: sessions found, every session tiled by regimes, invariants hold."""
    day = 86_400 * 10**9
    ids = [int(o[1:]) for o in background.column("order_id").to_pylist()]
    days = []
    for d in range(2):
        t = background.set_column(0, "ts", pc.add(background.column("ts"), d * day))
        days.append(t.set_column(t.schema.get_field_index("order_id"), "order_id",
                                 pa.array([f"ORD-{i + d * 10**6}" for i in ids])).cast(EVENT_SCHEMA))
    both = pa.concat_tables(days)
    for name in ("participant", "contra"):
        renamed = pc.utf8_replace_slice(pc.replace_substring(both.column(name), ".A", "-desk"), 0, 1, "FIRM")
        both = both.set_column(both.schema.get_field_index(name), name, renamed)
    for name in ("price", "bid", "ask"):
        both = both.set_column(both.schema.get_field_index(name), name,
                               pc.round(pc.multiply(both.column(name), 0.05), 4))
    both = both.cast(EVENT_SCHEMA)
    out = inject(both, InjectConfig(rate=0.03, seed=3))
    assert len(out.config.session_bounds()) == 2 and check_all(out) == []
    eps = out.episodes.to_pandas()
    assert (eps["start_ts"] >= both.column("ts")[0].as_py() + day).any() and (eps["start_ts"] < eps["start_ts"].max() - day / 2).any()
    names = {p for ps in eps["participants"] for p in ps}
    assert names and all(n.startswith("FIRM") and "-desk" in n for n in names)
    inj = out.events.filter(pc.starts_with(out.events.column("order_id"), "ORD-"))
    assert inj.num_rows == out.events.num_rows  # injected ids continue the ORD- numbering
    limits = _np(out.events, "price")[_np(out.events, "event") != "fill"]
    assert np.allclose(limits / 0.0005, np.rint(limits / 0.0005))
