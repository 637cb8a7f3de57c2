"""Input tables of the job, as SQL: parsing, validation, event time and the bad/late split.

Everything here runs in the JVM (no per-event Python on the main path):

1. A *raw* source table: Kafka with one `payload STRING` column (`format = 'raw'`) plus
   the partition / offset metadata, or a bounded file of JSON lines (backtest).
   `rowtime` is a computed column, `event_time_ms(payload, partition, <time bounds>)`
   (0 for a malformed event or an implausible time, so that a broken ts never moves the
   watermark), and the watermark is declared in the DDL, so it is generated inside the
   source (per Kafka partition, with `scan.watermark.idle-timeout` for silent partitions).
2. A *typed* view: `parse_event(payload, partition, <time bounds>)` gives the typed
   contract fields plus `reason`: NULL when valid, else the JSON type error, the first
   broken rule of `core.schemas.RULES` in its words, or `ts: implausible_time: ...`. Both
   are the job's JVM functions (udfs/jvm EventParser): one streaming parse and the rules
   in Java, shared by the two calls on a record (the parse is kept for the next call on
   the same thread; both calls must get the same arguments).
3. `main` = valid and on time; `side` = malformed (reason), implausible_time (a bad
   clock) or late (`rowtime <= CURRENT_WATERMARK(rowtime)`, i.e. beyond the allowed
   out-of-orderness: its pane may already be closed).

Hostile input: a message over `core.schemas.MAX_MESSAGE_BYTES`, not UTF-8, nested deeper
than `MAX_NESTING_DEPTH` or with a string over its `STRING_MAX_CHARS` is malformed, with
the same bounds and words in Java and Python (the Java constants are checked against
core/schemas.py by tests/unit/test_contract.py).

Event time plausibility (`core.schemas.TimePlausibility`, defaults there): a single event
with a bad clock must not move the watermark, or every valid event after it in its
partition is late. Two rules, applied in the JVM to events that keep the contract:

- future: beyond the wall clock + `max_future_ms` (5 min). Replays of past data are in
  the past, so it never touches them; live, it bounds the harm of one bad clock to
  that tolerance. Also applied by the Python validator when given a `now_ns`.
- jump: more than `max_jump_ms` (7 days, longer than any market closure) before or after
  the latest plausible event of the same Kafka partition, as seen by the parser of the
  source subtask reading it (per thread, per partition; a file source is one partition).
  `reanchor_after` (50) consecutive events that agree with each other but not with the
  reference are a real jump (a new replay on the topic, or a bad first event) and become
  the reference; the ones before are dead-lettered, never silently dropped. JVM-only:
  the Python validator sees one message, never the partition's history, so the dead
  letter of this rule carries the JVM's reason as it is.

Deterministic for a replay of valid data: the simulator's and the LOBSTER import's events
are in the past and have no gap beyond a few hours (tests/integration/test_parse_event.py
runs both through the parser). The reference lives in memory: after a restart the first
event of a partition sets it again.

Strict JSON types, as Python's `json.loads` + `core.schemas.validate_record` read them:
no "5" for 5, no 5.0 for an integer, no number for a string, `contra` a string or
null, `hidden` true/false; unknown keys are ignored, a repeated key keeps its last
value. The dead-letter formatter re-derives the exact reason with the Python validator
(and marks any disagreement). Why Java and not SQL: one JSON_VALUE per field plus a
type regular expression cost ~120 us per event on the 2-core box (measured), and the
rules as a generated SQL CASE cost a quarter of the source thread plus JIT time
(measured with JFR); the Java parse is one pass over the payload's bytes.
"""

from __future__ import annotations

import pyarrow as pa

from core.job_config import JobConfig
from core.schemas import EVENT_SCHEMA, FIELD_NAMES, IMPLAUSIBLE_TIME, TimePlausibility, encode_batch

_SQL_TYPES = {
    pa.int64(): "BIGINT",
    pa.string(): "STRING",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
}
SQL_TYPES: dict[str, str] = {f.name: _SQL_TYPES[f.type] for f in EVENT_SCHEMA}

PARSE_FUNCTION = "parse_event"  # SQL name of darkpool.flink.ParseEvent (udfs/jvm)
EVENT_TIME_FUNCTION = "event_time_ms"  # darkpool.flink.EventTimeMs
# The job's JVM functions (SQL name -> class), all in the udfs/jvm jar.
JVM_FUNCTIONS = {
    PARSE_FUNCTION: "darkpool.flink.ParseEvent",
    EVENT_TIME_FUNCTION: "darkpool.flink.EventTimeMs",
    "stable_hash": "darkpool.flink.StableHash",
    "read_time_ms": "darkpool.flink.ReadTimeMs",
}
READ_TIME_COLUMN = "read_ms"  # main view: wall-clock ms at which the source read the event

