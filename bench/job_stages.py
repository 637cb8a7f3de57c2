"""Where the job's time goes: the same graph cut after each stage, on the backtest source.

    python bench/job_stages.py [--instruments 20] [--events 300000] [--duration 30m]
                               [--stages parse,panes,windows,scored,full] [--artifact DIR]
    python bench/job_stages.py --stages read,floor-jvm,floor-pandas ...   (the shape's ceiling)
    python bench/job_stages.py --smoke                                    (checks the script)

Runs jobs/detect_anomalies' own stages on the local mini cluster, parallelism 1, over a
generated market written as JSON lines (the --backtest source: no Kafka, so the figure
is the job's own cost). Each cut discards its output; each runs once on an empty file to
measure its fixed start-up, and its rate is events / (wall - start-up). Beside the rate,
the CPU seconds the run's JVM and Python processes used beyond the empty run, per event
(on a saturated 2-core box CPU per event is the figure that adds up). A scorer is started
for the stages that need one. Prints one JSON object.

  parse    SQL parse + validate + late split -> discard          (JVM only)
  panes    + TUMBLE pandas UDAF + dead-letter split -> discard   (Python from here)
  windows  + keyed window assembly
  scored   + async scoring over HTTP
  full     + adaptive thresholds / coalescing (alerts printed to a discard)

The ceiling of the job's shape, whatever the features cost (not part of the job):
  read          the raw source only -> discard
  floor-jvm     parse + validate + keyed TUMBLE(slide) per shard with COUNT (JVM only)
  floor-pandas  the same with a pandas UDAF over the pane UDAF's columns whose body only
                counts the rows: every event crosses into Python once, as in the job
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = ("parse", "panes", "windows", "scored", "full")
FLOORS = ("read", "floor-jvm", "floor-pandas")


def _floor_query(t_env, main_view: str, stage: str, slide_s: int) -> str:
    """SQL of a ceiling stage: the pane stage's grouping with a trivial aggregate."""
    from pyflink.table import DataTypes
    from pyflink.table.udf import udaf

    from udfs.pane_udaf import SHARD_FUNCTION, UDAF_COLUMNS

    if stage == "read":
        return "SELECT CHAR_LENGTH(payload) FROM trades_raw"
    aggregate = "COUNT(ts)"
    if stage == "floor-pandas":
        count_rows = udaf(lambda *cols: len(cols[0]), result_type=DataTypes.BIGINT(), func_type="pandas")
        t_env.create_temporary_function("count_rows", count_rows)
        aggregate = f"count_rows({', '.join(UDAF_COLUMNS)})"
    return f"""SELECT shard, {aggregate}
FROM (SELECT *, {SHARD_FUNCTION}(instrument, 1) AS shard FROM {main_view})
GROUP BY shard, TUMBLE(rowtime, INTERVAL '{slide_s}' SECOND)"""


def _discard(stream) -> None:
    stream.filter(lambda _: False).name("discard").print().name("discard-sink")


def run_stage(stage: str, path: str, scorer_url: str, overrides: str = "{}") -> None:
    """Child process: build the graph up to `stage` over `path` and run it to the end."""
    from core.config import ScorerEndpoint, from_env
    from core.job_config import JobConfig
    from jobs import detect_anomalies as job

    cfg = JobConfig(scorer=from_env(ScorerEndpoint, scorer_url=scorer_url),
                    parallelism=1, job_name=f"stages-{stage}", **json.loads(overrides))  # fmt: skip
    env, t_env = job.make_env(cfg, job.local_jars())
    main_view, side_view, _ = job.register_source(t_env, cfg, path)
    if stage in FLOORS:
        cols = "n BIGINT" if stage == "read" else "shard INT, n BIGINT"
        t_env.execute_sql(f"CREATE TEMPORARY TABLE sink ({cols}) WITH ('connector' = 'blackhole')")
        t_env.execute_sql("INSERT INTO sink " + _floor_query(t_env, main_view, stage, cfg.window.slide_s)).wait()
        return
    if stage == "parse":
        t_env.execute_sql("CREATE TEMPORARY TABLE sink (n BIGINT) WITH ('connector' = 'blackhole')")
        t_env.execute_sql(f"INSERT INTO sink SELECT ts FROM {main_view} UNION ALL "
                          f"SELECT ts FROM {side_view}").wait()  # fmt: skip
        return
    p = job.build_pipeline(t_env, main_view, side_view, cfg, alerts_sink=None,
                           dead_letter_sink=_discard, stop_after=stage)  # fmt: skip
    _discard({"panes": p.panes, "windows": p.windows, "scored": p.scored, "full": p.alerts}[stage])
    env.execute(f"stages-{stage}")


