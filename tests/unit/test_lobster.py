"""`darkpool import lobster`: LOBSTER message files into the event contract.

A hand-written message file (+ its orderbook file) converts to exact rows, with the
quote from the orderbook file and rebuilt from the messages; malformed files fail with
one line naming the file and the line; the shipped real sample passes the contract."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from core.features import firm_of
from core.schemas import validate_table
from darkpool.cli import cli
from darkpool.venue.book import ASK, BID, DELETE, EXEC_VISIBLE, NEW, VisibleBook
from darkpool.venue.lobster import epoch_ns_utc, import_lobster, read_messages

SAMPLE = Path(__file__).resolve().parents[2] / "data-samples" / "lobster"
NAME = "TEST_2012-06-21_34200000_57600000_{}_10.csv"

# time, type, order id, size, price, direction  (one case per LOBSTER type)
MESSAGES = """\
34200.000000001,1,1,100,1000000,1
34200.5,1,2,50,1001000,-1
34201.000000001,1,3,30,1000500,1
34201.25,2,3,10,1000500,1
34202,4,2,20,1001000,-1
34202,5,0,5,1000700,1
34203,6,0,400,1000800,1
34204,3,3,20,1000500,1
34205,7,0,0,-1,-1
34206,4,1,100,1000000,1
"""
# the book after each message: ask price, ask size, bid price, bid size
ORDERBOOK = """\
9999999999,0,1000000,100
1001000,50,1000000,100
1001000,50,1000500,30
1001000,50,1000500,20
1001000,30,1000500,20
1001000,30,1000500,20
1001000,30,1000500,20
1001000,30,1000000,100
1001000,30,1000000,100
1001000,30,-9999999999,0
"""
OPEN_NS = 1_340_285_400 * 10**9  # 2012-06-21 09:30:00 EDT = 13:30:00 UTC

# (line, event, side, price, qty, bid, ask, hidden, ts) expected per kept message
EXPECTED = [
    (3, "new", "B", 100.05, 30, 100.00, 100.10, False, OPEN_NS + 1_000_000_001),
    (4, "cancel", "B", 100.05, 10, 100.05, 100.10, False, OPEN_NS + 1_250_000_000),
    (5, "fill", "S", 100.10, 20, 100.05, 100.10, False, OPEN_NS + 2 * 10**9),
    (6, "fill", "B", 100.07, 5, 100.05, 100.10, True, OPEN_NS + 2 * 10**9),
    (8, "cancel", "B", 100.05, 20, 100.05, 100.10, False, OPEN_NS + 4 * 10**9),
    (10, "fill", "B", 100.00, 100, 100.00, 100.10, False, OPEN_NS + 6 * 10**9),
]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    message, orderbook = tmp_path / NAME.format("message"), tmp_path / NAME.format("orderbook")
    message.write_text(MESSAGES)
    orderbook.write_text(ORDERBOOK)
    return message, orderbook


@pytest.mark.parametrize("with_orderbook", [True, False], ids=["orderbook", "rebuilt"])
def test_hand_written_file_converts_to_exact_rows(files, tmp_path, with_orderbook):
    message, orderbook = files
    out = tmp_path / "events.parquet"
    stats = import_lobster(message, out, orderbook=orderbook if with_orderbook else None)
    table = pq.read_table(out)
    validate_table(table)
    rows = table.to_pylist()
    got = [(r["event"], r["side"], r["price"], r["qty"], r["bid"], r["ask"], r["hidden"], r["ts"]) for r in rows]
    assert got == [e[1:] for e in EXPECTED]
    assert [r["order_id"] for r in rows] == ["L3", "L3", "L2", "LH6", "L3", "L1"]
    assert {r["instrument"] for r in rows} == {"TEST"} and {r["venue"] for r in rows} == {"NASDAQ-LOBSTER"}
    # 2 rows before a two-sided quote, the cross trade and the halt are skipped
    assert (stats.rows, stats.dropped_no_quote, stats.skipped_cross_trades, stats.skipped_halts) == (6, 2, 1, 1)
    assert stats.by_event == {"new": 1, "cancel": 2, "fill": 3}


def test_pseudo_participants_are_stable_per_order_and_firm_shaped(files, tmp_path):
    message, _ = files
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    import_lobster(message, a)
    import_lobster(message, b)
    rows = pq.read_table(a).to_pylist()
    assert rows == pq.read_table(b).to_pylist()  # deterministic
    by_order = {}
    for r in rows:
        assert re.fullmatch(r"R\d{3}-d\d{2}", r["participant"])
        assert firm_of(r["participant"]) == r["participant"].split("-")[0]
        by_order.setdefault(r["order_id"], set()).add(r["participant"])
        assert (r["contra"] is not None) == (r["event"] == "fill")
    assert len(by_order["L3"]) == 1  # one order, one account: new, cancel and delete of L3


def test_rebuilt_quote_equals_the_orderbook_files_when_every_order_is_known(files):
    message, orderbook = files
    msgs = read_messages(message)
    book = VisibleBook()
    truth = [tuple(int(x) for x in line.split(",")) for line in ORDERBOOK.splitlines()]
    for i in range(len(msgs)):
        side = BID if msgs.direction[i] == 1 else ASK
        book.clear_stale_for(int(msgs.kind[i]), side, int(msgs.price[i]))
        book.apply(int(msgs.kind[i]), int(msgs.order_id[i]), side, int(msgs.price[i]), int(msgs.size[i]))
        ask, _, bid, _ = truth[i]
        assert (book.best(BID) or -9999999999, book.best(ASK) or 9999999999) == (bid, ask), f"after line {i + 1}"


def test_book_drops_orders_that_messages_prove_gone_and_those_past_the_files_depth():
    book = VisibleBook(depth=2)
    for oid, price in ((1, 100), (2, 99), (3, 98)):  # the third level is past a level-2 file's depth
        book.apply(NEW, oid, BID, price, 10)
    assert 3 not in book.orders and book.beyond_depth_dropped == 1
    book.apply(NEW, 4, ASK, 105, 10)
    book.clear_stale_for(EXEC_VISIBLE, ASK, 106)  # an execution at 106: the ask at 105 was gone
    assert book.best(ASK) is None and book.stale_dropped == 1
    book.apply(DELETE, 77, ASK, 105, 10)  # an order the book never saw
    assert book.unknown_refs == 1


def test_dst_offset_follows_the_date():
    nine_thirty = np.array([34_200 * 10**9])
    summer = epoch_ns_utc(dt.date(2012, 6, 21), nine_thirty)[0]
    winter = epoch_ns_utc(dt.date(2012, 12, 21), nine_thirty)[0]
    assert dt.datetime.fromtimestamp(summer / 1e9, dt.UTC).hour == 13  # EDT, UTC-4
    assert dt.datetime.fromtimestamp(winter / 1e9, dt.UTC).hour == 14  # EST, UTC-5
    # the day US clocks moved forward (2012-03-11): 01:00 is EST, 09:30 already EDT
    spring = epoch_ns_utc(dt.date(2012, 3, 11), np.array([3600 * 10**9, 34_200 * 10**9]))
    assert [dt.datetime.fromtimestamp(t / 1e9, dt.UTC).hour for t in spring] == [6, 13]


def test_cli_converts_with_date_override_and_time_window(files, tmp_path):
    message, orderbook = files
    out = tmp_path / "w.parquet"
    result = CliRunner().invoke(cli, ["import", "lobster", "--message", str(message), "--orderbook", str(orderbook),
                                      "--ticker", "XYZ", "--date", "2012-12-21", "--end", "09:30:03",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out).to_pylist()
    assert [r["ts"] for r in rows] == [e[8] + 3600 * 10**9 + 183 * 86_400 * 10**9 for e in EXPECTED[:4]]
    assert {r["instrument"] for r in rows} == {"XYZ"}
    assert "6 rows" not in result.output and "4 rows" in result.output


@pytest.mark.parametrize(("line", "bad", "says"), [
    (3, "34201,1,3,30,1000500", "expected 6 comma-separated fields, got 5"),
    (4, "34201.25,2,3,10,abc,1", "price 'abc' is not an integer"),
    (5, "34100,4,2,20,1001000,-1", "time goes backwards"),
    (2, "34200.5,9,2,50,1001000,-1", "type 9 is not a LOBSTER event type"),
    (6, "34202,5,0,5,1000700,0", "direction 0 must be 1 (buy) or -1 (sell)"),
])
def test_malformed_message_file_fails_with_one_line_naming_file_and_line(files, tmp_path, line, bad, says):
    message, _ = files
    lines = MESSAGES.splitlines()
    lines[line - 1] = bad
    message.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(cli, ["import", "lobster", "--message", str(message), "--out", str(tmp_path / "x.parquet")])
    assert result.exit_code == 1
    text = result.output.strip()
    assert "Traceback" not in text and len(text.splitlines()) == 1, text
    assert text.startswith(f"Error: {message}: line {line}: {says}"), text


def test_orderbook_file_of_another_length_is_refused(files, tmp_path):
    message, orderbook = files
    orderbook.write_text("".join(ORDERBOOK.splitlines(keepends=True)[:-1]))
    result = CliRunner().invoke(cli, ["import", "lobster", "--message", str(message), "--orderbook", str(orderbook),
                                      "--out", str(tmp_path / "x.parquet")])
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: {orderbook}: has 9 rows but the message file has 10; "
                                     "the two files must be one LOBSTER pair")


def test_shipped_real_sample_passes_the_contract():
    table = pq.read_table(SAMPLE / "GOOG_2012-06-21_events.parquet")
    validate_table(table)
    ts = table.column("ts").to_numpy()
    assert table.num_rows == 147_915 and np.all(np.diff(ts) >= 0)
    # 09:30 to 16:00 New York time on 2012-06-21 (EDT)
    assert ts[0] >= OPEN_NS and ts[-1] < OPEN_NS + int(6.5 * 3600) * 10**9


def test_shipped_raw_excerpt_converts_both_ways(tmp_path):
    message = SAMPLE / "raw" / "GOOG_2012-06-21_34200000_36000000_message_1.csv"
    orderbook = SAMPLE / "raw" / "GOOG_2012-06-21_34200000_36000000_orderbook_1.csv"
    with_book = import_lobster(message, tmp_path / "a.parquet", orderbook=orderbook)
    rebuilt = import_lobster(message, tmp_path / "b.parquet")
    assert with_book.messages == rebuilt.messages == 5_801
    for name in ("a", "b"):
        validate_table(pq.read_table(tmp_path / f"{name}.parquet"))
