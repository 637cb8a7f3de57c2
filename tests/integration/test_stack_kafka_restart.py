"""`core.restart_kafka`: the broker stops and starts again on the same data dir, on an
isolated stack (own run dir and ports), so the shared broker is never disturbed."""

from __future__ import annotations

import pytest

from darkpool.stack import core, kafka, smoke
from darkpool.stack.procs import PidFiles
from darkpool.stack.settings import StackConfig

pytestmark = pytest.mark.integration

PORTS = {"kafka_port": 29192, "controller_port": 29193, "rest_port": 28181, "jm_rpc_port": 26223, "prom_port": 29349}


def test_restart_kafka_keeps_topics_and_messages(tmp_path):
    cfg = StackConfig(run_dir=tmp_path / "run", **PORTS)
    try:
        assert core.up(cfg, ("kafka",)).started == [kafka.NAME]
        before = PidFiles(cfg.pid_dir).live(kafka.NAME)
        smoke.create_topics(cfg, ["restart.check"], partitions=2)
        smoke.produce(cfg, "restart.check", ["one", "two"])

        result = core.restart_kafka(cfg)
        after = PidFiles(cfg.pid_dir).live(kafka.NAME)
        assert result.started == [kafka.NAME] and result.topics_created == []  # system topics kept
        assert after is not None and after.pid != before.pid
        smoke.produce(cfg, "restart.check", ["three"])  # usable at once after the restart
        assert sorted(smoke.consume(cfg, "restart.check", 3, timeout_s=60)) == ["one", "three", "two"]
    finally:
        core.down(cfg)
    assert PidFiles(cfg.pid_dir).read(kafka.NAME) is None
