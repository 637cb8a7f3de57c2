"""The varied character (domain randomization), several sessions per data set, and the
out-of-distribution options of `darkpool generate`."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from core.schemas import SCENARIOS
from darkpool.cli import cli
from darkpool.market.config import NS, PRESETS, SimConfig
from darkpool.market.invariants import check_all
from darkpool.market.simulate import simulate
from darkpool.market.universe import make_universe
from model.windows import time_split

# The varied preset, smaller: 10-minute sessions (~170k events, well under a second).
SMALL = PRESETS["varied"].replace(duration_s=600, n_instruments=10)


@pytest.fixture(scope="module")
def varied():
    return simulate(SMALL)


def _frame(r) -> pd.DataFrame:
    return r.events.select(["ts", "instrument", "event", "participant", "price", "bid", "ask", "label"]).to_pandas()


def _per_instrument(r) -> pd.DataFrame:
    """Normal-flow character per instrument: events/s, cancels per fill, median spread."""
    ev = _frame(r)
    normal = ev[ev["label"] == 0]
    g = normal.groupby("instrument")
    seconds = r.config.duration_s * r.config.sessions
    mid = (normal["ask"] + normal["bid"]) / 2
    return pd.DataFrame({
        "rate": g.size() / seconds,
        "cancel_per_fill": (normal["event"] == "cancel").groupby(normal["instrument"]).sum()
        / (normal["event"] == "fill").groupby(normal["instrument"]).sum().clip(lower=1),
        "spread_bps": ((normal["ask"] - normal["bid"]) / mid * 1e4).groupby(normal["instrument"]).median(),
        "open_price": g["price"].first(),
        "accounts": g["participant"].nunique(),
    })


def test_varied_spans_the_ranges(varied) -> None:
    cfg = varied.config
    uni = make_universe(cfg, np.random.default_rng(np.random.SeedSequence(cfg.seed).spawn(1)[0]))
    stats = _per_instrument(varied).loc[uni.symbols]
    # rates: drawn over >= 3 orders of magnitude, and the flow delivers them
    assert uni.activity.max() / uni.activity.min() >= 1_000
    assert uni.activity.min() < 0.1 and uni.activity.max() > 50
    ratio = stats["rate"].to_numpy() / uni.activity
    assert (ratio > 0.5).all() and (ratio < 2).all(), ratio
    # both flow styles: lit instruments cancel-heavy (cancels >= 10x fills), dark ones not
    assert uni.lit.any() and (~uni.lit).any()
    assert (stats["cancel_per_fill"][uni.lit] >= 10).all(), stats["cancel_per_fill"]
    assert (stats["cancel_per_fill"][~uni.lit] < 5).all()
    # prices $2-$2,000 on the 0.01 tick; spreads from 1 tick to ~1% of the price
    assert uni.price0.min() < 4 and uni.price0.max() > 1_000
    assert stats["open_price"].min() > 1.5 and stats["open_price"].max() < 2_500
    quotes = np.concatenate([_frame(varied)[c].to_numpy() for c in ("bid", "ask")])
    assert np.allclose(np.round(quotes / cfg.tick) * cfg.tick, quotes, atol=1e-6)
    assert uni.spread_ticks.min() == 1
    assert (uni.spread_ticks <= np.maximum(1, np.ceil(0.01 * uni.price0 / cfg.tick))).all()
    assert stats["spread_bps"].max() > 20 * stats["spread_bps"].min()
    # participant populations from tens to thousands; regimes per instrument differ
    assert uni.population.min() < 60 and uni.population.max() > 1_500
    assert stats["accounts"].max() > 5 * stats["accounts"].min()
    assert len({tuple(p.round(6)) for p in uni.regime_p}) == len(uni.symbols)


def test_varied_invariants_and_determinism(varied) -> None:
    assert check_all(varied) == []
    again = simulate(SMALL)
    assert again.events.equals(varied.events) and again.episodes.equals(varied.episodes)
    assert again.regimes.equals(varied.regimes)
    assert not simulate(SMALL.replace(seed=SMALL.seed + 1, sessions=1)).events.equals(
        simulate(SMALL.replace(sessions=1)).events)


def test_every_scenario_in_each_third_of_the_timeline(varied) -> None:
    """Thirds of the calendar span from the first open to the last close, the way the
    model's time split cuts it."""
    cfg, ep = varied.config, varied.episodes.to_pandas()
    edges = np.linspace(cfg.open_ns, cfg.close_ns, 4)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = ep[(ep["start_ts"] >= lo) & (ep["start_ts"] < hi)]
        assert set(inside["scenario"]) == set(SCENARIOS[1:]), (lo, hi)


def test_sessions_are_consecutive_days_ending_at_the_close(varied) -> None:
    cfg = varied.config
    bounds = cfg.session_bounds()
    assert len(bounds) == cfg.sessions == 6
    assert all(b[1] - a[1] == 86_400 * NS for a, b in zip(bounds[:-1], bounds[1:], strict=True))
    ts = varied.events.column("ts").to_numpy()
    ep = varied.episodes.to_pandas()
    closes = ep[ep["scenario"] == "marking_the_close"]
    for open_ns, close_ns in bounds:
        mine = ts[(ts >= open_ns) & (ts < close_ns)]
        assert len(mine) > 0.1 * len(ts) / cfg.sessions
        assert close_ns - mine.max() < 60 * NS  # trading right up to the close
        marked = closes[(closes["end_ts"] >= open_ns) & (closes["end_ts"] < close_ns)]
        assert 1 <= len(marked) <= cfg.marked_close_share * cfg.n_instruments  # ordinary closes too
        assert (marked["start_ts"] > close_ns - 15 * 60 * NS).all()
    # order ids stay unique across sessions
    ev = varied.events.select(["order_id", "event"]).to_pandas()
    assert ev.loc[ev["event"] == "new", "order_id"].is_unique


