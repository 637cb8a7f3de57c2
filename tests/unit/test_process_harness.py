"""ShardThresholds (the job's decision stage) driven by a small in-process harness (no JVM).

Like flink-training's operator test harness: keyed value / map state and event-time
timers are emulated with Flink's semantics (timers fire in timestamp order when the
watermark passes them; one timer per (key, timestamp)), so the production operator's
state/timer logic is checked fast, including that state and timers drop back to zero
for quiet instruments. Keys are instrument shards; A and B share shard 0, C is alone on
shard 1, as the scoring stage batches them.
"""

from __future__ import annotations

import heapq
import json
import random
from dataclasses import replace

from core.alerts import PROCESSING_TIME_FIELDS
from core.coalesce import InstrumentState, close_if_quiet, step
from core.records import ScoredWindow, encode_scored_batch
from core.schemas import SCENARIOS
from core.thresholds import ThresholdConfig
from udfs.shard_thresholds import HOUSEKEEPING, ShardThresholds

SLIDE, T0 = 5_000, 1_700_000_000_000
CFG = ThresholdConfig(quiet_gap_ms=30_000, idle_ttl_ms=120_000, score_scale="raw")  # unbounded test scores
SHARD = {"A": 0, "B": 0, "C": 1}


class _Value:
    def __init__(self, store: dict, harness: Harness, name: str):
        self.store, self.h, self.name = store, harness, name

    def value(self):
        return self.store.get((self.h.key, self.name))

    def update(self, v) -> None:
        self.store[(self.h.key, self.name)] = v

    def clear(self) -> None:
        self.store.pop((self.h.key, self.name), None)


class _Map:
    """MapState of the current key: an entry of the store only while it holds something."""

    def __init__(self, store: dict, harness: Harness, name: str):
        self.store, self.h, self.name = store, harness, name

    def _map(self, create: bool = False) -> dict:
        k = (self.h.key, self.name)
        if create:
            return self.store.setdefault(k, {})
        return self.store.get(k, {})

    def get(self, key):
        return self._map().get(key)

    def put(self, key, value) -> None:
        self._map(create=True)[key] = value

    def remove(self, key) -> None:
        m = self._map()
        m.pop(key, None)
        if not m:
            self.store.pop((self.h.key, self.name), None)

    def items(self):
        return list(self._map().items())

    def is_empty(self) -> bool:
        return not self._map()


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

    def __init__(self, fn: ShardThresholds):
        self.fn, self.store, self.timers, self.key = fn, {}, [], None
        self.timer_set: set[tuple[int, int]] = set()
        self.watermark = -(2**63)
        self.metrics = _Metrics()
        h = self

        class Runtime:
            def get_state(self, desc):  # noqa: ANN001
                return _Value(h.store, h, desc.name)

            def get_map_state(self, desc):  # noqa: ANN001
                return _Map(h.store, h, desc.name)

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

    def process(self, windows: list[ScoredWindow]) -> list:
        """One scored batch per shard, as the scoring stage emits them."""
        out = []
        for shard in sorted({SHARD[w.instrument] for w in windows}):
            self.key = shard
            batch = [w for w in windows if SHARD[w.instrument] == shard]
            out += list(self.fn.process_element((shard, encode_scored_batch(batch)), self.ctx))
        return out

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
