"""The scorer under a standard HTTP load tool (`hey`), with plain OIP v2 JSON requests; prints JSON.

    .venv/bin/python bench/scorer_hey.py --artifact DIR [--requests 2000] [--concurrency 8] [--batch 16]
    .venv/bin/python bench/scorer_hey.py --smoke

`hey` (github.com/rakyll/hey, a Go module) is installed on first use into the cache
outside the clone ($DARKPOOL_CACHE/tools, needs the `go` toolchain). Each request is one
`POST /v2/models/darkpool/infer` with `--batch` windows as a JSON tensor, exactly as any
OIP v2 client would send it (no binary extension). A non-200 answer is counted, never
hidden: the `status_codes` field lists them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.paths import cache_dir  # noqa: E402
from darkpool.stack.scorer import ScorerProcess  # noqa: E402
from model.artifact import load_artifact  # noqa: E402

HEY = "github.com/rakyll/hey@v0.1.4"


def hey_binary() -> Path:
    tools = cache_dir() / "tools"
    exe = tools / "hey"
    if not exe.exists():
        tools.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(["go", "install", HEY], env={**os.environ, "GOBIN": str(tools)}, check=True,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
        except FileNotFoundError:
            raise SystemExit("bench/scorer_hey.py: `go` is not on PATH; install Go to build the load tool") from None
        except subprocess.CalledProcessError as exc:
            raise SystemExit(f"bench/scorer_hey.py: `go install {HEY}` failed:\n{exc.stderr[-2000:]}") from None
    return exe


def parse_hey(text: str) -> dict:
    """hey's summary -> numbers (requests/s, latency percentiles in ms, status codes)."""
    out: dict = {}
    if m := re.search(r"Requests/sec:\s+([\d.]+)", text):
        out["requests_per_s"] = float(m.group(1))
    for pct, secs in re.findall(r"(\d+)%% in ([\d.]+) secs", text.replace("%", "%%")):
        out[f"latency_p{pct}_ms"] = round(float(secs) * 1000, 2)
    out["status_codes"] = {code: int(n) for code, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", text)}
    errors = re.search(r"Error distribution:(.*)", text, re.S)
    out["errors"] = errors.group(1).strip()[:500] if errors else ""
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifact", type=Path, help="a `darkpool train` artifact folder")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--batch", type=int, default=16, help="windows per request")
    p.add_argument("--threads", type=int, default=1, help="the scorer's torch threads")
    p.add_argument("--smoke", action="store_true", help="seconds: 100 requests of 4 windows, 2 at a time, an untrained model")
    a = p.parse_args()
    if a.smoke:
        sys.path.insert(0, str(ROOT / "bench"))
        from _smoke import untrained_artifact

        a.requests, a.concurrency, a.batch = min(a.requests, 100), min(a.concurrency, 2), min(a.batch, 4)
        a.artifact = a.artifact or untrained_artifact(Path(tempfile.mkdtemp(prefix="hey-smoke-")) / "model")
    elif a.artifact is None:
        p.error("--artifact is required (or --smoke)")
    if not (a.artifact / "VERSION").exists():
        raise SystemExit(f"bench/scorer_hey.py: {a.artifact} is not a model artifact (no VERSION file)")
    exe = hey_binary()
    cfg = load_artifact(a.artifact).cfg
    x = np.random.default_rng(0).normal(0, 1, (a.batch, cfg.n_buckets, cfg.n_channels)).astype(np.float32)
    body = {"inputs": [{"name": "windows", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}],
            "outputs": [{"name": "score"}]}  # fmt: skip
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(body, f)
    with ScorerProcess(a.artifact, options=("--device", "cpu", "--threads", str(a.threads))) as scorer:
        t0 = time.time()
        done = subprocess.run([str(exe), "-n", str(a.requests), "-c", str(a.concurrency), "-m", "POST",
                               "-T", "application/json", "-D", f.name, f"{scorer.url}/v2/models/darkpool/infer"],
                              capture_output=True, text=True, timeout=1800)  # fmt: skip
        wall = time.time() - t0
    os.unlink(f.name)
    if done.returncode != 0:
        raise SystemExit(f"bench/scorer_hey.py: hey failed (rc {done.returncode}): {done.stderr[-1000:]}")
    res = parse_hey(done.stdout)
    res.update(tool=HEY, requests=a.requests, concurrency=a.concurrency, windows_per_request=a.batch,
               body_bytes=len(json.dumps(body)), wall_s=round(wall, 1), load_avg_1m=os.getloadavg()[0],
               windows_per_s=round(res.get("requests_per_s", 0) * a.batch, 1))  # fmt: skip
    print(json.dumps(res))


if __name__ == "__main__":
    main()
