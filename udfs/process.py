"""AdaptiveThreshold: the decision stage as a Flink KeyedProcessFunction (keyed by instrument).

A thin wrapper: all decisions are made by the pure, unit-tested functions of
core/coalesce.py over an `InstrumentState`; this module only moves that state in and
out of Flink managed state, drives it with event-time timers, and counts.

State (per instrument), no pickling:
    "instrument_state"  ValueState<STRING>  InstrumentState JSON (bounded, see coalesce.py)
    "armed_timer"       ValueState<LONG>    the housekeeping timer currently registered
Input: one scored window per record, keyed by instrument, from any producer: windows
may arrive out of event-time order; each waits in the reorder buffer until the
watermark passes its end. (The job itself uses udfs/shard_thresholds.py: the same
decisions for batches of windows that arrive in order.)

Timers (event time):
    window_end - 1      release the reordered windows once the watermark passed them
    housekeeping        due = min(last_end + quiet_gap_ms if an episode is open,
                              last_end + idle_ttl_ms): closes a quiet episode; when the
                        instrument has been idle for idle_ttl_ms, clears *all* its state
                        (it warms up again on the global threshold when it comes back).
                        Armed lazily: a window that moves `due` later leaves the armed
                        timer alone; when it fires early it re-arms at the new `due`. So
                        a busy instrument costs one timer per quiet gap, not one timer
                        delete + register per window.
Where state could still leak: timers only fire when the watermark advances. A source
partition that stops without idleness configured holds the watermark back, so quiet
instruments keep their state; a processing-time TTL (`state_ttl_s`, OnCreateAndWrite)
is the backstop that drops such state eventually.

Output: alert events (core/alerts.py schema) as JSON strings. Side output
`HOUSEKEEPING` carries "cleared <instrument> <timer ts>" lines for observability/tests.

Metrics (operator scope, web UI): alertsOpened, alertsUpdated, alertsClosed,
staleWindows, stateCleared, currentThresholdMilli (gauge, threshold x 1000 of the last
decided window: Python gauges report integers).
"""

from __future__ import annotations

import json
from typing import Any

from pyflink.common import Time, Types
from pyflink.datastream import DataStream, KeyedProcessFunction, OutputTag, RuntimeContext
from pyflink.datastream.state import StateTtlConfig, ValueStateDescriptor

from core import alerts
from core.coalesce import InstrumentState, close_if_quiet, enqueue, is_idle, release, step
from core.records import ScoredWindow
from core.thresholds import ThresholdConfig

HOUSEKEEPING = OutputTag("threshold-housekeeping", Types.STRING())


def to_window(value: Any) -> ScoredWindow:
    """Accept what the scoring stage emits: a ScoredWindow, its JSON, a dict or a Row."""
    if isinstance(value, ScoredWindow):
        return value
    if isinstance(value, str | bytes):
        return ScoredWindow.from_json(value)
    if isinstance(value, dict):
        return ScoredWindow.from_dict(value)
    return ScoredWindow.from_dict(value.as_dict(recursive=True))  # pyflink Row


_INSTRUMENT_FIRST = '{"instrument":"'  # how ScoredWindow.to_json starts


def instrument_of(value: Any) -> str:
    """Key selector: the instrument, without decoding the whole record for JSON input."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        if value.startswith(_INSTRUMENT_FIRST):  # read just the first JSON string
            return json.decoder.scanstring(value, len(_INSTRUMENT_FIRST))[0]
        return str(json.loads(value)["instrument"])
    return to_window(value).instrument


def checked(cfg: ThresholdConfig | None) -> ThresholdConfig:
    """The decision stage's config, refused if an episode could outlive its state."""
    cfg = cfg or ThresholdConfig()
    if cfg.quiet_gap_ms >= cfg.idle_ttl_ms:
        raise ValueError("quiet_gap_ms must be < idle_ttl_ms (an episode closes before its state is dropped)")
    return cfg


def backstop_ttl(seconds: int) -> StateTtlConfig:
    """Processing-time TTL of the decision state: drops it when no watermark ever comes.

    Visibility ReturnExpiredIfNotCleanedUp on purpose: PyFlink turns off its Python-side
    state caches (reads *and* writes, for every state of the worker) for a state with
    NeverReturnExpired, and each get / put then became a round trip to the JVM (measured:
    a fifth of the whole job's Python time). A value past a 7-day processing-time TTL that
    is still readable changes nothing here: event-time idleness (core.coalesce.is_idle)
    already restarts an instrument that was silent for idle_ttl_ms.
    """
    return (
        StateTtlConfig.new_builder(Time.seconds(seconds))
        .set_update_type(StateTtlConfig.UpdateType.OnCreateAndWrite)
        .set_state_visibility(StateTtlConfig.StateVisibility.ReturnExpiredIfNotCleanedUp)
        .build()
    )


