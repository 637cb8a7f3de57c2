"""Job starts in a row: does the detection job ever fail while it is being planned?

    python bench/start_bench.py [--starts 30] [--race] [--unguarded] [--scorer-url URL] [--smoke]

Each start is a fresh driver process (its own JVM, as `jobs/detect_anomalies.py
--backtest FILE` gets): the job's own `main()` runs the whole start-up path (flags,
the model's geometry from the scorer, environment, sources, every planner call and
operator of build_pipeline) and, instead of running the job, builds its stream graph
(`get_execution_plan`: every operator translated, the Python ones included). The input
is a small simulated market (`darkpool generate --preset tiny`, made once).

--race      a second driver thread keeps closing idle Py4J connections, so the driver's
            calls often land on a new connection (a new JVM thread):
            what once failed a backtest 7 s after its start with
            `NullPointerException: metadataHandlerProvider` (see udfs/planner.py), made
            frequent. --unguarded makes the same calls without udfs.planner's guard, to
            show that the race is the cause (expect failures).
--smoke     1 start, with --race (the race thread runs beside the whole start-up path):
            the bench itself works.

Prints one JSON object: starts, failures, failures_npe, the first error of each kind,
seconds per start and the load average; exit 1 when a start failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NPE_MARK = "metadataHandlerProvider"


def market() -> Path:
    """A small simulated market (made once, kept in the temp folder)."""
    out = Path(tempfile.gettempdir()) / "darkpool-start-bench" / "market-tiny-2000"
    if not (out / "events.parquet").exists():
        subprocess.run([sys.executable, "-m", "darkpool.cli", "generate", "--preset", "tiny", "--events", "2000",
                        "--seed", "3", "--out", str(out)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    return out / "events.parquet"


def child(job_argv: list[str], race: bool, unguarded: bool) -> None:
    """One start, in this process: the job's main() with execute() building the graph only."""
    sys.path.insert(0, str(ROOT))
    from pyflink.datastream import StreamExecutionEnvironment

    from jobs import detect_anomalies
    from udfs import planner

    StreamExecutionEnvironment.execute = lambda self, job_name=None: self.get_execution_plan()
    if unguarded:  # the plain PyFlink calls, as the job made them before the guard
        planner.planned = lambda t_env, call, attempts=1: call()
    stop = threading.Event()
    if race:
        from pyflink.java_gateway import get_gateway

        client = get_gateway()._gateway_client

        def churn() -> None:
            """Every 50 ms, close an idle pooled Py4J connection: the driver's next call
            opens a new one, served by a new JVM thread, as when another Python thread
            held the pooled one at that moment (but deterministic enough to count)."""
            while not stop.wait(0.05):
                with contextlib.suppress(IndexError):  # IndexError: all in use
                    client.deque.pop().close()

        threading.Thread(target=churn, daemon=True).start()
    try:
        detect_anomalies.main(job_argv)
    finally:
        stop.set()


def one_start(
    events: Path, scorer_url: str, race: bool, unguarded: bool
) -> tuple[bool, float, str]:
    """(ok, seconds, the error's telling line) of one start in a fresh process."""
    job_argv = ["--backtest", str(events), "--scorer-url", scorer_url, "--job-name", "start-bench"]
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from bench.start_bench import child; "
            f"child({job_argv!r}, {race}, {unguarded})")  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    took = time.monotonic() - t0
    if proc.returncode == 0:
        return True, took, ""
    lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    telling = next((ln for ln in lines if f"Exception: {NPE_MARK}" in ln), None) or next(
        (ln for ln in reversed(lines) if "Error" in ln or "Exception" in ln),
        lines[-1] if lines else "",
    )
    return False, took, telling[:300]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--starts", type=int, default=30, help="job starts in a row [30]")
    p.add_argument(
        "--race",
        action="store_true",
        help="calls land on new Py4J connections (JVM threads) meanwhile",
    )
    p.add_argument(
        "--unguarded", action="store_true", help="without udfs.planner's guard (shows the cause)"
    )
    p.add_argument(
        "--scorer-url",
        default="http://127.0.0.1:9",
        help="scorer for the model's geometry; unreachable: the configured geometry [%(default)s]",
    )
    p.add_argument("--smoke", action="store_true", help="1 start, with --race")
    a = p.parse_args(argv)
    if a.starts < 1:
        p.error(f"--starts must be >= 1, got {a.starts}")
    events = market()
    plan = (
        [(True, a.unguarded)]  # each start is a JVM (~25 CPU s); the race one runs the plain path too
        if a.smoke
        else [(a.race, a.unguarded)] * a.starts
    )
    failures, npe, seconds, errors = 0, 0, [], {}
    for i, (race, unguarded) in enumerate(plan, 1):
        ok, took, error = one_start(events, a.scorer_url, race, unguarded)
        seconds.append(round(took, 1))
        if not ok:
            failures += 1
            npe += NPE_MARK in error
            errors.setdefault("npe" if NPE_MARK in error else "other", error)
        print(f"start {i}/{len(plan)}{' race' if race else ''}: {'ok' if ok else 'FAILED ' + error} ({took:.1f} s)",
              file=sys.stderr, flush=True)  # fmt: skip
    print(json.dumps({"starts": len(plan), "failures": failures, "failures_npe": npe, "race": a.race or a.smoke,
                      "unguarded": a.unguarded, "errors": errors, "seconds": seconds,
                      "load_avg": [round(x, 2) for x in os.getloadavg()]}))  # fmt: skip
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
