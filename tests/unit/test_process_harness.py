"""AdaptiveThreshold driven by a small in-process operator harness (no JVM).

Like flink-training's operator test harness: keyed state and event-time timers are
emulated with Flink's semantics (timers fire in timestamp order when the watermark
passes them; one timer per (key, timestamp)), so the wrapper's state/timer logic is
checked fast, including that state and timers drop back to zero for quiet instruments.
"""

from __future__ import annotations

import heapq
import json
import random
from dataclasses import replace

from udfs.coalesce import InstrumentState, close_if_quiet, step
from udfs.process import HOUSEKEEPING, AdaptiveThreshold
from udfs.records import ScoredWindow
from udfs.schemas import SCENARIOS
from udfs.thresholds import ThresholdConfig

SLIDE, T0 = 5_000, 1_700_000_000_000
CFG = ThresholdConfig(quiet_gap_ms=30_000, idle_ttl_ms=120_000)


class _State:
    def __init__(self, store: dict, harness: Harness, name: str):
        self.store, self.h, self.name = store, harness, name

    def value(self):
        return self.store.get((self.h.key, self.name))

    def update(self, v) -> None:
        self.store[(self.h.key, self.name)] = v

    def clear(self) -> None:
        self.store.pop((self.h.key, self.name), None)


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def inc(self, k: int = 1) -> None:
        self.n += k


class _Metrics:
    def __init__(self) -> None:
        self.counters: dict[str, _Counter] = {}

    def counter(self, name: str) -> _Counter:
        return self.counters.setdefault(name, _Counter())

    def gauge(self, name: str, fn) -> None:  # noqa: ANN001
        self.gauge_fn = fn


class Harness:
    """Keyed state + event-time timers with Flink's semantics, for one process function."""

    def __init__(self, fn: AdaptiveThreshold):
        self.fn, self.store, self.timers, self.key = fn, {}, [], None
        self.timer_set: set[tuple[int, str]] = set()
        self.watermark = -(2**63)
        self.metrics = _Metrics()
        h = self

        class Runtime:
            def get_state(self, desc):  # noqa: ANN001
                return _State(h.store, h, desc.name)

            def get_metrics_group(self):
                return h.metrics

        class Timers:
            def current_watermark(self) -> int:
                return h.watermark

            def current_processing_time(self) -> int:
                return 0

            def register_event_time_timer(self, ts: int) -> None:
                if (ts, h.key) not in h.timer_set:
                    h.timer_set.add((ts, h.key))
                    heapq.heappush(h.timers, (ts, h.key))

            def delete_event_time_timer(self, ts: int) -> None:
                h.timer_set.discard((ts, h.key))

        class Ctx:
            def timer_service(self):
                return Timers()

            def get_current_key(self):
                return h.key

        self.ctx = Ctx()
        fn.open(Runtime())

    def process(self, value: str) -> list:
        self.key = json.loads(value)["instrument"]
        return list(self.fn.process_element(value, self.ctx))

    def advance(self, watermark: int) -> list:
        self.watermark = max(self.watermark, watermark)
        out = []
        while self.timers and self.timers[0][0] <= self.watermark:
            ts, key = heapq.heappop(self.timers)
            if (ts, key) not in self.timer_set:
                continue  # deleted
            self.timer_set.discard((ts, key))
            self.key = key
            out += list(self.fn.on_timer(ts, self.ctx))
        return out


def win(inst: str, i: int, score: float) -> ScoredWindow:
    probs = [0.02] * len(SCENARIOS)
    probs[5] = 0.84
    end = T0 + i * SLIDE
    return ScoredWindow(
        instrument=inst, window_start=end - 60_000, window_end=end, score=score, scenario_probs=tuple(probs),
        recon_error=0.1, channel_z=(0.5, 3.0), volatility=3.0, volume=1000.0, model_version="h-1",
        global_threshold=1.0, max_event_ts=end - 1, features=(1.0, 2.0), participants=(("P1", 1.0),),
    )  # fmt: skip


