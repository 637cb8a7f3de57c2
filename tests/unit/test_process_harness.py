"""ShardThresholds (the job's decision stage) driven by the in-process operator harness
(tests/support/harness.py, no JVM): the production operator's state and timer logic,
including that state and timers drop back to zero for quiet instruments. Keys are
instrument shards; A and B share shard 0, C is alone on shard 1, as the scoring stage
batches them.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace

from core.alerts import PROCESSING_TIME_FIELDS
from core.coalesce import InstrumentState, close_if_quiet, step
from core.records import ScoredWindow, encode_scored_batch
from core.schemas import SCENARIOS
from core.thresholds import ThresholdConfig
from tests.support import harness
from udfs.shard_thresholds import HOUSEKEEPING, ShardThresholds

SLIDE, T0 = 5_000, 1_700_000_000_000
CFG = ThresholdConfig(quiet_gap_ms=30_000, idle_ttl_ms=120_000, score_scale="raw")  # unbounded test scores
SHARD = {"A": 0, "B": 0, "C": 1}


class Harness(harness.Harness):
    """The shared harness, fed one scored batch per shard as the scoring stage emits them."""

    def process(self, windows: list[ScoredWindow]) -> list:  # type: ignore[override]
        out = []
        for shard in sorted({SHARD[w.instrument] for w in windows}):
            batch = [w for w in windows if SHARD[w.instrument] == shard]
            out += super().process((shard, encode_scored_batch(batch)), key=shard)
        return out

    def instruments(self) -> set[str]:
        return {i for (_, name), m in self.store.items() if name == "instruments" for i in m}


def win(inst: str, i: int, score: float) -> ScoredWindow:
    probs = [0.02] * len(SCENARIOS)
    probs[5] = 0.84
    end = T0 + i * SLIDE
    return ScoredWindow(
        instrument=inst, window_start=end - 60_000, window_end=end, score=score, scenario_probs=tuple(probs),
        recon_error=0.1, channel_z=(0.5, 3.0), volatility=3.0, volume=1000.0, model_version="h-1",
        global_threshold=1.0, max_event_ts=end - 1, features=(1.0, 2.0), participants=(("P1", 1.0),),
        pane_surprise=(0.0,) * 11 + (1.0,),
    )  # fmt: skip


def scenario(n: int = 300) -> list[ScoredWindow]:
    rng = random.Random(21)
    hot = {j for i in range(70, n, 45) for j in (i, i + 1)}
    ws = [
        win(inst, i, 3.0 if i in hot else rng.gauss(0.5, 0.05)) for inst in "ABC" for i in range(n)
    ]
    return sorted(ws, key=lambda w: w.window_end)


def by_end(ws: list[ScoredWindow]) -> list[list[ScoredWindow]]:
    """The windows grouped by their end: one pane's batch."""
    out: dict[int, list[ScoredWindow]] = {}
    for w in ws:
        out.setdefault(w.window_end, []).append(w)
    return [out[e] for e in sorted(out)]


def expected(ws: list[ScoredWindow], cfg: ThresholdConfig, wm: int) -> list[dict]:
    out = []
    for inst in sorted({w.instrument for w in ws}):
        st = InstrumentState()
        for w in (w for w in ws if w.instrument == inst):
            out += step(st, w, cfg, 0)
        out += close_if_quiet(st, wm, cfg, 0)
    return out


def alerts_of(out: list) -> list[dict]:
    return [json.loads(o) for o in out if isinstance(o, str)]


def key(events: list[dict]) -> list[str]:
    return sorted(
        json.dumps(
            {k: v for k, v in e.items() if k not in PROCESSING_TIME_FIELDS}, sort_keys=True
        )
        for e in events
    )


def test_steady_stream_with_watermarks_matches_the_pure_decisions():
    ws = scenario()
    h = Harness(ShardThresholds(CFG))
    out = []
    for batch in by_end(ws):
        out += h.process(batch)
        out += h.advance(batch[0].window_end - 1 - 20_000)
    wm = ws[-1].window_end - 1 - 20_000
    got = alerts_of(out)
    assert key(got) == key(expected(ws, CFG, wm))
    assert {a["status"] for a in got} == {"open", "close"}  # 2-window episodes, closed on the way
    assert h.metrics.counters["windowsDecided"].n == len(ws)
    assert h.metrics.counters["alertsOpened"].n == sum(a["status"] == "open" for a in got) > 0
    assert h.metrics.counters["staleWindows"].n == 0


