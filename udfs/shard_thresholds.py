"""ShardThresholds: the job's decision stage, one record per (instrument shard, pane).

The decisions are made by the pure, unit-tested functions of core/coalesce.py over an
`InstrumentState` per instrument; this operator only moves that state in and out of
Flink managed state, drives it with event-time timers, and counts. It takes a batch of
scored windows at a time, decided on arrival (ordered input needs no reorder buffer):
the job's ordered async scoring stage emits one record per window batch
(`SCORED_BATCH_TYPE`: shard, the batch's ScoredWindows), keyed here by shard. Each
record crossing between the JVM and Python has a fixed cost (serialization, keyed-state
round trips, timers); per window it was the job's largest cost.

Input order: each instrument's windows arrive in event-time order (one shard -> one
async subtask -> one channel); a window not newer than the instrument's last decided
one is counted stale, never reordered into history.

State (per shard; per instrument inside it):
    "instruments"  MapState<STRING, STRING>  instrument -> InstrumentState JSON
    "quiet_due"    ValueState<PICKLED>       {instrument: last_end + quiet_gap_ms} for the
                                             instruments with an open episode (few;
                                             cleared when there is none)
    "sweep_at"     ValueState<LONG>          the pending idle sweep timer
Timers (event time, per shard):
    quiet-gap due    closes the episode of an instrument that went quiet
    idle sweep       every `sweep_ms`: drops the state of instruments silent for
                     idle_ttl_ms (they warm up again on the global threshold). A window
                     arriving after idle_ttl_ms of silence starts from a fresh state
                     even if no sweep ran yet, so the outcome does not depend on
                     watermark timing.
A processing-time TTL on the map entries is the backstop for a stream whose watermark
stops. Entries written by an older version (without the warm-up sample, alert budget or
evidence span) are read with this operator's ThresholdConfig; core/thresholds.py and
docs/ALERTS.md say what they restore to.

Output: alert events (core/alerts.py) as JSON strings; side output HOUSEKEEPING
("cleared <instrument> <sweep ts>") for observability and tests.

Metrics (operator scope, web UI): alertsOpened, alertsUpdated, alertsClosed,
staleWindows, stateCleared, windowsDecided, currentThresholdMilli (gauge, threshold x
1000 of the last decided window: Python gauges report integers).
"""

from __future__ import annotations

import math
from typing import Any

from pyflink.common import Time, Types
from pyflink.datastream import DataStream, KeyedProcessFunction, OutputTag, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, StateTtlConfig, ValueStateDescriptor

from core import alerts
from core.alert_budget import AlertBudget
from core.coalesce import InstrumentState, close_if_quiet, is_idle, step
from core.records import scored_windows
from core.thresholds import ThresholdConfig

HOUSEKEEPING = OutputTag("threshold-housekeeping", Types.STRING())
DECODED_CACHE = 100_000  # instruments whose decoded state a worker keeps (see _store)
END_OF_TIME = 2**63 - 1  # Flink's final watermark (Long.MAX_VALUE) at the end of input

# What the scoring stage emits per window batch: its shard and the scored windows, packed
# by core.records.encode_scored_batch.
SCORED_BATCH_TYPE = Types.ROW_NAMED(["shard", "windows"], [Types.INT(), Types.PRIMITIVE_ARRAY(Types.BYTE())])


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


