"""GPU benchmark of the enhanced preset in bf16: in-process and through the scorer; prints JSON.

Prepared for a machine with CUDA (run from the repo root):

    PYTHONUNBUFFERED=1 python bench/gpu_bench.py [--preset enhanced] [--seconds 3]
    python bench/gpu_bench.py --dry-run      # checks the script on CPU (small preset); = --smoke

Needs torch, numpy, aiohttp, click, safetensors, pyarrow, pandas (no trained artifact:
a freshly initialized model is as fast as a trained one). Targets from the issue:
>= 100k windows/s, p99 <= 2.3 ms per request.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _scorer_load import drive, start_scorer, stop_scorer  # noqa: E402  (puts the repo on sys.path)

from core.features import N_CHANNELS  # noqa: E402
from model.artifact import save_artifact  # noqa: E402
from model.config import preset  # noqa: E402
from model.transformer import ScoringModel, count_params  # noqa: E402


@torch.inference_mode()
def in_process(model: ScoringModel, batch: int, seconds: float, device: torch.device) -> dict:
    cfg = model.cfg
    x = torch.randn(batch, cfg.n_buckets, cfg.n_channels, device=device)
    for _ in range(5):
        model(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    lat = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        model(x)["score"].cpu()  # includes the copy back, as the scorer does
        lat.append(time.perf_counter() - t0)
    lat_ms = np.array(lat) * 1e3
    return {"batch": batch, "windows_per_s": round(batch * len(lat) / sum(lat), 1),
            "p50_ms": round(float(np.percentile(lat_ms, 50)), 3), "p99_ms": round(float(np.percentile(lat_ms, 99)), 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="enhanced")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--skip-service", action="store_true")
    ap.add_argument("--dry-run", action="store_true",
                    help="check the script on a CPU machine: small preset, float32, short runs")
    ap.add_argument("--smoke", action="store_true", help="--dry-run with one scorer start (every bench script has --smoke)")
    args = ap.parse_args()
    if args.dry_run or args.smoke:
        dev, dtype, name, args.seconds = torch.device("cpu"), torch.float32, "small", 0.3
        torch.set_num_threads(1)
        batches, service_cfgs = (1, 64), ((1, 1), (64, 4))
    else:
        if not torch.cuda.is_available():
            print(json.dumps({"bench": "gpu", "error": "CUDA is not available on this machine (try --dry-run)"}))
            sys.exit(1)
        dev, dtype, name = torch.device("cuda"), torch.bfloat16, args.preset
        batches = (1, 64, 256, 1024, 4096, 16384)
        service_cfgs = ((1, 1), (1, 32), (64, 8), (256, 8), (256, 32), (1024, 16))
        torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(0)
    model = ScoringModel(preset(name))
    result: dict = {"bench": "gpu", "preset": name, "device": str(dev),
                    "gpu": torch.cuda.get_device_name(0) if dev.type == "cuda" else None,
                    "torch": torch.__version__, "params_m": round(count_params(model) / 1e6, 2),
                    "dtype": str(dtype).removeprefix("torch.")}
    with tempfile.TemporaryDirectory() as tmp:
        artifact = Path(tmp) / "artifact"
        save_artifact(artifact, model, 0.5, 0.01, {})
        model.to(dev).eval()
        model.net.to(dtype)
        result["in_process"] = [in_process(model, b, args.seconds, dev) for b in batches]
        del model
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        if not args.skip_service:
            service = []
            for max_delay in (2.0,) if args.smoke else (0.5, 2.0):  # smoke: one scorer start
                proc, url = start_scorer(artifact, ["--device", dev.type, "--dtype", result["dtype"],
                                                    "--max-batch", "8192", "--max-queue", "65536",
                                                    "--max-delay-ms", str(max_delay)])
                try:
                    for b, c in service_cfgs:
                        r = drive(url, b, c, args.seconds, (12, N_CHANNELS))
                        service.append({"max_delay_ms": max_delay, **r})
                        print(json.dumps(service[-1]), file=sys.stderr, flush=True)
                finally:
                    stop_scorer(proc)
            result["service"] = service
            result["best_service_windows_per_s"] = max(r["windows_per_s"] for r in service)
    result["best_in_process_windows_per_s"] = max(r["windows_per_s"] for r in result["in_process"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