def scenario(n: int = 300) -> list[ScoredWindow]:
    rng = random.Random(21)
    hot = {j for i in range(70, n, 45) for j in (i, i + 1)}
    ws = [
        win(inst, i, 3.0 if i in hot else rng.gauss(0.5, 0.05)) for inst in "ABC" for i in range(n)
    ]
    return sorted(ws, key=lambda w: w.window_end)


def expected(ws: list[ScoredWindow], cfg: ThresholdConfig, wm: int) -> list[dict]:
    out = []
    for inst in sorted({w.instrument for w in ws}):
        st = InstrumentState()
        for w in (w for w in ws if w.instrument == inst and w.window_end - 1 <= wm):
            out += step(st, w, cfg, 0)
        out += close_if_quiet(st, wm, cfg, 0)
    return out


def alerts_of(out: list) -> list[dict]:
    return [json.loads(o) for o in out if isinstance(o, str)]


def key(events: list[dict]) -> list[str]:
    return sorted(
        json.dumps(
            {k: v for k, v in e.items() if k not in ("emitted_at", "latency_ms")}, sort_keys=True
        )
        for e in events
    )


def test_steady_stream_with_watermarks_matches_the_pure_decisions():
    ws = scenario()
    h = Harness(AdaptiveThreshold(CFG))
    out = []
    for w in ws:
        out += h.process(w.to_json())
        out += h.advance(w.window_end - 1 - 20_000)
    wm = ws[-1].window_end - 1 - 20_000
    assert key(alerts_of(out)) == key(expected(ws, CFG, wm))


def test_backlog_burst_without_watermarks_overflows_the_buffer_in_order():
    """After a restart the backlog arrives faster than the watermark: the bounded buffer
    forces the oldest windows out; decisions must not change."""
    ws = scenario()
    h = Harness(AdaptiveThreshold(CFG))
    out = []
    for w in ws[:300]:
        out += h.process(w.to_json())
        out += h.advance(w.window_end - 1 - 20_000)
    for w in ws[300:]:  # 600 windows, no watermark in between
        out += h.process(w.to_json())
    wm = ws[-1].window_end - 1 - 20_000
    out += h.advance(wm)
    assert key(alerts_of(out)) == key(expected(ws, CFG, wm))
    assert h.metrics.counters["staleWindows"].n == 0


def test_quiet_instruments_lose_state_and_timers():
    ws = [w for w in scenario(120) if w.instrument == "A"]
    h = Harness(AdaptiveThreshold(CFG))
    out = []
    for w in ws:
        out += h.process(w.to_json())
        out += h.advance(w.window_end - 1 - 20_000)
    assert h.store and h.timer_set
    out += h.advance(ws[-1].window_end + CFG.idle_ttl_ms)
    assert not h.store and not h.timer_set, (h.store.keys(), h.timer_set)
    assert (HOUSEKEEPING, f"cleared A {ws[-1].window_end + CFG.idle_ttl_ms}") in out
    assert h.metrics.counters["stateCleared"].n == 1


def test_open_episode_closes_on_quiet_gap_timer():
    ws = [win("A", i, 0.5) for i in range(80)] + [win("A", 80, 3.0)]
    h = Harness(AdaptiveThreshold(replace(CFG, warmup_windows=30)))
    out = []
    for w in ws:
        out += h.process(w.to_json())
    out += h.advance(ws[-1].window_end - 1)
    assert [a["status"] for a in alerts_of(out)] == ["open"]
    out += h.advance(ws[-1].window_end + CFG.quiet_gap_ms)
    closes = [a for a in alerts_of(out) if a["status"] == "close"]
    assert [(a["close_reason"], a["window_end"]) for a in closes] == [
        ("quiet_gap", ws[-1].window_end + CFG.quiet_gap_ms)
    ]
    assert h.metrics.counters["alertsOpened"].n == h.metrics.counters["alertsClosed"].n == 1
