"""Chaos soak: the committed alerts stay exactly-once under many faults of different kinds.

    python bench/chaos.py [--preset default] [--events N] [--faults 20] [--seed 7]
                          [--kinds taskmanager,python_worker,scorer,scorer_outage,kafka,jobmanager]
                          [--outage-s 60] [--artifact artifacts/small]

Against the local stack (`darkpool stack up`; DARKPOOL_* env picks another one), which
it breaks and brings back, so run it while nobody else uses that stack. One run:
  1. a simulated market (`darkpool generate`, seeded) is replayed into a fresh topic;
  2. reference: the detection job reads it (`--bounded`) undisturbed, to FINISHED;
  3. chaos: the same job and data (own output topics) while N faults are injected, one
     at a time, their kinds and spacing drawn from --seed:
       taskmanager    SIGKILL of the TaskManager's process group, a new one started
       python_worker  SIGKILL of one Python worker (a child of the TaskManager)
       scorer         SIGKILL of the scorer, started again at once on the same port
       scorer_outage  the scorer killed and kept down for --outage-s
       kafka          the broker stopped and started again
       jobmanager     SIGKILL of the JobManager, then `darkpool stack up` and
                      `darkpool submit --resume` (jobs.resume): the job restarts from
                      its newest retained checkpoint
     After each fault it waits until the job runs again (all tasks RUNNING) and has
     completed a checkpoint, then for 1..--max-gap more checkpoints before the next.
     A job whose Kafka source has read and committed its topic to the end but never
     finishes (a bounded source restored from a checkpoint, e.g. after `submit --resume`:
     a connector bug) is ended with stop --drain, its end of input; listed under "drained".
     A partition that a reader holds but reads nothing from for STALL_S while records
     remain (seen once in CI right after a broker restart: the restored reader's consumer
     never fetched its partition again, offset metric -1, for 420 s) is a liveness fault
     of the Kafka client, not of exactly-once: its evidence (the fetcher thread's stack,
     the TaskManager's log lines of that partition) goes to <logs>/stall-N.txt, the job is
     failed over (a Python worker killed: a fresh consumer from the last checkpoint), as
     an operator alerted on a lag that does not move would do; listed under "stalled".
  4. both alert topics are read with read_committed and compared event by event
     ((alert_id, seq); processing-time fields aside; numbers to rel 1e-4 / abs 1e-6 or
     one step of the field's rounding: a window's score depends, by a float32 ulp, on the
     batch it was scored in, and a rounded field can then land one step apart;
     darkpool.evaluate.alert_diff.close says how that was measured).
A part that dies by itself meanwhile is started again and listed under "unplanned"; a
killed Python worker the job did not miss within 120 s is marked `"noticed": false` and
its fault number listed under "unnoticed" (the job's heartbeat, udfs/heartbeat.py, reaches
an idle worker every 5 s); a Python worker or TaskManager kill that was noticed carries
`noticed_s`, the seconds from the kill until the job restarted.
Prints a progress line per fault (stderr), a status line a minute while it waits for the
end, and one JSON object: faults, alerts_expected, alerts_committed, lost, duplicated, extra,
differing, differing_fields (how many events differ in each field), identical, restarts,
unplanned, drained, stalled, unnoticed, wall_s; every differing event (both versions, whole) is
kept in <work dir>/logs-<tag>/differences.jsonl (`differences_file`).
Exit status 0 when identical and every fault was injected. If the job finishes before every fault was injected, the
JSON says so (faults_planned vs faults): use a bigger market.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from darkpool.evaluate.alert_diff import comparable, differences  # noqa: E402
from darkpool.stack import checkpoints, core, flink, jobs, smoke  # noqa: E402
from darkpool.stack.alerts_topic import reachable, read_alerts  # noqa: E402
from darkpool.stack.procs import PidFiles, StackError, group_members, port_in_use  # noqa: E402
from darkpool.stack.scorer import ScorerProcess, free_port  # noqa: E402
from darkpool.stack.settings import StackConfig  # noqa: E402

KINDS = ("taskmanager", "python_worker", "scorer", "scorer_outage", "kafka", "jobmanager")
TOLERANCE = "numbers: rel 1e-4, abs 1e-6, or one step of their rounding (darkpool.evaluate.alert_diff.close)"


@dataclass
class Options:
    preset: str = "default"
    events: int | None = 1_000_000  # None: the preset's own size
    seed: int = 7
    faults: int = 20
    kinds: tuple[str, ...] = KINDS
    outage_s: float = 60.0
    max_gap: int = 4  # checkpoints completed between faults: 1..max_gap, seeded
    artifact: Path = ROOT / "artifacts" / "small"
    parallelism: int = 1
    checkpoint_interval_ms: int = 3000
    job_timeout_s: float = 3600.0  # each run, start to FINISHED
    recover_timeout_s: float = 600.0  # each fault, until a checkpoint completes again
    work_dir: Path | None = None  # market data and logs (default: <run dir>/chaos)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def plan(kinds: tuple[str, ...], n: int, rng: random.Random) -> list[str]:
    """n kinds: shuffled rounds of all of them, so every kind comes before any repeats."""
    out: list[str] = []
    while len(out) < n:
        out += rng.sample(kinds, len(kinds))
    return out[:n]


# ---- the job under test ------------------------------------------------------------------


@dataclass
class Chaos:
    cfg: StackConfig
    opts: Options
    record: str  # the submission record name (jobs.resume)
    scorer: ScorerProcess
    scorer_log: Path
    trades: str = ""  # the topic the job reads, and its consumer group there
    group: str = ""
    savepoints: Path | None = None  # where a drained job's final savepoint goes
    job_id: str = ""
    job_ids: list[str] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)  # numRestarts last seen, per job id
    unplanned: list[dict] = field(default_factory=list)  # parts that died without a fault
    drained: list[str] = field(default_factory=list)  # jobs ended by stop --drain (see wait_finished)
    stalled: list[dict] = field(default_factory=list)  # readers failed over by wait_finished (see STALL_S)
    logs: Path | None = None  # where a stall's evidence goes
    stall_seen: dict[int, tuple[int, float]] = field(default_factory=dict)  # partition -> (emitted, since)
    t0: float = field(default_factory=time.monotonic)

    def note_restarts(self) -> None:
        with contextlib.suppress(OSError, KeyError, ValueError, IndexError):
            self.restarts[self.job_id] = jobs.num_restarts(self.cfg, self.job_id)

    def completed(self) -> int:
        return jobs.checkpoint_counts(self.cfg, self.job_id)["completed"]

    def restart_scorer(self) -> None:
        self.scorer = ScorerProcess(self.opts.artifact, self.scorer.port, self.scorer_log)


def _poll(what: str, timeout_s: float, probe: Callable[[], bool]) -> None:
    """Until probe() is true; REST/broker hiccups while things restart count as 'not yet'."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if probe():
                return
        except (OSError, KeyError, ValueError):
            pass
        time.sleep(0.5)
    raise StackError(f"{what} not reached within {timeout_s:.0f}s")


