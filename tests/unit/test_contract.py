"""Contract test of the event validators: every kind of bad row -> ContractError naming
the row and the field, the same from the JSON path (validate_record / parse_message)
and the Arrow path (validate_table); and the SQL rendered from RULES covers every rule."""

from __future__ import annotations

import contextlib
import json
import math
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.schemas import (
    EVENT_SCHEMA,
    MAX_MESSAGE_BYTES,
    MAX_NESTING_DEPTH,
    NOT_UTF8,
    RULES,
    STRING_MAX_CHARS,
    TOO_DEEP,
    TOO_LARGE,
    ContractError,
    TimePlausibility,
    encode_batch,
    encode_message,
    parse_message,
    records_to_table,
    validate_record,
    validate_table,
)

GOOD_NEW = {
    "ts": 1_772_483_400_000_000_000, "instrument": "ABC", "venue": "DKX", "event": "new",
    "order_id": "O000000001", "participant": "F105.A1", "side": "B", "price": 41.72, "qty": 300,
    "contra": None, "bid": 41.70, "ask": 41.71, "hidden": True,
}
GOOD_FILL = {**GOOD_NEW, "ts": GOOD_NEW["ts"] + 1_000, "event": "fill", "price": 41.705, "contra": "F210.A2"}

# (name, changes to a good row, field the error must name); None deletes the key.
BAD_ROWS = [
    ("negative_ts", {"ts": -5}, "ts"),
    ("zero_ts", {"ts": 0}, "ts"),
    ("empty_instrument", {"instrument": ""}, "instrument"),
    ("empty_venue", {"venue": ""}, "venue"),
    ("unknown_event", {"event": "modify"}, "event"),
    ("empty_order_id", {"order_id": ""}, "order_id"),
    ("empty_participant", {"participant": ""}, "participant"),
    ("bad_side", {"side": "X"}, "side"),
    ("zero_price", {"price": 0.0}, "price"),
    ("negative_price", {"price": -1.0}, "price"),
    ("nan_price", {"price": math.nan}, "price"),
    ("inf_price", {"price": math.inf}, "price"),
    ("zero_qty", {"qty": 0}, "qty"),
    ("negative_qty", {"qty": -100}, "qty"),
    ("zero_bid", {"bid": 0.0}, "bid"),
    ("nan_ask", {"ask": math.nan}, "ask"),
    ("crossed_nbbo", {"bid": 42.0, "ask": 41.0}, "ask"),
    ("contra_on_new", {"contra": "F210.A2"}, "contra"),
    *((f"long_{f}", {f: "é" * (n + 1)}, f) for f, n in STRING_MAX_CHARS.items() if f != "contra"),
]
BAD_FILLS = [
    ("fill_without_contra", {"contra": None}, "contra"),
    ("fill_with_empty_contra", {"contra": ""}, "contra"),
    ("fill_with_long_contra", {"contra": "x" * (STRING_MAX_CHARS["contra"] + 1)}, "contra"),
]
# Only the JSON path can see these: Arrow columns are typed.
BAD_TYPES = [
    ("string_qty", {"qty": "300"}, "qty"),
    ("float_qty", {"qty": 300.0}, "qty"),
    ("bool_ts", {"ts": True}, "ts"),
    ("string_price", {"price": "41.7"}, "price"),
    ("int_instrument", {"instrument": 7}, "instrument"),
    ("string_hidden", {"hidden": "true"}, "hidden"),
    ("null_hidden", {"hidden": None}, "hidden"),
    ("int_contra", {"event": "fill", "contra": 5}, "contra"),
    ("huge_ts", {"ts": 2**64}, "ts"),
    ("missing_price", {"price": None, "_delete": "price"}, "price"),
    ("missing_side", {"_delete": "side"}, "side"),
]

ALL_ROW_CASES = [(n, GOOD_NEW, c, f) for n, c, f in BAD_ROWS] + [(n, GOOD_FILL, c, f) for n, c, f in BAD_FILLS]


def _bad(base: dict, changes: dict) -> dict:
    rec = {**base, **{k: v for k, v in changes.items() if k != "_delete"}}
    rec.pop(changes.get("_delete", "\0"), None)
    return rec


def test_good_rows_round_trip_through_json() -> None:
    for rec in (GOOD_NEW, GOOD_FILL):
        assert validate_record(rec) == rec
        assert parse_message(encode_message(rec)) == rec
    # absent contra is null (nullable field)
    assert validate_record({k: v for k, v in GOOD_NEW.items() if k != "contra"})["contra"] is None
    validate_table(records_to_table([GOOD_NEW, GOOD_FILL]))


