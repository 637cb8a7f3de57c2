"""Helpers for the detection-job tests: the job as a subprocess, Kafka in and out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "integration" / "detect_harness.py"


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


class ScorerProcess:
    """`darkpool scorer serve` on a fixed port, so it can be killed and started again."""

    def __init__(self, artifact: Path, port: int, log: Path):
        self.url = f"http://127.0.0.1:{port}"
        args = [sys.executable, "-m", "darkpool.cli", "scorer", "serve", "--artifact", str(artifact),
                "--port", str(port), "--device", "cpu", "--threads", "1"]  # fmt: skip
        self._out = open(log, "a")  # noqa: SIM115 - closed in kill()
        self.proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                     stdout=self._out, stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"scorer exited early, see {log}")
            try:
                with urllib.request.urlopen(self.url + "/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.kill()
        raise RuntimeError("scorer did not become ready in 120 s")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # SIGKILL: a crash, not a graceful stop
            self.proc.wait()
        self._out.close()


def comparable(events: list[dict]) -> dict[tuple[str, int], dict]:
    """Alert events by (alert_id, seq) without their processing-time fields."""
    out: dict[tuple[str, int], dict] = {}
    for e in events:
        key = (e["alert_id"], e["seq"])
        assert key not in out, f"duplicate alert event {key}"
        out[key] = {k: v for k, v in e.items() if k not in ("emitted_at", "latency_ms")}
    return out
