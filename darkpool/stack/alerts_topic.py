"""Read committed alert events from the alerts topic (read_committed: the exactly-once view)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any


class BrokerUnavailable(Exception):
    """No Kafka broker answers at the given address."""


def _reachable(host_port: str, timeout_s: float = 3.0) -> bool:
    host, _, port = host_port.strip().rpartition(":")
    try:
        with socket.create_connection((host or "localhost", int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def read_alerts(bootstrap_servers: str, topic: str, from_beginning: bool = False,
                idle_timeout_s: float | None = None, max_alerts: int | None = None) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Yield committed alert events (dicts) as they become visible to read_committed."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    if not any(_reachable(hp) for hp in bootstrap_servers.split(",")):
        # fail in seconds: a client left to itself retries its bootstrap for ~30 s
        raise BrokerUnavailable(
            f"no Kafka broker answers at {bootstrap_servers} (is `darkpool stack up` running?)"
        )
    try:
        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap_servers.split(","),
            group_id=None,  # a reader, not a member: no offsets committed, no rebalances
            enable_auto_commit=False,
            isolation_level="read_committed",  # aborted / open transactions stay invisible
            auto_offset_reset="earliest" if from_beginning else "latest",
            consumer_timeout_ms=int(idle_timeout_s * 1000) if idle_timeout_s else float("inf"),
            request_timeout_ms=15000,
        )
    except KafkaError as exc:  # NoBrokersAvailable (2.x) / KafkaTimeoutError (3.x) and kin
        raise BrokerUnavailable(f"Kafka at {bootstrap_servers} is not usable: {exc!r}") from exc
    n = 0
    try:
        for msg in consumer:
            yield json.loads(msg.value)
            n += 1
            if max_alerts is not None and n >= max_alerts:
                return
    finally:
        consumer.close()
