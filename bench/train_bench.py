"""Training cost per preset: seconds per optimizer step and peak memory; prints JSON.

    .venv/bin/python bench/train_bench.py [--data data/default] [--steps-small 30] [--steps-large 3] [--smoke]

Each preset runs in its own process (so peak RSS is per preset) for a few optimizer
steps on random windows of the real shape, batch 256, CPU float32 unless --device.
Baseline and enhanced only run --steps-large steps on CPU (minutes per epoch would be
hours there): their figures are per-step costs, not full trainings. With --data, a full
`darkpool train --preset small` on that data is timed as well (wall time, peak RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_preset(name: str, steps: int, batch: int, device: str, threads: int) -> dict:
    sys.path.insert(0, str(ROOT))
    import torch
    import torch.nn.functional as F

    if threads:
        torch.set_num_threads(threads)

    from model.config import preset
    from model.transformer import ScoringModel, count_params

    torch.manual_seed(0)
    m = ScoringModel(preset(name)).to(device)
    opt = torch.optim.AdamW(m.net.parameters(), lr=1e-3)
    x = torch.randn(batch, m.cfg.n_buckets, m.cfg.n_channels, device=device)
    y = (torch.rand(batch, device=device) < 0.1).float()
    s = torch.randint(0, m.cfg.n_scenarios, (batch,), device=device)
    times, cpu = [], []
    for i in range(steps + 1):  # step 0 is warm-up, not timed
        t0, c0 = time.perf_counter(), time.process_time()
        logit, scen, recon = m.net(x)
        loss = F.binary_cross_entropy_with_logits(logit, y) + F.cross_entropy(scen, s) + (recon - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    sec = sum(times) / len(times)
    return {"preset": name, "params_m": round(count_params(m) / 1e6, 3), "steps_timed": steps, "batch": batch,
            "seconds_per_step": round(sec, 4), "windows_per_s": round(batch / sec, 1),
            # CPU seconds per step: what the step costs whatever else runs on the machine
            "cpu_seconds_per_step": round(sum(cpu) / len(cpu), 4),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "torch_threads": torch.get_num_threads(), "device": device}


def full_train(data: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "darkpool.cli", "train", "--data", str(data), "--preset",
                               "small", "--out", f"{tmp}/art"], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        wall = time.perf_counter() - t0
        if proc.returncode:
            return {"error": proc.stderr[-2000:]}
        metrics = json.loads(Path(f"{tmp}/art/metrics.json").read_text())
    return {"preset": "small", "data": str(data), "wall_seconds": round(wall, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
            "steps": metrics["steps"], "best_step": metrics["best_step"],
            "train_windows_used": metrics["windows"]["train_used"],
            "val_pr_auc": metrics["val"].get("pr_auc"), "test_pr_auc": metrics["test"].get("pr_auc")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--steps-small", type=int, default=30)
    ap.add_argument("--steps-large", type=int, default=3)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (training default: 1)")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one preset here
    ap.add_argument("--smoke", action="store_true", help="seconds: preset small, 1 timed step of batch 8, no --data run")
    args = ap.parse_args()
    if args.smoke:
        args.steps_small, args.steps_large, args.batch, args.data = 1, 1, 8, None
    if args.one:
        steps = args.steps_small if args.one == "small" else args.steps_large
        print(json.dumps(one_preset(args.one, steps, args.batch, args.device, args.threads)))
        return
    out = {"bench": "train", "cpu_count": os.cpu_count(), "load_avg_1m": os.getloadavg()[0],
           "note": f"baseline/enhanced: {args.steps_large} timed steps only (per-step cost), not full runs",
           "presets": []}
    # smoke: one preset (each is a process that imports torch); the presets themselves are
    # the model tests' business, this checks that the bench still drives one
    for name in ("small",) if args.smoke else ("small", "baseline", "enhanced"):
        proc = subprocess.run([sys.executable, __file__, "--one", name, "--steps-small", str(args.steps_small),
                               "--steps-large", str(args.steps_large), "--batch", str(args.batch),
                               "--device", args.device, "--threads", str(args.threads)],
                              capture_output=True, text=True)
        out["presets"].append(json.loads(proc.stdout) if proc.returncode == 0 else {"preset": name,
                                                                                    "error": proc.stderr[-1000:]})
    if args.data:
        out["full_train_small"] = full_train(args.data)
    print(json.dumps(out))
    failed = [p["preset"] for p in out["presets"] if "error" in p]
    if failed:  # printed above with their errors; the exit status says it too
        raise SystemExit(f"train_bench: preset(s) {', '.join(failed)} failed")


if __name__ == "__main__":
    main()
