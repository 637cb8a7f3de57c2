"""Where and how the local stack runs: ports, run dir, heap sizes, timeouts.

Defaults are the shared stack on the standard ports. Every field can be overridden by
`DARKPOOL_<FIELD>` (see `core.config.from_env`), so a test or a benchmark can start
a second, isolated stack with its own run dir and ports next to the shared one:

    DARKPOOL_RUN_DIR=/tmp/s2 DARKPOOL_KAFKA_PORT=19092 DARKPOOL_CONTROLLER_PORT=19093 \
    DARKPOOL_REST_PORT=18081 DARKPOOL_JM_RPC_PORT=16123 DARKPOOL_PROM_PORT=19249 \
        darkpool stack up
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core import paths
from core.config import FlinkConfig, KafkaConfig, from_env


@dataclass(frozen=True)
class StackConfig:
    run_dir: Path = field(default_factory=paths.run_dir)  # pids, logs, Kafka data, checkpoints
    host: str = "localhost"  # every listener binds here only (nothing is exposed off-box)
    kafka_port: int = 9092  # broker listener (clients)
    controller_port: int = 9093  # KRaft controller listener (combined broker+controller node)
    rest_port: int = 8081  # Flink REST API + web UI (same env name as FlinkConfig.rest_port)
    jm_rpc_port: int = 6123  # JobManager RPC (the TaskManager registers here)
    prom_port: int = 9249  # first Prometheus reporter port; JM and TM take the next free ones
    kafka_heap: str = "1g"  # broker -Xmx: plenty for one node with a few topics
    ready_timeout_s: float = 120.0  # how long `up` waits for each part before giving up
    stop_timeout_s: float = 30.0  # TERM, then this long, then KILL

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_dir", Path(self.run_dir).resolve())
        ports = self.ports()
        if len(set(ports.values())) != len(ports):
            raise ValueError(f"stack ports must be distinct, got {ports}")

    @classmethod
    def load(cls, **overrides: object) -> StackConfig:
        return from_env(cls, **overrides)

    def ports(self) -> dict[str, int]:
        """Fixed ports `up` binds (the Prometheus range is probed separately)."""
        return {
            "kafka": self.kafka_port,
            "kafka-controller": self.controller_port,
            "flink-rest": self.rest_port,
            "flink-rpc": self.jm_rpc_port,
        }

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.rest_port}"

    def kafka_config(self) -> KafkaConfig:
        """Topic names etc. from the shared config, pointed at this stack's broker."""
        return from_env(KafkaConfig, bootstrap_servers=self.bootstrap_servers)

    def flink_config(self) -> FlinkConfig:
        return FlinkConfig(rest_host=self.host, rest_port=self.rest_port)

    # ---- layout of the run dir ---------------------------------------------------------
    @property
    def pid_dir(self) -> Path:
        return self.run_dir / "pids"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def kafka_dir(self) -> Path:
        return self.run_dir / "kafka"

    @property
    def flink_dir(self) -> Path:
        return self.run_dir / "flink"

    @property
    def flink_conf_dir(self) -> Path:
        return self.flink_dir / "conf"

    @property
    def flink_lib_dir(self) -> Path:
        return self.flink_dir / "lib"

    @property
    def flink_plugins_dir(self) -> Path:
        return self.flink_dir / "plugins"
