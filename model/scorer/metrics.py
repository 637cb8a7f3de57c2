"""Scorer metrics: the Prometheus text format (counters, gauges, fixed-bucket histograms)
at `/metrics`, and Triton's statistics extension at `/v2/models/{name}/stats`.

Small on purpose: the scorer is single-process and single-loop, so plain dicts suffice
(no locks; the model thread never touches them).
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict
from typing import Any

PREFIX = "darkpool_scorer_"
# Histogram bucket upper bounds per metric (seconds or counts).
BUCKETS: dict[str, tuple[float, ...]] = {
    "queue_seconds": (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
    "inference_seconds": (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
    "request_seconds": (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 2.0),
    "batch_windows": (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
    "batch_requests": (1, 2, 4, 8, 16, 32, 64, 128),
}
HELP = {
    "requests_total": "inference requests answered, by the HTTP status code sent",
    "windows_total": "windows scored",
    "rejected_overloaded_total": "requests rejected because the queue was full",
    "batch_errors_total": "model batches that raised",
    "reloads_total": "successful artifact reloads",
    "queue_windows": "windows waiting in the batching queue",
    "queue_seconds": "time a request waited before its batch started",
    "inference_seconds": "model time per batch",
    "request_seconds": "server time per inference request",
    "batch_windows": "windows per model batch",
    "batch_requests": "requests per model batch",
}


class Metrics:
    def __init__(self) -> None:
        self.counters: dict[tuple[str, str], float] = defaultdict(float)  # (name, label text)
        self.gauges: dict[str, float] = {}
        self.hist: dict[str, list[float]] = {k: [0.0] * (len(b) + 1) for k, b in BUCKETS.items()}
        self.hist_sum: dict[str, float] = defaultdict(float)
        self.models: dict[str, ModelStats] = {}  # by model version

    def model(self, version: str) -> ModelStats:
        return self.models.setdefault(version, ModelStats())

    def inc(self, name: str, value: float = 1.0, labels: str = "") -> None:
        self.counters[(name, labels)] += value

    def set(self, name: str, value: float) -> None:
        self.gauges[name] = value

    def observe(self, name: str, value: float) -> None:
        self.hist[name][bisect.bisect_left(BUCKETS[name], value)] += 1
        self.hist_sum[name] += value

    def render(self, info: dict[str, str]) -> str:
        labels = ",".join(f'{k}="{v}"' for k, v in info.items())
        lines = [f"# HELP {PREFIX}model_info loaded model", f"# TYPE {PREFIX}model_info gauge",
                 f"{PREFIX}model_info{{{labels}}} 1"]
        for name in sorted({n for n, _ in self.counters}):
            lines += [f"# HELP {PREFIX}{name} {HELP.get(name, name)}", f"# TYPE {PREFIX}{name} counter"]
            for (n, labels), v in sorted(self.counters.items()):
                if n == name:
                    lines.append(f"{PREFIX}{n}{'{' + labels + '}' if labels else ''} {v:g}")
        for name, v in sorted(self.gauges.items()):
            lines += [f"# HELP {PREFIX}{name} {HELP.get(name, name)}", f"# TYPE {PREFIX}{name} gauge",
                      f"{PREFIX}{name} {v:g}"]
        for name, counts in self.hist.items():
            lines += [f"# HELP {PREFIX}{name} {HELP[name]}", f"# TYPE {PREFIX}{name} histogram"]
            cum = 0.0
            for bound, c in zip((*BUCKETS[name], float("inf")), counts, strict=True):
                cum += c
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                lines.append(f'{PREFIX}{name}_bucket{{le="{le}"}} {cum:g}')
            lines += [f"{PREFIX}{name}_sum {self.hist_sum[name]:g}", f"{PREFIX}{name}_count {cum:g}"]
        return "\n".join(lines) + "\n"


def _duration() -> dict[str, int]:
    return {"count": 0, "ns": 0}


class ModelStats:
    """One model version's counters, in the shape of Triton's statistics extension:
    counts are per request (success, fail, queue, compute_infer) or per model call
    (execution_count, batch_stats); times in nanoseconds. The model call is not split
    into input / infer / output, so compute_infer holds all of it."""

    def __init__(self) -> None:
        self.last_inference_ms = 0
        self.inference_count = 0  # windows scored
        self.execution_count = 0  # model calls
        self.durations = {k: _duration() for k in (
            "success", "fail", "queue", "compute_input", "compute_infer", "compute_output")}
        self.batches: dict[int, dict[str, int]] = {}  # batch size -> compute_infer duration

    def _add(self, d: dict[str, int], count: int, seconds: float) -> None:
        d["count"] += count
        d["ns"] += int(seconds * 1e9)

    def request(self, ok: bool, seconds: float) -> None:
        self._add(self.durations["success" if ok else "fail"], 1, seconds)
        if ok:
            self.last_inference_ms = int(time.time() * 1000)

    def batch(self, windows: int, requests: int, queue_seconds: float, compute_seconds: float) -> None:
        self.inference_count += windows
        self.execution_count += 1
        self._add(self.durations["queue"], requests, queue_seconds)
        self._add(self.durations["compute_infer"], requests, compute_seconds * requests)
        self._add(self.batches.setdefault(windows, _duration()), 1, compute_seconds)

    def document(self, name: str, version: str) -> dict[str, Any]:
        return {
            "name": name, "version": version, "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count, "execution_count": self.execution_count,
            "inference_stats": {**self.durations, "cache_hit": _duration(), "cache_miss": _duration()},
            "batch_stats": [{"batch_size": n, "compute_input": _duration(), "compute_infer": dict(d),
                             "compute_output": _duration()} for n, d in sorted(self.batches.items())],
        }
