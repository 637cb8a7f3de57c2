"""Helpers for the detection-job tests: the job as a subprocess, Kafka in and out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer

from darkpool.evaluate.alert_diff import comparable, differences  # noqa: F401  (re-exported for the tests)
from darkpool.stack.scorer import ScorerProcess, free_port  # noqa: F401  (the tests' one launcher)

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "integration" / "detect_harness.py"


def replay_market(bootstrap: str, topic: str, out: Path, seed: int = 7) -> Path:
    """`darkpool generate --preset tiny --seed S` into `out`, then `darkpool replay` it into
    `topic`; returns `out` (events.parquet, episodes.parquet)."""
    for args in (("generate", "--preset", "tiny", "--seed", str(seed), "--out", str(out)),
                 ("replay", "--input", str(out), "--bootstrap-servers", bootstrap, "--topic", topic)):  # fmt: skip
        subprocess.run([sys.executable, "-m", "darkpool.cli", *args], cwd=ROOT, check=True, capture_output=True)
    return out


class JobProcess:
    """`detect_harness.py` on the local mini cluster (real Flink, real Kafka), own process group."""

    def __init__(self, args: list[str], log: Path):
        self.log = log
        self._out = open(log, "w")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, str(HARNESS), *args], cwd=ROOT, env=env, stdout=self._out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._out.close()


def produce(
    bootstrap: str, topic: str, payloads: Iterable[bytes | str], key: bytes | None = None
) -> None:
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    for v in payloads:
        p.send(topic, v.encode() if isinstance(v, str) else v, key=key)
    p.flush()
    p.close()


def read_until(
    bootstrap: str,
    topic: str,
    done: Callable[[list[dict]], bool],
    timeout_s: float,
    job: JobProcess | None = None,
    committed: bool = False,
) -> list[dict]:
    """Read JSON records from the start of `topic` until `done(records)` or the timeout."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
        isolation_level="read_committed" if committed else "read_uncommitted", consumer_timeout_ms=1000,
    )  # fmt: skip
    records: list[dict] = []
    deadline = time.time() + timeout_s
    try:
        while time.time() < deadline and not done(records):
            if job is not None and not job.alive():
                raise AssertionError(f"the job exited early:\n{job.tail()}")
            for msg in consumer:
                records.append(json.loads(msg.value))
                if done(records):
                    break
    finally:
        consumer.close()
    return records
