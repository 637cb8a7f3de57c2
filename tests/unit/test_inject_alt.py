"""`darkpool inject --rendition alt`: a second drawing of every pattern (injectors.ALT_INJECTORS).

Each alt rendition must differ from the default one on its parameters (sizes, distances,
timings, counts, orderings) and still have its pattern's defining shape; both renditions
are held to the same shape checks here. Episodes are drawn straight from the injectors,
many at once, on the accounts of a real (simulated) background, with the same
intensities for both renditions.
"""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest
from click.testing import CliRunner

from core.schemas import EVENT_SCHEMA, SCENARIOS
from darkpool.cli import cli
from darkpool.market.batch import Batch
from darkpool.market.config import NS, PRESETS
from darkpool.market.events import BUY, CANCEL, FILL, NEW, PK_OFF, Block, take
from darkpool.market.inject import Background, InjectConfig, InjectError, _Session, analyse, inject
from darkpool.market.injectors import ALT_INJECTORS, INJECTORS, RENDITIONS
from darkpool.market.invariants import check_all
from darkpool.market.simulate import simulate

N = 240  # episodes per pattern and rendition
CLOSE = 10 * 3600 * NS  # the session's close, ns (episodes start an hour apart before it)


@pytest.fixture(scope="module")
def history():
    market = simulate(PRESETS["tiny"].replace(n_events=8_000, seed=11)).events
    return market.filter(pc.equal(market.column("label"), 0)).select(EVENT_SCHEMA.names)


@pytest.fixture(scope="module")
def bg(history) -> Background:
    return analyse(history)


def _draw(bg: Background, name: str, rendition: str, seed: int = 3) -> tuple[Block, np.ndarray, np.ndarray]:
    """N episodes of `name`: (rows, manipulators [N, 2], intensity [N])."""
    intensity = np.linspace(0.05, 1.0, N)
    t0 = np.arange(N, dtype=np.int64) * 30 * NS  # 30 s apart: far enough for per-episode rows
    c = Batch(_Session(CLOSE, 0.01), np.random.default_rng(seed), bg.uni, np.zeros(N, dtype=np.int64), t0,
              intensity, np.zeros(N, dtype=np.int8), 400, SCENARIOS.index(name), [0])  # fmt: skip
    rows, _impacts, manip = RENDITIONS[rendition][name](c)
    return rows, manip, intensity


def _episodes(rows: Block) -> list[Block]:
    """Each episode's rows (victims included), in time order."""
    out = []
    for e in range(N):
        r = take(rows, np.flatnonzero(rows["episode"] == e))
        out.append(take(r, np.argsort(r["ts"], kind="stable")))
    return out


def _signature(rows: Block) -> dict[str, float]:
    """What a rendition's parameters show in its manipulator rows."""
    m = take(rows, np.flatnonzero(rows["label"] == 1))
    new, cancel, fill = (m["ev"] == k for k in (NEW, CANCEL, FILL))
    per_ep = np.bincount(m["episode"], minlength=N)
    gaps = np.concatenate([np.diff(np.sort(m["ts"][m["episode"] == e])) for e in range(N)]) / NS
    placed = {int(o): int(t) for o, t in zip(m["oid"][new], m["ts"][new], strict=True)}
    latency = [(t - placed[int(o)]) / NS for o, t in zip(m["oid"][cancel | fill], m["ts"][cancel | fill],
                                                          strict=True) if int(o) in placed]  # fmt: skip
    return {
        "rows per episode": float(np.median(per_ep)),
        "order size": float(np.median(m["qty"][new])),
        "gap between events (s)": float(np.median(gaps)) if len(gaps) else 0.0,
        "ticks from the mid": float(np.median(np.abs(m["pv"][new]))),
        "time to cancel or fill (s)": float(np.median(latency)) if latency else 0.0,
        "sell share": float(np.mean(m["side"][new] != BUY)),
        "cancel share": float(cancel.sum() / max(new.sum(), 1)),
        "episode length (s)": float(np.median([np.ptp(m["ts"][m["episode"] == e]) for e in range(N)])) / NS,
    }


def _differs(a: float, b: float) -> bool:
    return abs(a - b) > 0.25 * max(abs(a), abs(b), 1e-9)


