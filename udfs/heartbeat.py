"""A processing-time heartbeat through a keyed Python operator: a dead worker is missed
within seconds, even when no record comes.

PyFlink runs the Python operators of a slot in one worker process (the Beam SDK
harness). The TaskManager does not watch that process: it finds it dead only when it next
hands it work (a bundle of records, a timer) and the gRPC call fails, which fails the
task and restarts the job. A worker killed while the job idles (a quiet market, a source
at the end of its topic) therefore went unseen until the next record, for minutes or
for ever (bench/chaos.py counted those kills as `unnoticed`).

`Heartbeat(fn)` wraps a KeyedProcessFunction: for every key it has seen, a
processing-time timer fires every `every_ms` and reaches the worker. A live worker just
re-arms it (no output, no state touched); a dead one fails the task at that firing
(measured: the job restarted 10.3-10.9 s after an idle worker was killed, README).
Timers sit on multiples of `every_ms`, so the JVM's timer service (which keeps one timer
per key and timestamp) holds at most one per key, also after a restore from a checkpoint
(the timers are checkpointed, the worker's memory of armed keys is not). The wrapped
function's own timers (event time) and its results are untouched, so the operator's
state, uid and output stay what they were. Cost: one timer round trip per key every
`every_ms` (the job's shards: a few a second).

On a bounded input's end, pending processing-time timers are dropped (Flink quiesces
the timer service), so the heartbeat never holds a job back from FINISHED.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pyflink.datastream import KeyedProcessFunction, RuntimeContext, TimeDomain

DEFAULT_EVERY_MS = 5000


def next_beat(now_ms: int, every_ms: int) -> int:
    """The first multiple of every_ms after now_ms.

    >>> next_beat(12_345, 5000), next_beat(15_000, 5000)
    (15000, 20000)
    """
    return (now_ms // every_ms + 1) * every_ms


class Heartbeat(KeyedProcessFunction):
    """`fn` with a processing-time heartbeat timer per key (see the module doc)."""

    def __init__(self, fn: KeyedProcessFunction, every_ms: int = DEFAULT_EVERY_MS):
        if every_ms < 1:
            raise ValueError(f"heartbeat every_ms must be >= 1, got {every_ms}")
        self.fn = fn
        self.every_ms = every_ms
        self._armed: set[Any] = set()  # keys with a beat pending, as far as this worker knows

    def open(self, runtime_context: RuntimeContext) -> None:
        self._armed = set()
        self.fn.open(runtime_context)

    def close(self) -> None:
        self.fn.close()

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterable[Any]:
        key = ctx.get_current_key()
        if key not in self._armed:
            timers = ctx.timer_service()
            timers.register_processing_time_timer(
                next_beat(timers.current_processing_time(), self.every_ms)
            )
            self._armed.add(key)
        return self.fn.process_element(value, ctx) or ()

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterable[Any]:
        if ctx.time_domain() == TimeDomain.PROCESSING_TIME:  # a beat: the worker is alive
            timers = ctx.timer_service()
            timers.register_processing_time_timer(next_beat(max(timestamp, timers.current_processing_time()),
                                                            self.every_ms))  # fmt: skip
            self._armed.add(ctx.get_current_key())
            return ()
        return self.fn.on_timer(timestamp, ctx) or ()
