"""Stack start time and idle memory, on an isolated stack (own run dir and ports).

Prints one JSON object:
  cold_start_s   `up` on an empty run dir (includes formatting Kafka storage)
  warm_start_s   `up` again after `down` (storage kept, configs regenerated)
  stop_s         `down` (TERM, wait for the process groups to exit)
  idle_rss_mb    resident memory per part after --idle seconds with no job
  idle_cpu_pct   CPU of each part over that idle period (percent of one core)

  .venv/bin/python bench/stack_bench.py [--profile default|production] [--idle 20] [--keep] [--port-offset 0]
  .venv/bin/python bench/stack_bench.py --smoke     # one start and stop, 2 s idle: checks the script

`--profile` is the stack's memory profile (darkpool/stack/settings.py PROFILES): the
README's idle figures are one run of each.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from darkpool.stack import core
from darkpool.stack.procs import group_members
from darkpool.stack.settings import PROFILES, StackConfig

PORTS = {"kafka_port": 39092, "controller_port": 39093, "rest_port": 38081, "jm_rpc_port": 36123, "prom_port": 39249}


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description="stack start time and idle memory")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds to let the stack settle")
    parser.add_argument("--keep", action="store_true", help="leave the run dir (logs) behind")
    parser.add_argument("--profile", default=StackConfig.profile, choices=sorted(PROFILES), help="memory profile")
    parser.add_argument("--port-offset", type=int, default=0, help="added to each port (two runs at once)")
    parser.add_argument("--smoke", action="store_true", help="seconds: 2 s idle, no second start")
    args = parser.parse_args()
    if args.smoke:
        args.idle = min(args.idle, 2.0)

    run_dir = Path(tempfile.mkdtemp(prefix="darkpool-bench-"))
    cfg = StackConfig(run_dir=run_dir, profile=args.profile, **{k: v + args.port_offset for k, v in PORTS.items()})
    result: dict[str, object] = {"run_dir": str(run_dir), "cores": os.cpu_count(), "profile": cfg.profile,
                                 "smoke": args.smoke}  # fmt: skip
    try:
        t0 = time.monotonic()
        core.up(cfg)
        result["cold_start_s"] = round(time.monotonic() - t0, 2)

        parts = core.status(cfg)
        groups = {p.name: group_members(p.pid) for p in parts if p.pid}
        before = {n: cpu_ticks(g) for n, g in groups.items()}
        time.sleep(args.idle)
        hz = os.sysconf("SC_CLK_TCK")
        result["idle_cpu_pct"] = {n: round(100 * (cpu_ticks(g) - before[n]) / hz / args.idle, 1) for n, g in groups.items()}
        parts = core.status(cfg)
        result["idle_rss_mb"] = {p.name: round(p.rss_mb) for p in parts}
        result["idle_rss_total_mb"] = round(sum(p.rss_mb for p in parts))

        t0 = time.monotonic()
        core.down(cfg)
        result["stop_s"] = round(time.monotonic() - t0, 2)
        if not args.smoke:
            t0 = time.monotonic()
            core.up(cfg)
            result["warm_start_s"] = round(time.monotonic() - t0, 2)
    finally:
        core.down(cfg)
        if not args.keep:
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
