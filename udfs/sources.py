"""Input tables of the job, as SQL: parsing, validation, event time and the bad/late split.

Everything here runs in the JVM (no per-event Python on the main path):

1. A *raw* source table: Kafka with one `payload STRING` column (`format = 'raw'`) plus
   the partition / offset metadata, or a bounded file of JSON lines (backtest).
   `rowtime` is a computed column, `event_time_ms(payload)` (0 for a malformed event, so
   that a broken ts never moves the watermark), and the watermark is declared in the
   DDL, so it is generated inside the source (per Kafka partition, with
   `scan.watermark.idle-timeout` for silent partitions).
2. A *typed* view: `parse_event(payload)` gives the typed contract fields plus `reason`:
   NULL when valid, else the JSON type error or the first broken rule of
   `core.schemas.RULES`, in its words. Both are the job's JVM functions (udfs/jvm
   EventParser): one streaming parse and the rules in Java, shared by the two calls on a
   record (the parse is kept for the next call on the same thread).
3. `main` = valid and on time; `side` = malformed (reason) or late
   (`rowtime <= CURRENT_WATERMARK(rowtime)`, i.e. beyond the allowed out-of-orderness:
   its pane may already be closed).

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
from core.schemas import EVENT_SCHEMA, FIELD_NAMES, encode_batch

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
}

# Columns of the side path, in order (udfs.deadletter.DeadLetterFormatter unpacks them).
SIDE_FIELDS = ("kind", "reason", "payload", "src_partition", "src_offset", "ts", "watermark_ms")


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _watermark_ddl(cfg: JobConfig) -> str:
    ooo = cfg.out_of_orderness_ms
    return f"WATERMARK FOR rowtime AS rowtime - INTERVAL '{ooo // 1000}.{ooo % 1000:03d}' SECOND"


def register_functions(t_env) -> None:
    """Register the job's JVM functions; call before any DDL or view of this module."""
    from core import paths

    try:
        for name, cls in JVM_FUNCTIONS.items():
            t_env.create_java_temporary_system_function(name, cls)
    except Exception as exc:  # py4j wraps the ClassNotFoundException
        raise RuntimeError(
            f"the job's JVM functions ({', '.join(JVM_FUNCTIONS.values())}) are not on Flink's classpath: put "
            f"{paths.udf_jar()} in the cluster's lib/ (`darkpool stack up` does) or add it "
            "to the job's jars (local runs do); build it with scripts/bootstrap.sh"
        ) from exc


# Event time in ms; a malformed row gets 0 (always "behind" the watermark, never moves
# it) and is dead-lettered anyway. rowtime must not be NULL.
def _rowtime() -> str:
    return f"rowtime AS TO_TIMESTAMP_LTZ({EVENT_TIME_FUNCTION}(payload), 3)"


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
  {_rowtime()},
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
  {_rowtime()},
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


def _typed_select(raw: str, has_metadata: bool) -> str:
    meta = (
        "src_partition, src_offset"
        if has_metadata
        else ("CAST(NULL AS INT) AS src_partition, CAST(NULL AS BIGINT) AS src_offset")
    )
    cols = ",\n  ".join(f"e.{n} AS {n}" for n in FIELD_NAMES)
    # The inner query calls the parser once per row (it is declared non-deterministic, so
    # the planner does not inline it into each field access).
    return f"""SELECT
  {cols},
  payload, src_partition, src_offset, rowtime, e.reason AS reason
FROM (SELECT {PARSE_FUNCTION}(payload) AS e, payload, {meta}, rowtime FROM {raw})"""


def register_views(t_env, raw: str, has_metadata: bool, prefix: str = "trades") -> tuple[str, str]:
    """Register `<prefix>_typed`, `_checked`, `_main`, `_side` views over the raw table.

    `has_metadata`: the raw table has Kafka partition / offset columns (file: no).
    Returns the names of the main and side views. Main columns: the contract fields +
    rowtime. Side columns: `SIDE_FIELDS`.
    """
    typed = _typed_select(raw, has_metadata)
    t_env.execute_sql(f"CREATE TEMPORARY VIEW {prefix}_typed AS {typed}")
    t_env.execute_sql(
        f"""CREATE TEMPORARY VIEW {prefix}_checked AS SELECT *,
  CURRENT_WATERMARK(rowtime) AS wm
FROM {prefix}_typed"""
    )
    t_env.execute_sql(
        f"""CREATE TEMPORARY VIEW {prefix}_main AS
SELECT {", ".join(FIELD_NAMES)}, rowtime FROM {prefix}_checked
WHERE reason IS NULL AND (wm IS NULL OR rowtime > wm)"""
    )
    t_env.execute_sql(
        f"""CREATE TEMPORARY VIEW {prefix}_side AS
SELECT
  CASE WHEN reason IS NULL THEN 'late' ELSE 'malformed' END AS kind,
  COALESCE(reason, 'late: event time at or below the watermark') AS reason,
  payload, src_partition, src_offset, ts,
  -- TIMESTAMP_LTZ cannot be CAST to a number; string round trip in the session zone.
  UNIX_TIMESTAMP(CAST(wm AS STRING)) * 1000 + EXTRACT(MILLISECOND FROM wm) AS watermark_ms
FROM {prefix}_checked
WHERE reason IS NOT NULL OR (wm IS NOT NULL AND rowtime <= wm)"""
    )
    return f"{prefix}_main", f"{prefix}_side"
