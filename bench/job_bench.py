"""Throughput and memory of the whole detection job beside a read-and-discard job.

    python bench/job_bench.py [--instruments 20] [--events 300000] [--duration 30m]
    python bench/job_bench.py --smoke    # 3,000 events, an untrained model: the full job once

One run: a market of N events is generated and replayed into a fresh Kafka topic; then,
on the local mini cluster (one process each, same settings, --parallelism, default 1):
  read_only  the same raw Kafka source (same DDL) -> blackhole: the ceiling of this box;
  full       jobs/detect_anomalies.build_pipeline (parse, validate, panes, windows,
             scorer over HTTP, thresholds, exactly-once alerts sink), --bounded.
Each is also run on an empty topic to measure its fixed start-up cost, and the rate is
events / (wall time - start-up). Peak resident memory is sampled every 0.5 s over the
job's process tree (JVM = JobManager + TaskManager of the mini cluster; Python = the
Beam workers) and the scorer. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from darkpool.stack.scorer import ScorerProcess  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> dict[int, tuple[str, int, float]]:
    """`pid` and its descendants: pid -> (java | python, RSS bytes, CPU seconds so far)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, stack = {}, [pid]
    while stack:
        p = stack.pop()
        stack += children.get(p, [])
        try:
            status = Path(f"/proc/{p}/status").read_text()
            stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            exe = os.path.basename(os.readlink(f"/proc/{p}/exe"))
        except OSError:
            continue
        rss = next((int(line.split()[1]) * 1024 for line in status.splitlines()
                    if line.startswith("VmRSS")), 0)  # fmt: skip
        cpu = (int(stat[11]) + int(stat[12])) / CLOCK_TICKS  # utime + stime
        out[p] = ("java" if exe.startswith("java") else "python", rss, cpu)
    return out


def _timed(argv: list[str]) -> dict:
    """Run a job process, sampling its tree; wall seconds, peak RSS and CPU seconds.

    CPU is each process's last sample (every 0.5 s), so up to half a second of a process's
    last moments can be missing; fine against runs of a minute.
    """
    peak = {"java": 0, "python": 0}
    cpu_of: dict[int, tuple[str, float]] = {}
    t0 = time.time()
    proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            rss = {"java": 0, "python": 0}
            for p, (kind, r, cpu) in _tree(proc.pid).items():
                rss[kind] += r
                cpu_of[p] = (kind, cpu)
            for k, v in rss.items():
                peak[k] = max(peak[k], v)
            time.sleep(0.5)

    threading.Thread(target=sample, daemon=True).start()
    out, _ = proc.communicate()
    done.set()
    if proc.returncode:
        raise RuntimeError(f"{argv} failed:\n{out.decode(errors='replace')[-3000:]}")
    cpu = {"java": 0.0, "python": 0.0}
    for kind, c in cpu_of.values():
        cpu[kind] += c
    return {
        "wall_s": time.time() - t0,
        "peak_rss_mb": {k: round(v / 2**20) for k, v in peak.items()},
        "cpu_s": {k: round(v, 1) for k, v in cpu.items()},
    }


def cpu_us_per_event(run: dict, empty_run: dict, events: int) -> dict[str, float]:
    """CPU µs per event by process kind, at the margin: `_timed` of a run minus that of
    the same job on empty input (its start-up)."""
    return {k: round((run["cpu_s"][k] - empty_run["cpu_s"][k]) / events * 1e6, 1) for k in run["cpu_s"]}


def read_only_job(bootstrap: str, topic: str, parallelism: int, parse: bool = False) -> None:
    """The ceiling: the job's own raw Kafka source (bounded) into a blackhole.

    `parse`: also the JVM parsing / validation / late split (udfs.sources views), to
    separate the SQL cost from the Python stages.
    """
    from core.config import KafkaConfig, from_env
    from core.job_config import JobConfig
    from jobs import detect_anomalies as job
    from udfs.sources import kafka_raw_ddl, register_functions

    cfg = JobConfig(kafka=from_env(KafkaConfig, bootstrap_servers=bootstrap, trades_topic=topic),
                    start_from="earliest", parallelism=parallelism, job_name=f"read-only-{uuid.uuid4().hex[:6]}")  # fmt: skip
    _, t_env = job.make_env(cfg, job.local_jars())
    if parse:  # the job's own source, typed view and main / side split (udfs.sources)
        main_view, side_view, _ = job.register_source(t_env, cfg, None, bounded=True)
        t_env.execute_sql("CREATE TEMPORARY TABLE sink (ts BIGINT) WITH ('connector' = 'blackhole')")
        t_env.execute_sql(f"INSERT INTO sink SELECT ts FROM {main_view} "
                          f"UNION ALL SELECT ts FROM {side_view}").wait()  # fmt: skip
        return
    register_functions(t_env)  # the DDL's rowtime column parses the payload (event_time_ms)
    t_env.execute_sql(kafka_raw_ddl("trades_raw", cfg, bounded=True))
    t_env.execute_sql(
        "CREATE TEMPORARY TABLE sink (payload STRING) WITH ('connector' = 'blackhole')"
    )
    t_env.execute_sql("INSERT INTO sink SELECT payload FROM trades_raw").wait()