def job_state(c: Chaos) -> tuple[str, bool]:
    """(job state, whether every task is RUNNING or FINISHED)."""
    info = jobs.job(c.cfg, c.job_id)
    if info["state"] in ("FAILED", "CANCELED"):
        raise StackError(f"job {c.job_id} {info['state']}: {jobs.exceptions(c.cfg, c.job_id)[:1500]}")
    tasks_ok = all(v["status"] in ("RUNNING", "FINISHED") for v in info.get("vertices", []))
    return info["state"], tasks_ok


def wait_recovered(c: Chaos, completed_before: int) -> None:
    """Job RUNNING with every task up and a checkpoint completed since the fault (or FINISHED)."""
    def ok() -> bool:
        heal(c)
        state, tasks_ok = job_state(c)
        return state == "FINISHED" or (state == "RUNNING" and tasks_ok and c.completed() > completed_before)

    _poll(f"job {c.job_id} running again with a new checkpoint", c.opts.recover_timeout_s, ok)


NOTICE_TIMEOUT_S = 120.0  # a killed TaskManager or Python worker fails the job over within this
# Checkpoints a source may sit at the end of its topic, still running, before it is drained.
STUCK_CHECKPOINTS = 3
# ... and at least this long: the REST metrics it reads are fetched from the TaskManager
# every 10 s (metrics.fetcher.update-interval), so a new attempt's gauges show up late.
STUCK_S = 30.0
# A partition held by a reader that emits nothing from it this long, though records remain,
# is stalled (the reader's offset gauge is refreshed every 10 s; a loaded reader still
# moves every few seconds).
STALL_S = 120.0