@pytest.mark.parametrize("name", list(INJECTORS))
def test_alt_differs_from_default_on_its_parameters(bg: Background, name: str) -> None:
    default, alt = _signature(_draw(bg, name, "default")[0]), _signature(_draw(bg, name, "alt")[0])
    changed = [k for k in default if _differs(default[k], alt[k])]
    assert len(changed) >= 3, (name, default, alt)


# ---- the defining shapes, checked on both renditions ------------------------------------------
def _shape_wash_trade(ep: Block, manip: np.ndarray) -> None:
    owners = {int(x) for x in manip if x >= 0}
    fills = ep["ev"] == FILL
    assert fills.any()
    assert set(ep["part"][fills].tolist()) <= owners and set(ep["contra"][fills].tolist()) <= owners
    news = ep["ev"] == NEW
    assert (news & (ep["side"] == BUY)).sum() == (news & (ep["side"] != BUY)).sum()  # both legs each round


def _shape_spoofing(ep: Block, manip: np.ndarray, within_s: float | None) -> None:
    news, cancels, fills = (ep["ev"] == k for k in (NEW, CANCEL, FILL))
    spoof_side = np.bincount(ep["side"][cancels]).argmax()
    layers = news & (ep["side"] == spoof_side)
    assert layers.sum() >= 2 and set(ep["oid"][layers].tolist()) == set(ep["oid"][cancels].tolist())
    genuine = fills & (ep["side"] != spoof_side)
    assert genuine.any()
    fill_ts = np.sort(ep["ts"][genuine])
    before = np.searchsorted(fill_ts, ep["ts"][cancels], side="right") - 1
    assert (before >= 0).all()  # every layer is pulled after a fill on the other side
    if within_s is not None:
        assert (ep["ts"][cancels] - fill_ts[before] < within_s * NS).all()


def _shape_quote_stuffing(ep: Block, manip: np.ndarray) -> None:
    news, cancels = ep["ev"] == NEW, ep["ev"] == CANCEL
    assert news.sum() >= 3 and not (ep["ev"] == FILL).any()
    placed = dict(zip(ep["oid"][news].tolist(), ep["ts"][news].tolist(), strict=True))
    latency = np.array([t - placed[o] for o, t in zip(ep["oid"][cancels].tolist(), ep["ts"][cancels].tolist(),
                                                       strict=True)])  # fmt: skip
    assert len(latency) == news.sum() and np.median(latency) < 0.1 * NS


def _shape_momentum(ep: Block, manip: np.ndarray) -> None:
    fills = ep["ev"] == FILL
    sides = ep["side"][fills]
    push = np.bincount(sides, minlength=2).argmax()
    run = np.flatnonzero(sides == push)
    assert len(run) >= 3 and (sides[run[-1] + 1 :] != push).all() and (sides[run[-1] + 1 :].size > 0)
    run_ts = ep["ts"][fills][run]
    assert (run_ts[2:] - run_ts[:-2]).min() < 10 * NS  # a rapid run: three same-side fills within 10 s


def _shape_pinging(ep: Block, manip: np.ndarray) -> None:
    news = np.flatnonzero(ep["ev"] == NEW)
    probes, big = news[:-1], news[-1]
    assert len(probes) >= 2 and ep["qty"][probes].max() <= 100 and ep["qty"][big] >= 10 * ep["qty"][probes].max()
    assert (ep["ev"][ep["oid"] == ep["oid"][big]] == FILL).any()
    ends = {int(o): int(t) for o, t in zip(ep["oid"], ep["ts"], strict=True) if o in set(ep["oid"][probes].tolist())}
    done = np.array([ends[int(o)] - int(t) for o, t in zip(ep["oid"][probes], ep["ts"][probes], strict=True)])
    assert (done < 0.1 * NS).all()  # each probe filled or pulled within 100 ms


def _shape_off_market(ep: Block, manip: np.ndarray) -> None:
    fills = ep["ev"] == FILL
    assert fills.any() and (ep["pk"][fills] == PK_OFF).all() and (np.abs(ep["pv"][fills]) > 0).all()
    assert set(ep["contra"][fills].tolist()) <= {int(x) for x in manip if x >= 0}


