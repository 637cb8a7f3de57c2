"""Replay a Parquet event file into the trades topic with kafka-python.

Message key = instrument (so the default murmur2 partitioner keeps one instrument on one
partition, in order), value = `core.schemas.encode_message` (contract fields only: labels
never reach Kafka). `speed=0` sends as fast as the producer can; `speed=X` paces the
events at X times their event-time rate. `inject_bad=N` mixes N malformed messages
(one of each kind in BAD_KINDS, cycling) in at random positions, to exercise the job's
dead-letter path.

`bulk_replay` sends the same messages (same key, value and partition) through Kafka's own
console producer, a JVM from the broker jars: about ten times kafka-python's rate, for
backfills and benchmarks. It cannot pace or inject bad messages, and it checks that the
topic grew by every message it was given (the console producer only logs a failed send).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from core.config import KafkaConfig
from core.schemas import FIELD_NAMES, encode_batch, encode_message

BATCH_ROWS = 20_000


class ReplayError(RuntimeError):
    """Replay cannot go on (no broker, a send failed); the message says what to do."""


@dataclass(frozen=True)
class ReplayStats:
    sent: int  # good events sent
    bad: int  # malformed messages injected
    seconds: float
    topic: str
    bootstrap: str

    @property
    def rate(self) -> float:
        return (self.sent + self.bad) / self.seconds if self.seconds > 0 else float("inf")


def _mutate(rec: dict, **changes: object) -> bytes:
    return json.dumps({**rec, **changes}).encode()


# What a broken upstream might send: each breaks the contract in its own way.
_BAD: tuple[tuple[str, Callable[[dict], bytes]], ...] = (
    ("not_json", lambda rec: b"\xff\xfe not json"),
    ("truncated_json", lambda rec: encode_message(rec)[:25]),
    ("missing_field", lambda rec: json.dumps({k: v for k, v in rec.items() if k != "price"}).encode()),
    ("string_number", lambda rec: _mutate(rec, qty=str(rec["qty"]))),
    ("negative_qty", lambda rec: _mutate(rec, qty=-abs(rec["qty"]))),
    ("crossed_nbbo", lambda rec: _mutate(rec, bid=rec["ask"] + 1.0)),
    ("unknown_event", lambda rec: _mutate(rec, event="modify")),
    ("fill_without_contra", lambda rec: _mutate(rec, event="fill", contra=None)),
)
BAD_KINDS = tuple(name for name, _ in _BAD)


def _check_columns(table: pa.Table) -> None:
    missing = [c for c in FIELD_NAMES if c not in table.column_names]
    if missing:
        raise ValueError(f"input has no column(s) {missing}; is it an events file written by `darkpool generate`?")


def make_producer(cfg: KafkaConfig, compression: str | None = None) -> Any:  # a kafka.KafkaProducer
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    try:
        return KafkaProducer(
            bootstrap_servers=cfg.bootstrap_servers.split(","),
            linger_ms=20,  # fill batches: throughput over latency for a replay
            batch_size=512 * 1024,
            compression_type=compression,
            acks=1,
            max_block_ms=10_000,  # a broker that dies mid-replay fails send() instead of hanging
            request_timeout_ms=10_000,
            bootstrap_timeout_ms=5_000,  # kafka-python 3: give up on a dead broker after 5 s
        )
    except KafkaError as exc:
        raise _no_broker(cfg, exc) from None


def _no_broker(cfg: KafkaConfig, exc: Exception) -> ReplayError:
    return ReplayError(
        f"no Kafka broker answers at {cfg.bootstrap_servers} ({type(exc).__name__}). Start the "
        "local stack with `darkpool stack up`, or point --bootstrap-servers / DARKPOOL_BOOTSTRAP_SERVERS "
        "at a running broker."
    )


TOPIC_LOOKUP_S = 5.0  # how long a missing topic is looked for again before it counts as missing


def ensure_topic(cfg: KafkaConfig, topic: str, create: bool = False) -> None:
    """Fail fast (or create it) when the topic is missing: the local broker does not
    auto-create topics, and a send to a missing topic would only time out. Returns once
    the topic and each of its partitions (with a leader) are in the broker's metadata:
    a topic created a moment ago may be missing from the first answer."""
    from kafka.errors import KafkaError

    from darkpool.stack import kafka as broker
    from darkpool.stack.procs import StackError

    try:
        admin = broker.admin_client(cfg.bootstrap_servers, bootstrap_timeout_ms=5_000)
    except KafkaError as exc:
        raise _no_broker(cfg, exc) from None
    try:
        if create:  # a no-op for an existing topic, then waits until it is usable
            broker.create_missing_topics(admin, [topic], cfg.partitions)
        elif not broker.topic_visible(admin, topic, TOPIC_LOOKUP_S):
            raise ReplayError(
                f"topic {topic!r} does not exist at {cfg.bootstrap_servers} (the broker does not "
                "auto-create topics). `darkpool stack up` creates the standard ones; pass "
                "--create-topic to create this one."
            )
    except StackError as exc:
        raise ReplayError(str(exc)) from None
    except KafkaError as exc:
        raise ReplayError(f"looking up topic {topic!r} at {cfg.bootstrap_servers} failed: {exc!r}") from None
    finally:
        admin.close()


def _partitioner(producer: Any, topic: str) -> Callable[[str], tuple[bytes, int]]:
    """instrument -> (key bytes, partition), as Kafka's default (murmur2) partitioner would
    place the key, computed once per instrument instead of once per message."""
    from kafka.partitioner.default import murmur2

    parts = sorted(producer.partitions_for(topic) or ())
    if not parts:
        raise ReplayError(f"topic {topic!r} has no partitions (does it exist?)")
    cache: dict[str, tuple[bytes, int]] = {}

    def of(instrument: str) -> tuple[bytes, int]:
        hit = cache.get(instrument)
        if hit is None:
            key = instrument.encode()
            hit = cache[instrument] = (key, parts[(murmur2(key) & 0x7FFFFFFF) % len(parts)])
        return hit

    return of


def replay(
    table: pa.Table,
    cfg: KafkaConfig,
    topic: str | None = None,
    speed: float = 0.0,
    inject_bad: int = 0,
    seed: int = 0,
    compression: str | None = None,
    create_topic: bool = False,
    producer: Any = None,
) -> ReplayStats:
    """Send every row of `table` (contract columns, in row order) to `topic`.

    `producer` replaces the real KafkaProducer (and the topic check) in unit tests."""
    from kafka.errors import KafkaError

    if speed < 0:
        raise ValueError(f"speed must be >= 0 (0 = as fast as possible), got {speed}")
    _check_columns(table)
    topic = topic or cfg.trades_topic
    own = producer is None
    if own:
        ensure_topic(cfg, topic, create_topic)
    producer = producer or make_producer(cfg, compression)
    n = table.num_rows
    rng = np.random.default_rng(seed)
    bad_at = np.sort(rng.integers(0, max(n, 1), size=inject_bad))
    ts = table.column("ts").to_numpy()
    due = (ts - ts[0]) / 1e9 / speed if speed > 0 and n else None
    failures: list[BaseException] = []
    bad_sent, row = 0, 0
    partition_of = _partitioner(producer, topic)
    start = time.monotonic()
    try:
        for batch in table.select(list(FIELD_NAMES)).to_batches(max_chunksize=BATCH_ROWS):
            for rec in batch.to_pylist():
                while bad_sent < inject_bad and bad_at[bad_sent] <= row:
                    payload = _BAD[bad_sent % len(_BAD)][1](rec)
                    key, part = partition_of(rec["instrument"])
                    producer.send(topic, key=key, value=payload, partition=part).add_errback(failures.append)
                    bad_sent += 1
                if due is not None:
                    wait = due[row] - (time.monotonic() - start)
                    if wait > 0.001:
                        time.sleep(wait)
                key, part = partition_of(rec["instrument"])
                producer.send(topic, key=key, value=encode_message(rec), partition=part).add_errback(failures.append)
                row += 1
            if failures:
                break
        producer.flush(timeout=30)
    except KafkaError as exc:
        raise ReplayError(
            f"sending to {topic} at {cfg.bootstrap_servers} failed after {row} events: {exc!r}. "
            "Is the broker still up (`darkpool stack status`)?"
        ) from None
    finally:
        if own:
            producer.close(timeout=5)
    if failures:
        raise ReplayError(f"{len(failures)} sends to {topic} at {cfg.bootstrap_servers} failed, first: {failures[0]!r}")
    return ReplayStats(row, bad_sent, time.monotonic() - start, topic, cfg.bootstrap_servers)


CONSOLE_PRODUCER = "org.apache.kafka.tools.ConsoleProducer"


def _end_offsets(cfg: KafkaConfig, topic: str) -> int:
    """Sum of the topic's end offsets (how many messages it has ever held)."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    try:
        consumer = KafkaConsumer(bootstrap_servers=cfg.bootstrap_servers.split(","), bootstrap_timeout_ms=5_000)
    except KafkaError as exc:
        raise _no_broker(cfg, exc) from None
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        return sum(consumer.end_offsets(parts).values())
    finally:
        consumer.close()


