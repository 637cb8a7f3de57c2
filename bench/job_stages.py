"""Where the job's time goes: the same graph cut after each stage, on the backtest source.

    python bench/job_stages.py [--instruments 20] [--events 300000] [--duration 30m]
                               [--stages parse,panes,windows,scored,full] [--artifact DIR]

Runs jobs/detect_anomalies' own stages on the local mini cluster, parallelism 1, over a
generated market written as JSON lines (the --backtest source: no Kafka, so the figure
is the job's own cost). Each cut discards its output; each runs once on an empty file to
measure its fixed start-up, and its rate is events / (wall - start-up). A scorer is
started for the stages that need one. Prints one JSON object.

  parse    SQL parse + validate + late split -> discard          (JVM only)
  panes    + TUMBLE pandas UDAF + dead-letter split -> discard   (Python from here)
  windows  + keyed window assembly
  scored   + async scoring over HTTP
  full     + adaptive thresholds / coalescing (alerts printed to a discard)
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
sys.path.insert(0, str(ROOT))

STAGES = ("parse", "panes", "windows", "scored", "full")


def _discard(stream) -> None:
    stream.filter(lambda _: False).name("discard").print().name("discard-sink")


def run_stage(stage: str, path: str, scorer_url: str) -> None:
    """Child process: build the graph up to `stage` over `path` and run it to the end."""
    from jobs import detect_anomalies as job
    from jobs.job_config import JobConfig

    cfg = JobConfig(scorer=job.from_env(job.ScorerEndpoint, scorer_url=scorer_url),
                    parallelism=1, job_name=f"stages-{stage}")  # fmt: skip
    env, t_env = job.make_env(cfg, job.local_jars())
    main_view, side_view, _ = job.register_source(t_env, cfg, path)
    if stage == "parse":
        t_env.execute_sql("CREATE TEMPORARY TABLE sink (n BIGINT) WITH ('connector' = 'blackhole')")
        t_env.execute_sql(f"INSERT INTO sink SELECT ts FROM {main_view} UNION ALL "
                          f"SELECT ts FROM {side_view}").wait()  # fmt: skip
        return
    p = job.build_pipeline(t_env, main_view, side_view, cfg, alerts_sink=None,
                           dead_letter_sink=_discard, stop_after=stage)  # fmt: skip
    _discard({"panes": p.panes, "windows": p.windows, "scored": p.scored, "full": p.alerts}[stage])
    env.execute(f"stages-{stage}")


def _wall(stage: str, path: str, scorer_url: str) -> float:
    t0 = time.time()
    out = subprocess.run([sys.executable, __file__, "--run-stage", stage, path, scorer_url],
                         cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    if out.returncode:
        raise RuntimeError(f"stage {stage} failed:\n{(out.stdout + out.stderr)[-3000:]}")
    return time.time() - t0


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--run-stage":
        run_stage(*sys.argv[2:5])
        return
    from job_bench import start_scorer  # bench/ is on sys.path when run as a script

    from darkpool.paths import artifacts_dir
    from udfs.sources import parquet_to_ndjson

    p = argparse.ArgumentParser()
    p.add_argument("--instruments", type=int, default=20)
    p.add_argument("--events", type=int, default=300_000)
    p.add_argument("--duration", default="30m")
    p.add_argument("--stages", default=",".join(STAGES))
    p.add_argument("--artifact", type=Path, default=artifacts_dir() / "small")
    p.add_argument("--scorer-port", type=int, default=8598)
    a = p.parse_args()
    stages = [s for s in a.stages.split(",") if s]
    tmp = Path(tempfile.mkdtemp(prefix="job-stages-"))
    subprocess.run([sys.executable, "-m", "darkpool.cli", "generate", "--preset", "default",
                    "--instruments", str(a.instruments), "--events", str(a.events),
                    "--duration", a.duration, "--out", str(tmp)], cwd=ROOT, check=True,
                   capture_output=True)  # fmt: skip
    full, empty = tmp / "events.jsonl", tmp / "empty.jsonl"
    parquet_to_ndjson(str(tmp / "events.parquet"), str(full))
    empty.write_text("")
    url = f"http://127.0.0.1:{a.scorer_port}"
    scorer = start_scorer(a.artifact, a.scorer_port) if {"scored", "full"} & set(stages) else None
    result: dict[str, dict] = {}
    try:
        for stage in stages:
            startup, wall = _wall(stage, str(empty), url), _wall(stage, str(full), url)
            result[stage] = {"wall_s": round(wall, 1), "startup_s": round(startup, 1),
                             "events_per_s": round(a.events / max(wall - startup, 1e-9))}  # fmt: skip
            print(stage, result[stage], file=sys.stderr, flush=True)
    finally:
        if scorer:
            scorer.kill()
    print(json.dumps({"events": a.events, "instruments": a.instruments, "duration": a.duration,
                      "stages": result, "load_average": os.getloadavg(), "cpus": os.cpu_count()}))  # fmt: skip


if __name__ == "__main__":
    main()