def _shape_marking_the_close(ep: Block, manip: np.ndarray) -> None:
    news, fills = ep["ev"] == NEW, ep["ev"] == FILL
    assert news.sum() == fills.sum() >= 1
    assert (CLOSE - ep["ts"] < 13 * 60 * NS).all() and (ep["ts"] < CLOSE).all()  # bunched into the last minutes
    s = np.where(ep["side"][news] == BUY, 1, -1)
    assert (np.sign(ep["pv"][news]) == s).all()  # aggressive: buys above the mid, sells below


def _shape_front_running(ep: Block, manip: np.ndarray) -> None:
    me = ep["part"] == manip[0]
    victim_fills = (ep["label"] == 0) & (ep["ev"] == FILL)
    first_v, last_v = ep["ts"][victim_fills].min(), ep["ts"][victim_fills].max()
    block_side = ep["side"][victim_fills][0]
    mine = me & (ep["ev"] == FILL) & (ep["label"] == 1)
    ahead = mine & (ep["ts"] < first_v)
    after = mine & (ep["ts"] > last_v)
    assert ahead.any() and (ep["side"][ahead] == block_side).all()
    assert after.any() and (ep["side"][after] != block_side).all()


SHAPES = {
    "wash_trade": _shape_wash_trade,
    "spoofing_layering": lambda ep, m: _shape_spoofing(ep, m, None),
    "quote_stuffing": _shape_quote_stuffing,
    "momentum_ignition": _shape_momentum,
    "pinging": _shape_pinging,
    "off_market_print": _shape_off_market,
    "marking_the_close": _shape_marking_the_close,
    "front_running": _shape_front_running,
}


@pytest.mark.parametrize("rendition", list(RENDITIONS))
@pytest.mark.parametrize("name", list(INJECTORS))
def test_every_rendition_has_the_pattern_shape(bg: Background, name: str, rendition: str) -> None:
    rows, manip, _ = _draw(bg, name, rendition)
    for e, ep in enumerate(_episodes(rows)):
        try:
            SHAPES[name](ep, manip[e])
        except AssertionError as exc:
            raise AssertionError(f"{rendition} {name}, episode {e}: {exc}") from None


def test_alt_layering_pulls_every_layer_within_a_second_of_the_fill(bg: Background) -> None:
    rows, manip, _ = _draw(bg, "spoofing_layering", "alt")
    for e, ep in enumerate(_episodes(rows)):
        _shape_spoofing(ep, manip[e], within_s=1.0)
    default_rows, default_manip, _ = _draw(bg, "spoofing_layering", "default")
    slow = 0
    for e, ep in enumerate(_episodes(default_rows)):  # the default rendition is slower to pull
        try:
            _shape_spoofing(ep, default_manip[e], within_s=1.0)
        except AssertionError:
            slow += 1
    assert slow > N // 4


# ---- through `inject` -----------------------------------------------------------------------------
def test_inject_alt_is_valid_and_differs(history) -> None:
    alt = inject(history, InjectConfig(rate=0.05, seed=2, rendition="alt"))
    assert check_all(alt) == []
    assert set(alt.episodes.column("scenario").to_pylist()) == set(ALT_INJECTORS)
    default = inject(history, InjectConfig(rate=0.05, seed=2))
    assert not alt.events.equals(default.events)
    again = inject(history, InjectConfig(rate=0.05, seed=2))
    assert again.events.equals(default.events) and again.episodes.equals(default.episodes)  # seeded
    assert default.events.equals(inject(history, InjectConfig(rate=0.05, seed=2, rendition="default")).events)


def test_unknown_rendition_is_one_clear_line(history, tmp_path) -> None:
    with pytest.raises(InjectError, match="unknown rendition 'other'; valid: default, alt"):
        InjectConfig(rendition="other")
    path = tmp_path / "bg.parquet"
    import pyarrow.parquet as pq

    pq.write_table(history, path)
    res = CliRunner().invoke(cli, ["inject", "--background", str(path), "--out", str(tmp_path / "o"),
                                   "--rendition", "other"])  # fmt: skip
    assert res.exit_code != 0 and "other" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(cli, ["inject", "--background", str(path), "--out", str(tmp_path / "alt"),
                                   "--rendition", "alt", "--rate", "0.05", "--seed", "2"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "rendition alt" in res.output
