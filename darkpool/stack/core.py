"""up / down / status of the whole stack, on top of the kafka and flink parts.

`up` is idempotent: parts already running (per their pid file) are left alone. Parts it
starts in one call are started in parallel (JVM start-up dominates) and, if any of them
fails to become ready, everything this call started is stopped again before the error
is raised, so a failed `up` leaves nothing behind.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
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
ORDER = (flink.TM, flink.JM, kafka.NAME)  # stop order: TaskManager first, broker last


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


def up(cfg: StackConfig, parts: tuple[str, ...] = PARTS) -> UpResult:
    with _locked(cfg):
        return _up(cfg, parts)


def _up(cfg: StackConfig, parts: tuple[str, ...]) -> UpResult:
    t0 = time.monotonic()
    pids = PidFiles(cfg.pid_dir)
    result = UpResult()
    kafka.java_binary()  # fail early and clearly when Java is missing
    want_kafka = "kafka" in parts and pids.live(kafka.NAME) is None
    want_flink = "flink" in parts and not (pids.live(flink.JM) and pids.live(flink.TM))
    result.already = [n for n in (kafka.NAME, flink.JM, flink.TM) if pids.live(n)]
    ports = cfg.ports()
    check = {}
    if want_kafka:
        check.update({k: ports[k] for k in ("kafka", "kafka-controller")})
    if want_flink:
        for name in (flink.JM, flink.TM):  # half a cluster: restart it whole
            if (proc := pids.live(name)) is not None:
                stop(proc, cfg.stop_timeout_s)
                pids.remove(name)
        result.already = [n for n in result.already if not n.startswith("flink")]
        check.update({k: ports[k] for k in ("flink-rest", "flink-rpc")})
    _check_ports(cfg, check)
    if want_flink:
        flink.check_prom_ports(cfg)

    started: list[Proc] = []
    try:
        if want_kafka:
            kafka.prepare(cfg)
            started.append(kafka.start(cfg, pids))
        if want_flink:
            env = flink.prepare(cfg)
            jm = flink.start(cfg, pids, flink.JM, env)
            started.append(jm)
            tm = flink.start(cfg, pids, flink.TM, env)
            started.append(tm)
        deadline = time.monotonic() + cfg.ready_timeout_s
        if want_kafka:
            kafka.wait_ready(cfg, started[0], deadline)
        if "kafka" in parts:
            result.topics_created = kafka.ensure_topics(cfg)
        if want_flink:
            flink.wait_ready(cfg, jm, tm, flink.configured_slots(cfg), deadline)
    except BaseException:
        for proc in reversed(started):
            stop(proc, cfg.stop_timeout_s)
            pids.remove(proc.name)
        raise
    result.started = [p.name for p in started]
    result.seconds = time.monotonic() - t0
    return result


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
