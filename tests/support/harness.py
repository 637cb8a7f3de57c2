"""An in-process operator harness for the job's process functions (no JVM).

Like flink-training's operator test harness: keyed value / map state and event-time
timers are emulated with Flink's semantics, so the production operator's state and
timer logic is checked fast, including that state and timers drop back to zero.

- State is per key (the harness's current key, set by `process` and by a firing timer);
  a map state holds an entry of the store only while it holds something. Values are
  copied in and out through pickle, as Flink's state serializers do, so an operator
  that mutates a value after `put` (and relies on the mutation being stored) fails here
  as it would on a cluster.
- Event-time timers fire in timestamp order when the watermark passes them, and
  processing-time timers when the harness clock (`now`, moved by `advance_time`)
  passes them; one timer per (key, timestamp) and domain; a deleted timer does not fire.
  `ctx.time_domain()` says which kind fires.
- Metrics: counters and gauges by name, a group's name in front ("darkpool.panes").
- Side outputs stay in the output list as the (tag, value) pairs the function yields.

Works for a KeyedProcessFunction and a plain ProcessFunction (key None). The async
scoring function is driven by `AsyncHarness` (an event loop of its own).
"""

from __future__ import annotations

import asyncio
import heapq
import pickle
from collections.abc import Callable, Iterable
from typing import Any

from pyflink.datastream import OutputTag, TimeDomain


def _copy(v: Any) -> Any:
    return None if v is None else pickle.loads(pickle.dumps(v))


class _Value:
    def __init__(self, harness: Harness, name: str):
        self.h, self.name = harness, name

    def value(self) -> Any:
        return _copy(self.h.store.get((self.h.key, self.name)))

    def update(self, v: Any) -> None:
        self.h.store[(self.h.key, self.name)] = _copy(v)

    def clear(self) -> None:
        self.h.store.pop((self.h.key, self.name), None)


class _Map:
    """MapState of the current key: an entry of the store only while it holds something."""

    def __init__(self, harness: Harness, name: str):
        self.h, self.name = harness, name

    def _map(self, create: bool = False) -> dict:
        k = (self.h.key, self.name)
        if create:
            return self.h.store.setdefault(k, {})
        return self.h.store.get(k, {})

    def get(self, key: Any) -> Any:
        return _copy(self._map().get(key))

    def put(self, key: Any, value: Any) -> None:
        self._map(create=True)[key] = _copy(value)

    def contains(self, key: Any) -> bool:
        return key in self._map()

    def remove(self, key: Any) -> None:
        m = self._map()
        m.pop(key, None)
        if not m:
            self.h.store.pop((self.h.key, self.name), None)

    def items(self) -> list[tuple[Any, Any]]:
        return [(k, _copy(v)) for k, v in self._map().items()]

    def keys(self) -> list[Any]:
        return list(self._map())

    def is_empty(self) -> bool:
        return not self._map()

    def clear(self) -> None:
        self.h.store.pop((self.h.key, self.name), None)


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def inc(self, k: int = 1) -> None:
        self.n += k


class Metrics:
    """A metric group: counters and gauges by full name (groups joined with '.')."""

    def __init__(self, prefix: str = "", root: Metrics | None = None) -> None:
        self.prefix = prefix
        root = root or self
        self.counters: dict[str, _Counter] = root.counters if root is not self else {}
        self.gauges: dict[str, Callable[[], Any]] = root.gauges if root is not self else {}

    def add_group(self, name: str) -> Metrics:
        return Metrics(f"{self.prefix}{name}.", self)

    def counter(self, name: str) -> _Counter:
        return self.counters.setdefault(self.prefix + name, _Counter())

    def gauge(self, name: str, fn: Callable[[], Any]) -> None:
        self.gauges[self.prefix + name] = fn

    def count(self, name: str) -> int:
        """A counter's value (0 if never created)."""
        return self.counters[name].n if name in self.counters else 0


class RuntimeContext:
    """What the functions' open() asks of Flink's runtime context."""

    def __init__(self, harness: Harness | None, metrics: Metrics):
        self.h, self.metrics = harness, metrics

    def get_state(self, desc: Any) -> _Value:
        return _Value(self.h, desc.name)

    def get_map_state(self, desc: Any) -> _Map:
        return _Map(self.h, desc.name)

    def get_metrics_group(self) -> Metrics:
        return self.metrics

    def get_index_of_this_subtask(self) -> int:
        return 0

    def get_number_of_parallel_subtasks(self) -> int:
        return 1


