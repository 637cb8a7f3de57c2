"""up / down / status of the whole stack, on top of the kafka and flink parts.

`up` is idempotent and starts only what is missing: a TaskManager alone joins the
JobManager that still runs (which keeps its jobs: they restart from their last
checkpoint on the new TaskManager's slots, as under a cluster manager), a JobManager
alone is joined again by the running TaskManager, a broker alone keeps its data. Parts
it starts in one call are started in parallel (JVM start-up dominates) and, if any of
them fails to become ready, everything this call started is stopped again before the
error is raised, so a failed `up` leaves nothing behind.

A part that exited by itself keeps its (stale) pid file; one stopped by `down` has none.
`up` first stops what an exited part left behind (a killed TaskManager's Python
workers), and `supervise` restarts exited parts until told to stop.
"""

from __future__ import annotations

import fcntl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from darkpool.stack import flink, kafka
from darkpool.stack.procs import (
    PidFiles,
    Proc,
    StackError,
    group_members,
    port_in_use,
    port_open,
    rss_bytes,
    stop,
)
from darkpool.stack.settings import StackConfig

PARTS = ("kafka", "flink")
NAMES = (kafka.NAME, flink.JM, flink.TM)  # start order
ORDER = (flink.TM, flink.JM, kafka.NAME)  # stop order: TaskManager first, broker last
PART_OF = {kafka.NAME: "kafka", flink.JM: "flink", flink.TM: "flink"}

Progress = Callable[[str], None]  # one line per step of a start (e.g. click.echo)


def _quiet(_line: str) -> None:
    pass


@dataclass
class UpResult:
    started: list[str] = field(default_factory=list)  # process names started by this call
    already: list[str] = field(default_factory=list)  # ... found running
    topics_created: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _check_ports(cfg: StackConfig, names: dict[str, int]) -> None:
    taken = {n: p for n, p in names.items() if port_in_use(cfg.host, p)}
    if taken:
        what = ", ".join(f"{n} port {p}" for n, p in taken.items())
        raise StackError(
            f"port already taken: {what} on {cfg.host}, by a process this stack did not start "
            f"(its pid files in {cfg.pid_dir} show no live {'/'.join(taken)}). Stop that "
            f"process (e.g. `ss -ltnp | grep :{next(iter(taken.values()))}`) or choose other "
            f"ports: DARKPOOL_KAFKA_PORT, DARKPOOL_CONTROLLER_PORT, DARKPOOL_REST_PORT, DARKPOOL_JM_RPC_PORT."
        )


