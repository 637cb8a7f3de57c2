"""End-to-end time of `darkpool explain` on a large history: the command as an analyst
runs it (a fresh process: imports, the alert file, the filtered Parquet read, the
summary and the PNG), wall seconds.

    python bench/explain_bench.py [--events 1000000] [--episode 0] [--repeat 3] [--cache DIR] [--smoke]

The market (`darkpool generate --preset default --events N --seed 1`) is made once and
kept in --cache (a folder of the system's temp dir by default); the alert is one made
for episode --episode (bench/_episode_alert.py). Prints one JSON line: events, the best
of --repeat runs in explain_s, every run in runs_s, and the 1-minute load average.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def market(cache: Path, events: int, smoke: bool) -> Path:
    """The cached market of `events` events (generated when absent)."""
    from bench._smoke import tiny_market

    out = cache / f"market-{'smoke' if smoke else events}"
    if smoke and not (out / "episodes.parquet").exists():
        tiny_market(out, events)
    elif not (out / "episodes.parquet").exists():
        subprocess.run([sys.executable, "-m", "darkpool.cli", "generate", "--preset", "default", "--events", str(events),
                        "--seed", "1", "--out", str(out)], cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--episode", type=int, default=0, help="which episode of the market the alert is for")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "darkpool-explain-bench")
    p.add_argument("--smoke", action="store_true", help="seconds, tiny sizes: checks that the script runs (its figures mean nothing)")
    a = p.parse_args()
    if a.smoke:
        a.events, a.repeat = 4000, 1
    from bench._episode_alert import episode_alert

    data = market(a.cache, a.events, a.smoke)
    events = episode_alert(data, a.episode)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        alerts = Path(tmp) / "alerts.jsonl"
        alerts.write_text("".join(json.dumps(e) + "\n" for e in events))
        for i in range(a.repeat):
            argv = [sys.executable, "-m", "darkpool.cli", "explain", events[-1]["alert_id"], "--alerts", str(alerts),
                    "--data", str(data), "--out", str(Path(tmp) / f"out-{i}")]  # fmt: skip
            t0 = time.perf_counter()
            done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"darkpool explain failed:\n{done.stdout}{done.stderr}")
            runs.append(round(time.perf_counter() - t0, 3))
    print(json.dumps({"events": a.events, "explain_s": min(runs), "runs_s": runs, "instrument": events[-1]["instrument"],
                      "load": round(os.getloadavg()[0], 2)}))  # fmt: skip


if __name__ == "__main__":
    main()
