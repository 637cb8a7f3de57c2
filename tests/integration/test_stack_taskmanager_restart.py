"""A TaskManager that dies is brought back by `darkpool stack up` alone: the JobManager
(no HA: a new one would have lost every job) keeps running, and so does its job.

On the stack the tests share (under its lock; whatever happens, the test leaves it with
a TaskManager again), an unbounded exactly-once job (jobs/smoke_kafka_roundtrip.py) has committed a first batch when the
TaskManager JVM is SIGKILLed (its Python workers are left orphaned, as after a crash).
`darkpool stack up` must start a TaskManager and nothing else, stop the orphans, and the
job must restore from its last checkpoint: the second batch arrives, every message
exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from darkpool.stack import core, flink, jobs, smoke
from darkpool.stack.procs import PidFiles, group_members, is_alive
from darkpool.stack.settings import StackConfig

# slow: tests/integration/test_chaos.py's short run kills the TaskManager and the JobManager and
# brings each back with the same `stack up` path in the default suite; these stay on demand
pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.slow]

DARKPOOL = str(Path(sys.executable).parent / "darkpool")


def _env(cfg: StackConfig) -> dict[str, str]:
    env = dict(os.environ, DARKPOOL_RUN_DIR=str(cfg.run_dir))
    for key in ("kafka_port", "rest_port", "jm_rpc_port", "prom_port"):
        env[f"DARKPOOL_{key.upper()}"] = str(getattr(cfg, key))
    env.pop("DARKPOOL_BOOTSTRAP_SERVERS", None)
    return env


def _wait(condition, timeout_s: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout_s:.0f}s")
        time.sleep(0.5)


def test_stack_up_restarts_a_killed_taskmanager_alone_and_the_job_goes_on(stack, kafka_topic):
    pids = PidFiles(stack.pid_dir)
    if pids.live(flink.TM) is None:
        pytest.skip(f"the Flink cluster on {stack.rest_url} was not started from this run dir ({stack.run_dir})")
    src, dst = kafka_topic("in", partitions=1), kafka_topic("out", partitions=1)
    first = [f"before-{i:03d}" for i in range(10)]
    second = [f"after-{i:03d}" for i in range(10)]
    smoke.produce(stack, src, first)
    job_id = jobs.submit(stack, smoke.SMOKE_JOB, [
        "--bootstrap-servers", stack.bootstrap_servers, "--input-topic", src, "--output-topic", dst, "--unbounded",
    ])  # fmt: skip
    try:
        assert len(smoke.consume(stack, dst, len(first), timeout_s=180)) == len(first)  # a checkpoint committed them
        jm, tm = pids.live(flink.JM), pids.live(flink.TM)
        assert jm is not None and tm is not None
        _wait(lambda: len(group_members(tm.pid)) > 1, 60, "the TaskManager's Python worker")
        os.kill(tm.pid, signal.SIGKILL)  # the JVM alone: its Python workers stay behind
        _wait(lambda: not is_alive(tm), 30, "the killed TaskManager to exit")

        done = subprocess.run([DARKPOOL, "stack", "up", "--only", "flink"], env=_env(stack),
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "started flink-taskmanager in" in done.stdout, done.stdout
        assert "already running: flink-jobmanager" in done.stdout, done.stdout
        new_tm = pids.live(flink.TM)
        assert pids.live(flink.JM) == jm  # same JobManager process: its jobs survive
        assert new_tm is not None and new_tm.pid != tm.pid
        assert group_members(tm.pid) == []  # the orphaned Python workers were stopped
        status = json.loads(subprocess.run([DARKPOOL, "stack", "status", "--json"], env=_env(stack),
                                           capture_output=True, text=True, timeout=60).stdout)  # fmt: skip
        assert all(p["running"] for p in status["parts"] if p["name"].startswith("flink"))

        assert jobs.wait_for_state(stack, job_id, {"RUNNING"}, timeout_s=180) == "RUNNING"
        smoke.produce(stack, src, second)
        got = smoke.consume(stack, dst, len(first) + len(second), timeout_s=240, settle_s=8)
        assert sorted(json.loads(m)["echo"] for m in got) == sorted(first + second)  # exactly once
        assert jobs.job(stack, job_id)["state"] == "RUNNING"
    finally:
        if pids.live(flink.TM) is None:
            core.up(stack)  # never leave the shared stack without its TaskManager
        if jobs.job(stack, job_id)["state"] not in jobs.TERMINAL:
            jobs.cancel(stack, job_id)


def test_stack_up_restarts_a_killed_jobmanager_alone_and_the_taskmanager_rejoins(own_flink):
    pids = PidFiles(own_flink.pid_dir)
    jm, tm = pids.live(flink.JM), pids.live(flink.TM)
    assert jm is not None and tm is not None
    os.killpg(jm.pid, signal.SIGKILL)
    _wait(lambda: not is_alive(jm), 30, "the killed JobManager to exit")
    result = core.up(own_flink, ("flink",))
    assert result.started == [flink.JM] and result.already == [flink.TM]
    assert pids.live(flink.TM) == tm  # the same TaskManager registered with the new JobManager
    assert flink.rest_get(own_flink, "/overview")["taskmanagers"] == 1