def test_batch_encoding_is_the_per_message_encoding() -> None:
    # odd rows too: the file and replay paths must carry bad rows to the job unchanged
    odd = [
        {**GOOD_NEW, "instrument": 'Q"\\ü', "price": math.nan, "qty": None, "hidden": None},
        {**GOOD_FILL, "ask": math.inf, "bid": -0.0, "contra": "é\n"},
    ]
    rows = [GOOD_NEW, GOOD_FILL, *odd]
    table = pa.Table.from_pylist(rows, schema=EVENT_SCHEMA.remove_metadata()).combine_chunks()
    got = list(encode_batch(table.to_batches()[0]))
    assert [(i, text.encode()) for i, text in got] == [(r["instrument"], encode_message(r)) for r in rows]
    # a dictionary-encoded column (another Parquet writer) reads as its values
    at = table.schema.get_field_index("instrument")
    dict_table = table.set_column(at, "instrument", pc.dictionary_encode(table.column("instrument")))
    assert list(encode_batch(dict_table)) == got


@pytest.mark.parametrize(("name", "base", "changes", "field"), ALL_ROW_CASES, ids=[c[0] for c in ALL_ROW_CASES])
def test_bad_row_json_path(name: str, base: dict, changes: dict, field: str) -> None:
    with pytest.raises(ContractError) as err:
        parse_message(json.dumps(_bad(base, changes)).encode(), row=17)
    assert (err.value.row, err.value.field) == (17, field)
    assert "row 17" in str(err.value) and field in str(err.value)


@pytest.mark.parametrize(("name", "base", "changes", "field"), ALL_ROW_CASES, ids=[c[0] for c in ALL_ROW_CASES])
def test_bad_row_table_path_names_row_and_field(name: str, base: dict, changes: dict, field: str) -> None:
    rows = [GOOD_NEW, GOOD_FILL, GOOD_NEW, _bad(base, changes), GOOD_FILL, _bad(base, changes)]
    with pytest.raises(ContractError) as err:
        validate_table(records_to_table(rows))
    assert (err.value.row, err.value.field) == (3, field)  # the earliest bad row


def _dictionary_encoded(table: pa.Table) -> pa.Table:
    """The table with every string column dictionary-encoded, as the simulator writes it."""
    cols = [pc.dictionary_encode(c) if pa.types.is_string(c.type) else c for c in table.columns]
    return pa.table(cols, names=table.column_names)


@pytest.mark.parametrize(("name", "base", "changes", "field"), ALL_ROW_CASES, ids=[c[0] for c in ALL_ROW_CASES])
def test_bad_row_dictionary_encoded_table_path(name: str, base: dict, changes: dict, field: str) -> None:
    rows = [GOOD_NEW, GOOD_FILL, GOOD_NEW, _bad(base, changes), GOOD_FILL, _bad(base, changes)]
    with pytest.raises(ContractError) as err:
        validate_table(_dictionary_encoded(records_to_table(rows)))
    assert (err.value.row, err.value.field) == (3, field)


def test_dictionary_encoded_table_checks_rows_not_unused_dictionary_entries() -> None:
    validate_table(_dictionary_encoded(records_to_table([GOOD_NEW, GOOD_FILL])))
    # an empty string in the dictionary that no row uses is no bad row
    side = pa.DictionaryArray.from_arrays(pa.array([0, 2], pa.int32()), pa.array(["B", "", "S"]))
    table = records_to_table([GOOD_NEW, GOOD_FILL])
    validate_table(table.set_column(table.schema.get_field_index("side"), "side", side))
    # a null *inside* the dictionary is a null row of a non-nullable column
    null_inside = pa.DictionaryArray.from_arrays(pa.array([0, 1], pa.int32()), pa.array(["DKX", None]))
    with pytest.raises(ContractError) as err:
        validate_table(table.set_column(table.schema.get_field_index("venue"), "venue", null_inside))
    assert (err.value.row, err.value.field) == (1, "venue")
    # the dictionary's values must be strings
    as_ints = pa.DictionaryArray.from_arrays(pa.array([0, 0], pa.int32()), pa.array([1]))
    with pytest.raises(ContractError, match="type") as err:
        validate_table(table.set_column(table.schema.get_field_index("venue"), "venue", as_ints))


