"""Dead-letter records: every event the job does not score, with the reason why.

Two kinds reach here from the SQL side path (`udfs/sources.py`), never the main path
(`SplitDeadLetters` separates them from the pane rows after the one table conversion):

- `malformed`: the SQL checks flagged the row (not JSON, a missing / mistyped field, a
  broken rule). The exact reason is then re-derived with the Python validator
  `core.schemas.parse_message` (strict, no coercion), so a dead letter names the same
  field and rule a producer would get from `core.schemas`. If the Python validator
  accepts a row that SQL flagged, the row is still dead-lettered (it already left the
  main path) under the SQL reason, marked `validator_disagreement`, and counted: it is a
  bug to fix in the SQL checks, never a silent drop.
- `implausible_time`: keeps the contract, but its time is a bad clock (beyond the wall
  clock + a tolerance, or far from its partition's recent events: udfs/sources.py). The
  jump rule needs the partition's history, which the Python validator never sees, so
  the JVM's reason is kept as it is.
- `late`: valid, but its event time is at or below the watermark (beyond the allowed
  out-of-orderness), so its pane has already been emitted.

Formatting a dead letter never raises, whatever the payload (a poison pill must not
fail the job at every restart): the Python validator is total (bounded size and depth
before json.loads), any other error becomes the reason, and a payload over
`core.schemas.MAX_MESSAGE_BYTES` characters is cut there (`payload_chars` keeps its
length) so the dead letter stays within Kafka's message size.

One JSON object per record on `darkpool.deadletter` (at-least-once: a restart may
repeat a record; `id` = source topic/partition/offset makes repeats recognisable).
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from pyflink.common import Row, Types
from pyflink.datastream import OutputTag, ProcessFunction, RuntimeContext

from core.schemas import IMPLAUSIBLE_TIME, MAX_MESSAGE_BYTES, NOT_UTF8, ContractError, parse_message

KINDS = ("malformed", IMPLAUSIBLE_TIME, "late")


def dead_letter_id(
    topic: str | None, partition: int | None, offset: int | None, payload: str
) -> str:
    """Stable id of a dead letter: its Kafka coordinates, or a hash of the payload (files)."""
    if topic is not None and partition is not None and offset is not None:
        return f"{topic}/{partition}/{offset}"
    return "sha1:" + hashlib.sha1(payload.encode("utf-8", "replace")).hexdigest()


def python_reason(payload: str) -> tuple[str, str] | None:
    """(field, reason) from the strict Python validator, or None if it accepts the payload.

    Never raises: an error of the validator itself is a reason too."""
    try:
        parse_message(payload, now_ns=time.time_ns())
    except ContractError as exc:
        return exc.field, exc.reason
    except Exception as exc:  # noqa: BLE001 - a poison pill must not fail the job
        return "<payload>", f"unreadable by the Python validator ({type(exc).__name__})"
    return None


def _split_jvm_reason(jvm_reason: str) -> tuple[str | None, str]:
    """The JVM's "field: why" -> (field, why)."""
    field, sep, why = (jvm_reason or "").partition(": ")
    return (field, why) if sep else (None, jvm_reason or "")


def format_dead_letter(
    kind: str,
    jvm_reason: str,
    payload: str | None,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    event_ts_ns: int | None = None,
    watermark_ms: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """Build the dead-letter JSON. Returns (json text, record dict) for tests and counters."""
    if kind not in KINDS:
        raise ValueError(f"dead-letter kind must be one of {KINDS}, got {kind!r}")
    payload = "" if payload is None else payload
    record: dict[str, Any] = {
        "id": dead_letter_id(topic, partition, offset, payload),
        "kind": kind,
        "field": None,
        "reason": jvm_reason,
        "validator_disagreement": False,
        "payload": payload[:MAX_MESSAGE_BYTES],
        "payload_chars": len(payload),
        "source": {"topic": topic, "partition": partition, "offset": offset},
        "event_ts_ns": event_ts_ns,
        "watermark_ms": watermark_ms,
    }
    jvm_field, jvm_why = _split_jvm_reason(jvm_reason)
    if kind == IMPLAUSIBLE_TIME or (kind == "malformed" and jvm_why == NOT_UTF8):
        # Python cannot re-derive these: the partition's history, the bytes before Flink
        # decoded them (invalid bytes reach Python as U+FFFD)
        record["field"], record["reason"] = jvm_field, jvm_why
    elif kind == "malformed":
        found = python_reason(payload)
        if found is None:
            record["validator_disagreement"] = True
            record["reason"] = (
                f"rejected by the job's JVM checks ({jvm_reason}); the Python validator accepts it"
            )
        else:
            record["field"], record["reason"] = found
    else:
        record["field"] = "ts"
    return json.dumps(record, separators=(",", ":"), allow_nan=False), record


DEAD_LETTERS = OutputTag("dead-letters", Types.STRING())

# Pane batches after the split = WindowAssembler input: one row per (shard, pane),
# the pane UDAF's PANE_BATCH (udfs/pane_udaf.py) with its shard in front.
PANE_BATCH_TYPE = Types.ROW_NAMED(
    ["shard", "pane", "instruments", "max_ts_ms", "read_ms", "feats", "parts", "part_n", "part_k", "part_stats"],
    [
        Types.INT(),
        Types.LONG(),
        Types.OBJECT_ARRAY(Types.STRING()),
        Types.PRIMITIVE_ARRAY(Types.LONG()),
        Types.PRIMITIVE_ARRAY(Types.LONG()),
        Types.PRIMITIVE_ARRAY(Types.FLOAT()),
        Types.OBJECT_ARRAY(Types.STRING()),
        Types.PRIMITIVE_ARRAY(Types.LONG()),
        Types.PRIMITIVE_ARRAY(Types.INT()),
        Types.PRIMITIVE_ARRAY(Types.FLOAT()),
    ],
)


class SplitDeadLetters(ProcessFunction):
    """Pane batches -> main output; side rows -> dead-letter JSON on `DEAD_LETTERS`, counted.

    Input = the job's UNION ALL table (jobs/detect_anomalies.union_query): `kind` is
    'pane', 'malformed' or 'late'. Pane rows are few (one per instrument shard and slide)
    and bad rows rare, so per-row Python here is cheap; no event takes this path twice.
    """

    def __init__(self, topic: str | None):
        self._topic = topic  # None for file sources (no Kafka coordinates)

    def open(self, runtime_context: RuntimeContext) -> None:
        group = runtime_context.get_metrics_group().add_group("darkpool")
        self._counters = {k: group.counter(f"dead_letters_{k}") for k in KINDS}
        self._disagreements = group.counter("validator_disagreements")
        self._panes = group.counter("panes")

    def process_element(self, value: Any, ctx: ProcessFunction.Context):
        kind = value[0]
        if kind == "pane":  # one row per (shard, pane), all instruments of the shard
            shard, instruments, panes, max_ts_ms, read_ms, feats, parts, part_n, part_k, part_stats = value[1:11]
            self._panes.inc(len(instruments))
            yield Row(shard, int(panes[0]), instruments, max_ts_ms, read_ms, feats, parts, part_n, part_k, part_stats)
            return
        reason, payload, partition, offset, ts_ns, wm_ms = value[11:]
        text, record = format_dead_letter(
            kind,
            reason,
            payload,
            self._topic if partition is not None else None,
            partition,
            offset,
            ts_ns,
            wm_ms,
        )
        self._counters[kind].inc()
        if record["validator_disagreement"]:
            self._disagreements.inc()
        yield DEAD_LETTERS, text