def test_time_split_puts_whole_sessions_in_train_val_test() -> None:
    """model.windows.time_split cuts the calendar span; with the varied preset's six
    consecutive days the last day is test, the one before validation."""
    cfg = PRESETS["varied"]
    slide = 5 * NS
    sessions = [np.arange(o // slide, c // slide) for o, c in cfg.session_bounds()]
    split = time_split(np.concatenate(sessions), 12, 0.15, 0.15)
    day = np.concatenate([np.full(len(p), k) for k, p in enumerate(sessions)])
    assert set(day[split.train]) == {0, 1, 2, 3}
    assert set(day[split.val]) == {4} and set(day[split.test]) == {5}


def test_skip_weekends_and_classic_sessions() -> None:
    cfg = PRESETS["tiny"].replace(sessions=3, skip_weekends=True, date="2026-03-06", n_events=9_000)
    assert cfg.session_dates() == ["2026-03-06", "2026-03-09", "2026-03-10"]
    assert all(dt.date.fromisoformat(d).weekday() < 5 for d in cfg.session_dates())
    r = simulate(cfg)
    assert r.events.num_rows == 9_000 and check_all(r) == []
    assert set(r.episodes.column("episode_id").to_pylist()) == set(range(r.episodes.num_rows))


def _generate(tmp_path, name: str, *args: str) -> pd.DataFrame:
    out = tmp_path / name
    res = CliRunner().invoke(cli, ["generate", "--preset", "varied", "--instruments", "4", "--sessions", "1",
                                   "--duration", "10m", "--seed", "5", "--out", str(out), *args])
    assert res.exit_code == 0, res.output
    return pq.read_table(out / "events.parquet").to_pandas()


def test_out_of_distribution_flags(tmp_path) -> None:
    base = _generate(tmp_path, "base")
    # rate scale: the same instruments, ten times (a tenth of) the flow
    for scale in (10, 0.1):
        scaled = _generate(tmp_path, f"x{scale}", "--rate-scale", str(scale))
        assert len(scaled) == pytest.approx(scale * len(base), rel=0.01)
        assert set(scaled["instrument"]) == set(base["instrument"])
    # lit: every instrument cancel-heavy
    lit = _generate(tmp_path, "lit", "--flow", "lit", "--rate-range", "5,20")
    normal = lit[lit["label"] == 0]
    by = normal.groupby("instrument")["event"]
    assert (by.apply(lambda e: (e == "cancel").sum() / max(1, (e == "fill").sum())) >= 10).all()
    dark = _generate(tmp_path, "dark", "--flow", "dark", "--rate-range", "5,20")
    assert (dark["event"] == "cancel").sum() < 3 * (dark["event"] == "fill").sum()
    # one price, one spread, one rate for every instrument
    pinned = _generate(tmp_path, "pinned", "--price-range", "2000", "--spread-bps", "50", "--rate-range", "2")
    first = pinned.groupby("instrument").first()
    assert ((first["bid"] + first["ask"]) / 2).between(1_900, 2_100).all()
    spread_bps = (pinned["ask"] - pinned["bid"]) / ((pinned["ask"] + pinned["bid"]) / 2) * 1e4
    assert spread_bps.min() == pytest.approx(50, rel=0.05)  # the base spread; wider in volatile spells
    assert spread_bps.median() < 100
    normal_rate = (pinned["label"] == 0).groupby(pinned["instrument"]).sum() / 600
    assert normal_rate.between(1, 4).all()
    cheap = _generate(tmp_path, "cheap", "--price-range", "2", "--spread-bps", "1")
    assert (cheap["ask"] - cheap["bid"]).min() == pytest.approx(0.01)  # 1 bp of $2 is below a tick


@pytest.mark.parametrize(("args", "needle"), [
    (["--preset", "tiny", "--flow", "lit"], "--preset varied"),
    (["--preset", "tiny", "--rate-scale", "10"], "--preset varied"),
    (["--preset", "varied", "--events", "1000"], "follows from"),
    (["--preset", "varied", "--rate-range", "5,1"], "LOW,HIGH"),
    (["--preset", "varied", "--price-range", "0.5,3"], "--price-range"),  # the flag, not the field
    (["--preset", "varied", "--spread-bps", "abc"], "LOW,HIGH"),
    (["--preset", "varied", "--rate-scale", "1000"], "events"),
    (["--preset", "varied", "--sessions", "0"], "sessions"),
])
def test_bad_generator_options_say_why(tmp_path, args: list[str], needle: str) -> None:
    res = CliRunner().invoke(cli, ["generate", *args, "--out", str(tmp_path)])
    assert res.exit_code != 0 and needle in res.output and "Traceback" not in res.output, res.output


def test_config_rejects_a_varied_range_out_of_bounds() -> None:
    with pytest.raises(ValueError, match="rate_range"):
        SimConfig(character="varied", n_events=None, rate_range=(0.0, 5.0))
    with pytest.raises(ValueError, match="n_events is required"):
        SimConfig(n_events=None)