def test_table_reports_the_earliest_bad_row_not_the_first_rule() -> None:
    # row 2 breaks a late rule (contra), row 4 an early one (ts): row 2 is reported
    rows = [GOOD_NEW, GOOD_FILL, {**GOOD_NEW, "contra": "F1.A1"}, GOOD_NEW, {**GOOD_NEW, "ts": -1}]
    with pytest.raises(ContractError) as err:
        validate_table(records_to_table(rows))
    assert (err.value.row, err.value.field) == (2, "contra")


@pytest.mark.parametrize(("name", "changes", "field"), BAD_TYPES, ids=[c[0] for c in BAD_TYPES])
def test_bad_types_are_not_coerced(name: str, changes: dict, field: str) -> None:
    with pytest.raises(ContractError) as err:
        validate_record(_bad(GOOD_NEW, changes), row=3)
    assert (err.value.row, err.value.field) == (3, field)


@pytest.mark.parametrize("payload", [b"\xff\xfe not json", b'{"ts": 1', b"[1, 2]", b"null"])
def test_payload_that_is_not_a_json_object(payload: bytes) -> None:
    with pytest.raises(ContractError) as err:
        parse_message(payload, row=0)
    assert err.value.field in ("<payload>", "<record>")


def test_table_with_wrong_column_type_or_missing_column() -> None:
    table = records_to_table([GOOD_NEW, GOOD_FILL])
    with pytest.raises(ContractError, match="qty") as err:
        validate_table(table.set_column(table.schema.get_field_index("qty"), "qty", table.column("qty").cast(pa.int32())))
    assert err.value.field == "qty"
    with pytest.raises(ContractError) as err:
        validate_table(table.drop_columns(["venue"]))
    assert err.value.field == "venue"
    nulls = table.set_column(table.schema.get_field_index("side"), pa.field("side", pa.string()), pa.array(["B", None]))
    with pytest.raises(ContractError) as err:
        validate_table(nulls)
    assert (err.value.row, err.value.field) == (1, "side")


def test_every_contract_field_has_a_rule() -> None:
    assert {r.field for r in RULES} == set(EVENT_SCHEMA.names)


def test_empty_table_is_valid() -> None:
    validate_table(records_to_table([]))


def test_strings_at_their_bound_are_valid_in_every_path() -> None:
    # code points, not bytes: a 4-byte character counts once, as in Java's codePointCount
    rec = {**GOOD_FILL, **{f: "\U0001f600" * n for f, n in STRING_MAX_CHARS.items()}}
    assert parse_message(json.dumps(rec)) == rec
    assert parse_message(json.dumps(rec, ensure_ascii=False).encode()) == rec
    validate_table(records_to_table([rec]))


# (name, payload, field, reason or None): hostile messages the validator must refuse
# with a ContractError (before this, some raised RecursionError or ValueError instead).
_GOOD_TEXT = json.dumps(GOOD_NEW)
HOSTILE = [
    ("deep_array", "[" * 5000 + "]" * 5000, "<payload>", TOO_DEEP),
    ("deep_object", '{"a":' * 5000 + "1" + "}" * 5000, "<payload>", TOO_LARGE),
    ("deep_in_unknown_key", _GOOD_TEXT[:-1] + ', "x": ' + "[" * 40 + "]" * 40 + "}", "<payload>", TOO_DEEP),
    ("huge_instrument", json.dumps({**GOOD_NEW, "instrument": "A" * 100_000}), "<payload>", TOO_LARGE),
    ("just_too_large", _GOOD_TEXT[:-1] + ', "x": "' + "y" * MAX_MESSAGE_BYTES + '"}', "<payload>", TOO_LARGE),
    ("invalid_utf8", _GOOD_TEXT.replace("ABC", "AB\xff").encode("latin-1"), "<payload>", NOT_UTF8),
    ("lone_surrogate", json.dumps({**GOOD_NEW, "venue": "\ud800"}), "venue", None),
    ("int_too_long_for_python", _GOOD_TEXT[:-1] + ', "x": ' + "9" * 5000 + "}", None, None),
    ("price_beyond_float", json.dumps({**GOOD_NEW, "price": 10**400}), "price", "must be a finite number > 0"),
    ("empty", b"", "<payload>", None),
    ("null", "null", "<record>", None),
    ("array", "[1, 2]", "<record>", None),
    ("truncated", _GOOD_TEXT[:40], "<payload>", None),
]


