"""The decision stage's pure cost per window (no Flink): prints JSON, µs per window.

    .venv/bin/python bench/decision_bench.py [--windows 3000] [--repeat 3] [--smoke]

What `ShardThresholds` does for each scored window, timed piece by piece on one warm
instrument state (the steady state of a live job): unpickle the scored batch, one
`coalesce.step` (baseline, channel normals, threshold, episode), and the state's JSON
write and read (the read is skipped in the job while the worker's own write is still
cached). Best of --repeat. In the full job this is one of three per-window Python stages
(window assembly, scoring, decision); jobs/README.md has the job-level figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.coalesce import InstrumentState, step  # noqa: E402
from core.features import CHANNELS  # noqa: E402
from core.records import ScoredWindow, encode_scored_batch  # noqa: E402
from udfs.shard_thresholds import checked, scored_windows  # noqa: E402

WARM_UP = 500  # windows the state has seen before timing (past every warm-up branch)


def scored(n: int, seed: int = 0) -> list[ScoredWindow]:
    """n consecutive normal-looking windows of one instrument (5 s slide, 60 s windows)."""
    rng = np.random.default_rng(seed)
    f = len(CHANNELS)
    return [
        ScoredWindow(
            instrument="ABC", window_start=i * 5000, window_end=i * 5000 + 60_000,
            score=float(rng.random() * 0.5), scenario_probs=tuple(rng.dirichlet(np.ones(9)).tolist()),
            recon_error=float(rng.random()), channel_z=tuple(rng.normal(size=f).tolist()),
            volatility=float(rng.random()), volume=float(rng.random() * 1e4), model_version="bench",
            global_threshold=1.0, max_event_ts=i * 5000 + 59_000, features=tuple(rng.normal(size=f).tolist()),
            participants=(("F1.A1", 0.5), ("F2.A1", 0.5)),
        )  # fmt: skip
        for i in range(n)
    ]


def best_us(fn, n: int, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t0) / n * 1e6)
    return round(min(runs), 1)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--windows", type=int, default=3000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--smoke", action="store_true", help="seconds, tiny sizes: checks that the script runs (its figures mean nothing)")
    a = p.parse_args()
    if a.smoke:
        a.windows, a.repeat = 100, 1
    cfg = checked(None)
    windows = scored(WARM_UP + a.windows)
    warm = InstrumentState()
    for w in windows[:WARM_UP]:
        step(warm, w, cfg, 0)
    text, timed = warm.to_json(), windows[WARM_UP:]
    batch = (0, encode_scored_batch(timed))

    def steps() -> None:
        st = InstrumentState.from_json(text)
        for w in timed:
            step(st, w, cfg, 0)

    n = len(timed)
    out = {
        "unpickle_scored_batch": best_us(lambda: scored_windows(batch), n, a.repeat),
        "step": best_us(steps, n, a.repeat),
        "state_to_json": best_us(lambda: [warm.to_json() for _ in range(n)], n, a.repeat),
        "state_from_json": best_us(lambda: [InstrumentState.from_json(text) for _ in range(n)], n, a.repeat),
    }
    print(json.dumps({"us_per_window": out, "state_json_bytes": len(text), "windows": n,
                      "load_average": os.getloadavg(), "cpus": os.cpu_count()}))  # fmt: skip


if __name__ == "__main__":
    main()
