"""Input tables of the job, as SQL: parsing, validation, event time and the bad/late split.

Everything here runs in the JVM (no per-event Python on the main path):

1. A *raw* source table: Kafka with one `payload STRING` column (`format = 'raw'`) plus
   the partition / offset metadata, or a bounded file of JSON lines (backtest).
   `rowtime` is a computed column (`ts` ns -> TIMESTAMP_LTZ(3)) and the watermark is
   declared in the DDL, so it is generated inside the source (per Kafka partition,
   with `scan.watermark.idle-timeout` for silent partitions).
2. A *typed* view: `JSON_VALUE(... NULL ON EMPTY NULL ON ERROR)` + a cast per contract
   field (`json_field`), and a `reason` column: NULL when valid, else the first broken rule
   from `udfs.schemas.sql_reason_expression()` (generated from `RULES`, so the JVM and
   Python validators cannot drift apart), or a JSON type error.
3. `main` = valid and on time; `side` = malformed (reason) or late
   (`rowtime <= CURRENT_WATERMARK(rowtime)`, i.e. beyond the allowed out-of-orderness:
   its pane may already be closed).

Strict JSON types. JSON_VALUE + cast coerces (`"qty": "5"` -> 5, `5.7` -> 5) and
stringifies numbers for string fields, so on its own it would let contract errors
through. One regular expression over the payload (`TYPE_REGEX`) flags any contract
field whose JSON token has the wrong type (a quoted or non-numeric number, a fraction
or exponent in an integer, a non-boolean `hidden`, a non-string string field, a
non-string non-null `contra`). Flagged rows leave the main path; the dead-letter
formatter then names the exact field with the strict Python validator.
Residual gaps (documented, not silent): a key spelled with JSON escapes
(`"q\\u0074y"`) or duplicated keys are judged by what JSON_VALUE reads; a nested object
that reuses a contract key with another type is flagged although the contract ignores
extra fields (it shows up as `validator_disagreement` in the dead letter); a payload
that is not valid UTF-8 is decoded with replacement characters first.
"""

from __future__ import annotations

import pyarrow as pa

from jobs.job_config import JobConfig
from udfs.schemas import EVENT_SCHEMA, FIELD_NAMES, sql_reason_expression

_SQL_TYPES = {
    pa.int64(): "BIGINT",
    pa.string(): "STRING",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
}
SQL_TYPES: dict[str, str] = {f.name: _SQL_TYPES[f.type] for f in EVENT_SCHEMA}

_NUMBERS = "ts|price|qty|bid|ask"
_INTEGERS = "ts|qty"
_STRINGS = "instrument|venue|event|order_id|participant|side"
# Any alternative matching = some contract field has a JSON token of the wrong type.
# (Java regex syntax; used through Flink's REGEXP, which searches anywhere in the string.)
TYPE_REGEX = (
    rf'"(?:{_NUMBERS})"\s*:\s*[^-0-9\s]'  # number field holding a string / bool / null / NaN
    rf'|"(?:{_INTEGERS})"\s*:\s*-?[0-9]+[.eE]'  # integer field written as a fraction/exponent
    r'|"hidden"\s*:\s*[^tf\s]'  # boolean field holding anything but true / false
    rf'|"(?:{_STRINGS})"\s*:\s*[^"\s]'  # string field holding a number / bool / null / object
    r'|"contra"\s*:\s*[^"n\s]'  # contra: a string or null only
)
TYPE_REASON = "<type>: a contract field has the wrong JSON type"

# Columns of the side path, in order (udfs.deadletter.DeadLetterFormatter unpacks them).
SIDE_FIELDS = ("kind", "reason", "payload", "src_partition", "src_offset", "ts", "watermark_ms")


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _watermark_ddl(cfg: JobConfig) -> str:
    ooo = cfg.out_of_orderness_ms
    return f"WATERMARK FOR rowtime AS rowtime - INTERVAL '{ooo // 1000}.{ooo % 1000:03d}' SECOND"


