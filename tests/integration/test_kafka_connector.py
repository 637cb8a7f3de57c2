"""The shaded Kafka connector jar works from PyFlink on the cluster: KafkaSource ->
Python map -> exactly-once KafkaSink, read back with read_committed."""

from __future__ import annotations

import json

import pytest

from darkpool.stack import jobs, smoke

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


def test_kafka_source_to_exactly_once_sink_roundtrip(stack, kafka_topic, flink_job):
    src, dst = kafka_topic("in"), kafka_topic("out")
    sent = [f"order-{i:03d} AAPL {'x' * (i % 7)}" for i in range(50)]
    smoke.produce(stack, src, sent)

    job_id = flink_job(
        smoke.SMOKE_JOB,
        "--bootstrap-servers", stack.bootstrap_servers,
        "--input-topic", src,
        "--output-topic", dst,
        "--guarantee", "exactly-once",
    )
    # bounded source: the job finishes, and its final checkpoint commits the transaction
    assert jobs.wait_for_state(stack, job_id, {"FINISHED"}, timeout_s=240) == "FINISHED"

    received = [json.loads(m) for m in smoke.consume(stack, dst, len(sent), timeout_s=60, settle_s=3)]
    assert sorted(r["echo"] for r in received) == sorted(sent)
    assert all(r["chars"] == len(r["echo"]) for r in received)
    # exactly once: nothing duplicated (uncommitted data would be invisible, not doubled)
    assert len(received) == len(sent)
