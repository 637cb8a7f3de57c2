"""The event contract: one row = one order-lifecycle event in the dark venue.

Defined once here and used everywhere: the simulator writes it, replay sends it, the
Flink job parses and validates it (udfs/jvm EventParser applies `RULES` below, with
the same words; tests/integration/test_parse_event.py checks the two agree), training
reads it. Same field names in Parquet and in JSON on Kafka (one UTF-8
object per message, message key = instrument).

A row that breaks the contract yields a `ContractError` naming the row and the field;
nothing is silently dropped or coerced.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

EVENT_KINDS = ("new", "cancel", "fill")
SIDES = ("B", "S")

# Manipulation patterns the simulator injects and the model classifies; index 0 is normal.
SCENARIOS = (
    "normal",
    "wash_trade",
    "spoofing_layering",
    "quote_stuffing",
    "momentum_ignition",
    "pinging",
    "off_market_print",
    "marking_the_close",
    "front_running",
)

EVENT_SCHEMA = pa.schema(
    [
        pa.field("ts", pa.int64(), nullable=False),  # event time, epoch ns UTC
        pa.field("instrument", pa.string(), nullable=False),  # symbol (the key)
        pa.field("venue", pa.string(), nullable=False),
        pa.field("event", pa.string(), nullable=False),  # new | cancel | fill
        pa.field("order_id", pa.string(), nullable=False),
        pa.field("participant", pa.string(), nullable=False),  # anonymized firm/account
        pa.field("side", pa.string(), nullable=False),  # B | S (fills: side of the order)
        pa.field("price", pa.float64(), nullable=False),  # limit or execution price, > 0
        pa.field("qty", pa.int64(), nullable=False),  # shares, > 0
        pa.field("contra", pa.string(), nullable=True),  # contra participant of a fill
        pa.field("bid", pa.float64(), nullable=False),  # lit NBBO at event time
        pa.field("ask", pa.float64(), nullable=False),
        pa.field("hidden", pa.bool_(), nullable=False),  # executed against hidden liquidity
    ]
)

LABEL_FIELDS = [
    pa.field("label", pa.int8(), nullable=False),  # 0 normal, 1 anomalous
    pa.field("scenario", pa.string(), nullable=False),  # "normal" or a pattern name
]
LABELED_SCHEMA = pa.schema(list(EVENT_SCHEMA) + LABEL_FIELDS)

EPISODE_SCHEMA = pa.schema(
    [
        pa.field("episode_id", pa.int64(), nullable=False),
        pa.field("scenario", pa.string(), nullable=False),
        pa.field("instrument", pa.string(), nullable=False),
        pa.field("participants", pa.list_(pa.string()), nullable=False),
        pa.field("start_ts", pa.int64(), nullable=False),
        pa.field("end_ts", pa.int64(), nullable=False),
        pa.field("n_events", pa.int64(), nullable=False),
        pa.field("intensity", pa.float64(), nullable=False),  # 1 blatant ... 0 subtle
    ]
)

FIELD_NAMES = tuple(EVENT_SCHEMA.names)


class ContractError(ValueError):
    """A row breaks the event contract. `row` is its index (or offset), `field` the culprit."""

    def __init__(self, row: int | None, field: str, reason: str):
        self.row, self.field, self.reason = row, field, reason
        where = f"row {row}" if row is not None else "event"
        super().__init__(f"{where}: field '{field}': {reason}")


@dataclass(frozen=True)
class Rule:
    """One check of the contract: the field it names and why a row breaks it.

    Python applies them in `_row_rule_failure` and `validate_table`; the job's JVM parser
    (udfs/jvm EventParser) applies the same rules in the same order and reports
    "<field>: <reason>" with these words (tests check that both agree on a corpus).
    """

    field: str
    reason: str


RULES: tuple[Rule, ...] = (
    Rule("ts", "must be a positive int64 epoch-nanosecond timestamp"),
    Rule("instrument", "must be a non-empty string"),
    Rule("venue", "must be a non-empty string"),
    Rule("event", f"must be one of {', '.join(EVENT_KINDS)}"),
    Rule("order_id", "must be a non-empty string"),
    Rule("participant", "must be a non-empty string"),
    Rule("side", "must be B or S"),
    Rule("price", "must be a finite number > 0"),
    Rule("qty", "must be an integer > 0"),
    Rule("bid", "must be a finite number > 0"),
    Rule("ask", "must be a finite number > 0"),
    Rule("ask", "bid must not exceed ask"),
    Rule("hidden", "must be a boolean"),
    Rule("contra", "must be a non-empty string on fills and null otherwise"),
)


# ---- Python-side validation ---------------------------------------------------------

_INT_FIELDS = {"ts", "qty"}
_FLOAT_FIELDS = {"price", "bid", "ask"}
_STR_FIELDS = {"instrument", "venue", "event", "order_id", "participant", "side"}


def _check_value(name: str, value: Any) -> str | None:
    """Type check of one JSON value, before the rules: no coercion (no "5" for 5)."""
    if name in _INT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer, got {type(value).__name__} {value!r}"
        if not -(2**63) <= value < 2**63:
            return "does not fit in int64"
    elif name in _FLOAT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be a number, got {type(value).__name__} {value!r}"
    elif name in _STR_FIELDS:
        if not isinstance(value, str):
            return f"must be a string, got {type(value).__name__} {value!r}"
    elif name == "hidden":
        if not isinstance(value, bool):
            return f"must be a boolean, got {type(value).__name__} {value!r}"
    elif name == "contra" and value is not None and not isinstance(value, str):
        return f"must be a string or null, got {type(value).__name__} {value!r}"
    return None


def _row_rule_failure(rec: Mapping[str, Any]) -> tuple[str, str] | None:
    """Same rules as `RULES`, for one typed record; returns (field, reason) or None."""

    def positive_finite(x: Any) -> bool:
        return x is not None and math.isfinite(float(x)) and float(x) > 0

    checks = {
        "ts": lambda: rec["ts"] > 0,
        "instrument": lambda: len(rec["instrument"]) > 0,
        "venue": lambda: len(rec["venue"]) > 0,
        "event": lambda: rec["event"] in EVENT_KINDS,
        "order_id": lambda: len(rec["order_id"]) > 0,
        "participant": lambda: len(rec["participant"]) > 0,
        "side": lambda: rec["side"] in SIDES,
        "price": lambda: positive_finite(rec["price"]),
        "qty": lambda: rec["qty"] > 0,
        "bid": lambda: positive_finite(rec["bid"]),
        "ask": lambda: positive_finite(rec["ask"]),
        "hidden": lambda: rec["hidden"] is not None,
    }
    for rule in RULES:
        if rule.reason == "bid must not exceed ask":
            ok = rec["bid"] <= rec["ask"]
        elif rule.field == "contra":
            c = rec.get("contra")
            ok = (rec["event"] == "fill" and isinstance(c, str) and len(c) > 0) or (
                rec["event"] != "fill" and c is None
            )
        else:
            ok = checks[rule.field]()
        if not ok:
            return rule.field, rule.reason
    return None


def validate_record(rec: Any, row: int | None = None) -> dict[str, Any]:
    """Validate one decoded JSON object; return it (only contract fields) or raise ContractError."""
    if not isinstance(rec, Mapping):
        raise ContractError(row, "<record>", f"must be a JSON object, got {type(rec).__name__}")
    for name in FIELD_NAMES:
        if name not in rec:
            if name == "contra":  # nullable: absent means null
                continue
            raise ContractError(row, name, "is missing")
        problem = _check_value(name, rec[name])
        if problem:
            raise ContractError(row, name, problem)
    out = {name: rec.get(name) for name in FIELD_NAMES}
    failure = _row_rule_failure(out)
    if failure:
        raise ContractError(row, *failure)
    return out


def parse_message(payload: bytes | str, row: int | None = None) -> dict[str, Any]:
    """Decode one Kafka message value (UTF-8 JSON object) and validate it."""
    try:
        text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
        rec = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContractError(row, "<payload>", f"not UTF-8 JSON: {exc}") from None
    return validate_record(rec, row)


# = json.dumps(obj, separators=(",", ":")), without building a new JSONEncoder per call
# (~2.5 us, measured; paid per replayed event and per state write of the decision stage)
COMPACT_JSON = json.JSONEncoder(separators=(",", ":")).encode


def encode_message(rec: Mapping[str, Any]) -> bytes:
    """One event -> Kafka message value (compact UTF-8 JSON, contract fields only)."""
    return COMPACT_JSON({k: rec.get(k) for k in FIELD_NAMES}).encode()


_NUMPY_EXACT = (pa.int64(), pa.float64(), pa.bool_())  # numpy .tolist() = to_pylist() here


def _python_values(col: pa.Array | pa.ChunkedArray) -> list:
    """The column as Python values, exactly as `to_pylist()` gives them, through numpy
    where that keeps them: strings (a null stays None), and the contract's number and
    bool types without nulls. Anything else (a timestamp, a dictionary) as `to_pylist()`,
    so a file off the contract reaches the job as it is, not converted."""
    if pa.types.is_string(col.type) or (col.type in _NUMPY_EXACT and col.null_count == 0):
        return col.to_numpy(zero_copy_only=False).tolist()
    return col.to_pylist()


def encode_batch(batch: pa.RecordBatch | pa.Table) -> Iterable[tuple[str, str]]:
    """(instrument, message text) per row of a contract batch, in row order; the text is
    `encode_message(row)` before its UTF-8 encoding. Column-wise: a row-wise
    `to_pylist()` alone cost ~14 µs per row, a column-wise one ~7 (numpy ~0.8)."""
    cols = [_python_values(batch.column(name)) for name in FIELD_NAMES]
    at = FIELD_NAMES.index("instrument")
    for row in zip(*cols, strict=True):
        yield row[at], COMPACT_JSON(dict(zip(FIELD_NAMES, row, strict=True)))


def _is_dictionary_string(t: pa.DataType, expected: pa.DataType) -> bool:
    return pa.types.is_dictionary(t) and pa.types.is_string(expected) and t.value_type.equals(expected)


def _dictionary_to_plain_if_nulls(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """A null *inside* a dictionary is a null row that `null_count` does not see: decode
    such columns (never the simulator's), so every check below sees the logical values."""
    if any(chunk.dictionary.null_count for chunk in col.chunks):
        return pc.cast(col, col.type.value_type)
    return col


def _string_test(col: pa.ChunkedArray, test: Any) -> np.ndarray:
    """Boolean per row of an Arrow string predicate (null -> False). A dictionary-encoded
    column is tested once per dictionary entry and the verdicts gathered by index: the
    same verdict per row as on the decoded strings, without touching 800k strings."""
    parts = []
    for chunk in col.chunks:
        if not pa.types.is_dictionary(chunk.type):
            parts.append(_np_bool(test(chunk)))
            continue
        per_value = np.append(_np_bool(test(chunk.dictionary)), False)  # last: for null rows
        idx = pc.fill_null(chunk.indices, len(chunk.dictionary)).to_numpy(zero_copy_only=False)
        parts.append(per_value[idx])
    return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)