# Event time in ms; a row without a usable ts gets 0 (always "behind" the watermark, never
# moves it) and is dead-lettered by the rules anyway. rowtime must not be NULL.
def _rowtime(ts_expr: str) -> str:
    return f"rowtime AS TO_TIMESTAMP_LTZ(COALESCE({ts_expr}, 0) / 1000000, 3)"


def json_field(name: str) -> str:
    """Typed value of one contract field from the payload; NULL if absent / unparsable.

    JSON_VALUE only RETURNS STRING/INT/DOUBLE/BOOLEAN here (BIGINT is rejected by the
    code generator, and RETURNING BOOLEAN fails the *job* on a non-boolean token despite
    NULL ON ERROR, measured on 2.3.0), so the text is extracted and cast in SQL.
    TRY_CAST truncates '5.7' to 5: TYPE_REGEX catches fractions in integer fields.
    """
    text = f"JSON_VALUE(payload, '$.{name}' NULL ON EMPTY NULL ON ERROR)"
    sql_type = SQL_TYPES[name]
    if sql_type == "STRING":
        return text
    if sql_type == "BOOLEAN":
        return f"CASE {text} WHEN 'true' THEN TRUE WHEN 'false' THEN FALSE END"
    return f"TRY_CAST({text} AS {sql_type})"


_JSON_TS = json_field("ts")


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
  {_rowtime(_JSON_TS)},
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
  {_rowtime(_JSON_TS)},
  {_watermark_ddl(cfg)}
) WITH (
  'connector' = 'filesystem',
  'path' = {_sql_str(path)},
  'format' = 'raw',
  'raw.charset' = 'UTF-8'
)"""


def parquet_to_ndjson(parquet_path: str, out_path: str, batch_rows: int = 200_000) -> int:
    """Write a contract Parquet file as one JSON event per line (the Kafka wire format).

    Values are written exactly as `udfs.schemas.encode_message` would (repr floats, no
    rounding); rows are not validated here: bad rows must reach the job's dead-letter
    path like bad Kafka messages do. Returns the number of lines.
    """
    import json

    import pyarrow.parquet as pq

    n = 0
    with open(out_path, "w", encoding="utf-8") as out:
        for batch in pq.ParquetFile(parquet_path).iter_batches(
            batch_size=batch_rows, columns=list(FIELD_NAMES)
        ):
            cols = [batch.column(name).to_pylist() for name in FIELD_NAMES]
            for row in zip(*cols, strict=True):
                out.write(
                    json.dumps(dict(zip(FIELD_NAMES, row, strict=True)), separators=(",", ":"))
                )
                out.write("\n")
            n += batch.num_rows
    return n


def _typed_select(raw: str, has_metadata: bool) -> str:
    meta = (
        "src_partition, src_offset"
        if has_metadata
        else ("CAST(NULL AS INT) AS src_partition, CAST(NULL AS BIGINT) AS src_offset")
    )
    cols = ",\n  ".join(f"{json_field(n)} AS {n}" for n in FIELD_NAMES)
    return f"""SELECT
  {cols},
  payload, {meta}, rowtime,
  REGEXP(payload, {_sql_str(TYPE_REGEX)}) AS type_error
FROM {raw}"""


def register_views(t_env, raw: str, has_metadata: bool, prefix: str = "trades") -> tuple[str, str]:
    """Register `<prefix>_typed`, `_checked`, `_main`, `_side` views over the raw table.

    `has_metadata`: the raw table has Kafka partition / offset columns (file: no).
    Returns the names of the main and side views. Main columns: the contract fields +
    rowtime. Side columns: `SIDE_FIELDS`.
    """
    typed = _typed_select(raw, has_metadata)
    reason = f"CASE WHEN type_error THEN {_sql_str(TYPE_REASON)} ELSE {sql_reason_expression()} END"
    t_env.execute_sql(f"CREATE TEMPORARY VIEW {prefix}_typed AS {typed}")
    t_env.execute_sql(
        f"""CREATE TEMPORARY VIEW {prefix}_checked AS SELECT *,
  {reason} AS reason,
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