class ShardThresholds(KeyedProcessFunction):
    def __init__(self, cfg: ThresholdConfig | None = None, state_ttl_s: int = 7 * 24 * 3600,
                 sweep_ms: int | None = None, budget: AlertBudget | None = None):  # fmt: skip
        self.cfg = checked(cfg)
        self.budget = budget or AlertBudget(alerts_per_hour=math.inf)  # none: every cut 0
        self.state_ttl_s = state_ttl_s
        self.sweep_ms = sweep_ms or max(self.cfg.idle_ttl_ms // 4, 1)
        self._last_threshold = 0.0

    def open(self, ctx: RuntimeContext) -> None:
        desc = MapStateDescriptor("instruments", Types.STRING(), Types.STRING())
        desc.enable_time_to_live(backstop_ttl(self.state_ttl_s))
        self.states = ctx.get_map_state(desc)
        self.quiet_due = ctx.get_state(ValueStateDescriptor("quiet_due", Types.PICKLED_BYTE_ARRAY()))
        self.sweep_at = ctx.get_state(ValueStateDescriptor("sweep_at", Types.LONG()))
        self._decoded: dict[str, tuple[str, InstrumentState]] = {}  # see _store
        m = ctx.get_metrics_group()
        self.m = {"open": m.counter("alertsOpened"), "update": m.counter("alertsUpdated"),
                  "close": m.counter("alertsClosed")}  # fmt: skip
        self.m_stale, self.m_cleared = m.counter("staleWindows"), m.counter("stateCleared")
        self.m_windows = m.counter("windowsDecided")
        m.gauge("currentThresholdMilli", lambda: int(self._last_threshold * 1000))

    # ---- helpers --------------------------------------------------------------------
    def _load(self, instrument: str) -> InstrumentState:
        raw = self.states.get(instrument)
        if not raw:
            return InstrumentState()
        known = self._decoded.get(instrument)
        if known is not None and known[0] is raw:  # the text this worker wrote last
            return known[1]
        return InstrumentState.from_json(raw, self.cfg)

    def _store(self, instrument: str, st: InstrumentState) -> None:
        """Write the state and remember its decoded form.

        PyFlink's map-state caches hand back the very string object that was put, so an
        identical object on the next read means "still what this worker wrote": decoding
        it again (~40 us per window, measured) is skipped. Any other text (a restore, a
        cache eviction) is decoded.
        """
        text = st.to_json()
        self.states.put(instrument, text)
        self._decoded.pop(instrument, None)
        if len(self._decoded) >= DECODED_CACHE:
            self._decoded.pop(next(iter(self._decoded)))  # the least recently written
        self._decoded[instrument] = (text, st)

    def _forget(self, instrument: str) -> None:
        self.states.remove(instrument)
        self._decoded.pop(instrument, None)

    def _set_due(self, due: dict[str, int]) -> None:
        """Keep the quiet-gap deadlines; none left clears the state (a shard whose
        instruments all went quiet keeps nothing)."""
        if due:
            self.quiet_due.update(due)
        else:
            self.quiet_due.clear()

    def _emit(self, events: list[dict[str, Any]]):
        for ev in events:
            self.m[ev["status"]].inc()
            yield alerts.encode(ev).decode()

    def _arm_sweep(self, timers, newest_end: int) -> None:
        if self.sweep_at.value() is None:
            due = (newest_end // self.sweep_ms + 1) * self.sweep_ms + self.cfg.idle_ttl_ms
            timers.register_event_time_timer(due)
            self.sweep_at.update(due)

    # ---- Flink callbacks ------------------------------------------------------------
    def process_element(self, value, ctx: KeyedProcessFunction.Context):
        timers = ctx.timer_service()
        now = timers.current_processing_time()
        due = self.quiet_due.value() or {}
        due_before = dict(due)
        events: list[dict[str, Any]] = []
        cleared: list[str] = []
        newest = None
        for w in scored_windows(value):
            st = self._load(w.instrument)
            if is_idle(st, w.window_end - 1, self.cfg):  # silent for idle_ttl: start afresh
                events += close_if_quiet(st, st.last_end + self.cfg.idle_ttl_ms, self.cfg, now)
                cleared.append(self._cleared(w.instrument, st))
                st = InstrumentState()
            stale = st.stale
            events += step(st, w, self.cfg, now, self.budget.cut(w.instrument))
            self.m_windows.inc()
            if st.stale != stale:
                self.m_stale.inc()
            if st.last_thr:
                self._last_threshold = float(st.last_thr[0])
            self._store(w.instrument, st)
            if st.episode is not None:
                due[w.instrument] = st.last_end + self.cfg.quiet_gap_ms
            else:
                due.pop(w.instrument, None)
            newest = w.window_end if newest is None else max(newest, w.window_end)
        if due != due_before:
            for t in set(due.values()) - set(due_before.values()):
                timers.register_event_time_timer(t)  # equal timestamps: one timer per shard
            self._set_due(due)
        if newest is not None:
            self._arm_sweep(timers, newest)
        yield from self._emit(events)
        for line in cleared:
            yield HOUSEKEEPING, line

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        now = ctx.timer_service().current_processing_time()
        events: list[dict[str, Any]] = []
        due = self.quiet_due.value() or {}
        quiet = [inst for inst, t in due.items() if t <= timestamp]
        for inst in quiet:  # episodes whose instrument went quiet
            st = self._load(inst)
            events += close_if_quiet(st, timestamp, self.cfg, now)
            self._store(inst, st)
            del due[inst]
        if quiet:
            self._set_due(due)
        yield from self._emit(events)
        if self.sweep_at.value() == timestamp:
            yield from self._sweep(timestamp, ctx)

    def _cleared(self, instrument: str, st: InstrumentState) -> str:
        """Count an instrument dropped for idleness; the housekeeping line names the event
        time it became idle (the same whether the sweep or its next window found it)."""
        self.m_cleared.inc()
        return f"cleared {instrument} {st.last_end + self.cfg.idle_ttl_ms}"

    def _sweep(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        """Drop the instruments silent for idle_ttl_ms; re-arm while any state is left.

        Judged at the watermark, not at the timer's own time, and re-armed on the first
        sweep time after the watermark: a timer can fire long after its time (one set
        behind the watermark waits for the next advance), and re-arming at its time +
        the interval left the sweep further behind event time at every step whenever the
        watermark moved fast (a replay, a backlog): idle instruments were not dropped
        (seen in tests/integration/test_process_function.py).
        """
        now = ctx.timer_service().current_processing_time()
        at = max(timestamp, ctx.timer_service().current_watermark())
        states = [(inst, InstrumentState.from_json(raw, self.cfg)) for inst, raw in self.states.items()]
        idle = [(inst, st) for inst, st in states if is_idle(st, at, self.cfg)]
        for inst, st in idle:
            yield from self._emit(close_if_quiet(st, at, self.cfg, now))  # (closed already)
            self._forget(inst)
            yield HOUSEKEEPING, self._cleared(inst, st)
        self.sweep_at.clear()
        nxt = (at // self.sweep_ms + 1) * self.sweep_ms
        # (counted here: the map's is_empty() lags removals; the end of input, watermark
        # Long.MAX, finds every instrument idle)
        if len(states) > len(idle) and nxt < END_OF_TIME:
            ctx.timer_service().register_event_time_timer(nxt)
            self.sweep_at.update(nxt)


def decide_batches(scored: DataStream, cfg: ThresholdConfig | None = None,
                   budget: AlertBudget | None = None) -> DataStream:  # fmt: skip
    """Scored window batches (SCORED_BATCH_TYPE, in order per instrument) -> alert JSON."""
    return (
        scored.key_by(lambda r: r[0], key_type=Types.INT())
        .process(ShardThresholds(cfg, budget=budget), output_type=Types.STRING())
        .name("adaptive-threshold")
        .uid("adaptive-threshold-by-shard")
    )
