"""Dynamic batching: many concurrent requests -> one model call.

Requests (each B >= 1 windows) wait in a bounded queue. The batching task takes the
oldest request, then keeps adding queued requests until the batch holds `max_batch`
windows or the oldest request has waited `max_delay_s`. The model runs in one worker
thread (torch releases the GIL), so the event loop keeps accepting and queueing
requests meanwhile: the next batch fills while this one computes.

A full queue rejects a request immediately with `Overloaded` (HTTP 503) instead of
growing without bound. One request larger than `max_batch` is run on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from model.scorer.metrics import Metrics

# run_batch(windows [N, T, F]) -> (outputs by name, each [N, ...], model version)
RunBatch = Callable[[np.ndarray], tuple[dict[str, np.ndarray], str]]


class Overloaded(RuntimeError):
    """The queue is full; the client should back off and retry."""


@dataclass
class _Pending:
    x: np.ndarray  # [B, T, F]
    future: asyncio.Future  # -> (outputs [B, ...], version)
    enqueued: float  # time.perf_counter() at submit


class DynamicBatcher:
    def __init__(self, run_batch: RunBatch, max_batch: int, max_delay_s: float, max_queue: int,
                 metrics: Metrics):
        if max_batch < 1 or max_queue < max_batch:
            raise ValueError(f"need max_batch >= 1 and max_queue >= max_batch (got {max_batch}, {max_queue})")
        self.run_batch = run_batch
        self.max_batch, self.max_delay_s, self.max_queue = max_batch, max_delay_s, max_queue
        self.metrics = metrics
        self._queue: deque[_Pending] = deque()
        self._queued_windows = 0
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scorer-model")
        self._task: asyncio.Task | None = None
        self.in_flight = 0  # requests submitted and not yet answered

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)

    async def submit(self, x: np.ndarray) -> tuple[dict[str, np.ndarray], str]:
        """Queue one request; resolves with its own rows of the batch outputs."""
        if self._queued_windows + len(x) > self.max_queue:
            self.metrics.inc("rejected_overloaded_total")
            raise Overloaded(f"scorer overloaded: {self._queued_windows} windows queued (max {self.max_queue}); retry later")
        fut = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(x, fut, time.perf_counter()))
        self._queued_windows += len(x)
        self.metrics.set("queue_windows", self._queued_windows)
        self._wakeup.set()
        self.in_flight += 1
        try:
            return await fut
        finally:
            self.in_flight -= 1

    def _take_batch(self) -> list[_Pending]:
        batch = [self._queue.popleft()]
        n = len(batch[0].x)
        while self._queue and n + len(self._queue[0].x) <= self.max_batch:
            p = self._queue.popleft()
            batch.append(p)
            n += len(p.x)
        self._queued_windows -= n
        self.metrics.set("queue_windows", self._queued_windows)
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            # wait for more requests until the batch is full or the oldest one is due
            deadline = self._queue[0].enqueued + self.max_delay_s
            while self._queued_windows < self.max_batch:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            batch = self._take_batch()
            started = time.perf_counter()
            queued = 0.0
            for p in batch:
                self.metrics.observe("queue_seconds", started - p.enqueued)
                queued += started - p.enqueued
            x = batch[0].x if len(batch) == 1 else np.concatenate([p.x for p in batch])
            try:
                outputs, version = await loop.run_in_executor(self._executor, self.run_batch, x)
            except Exception as exc:  # one failed batch fails its requests, not the server
                self.metrics.inc("batch_errors_total")
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            compute = time.perf_counter() - started
            self.metrics.observe("inference_seconds", compute)
            self.metrics.model(version).batch(len(x), len(batch), queued, compute)
            self.metrics.observe("batch_windows", len(x))
            self.metrics.observe("batch_requests", len(batch))
            lo = 0
            for p in batch:
                hi = lo + len(p.x)
                if not p.future.done():  # the client may have gone away
                    p.future.set_result(({k: v[lo:hi] for k, v in outputs.items()}, version))
                lo = hi
