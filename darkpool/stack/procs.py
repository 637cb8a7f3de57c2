"""Processes the stack starts: launch, pid files, liveness, stop, memory.

Each part runs in its own session (process group), so the group id names it *and*
everything it spawned: Flink's Python workers are children of the TaskManager, and
stopping the group stops them too. A pid file records pid and kernel start time; the
start time guards against a recycled pid (we never signal a process we did not start).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path


class StackError(Exception):
    """A part of the stack could not be started/stopped; the message says why and what to read."""


@dataclass(frozen=True)
class Proc:
    name: str  # "kafka", "flink-jobmanager", ...
    pid: int  # also the process group id (start_new_session)
    start_ticks: int  # /proc/<pid>/stat field 22, to detect pid reuse
    log: str  # the file to read when it misbehaves
    cmd: str  # what was run, for `status`


def _proc_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm (field 2) may contain spaces/parens: split after the last ')'
    return [str(pid), "comm"] + raw[raw.rindex(")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return int(stat[21]) if stat else None


def is_alive(proc: Proc) -> bool:
    stat = _proc_stat(proc.pid)
    return stat is not None and stat[2] != "Z" and int(stat[21]) == proc.start_ticks


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _proc_stat(int(entry))
        if stat and int(stat[4]) == pgid and stat[2] != "Z":
            members.append(int(entry))
    return members


def rss_bytes(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except FileNotFoundError:
            pass
    return total


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on host:port (or the bind is refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class PidFiles:
    def __init__(self, pid_dir: Path) -> None:
        self.dir = pid_dir

    def path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def read(self, name: str) -> Proc | None:
        try:
            return Proc(**json.loads(self.path(name).read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise StackError(
                f"pid file {self.path(name)} is corrupt ({exc}); check that no {name} "
                f"process of this stack still runs (ps -ef), then delete the file"
            ) from exc

    def write(self, proc: Proc) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path(proc.name).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(proc)))
        tmp.replace(self.path(proc.name))

    def remove(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)

    def live(self, name: str) -> Proc | None:
        """The recorded process if it still runs. A stale pid file stays: it marks a part
        that exited by itself (crashed, killed), unlike one `down` stopped (no file), so
        that `up` can stop what it left behind and a supervisor knows to restart it."""
        proc = self.read(name)
        return proc if proc is not None and is_alive(proc) else None

    def exited(self, name: str) -> Proc | None:
        """The recorded process if it no longer runs (its pid file is stale)."""
        proc = self.read(name)
        return proc if proc is not None and not is_alive(proc) else None


def launch(
    name: str, argv: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path, pids: PidFiles
) -> Proc:
    """Start argv in a new session with stdout/stderr appended to `log`, record its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: `down` can stop its children too
        )
    ticks = start_ticks(popen.pid)
    if ticks is None:  # died before we could even look at it
        raise StackError(f"{name} exited immediately; read {log}")
    proc = Proc(name=name, pid=popen.pid, start_ticks=ticks, log=str(log), cmd=" ".join(argv))
    pids.write(proc)
    return proc


def stop(proc: Proc, timeout_s: float) -> None:
    """TERM the process group, wait, KILL what is left; returns when the group is gone."""
    ticks = start_ticks(proc.pid)
    if ticks is not None and ticks != proc.start_ticks:
        return  # pid recycled by an unrelated process: that group is not ours
    # (while any member of our group lives, the kernel does not hand its id out again,
    # so members found below are ours even when the leader has already exited)
    if is_alive(proc) or group_members(proc.pid):
        _signal_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(proc.pid)
        if not group_members(proc.pid):
            return
        time.sleep(0.2)
    _signal_group(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while group_members(proc.pid):
        _reap(proc.pid)
        if time.monotonic() > deadline:
            raise StackError(
                f"{proc.name} (process group {proc.pid}) survived SIGKILL: "
                f"pids {group_members(proc.pid)}"
            )
        time.sleep(0.1)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _reap(pid: int) -> None:
    """Collect our own child's exit status so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
