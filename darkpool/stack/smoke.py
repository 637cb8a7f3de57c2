"""A real round trip through the stack: produce -> PyFlink job on the cluster -> consume.

Shared by `darkpool stack smoke` (the honest first command until the main job's demo
exists) and by tests/integration/test_kafka_connector.py.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

from core import paths
from darkpool.stack import jobs, kafka
from darkpool.stack.settings import StackConfig

SMOKE_JOB = paths.REPO_ROOT / "jobs" / "smoke_kafka_roundtrip.py"


def create_topics(cfg: StackConfig, names: list[str], partitions: int = 2) -> None:
    """Create the topics and return once every client can use them (see kafka.create_topics)."""
    kafka.create_topics(cfg.bootstrap_servers, names, partitions)


def delete_topics(cfg: StackConfig, names: list[str]) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=cfg.bootstrap_servers)
    try:
        admin.delete_topics(names)
    finally:
        admin.close()


def produce(cfg: StackConfig, topic: str, messages: list[str]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=cfg.bootstrap_servers, acks="all")
    try:
        sent = [producer.send(topic, m.encode()) for m in messages]
        producer.flush(timeout=30)
        for future in sent:  # a failed send raises here instead of vanishing
            future.get(timeout=30)
    finally:
        producer.close()


def consume(
    cfg: StackConfig,
    topic: str,
    expected: int,
    timeout_s: float = 60,
    committed_only: bool = True,
    settle_s: float = 0.0,
) -> list[str]:
    """Read from the beginning until `expected` messages arrived or the timeout passed,
    then `settle_s` longer, so that duplicates beyond `expected` show up too."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=cfg.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed" if committed_only else "read_uncommitted",
        consumer_timeout_ms=1000,
        # a topic created moments ago may be missing from the first metadata answer;
        # refresh within seconds, not after the default 5 minutes
        metadata_max_age_ms=2000,
    )
    got: list[str] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend(r.value.decode() for r in records)
        settle_until = time.monotonic() + settle_s
        while time.monotonic() < settle_until:
            for records in consumer.poll(timeout_ms=200).values():
                got.extend(r.value.decode() for r in records)
    finally:
        consumer.close()
    return got


@dataclass
class SmokeResult:
    job_id: str
    state: str
    sent: int
    received: list[dict]
    seconds: float


def run(cfg: StackConfig, n: int = 20, guarantee: str = "exactly-once", keep_topics: bool = False) -> SmokeResult:
    t0 = time.monotonic()
    tag = uuid.uuid4().hex[:8]
    src, dst = f"smoke.in.{tag}", f"smoke.out.{tag}"
    create_topics(cfg, [src, dst])
    try:
        sent = [f"trade-{i:04d} {tag}" for i in range(n)]
        produce(cfg, src, sent)
        job_id = jobs.submit(
            cfg,
            SMOKE_JOB,
            ["--bootstrap-servers", cfg.bootstrap_servers, "--input-topic", src, "--output-topic", dst, "--guarantee", guarantee],
        )
        state = jobs.wait_for_state(cfg, job_id, {"FINISHED"}, timeout_s=180)
        received = [json.loads(m) for m in consume(cfg, dst, n)]
        return SmokeResult(job_id, state, n, received, time.monotonic() - t0)
    finally:
        if not keep_topics:
            delete_topics(cfg, [src, dst])
