"""Pure parts of darkpool.stack: rendered configs, parsing, pid/port bookkeeping."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import pytest

from darkpool.stack import flink, kafka, procs
from darkpool.stack.settings import StackConfig

FEATURES_OUT = (
    "Feature: group.version\tSupportedMinVersion: 0\tSupportedMaxVersion: 1\tFinalizedVersionLevel: 1\tEpoch: 29\n"
    "Feature: metadata.version\tSupportedMinVersion: 3.3-IV3\tSupportedMaxVersion: 4.1-IV1\tFinalizedVersionLevel: 4.1-IV1\tEpoch: 29\n"
    "Feature: transaction.version\tSupportedMinVersion: 0\tSupportedMaxVersion: 2\tFinalizedVersionLevel: 1\tEpoch: 29\n"
)


@pytest.fixture
def cfg(tmp_path):
    return StackConfig(run_dir=tmp_path / "run", kafka_port=19092, controller_port=19093, rest_port=18081, jm_rpc_port=16123)


def props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_server_properties_single_node_transactions(cfg):
    p = props(kafka.server_properties(cfg))
    assert p["listeners"] == "PLAINTEXT://localhost:19092,CONTROLLER://localhost:19093"
    assert p["controller.quorum.voters"] == "1@localhost:19093"
    assert p["log.dirs"] == str(cfg.run_dir / "kafka" / "data")
    # the job's exactly-once sink uses a 15 min transaction timeout: the broker must allow it
    assert int(p["transaction.max.timeout.ms"]) >= 15 * 60 * 1000
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor", "transaction.state.log.min.isr"):
        assert p[key] == "1"


def test_cluster_id_is_kafka_uuid_text():
    ids = {kafka.random_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", i) for i in ids)
    # 1 in 64 raw ids starts with "-", which kafka-storage would parse as an option
    assert not any(i.startswith("-") for i in ids)


def test_parse_features():
    levels = kafka.parse_features(FEATURES_OUT)
    assert levels == {"group.version": "1", "metadata.version": "4.1-IV1", "transaction.version": "1"}


def test_merge_dotted_overrides_nested_keys_and_keeps_the_rest():
    base = {"rest": {"port": 8081, "address": "localhost"}, "python": {"executable": "python3"}}
    merged = flink.merge_dotted(base, {"rest.port": 18081, "python.client.executable": "/x/python"})
    assert merged == {
        "rest": {"port": 18081, "address": "localhost"},
        "python": {"executable": "python3", "client": {"executable": "/x/python"}},
    }
    assert base["rest"]["port"] == 8081  # input untouched


def test_merge_dotted_rejects_a_value_used_as_section():
    with pytest.raises(ValueError, match="is a value"):
        flink.merge_dotted({"rest": {"port": 8081}}, {"rest.port.x": 1})


def test_render_config_fills_machine_values_and_keeps_cluster_defaults(cfg):
    from ruamel.yaml import YAML

    conf = YAML(typ="safe").load(flink.render_config(cfg, "/venv/bin/python"))
    assert conf["rest"]["port"] == 18081
    assert conf["jobmanager"]["rpc"]["port"] == 16123
    assert conf["python"]["executable"] == conf["python"]["client"]["executable"] == "/venv/bin/python"
    ckpt = conf["execution"]["checkpointing"]
    assert ckpt["dir"] == (cfg.run_dir / "flink" / "checkpoints").as_uri()
    assert ckpt["mode"] == "EXACTLY_ONCE"
    assert conf["state"]["backend"]["type"] == "rocksdb"
    assert "--add-opens=java.base/java.util=ALL-UNNAMED" in conf["env"]["java"]["opts"]["all"]


def test_flink_processes_get_two_malloc_arenas_unless_the_user_chose(cfg, monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert flink.client_env(cfg)["MALLOC_ARENA_MAX"] == flink.MALLOC_ARENAS == "2"
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert flink.client_env(cfg)["MALLOC_ARENA_MAX"] == "4"


def test_stack_config_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("DARKPOOL_RUN_DIR", str(tmp_path))
    monkeypatch.setenv("DARKPOOL_KAFKA_PORT", "29092")
    cfg = StackConfig.load()
    assert cfg.run_dir == tmp_path and cfg.kafka_port == 29092
    assert cfg.bootstrap_servers == "localhost:29092"
    assert cfg.kafka_config().bootstrap_servers == "localhost:29092"


def test_stack_config_rejects_clashing_ports(tmp_path):
    with pytest.raises(ValueError, match="distinct"):
        StackConfig(run_dir=tmp_path, kafka_port=8081)


def test_port_in_use():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        s.listen()
        port = s.getsockname()[1]
        assert procs.port_in_use("localhost", port)
        assert procs.port_open("localhost", port)
    assert not procs.port_in_use("localhost", port)


def test_launch_and_stop_take_children_down(tmp_path):
    """The TaskManager's Python workers are its children: stopping it must stop them."""
    pids = procs.PidFiles(tmp_path / "pids")
    # parent ignores TERM for a moment, child sleeps: both must be gone after stop()
    script = "import subprocess, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"
    proc = procs.launch("demo", [sys.executable, "-c", script], os.environ, tmp_path / "demo.log", tmp_path, pids)
    deadline = time.monotonic() + 10
    while len(procs.group_members(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(procs.group_members(proc.pid)) == 2
    assert pids.live("demo") == proc
    procs.stop(proc, timeout_s=5)
    assert procs.group_members(proc.pid) == []
    assert pids.live("demo") is None  # stale pid file is dropped


def test_recycled_pid_is_not_ours(tmp_path):
    sleeper = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        fake = procs.Proc("x", sleeper.pid, start_ticks=1, log="", cmd="")  # wrong start time
        assert not procs.is_alive(fake)
        procs.stop(fake, timeout_s=1)  # must not signal a process it did not start
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_corrupt_pid_file_names_the_file(tmp_path):
    pids = procs.PidFiles(tmp_path)
    pids.path("kafka").write_text("{not json")
    with pytest.raises(procs.StackError, match="kafka.json"):
        pids.read("kafka")


def test_container_properties_render_onto_the_shared_config():
    from ruamel.yaml import YAML

    from darkpool.stack import container

    props = "# comment\njobmanager.rpc.address: jobmanager\nrest.bind-address: 0.0.0.0\nrest.port: 8082\n"
    conf = YAML(typ="safe").load(container.render(flink.BASE_CONFIG.read_text(), props))
    assert conf["jobmanager"]["rpc"] == {"address": "jobmanager", "port": 6123}
    assert conf["rest"]["port"] == 8082 and conf["rest"]["bind-address"] == "0.0.0.0"
    with pytest.raises(ValueError, match="line 1"):
        container.parse_properties("no colon here")


def test_up_starts_again_once_when_a_running_part_dies_meanwhile(cfg, monkeypatch):
    """A TaskManager that the task-cancellation watchdog ends while a new JobManager
    starts (its old one was killed) is started again, once; any other failure is raised."""
    from darkpool.stack import core

    pids = procs.PidFiles(cfg.pid_dir)
    dead = subprocess.Popen(["true"], start_new_session=True)
    dead.wait()
    pids.write(procs.Proc(flink.TM, dead.pid, start_ticks=1, log="", cmd=""))  # recorded, no longer running
    calls = []

    def fake_up(_cfg, parts, _progress):
        calls.append(parts)
        if len(calls) == 1:
            raise procs.StackError("the Flink flink-taskmanager exited during start-up")
        return core.UpResult(started=[flink.JM, flink.TM])

    monkeypatch.setattr(core, "_up", fake_up)
    said = []
    assert core.up(cfg, ("flink",), said.append).started == [flink.JM, flink.TM]
    assert len(calls) == 2 and "exited while the stack came up" in said[0]

    pids.remove(flink.TM)  # nothing died: the failure is the answer
    calls.clear()
    with pytest.raises(procs.StackError, match="exited during start-up"):
        core.up(cfg, ("flink",), said.append)
    assert len(calls) == 1