class Harness:
    """Keyed state + event-time timers with Flink's semantics, for one process function."""

    def __init__(self, fn: Any):
        self.fn, self.store, self.key = fn, {}, None
        self.timers: list[tuple[int, Any]] = []
        self.timer_set: set[tuple[int, Any]] = set()
        self.proc_timers: list[tuple[int, Any]] = []
        self.proc_timer_set: set[tuple[int, Any]] = set()
        self.watermark = -(2**63)
        self.now = 0  # processing time, ms
        self.domain = TimeDomain.EVENT_TIME
        self.metrics = Metrics()
        h = self

        class Timers:
            def current_watermark(self) -> int:
                return h.watermark

            def current_processing_time(self) -> int:
                return h.now

            def register_processing_time_timer(self, ts: int) -> None:
                if (ts, h.key) not in h.proc_timer_set:
                    h.proc_timer_set.add((ts, h.key))
                    heapq.heappush(h.proc_timers, (ts, h.key))

            def delete_processing_time_timer(self, ts: int) -> None:
                h.proc_timer_set.discard((ts, h.key))

            def register_event_time_timer(self, ts: int) -> None:
                if (ts, h.key) not in h.timer_set:
                    h.timer_set.add((ts, h.key))
                    heapq.heappush(h.timers, (ts, h.key))

            def delete_event_time_timer(self, ts: int) -> None:
                h.timer_set.discard((ts, h.key))

        class Ctx:
            def timer_service(self) -> Timers:
                return Timers()

            def get_current_key(self) -> Any:
                return h.key

            def timestamp(self) -> None:
                return None

            def time_domain(self) -> TimeDomain:
                return h.domain

        self.ctx = Ctx()
        fn.open(RuntimeContext(self, self.metrics))

    def process(self, value: Any, key: Any = None) -> list:
        """One record under `key` (None for a non-keyed function): what the function emits."""
        self.key = key
        return list(self.fn.process_element(value, self.ctx) or ())

    def advance(self, watermark: int) -> list:
        """Move the watermark (never back) and fire the event-time timers it passes, in order."""
        self.watermark = max(self.watermark, watermark)
        return self._fire(self.timers, self.timer_set, self.watermark, TimeDomain.EVENT_TIME)

    def advance_time(self, now_ms: int) -> list:
        """Move the processing-time clock (never back) and fire the timers it passes."""
        self.now = max(self.now, now_ms)
        return self._fire(self.proc_timers, self.proc_timer_set, self.now, TimeDomain.PROCESSING_TIME)

    def _fire(self, heap: list, live: set, until: int, domain: TimeDomain) -> list:
        out = []
        while heap and heap[0][0] <= until:
            ts, key = heapq.heappop(heap)
            if (ts, key) not in live:
                continue  # deleted
            live.discard((ts, key))
            self.key, self.domain = key, domain
            out += list(self.fn.on_timer(ts, self.ctx) or ())
        self.domain = TimeDomain.EVENT_TIME
        return out

    def state_names(self, key: Any) -> set[str]:
        """Names of the states that hold something for `key`."""
        return {name for (k, name) in self.store if k == key}


def main_output(out: Iterable[Any]) -> list[Any]:
    """The records of the main output (side outputs are (tag, value) pairs)."""
    return [o for o in out if not (isinstance(o, tuple) and len(o) == 2 and isinstance(o[0], OutputTag))]


def side_output(out: Iterable[Any], tag: Any) -> list[Any]:
    """The values emitted on side output `tag`."""
    return [o[1] for o in out if isinstance(o, tuple) and len(o) == 2 and o[0] is tag]


class AsyncHarness:
    """An AsyncFunction on an event loop of its own (the async operator's loop thread),
    opened with a harness runtime context."""

    def __init__(self, fn: Any):
        self.fn, self.metrics = fn, Metrics()
        self.loop = asyncio.new_event_loop()
        fn.open(RuntimeContext(None, self.metrics))

    def invoke(self, values: list[Any], concurrent: bool = True) -> list[Any]:
        """`fn.async_invoke` of each value, results in input order (as ordered_wait emits
        them); all in flight at once (`concurrent`) or one after the other. An exception
        of any invocation is raised, as it fails the task."""

        async def main() -> list[Any]:
            if concurrent:
                return list(await asyncio.gather(*(self.fn.async_invoke(v) for v in values)))
            return [await self.fn.async_invoke(v) for v in values]

        return self.loop.run_until_complete(main())

    def close(self) -> None:
        # the HTTP session lives on this loop: close it here, before the loop goes
        client = getattr(self.fn, "_client", None)
        if client is not None:
            self.loop.run_until_complete(client.close())
        self.fn.close()
        self.loop.close()