def wait_finished(c: Chaos) -> None:
    """Until FINISHED. A bounded Kafka source restored from a checkpoint (a resumed job)
    never finishes: the restored enumerator finds no new partitions and so never tells
    the reader that no more splits come (FLINK-31006, unfixed in the connector we use).
    Once the source has read and committed its topic to the end and still runs for
    STUCK_CHECKPOINTS checkpoints and STUCK_S, the job is ended with stop --drain: its end of input
    (every window flushed, the last transaction committed), as the source would have.
    What it sees is said every PROGRESS_EVERY_S, so a run that never ends tells why."""
    stuck_at: int | None = None  # completed checkpoints when the source was seen stuck
    stuck_since = 0.0
    seen = -1
    last_said = time.monotonic()

    def ok() -> bool:
        nonlocal stuck_at, stuck_since, seen, last_said
        heal(c)
        state, _ = job_state(c)
        if state == "FINISHED":
            return True
        counts = jobs.checkpoint_counts(c.cfg, c.job_id)
        done = counts["completed"]
        due = time.monotonic() - last_said >= PROGRESS_EVERY_S
        if done == seen and not due:
            return False  # offsets move only with checkpoints: ask Kafka once per checkpoint
        at_end, position, unread = source_position(c)
        watch_stall(c, unread, position)
        if due:
            last_said = time.monotonic()
            say(f"    job {c.job_id[:8]} {state}: checkpoints {counts}; source: {position}")
        if done == seen:
            return False
        seen = done
        if not at_end:
            stuck_at = None
        elif stuck_at is None:
            stuck_at, stuck_since = done, time.monotonic()
        elif done >= stuck_at + STUCK_CHECKPOINTS and time.monotonic() - stuck_since >= STUCK_S:
            drain(c, position)
            stuck_at = None  # a failed stop leaves it running: tried again later
        return False

    try:
        _poll(f"job {c.job_id} FINISHED", c.opts.job_timeout_s, ok)
    except StackError as e:
        raise StackError(f"{e}; last seen: checkpoints {jobs.checkpoint_counts(c.cfg, c.job_id)}, "
                         f"source {source_position(c)[1]}, stalled {c.stalled}, exceptions: {jobs.exceptions(c.cfg, c.job_id)[:1500]}") from e


PROGRESS_EVERY_S = 60.0


