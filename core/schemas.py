"""The event contract: one row = one order-lifecycle event in the dark venue.

Defined once here and used everywhere: the simulator writes it, replay sends it, the
Flink job parses and validates it (udfs/jvm EventParser applies `RULES` below, with
the same words; tests/integration/test_parse_event.py checks the two agree), training
reads it. Same field names in Parquet and in JSON on Kafka (one UTF-8
object per message, message key = instrument).

A row that breaks the contract yields a `ContractError` naming the row and the field;
nothing is silently dropped or coerced.

Hostile input is bounded before it is read (the same bounds in the JVM parser, whose
constants tests/unit/test_contract.py checks against these): a whole message of at most
`MAX_MESSAGE_BYTES`, JSON nested at most `MAX_NESTING_DEPTH` deep, every string field at
most `STRING_MAX_CHARS` code points. `parse_message` is total: whatever the bytes, it
returns a record or raises `ContractError`, never another exception.

Event time must also be plausible (`TimePlausibility`). The wall-clock rule (no event
beyond now + a tolerance) is applied here when a `now_ns` is given; the jump rule (no
event far from its partition's recent events) needs the partition's history and is
applied only by the job's JVM parser (see udfs/sources.py).
"""

from __future__ import annotations

import json
import math
import re
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

# ---- bounds on hostile input (mirrored in udfs/jvm EventParser) -----------------------

# A contract event is ~250 bytes; 16 KiB leaves room for every string at its bound
# written with JSON escapes, and keeps a dead letter (which repeats the payload) small.
MAX_MESSAGE_BYTES = 16_384  # UTF-8 bytes of one whole message
# An event is one object deep; unknown keys may nest a little. Deeper JSON is refused
# before it is parsed (a recursive parser would overflow its stack on 5,000 levels).
MAX_NESTING_DEPTH = 32  # arrays / objects open at once
# Longest value of each free-text field, in Unicode code points (`event` and `side` are
# enumerations). Real feeds use short codes: LOBSTER and the simulator stay under 15.
STRING_MAX_CHARS = {"instrument": 32, "venue": 32, "order_id": 64, "participant": 64, "contra": 64}
# Payload-level reasons (field "<payload>"), the same words in the JVM parser.
TOO_LARGE = f"message larger than {MAX_MESSAGE_BYTES} bytes"
TOO_DEEP = f"JSON nested deeper than {MAX_NESTING_DEPTH} levels"
NOT_UTF8 = "not UTF-8"

IMPLAUSIBLE_TIME = "implausible_time"  # reason prefix and dead-letter kind of a bad clock


@dataclass(frozen=True)
class TimePlausibility:
    """When an event's time is a bad clock rather than a time: such an event is
    dead-lettered as `implausible_time` and never moves the watermark.

    - future: beyond the wall clock + `max_future_ms` (replays of past data never are);
    - jump: more than `max_jump_ms` before or after the latest plausible event of its
      Kafka partition (JVM only: it needs the partition's history). The default covers
      any market closure (a weekend with holidays), so a replay of valid data never
      trips it; a single event off by a year does.
    - `reanchor_after` consecutive events that agree with each other but not with the
      partition's reference are a real jump (a new replay on the same topic, a hostile
      first event): the reference moves to them, the ones before are dead-lettered.
    """

    max_future_ms: int = 5 * 60_000  # producers' clock skew we tolerate
    max_jump_ms: int = 7 * 86_400_000  # longest market closure between two events
    reanchor_after: int = 50  # consecutive agreeing off-reference events = a real jump

    def __post_init__(self) -> None:
        if self.max_future_ms < 0 or self.max_jump_ms <= 0 or self.reanchor_after < 1:
            raise ValueError(
                "time plausibility needs max_future_ms >= 0, max_jump_ms > 0 and reanchor_after >= 1, "
                f"got {self.max_future_ms}, {self.max_jump_ms}, {self.reanchor_after}"
            )

    def future_reason(self) -> str:
        return f"{IMPLAUSIBLE_TIME}: more than {self.max_future_ms} ms after the wall clock"

    def jump_reason(self) -> str:
        return f"{IMPLAUSIBLE_TIME}: more than {self.max_jump_ms} ms from its partition's recent events"


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


def _text(field: str) -> str:
    return f"must be a non-empty string of at most {STRING_MAX_CHARS[field]} characters"


