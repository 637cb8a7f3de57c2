"""udfs/heartbeat.py: the beat reaches the worker per key and changes nothing else.

The JVM side (a dead worker failing the task at the next beat) is measured by
bench/chaos.py with python_worker faults (`noticed_s`); here, the Python side: one
aligned processing-time timer per key, re-armed by each beat, no output, and the wrapped
function's records and event-time timers passed through untouched.
"""

from __future__ import annotations

from typing import Any

import pytest
from pyflink.datastream import KeyedProcessFunction, TimeDomain

from udfs.heartbeat import Heartbeat, next_beat


class Inner(KeyedProcessFunction):
    """Echoes records, sets an event-time timer at the record's value, emits on it."""

    def __init__(self) -> None:
        self.opened = self.closed = False
        self.timers_seen: list[int] = []

    def open(self, runtime_context: Any) -> None:
        self.opened = True

    def close(self) -> None:
        self.closed = True

    def process_element(self, value, ctx):
        ctx.timer_service().register_event_time_timer(value)
        yield ("out", value)

    def on_timer(self, timestamp, ctx):
        self.timers_seen.append(timestamp)
        yield ("timer", timestamp)


class Ctx:
    """A keyed context whose timer service records registrations (JVM timer semantics:
    one timer per key and timestamp)."""

    def __init__(self) -> None:
        self.key: Any = None
        self.now = 0
        self.domain = TimeDomain.EVENT_TIME
        self.processing: set[tuple[Any, int]] = set()
        self.event: set[tuple[Any, int]] = set()
        ctx = self

        class Timers:
            def current_processing_time(self) -> int:
                return ctx.now

            def register_processing_time_timer(self, ts: int) -> None:
                ctx.processing.add((ctx.key, ts))

            def register_event_time_timer(self, ts: int) -> None:
                ctx.event.add((ctx.key, ts))

        self.timers = Timers()

    def timer_service(self):
        return self.timers

    def get_current_key(self):
        return self.key

    def time_domain(self):
        return self.domain


def test_one_aligned_beat_per_key_and_records_untouched():
    inner, ctx = Inner(), Ctx()
    hb = Heartbeat(inner, every_ms=5000)
    hb.open(None)
    assert inner.opened
    ctx.now = 12_345
    out = []
    for key, value in [(0, 100), (0, 200), (1, 300)]:
        ctx.key = key
        out += list(hb.process_element(value, ctx))
    assert out == [("out", 100), ("out", 200), ("out", 300)]  # the wrapped function's records, as they were
    assert ctx.processing == {(0, 15_000), (1, 15_000)}  # one beat per key, on a multiple of every_ms
    assert ctx.event == {(0, 100), (0, 200), (1, 300)}  # its own timers untouched
    hb.close()
    assert inner.closed


def test_a_beat_rearms_and_emits_nothing_an_event_timer_is_delegated():
    inner, ctx = Inner(), Ctx()
    hb = Heartbeat(inner, every_ms=5000)
    hb.open(None)
    ctx.key, ctx.now = 3, 15_004
    ctx.domain = TimeDomain.PROCESSING_TIME
    assert list(hb.on_timer(15_000, ctx)) == []
    assert ctx.processing == {(3, 20_000)}  # the next beat
    assert inner.timers_seen == []  # a beat is not the wrapped function's timer
    ctx.domain = TimeDomain.EVENT_TIME
    assert list(hb.on_timer(100, ctx)) == [("timer", 100)]
    assert inner.timers_seen == [100]


def test_a_late_beat_rearms_after_now_and_a_restored_worker_does_not_double_it():
    inner, ctx = Inner(), Ctx()
    hb = Heartbeat(inner, every_ms=5000)
    hb.open(None)  # a new worker after a restore: its timers came back from the checkpoint
    ctx.key, ctx.now, ctx.domain = 7, 31_000, TimeDomain.PROCESSING_TIME
    list(hb.on_timer(15_000, ctx))  # fired late (the restore took a while)
    assert ctx.processing == {(7, 35_000)}  # after now, not in the past
    ctx.domain = TimeDomain.EVENT_TIME
    list(hb.process_element(1, ctx))  # the key is known armed: no second chain
    assert ctx.processing == {(7, 35_000)}


def test_bad_interval_is_refused():
    with pytest.raises(ValueError, match="every_ms must be >= 1"):
        Heartbeat(Inner(), every_ms=0)
    assert next_beat(0, 5000) == 5000