def source_position(c: Chaos) -> tuple[bool, str, dict[int, int]]:
    """(whether the job's Kafka source still runs though it has read its topic to the end;
    what was seen; per partition not yet read that a reader holds, the offset it last
    emitted). A partition counts as read (`partition_read`) when it is empty, when
    the job's consumer group has committed its end offset, when the source's own
    `currentOffset` metric (the last record it emitted) is the partition's last record,
    or when no reader of this job holds it (no such metric): its split had finished
    before the checkpoint the job was restored from. The group's commit alone is not
    enough: a finished split's offset is committed once, when the next checkpoint
    completes, and a JobManager killed between that checkpoint and its notification
    leaves it uncommitted for ever, as the resumed job no longer holds the split (seen in
    CI: p1 committed 110953 of 114270, held by no reader, and the wait ran out)."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    info = jobs.job(c.cfg, c.job_id)
    sources = [v for v in info.get("vertices", []) if v["name"].startswith("Source: KafkaSource")]
    if info["state"] != "RUNNING" or not sources or any(v["status"] != "RUNNING" for v in sources):
        return False, f"job {info['state']}, source tasks {[v['status'] for v in sources]}", {}
    if not any(reachable(hp) for hp in c.cfg.bootstrap_servers.split(",")):
        return False, "broker not reachable", {}  # restarting: a consumer made now would wait for ever
    try:  # a consumer of the job's group that never joins it: reads its committed offsets only
        consumer = KafkaConsumer(bootstrap_servers=c.cfg.bootstrap_servers.split(","), group_id=c.group,
                                 enable_auto_commit=False, request_timeout_ms=15000)  # fmt: skip
        try:
            parts = [TopicPartition(c.trades, p) for p in sorted(consumer.partitions_for_topic(c.trades) or ())]
            begins, ends = consumer.beginning_offsets(parts), consumer.end_offsets(parts)
            committed = {tp: consumer.committed(tp) for tp in parts}
        finally:
            consumer.close()
    except KafkaError as e:
        return False, f"broker: {type(e).__name__}", {}  # e.g. restarting: not yet
    emitted = emitted_offsets(c, sources[0]["id"])
    read = {tp: partition_read(begins[tp], ends[tp], committed[tp], emitted.get(tp.partition)) for tp in parts}
    seen = ", ".join(f"p{tp.partition} committed {committed[tp]} emitted {emitted.get(tp.partition)} "
                     f"end {ends[tp]}" for tp in parts)  # fmt: skip
    unread = {tp.partition: emitted[tp.partition] for tp in parts if not read[tp] and tp.partition in emitted}
    return bool(parts) and all(read.values()), seen or "no partitions", unread


def watch_stall(c: Chaos, unread: dict[int, int], position: str) -> None:
    """Fail the job over when a held partition has not moved for STALL_S (see the module
    docstring), after writing down what the reader looked like."""
    now = time.monotonic()
    c.stall_seen, stalled = stalled_partitions(c.stall_seen, unread, now, STALL_S)
    if not stalled:
        return
    n = len(c.stalled) + 1
    evidence = stall_evidence(c, stalled)
    path = (c.logs or c.cfg.run_dir) / f"stall-{n}.txt"
    path.write_text(f"{position}\n\n{evidence}")
    say(f"    job {c.job_id[:8]}: partition(s) {stalled} held but not read for {STALL_S:.0f}s ({position}); "
        f"evidence in {path}; failing the job over")  # fmt: skip
    c.stalled.append({"job": c.job_id, "partitions": stalled, "at_s": round(now - c.t0, 1), "evidence": str(path)})
    c.stall_seen = {}
    before = jobs.num_restarts(c.cfg, c.job_id)
    kill_python_worker(c, random.Random(n))
    wait_noticed(c, "stall failover", before)


def stalled_partitions(seen: dict[int, tuple[int, float]], unread: dict[int, int], now: float,
                       stall_s: float) -> tuple[dict[int, tuple[int, float]], list[int]]:  # fmt: skip
    """(partition -> (offset last emitted, since when), the partitions that have not moved
    for stall_s). A partition no longer unread (read, or its reader gone) is forgotten.

    >>> seen, stalled = stalled_partitions({}, {1: -1}, 0.0, 120.0)
    >>> seen, stalled = stalled_partitions(seen, {1: -1, 0: 50}, 119.0, 120.0); stalled
    []
    >>> seen, stalled = stalled_partitions(seen, {1: -1, 0: 60}, 121.0, 120.0); stalled, seen[0]
    ([1], (60, 121.0))
    >>> stalled_partitions(seen, {0: 60}, 500.0, 120.0)[1]  # 1 read meanwhile; 0 still stuck
    [0]
    """
    kept = {p: (e, seen[p][1] if p in seen and seen[p][0] == e else now) for p, e in unread.items()}
    return kept, sorted(p for p, (_, since) in kept.items() if now - since >= stall_s)


def stall_evidence(c: Chaos, partitions: list[int]) -> str:
    """The TaskManager's source fetcher threads (jcmd Thread.print) and its log lines that
    name the stalled partitions: what a bug report about the client needs."""
    tm = _live(c.cfg, flink.TM).pid
    try:
        dump = subprocess.run(["jcmd", str(tm), "Thread.print"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        dump = f"(no thread dump: {e})"
    fetchers = [t for t in dump.split("\n\n") if "Source Data Fetcher" in t or "kafka-coordinator" in t]
    names = tuple(f"{c.trades}-{p}" for p in partitions)
    lines = []
    for log in sorted((c.cfg.run_dir / "logs").glob("flink-*taskexecutor*.log*")):
        with contextlib.suppress(OSError):
            lines += [ln for ln in log.read_text(errors="replace").splitlines() if any(n in ln for n in names)]
    return "\n\n".join(["# fetcher threads", *fetchers, f"# log lines naming {', '.join(names)} (last 200)",
                        "\n".join(lines[-200:])])  # fmt: skip


def partition_read(begin: int, end: int, committed: int | None, emitted: int | None) -> bool:
    """Whether a partition [begin, end) is read: empty, committed to its end, its last
    record (offset end - 1) emitted, or held by no reader of the job (emitted None: its
    split finished before the checkpoint the job was restored from).

    >>> partition_read(0, 0, None, -1)  # empty: nothing to read, and nothing committed
    True
    >>> partition_read(0, 100, 100, 5), partition_read(0, 100, None, 99), partition_read(0, 100, 60, None)
    (True, True, True)
    >>> partition_read(0, 100, 60, 98)
    False
    """
    return end == begin or committed == end or emitted is None or emitted >= end - 1


def emitted_offsets(c: Chaos, vertex: str) -> dict[int, int]:
    """Per partition a reader of the job holds, the offset of the last record it emitted
    (max over the subtasks; -1 before its first)."""
    base = f"/jobs/{c.job_id}/vertices/{vertex}/subtasks/metrics"
    names = [m["id"] for m in flink.rest_get(c.cfg, base) if m["id"].endswith(".currentOffset")]
    if not names:
        return {}
    got = flink.rest_get(c.cfg, f"{base}?get={','.join(names)}&agg=max")
    return {int(m["id"].split(".partition.")[1].split(".")[0]): int(float(m["max"])) for m in got}


def drain(c: Chaos, position: str) -> None:
    """`flink stop --drain` by REST: the sources end, the job finishes with a savepoint."""
    say(f"    job {c.job_id[:8]}: source at the end of {c.trades} ({position}) but not finishing; stop --drain")
    assert c.savepoints is not None
    body = json.dumps({"drain": True, "targetDirectory": c.savepoints.as_uri()}).encode()
    req = urllib.request.Request(f"{c.cfg.rest_url}/jobs/{c.job_id}/stop", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=10):
        pass
    c.drained.append(c.job_id)


def heal(c: Chaos) -> None:
    """A part that died by itself (not one of our faults, e.g. a TaskManager out of
    metaspace) is started again, as a supervisor would, and reported as unplanned."""
    down = [s.name for s in core.status(c.cfg) if not s.running]
    if down:
        say(f"    unplanned: {', '.join(down)} not running; starting it again")
        c.unplanned.append({"parts": down, "at_s": round(time.monotonic() - c.t0, 1)})
        core.up(c.cfg)


def wait_checkpoints(c: Chaos, n: int) -> bool:
    """n more completed checkpoints; False when the job finished first."""
    target = c.completed() + n
    finished = False

    def ok() -> bool:
        nonlocal finished
        heal(c)
        state, _ = job_state(c)
        finished = state == "FINISHED"
        return finished or c.completed() >= target

    _poll(f"{n} more checkpoints of job {c.job_id}", c.opts.recover_timeout_s, ok)
    return not finished


# ---- faults --------------------------------------------------------------------------


def _kill_group(pgid: int) -> None:
    os.killpg(pgid, signal.SIGKILL)
    _poll(f"process group {pgid} gone", 30, lambda: not group_members(pgid))


def _live(cfg: StackConfig, name: str):  # noqa: ANN202
    proc = PidFiles(cfg.pid_dir).live(name)
    if proc is None:
        raise StackError(f"{name} of {cfg.run_dir} is not running")
    return proc


def wait_noticed(c: Chaos, kind: str, restarts_before: int) -> None:
    """Until the job has restarted since the fault: a checkpoint may complete before the
    failure is detected, and a next fault would then land in the same restart."""
    def ok() -> bool:
        heal(c)
        return job_state(c)[0] == "FINISHED" or jobs.num_restarts(c.cfg, c.job_id) > restarts_before

    # seconds: a Python worker is reached by the job's heartbeat timer even when idle
    _poll(f"job {c.job_id} restarting after the {kind} fault (if it had read its whole topic "
          "already, use a bigger market)", NOTICE_TIMEOUT_S, ok)  # fmt: skip


def kill_taskmanager(c: Chaos) -> None:
    _kill_group(_live(c.cfg, flink.TM).pid)  # the JVM and its Python workers
    core.up(c.cfg, ("flink",))  # = `darkpool stack up`: a TaskManager alone, joining the JobManager that kept the job


def python_workers(cfg: StackConfig) -> list[int]:
    tm = _live(cfg, flink.TM)
    found = []
    for pid in group_members(tm.pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if pid != tm.pid and b"python" in Path(argv[0].decode(errors="replace")).name.encode():
            found.append(pid)
    return sorted(found)


def tcp_states(pid: int) -> list[str]:
    """The states (hex, as in /proc/net/tcp: 01 ESTABLISHED) of pid's TCP sockets."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    states = []
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                cols = line.split()
                if len(cols) > 9 and cols[9] in inodes:
                    states.append(cols[3])
    return states