RULES: tuple[Rule, ...] = (
    Rule("ts", "must be a positive int64 epoch-nanosecond timestamp"),
    Rule("instrument", _text("instrument")),
    Rule("venue", _text("venue")),
    Rule("event", f"must be one of {', '.join(EVENT_KINDS)}"),
    Rule("order_id", _text("order_id")),
    Rule("participant", _text("participant")),
    Rule("side", "must be B or S"),
    Rule("price", "must be a finite number > 0"),
    Rule("qty", "must be an integer > 0"),
    Rule("bid", "must be a finite number > 0"),
    Rule("ask", "must be a finite number > 0"),
    Rule("ask", "bid must not exceed ask"),
    Rule("hidden", "must be a boolean"),
    Rule("contra", _text("contra") + " on fills and null otherwise"),
)


# ---- Python-side validation ---------------------------------------------------------

_INT_FIELDS = {"ts", "qty"}
_FLOAT_FIELDS = {"price", "bid", "ask"}
_STR_FIELDS = {"instrument", "venue", "event", "order_id", "participant", "side"}


def _check_value(name: str, value: Any) -> str | None:
    """Type check of one JSON value, before the rules: no coercion (no "5" for 5)."""
    if name in _INT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer, got {type(value).__name__} {value!r:.40}"
        if not -(2**63) <= value < 2**63:
            return "does not fit in int64"
    elif name in _FLOAT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be a number, got {type(value).__name__} {value!r:.40}"
    elif name in _STR_FIELDS:
        if not isinstance(value, str):
            return f"must be a string, got {type(value).__name__} {value!r:.40}"
        if _has_lone_surrogate(value):
            return _LONE_SURROGATE
    elif name == "hidden":
        if not isinstance(value, bool):
            return f"must be a boolean, got {type(value).__name__} {value!r:.40}"
    elif name == "contra" and value is not None:
        if not isinstance(value, str):
            return f"must be a string or null, got {type(value).__name__} {value!r:.40}"
        if _has_lone_surrogate(value):
            return _LONE_SURROGATE
    return None


# "\ud800" is valid JSON but no character: such a string cannot be encoded as UTF-8
# downstream (Arrow, Kafka), so the contract refuses it as a type error.
_LONE_SURROGATE = "must be Unicode text (has an unpaired surrogate)"
_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_lone_surrogate(s: str) -> bool:
    return not s.isascii() and _SURROGATE.search(s) is not None


def _row_rule_failure(rec: Mapping[str, Any]) -> tuple[str, str] | None:
    """Same rules as `RULES`, for one typed record; returns (field, reason) or None."""

    def positive_finite(x: Any) -> bool:
        try:  # an integer beyond float's range is +-inf to the JVM: not finite
            return x is not None and math.isfinite(float(x)) and float(x) > 0
        except OverflowError:
            return False

    def text(name: str) -> bool:
        return 0 < len(rec[name]) <= STRING_MAX_CHARS[name]

    checks = {
        "ts": lambda: rec["ts"] > 0,
        "instrument": lambda: text("instrument"),
        "venue": lambda: text("venue"),
        "event": lambda: rec["event"] in EVENT_KINDS,
        "order_id": lambda: text("order_id"),
        "participant": lambda: text("participant"),
        "side": lambda: rec["side"] in SIDES,
        "price": lambda: positive_finite(rec["price"]),
        "qty": lambda: rec["qty"] > 0,
        "bid": lambda: positive_finite(rec["bid"]),
        "ask": lambda: positive_finite(rec["ask"]),
        "hidden": lambda: rec["hidden"] is not None,
    }
    for rule in RULES:
        if rule.reason == "bid must not exceed ask":
            ok = float(rec["bid"]) <= float(rec["ask"])  # both finite here
        elif rule.field == "contra":
            c = rec.get("contra")
            ok = (rec["event"] == "fill" and isinstance(c, str) and 0 < len(c) <= STRING_MAX_CHARS["contra"]) or (
                rec["event"] != "fill" and c is None
            )
        else:
            ok = checks[rule.field]()
        if not ok:
            return rule.field, rule.reason
    return None


