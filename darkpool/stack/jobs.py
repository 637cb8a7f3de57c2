"""Submit PyFlink jobs with `flink run -py`, and follow them by REST: the one submitter.

Used by `darkpool submit`, the demo, `darkpool stack smoke`, the benchmarks and the test
fixtures. It runs `flink run -d -py SCRIPT -pyfs <project zip> -pyexec <python> ARGS`
against the local stack (its FLINK_CONF_DIR names the cluster) or another JobManager.

Why a zip for -pyfs: the Python workers need this project's packages; shipping the
repository folder would also upload .run/ (Kafka data, checkpoints) and data/. Only the
packages the workers import are shipped (`WORKER_PACKAGES`): the operations package
(stack, simulator, evaluation, demo) stays home.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core import paths
from darkpool.stack import flink
from darkpool.stack.procs import StackError
from darkpool.stack.settings import StackConfig

TERMINAL = {"FINISHED", "FAILED", "CANCELED"}
DETECTION_JOB = paths.REPO_ROOT / "jobs" / "detect_anomalies.py"
WORKER_PACKAGES = ("core", "model", "udfs", "jobs")  # what the job's Python workers import
_JOB_ID = re.compile(r"JobID ([0-9a-f]{32})")


class SubmitError(StackError):
    """The job could not be submitted; the message carries the client's output."""


def project_zip(dest_dir: Path | None = None) -> Path:
    """Zip the worker packages (sources only) for `flink run -pyfs`."""
    dest_dir = dest_dir or paths.run_dir() / "submit"
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = dest_dir / "darkpool-src.zip"
    tmp = dest_dir / f"darkpool-src.{os.getpid()}.tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for pkg in WORKER_PACKAGES:
            for f in sorted((paths.REPO_ROOT / pkg).rglob("*.py")):
                zf.write(f, f.relative_to(paths.REPO_ROOT).as_posix())
    tmp.replace(out)  # atomic: a concurrent submit never ships half a zip
    return out


def flink_run_argv(script: Path, args: Sequence[str], jobmanager: str | None = None,
                   python: str | None = None, detached: bool = True) -> list[str]:  # fmt: skip
    python = python or flink.venv_python()
    argv = [str(flink.flink_home() / "bin" / "flink"), "run"]
    if detached:
        argv.append("-d")
    if jobmanager:  # else the cluster address comes from FLINK_CONF_DIR (rest.address/rest.port)
        argv += ["-m", jobmanager]
    return [*argv, "-py", str(script), "-pyfs", str(project_zip()), "-pyexec", python,
            "-pyclientexec", python, *args]  # fmt: skip


def submit(cfg: StackConfig, script: Path = DETECTION_JOB, args: Sequence[str] = (),
           jobmanager: str | None = None, python: str | None = None, timeout_s: float = 300) -> str:  # fmt: skip
    """`flink run -d -py script args...`; returns the job id, raises SubmitError with the client output."""
    if not script.exists():
        raise SubmitError(f"no job module at {script}")
    if jobmanager is None and not cfg.flink_conf_dir.joinpath("config.yaml").exists():
        raise SubmitError(f"no local Flink config in {cfg.flink_conf_dir}: run `darkpool stack up` first")
    env = (
        flink.client_env(cfg)
        if jobmanager is None
        else {**os.environ, "FLINK_HOME": str(flink.flink_home())}
    )
    try:
        done = subprocess.run(
            flink_run_argv(script, args, jobmanager, python),
            env=env,
            cwd=paths.REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as exc:
        raise SubmitError(f"`flink run -py {script.name}` did not return within {timeout_s:.0f}s") from exc
    output = done.stdout + done.stderr
    match = _JOB_ID.search(output)
    if done.returncode != 0 or match is None:
        tail = "\n".join(output.splitlines()[-40:])
        raise SubmitError(f"`flink run -py {script.name}` failed (exit {done.returncode}):\n{tail}")
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
