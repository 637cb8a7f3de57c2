"""Submit PyFlink jobs with `flink run -py`, and follow them by REST: the one submitter.

Used by `darkpool submit`, the demo, `darkpool stack smoke`, the benchmarks and the test
fixtures. It runs `flink run -d -py SCRIPT -pyfs <project zip> -pyexec <python> ARGS`
against the local stack (its FLINK_CONF_DIR names the cluster) or another JobManager.

Resuming after a JobManager loss: the local cluster has no high availability, so a new
JobManager knows none of the jobs the old one ran. `record_submission` keeps a job's
script and flags in the run dir; `resume` submits the same again with `flink run -s`
from the newest retained checkpoint of that job (darkpool.stack.checkpoints). No
`--allowNonRestoredState`: every operator of the job has a stable uid, so the same
flags give the same graph, and a changed graph should fail loudly rather than quietly
drop state.

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
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
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
                   python: str | None = None, detached: bool = True,
                   restore_from: str | None = None) -> list[str]:  # fmt: skip
    python = python or flink.venv_python()
    argv = [str(flink.flink_home() / "bin" / "flink"), "run"]
    if detached:
        argv.append("-d")
    if restore_from:  # a retained checkpoint or a savepoint
        argv += ["-s", restore_from]
    if jobmanager:  # else the cluster address comes from FLINK_CONF_DIR (rest.address/rest.port)
        argv += ["-m", jobmanager]
    return [*argv, "-py", str(script), "-pyfs", str(project_zip()), "-pyexec", python,
            "-pyclientexec", python, *args]  # fmt: skip


def submit(cfg: StackConfig, script: Path = DETECTION_JOB, args: Sequence[str] = (),
           jobmanager: str | None = None, python: str | None = None, timeout_s: float = 300,
           restore_from: str | None = None) -> str:  # fmt: skip
    """`flink run -d [-s restore_from] -py script args...`; returns the job id, raises
    SubmitError with the client output."""
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
            flink_run_argv(script, args, jobmanager, python, restore_from=restore_from),
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


def checkpoint_counts(cfg: StackConfig, job_id: str) -> dict[str, int]:
    """REST checkpoint counts of a job: completed, failed, in_progress, restored, total."""
    return {k: int(v) for k, v in flink.rest_get(cfg, f"/jobs/{job_id}/checkpoints")["counts"].items()}


def num_restarts(cfg: StackConfig, job_id: str) -> int:
    """How often the job restarted (failovers) on this JobManager."""
    got = flink.rest_get(cfg, f"/jobs/{job_id}/metrics?get=numRestarts")
    return int(float(got[0]["value"])) if got else 0


# ---- recorded submissions, for resuming after a JobManager loss ---------------------------

DETECTION_RECORD = "detection-job"  # what `darkpool submit` records its submission as


@dataclass(frozen=True)
class Submission:
    script: str
    args: list[str]  # the job flags, exactly as submitted
    jobmanager: str | None = None  # None: the local stack
    python: str | None = None
    job_ids: list[str] = field(default_factory=list)  # newest first: the job, then those it resumed


def record_path(cfg: StackConfig, name: str) -> Path:
    return cfg.run_dir / "submit" / f"{name}.json"


def record_submission(cfg: StackConfig, name: str, sub: Submission) -> None:
    path = record_path(cfg, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(sub), indent=1))
    tmp.replace(path)


def load_submission(cfg: StackConfig, name: str) -> Submission | None:
    try:
        return Submission(**json.loads(record_path(cfg, name).read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        raise SubmitError(f"{record_path(cfg, name)} is not a submission record ({exc}); delete it and submit afresh") from exc


def _state_on_cluster(cfg: StackConfig, job_id: str, jobmanager: str | None) -> str | None:
    """The job's state, or None when the JobManager does not know it (a new JobManager)."""
    target = replace(cfg, host=jobmanager.rsplit(":", 1)[0], rest_port=int(jobmanager.rsplit(":", 1)[1])) if jobmanager else cfg
    try:
        return job(target, job_id)["state"]
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise SubmitError(f"the JobManager at {target.rest_url} answered {exc.code} for job {job_id}") from exc
    except OSError as exc:
        raise SubmitError(f"no JobManager answers at {target.rest_url} ({exc}); run `darkpool stack up` first") from exc


def resume(cfg: StackConfig, name: str = DETECTION_RECORD, timeout_s: float = 300) -> tuple[str, Path]:
    """Submit the recorded job again from its newest retained checkpoint; (job id, checkpoint)."""
    from darkpool.stack import checkpoints

    sub = load_submission(cfg, name)
    if sub is None:
        raise SubmitError(f"nothing to resume: no earlier submission recorded ({record_path(cfg, name)}); "
                          "submit the job with `darkpool submit -- FLAGS`")  # fmt: skip
    if sub.job_ids:
        state = _state_on_cluster(cfg, sub.job_ids[0], sub.jobmanager)
        if state == "FINISHED":
            raise SubmitError(f"job {sub.job_ids[0]} FINISHED: nothing to resume")
        if state is not None and state not in {"FAILED", "CANCELED"}:
            raise SubmitError(f"job {sub.job_ids[0]} is {state} on the cluster, not lost: nothing to resume "
                              "(cancel it first to restart it from its last checkpoint)")  # fmt: skip
    root = checkpoints.checkpoint_root(cfg, sub.args, sub.jobmanager)
    found = checkpoints.latest_retained(root, sub.job_ids)
    if found is None:
        raise SubmitError(f"no retained checkpoint of job {', '.join(sub.job_ids) or '?'} under {root}: "
                          "nothing to resume from; submit afresh with `darkpool submit -- FLAGS`")  # fmt: skip
    job_id = submit(cfg, Path(sub.script), sub.args, sub.jobmanager, sub.python, timeout_s, restore_from=str(found))
    record_submission(cfg, name, replace(sub, job_ids=[job_id, *sub.job_ids][:20]))
    return job_id, found