def serving_workers(cfg: StackConfig) -> list[int]:
    """The Python workers that serve a job: connected (gRPC) to the TaskManager. A
    finished or cancelled job's worker can stay behind in the TaskManager's process
    group with no connection at all (seen: two such, 5 and 20 minutes after their jobs
    ended); killing one of those disturbs nothing, and was counted as unnoticed."""
    out = []
    for pid in python_workers(cfg):
        with contextlib.suppress(OSError):
            if "01" in tcp_states(pid):
                out.append(pid)
    return out


def kill_python_worker(c: Chaos, rng: random.Random) -> None:
    _poll("a Python worker of the TaskManager serving a job", 120, lambda: bool(serving_workers(c.cfg)))
    os.kill(rng.choice(serving_workers(c.cfg)), signal.SIGKILL)


def kill_scorer(c: Chaos) -> None:
    c.scorer.kill()
    c.restart_scorer()


def scorer_outage(c: Chaos) -> None:
    c.scorer.kill()
    time.sleep(c.opts.outage_s)  # the fault itself: the scorer stays away this long
    c.restart_scorer()


def restart_kafka(c: Chaos) -> None:
    core.restart_kafka(c.cfg)  # stop and start on the same data


def kill_jobmanager(c: Chaos) -> None:
    c.note_restarts()  # a new JobManager knows nothing of this job
    _kill_group(_live(c.cfg, flink.JM).pid)
    # a killed JVM's leader is a zombie while its other threads still exit holding the
    # sockets: `up` would find the REST/RPC ports taken by "a process it did not start"
    _poll("the JobManager's ports free", 30,
          lambda: not any(port_in_use(c.cfg.host, p) for p in (c.cfg.rest_port, c.cfg.jm_rpc_port)))
    core.up(c.cfg, ("flink",))  # = `darkpool stack up`: a JobManager alone; the TaskManager rejoins
    c.job_id, restored = jobs.resume(c.cfg, c.record)  # = `darkpool submit --resume`
    c.job_ids.append(c.job_id)
    say(f"    resumed as job {c.job_id} from {restored}")