@pytest.mark.parametrize(("name", "payload", "field", "reason"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_payload_is_a_contract_error_never_another_exception(name, payload, field, reason) -> None:
    if field is None:  # accepted: an unknown key may hold any JSON that fits the bounds
        assert parse_message(payload) == GOOD_NEW
        return
    with pytest.raises(ContractError) as err:
        parse_message(payload, row=4)
    assert (err.value.row, err.value.field) == (4, field)
    if reason is not None:
        assert err.value.reason == reason


def test_nesting_at_the_bound_is_read() -> None:
    deep = _GOOD_TEXT[:-1] + ', "x": ' + "[" * (MAX_NESTING_DEPTH - 1) + "]" * (MAX_NESTING_DEPTH - 1) + "}"
    assert parse_message(deep) == GOOD_NEW  # the event object itself is level 1
    # brackets inside strings are text, not nesting
    assert parse_message(json.dumps({**GOOD_NEW, "x": "[" * 100})) == GOOD_NEW


def test_a_time_beyond_the_wall_clock_is_implausible_when_a_clock_is_given() -> None:
    rule = TimePlausibility()
    now_ns = GOOD_NEW["ts"]
    soon = {**GOOD_NEW, "ts": now_ns + rule.max_future_ms * 1_000_000}
    later = {**GOOD_NEW, "ts": now_ns + (rule.max_future_ms + 1) * 1_000_000}
    assert validate_record(soon, now_ns=now_ns) == soon
    with pytest.raises(ContractError) as err:
        validate_record(later, now_ns=now_ns)
    assert (err.value.field, err.value.reason) == ("ts", rule.future_reason())
    assert validate_record(later) == later  # no clock, no rule (the contract alone)
    with pytest.raises(ValueError):
        TimePlausibility(max_jump_ms=0)


def test_dead_letter_formatter_survives_poison_pills() -> None:
    from udfs.deadletter import format_dead_letter

    for _, payload, _, _ in HOSTILE:
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
        out, record = format_dead_letter("malformed", "<payload>: not JSON (x)", text, "t", 0, 1)
        assert json.loads(out)["id"] == "t/0/1" and record["reason"]
        assert len(out) < 8 * MAX_MESSAGE_BYTES  # a huge payload is cut: Kafka takes the letter
    # the JVM's not-UTF-8 verdict stands: Python only sees the replacement characters
    _, record = format_dead_letter("malformed", f"<payload>: {NOT_UTF8}", _GOOD_TEXT.replace("ABC", "AB\ufffd"))
    assert (record["field"], record["reason"], record["validator_disagreement"]) == ("<payload>", NOT_UTF8, False)
    _, record = format_dead_letter("implausible_time", "ts: implausible_time: more than 5 ms after", _GOOD_TEXT)
    assert (record["kind"], record["field"], record["reason"]) == ("implausible_time", "ts", "implausible_time: more than 5 ms after")


def test_the_jvm_parser_has_the_bounds_of_this_contract() -> None:
    """udfs/jvm EventParser repeats the bounds as Java constants: they must be these."""
    java = (Path(__file__).resolve().parents[2] / "udfs/jvm/src/main/java/darkpool/flink/EventParser.java").read_text()
    constants = {m[0]: int(m[1]) for m in re.findall(r"static final (?:int|long) (\w+) = (\d+)L?;", java)}
    rule = TimePlausibility()
    want = {
        "MAX_MESSAGE_BYTES": MAX_MESSAGE_BYTES,
        "MAX_NESTING_DEPTH": MAX_NESTING_DEPTH,
        **{f"MAX_CHARS_{f.upper()}": n for f, n in STRING_MAX_CHARS.items()},
        "DEFAULT_MAX_FUTURE_MS": rule.max_future_ms,
        "DEFAULT_MAX_JUMP_MS": rule.max_jump_ms,
        "DEFAULT_REANCHOR_AFTER": rule.reanchor_after,
    }
    assert {k: constants.get(k) for k in want} == want  # the words: tests/integration/test_parse_event.py


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.binary(max_size=300),
    st.text(alphabet='{}[]":,0123456789.eE+-truefalsnul \\ud800\u00e9', max_size=300),
    st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
                 lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3)).map(json.dumps),
))  # fmt: skip
def test_any_payload_is_a_record_or_a_contract_error(payload: bytes | str) -> None:
    with contextlib.suppress(ContractError):  # anything else fails the test
        parse_message(payload, now_ns=GOOD_NEW["ts"])
