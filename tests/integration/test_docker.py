"""docker/ is linted and consistent with the local stack (no engine needed)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from core import paths

CHECK = paths.REPO_ROOT / "docker" / "check.sh"


def test_docker_check_passes():
    env_bin = str(Path(sys.executable).parent)
    done = subprocess.run([str(CHECK)], capture_output=True, text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "VENV_BIN": env_bin})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok   hadolint docker/Dockerfile.flink" in done.stdout
    assert "docker/ is consistent with the local stack" in done.stdout


def _consistency_module():
    spec = importlib.util.spec_from_file_location("check_consistency", paths.REPO_ROOT / "docker" / "check_consistency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_consistency_check_catches_a_version_drift():
    from ruamel.yaml import YAML

    check = _consistency_module()
    compose = YAML(typ="safe").load((paths.REPO_ROOT / "docker" / "compose.yaml").read_text())
    compose["services"]["kafka"]["image"] = "apache/kafka:3.9.0"
    compose["services"]["kafka"]["command"] = ["kafka-server-start.sh"]  # no transaction.version=1
    check.check_kafka(compose)
    assert check.failures == ["kafka image = deps/kafka-broker version", "kafka storage formatted with transaction.version=1"]


def test_consistency_check_catches_a_profile_drift():
    """docker/ runs the production profile: a broker without pre-touch or a Flink
    service on another profile fails the check."""
    from ruamel.yaml import YAML

    check = _consistency_module()
    compose = YAML(typ="safe").load((paths.REPO_ROOT / "docker" / "compose.yaml").read_text())
    compose["services"]["kafka"]["environment"]["KAFKA_OPTS"] = ""
    compose["services"]["kafka"]["environment"]["KAFKA_HEAP_OPTS"] = "-Xmx512m"
    check.check_kafka(compose)
    compose["services"]["taskmanager"]["environment"] = {**compose["services"]["taskmanager"]["environment"],
                                                         "DARKPOOL_PROFILE": "default"}  # fmt: skip
    check.check_flink(compose)
    assert check.failures == [
        "kafka JVM flags = the production profile's broker flags",
        "taskmanager runs the production profile (DARKPOOL_PROFILE)",
        "taskmanager memory = the production profile's",
    ]
