"""The scorer dies mid-replay: the job recovers; nothing is lost, nothing committed twice.

Short (runs by default): one run of the job (mini cluster, `--bounded`) on the replayed
tiny market; the scorer is SIGKILLed once windows are being scored and started again on
the same port some seconds later. The job must restart and finish, every window of the
market must have been scored (the tap is at-least-once: some twice, the evidence of the
restart), and the committed alerts must hold no event twice. Measured 2026-12-07 on the
2-core box (test call, the model already trained): 64 s at load average 3-6, 229 s at ~16.

Long (`slow`): the same replayed topic read by the job twice (mini cluster, `--bounded`):
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

import pyarrow.parquet as pq
import pytest

from core.config import WindowConfig
from tests.integration.job_support import (
    JobProcess,
    ScorerProcess,
    comparable,
    differences,
    free_port,
    read_until,
    replay_market,
)

pytestmark = [pytest.mark.integration, pytest.mark.minicluster]


def _run(bootstrap, trades, alerts, scored, dlq, url, name, log, restarts) -> JobProcess:  # noqa: ANN001
    return JobProcess(
        ["--bootstrap-servers", bootstrap, "--trades-topic", trades, "--dead-letter-topic", dlq,
         "--alerts-topic", alerts, "--scored-topic", scored, "--scorer-url", url,
         "--start-from", "earliest", "--bounded", "--parallelism", "1", "--checkpoint-interval-ms", "3000",
         "--scorer-retries", "1", "--scorer-timeout-s", "2", "--scorer-backoff-s", "0.5",
         "--restart-attempts", str(restarts), "--job-name", name],
        log,
    )  # fmt: skip


@pytest.mark.slow
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


def _market_windows(events_parquet) -> set[tuple[str, int]]:  # noqa: ANN001
    """(instrument, window_end ms) of every window the job scores: one per instrument and
    pane with events (udfs/assembler.py), the model's 5 s panes."""
    slide_ns = WindowConfig().slide_ns
    ev = pq.read_table(events_parquet, columns=["instrument", "ts"]).to_pandas()
    panes = ev.assign(pane=ev.ts // slide_ns)[["instrument", "pane"]].drop_duplicates()
    return {(i, int(p + 1) * (slide_ns // 1_000_000)) for i, p in zip(panes.instrument, panes.pane, strict=True)}


def test_scorer_killed_once_nothing_lost_nothing_committed_twice(stack, kafka_topic, tmp_path, trained_model) -> None:
    bootstrap = f"localhost:{stack.kafka_port}"
    trades = kafka_topic("trades", partitions=2)
    data = replay_market(bootstrap, trades, tmp_path / "market")
    alerts, scored, dlq = (kafka_topic(n) for n in ("alerts", "scored", "dlq"))
    port = free_port()
    scorer = ScorerProcess(trained_model, port, tmp_path / "scorer.log")
    job = _run(bootstrap, trades, alerts, scored, dlq, scorer.url, f"scorer-kill-{trades[-8:]}",
               tmp_path / "job.log", 10)  # fmt: skip
    try:
        seen = read_until(bootstrap, scored, lambda r: len(r) >= 50, 300, job)
        assert len(seen) >= 50 and job.alive(), job.tail()
        scorer.kill()
        time.sleep(6)  # > retries x (timeout + backoff): the task fails and restarts
        assert job.alive(), f"the job gave up instead of restarting:\n{job.tail()}"
        scorer = ScorerProcess(trained_model, port, tmp_path / "scorer.log")
        job.proc.wait(300)
        assert job.proc.returncode == 0, job.tail()
    finally:
        job.stop()
        scorer.kill()
    taps = read_until(bootstrap, scored, lambda r: False, 5)  # (the job has finished: all written)
    keys = [(w["instrument"], w["window_end"]) for w in taps]
    assert set(keys) == _market_windows(data / "events.parquet"), "windows lost (or invented) by the restart"
    assert len(keys) > len(set(keys)), "no window was scored again: the kill did not make the job restart"
    events = read_until(bootstrap, alerts, lambda r: False, 8, committed=True)
    assert events, "no alert committed: nothing to check for duplicates"
    ids = [(e["alert_id"], e["seq"]) for e in events]
    assert len(ids) == len(set(ids)), "an alert event committed twice after the restart"
    opened = [e["alert_id"] for e in events if e["status"] == "open"]
    assert len(opened) == len(set(opened)) and {e["alert_id"] for e in events} == set(opened)