def _keyed_lines(batch: pa.RecordBatch) -> bytes:
    """`instrument TAB value NEWLINE` per row, the value exactly as `encode_message`."""
    lines = []
    for instrument, text in encode_batch(batch):
        if "\t" in instrument or "\n" in instrument:
            raise ValueError(f"instrument {instrument!r} holds a tab or newline; replay it with --engine python")
        lines.append(f"{instrument}\t{text}\n")
    return "".join(lines).encode()


def _console_producer(argv: list[str], table: pa.Table) -> tuple[int, str]:
    """Pipe the table's keyed lines into the console producer; (exit status, its output)."""
    with tempfile.TemporaryFile() as log:  # a pipe could fill up and block the producer
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT)
        try:
            for batch in table.select(list(FIELD_NAMES)).to_batches(max_chunksize=BATCH_ROWS):
                proc.stdin.write(_keyed_lines(batch))
        except BrokenPipeError:
            pass  # the producer died: its exit status and output say why
        except BaseException:
            proc.kill()
            raise
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
        rc = proc.wait()
        log.seek(0)
        return rc, log.read().decode(errors="replace")


def bulk_replay(
    table: pa.Table, cfg: KafkaConfig, topic: str | None = None, create_topic: bool = False
) -> ReplayStats:
    """Send every row of `table` (in row order) to `topic` as fast as Kafka's console
    producer can, with the same key (instrument), value and partition as `replay`."""
    from darkpool.stack.kafka import tool_argv
    from darkpool.stack.procs import StackError

    _check_columns(table)
    topic = topic or cfg.trades_topic
    ensure_topic(cfg, topic, create_topic)
    try:
        argv = tool_argv(
            CONSOLE_PRODUCER, "--bootstrap-server", cfg.bootstrap_servers, "--topic", topic,
            "--property", "parse.key=true", "--property", "key.separator=\t",
            "--producer-property", "linger.ms=20", "--producer-property", f"batch.size={512 * 1024}",
        )  # fmt: skip
    except StackError as exc:
        raise ReplayError(f"{exc} (or replay with --engine python)") from None
    before = _end_offsets(cfg, topic)
    start = time.monotonic()
    rc, output = _console_producer(argv, table)
    seconds = time.monotonic() - start
    failed = [line for line in output.splitlines() if "ERROR" in line or "Exception" in line]
    if rc or failed:
        raise ReplayError(
            f"Kafka's console producer failed (exit {rc}) sending to {topic} at {cfg.bootstrap_servers}: "
            f"{(failed or output.splitlines() or ['no output'])[0][:300]}. Is the broker up (`darkpool stack status`)? "
            "Part of the table may have arrived: replay into a fresh topic"
        )
    grew = _end_offsets(cfg, topic) - before
    if grew < table.num_rows:
        raise ReplayError(
            f"{topic} grew by {grew} messages but {table.num_rows} were sent: some were lost. Replay into a fresh "
            "topic (or delete and recreate this one): replaying into it again would repeat the ones that arrived"
        )
    return ReplayStats(table.num_rows, 0, seconds, topic, cfg.bootstrap_servers)
