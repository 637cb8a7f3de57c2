"""Contract test of the event validators: every kind of bad row -> ContractError naming
the row and the field, the same from the JSON path (validate_record / parse_message)
and the Arrow path (validate_table); and the SQL rendered from RULES covers every rule."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from core.schemas import (
    EVENT_SCHEMA,
    RULES,
    ContractError,
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
]
BAD_FILLS = [
    ("fill_without_contra", {"contra": None}, "contra"),
    ("fill_with_empty_contra", {"contra": ""}, "contra"),
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
