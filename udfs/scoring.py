"""Scoring through Flink async I/O: window batches -> ScoredWindows (core/records.py).

`ScoreWindows` is used with `AsyncDataStream.ordered_wait(..., timeout=0, capacity)`.
Its input is one window batch per (instrument shard, pane) (udfs/assembler.py); its
output is one record per batch too (`SCORED_BATCH_TYPE`: the shard and its
ScoredWindows, packed by `encode_scored_batch`), for the decision stage keyed by shard
(udfs/shard_thresholds.py).

- Capacity bounds the batches in flight per subtask; a full queue backpressures.
- Timeout 0 on the operator: PyFlink would otherwise start one `threading.Timer` per
  record (measured: 6.4k -> 2.7k calls/s). Each HTTP attempt is bounded instead by
  `asyncio.wait_for` inside the coroutine.
- Micro-batching: batches that arrive while a request is being prepared share one HTTP
  call (up to `max_batch` windows, waiting at most `linger_ms`); a larger batch is sent
  in chunks of `max_batch`, so no request exceeds the scorer's queue. The scorer batches
  further across requests.
- Retries: `retries` extra attempts with exponential backoff on timeouts, refused
  connections, 503 and 5xx. A 400 is not retried (the same request fails the same way).
  When the attempts run out the coroutine raises: PyFlink fails the task at the next
  element or bundle end, and the job restarts from its last checkpoint. A checkpoint
  completes only after the in-flight windows were answered (the Python bundle drains the
  async queue first), so no window is lost or skipped; windows scored after the
  checkpoint are scored again, and the decision stage / exactly-once sink see one copy.
- Degraded mode (opt-in: `rules`, from `--degraded-rules`): when the attempts run out,
  the batch is scored by the artifact's calibrated surveillance rules (model/rules.py)
  instead of failing the task, and marked `degraded` (alerts say so, with model version
  `rules-<hash>` and threshold source `rules`). For `probe_s` after a failure batches go
  straight to the rules; then the next batch tries the scorer again. Without it (the
  default) a scorer outage fails the task as above: no window is ever scored silently
  by something else.

The client is created lazily inside the coroutine (it must live on the async
operator's own event loop, which does not exist yet in `open`). Metrics are gauges
(windows scored, in flight, batches, retries, latency p50/p99/max in microseconds over
the last 1,024 requests): counters updated from the loop thread would not be reported.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from typing import Any

import numpy as np
from pyflink.common import Row
from pyflink.datastream import RuntimeContext
from pyflink.datastream.functions import AsyncFunction

from core.config import GeometryMismatch, WindowConfig, check_geometry
from core.features import window_pane_surprise
from core.records import ScoredWindow, encode_scored_batch
from udfs.assembler import window_batch_arrays, window_participants

LATENCY_SAMPLES = 1024  # requests kept for the latency percentiles


class ScorerDown(RuntimeError):
    """The scorer did not answer after all retries: the task fails, the job restarts."""


class ScoreWindows(AsyncFunction):
    def __init__(
        self,
        scorer_url: str,
        model_name: str,
        n_buckets: int,
        slide_s: int,
        timeout_s: float,
        retries: int,
        backoff_s: float,
        max_batch: int = 256,
        linger_ms: float = 2.0,
        rules: dict[str, Any] | None = None,
        probe_s: float = 10.0,
    ):
        self._url, self._model, self._t = scorer_url, model_name, n_buckets
        self._rules_dict, self._probe_s = rules, probe_s  # Rules.to_dict(): plain, picklable
        self._slide_ms = slide_s * 1000
        self._timeout_s, self._retries, self._backoff_s = timeout_s, retries, backoff_s
        self._max_batch, self._linger_s = max_batch, linger_ms / 1000.0
        self._client: Any = None

    # ---- lifecycle / metrics ------------------------------------------------------
    def open(self, runtime_context: RuntimeContext) -> None:
        self._scored = self._in_flight = self._batches = self._retried = 0
        self._lat_us: collections.deque[int] = collections.deque(maxlen=LATENCY_SAMPLES)
        self._pending: list[tuple[np.ndarray, asyncio.Future]] = []
        self._pending_n = 0  # windows in self._pending
        self._flush_handle: asyncio.TimerHandle | None = None
        self._meta: Any = None
        self._rules: Any = None
        if self._rules_dict is not None:
            from model.rules import Rules  # lazy: worker-side import

            self._rules = Rules.from_dict(self._rules_dict)
        self._degraded_until = 0.0  # monotonic time until which batches skip the scorer
        self._degraded = 0
        g = runtime_context.get_metrics_group().add_group("darkpool")
        g.gauge("windows_degraded", lambda: self._degraded)
        g.gauge("windows_scored", lambda: self._scored)
        g.gauge("scorer_in_flight", lambda: self._in_flight)
        g.gauge("scorer_batches", lambda: self._batches)
        g.gauge("scorer_retries", lambda: self._retried)
        g.gauge("scorer_latency_p50_us", lambda: self._percentile(50))
        g.gauge("scorer_latency_p99_us", lambda: self._percentile(99))
        g.gauge("scorer_latency_max_us", lambda: max(self._lat_us, default=0))

    def _check_geometry(self, window: dict[str, int]) -> None:
        """A model (re)loaded with another window geometry would score these windows
        without error and meaninglessly: fail the task instead (not retried)."""
        from model.scorer.client import ScorerRequestError  # lazy: worker-side import, as in _call
        slide_s = self._slide_ms // 1000
        try:  # `window`: from the scorer's model configuration parameters
            check_geometry(WindowConfig(self._t * slide_s, slide_s), window, "the scorer's model")
        except GeometryMismatch as exc:
            raise ScorerRequestError(str(exc)) from None

    def _percentile(self, q: float) -> int:
        samples = list(self._lat_us)
        return int(np.percentile(samples, q)) if samples else 0

    def close(self) -> None:
        # The loop thread is stopped by PyFlink after this; the session dies with it.
        self._client = None

    # ---- the async call -----------------------------------------------------------
    async def async_invoke(self, value: Any) -> list[Row]:
        # Positional access: rows arrive from the assembler without their field names.
        shard, end, instruments, max_ts, _, _, volatility, volume, _, read_ms = value
        windows, features = window_batch_arrays(value, self._t)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending.append((windows, fut))
        self._pending_n += len(windows)
        self._in_flight += len(windows)
        try:
            if self._pending_n >= self._max_batch:
                self._flush()
            elif self._flush_handle is None:
                self._flush_handle = asyncio.get_running_loop().call_later(
                    self._linger_s, self._flush
                )
            result, rows, threshold, degraded = await fut
        finally:
            self._in_flight -= len(windows)
        self._scored += len(windows)
        parts = window_participants(value)
        surprise = window_pane_surprise(windows).round(3)  # the decision stage's evidence span
        end = int(end)
        start = end - self._t * self._slide_ms
        out = []
        for i, r in enumerate(rows):
            out.append(
                ScoredWindow(
                    instrument=instruments[i],
                    window_start=start,
                    window_end=end,
                    score=float(result.score[r]),
                    scenario_probs=tuple(result.scenario_probs[r].tolist()),
                    recon_error=float(result.recon_error[r]),
                    channel_z=tuple(result.channel_z[r].tolist()),
                    volatility=float(volatility[i]),
                    volume=float(volume[i]),
                    model_version=result.model_version,
                    global_threshold=threshold,
                    max_event_ts=int(max_ts[i]),
                    features=tuple(features[i].tolist()),
                    participants=tuple((str(n), float(w)) for n, w in parts[i][0]),
                    degraded=degraded,
                    pane_surprise=tuple(surprise[i].tolist()),
                    read_ms=int(read_ms[i]),
                    packed_accounts=tuple(parts[i][1]),
                )
            )
        return [Row(int(shard), encode_scored_batch(out))]

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        batch, self._pending, self._pending_n = self._pending, [], 0
        if batch:
            asyncio.get_running_loop().create_task(self._score_batch(batch))

    async def _score_batch(self, batch: list[tuple[np.ndarray, asyncio.Future]]) -> None:
        x = batch[0][0] if len(batch) == 1 else np.concatenate([w for w, _ in batch])
        degraded = False
        try:
            if self._rules is not None and time.monotonic() < self._degraded_until:
                result, threshold, degraded = self._score_by_rules(x), self._rules_threshold(), True
            else:
                chunks = range(0, len(x), self._max_batch)  # no request over max_batch windows
                results = await asyncio.gather(
                    *(self._score_with_retries(x[lo : lo + self._max_batch]) for lo in chunks)
                )
                result = results[0][0] if len(results) == 1 else _concat([r for r, _ in results])
                threshold = results[-1][1]
        except ScorerDown as exc:
            if self._rules is None:
                return _fail(batch, exc)
            self._degraded_until = time.monotonic() + self._probe_s
            result, threshold, degraded = self._score_by_rules(x), self._rules_threshold(), True
        except Exception as exc:  # every waiting batch fails with the same cause
            return _fail(batch, exc)
        if degraded:
            self._degraded += len(x)
        lo = 0
        for windows, fut in batch:
            hi = lo + len(windows)
            if not fut.done():
                fut.set_result((result, range(lo, hi), threshold, degraded))
            lo = hi

    def _score_by_rules(self, x: np.ndarray) -> Any:
        """Degraded mode: the artifact's calibrated rules, shaped like a scorer answer."""
        from model.scorer.client import ScoreResult  # lazy: worker-side import

        return ScoreResult(
            score=self._rules.score(x),
            scenario_probs=self._rules.scenario_probs(x),
            recon_error=np.zeros(len(x)),
            channel_z=self._rules.channel_scores(x),
            model_version=self._rules.version(),
        )

    def _rules_threshold(self) -> float:
        from model.rules import THRESHOLD

        return THRESHOLD

    async def _score_with_retries(self, windows: np.ndarray) -> tuple[Any, float]:
        from model.scorer.client import ScorerClient, ScorerRequestError  # lazy: worker-side import

        if self._client is None:
            self._client = ScorerClient(self._url, self._model, timeout_s=self._timeout_s)
        last: Exception | None = None
        for attempt in range(self._retries + 1):
            if attempt:
                self._retried += 1
                await asyncio.sleep(self._backoff_s * 2 ** (attempt - 1))
            t0 = time.perf_counter()
            try:
                result = await asyncio.wait_for(self._client.score(windows), self._timeout_s)
                if self._meta is None or self._meta.version != result.model_version:
                    # The global threshold belongs to the model version that scored.
                    self._meta = await asyncio.wait_for(self._client.metadata(), self._timeout_s)
                    self._check_geometry(self._meta.window)
            except ScorerRequestError:
                raise
            except Exception as exc:  # refused, timeout, 503, 5xx, malformed answer
                last = exc
                continue
            self._lat_us.append(int((time.perf_counter() - t0) * 1e6))
            self._batches += 1
            return result, float(self._meta.threshold)
        raise ScorerDown(
            f"scorer at {self._url} failed {self._retries + 1} attempts for a batch of "
            f"{len(windows)} windows (last error: {last!r}); failing the task so the job "
            "restarts from its last checkpoint"
        )


def _fail(batch: list[tuple[np.ndarray, asyncio.Future]], exc: BaseException) -> None:
    for _, fut in batch:
        if not fut.done():
            fut.set_exception(exc)


def _concat(results: list[Any]) -> Any:
    """ScoreResults of the chunks of one flush -> one (rows in chunk order)."""
    first = results[0]
    return dataclasses.replace(
        first,
        **{
            f.name: np.concatenate([getattr(r, f.name) for r in results])
            for f in dataclasses.fields(first)
            if isinstance(getattr(first, f.name), np.ndarray)
        },
    )
