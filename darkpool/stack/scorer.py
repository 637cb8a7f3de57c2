"""The one scorer launcher: `darkpool scorer serve` as a child process, waited for until ready.

Used by the demo (a long-lived scorer under the stack's pid files), the benchmarks and
the tests (a scorer per test, killed and restarted at will). Readiness is the protocol's
own `GET /v2/health/ready`, so whatever answers there is the scorer the caller gets.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from core import paths


class ScorerStartError(RuntimeError):
    """The scorer exited or did not become ready; the message names its log."""


def free_port() -> int:
    """A TCP port free on localhost now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scorer_argv(artifact: Path, port: int, options: Sequence[str] = ()) -> list[str]:
    """The command line of a scorer serving `artifact` on `port` (options: more CLI flags)."""
    return [sys.executable, "-m", "darkpool.cli", "scorer", "serve", "--artifact", str(artifact),
            "--port", str(port), *options]  # fmt: skip


def is_ready(url: str, timeout_s: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url + "/v2/health/ready", timeout=timeout_s) as r:
            return r.status == 200
    except OSError:
        return False


def wait_ready(url: str, alive: Callable[[], bool], log: Path | str, timeout_s: float) -> None:
    """Until `url` answers ready; raises if the process dies first or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise ScorerStartError(f"the scorer exited before it was ready; read {log}")
        if is_ready(url):
            return
        time.sleep(0.2)
    raise ScorerStartError(f"the scorer was not ready after {timeout_s:.0f} s; read {log}")


def tail(log: Path, n_chars: int = 2000) -> str:
    try:
        return log.read_text(errors="replace")[-n_chars:]
    except OSError:
        return ""


class ScorerProcess:
    """A scorer child process on a fixed port, so it can be killed and started again.

    `options` are extra `scorer serve` flags (e.g. ["--device", "cpu", "--threads", "1"]);
    the log (stdout and stderr) goes to `log`, or to a temporary file.
    """

    def __init__(self, artifact: Path, port: int | None = None, log: Path | None = None,
                 options: Sequence[str] = ("--device", "cpu", "--threads", "1"),
                 ready_timeout_s: float = 120) -> None:  # fmt: skip
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if log is None:
            fd, name = tempfile.mkstemp(prefix="scorer-", suffix=".log")
            os.close(fd)
            log = Path(name)
        self.log = Path(log)
        self._out: IO[str] = open(self.log, "a")  # noqa: SIM115 - closed in stop()/kill()
        env = {**os.environ, "PYTHONPATH": str(paths.REPO_ROOT)}
        self.proc = subprocess.Popen(scorer_argv(artifact, self.port, options), cwd=paths.REPO_ROOT, env=env,
                                     stdout=self._out, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            wait_ready(self.url, lambda: self.proc.poll() is None, self.log, ready_timeout_s)
        except ScorerStartError as exc:
            self.kill()
            raise ScorerStartError(f"{exc}\n{tail(self.log)}") from exc

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout_s: float = 10) -> None:
        """SIGTERM (a graceful stop), SIGKILL if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()

    def kill(self) -> None:
        """SIGKILL: a crash, not a graceful stop."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._out.close()

    def __enter__(self) -> ScorerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
