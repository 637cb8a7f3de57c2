"""The stack's own life cycle, on an isolated stack (own run dir and ports), so that it
can be torn down without disturbing the shared stack on the default ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from darkpool.stack import core, flink, jobs, kafka, smoke
from darkpool.stack.procs import PidFiles, group_members, port_in_use
from darkpool.stack.settings import StackConfig

pytestmark = pytest.mark.integration

DARKPOOL = str(Path(sys.executable).parent / "darkpool")
PORTS = {"kafka_port": 29092, "controller_port": 29093, "rest_port": 28081, "jm_rpc_port": 26123, "prom_port": 29249}


def isolated(tmp_path: Path) -> StackConfig:
    return StackConfig(run_dir=tmp_path / "run", **PORTS)


def isolated_env(cfg: StackConfig, **extra: str) -> dict[str, str]:
    env = dict(os.environ, DARKPOOL_RUN_DIR=str(cfg.run_dir), **extra)
    env.update({f"DARKPOOL_{k.upper()}": str(v) for k, v in PORTS.items()})
    env.pop("DARKPOOL_BOOTSTRAP_SERVERS", None)
    return env


def darkpool(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DARKPOOL, *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.cluster
def test_up_roundtrip_job_down_leaves_nothing(tmp_path):
    cfg = isolated(tmp_path)
    try:
        first = core.up(cfg)
        assert set(first.started) == {"kafka", "flink-jobmanager", "flink-taskmanager"}
        assert core.running(cfg)
        groups = [p.pid for p in core.status(cfg)]

        # idempotent: a second `up` starts nothing
        assert core.up(cfg).started == []

        # the default memory profile: nothing pre-touched, the profile's sizes in the config
        assert flink.running_profile(cfg) == "default"
        for part in core.status(cfg):
            cmdline = Path(f"/proc/{part.pid}/cmdline").read_text().replace("\0", " ")
            assert "AlwaysPreTouch" not in cmdline, part.name
        conf = (cfg.flink_conf_dir / "config.yaml").read_text()
        assert f"size: {cfg.memory.taskmanager_memory}" in conf

        # transaction protocol v1 (FLINK-40689) and the system's topics
        assert kafka.describe_features(cfg)["transaction.version"] == "1"
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=cfg.bootstrap_servers)
        kc = cfg.kafka_config()
        assert {kc.trades_topic, kc.alerts_topic, kc.alerts_fast_topic, kc.dead_letter_topic} <= set(admin.list_topics())
        admin.close()

        # produce and consume on the real broker with kafka-python
        topic = "lifecycle.check"
        smoke.create_topics(cfg, [topic], partitions=1)
        smoke.produce(cfg, topic, ["hello", "world"])
        assert smoke.consume(cfg, topic, 2, timeout_s=30) == ["hello", "world"]
        # a record stamped with a past event time (as the job's alerts of a replay are)
        # gets the broker's append time, else 24 h retention would delete it within minutes
        assert _stored_timestamp(cfg, topic, record_ts=1_700_000_000_000) > time.time() * 1000 - 600_000

        # a small PyFlink job through `flink run -py`, followed over REST
        job_id = jobs.submit(cfg, smoke.SMOKE_JOB)  # no topics given: bundled sample, print sink
        assert jobs.wait_for_state(cfg, job_id, {"FINISHED"}, timeout_s=180) == "FINISHED"
        assert flink.rest_get(cfg, "/overview")["jobs-finished"] >= 1
    finally:
        stopped = core.down(cfg)
    assert set(stopped) == {"kafka", "flink-jobmanager", "flink-taskmanager"}
    assert all(group_members(pgid) == [] for pgid in groups)
    assert not any(port_in_use(cfg.host, p) for p in cfg.ports().values())
    assert not any(PidFiles(cfg.pid_dir).dir.glob("*.json"))


def _stored_timestamp(cfg, topic: str, record_ts: int) -> int:  # noqa: ANN001
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    producer = KafkaProducer(bootstrap_servers=cfg.bootstrap_servers)
    meta = producer.send(topic, b"old", timestamp_ms=record_ts).get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=cfg.bootstrap_servers, enable_auto_commit=False)
    tp = TopicPartition(topic, meta.partition)
    consumer.assign([tp])
    consumer.seek(tp, meta.offset)
    try:
        for _ in range(20):
            for records in consumer.poll(timeout_ms=500).values():
                return records[0].timestamp
    finally:
        consumer.close()
    raise AssertionError(f"record at offset {meta.offset} of {topic} not read back")


def test_port_taken_names_the_port_and_exits_nonzero(tmp_path):
    cfg = isolated(tmp_path)
    with socket.socket() as squatter:
        squatter.bind((cfg.host, cfg.kafka_port))
        squatter.listen()
        done = darkpool(isolated_env(cfg), "stack", "up")
    assert done.returncode != 0
    assert f"port already taken: kafka port {cfg.kafka_port}" in done.stderr
    assert PidFiles(cfg.pid_dir).read("kafka") is None  # nothing was started


def test_java_missing_is_reported(tmp_path):
    cfg = isolated(tmp_path)
    env = isolated_env(cfg, PATH="/nonexistent")
    env.pop("JAVA_HOME", None)
    done = darkpool(env, "stack", "up")
    assert done.returncode != 0
    assert "Java is missing" in done.stderr


def test_broker_that_does_not_start_names_its_log(tmp_path):
    """Storage from another cluster (a wrong meta.properties): the broker refuses to start."""
    cfg = isolated(tmp_path)
    data = cfg.kafka_dir / "data"
    data.mkdir(parents=True)
    (data / "meta.properties").write_text("version=1\ncluster.id=notavalidid\nnode.id=7\n")
    done = darkpool(isolated_env(cfg), "stack", "up", "--only", "kafka", "--timeout", "90")
    assert done.returncode != 0, done.stdout
    assert "Kafka broker exited during start-up" in done.stderr
    assert str(kafka.log_file(cfg)) in done.stderr
    # nothing left behind by the failed `up`
    assert PidFiles(cfg.pid_dir).read("kafka") is None
    assert not port_in_use(cfg.host, cfg.kafka_port)