# Columns of the side path, in order (udfs.deadletter.DeadLetterFormatter unpacks them).
SIDE_FIELDS = ("kind", "reason", "payload", "src_partition", "src_offset", "ts", "watermark_ms")


def _parser_args(partition: str, rule: TimePlausibility) -> str:
    """Arguments after the payload of both JVM functions: the record's partition (an INT
    expression) and the time bounds."""
    return (
        f"{partition}, CAST({rule.max_future_ms} AS BIGINT), CAST({rule.max_jump_ms} AS BIGINT), "
        f"{rule.reanchor_after}"
    )


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _watermark_ddl(cfg: JobConfig) -> str:
    ooo = cfg.out_of_orderness_ms
    return f"WATERMARK FOR rowtime AS rowtime - INTERVAL '{ooo // 1000}.{ooo % 1000:03d}' SECOND"


def register_functions(t_env) -> None:
    """Register the job's JVM functions; call before any DDL or view of this module."""
    from core import paths
    from udfs import planner

    try:
        for name, cls in JVM_FUNCTIONS.items():  # loaded by the calling JVM thread's class loader
            planner.planned(t_env, lambda n=name, c=cls: t_env.create_java_temporary_system_function(n, c))
    except Exception as exc:  # py4j wraps the ClassNotFoundException
        raise RuntimeError(
            f"the job's JVM functions ({', '.join(JVM_FUNCTIONS.values())}) are not on Flink's classpath: put "
            f"{paths.udf_jar()} in the cluster's lib/ (`darkpool stack up` does) or add it "
            "to the job's jars (local runs do); build it with scripts/bootstrap.sh"
        ) from exc


# Event time in ms; a malformed row or an implausible time gets 0 (always "behind" the
# watermark, never moves it) and is dead-lettered anyway. rowtime must not be NULL.
def _rowtime(partition: str, rule: TimePlausibility) -> str:
    return f"rowtime AS TO_TIMESTAMP_LTZ({EVENT_TIME_FUNCTION}(payload, {_parser_args(partition, rule)}), 3)"


_NO_PARTITION = "CAST(NULL AS INT)"


def kafka_raw_ddl(
    table: str, cfg: JobConfig, topic: str | None = None, bounded: bool = False
) -> str:
    """DDL of the raw Kafka trades table (payload + metadata, rowtime, watermark).

    `bounded`: stop at the offsets that are the latest when the job starts (a replay of
    the topic as a backtest); the end of input then flushes every pane and episode.
    """
    k = cfg.kafka
    startup = {
        "committed": "'scan.startup.mode' = 'group-offsets', 'properties.auto.offset.reset' = 'earliest'",
        "earliest": "'scan.startup.mode' = 'earliest-offset'",
        "latest": "'scan.startup.mode' = 'latest-offset'",
    }[cfg.start_from]
    # Idleness is measured in processing time: while a backlog of one partition is being
    # worked off, another partition can look idle and the watermark jumps past its unread
    # events (measured: a replayed topic dead-lettered a whole partition as late). A bounded
    # replay never needs idleness (the end of input flushes), so it is off there; live, a
    # backlog after a restart can still trigger it (the events are then dead-lettered as
    # late and counted, never silently dropped).
    idle = 0 if bounded else cfg.source_idle_timeout_ms
    bounded_opt = ",\n  'scan.bounded.mode' = 'latest-offset'" if bounded else ""
    return f"""
CREATE TEMPORARY TABLE {table} (
  payload STRING,
  src_partition INT METADATA FROM 'partition' VIRTUAL,
  src_offset BIGINT METADATA FROM 'offset' VIRTUAL,
  {_rowtime("src_partition", cfg.time_plausibility)},
  {_watermark_ddl(cfg)}
) WITH (
  'connector' = 'kafka',
  'topic' = {_sql_str(topic or k.trades_topic)},
  'properties.bootstrap.servers' = {_sql_str(k.bootstrap_servers)},
  'properties.group.id' = {_sql_str(cfg.group_id)},
  {startup},
  'format' = 'raw',
  'raw.charset' = 'UTF-8',
  'scan.watermark.idle-timeout' = '{idle} ms'{bounded_opt}
)"""


