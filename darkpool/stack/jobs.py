"""Submit PyFlink jobs to the local cluster with `flink run -py`, and follow them by REST.

Used by `darkpool stack smoke`, by the test fixtures and by anyone who wants a job on
the standalone cluster rather than in a local mini cluster.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from darkpool import paths
from darkpool.stack import flink
from darkpool.stack.procs import StackError
from darkpool.stack.settings import StackConfig

TERMINAL = {"FINISHED", "FAILED", "CANCELED"}
_JOB_ID = re.compile(r"JobID ([0-9a-f]{32})")


def flink_run_argv(cfg: StackConfig, script: Path, args: Sequence[str], detached: bool = True) -> list[str]:
    argv = [str(flink.flink_home() / "bin" / "flink"), "run"]
    if detached:
        argv.append("-d")
    # the cluster address comes from FLINK_CONF_DIR (rest.address/rest.port)
    return [*argv, "-py", str(script), *args]


def submit(cfg: StackConfig, script: Path, args: Sequence[str] = (), timeout_s: float = 180) -> str:
    """`flink run -d -py script args...`; returns the job id, raises with the client output."""
    if not cfg.flink_conf_dir.joinpath("config.yaml").exists():
        raise StackError(f"no Flink config in {cfg.flink_conf_dir}: run `darkpool stack up` first")
    done = subprocess.run(
        flink_run_argv(cfg, script, args),
        env=flink.client_env(cfg),
        cwd=paths.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    output = done.stdout + done.stderr
    match = _JOB_ID.search(output)
    if done.returncode != 0 or match is None:
        tail = "\n".join(output.splitlines()[-40:])
        raise StackError(f"`flink run -py {script}` failed (exit {done.returncode}):\n{tail}")
    return match.group(1)


def job(cfg: StackConfig, job_id: str) -> dict[str, Any]:
    return flink.rest_get(cfg, f"/jobs/{job_id}")


def wait_for_state(cfg: StackConfig, job_id: str, states: set[str], timeout_s: float = 120) -> str:
    """Poll until the job reaches one of `states`; a terminal state not asked for raises."""
    deadline = time.monotonic() + timeout_s
    state = "?"
    while time.monotonic() < deadline:
        state = job(cfg, job_id)["state"]
        if state in states:
            return state
        if state in TERMINAL:
            raise StackError(f"job {job_id} ended {state}, expected {sorted(states)}; {exceptions(cfg, job_id)}")
        time.sleep(0.5)
    raise StackError(f"job {job_id} still {state} after {timeout_s:.0f}s, expected {sorted(states)}")


def exceptions(cfg: StackConfig, job_id: str) -> str:
    try:
        info = flink.rest_get(cfg, f"/jobs/{job_id}/exceptions")
    except OSError as exc:
        return f"(no exception history: {exc})"
    root = (info.get("exceptionHistory") or {}).get("entries") or []
    return root[0].get("stacktrace", "")[:3000] if root else "no exception recorded"


def cancel(cfg: StackConfig, job_id: str) -> None:
    req = urllib.request.Request(f"{cfg.rest_url}/jobs/{job_id}?mode=cancel", method="PATCH")
    with urllib.request.urlopen(req, timeout=10):
        pass


def running_jobs(cfg: StackConfig) -> list[dict[str, Any]]:
    overview = flink.rest_get(cfg, "/jobs/overview")
    return [j for j in overview.get("jobs", []) if j.get("state") not in TERMINAL]


def describe(jobs: list[dict[str, Any]]) -> str:
    return json.dumps([{k: j.get(k) for k in ("jid", "name", "state")} for j in jobs])
