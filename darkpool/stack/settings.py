"""Where and how the local stack runs: ports, run dir, memory profile, timeouts.

Defaults are the shared stack on the standard ports, in the `default` memory profile.
Every field can be overridden by `DARKPOOL_<FIELD>` (see `core.config.from_env`), so a
test or a benchmark can start a second, isolated stack with its own run dir and ports
next to the shared one:

    DARKPOOL_RUN_DIR=/tmp/s2 DARKPOOL_KAFKA_PORT=19092 DARKPOOL_CONTROLLER_PORT=19093 \
    DARKPOOL_REST_PORT=18081 DARKPOOL_JM_RPC_PORT=16123 DARKPOOL_PROM_PORT=19249 \
        darkpool stack up

The JVMs' memory comes from a named profile (`PROFILES`), the one place it is defined:
`stack up` renders it into the Flink config and the broker's command line, the
containers (docker/) render the production profile the same way, and
docker/check_consistency.py checks that docker/compose.yaml agrees with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import paths
from core.config import FlinkConfig, KafkaConfig, from_env


@dataclass(frozen=True)
class Profile:
    """How much memory the stack's JVMs may take, and whether they take it at start."""

    name: str
    kafka_heap: str  # the broker's -Xmx
    jobmanager_memory: str  # jobmanager.memory.process.size (the JVM's whole budget)
    taskmanager_memory: str  # taskmanager.memory.process.size (heap, managed, network, metaspace)
    # -XX:+AlwaysPreTouch on the JobManager, the TaskManager and the broker (whose -Xms
    # is then its -Xmx): every heap page is resident from the first second. G1 otherwise
    # touches pages only as it first allocates in them, and the RSS creeps up for hours
    # towards -Xmx (bench/soak.py: +108 MB/h after 10 min for the TaskManager, +120 MB at
    # the hour for the broker); pre-touched, a host without the memory fails at start,
    # and a growing RSS means a real leak outside the heap. Costs the whole heap at idle.
    pretouch: bool

    def kafka_jvm_flags(self) -> tuple[str, ...]:
        """The broker's heap flags (docker/compose.yaml passes the production ones).

        >>> PROFILES["production"].kafka_jvm_flags()
        ('-Xmx1g', '-Xms1g', '-XX:+AlwaysPreTouch')
        >>> PROFILES["default"].kafka_jvm_flags()
        ('-Xmx512m',)
        """
        heap = f"-Xmx{self.kafka_heap}"
        return (heap, f"-Xms{self.kafka_heap}", PRETOUCH) if self.pretouch else (heap,)

    @property
    def flink_jvm_opts(self) -> str:
        """env.java.opts.jobmanager / .taskmanager (besides Flink's own -Xmx/-Xms)."""
        return PRETOUCH if self.pretouch else ""

    def flink_overrides(self) -> dict[str, Any]:
        """The profile's keys of the Flink config (flat, as `flink.merge_dotted` takes them).

        >>> PROFILES["production"].flink_overrides()["taskmanager.memory.process.size"]
        '6144m'
        >>> PROFILES["default"].flink_overrides()["env.java.opts.taskmanager"]
        ''
        """
        return {
            "jobmanager.memory.process.size": self.jobmanager_memory,
            "taskmanager.memory.process.size": self.taskmanager_memory,
            "env.java.opts.jobmanager": self.flink_jvm_opts,
            "env.java.opts.taskmanager": self.flink_jvm_opts,
            "darkpool.profile": self.name,  # read back by `stack status` (Flink ignores it)
        }


PRETOUCH = "-XX:+AlwaysPreTouch"

PROFILES = {
    # Demo, tests, development: fits an 8 GB laptop beside an editor and a browser. Heaps
    # grow as they are used and are not pre-touched, so an idle stack holds what its JVMs
    # have touched (README "The local stack": 1.2 GiB), not what they may take (~5.5 GiB).
    # The TaskManager's 4 GiB still give its 8 slots ~1.1 GiB of managed memory (RocksDB
    # and the Python workers) and a ~1.5 GiB heap: the full detection job ran on it
    # (`darkpool submit`, tiny market, its process group at most 1.5 GiB with 6 Python
    # workers; tests/integration/test_chaos.py runs it on the cluster in CI).
    "default": Profile("default", kafka_heap="512m", jobmanager_memory="1024m", taskmanager_memory="4096m",
                       pretouch=False),  # fmt: skip
    # Long runs (bench/soak.py, docker/compose.yaml): sized for 8 busy slots, every heap
    # resident from the start so that the RSS stays flat for hours (idle 5.1 GiB).
    "production": Profile("production", kafka_heap="1g", jobmanager_memory="1024m", taskmanager_memory="6144m",
                          pretouch=True),  # fmt: skip
}


def profile(name: str) -> Profile:
    """The profile called `name`; an unknown name raises ValueError listing the known ones.

    >>> profile("production").pretouch
    True
    >>> profile("prod")
    Traceback (most recent call last):
    ...
    ValueError: unknown stack profile 'prod'; choose one of: default, production
    """
    if name not in PROFILES:
        raise ValueError(f"unknown stack profile {name!r}; choose one of: {', '.join(PROFILES)}")
    return PROFILES[name]


@dataclass(frozen=True)
class StackConfig:
    run_dir: Path = field(default_factory=paths.run_dir)  # pids, logs, Kafka data, checkpoints
    host: str = "localhost"  # every listener binds here only (nothing is exposed off-box)
    kafka_port: int = 9092  # broker listener (clients)
    controller_port: int = 9093  # KRaft controller listener (combined broker+controller node)
    rest_port: int = 8081  # Flink REST API + web UI (same env name as FlinkConfig.rest_port)
    jm_rpc_port: int = 6123  # JobManager RPC (the TaskManager registers here)
    prom_port: int = 9249  # first Prometheus reporter port; JM and TM take the next free ones
    profile: str = "default"  # memory profile, a key of PROFILES (DARKPOOL_PROFILE=production)
    ready_timeout_s: float = 120.0  # how long `up` waits for each part before giving up
    stop_timeout_s: float = 30.0  # TERM, then this long, then KILL

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_dir", Path(self.run_dir).resolve())
        profile(self.profile)  # an unknown name fails here, with the known ones
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
    def memory(self) -> Profile:
        return PROFILES[self.profile]

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
