"""Detection on a labeled data set through the job's own backtest path, graded.

    python bench/detection_bench.py --artifact artifacts/small --data DIR [--out DIR]
    python bench/detection_bench.py --smoke

Starts the scorer on the artifact, runs `jobs/detect_anomalies.py --backtest
DIR/events.parquet` (the real job on Flink's mini cluster: panes, instrument normals,
windows, async scoring, adaptive thresholds, coalescing), keeps the alert events it
prints as JSON lines (OUT/alerts.jsonl), and grades them against DIR/episodes.parquet
with the evaluation's job-alert grading: episode recall overall and per scenario,
scenario type accuracy, false alerts per instrument-hour, clean 10-second bins inside an
alert's evidence span, alert durations, threshold sources; per instrument too. The data
folder is what `darkpool generate` or `darkpool inject` writes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _scorer_load import start_scorer, stop_scorer  # noqa: E402

from darkpool.evaluate.alerts_grading import (  # noqa: E402
    events_file,
    grade_alerts,
    is_clean,
    rate_table,
    summary_table,
    write_alert_report,
)


def run_backtest(artifact: Path, events: Path, out: Path, timeout_s: float,
                 job_flags: tuple[str, ...] = ()) -> tuple[list[dict], float]:  # fmt: skip
    """The job's alert events on `events` (a contract Parquet file), and the run's seconds."""
    proc, url = start_scorer(artifact, [])
    try:
        t0 = time.time()
        r = subprocess.run(
            [sys.executable, str(ROOT / "jobs" / "detect_anomalies.py"), "--backtest", str(events), "--scorer-url", url, *job_flags],
            capture_output=True, text=True, timeout=timeout_s, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        seconds = time.time() - t0
    finally:
        stop_scorer(proc)
    (out / "job.stderr").write_text(r.stderr)
    if r.returncode != 0:
        raise SystemExit(f"the backtest failed (rc {r.returncode}); its log: {out / 'job.stderr'}")
    alerts = []
    for line in r.stdout.splitlines():
        # the print sink prefixes each record with its subtask ("1> {...}")
        text = line.split("> ", 1)[1] if line[:1].isdigit() and "> " in line else line
        if text.startswith("{") and '"alert_id"' in text:
            alerts.append(json.loads(text))
    (out / "alerts.jsonl").write_text("".join(json.dumps(a) + "\n" for a in alerts))
    return alerts, seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--artifact", type=Path, help="model artifact folder (darkpool train)")
    p.add_argument("--data", type=Path, help="labeled folder: events.parquet + episodes.parquet; or a clean stretch "
                   "(a Parquet file, or a folder without episodes.parquet): every alert is false")
    p.add_argument("--out", type=Path, default=None, help="where alerts.jsonl and the report go [default: DATA/detection]")
    p.add_argument("--timeout-s", type=float, default=3600.0, help="backtest time limit")
    p.add_argument("--alert-budget", type=Path, default=None,
                   help="the job's --alert-budget FILE (darkpool budget): grade the job with that budget")
    p.add_argument("--smoke", action="store_true",
                   help="seconds: a 4,000-event market and an untrained model (checks the script, grades nothing real)")
    a = p.parse_args()
    if a.smoke:
        import tempfile

        from _smoke import tiny_market, untrained_artifact

        tmp = Path(tempfile.mkdtemp(prefix="detection-smoke-"))
        a.artifact, a.data, a.timeout_s = untrained_artifact(tmp / "model"), tiny_market(tmp / "market"), min(a.timeout_s, 300)
    elif a.artifact is None or a.data is None:
        p.error("--artifact and --data are required (or --smoke)")
    for need in (a.artifact / "config.json", events_file(a.data)):
        if not need.exists():
            raise SystemExit(f"{need} does not exist: give a trained --artifact and a --data folder or Parquet file")
    if is_clean(a.data):
        print(f"{a.data} has no episodes.parquet: a clean stretch, every alert counts as false "
              "(its alerts.jsonl is what `darkpool budget --alerts` calibrates on)")
    out = a.out or (a.data.with_suffix("") if a.data.suffix == ".parquet" else a.data) / "detection"
    out.mkdir(parents=True, exist_ok=True)
    if a.alert_budget is not None and not a.alert_budget.is_file():
        raise SystemExit(f"--alert-budget {a.alert_budget} does not exist (write one with `darkpool budget`)")
    flags = ("--alert-budget", str(a.alert_budget)) if a.alert_budget else ()
    alerts, seconds = run_backtest(a.artifact, events_file(a.data), out, a.timeout_s, flags)
    print(f"backtest: {len(alerts)} alert events in {seconds:.1f} s (load {os.getloadavg()[0]:.2f})")
    res = grade_alerts(alerts, a.data, allow_clean=True)
    res["backtest_seconds"] = round(seconds, 1)
    print(summary_table(res))
    print("recall at an alert budget (the alerts with the largest margins, as many as each rate allows):")
    print(rate_table(res))
    print("threshold sources of the alerts' last events:", res["threshold_sources"])
    print(f"report: {write_alert_report(res, str(a.data), out)}")


if __name__ == "__main__":
    main()
