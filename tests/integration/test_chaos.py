"""Chaos: the committed alerts stay exactly-once under faults of different kinds.

bench/chaos.py on a small market: the detection job reads a replayed topic undisturbed,
then again while a Python worker, the TaskManager, the JobManager (recovered with
`stack up` + the `submit --resume` path) and the Kafka broker are killed or restarted,
one after another, each once the job has recovered from the one before and completed a
checkpoint. The committed alerts must equal the undisturbed run's: none lost, none
duplicated. Also here: `darkpool submit --resume` with nothing to resume says so in one
line. The long soak (4M events, 20 faults of every kind) is marked slow.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import uuid

import pytest

from bench import chaos
from core.paths import REPO_ROOT
from darkpool.stack import jobs

SHORT_KINDS = ("python_worker", "taskmanager", "jobmanager", "kafka")


# Big enough that the job still reads while every fault is injected: the JobManager fault
# alone takes about a minute (a new JobManager, then the job resubmitted). A Python
# worker killed while the job idles is noticed too (udfs/heartbeat.py): `unnoticed` is empty.
SHORT_EVENTS = 1_000_000
LONG_EVENTS = 4_000_000  # read in ~2 min undisturbed: the job still reads through most of 20 faults


@pytest.mark.integration
@pytest.mark.cluster
def test_short_chaos_commits_the_same_alerts_exactly_once(stack, trained_model) -> None:
    opts = chaos.Options(preset="tiny", events=SHORT_EVENTS, seed=7, faults=len(SHORT_KINDS), kinds=SHORT_KINDS,
                         max_gap=1, checkpoint_interval_ms=2000, artifact=trained_model,
                         job_timeout_s=420)  # fmt: skip  # its own diagnosis, before pytest's timeout
    result = chaos.run(opts)
    print(result)
    kinds = [f["kind"] for f in result["faults"]]
    assert sorted(kinds) == sorted(SHORT_KINDS), f"not every fault was injected (market too small?): {result}"
    assert result["alerts_expected"] > 0, "the undisturbed run committed no alerts: nothing to compare"
    assert result["restarts"] >= len(SHORT_KINDS) - 1, f"the faults did not disturb the job: {result}"
    assert result["unnoticed"] == [], f"a killed Python worker went unnoticed for 120 s: {result}"
    assert (result["lost"], result["duplicated"], result["extra"], result["differing"]) == (0, 0, 0, 0), result
    assert result["identical"] is True


def test_resume_without_a_recorded_submission_is_one_clear_line(tmp_path) -> None:
    env = {"DARKPOOL_RUN_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "darkpool.cli", "submit", "--resume"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().startswith("Error: nothing to resume"), done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.integration
def test_resume_without_a_retained_checkpoint_says_so(stack) -> None:
    name = f"test-resume-{uuid.uuid4().hex[:8]}"
    lost_job = uuid.uuid4().hex  # a job the (new) JobManager does not know, with no checkpoint
    jobs.record_submission(stack, name, jobs.Submission(str(jobs.DETECTION_JOB), ["--job-name", name], job_ids=[lost_job]))
    try:
        with pytest.raises(jobs.SubmitError, match=f"no retained checkpoint of job {lost_job} under .*nothing to resume"):
            jobs.resume(stack, name)
    finally:
        jobs.record_path(stack, name).unlink()


@pytest.mark.integration
@pytest.mark.cluster
@pytest.mark.slow
@pytest.mark.timeout(3600)  # about 20 minutes on the 2-core box
def test_long_chaos_soak(stack, trained_model) -> None:
    # as measured for the closing figures: 20 faults of every kind while the job reads 4M events
    opts = dataclasses.replace(chaos.Options(), preset="tiny", events=LONG_EVENTS, seed=11, artifact=trained_model)
    result = chaos.run(opts)
    print(result)
    assert len(result["faults"]) == result["faults_planned"], result
    assert result["identical"] is True and result["lost"] == 0 and result["duplicated"] == 0, result