def inject(c: Chaos, kind: str, rng: random.Random) -> float | None:
    """Inject one fault. For a kill that must fail the job over (a Python worker, a
    TaskManager): the seconds until the job restarted, None when it did not within
    NOTICE_TIMEOUT_S (an unnoticed Python worker kill); 0.0 for the other kinds."""
    if kind in ("python_worker", "taskmanager"):  # each of these always fails the job over
        before = jobs.num_restarts(c.cfg, c.job_id)
        kill_python_worker(c, rng) if kind == "python_worker" else kill_taskmanager(c)
        t0 = time.monotonic()
        try:
            wait_noticed(c, kind, before)
        except StackError:
            if kind != "python_worker":
                raise
            # The job's heartbeat (udfs/heartbeat.py) should have reached the worker:
            # go on, and say so in the result.
            say(f"    the {kind} fault was not noticed within {NOTICE_TIMEOUT_S:.0f}s; going on")
            return None
        return round(time.monotonic() - t0, 1)
    {"taskmanager": kill_taskmanager, "scorer": kill_scorer, "scorer_outage": scorer_outage,
     "kafka": restart_kafka, "jobmanager": kill_jobmanager}[kind](c)  # fmt: skip
    return 0.0


# ---- one run -----------------------------------------------------------------------------


def job_args(cfg: StackConfig, trades: str, out: dict[str, str], name: str, scorer_url: str, o: Options) -> list[str]:
    return ["--bootstrap-servers", cfg.bootstrap_servers, "--trades-topic", trades,
            "--alerts-topic", out["alerts"], "--alerts-fast-topic", out["fast"], "--dead-letter-topic", out["dlq"],
            "--scorer-url", scorer_url, "--job-name", name, "--start-from", "earliest", "--bounded",
            "--parallelism", str(o.parallelism), "--checkpoint-interval-ms", str(o.checkpoint_interval_ms),
            # faults must not exhaust the restarts: a 60 s outage alone is ~10 restarts
            "--restart-attempts", "100000", "--restart-delay-ms", "2000"]  # fmt: skip


def committed(cfg: StackConfig, topic: str) -> list[dict]:
    """Every committed alert event of `topic` (the job has FINISHED: nothing more comes)."""
    return list(read_alerts(cfg.bootstrap_servers, topic, from_beginning=True, idle_timeout_s=10))