@contextmanager
def _locked(cfg: StackConfig) -> Iterator[None]:
    """One `up`/`down` at a time per run dir (several test sessions may race to start it)."""
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    with open(cfg.run_dir / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def up(cfg: StackConfig, parts: tuple[str, ...] = PARTS, progress: Progress | None = None) -> UpResult:
    """Start the processes of `parts` that do not run; `progress` gets a line per step."""
    progress = progress or _quiet
    with _locked(cfg):
        try:
            return _up(cfg, parts, progress)
        except StackError:
            # A part that was running before died while its peer started: a TaskManager
            # whose JobManager was killed cancels its tasks, and when a Python operator
            # hangs in close Flink's task-cancellation watchdog ends the TaskManager
            # (task.cancellation.timeout). A cluster manager would start it again: so do we, once.
            pids = PidFiles(cfg.pid_dir)
            died = [n for n in NAMES if PART_OF[n] in parts and pids.exited(n) is not None]
            if not died:
                raise
            progress(f"{', '.join(died)} exited while the stack came up; starting again")
            return _up(cfg, parts, progress)


def _clear_exited(cfg: StackConfig, pids: PidFiles, name: str, progress: Progress) -> bool:
    """Stop what an exited part left in its process group (the Python workers of a
    killed TaskManager JVM), then drop its stale pid file; True if the part had exited."""
    proc = pids.exited(name)
    if proc is None:
        return False
    if group_members(proc.pid):
        progress(f"{name} (pid {proc.pid}) had exited; stopping what it left behind")
    stop(proc, cfg.stop_timeout_s)
    pids.remove(name)
    return True


def _wait_released(cfg: StackConfig, ports: dict[str, int]) -> None:
    """The ports of a part that exited by itself, once the kernel has released them.

    A SIGKILLed JVM's main thread is already a zombie (so the part counts as exited)
    while its other threads are still being torn down, holding its sockets for a moment:
    starting its successor then found "port already taken" (seen under load).
    """
    deadline = time.monotonic() + cfg.stop_timeout_s
    while time.monotonic() < deadline and any(port_in_use(cfg.host, p) for p in ports.values()):
        time.sleep(0.2)


def _up(cfg: StackConfig, parts: tuple[str, ...], progress: Progress) -> UpResult:
    t0 = time.monotonic()
    pids = PidFiles(cfg.pid_dir)
    result = UpResult()
    kafka.java_binary()  # fail early and clearly when Java is missing
    wanted = [n for n in NAMES if PART_OF[n] in parts]
    live = {n: pids.live(n) for n in wanted}
    missing = [n for n in wanted if live[n] is None]
    result.already = [n for n in wanted if live[n] is not None]
    exited = [name for name in missing if _clear_exited(cfg, pids, name, progress)]
    ports = cfg.ports()
    own = {kafka.NAME: ("kafka", "kafka-controller"), flink.JM: ("flink-rest", "flink-rpc")}
    check = {k: ports[k] for name in missing for k in own.get(name, ())}
    _wait_released(cfg, {k: ports[k] for name in exited for k in own.get(name, ())})
    _check_ports(cfg, check)
    flink_missing = [n for n in (flink.JM, flink.TM) if n in missing]
    if flink_missing:
        flink.check_prom_ports(cfg)

    started: list[Proc] = []
    tm_id = None
    try:
        if kafka.NAME in missing:
            progress("starting kafka")
            kafka.prepare(cfg)
            started.append(kafka.start(cfg, pids))
        if flink_missing:
            # a part still running keeps the config it was started with: the one that
            # joins it gets the same (rebuilt only when no Flink process of ours runs)
            fresh = len(flink_missing) == 2 or not cfg.flink_conf_dir.joinpath("config.yaml").exists()
            env = flink.prepare(cfg) if fresh else flink.client_env(cfg)
            for name in flink_missing:
                progress(f"starting {name}")
                if name == flink.TM:
                    tm_id = f"darkpool-tm-{uuid.uuid4().hex[:8]}"
                started.append(flink.start(cfg, pids, name, env, resource_id=tm_id if name == flink.TM else None))
        deadline = time.monotonic() + cfg.ready_timeout_s
        if kafka.NAME in missing:
            kafka.wait_ready(cfg, started[0], deadline)
            progress("kafka ready")
        if "kafka" in parts:
            result.topics_created = kafka.ensure_topics(cfg)
        if flink_missing:
            procs = [pids.read(flink.JM), pids.read(flink.TM)]
            progress("waiting for the TaskManager to register with the JobManager")
            flink.wait_ready(cfg, procs, flink.configured_slots(cfg), deadline, tm_id)
            progress("flink ready")
    except BaseException:
        for proc in reversed(started):
            stop(proc, cfg.stop_timeout_s)
            pids.remove(proc.name)
        raise
    result.started = [p.name for p in started]
    result.seconds = time.monotonic() - t0
    return result


def restart_taskmanager(cfg: StackConfig, progress: Progress | None = None) -> UpResult:
    """Stop this stack's TaskManager (if it runs) and start a new one; the JobManager and
    its jobs stay (they restart from their last checkpoint once the new slots register)."""
    with _locked(cfg):
        _down(cfg, (flink.TM,))
        return _up(cfg, ("flink",), progress or _quiet)


def restart_kafka(cfg: StackConfig, progress: Progress | None = None) -> UpResult:
    """Stop the broker and start it again on the same data dir (topics and offsets kept)."""
    with _locked(cfg):
        _down(cfg, (kafka.NAME,))
        return _up(cfg, ("kafka",), progress or _quiet)


def supervise(
    cfg: StackConfig, stop_event: threading.Event, interval_s: float = 5.0, progress: Progress | None = None
) -> None:
    """Until `stop_event` is set: every `interval_s`, start again any part that exited by
    itself (stale pid file), alone, as a cluster manager replaces a lost TaskManager.
    Parts stopped by `down` (no pid file) stay stopped. A failed restart is reported
    through `progress` and tried again next round."""
    say = progress or _quiet
    while not stop_event.wait(interval_s):
        pids = PidFiles(cfg.pid_dir)
        exited = [n for n in NAMES if pids.exited(n) is not None]
        if not exited:
            continue
        say(f"{', '.join(exited)} exited; starting again")
        try:
            up(cfg, tuple(dict.fromkeys(PART_OF[n] for n in exited)), say)
        except StackError as exc:
            say(f"restart failed (next try in {interval_s:.0f}s): {exc}")


def down(cfg: StackConfig, names: tuple[str, ...] = ORDER) -> list[str]:
    """Stop the processes this run dir's pid files name; returns what was stopped."""
    with _locked(cfg):
        return _down(cfg, names)


def _down(cfg: StackConfig, names: tuple[str, ...]) -> list[str]:
    pids = PidFiles(cfg.pid_dir)
    stopped = []
    for name in ORDER:
        proc = pids.read(name) if name in names else None
        if proc is None:
            continue
        stop(proc, cfg.stop_timeout_s)
        pids.remove(name)
        stopped.append(name)
    return stopped


@dataclass(frozen=True)
class PartStatus:
    name: str
    running: bool
    pid: int | None
    processes: int  # the JVM and its children (Python workers of the TaskManager)
    rss_mb: float
    port: str
    log: str


def status(cfg: StackConfig) -> list[PartStatus]:
    pids = PidFiles(cfg.pid_dir)
    port_of = {
        kafka.NAME: f"{cfg.kafka_port} (controller {cfg.controller_port})",
        flink.JM: f"{cfg.rest_port} (REST/UI), {cfg.jm_rpc_port} (RPC)",
        flink.TM: "-",
    }
    log_of = {
        kafka.NAME: str(kafka.log_file(cfg)),
        flink.JM: str(flink.log_file(cfg, flink.JM)),
        flink.TM: str(flink.log_file(cfg, flink.TM)),
    }
    out = []
    for name in (kafka.NAME, flink.JM, flink.TM):
        proc = pids.live(name)
        members = group_members(proc.pid) if proc else []
        out.append(
            PartStatus(
                name=name,
                running=proc is not None,
                pid=proc.pid if proc else None,
                processes=len(members),
                rss_mb=rss_bytes(members) / 2**20,
                port=port_of[name],
                log=proc.log if proc else log_of[name],
            )
        )
    return out


def running(cfg: StackConfig) -> bool:
    """Every part of *this run dir's* stack runs (per its pid files)."""
    return all(s.running for s in status(cfg))


def serving(cfg: StackConfig) -> bool:
    """Something answers as this stack on its ports (e.g. a stack another clone started)."""
    if not port_open(cfg.host, cfg.kafka_port):
        return False
    try:
        overview = flink.rest_get(cfg, "/overview")
    except (OSError, ValueError):
        return False
    return overview.get("taskmanagers", 0) >= 1


__all__ = ["StackError", "UpResult", "PartStatus", "up", "down", "status", "running", "serving"]