def test_backlog_burst_without_watermarks_decides_the_same():
    """After a restart the backlog arrives faster than the watermark: decisions are made
    on arrival (the input is in order per instrument) and must not change."""
    ws = scenario()
    h = Harness(ShardThresholds(CFG))
    out = []
    batches = by_end(ws)
    for batch in batches[:100]:
        out += h.process(batch)
        out += h.advance(batch[0].window_end - 1 - 20_000)
    for batch in batches[100:]:  # 200 panes, no watermark in between
        out += h.process(batch)
    wm = ws[-1].window_end - 1 - 20_000
    out += h.advance(wm)
    assert key(alerts_of(out)) == key(expected(ws, CFG, wm))
    assert h.metrics.counters["staleWindows"].n == 0


def test_a_window_not_newer_than_the_last_decided_one_is_counted_stale():
    ws = [win("A", i, 0.5) for i in range(5)]
    h = Harness(ShardThresholds(CFG))
    for w in ws:
        h.process([w])
    assert h.process([win("A", 2, 9.0)]) == []
    assert h.metrics.counters["staleWindows"].n == 1


def test_quiet_instruments_lose_state_and_timers():
    ws = [w for w in scenario(120) if w.instrument in "AC"]
    h = Harness(ShardThresholds(CFG))
    out = []
    for batch in by_end(ws):
        out += h.process(batch)
        out += h.advance(batch[0].window_end - 1 - 20_000)
    assert h.instruments() == {"A", "C"} and h.timer_set
    quiet_at = ws[-1].window_end + CFG.idle_ttl_ms
    out += h.advance(quiet_at + h.fn.sweep_ms)
    assert not h.store and not h.timer_set, (h.store, h.timer_set)
    assert {line for tag, line in (o for o in out if isinstance(o, tuple)) if tag == HOUSEKEEPING} == {
        f"cleared A {quiet_at}",
        f"cleared C {quiet_at}",
    }
    assert h.metrics.counters["stateCleared"].n == 2


def test_an_instrument_back_after_idle_ttl_starts_afresh_before_any_sweep():
    """No watermark moved, so no sweep ran: the window after idle_ttl_ms of silence still
    finds the instrument idle, drops its state and warms it up again."""
    h = Harness(ShardThresholds(CFG))
    for i in range(80):
        h.process([win("A", i, 0.5)])
    back = 80 + CFG.idle_ttl_ms // SLIDE + 1
    out = h.process([win("A", back, 1.2)])
    assert (HOUSEKEEPING, f"cleared A {win('A', 79, 0).window_end + CFG.idle_ttl_ms}") in out
    (opened,) = alerts_of(out)
    assert opened["status"] == "open" and opened["threshold_source"] == "global"


def test_open_episode_closes_on_quiet_gap_timer():
    ws = [win("A", i, 0.5) for i in range(80)] + [win("A", 80, 3.0)]
    h = Harness(ShardThresholds(replace(CFG, warmup_windows=30)))
    out = []
    for w in ws:
        out += h.process([w])
    out += h.advance(ws[-1].window_end - 1)
    assert [a["status"] for a in alerts_of(out)] == ["open"]
    assert alerts_of(out)[0]["evidence_start"] == ws[-1].window_end - SLIDE  # the surprising last pane
    out += h.advance(ws[-1].window_end + CFG.quiet_gap_ms)
    closes = [a for a in alerts_of(out) if a["status"] == "close"]
    assert [(a["close_reason"], a["window_end"]) for a in closes] == [
        ("quiet_gap", ws[-1].window_end + CFG.quiet_gap_ms)
    ]
    assert h.metrics.counters["alertsOpened"].n == h.metrics.counters["alertsClosed"].n == 1
    assert (0, "quiet_due") not in h.store  # no open episode: nothing left to close


def test_state_written_before_schema_2_is_read_through_the_operator():
    """A restored map entry in today's layout (no warm-up sample, budget, evidence) is
    decided on with the operator's own config."""
    old = {"seen": 80, "overall": [80, 0.5, 0.04], "by_regime": [[0, 0.0, 0.0], [80, 0.5, 0.04], [0, 0.0, 0.0]],
           "vol": [80, 1.386, 0.0], "volume": [80, 6.9, 0.0]}  # fmt: skip
    doc = {"baseline": old, "channels": [], "episode": None, "last_end": win("A", 79, 0).window_end,
           "pending": [], "stale": 0, "last_thr": None}  # fmt: skip
    h = Harness(ShardThresholds(CFG))
    h.key = 0
    h.fn.states.put("A", json.dumps(doc))
    (opened,) = alerts_of(h.process([win("A", 80, 1.2)]))
    assert opened["threshold_source"] == "floor" and opened["threshold"] == 0.8