def validate_record(
    rec: Any, row: int | None = None, now_ns: int | None = None, time_rule: TimePlausibility | None = None
) -> dict[str, Any]:
    """Validate one decoded JSON object; return it (only contract fields) or raise ContractError.

    With `now_ns` (the wall clock, epoch ns) an event beyond now + `time_rule.max_future_ms`
    is refused as implausible_time too, as the job does (its jump rule is JVM-only).
    """
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
    if now_ns is not None:
        rule = time_rule or TimePlausibility()
        if out["ts"] // 1_000_000 > now_ns // 1_000_000 + rule.max_future_ms:
            raise ContractError(row, "ts", rule.future_reason())
    return out


# One JSON string (escapes included, possessive: no backtracking) or one bracket.
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"|[\[\]{}]')


def too_deep(text: str) -> bool:
    """More than MAX_NESTING_DEPTH JSON arrays / objects open at once in `text` (brackets
    inside strings do not count); found without parsing, so any depth is safe to test."""
    if text.count("[") + text.count("{") <= MAX_NESTING_DEPTH:
        return False  # not enough brackets to be deeper
    depth = 0
    for m in _STRING_OR_BRACKET.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            if depth > MAX_NESTING_DEPTH:
                return True
        elif c in "]}":
            depth -= 1
    return False


def _json_int(digits: str) -> int | float:
    # CPython refuses to read integers of over 4,300 digits (ValueError); the JVM reads
    # them as numbers. Read as a float (+-inf): out of every contract range either way.
    return int(digits) if len(digits) <= 4_300 else float(digits)


def _decode(payload: bytes | str, row: int | None) -> Any:
    """Bounded decode: size, UTF-8, depth, then json.loads (in that order, as the JVM)."""
    if isinstance(payload, bytes):
        size = len(payload)
    else:  # a code point is 1..4 UTF-8 bytes: count exactly only near the bound
        size = len(payload)
        if size <= MAX_MESSAGE_BYTES < 4 * size:
            size = len(payload.encode("utf-8", "surrogatepass"))
    if size > MAX_MESSAGE_BYTES:
        raise ContractError(row, "<payload>", TOO_LARGE)
    if isinstance(payload, bytes):
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise ContractError(row, "<payload>", NOT_UTF8) from None
    else:
        text = payload
    if too_deep(text):
        raise ContractError(row, "<payload>", TOO_DEEP)
    try:
        return json.loads(text, parse_int=_json_int)
    except json.JSONDecodeError as exc:
        raise ContractError(row, "<payload>", f"not JSON: {exc}") from None


def parse_message(
    payload: bytes | str, row: int | None = None, now_ns: int | None = None, time_rule: TimePlausibility | None = None
) -> dict[str, Any]:
    """Decode one Kafka message value (UTF-8 JSON object) and validate it.

    Total: any input gives a record or a ContractError (an unforeseen error is reported
    as a `<payload>` ContractError naming it, never raised as itself)."""
    try:
        return validate_record(_decode(payload, row), row, now_ns, time_rule)
    except ContractError:
        raise
    except Exception as exc:  # noqa: BLE001 - hostile input must not escape as another error
        raise ContractError(row, "<payload>", f"unreadable ({type(exc).__name__}: {str(exc)[:80]})") from None


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

    def text(name: str) -> np.ndarray:
        bound = STRING_MAX_CHARS[name]
        return _string_test(
            cols[name], lambda a: pc.and_(pc.greater(pc.binary_length(a), 0), pc.less_equal(pc.utf8_length(a), bound))
        )

    def one_of(name: str, allowed: tuple[str, ...]) -> np.ndarray:
        return _string_test(cols[name], lambda a: pc.is_in(a, value_set=pa.array(allowed)))

    num = {n: cols[n].to_numpy() for n in ("ts", "qty", "price", "bid", "ask")}
    is_fill = _string_test(cols["event"], lambda a: pc.equal(a, "fill"))
    contra_null = _np_bool(pc.is_null(cols["contra"]))
    contra_text = text("contra")

    def pos_finite(a: np.ndarray) -> np.ndarray:
        return np.isfinite(a) & (a > 0)

    ok_by_rule = [
        num["ts"] > 0,
        text("instrument"),
        text("venue"),
        one_of("event", EVENT_KINDS),
        text("order_id"),
        text("participant"),
        one_of("side", SIDES),
        pos_finite(num["price"]),
        num["qty"] > 0,
        pos_finite(num["bid"]),
        pos_finite(num["ask"]),
        num["bid"] <= num["ask"],
        np.ones(len(table), dtype=bool),  # hidden: non-null checked above
        (is_fill & ~contra_null & contra_text) | (~is_fill & contra_null),
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
