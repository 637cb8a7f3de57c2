"""The scorer dies mid-replay: the job recovers and the committed alerts equal an undisturbed run.

Same replayed topic (tiny market, trained model), read by the job twice (mini cluster,
`--bounded`):
  A: undisturbed;
  B: the scorer is SIGKILLed once the job has scored windows, and started again on the
     same port some seconds later. Retries run out while it is down, the task fails,
     the job restarts from its last checkpoint and finishes.
A read_committed consumer must see the same alert events from both (processing-time
fields aside): none missing, no duplicate. (The TaskManager-kill variant is
tests/integration/test_failure_recovery.py, on the decision-stage job.)
"""

from __future__ import annotations

import time

import pytest

from tests.integration.job_support import (
    JobProcess,
    ScorerProcess,
    comparable,
    differences,
    free_port,
    read_until,
    replay_market,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _run(bootstrap, trades, alerts, scored, dlq, url, name, log, restarts) -> JobProcess:  # noqa: ANN001
    return JobProcess(
        ["--bootstrap-servers", bootstrap, "--trades-topic", trades, "--dead-letter-topic", dlq,
         "--alerts-topic", alerts, "--scored-topic", scored, "--scorer-url", url,
         "--start-from", "earliest", "--bounded", "--parallelism", "1", "--checkpoint-interval-ms", "3000",
         "--scorer-retries", "1", "--scorer-timeout-s", "2", "--scorer-backoff-s", "0.5",
         "--restart-attempts", str(restarts), "--job-name", name],
        log,
    )  # fmt: skip


def test_scorer_killed_mid_replay_same_committed_alerts(stack, kafka_topic, tmp_path, trained_model) -> None:
    artifact = trained_model
    bootstrap = f"localhost:{stack.kafka_port}"
    trades = kafka_topic("trades", partitions=2)
    data = tmp_path / "market"
    replay_market(bootstrap, trades, data)

    results = {}
    for run in ("undisturbed", "scorer_killed"):
        alerts, scored, dlq = (kafka_topic(f"{run}-{n}") for n in ("alerts", "scored", "dlq"))
        port = free_port()
        scorer = ScorerProcess(artifact, port, tmp_path / f"scorer-{run}.log")
        job = _run(bootstrap, trades, alerts, scored, dlq, scorer.url, f"{run}-{trades[-8:]}",
                   tmp_path / f"job-{run}.log", 0 if run == "undisturbed" else 10)  # fmt: skip
        try:
            if run == "scorer_killed":
                seen = read_until(bootstrap, scored, lambda r: len(r) >= 100, 600, job)
                assert len(seen) >= 100, job.tail()
                assert job.alive(), "the job finished before the scorer could be killed"
                scorer.kill()
                time.sleep(10)  # > retries x (timeout + backoff): the task must fail
                assert job.alive(), f"the job gave up instead of restarting:\n{job.tail()}"
                scorer = ScorerProcess(artifact, port, tmp_path / f"scorer-{run}.log")
            job.proc.wait(900)
            assert job.proc.returncode == 0, job.tail()
        finally:
            job.stop()
            scorer.kill()
        results[run] = comparable(read_until(bootstrap, alerts, lambda r: False, 15, committed=True))
        taps = read_until(bootstrap, scored, lambda r: False, 10)
        keys = [(w["instrument"], w["window_end"]) for w in taps]
        # Re-scored after the restart (at-least-once tap): evidence the restart happened.
        print(f"{run}: {len(set(keys))} windows scored, {len(keys) - len(set(keys))} scored again")

    a, b = results["undisturbed"], results["scorer_killed"]
    assert a, "the undisturbed run committed no alerts: nothing to compare"
    diff = differences(a, b)
    assert not diff, f"alert events differ after the scorer kill (field: undisturbed, killed): {diff}"