def _run(stage: str, path: str, scorer_url: str, overrides: dict) -> dict:
    from job_bench import _timed  # bench/ is on sys.path when run as a script

    try:
        return _timed([sys.executable, __file__, "--run-stage", stage, path, scorer_url, json.dumps(overrides)])
    except RuntimeError as exc:
        raise RuntimeError(f"stage {stage} failed: {exc}") from None


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--run-stage":
        run_stage(*sys.argv[2:6])
        return
    from job_bench import (  # bench/ is on sys.path when run as a script
        cpu_us_per_event,
        start_scorer,
    )

    from core.paths import artifacts_dir
    from udfs.sources import parquet_to_ndjson

    p = argparse.ArgumentParser()
    p.add_argument("--instruments", type=int, default=20)
    p.add_argument("--events", type=int, default=300_000)
    p.add_argument("--duration", default="30m")
    p.add_argument("--stages", default=",".join(STAGES), help=f"of {STAGES + FLOORS}")
    p.add_argument("--artifact", type=Path, default=artifacts_dir() / "small")
    p.add_argument("--scorer-port", type=int, default=8598)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a JobConfig field for every stage, e.g. --set watermark_interval_ms=1000")  # fmt: skip
    p.add_argument("--smoke", action="store_true",
                   help="seconds, not minutes: stage panes on 3,000 events, no empty-file runs (so no rates)")  # fmt: skip
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="job-stages-"))
    if a.smoke:
        # one stage, one mini-cluster JVM (~25 CPU s): the whole job is job_bench's smoke; a cut
        # of build_pipeline (stop_after, the pipeline's stage streams) is this script's own, and
        # the earliest Python stage needs no scorer
        a.instruments, a.events, a.duration, a.stages = 2, 3000, "2m", "panes"
    stages = [s for s in a.stages.split(",") if s]
    overrides = {k: json.loads(v) for k, _, v in (x.partition("=") for x in a.set)}
    if unknown := set(stages) - set(STAGES + FLOORS):
        p.error(f"unknown stages {sorted(unknown)}; choose from {STAGES + FLOORS}")
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
            startup = None if a.smoke else _run(stage, str(empty), url, overrides)
            run = _run(stage, str(full), url, overrides)
            if startup is None:  # smoke: it ran, enough to know the stage works, too little for a rate
                result[stage] = {"wall_s": round(run["wall_s"], 1), "peak_rss_mb": run["peak_rss_mb"]}
                continue
            wall = run["wall_s"] - startup["wall_s"]
            result[stage] = {
                "wall_s": round(run["wall_s"], 1), "startup_s": round(startup["wall_s"], 1),
                "events_per_s": round(a.events / max(wall, 1e-9)),
                # CPU beyond the empty run, per event: JVM (incl. JIT and GC) and Python
                "cpu_us_per_event": cpu_us_per_event(run, startup, a.events),
            }  # fmt: skip
            print(stage, result[stage], file=sys.stderr, flush=True)
    finally:
        if scorer:
            scorer.kill()
    print(json.dumps({"events": a.events, "instruments": a.instruments, "duration": a.duration, "set": overrides, "smoke": a.smoke,
                      "stages": result, "load_average": os.getloadavg(), "cpus": os.cpu_count()}))  # fmt: skip


if __name__ == "__main__":
    main()