def file_raw_ddl(table: str, path: str, cfg: JobConfig) -> str:
    """DDL of a bounded newline-delimited JSON file: the backtest source.

    Same raw payload column as Kafka, so a backtest runs the very same parsing,
    validation, watermark and dead-letter path. (Flink's Parquet format needs Hadoop
    jars the stack does not ship; `parquet_to_ndjson` converts a contract Parquet file.)
    """
    return f"""
CREATE TEMPORARY TABLE {table} (
  payload STRING,
  {_rowtime(_NO_PARTITION, cfg.time_plausibility)},
  {_watermark_ddl(cfg)}
) WITH (
  'connector' = 'filesystem',
  'path' = {_sql_str(path)},
  'format' = 'raw',
  'raw.charset' = 'UTF-8'
)"""


def parquet_to_ndjson(parquet_path: str, out_path: str, batch_rows: int = 200_000) -> int:
    """Write a contract Parquet file as one JSON event per line (the Kafka wire format).

    Values are written exactly as `core.schemas.encode_message` would (repr floats, no
    rounding); rows are not validated here: bad rows must reach the job's dead-letter
    path like bad Kafka messages do. Returns the number of lines.
    """
    import pyarrow.parquet as pq

    n = 0
    with open(out_path, "w", encoding="utf-8") as out:
        for batch in pq.ParquetFile(parquet_path).iter_batches(
            batch_size=batch_rows, columns=list(FIELD_NAMES)
        ):
            out.writelines(text + "\n" for _, text in encode_batch(batch))
            n += batch.num_rows
    return n


def _typed_select(raw: str, has_metadata: bool, time_rule: TimePlausibility | None = None) -> str:
    meta = (
        "src_partition, src_offset"
        if has_metadata
        else f"{_NO_PARTITION} AS src_partition, CAST(NULL AS BIGINT) AS src_offset"
    )
    args = _parser_args("src_partition" if has_metadata else _NO_PARTITION, time_rule or TimePlausibility())
    cols = ",\n  ".join(f"e.{n} AS {n}" for n in FIELD_NAMES)
    # The inner query calls the parser once per row (it is declared non-deterministic, so
    # the planner does not inline it into each field access).
    return f"""SELECT
  {cols},
  payload, src_partition, src_offset, rowtime, e.reason AS reason
FROM (SELECT {PARSE_FUNCTION}(payload, {args}) AS e, payload, {meta}, rowtime FROM {raw})"""


def register_views(
    t_env, raw: str, has_metadata: bool, prefix: str = "trades", time_rule: TimePlausibility | None = None
) -> tuple[str, str]:
    """Register `<prefix>_typed`, `_checked`, `_main`, `_side` views over the raw table.

    `has_metadata`: the raw table has Kafka partition / offset columns (file: no).
    `time_rule`: the bounds the raw table's DDL was made with (`cfg.time_plausibility`).
    Returns the names of the main and side views. Main columns: the contract fields +
    rowtime + `read_ms` (when the source read the event, for the alert latency). Side columns: `SIDE_FIELDS`.
    """
    typed = _typed_select(raw, has_metadata, time_rule)
    t_env.execute_sql(f"CREATE TEMPORARY VIEW {prefix}_typed AS {typed}")
    t_env.execute_sql(
        f"""CREATE TEMPORARY VIEW {prefix}_checked AS SELECT *,
  CURRENT_WATERMARK(rowtime) AS wm
FROM {prefix}_typed"""
    )
    t_env.execute_sql(
        f"""CREATE TEMPORARY VIEW {prefix}_main AS
SELECT {", ".join(FIELD_NAMES)}, rowtime, read_time_ms() AS {READ_TIME_COLUMN} FROM {prefix}_checked
WHERE reason IS NULL AND (wm IS NULL OR rowtime > wm)"""
    )
    t_env.execute_sql(
        f"""CREATE TEMPORARY VIEW {prefix}_side AS
SELECT
  CASE WHEN reason IS NULL THEN 'late'
       WHEN reason LIKE 'ts: {IMPLAUSIBLE_TIME}%' THEN '{IMPLAUSIBLE_TIME}'
       ELSE 'malformed' END AS kind,
  COALESCE(reason, 'late: event time at or below the watermark') AS reason,
  payload, src_partition, src_offset, ts,
  -- TIMESTAMP_LTZ cannot be CAST to a number; string round trip in the session zone.
  UNIX_TIMESTAMP(CAST(wm AS STRING)) * 1000 + EXTRACT(MILLISECOND FROM wm) AS watermark_ms
FROM {prefix}_checked
WHERE reason IS NOT NULL OR (wm IS NOT NULL AND rowtime <= wm)"""
    )
    return f"{prefix}_main", f"{prefix}_side"