def _np_bool(arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def validate_table(table: pa.Table) -> None:
    """Vectorized validation of a whole Parquet/Arrow table; raises on the first bad row.

    Checks types against EVENT_SCHEMA (no casting) and every rule in `RULES`. A string
    column may also come dictionary-encoded (dictionary<int, string>, as the simulator
    writes it): same logical type, same rules applied to every row's decoded value.
    """
    cols: dict[str, pa.ChunkedArray] = {}
    for field in EVENT_SCHEMA:
        if field.name not in table.column_names:
            raise ContractError(None, field.name, "column is missing")
        col = table.column(field.name)
        if _is_dictionary_string(col.type, field.type):
            col = _dictionary_to_plain_if_nulls(col)
        elif not col.type.equals(field.type):
            raise ContractError(None, field.name, f"column has type {col.type}, expected {field.type}")
        if not field.nullable and col.null_count:
            row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise ContractError(row, field.name, "is null")
        cols[field.name] = col
    # String checks run in Arrow compute: converting string columns to numpy objects
    # costs more than the whole simulation of the rows.

    def nonempty(name: str) -> np.ndarray:
        return _string_test(cols[name], lambda a: pc.greater(pc.binary_length(a), 0))

    def one_of(name: str, allowed: tuple[str, ...]) -> np.ndarray:
        return _string_test(cols[name], lambda a: pc.is_in(a, value_set=pa.array(allowed)))

    num = {n: cols[n].to_numpy() for n in ("ts", "qty", "price", "bid", "ask")}
    is_fill = _string_test(cols["event"], lambda a: pc.equal(a, "fill"))
    contra_null = _np_bool(pc.is_null(cols["contra"]))
    contra_nonempty = nonempty("contra")

    def pos_finite(a: np.ndarray) -> np.ndarray:
        return np.isfinite(a) & (a > 0)

    ok_by_rule = [
        num["ts"] > 0,
        nonempty("instrument"),
        nonempty("venue"),
        one_of("event", EVENT_KINDS),
        nonempty("order_id"),
        nonempty("participant"),
        one_of("side", SIDES),
        pos_finite(num["price"]),
        num["qty"] > 0,
        pos_finite(num["bid"]),
        pos_finite(num["ask"]),
        num["bid"] <= num["ask"],
        np.ones(len(table), dtype=bool),  # hidden: non-null checked above
        (is_fill & ~contra_null & contra_nonempty) | (~is_fill & contra_null),
    ]
    assert len(ok_by_rule) == len(RULES)
    # The earliest bad row wins (then the first rule it breaks, as in validate_record).
    first_bad = [(int(np.argmin(ok)), k) for k, ok in enumerate(ok_by_rule) if not ok.all()]
    if first_bad:
        row, k = min(first_bad)
        raise ContractError(row, RULES[k].field, RULES[k].reason)


def records_to_table(records: Iterable[Mapping[str, Any]], schema: pa.Schema = EVENT_SCHEMA) -> pa.Table:
    """Build an Arrow table in the contract's schema from dict records (exact types)."""
    return pa.Table.from_pylist([dict(r) for r in records], schema=schema)