_CREATED: list[str] = []  # topics this run made, deleted at the end


def _topic(bootstrap: str, partitions: int) -> str:
    from darkpool.stack import smoke
    from darkpool.stack.settings import StackConfig

    name = f"bench.job.{uuid.uuid4().hex[:8]}"
    smoke.create_topics(StackConfig.load(), [name], partitions)
    _CREATED.append(name)
    return name


MIN_MARGIN_S = 2.0  # a rate needs the full run this much longer than the empty one


def start_scorer(artifact: Path, port: int) -> ScorerProcess:
    """A scorer process on `port` (CPU), once it answers ready; its log in a temp file."""
    from darkpool.stack.procs import port_in_use

    if port_in_use("127.0.0.1", port):
        raise RuntimeError(f"port {port} is taken (a scorer left over by a killed run?); free it or pass --scorer-port")
    scorer = ScorerProcess(artifact, port, options=("--device", "cpu"))
    print(f"scorer log: {scorer.log}", file=sys.stderr)
    return scorer


def scorer_counts(scorer: ScorerProcess) -> tuple[float, float]:
    """(windows the scorer has scored, its CPU seconds) so far: a run's share is the difference."""
    import urllib.request

    from model.scorer.metrics import PREFIX

    with urllib.request.urlopen(f"{scorer.url}/metrics", timeout=10) as r:
        text = r.read().decode()
    windows = sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(f"{PREFIX}windows_total"))
    stat = Path(f"/proc/{scorer.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return windows, (int(stat[11]) + int(stat[12])) / CLOCK_TICKS


def _seconds(duration: str) -> float:
    unit = {"s": 1, "m": 60, "h": 3600}.get(duration[-1], 1)
    return float(duration.rstrip("smh")) * unit


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] in ("--read-only-job", "--parse-only-job"):
        read_only_job(sys.argv[2], sys.argv[3], int(sys.argv[4]), parse=sys.argv[1] == "--parse-only-job")
        return
    from core.paths import artifacts_dir

    p = argparse.ArgumentParser()
    p.add_argument("--instruments", type=int, default=20)
    p.add_argument("--events", type=int, default=300_000)
    p.add_argument("--partitions", type=int, default=2)
    # Throughput depends on events per (instrument, pane): each pane costs a fixed Python
    # call (~ms). Keep instruments x duration / slide well below the event count.
    p.add_argument("--duration", default="30m", help="event-time span of the generated session")
    p.add_argument("--bootstrap", default=None, help="Kafka [the local stack's: DARKPOOL_* env, localhost:9092]")
    p.add_argument("--artifact", type=Path, default=artifacts_dir() / "small")
    p.add_argument("--scorer-port", type=int, default=8597)
    p.add_argument("--parallelism", type=int, default=1, help="of every job (read-only, parse, full)")
    p.add_argument("--pane-shards", type=int, default=0, help="the job's --pane-shards (0 = its default)")
    p.add_argument("--activity", choices=("tiers", "zipf"), default="tiers",
                   help="how events are shared among instruments (darkpool generate --activity): zipf = a few hot "
                        "names, a long quiet tail")
    p.add_argument("--smoke", action="store_true",
                   help="seconds, not minutes: 2 instruments, 3,000 events, an untrained model; the full job runs "
                        "once, on the full topic only (no rates: they need the empty-topic runs)")  # fmt: skip
    a = p.parse_args()
    from darkpool.stack.settings import StackConfig

    a.bootstrap = a.bootstrap or StackConfig.load().bootstrap_servers
    tmp = Path(tempfile.mkdtemp(prefix="job-bench-"))
    if a.smoke:
        from _smoke import untrained_artifact

        from darkpool.stack.scorer import free_port

        a.instruments, a.events, a.duration, a.scorer_port = 2, 3000, "2m", free_port()
        a.artifact = untrained_artifact(tmp / "model")
    cli = [sys.executable, "-m", "darkpool.cli"]
    subprocess.run([*cli, "generate", "--preset", "default", "--instruments", str(a.instruments), "--events",
                    str(a.events), "--duration", a.duration, "--activity", a.activity, "--out", str(tmp)],
                   cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    full_topic, empty_topic = _topic(a.bootstrap, a.partitions), _topic(a.bootstrap, a.partitions)
    t0 = time.time()
    subprocess.run([*cli, "replay", "--input", str(tmp), "--bootstrap-servers", a.bootstrap, "--topic", full_topic],
                   cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    replay_s = time.time() - t0  # `darkpool replay` as a whole (the console producer engine), load included
    scorer = start_scorer(a.artifact, a.scorer_port)
    try:
        runs = {}
        for topic, label in ((empty_topic, "empty"), (full_topic, "full"))[1 if a.smoke else 0:]:
            # smoke: each mini-cluster job is a JVM start (~25 CPU s); the full job's source is the
            # read-only job's DDL (udfs.sources), and the script's timing path is the same
            if not a.smoke:
                runs[f"read_only_{label}"] = _timed(
                    [sys.executable, __file__, "--read-only-job", a.bootstrap, topic, str(a.parallelism)]
                )
                runs[f"parse_only_{label}"] = _timed(
                    [sys.executable, __file__, "--parse-only-job", a.bootstrap, topic, str(a.parallelism)]
                )
            alerts, dead = _topic(a.bootstrap, 1), _topic(a.bootstrap, 1)
            before = scorer_counts(scorer)
            runs[f"job_{label}"] = _timed(
                [sys.executable, str(ROOT / "jobs" / "detect_anomalies.py"), "--bootstrap-servers", a.bootstrap,
                 "--trades-topic", topic, "--alerts-topic", alerts, "--dead-letter-topic", dead,
                 "--scorer-url", f"http://127.0.0.1:{a.scorer_port}", "--start-from", "earliest", "--bounded",
                 "--parallelism", str(a.parallelism), *(["--pane-shards", str(a.pane_shards)] if a.pane_shards else []), "--restart-attempts", "1", "--job-name", f"bench-{uuid.uuid4().hex[:6]}"]
            )  # fmt: skip
            after = scorer_counts(scorer)
            runs[f"job_{label}"]["windows"] = after[0] - before[0]
            runs[f"job_{label}"]["cpu_s"]["scorer"] = round(after[1] - before[1], 2)
            print(f"{label}: " + json.dumps({k: v["wall_s"] for k, v in runs.items()}), file=sys.stderr)
        print(json.dumps(runs), file=sys.stderr)
        if scorer.proc.poll() is not None:
            raise RuntimeError(f"the scorer exited during the runs (rc {scorer.proc.returncode}); see {scorer.log}")
        status = Path(f"/proc/{scorer.pid}/status").read_text()
        scorer_rss = next(
            int(x.split()[1]) * 1024 for x in status.splitlines() if x.startswith("VmHWM")
        )
    finally:
        scorer.kill()
        from darkpool.stack import smoke
        from darkpool.stack.settings import StackConfig

        smoke.delete_topics(StackConfig.load(), _CREATED)

    if a.smoke:  # the job ran: enough to know the script works, too little for a rate
        print(json.dumps({"smoke": True, "events": a.events, "runs": runs, "load_average": os.getloadavg()}))
        return

    def rate(kind: str) -> float | None:
        margin = runs[f"{kind}_full"]["wall_s"] - runs[f"{kind}_empty"]["wall_s"]
        # below ~2 s the margin is start-up noise (measured: +-2 s between runs), not work
        return a.events / margin if margin >= MIN_MARGIN_S else None

    ro, parse, full = rate("read_only"), rate("parse_only"), rate("job")
    unresolved = [k for k, v in (("read_only", ro), ("parse_only", parse), ("job", full)) if v is None]
    print(json.dumps({
        "events": a.events, "instruments": a.instruments, "duration": a.duration,
        "events_per_instrument_pane": round(a.events / (a.instruments * _seconds(a.duration) / 5), 1), "partitions": a.partitions, "parallelism": a.parallelism, "pane_shards": a.pane_shards or "default",
        "read_only_events_per_s": ro and round(ro), "parse_only_events_per_s": parse and round(parse),
        "job_events_per_s": full and round(full), "job_vs_read_only": round(full / ro, 3) if ro and full else None,
        "unresolved": [f"{k}: full run within {MIN_MARGIN_S:.0f} s of the empty run; give more --events" for k in unresolved],
        "cpu_us_per_event": {k: cpu_us_per_event(runs[f"{k}_full"], runs[f"{k}_empty"], a.events)
                             for k in ("read_only", "parse_only", "job")},
        # all-in: the job's JVM and Python workers and the scorer, at the margin, per window scored
        "job_windows": int(runs["job_full"]["windows"]),
        "job_cpu_us_per_window": round(sum(runs["job_full"]["cpu_s"][k] - runs["job_empty"]["cpu_s"][k]
                                           for k in runs["job_full"]["cpu_s"]) / max(runs["job_full"]["windows"], 1)
                                       * 1e6, 1),
        "activity": a.activity,
        "replay_events_per_s": round(a.events / replay_s),
        "runs": runs, "scorer_peak_rss_mb": round(scorer_rss / 2**20),
        "load_average": os.getloadavg(), "cpus": os.cpu_count(),
        "note": "rates at the margin: events / (wall - wall of the same job on an empty topic)",
    }))  # fmt: skip


if __name__ == "__main__":
    main()
