"""Scorer throughput and latency vs windows per request and concurrent clients; prints JSON.

    .venv/bin/python bench/scorer_bench.py [--artifact DIR] [--seconds 3] [--preset small] [--backends torch,jax]
    .venv/bin/python bench/scorer_bench.py --smoke

Starts a real scorer process (CPU unless --device says otherwise) and drives it over
HTTP from this process with the asyncio client, so on a 2-core machine the clients and
the server share the cores (the figures include that). Without --artifact a freshly
initialized model of --preset is used: speed does not depend on the weights. Also
races the backends (model/scorer/backends.py) on the model alone (in-process, no HTTP).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _scorer_load import drive, start_scorer, stop_scorer  # also puts the repo on sys.path

from model.artifact import load_artifact, save_artifact
from model.config import preset
from model.transformer import ScoringModel


def race(artifact: Path, backend: str, batch: int, seconds: float) -> dict:
    """One backend's forward (model/scorer/backends.py) on one batch size, in this process:
    windows/s, windows per CPU-second, p50 / p99 per call."""
    from model.scorer.backends import make_forward

    art = load_artifact(artifact)
    forward = make_forward(backend, art)
    x = np.random.default_rng(0).normal(0, 1, (batch, art.cfg.n_buckets, art.cfg.n_channels)).astype(np.float32)
    forward(x)  # compile / warm up
    lat = []
    c0, t0 = time.process_time(), time.perf_counter()
    while time.perf_counter() - t0 < seconds or len(lat) < 3:
        t = time.perf_counter()
        forward(x)
        lat.append(time.perf_counter() - t)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"backend": backend, "batch": batch, "windows_per_s": round(len(lat) * batch / wall, 1),
            "windows_per_cpu_s": round(len(lat) * batch / cpu, 1),
            "p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 3),
            "p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 3)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", type=Path, default=None)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--seconds", type=float, default=3.0, help="per configuration")
    ap.add_argument("--batches", default="1,16,64,256", help="windows per request")
    ap.add_argument("--clients", default="1,8,32", help="concurrent requests")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-batch", type=int, default=512)
    ap.add_argument("--max-delay-ms", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=1, help="scorer torch threads (0 = torch default)")
    ap.add_argument("--backends", default="torch,jax",
                    help="model/scorer/backends.py engines to race in-process (batches 1, 64, 256) and to serve")
    ap.add_argument("--smoke", action="store_true", help="seconds: 0.2 s per configuration, batches 1 and 64, 1 and 4 clients")
    args = ap.parse_args()
    if args.smoke:
        args.seconds, args.batches, args.clients = 0.2, "1,64", "1,4"
    if args.threads:
        torch.set_num_threads(args.threads)  # the in-process figures use the same thread count

    with tempfile.TemporaryDirectory() as tmp:
        artifact = args.artifact
        if artifact is None:
            torch.manual_seed(0)
            artifact = Path(tmp) / "artifact"
            save_artifact(artifact, ScoringModel(preset(args.preset)), 0.5, 0.01, {})
        art = load_artifact(artifact)
        shape = (art.cfg.n_buckets, art.cfg.n_channels)
        result = {
            "bench": "scorer", "preset": args.preset if args.artifact is None else str(artifact),
            "device": args.device, "cpu_count": os.cpu_count(), "load_avg_1m": os.getloadavg()[0],
            "max_batch": args.max_batch, "max_delay_ms": args.max_delay_ms, "scorer_threads": args.threads,
            "service": [],
        }
        backends = [b.strip() for b in args.backends.split(",") if b.strip()]
        if args.threads == 1:  # the in-process race on one thread, as the scorer runs each backend
            os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
        result["race"] = [race(artifact, be, b, 0.2 if args.smoke else args.seconds)
                          for be in backends for b in (1, 64, 256)]  # fmt: skip
        # smoke: one scorer start (each jax start compiles ~10 programs); the unit tests
        # serve every backend through the scorer's ModelRunner
        for backend in backends[:1] if args.smoke else backends:
            proc, url = start_scorer(artifact, ["--device", args.device, "--max-batch", str(args.max_batch),
                                                "--max-delay-ms", str(args.max_delay_ms), "--threads",
                                                str(args.threads), "--backend", backend])  # fmt: skip
            try:
                for b in [int(v) for v in args.batches.split(",")]:
                    for c in [int(v) for v in args.clients.split(",")]:
                        result["service"].append({"backend": backend, **drive(url, b, c, args.seconds, shape, proc.pid)})
            finally:
                stop_scorer(proc)
        at256 = {r["backend"]: r["windows_per_cpu_s"] for r in result["race"] if r["batch"] == 256}
        result["fastest_backend_at_256"] = max(at256, key=at256.get)
        result["best_windows_per_s"] = max(r["windows_per_s"] for r in result["service"])
        # what 2 dedicated cores would give if the same work were CPU-bound (see drive())
        result["best_windows_per_cpu_s"] = max(r["windows_per_cpu_s"] for r in result["service"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
