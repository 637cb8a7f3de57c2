"""Read committed alert events from the alerts topic (read_committed: the exactly-once view)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any


class BrokerUnavailable(Exception):
    """No Kafka broker answers at the given address."""


class TopicMissing(BrokerUnavailable):
    """The broker answers but has no such topic (it does not create topics on read).

    A BrokerUnavailable, so every caller that reports one reports this too: either way
    there is nothing to read.
    """


TOPIC_WAIT_S = 5.0  # how long a just-created topic may take to show in the broker's metadata


def _wait_for_topic(consumer: Any, topic: str, bootstrap_servers: str, wait_s: float = TOPIC_WAIT_S) -> None:
    deadline = time.monotonic() + wait_s
    while topic not in consumer.topics():
        if time.monotonic() > deadline:
            known = sorted(t for t in consumer.topics() if not t.startswith("__"))
            shown = ", ".join(known[:10]) + (f", ... ({len(known)} in all)" if len(known) > 10 else "")
            raise TopicMissing(f"topic {topic!r} does not exist on {bootstrap_servers} (topics there: "
                               f"{shown or 'none'}); check --topic / DARKPOOL_ALERTS_TOPIC")
        time.sleep(0.5)


def reachable(host_port: str, timeout_s: float = 3.0) -> bool:
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

    if not any(reachable(hp) for hp in bootstrap_servers.split(",")):
        # fail in seconds: a client left to itself retries its bootstrap for ~30 s
        raise BrokerUnavailable(
            f"no Kafka broker answers at {bootstrap_servers} (is `darkpool stack up` running?)"
        )
    try:
        consumer = KafkaConsumer(
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
        _wait_for_topic(consumer, topic, bootstrap_servers)  # else a typo waits forever, silently
        consumer.subscribe([topic])
        for msg in consumer:
            yield json.loads(msg.value)
            n += 1
            if max_alerts is not None and n >= max_alerts:
                return
    finally:
        consumer.close()