def market(o: Options, work: Path) -> Path:
    size = o.events if o.events else "preset"
    out = work / f"market-{o.preset}-{size}-{o.seed}"
    if not (out / "events.parquet").exists():
        cmd = ["generate", "--preset", o.preset, "--seed", str(o.seed), "--out", str(out)]
        subprocess.run([sys.executable, "-m", "darkpool.cli", *cmd, *(["--events", str(o.events)] if o.events else [])],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    return out


def compare(expected: list[dict], got: list[dict], keep: Path | None = None) -> dict:
    """Event by event; with `keep`, every differing event is written there as one JSON
    line {key, fields: {field: [reference, chaos]}, reference, chaos} (the whole events,
    processing-time fields included), so a difference can be studied after the run."""
    keys = Counter((e["alert_id"], e["seq"]) for e in got)
    want, have = comparable(expected), comparable(list({(e["alert_id"], e["seq"]): e for e in got}.values()))
    diff = differences(want, have)
    lost = [k for k in want if k not in have]
    extra = [k for k in have if k not in want]
    differing = {k: v for k, v in diff.items() if k in want and k in have}
    duplicated = sum(n - 1 for n in keys.values())
    fields = Counter(f for v in differing.values() for f in v)
    if keep is not None and diff:
        ref = {(e["alert_id"], e["seq"]): e for e in expected}
        new = {(e["alert_id"], e["seq"]): e for e in got}
        with keep.open("w") as f:
            for k, v in diff.items():
                f.write(json.dumps({"key": list(k), "fields": v, "reference": ref.get(k), "chaos": new.get(k)}) + "\n")
    return {
        "alerts_expected": len(want), "alert_ids_expected": len({k[0] for k in want}),
        "alerts_committed": len(got), "lost": len(lost), "duplicated": duplicated, "extra": len(extra),
        "differing": len(differing), "differing_fields": dict(fields.most_common()),
        "identical": not diff and duplicated == 0, "tolerance": TOLERANCE,
        "examples": {str(k): v for k, v in list(diff.items())[:5]},
        **({"differences_file": str(keep)} if keep is not None and diff else {}),
    }  # fmt: skip


def run(o: Options) -> dict:
    t0 = time.monotonic()
    cfg = StackConfig.load()
    if not core.running(cfg):
        raise StackError(f"the stack of {cfg.run_dir} is not running (its pid files): run `darkpool stack up` first; "
                         "the chaos run restarts its parts, so it must be this run dir's own stack")  # fmt: skip
    if not (o.artifact / "model.safetensors").exists():
        raise StackError(f"no trained model at {o.artifact}: train one (`darkpool train`) or pass --artifact")
    rng = random.Random(o.seed)
    kinds = plan(o.kinds, o.faults, rng)
    tag = uuid.uuid4().hex[:8]
    work = o.work_dir or cfg.run_dir / "chaos"
    logs = work / f"logs-{tag}"
    logs.mkdir(parents=True, exist_ok=True)
    data = market(o, work)
    trades = f"chaos.{tag}.trades"
    out = {run: {k: f"chaos.{tag}.{run}.{k}" for k in ("alerts", "fast", "dlq")} for run in ("reference", "chaos")}
    topics = [trades, *(t for d in out.values() for t in d.values())]
    smoke.create_topics(cfg, topics, 2)
    record = f"chaos-{tag}"
    scorer_log = logs / "scorer.log"
    c = Chaos(cfg, o, record, ScorerProcess(o.artifact, free_port(), scorer_log), scorer_log, trades=trades,
              group=f"chaos-{tag}.{trades}", savepoints=logs / "savepoints", logs=logs)  # group: JobConfig.group_id of the job
    result: dict = {"market": str(data), "faults_planned": len(kinds), "faults": []}
    try:
        subprocess.run([sys.executable, "-m", "darkpool.cli", "replay", "--input", str(data), "--bootstrap-servers",
                        cfg.bootstrap_servers, "--topic", trades], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        say(f"chaos {tag}: market {data.name} replayed into {trades}; reference run ...")
        ref = jobs.submit(cfg, jobs.DETECTION_JOB, job_args(cfg, trades, out["reference"], f"chaos-{tag}-reference", c.scorer.url, o))
        c.job_ids.append(ref)
        jobs.wait_for_state(cfg, ref, {"FINISHED"}, timeout_s=o.job_timeout_s)
        result["reference_s"] = round(time.monotonic() - t0, 1)
        say(f"  reference FINISHED after {result['reference_s']} s; chaos run with {len(kinds)} faults ...")

        args = job_args(cfg, trades, out["chaos"], f"chaos-{tag}", c.scorer.url, o)
        c.job_id = jobs.submit(cfg, jobs.DETECTION_JOB, args)
        c.job_ids.append(c.job_id)
        jobs.record_submission(cfg, record, jobs.Submission(str(jobs.DETECTION_JOB), args, job_ids=[c.job_id]))
        t1 = c.t0 = time.monotonic()
        wait_recovered(c, 0)  # running, with a first checkpoint to fall back on
        for i, kind in enumerate(kinds, 1):
            if not wait_checkpoints(c, rng.randint(1, o.max_gap)):
                say(f"  the job FINISHED before fault {i}: {i - 1} of {len(kinds)} injected (use a bigger market)")
                break
            before = c.completed()
            at = time.monotonic() - t1
            noticed = inject(c, kind, rng)
            if kind == "jobmanager":
                before = 0  # a new job: its own checkpoint count
            wait_recovered(c, before)
            took = time.monotonic() - t1 - at
            c.note_restarts()
            result["faults"].append({"kind": kind, "at_s": round(at, 1), "recovered_s": round(took, 1),
                                     **({"noticed": False} if noticed is None else
                                        {"noticed_s": noticed} if kind in ("python_worker", "taskmanager") else {})})  # fmt: skip
            say(f"  fault {i}/{len(kinds)} {kind} at {at:.0f}s: recovered in {took:.0f}s (job {c.job_id[:8]})")
        wait_finished(c)
        c.note_restarts()
        result["chaos_s"] = round(time.monotonic() - t1, 1)
        result["unplanned"] = c.unplanned
        result["drained"] = c.drained
        result["stalled"] = c.stalled
        result["unnoticed"] = [i for i, f in enumerate(result["faults"], 1) if f.get("noticed") is False]
        result.update(compare(committed(cfg, out["reference"]["alerts"]), committed(cfg, out["chaos"]["alerts"]),
                              keep=logs / "differences.jsonl"))  # fmt: skip
        result["restarts"] = sum(c.restarts.values()) + sum(1 for f in result["faults"] if f["kind"] == "jobmanager")
    finally:
        cleanup(c, topics, record)
    result["wall_s"] = round(time.monotonic() - t0, 1)
    return result


def cleanup(c: Chaos, topics: list[str], record: str) -> None:
    """Leave the stack as found: every part up, none of our jobs, topics or checkpoints."""
    c.scorer.kill()
    core.up(c.cfg)  # idempotent: brings back whatever a failed fault left down
    for job_id in c.job_ids:
        try:
            if jobs.job(c.cfg, job_id)["state"] not in jobs.TERMINAL:
                jobs.cancel(c.cfg, job_id)
                jobs.wait_for_state(c.cfg, job_id, {"CANCELED"}, timeout_s=60)
        except (OSError, StackError):
            pass  # unknown to this JobManager (killed with the old one)
    smoke.delete_topics(c.cfg, topics)
    root = checkpoints.as_path(checkpoints.cluster_checkpoint_dir(c.cfg))
    for job_id in c.job_ids:
        shutil.rmtree(root / job_id, ignore_errors=True)
    jobs.record_path(c.cfg, record).unlink(missing_ok=True)
    if c.savepoints:
        shutil.rmtree(c.savepoints, ignore_errors=True)


def parse(argv: list[str] | None) -> Options:
    d = Options()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default=d.preset, help="market preset (darkpool generate --preset)")
    p.add_argument("--events", type=int, default=d.events, help=f"events in the market, 0 = the preset's [{d.events}]")
    p.add_argument("--seed", type=int, default=d.seed, help="market, fault kinds and spacing")
    p.add_argument("--faults", type=int, default=d.faults)
    p.add_argument("--kinds", default=",".join(d.kinds), help="fault kinds to draw from, comma-separated")
    p.add_argument("--outage-s", type=float, default=d.outage_s, help="how long a scorer_outage keeps it down")
    p.add_argument("--max-gap", type=int, default=d.max_gap, help="at most this many checkpoints between faults")
    p.add_argument("--artifact", type=Path, default=d.artifact, help="trained model the scorer serves")
    p.add_argument("--parallelism", type=int, default=d.parallelism)
    p.add_argument("--checkpoint-interval-ms", type=int, default=d.checkpoint_interval_ms)
    p.add_argument("--smoke", action="store_true", help="touch no stack: check the options, print the fault plan "
                   "(tests/integration/test_chaos.py runs the real thing, 4 faults)")  # fmt: skip
    a = p.parse_args(argv)
    kinds = tuple(k.strip() for k in a.kinds.split(",") if k.strip())
    if unknown := [k for k in kinds if k not in KINDS]:
        p.error(f"unknown fault kind(s) {unknown}; choose from {','.join(KINDS)}")
    return Options(preset=a.preset, events=a.events or None, seed=a.seed, faults=a.faults, kinds=kinds,
                   outage_s=a.outage_s, max_gap=max(1, a.max_gap), artifact=a.artifact, parallelism=a.parallelism,
                   checkpoint_interval_ms=a.checkpoint_interval_ms)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    if "--smoke" in (sys.argv[1:] if argv is None else argv):
        print(json.dumps({"smoke": True, "plan": plan(opts.kinds, opts.faults, random.Random(opts.seed)),
                          "artifact": str(opts.artifact), "artifact_found": (opts.artifact / "config.json").exists()}))
        return 0
    try:
        result = run(opts)
    except (StackError, subprocess.CalledProcessError) as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0 if result.get("identical") and len(result["faults"]) == result["faults_planned"] else 1


if __name__ == "__main__":
    sys.exit(main())
