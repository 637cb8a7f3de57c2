"""The TaskManager dies mid-replay under the full detection job: same committed alerts.

Same replayed topic (tiny market, trained model), read by the real job twice:
  A: undisturbed, on the local mini cluster (`detect_harness.py`, as the other job tests);
  B: submitted with `flink run` to a Flink cluster of its own (RocksDB state, checkpoints
     every 3 s); once windows are being scored, its TaskManager process group (JVM +
     Python workers) is SIGKILLed, a new TaskManager is started, and the job restores
     from its last checkpoint and finishes (`--bounded`).
A read_committed consumer must see the same alert events from both (processing-time
fields aside): none missing, no duplicate.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from darkpool.stack import flink, jobs, smoke
from darkpool.stack.procs import PidFiles
from tests.integration.job_support import (
    HARNESS,
    JobProcess,
    ScorerProcess,
    comparable,
    differences,
    free_port,
    read_until,
    replay_market,
)

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.minicluster, pytest.mark.slow]


def _args(bootstrap, trades, name, url, restarts) -> dict[str, list[str]]:  # noqa: ANN001
    def topics(run: str) -> list[str]:
        return ["--alerts-topic", f"{trades}.{run}.alerts", "--scored-topic", f"{trades}.{run}.scored",
                "--dead-letter-topic", f"{trades}.{run}.dlq"]  # fmt: skip

    common = ["--bootstrap-servers", bootstrap, "--trades-topic", trades, "--scorer-url", url,
              "--start-from", "earliest", "--bounded", "--parallelism", "1", "--checkpoint-interval-ms", "3000"]  # fmt: skip
    return {
        run: [*common, *topics(run), "--job-name", f"{name}-{run}", "--restart-attempts", str(restarts[run])]
        for run in ("undisturbed", "tm_killed")
    }


def test_taskmanager_killed_mid_replay_same_committed_alerts(stack, own_flink, kafka_topic, tmp_path, trained_model):
    bootstrap = f"localhost:{stack.kafka_port}"
    trades = kafka_topic("trades", partitions=2)
    outputs = [f"{trades}.{run}.{kind}" for run in ("undisturbed", "tm_killed") for kind in ("alerts", "scored", "dlq")]
    smoke.create_topics(stack, outputs, 1)
    data = tmp_path / "market"
    replay_market(bootstrap, trades, data)
    scorer = ScorerProcess(trained_model, free_port(), tmp_path / "scorer.log")
    argv = _args(bootstrap, trades, f"tmkill-{trades[-8:]}", scorer.url, {"undisturbed": 0, "tm_killed": 10})
    try:
        job = JobProcess(argv["undisturbed"], tmp_path / "job-undisturbed.log")
        job.proc.wait(900)
        assert job.proc.returncode == 0, job.tail()
        job.stop()

        job_id = jobs.submit(own_flink, HARNESS, argv["tm_killed"], timeout_s=300)
        scored = f"{trades}.tm_killed.scored"
        seen = read_until(bootstrap, scored, lambda r: len(r) >= 100, 600)
        assert len(seen) >= 100, "the cluster job scored no windows"
        assert jobs.job(own_flink, job_id)["state"] == "RUNNING", "finished before the kill"
        pids = PidFiles(own_flink.pid_dir)
        tm = pids.live(flink.TM)
        assert tm is not None
        os.killpg(tm.pid, signal.SIGKILL)  # the TM JVM and its Python workers, no goodbye
        time.sleep(3)
        flink.start(own_flink, pids, flink.TM, flink.client_env(own_flink))
        state = jobs.wait_for_state(own_flink, job_id, {"FINISHED"}, timeout_s=900)
        restarts = jobs.job(own_flink, job_id).get("status-counts", {})
    finally:
        scorer.kill()
    got = {}
    for run in ("undisturbed", "tm_killed"):
        got[run] = comparable(read_until(bootstrap, f"{trades}.{run}.alerts", lambda r: False, 15, committed=True))
    smoke.delete_topics(stack, outputs)
    assert state == "FINISHED"
    a, b = got["undisturbed"], got["tm_killed"]
    assert a, "the undisturbed run committed no alerts: nothing to compare"
    diff = differences(a, b)
    assert not diff, f"alert events differ after the TM kill ({restarts}) (field: undisturbed, killed): {diff}"