class AdaptiveThreshold(KeyedProcessFunction):
    def __init__(self, cfg: ThresholdConfig | None = None, state_ttl_s: int = 7 * 24 * 3600):
        self.cfg = checked(cfg)
        self.state_ttl_s = state_ttl_s
        self._last_threshold = 0.0

    def open(self, ctx: RuntimeContext) -> None:
        ttl = backstop_ttl(self.state_ttl_s)
        desc = ValueStateDescriptor("instrument_state", Types.STRING())
        desc.enable_time_to_live(ttl)
        self.state = ctx.get_state(desc)
        armed = ValueStateDescriptor("armed_timer", Types.LONG())
        armed.enable_time_to_live(ttl)
        self.armed = ctx.get_state(armed)
        m = ctx.get_metrics_group()
        self.m_open, self.m_update, self.m_close = (
            m.counter("alertsOpened"),
            m.counter("alertsUpdated"),
            m.counter("alertsClosed"),
        )
        self.m_stale, self.m_cleared = m.counter("staleWindows"), m.counter("stateCleared")
        m.gauge("currentThresholdMilli", lambda: int(self._last_threshold * 1000))

    # ---- helpers --------------------------------------------------------------------
    def _load(self) -> InstrumentState:
        raw = self.state.value()
        return InstrumentState.from_json(raw, self.cfg) if raw else InstrumentState()

    def _decide(
        self, st: InstrumentState, windows: list[ScoredWindow], now_ms: int
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for w in windows:
            stale = st.stale
            out += step(st, w, self.cfg, now_ms)
            if st.stale != stale:
                self.m_stale.inc()
        if st.last_thr:
            self._last_threshold = float(st.last_thr[0])
        return out

    def _emit(self, events: list[dict[str, Any]]):
        counters = {"open": self.m_open, "update": self.m_update, "close": self.m_close}
        for ev in events:
            counters[ev["status"]].inc()
            yield alerts.encode(ev).decode()

    def _rearm(self, st: InstrumentState, timers) -> None:
        """At most one housekeeping timer per instrument, armed no later than it is due."""
        if st.last_end is None:
            return
        due = st.last_end + self.cfg.idle_ttl_ms
        if st.episode is not None:
            due = min(due, st.last_end + self.cfg.quiet_gap_ms)
        armed = self.armed.value()
        if armed is not None and armed <= due:
            return  # fires early at worst; on_timer then re-arms at the new due
        if armed is not None:
            timers.delete_event_time_timer(armed)
        timers.register_event_time_timer(due)
        self.armed.update(due)

    # ---- Flink callbacks ------------------------------------------------------------
    def process_element(self, value, ctx: KeyedProcessFunction.Context):
        w = to_window(value)
        timers = ctx.timer_service()
        st = self._load()
        now = timers.current_processing_time()
        ready = enqueue(st, w, self.cfg)  # forced out by the buffer bound, oldest first
        if w.window_end - 1 <= timers.current_watermark():
            ready += release(st, timers.current_watermark())  # already behind the watermark
        else:
            timers.register_event_time_timer(w.window_end - 1)
        events = self._decide(st, ready, now)
        self._rearm(st, timers)
        self.state.update(st.to_json())
        yield from self._emit(events)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        raw = self.state.value()
        if not raw:
            return  # state already cleared (or expired by TTL): nothing to do
        st = InstrumentState.from_json(raw, self.cfg)
        timers = ctx.timer_service()
        now = timers.current_processing_time()
        events = self._decide(st, release(st, timestamp), now)
        events += close_if_quiet(st, timestamp, self.cfg, now)
        if is_idle(st, timestamp, self.cfg):
            armed = self.armed.value()
            if armed is not None and armed != timestamp:
                timers.delete_event_time_timer(armed)
            self.state.clear()
            self.armed.clear()
            self.m_cleared.inc()
            yield from self._emit(events)
            yield HOUSEKEEPING, f"cleared {ctx.get_current_key()} {timestamp}"
            return
        if self.armed.value() == timestamp:
            self.armed.clear()  # this one fired; _rearm registers the next
        self._rearm(st, timers)
        self.state.update(st.to_json())
        yield from self._emit(events)


def decide(
    scored: DataStream, cfg: ThresholdConfig | None = None, parallelism: int | None = None
) -> DataStream:
    """scored windows (any form `to_window` accepts) -> alert events (JSON strings)."""
    out = (
        scored.key_by(instrument_of, key_type=Types.STRING())
        .process(AdaptiveThreshold(cfg), output_type=Types.STRING())
        .name("adaptive-threshold")
        .uid("adaptive-threshold")
    )
    if parallelism:
        out = out.set_parallelism(parallelism)
    return out
