"""LOBSTER message files -> the event contract (`core.schemas.EVENT_SCHEMA`).

A LOBSTER message file (CSV, no header) has one NASDAQ order message per line:
``time, type, order id, size, price, direction`` with time in seconds after midnight,
New York time (up to 9 decimals), price in dollars x 10000, direction 1 = buy limit
order, -1 = sell (for executions: the side of the resting order). Its orderbook file has,
per message line, the book after that message: ask price 1, ask size 1, bid price 1, bid
size 1, ... (an empty level reads 9999999999 / -9999999999 with size 0).

Mapping (one contract row per message; README.md beside this file says why):
- 1 new limit order -> ``new``; 2 partial cancel -> ``cancel`` (qty = shares cancelled);
  3 delete -> ``cancel`` (qty = shares left); 4 execution of a visible order -> ``fill``;
  5 execution of a hidden order -> ``fill`` with ``hidden`` (its order id is 0 in
  LOBSTER: the row gets ``LH<line>``); 6 cross trade (auction) and 7 halt: skipped, counted.
- ``ts``: the date's New York wall-clock time -> epoch ns UTC (DST from zoneinfo).
- ``bid``/``ask``: the quote *before* the message, i.e. the book the message met (the
  orderbook file's previous row, or the book rebuilt from the messages, `book.py`). The
  simulator's NBBO is likewise not moved by the event it stamps; with the after-state a
  new order would be compared with a quote it set itself. An empty side keeps its last
  price; rows before both sides were ever quoted are dropped, counted.
- ``participant``/``contra``: LOBSTER has none. Each order id is hashed into a fixed
  population of pseudo accounts ``R<firm>-d<desk>``; a fill's contra is the unknown
  aggressor, hashed from the fill's timestamp (the fills of one sweep share it). The
  participant channels of the features are noise on such rows (README.md).

>>> import datetime as dt
>>> epoch_ns_utc(dt.date(2012, 6, 21), np.array([34_200 * 10**9]))  # 09:30 EDT = 13:30 UTC
array([1340285400000000000])
>>> epoch_ns_utc(dt.date(2012, 12, 21), np.array([34_200 * 10**9]))  # 09:30 EST = 14:30 UTC
array([1356100200000000000])
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core.schemas import EVENT_SCHEMA, validate_table
from darkpool.venue.book import (
    ASK,
    BID,
    CROSS_TRADE,
    DELETE,
    EXEC_HIDDEN,
    EXEC_VISIBLE,
    HALT,
    NEW,
    PARTIAL_CANCEL,
    VisibleBook,
)

VENUE = "NASDAQ-LOBSTER"
NEW_YORK = ZoneInfo("America/New_York")
EMPTY_ASK = 9_999_999_999  # LOBSTER's dummy price of an unoccupied ask level (bid: negative)
PRICE_SCALE = 10_000  # LOBSTER prices are dollars x 10000
NS = 1_000_000_000
_NAME = re.compile(r"(?P<ticker>[A-Za-z0-9.]+)_(?P<date>\d{4}-\d{2}-\d{2})_\d+_\d+_(message|orderbook)_(?P<levels>\d+)\.csv")
_EVENT_OF = {NEW: "new", PARTIAL_CANCEL: "cancel", DELETE: "cancel", EXEC_VISIBLE: "fill", EXEC_HIDDEN: "fill"}
_LINE_FORM = "a LOBSTER message line is: time,type,order id,size,price,direction"


class LobsterFormatError(ValueError):
    """A message or orderbook file is not LOBSTER: names the file, the line and the problem."""

    def __init__(self, path: Path, line: int | None, problem: str):
        where = f"{path}: line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Population:
    """The pseudo participants that LOBSTER's anonymous orders are hashed into.

    `accounts` accounts spread over `firms` firms, named ``R<firm>-d<desk>`` (the form
    `core.features.firm_of` splits); `seed` salts the hash (same seed -> same names).
    """

    accounts: int = 240
    firms: int = 24
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.firms <= self.accounts:
            raise ValueError(f"need 1 <= firms <= accounts, got {self.firms} firms, {self.accounts} accounts")

    def names(self) -> list[str]:
        return [f"R{a % self.firms:03d}-d{a // self.firms:02d}" for a in range(self.accounts)]

    def of(self, keys: np.ndarray, salt: int) -> np.ndarray:
        """Account index per integer key (deterministic, uniform: splitmix64 finalizer)."""
        with np.errstate(over="ignore"):
            z = (keys.astype(np.uint64) ^ np.uint64((self.seed * 2 + salt) & (2**64 - 1))) + np.uint64(0x9E3779B97F4A7C15)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z ^= z >> np.uint64(31)
        return (z % np.uint64(self.accounts)).astype(np.int64)


@dataclass
class Messages:
    """A parsed message file, one array entry per line (line k is entry k-1)."""

    ns_after_midnight: np.ndarray  # int64, New York wall clock
    kind: np.ndarray  # int8, LOBSTER type 1..7
    order_id: np.ndarray  # int64
    size: np.ndarray  # int64
    price: np.ndarray  # int64, dollars x 10000
    direction: np.ndarray  # int8, 1 buy / -1 sell

    def __len__(self) -> int:
        return len(self.kind)


@dataclass
class ImportStats:
    """What an import did, for the one-line summary and the tests."""

    messages: int = 0
    rows: int = 0
    by_event: dict[str, int] = field(default_factory=dict)
    skipped_cross_trades: int = 0
    skipped_halts: int = 0
    dropped_no_quote: int = 0  # before both sides of the book were ever quoted
    dropped_outside_window: int = 0
    quote_source: str = ""
    side_carried: int = 0  # rows where an empty side kept its last price
    crossed_repaired: int = 0
    unknown_order_refs: int = 0  # rebuilt book: cancels/executions of orders never seen
    stale_orders_dropped: int = 0  # rebuilt book: orders proved gone by later messages
    beyond_depth_dropped: int = 0  # rebuilt book: orders forgotten past the file's levels
    seconds: float = 0.0

    def summary(self) -> str:
        events = ", ".join(f"{n:,} {k}" for k, n in sorted(self.by_event.items()))
        parts = [f"{self.rows:,} rows ({events}) from {self.messages:,} messages",
                 f"quotes from the {self.quote_source}",
                 f"skipped {self.skipped_cross_trades:,} cross trades, {self.skipped_halts:,} halt messages, "
                 f"{self.dropped_no_quote:,} rows before a two-sided quote"]
        if self.side_carried or self.crossed_repaired:
            parts.append(f"{self.side_carried:,} rows with an empty side at its last price, "
                         f"{self.crossed_repaired:,} crossed quotes repaired")
        if self.dropped_outside_window:
            parts.append(f"{self.dropped_outside_window:,} outside the time window")
        if self.quote_source == "messages":
            parts.append(f"{self.unknown_order_refs:,} references to unseen orders, "
                         f"{self.stale_orders_dropped:,} stale orders dropped, "
                         f"{self.beyond_depth_dropped:,} forgotten past the file's levels")
        rate = self.messages / self.seconds if self.seconds else 0.0
        parts.append(f"{self.seconds:.1f} s ({rate:,.0f} messages/s)")
        return "; ".join(parts)


def name_parts(path: Path) -> tuple[str, dt.date, int] | None:
    """(ticker, date, book levels) from a LOBSTER file name, None if it is not one.

    >>> name_parts(Path("GOOG_2012-06-21_34200000_57600000_message_10.csv"))
    ('GOOG', datetime.date(2012, 6, 21), 10)
    """
    m = _NAME.fullmatch(path.name)
    return (m["ticker"], dt.date.fromisoformat(m["date"]), int(m["levels"])) if m else None


def epoch_ns_utc(day: dt.date, ns_after_midnight: np.ndarray, zone: ZoneInfo = NEW_YORK) -> np.ndarray:
    """Wall-clock ns after midnight of `day` in `zone` -> epoch ns UTC.

    New York changes its offset on the hour (02:00), so the offset is looked up once per
    wall-clock hour; a wall time in the repeated autumn hour takes the first (DST) offset.
    """
    hours = ns_after_midnight // (3600 * NS)
    midnight = dt.datetime.combine(day, dt.time())
    offset_ns = {int(h): int((midnight + dt.timedelta(hours=int(h))).replace(tzinfo=zone).utcoffset()
                             .total_seconds()) * NS for h in np.unique(hours)}
    lookup = np.vectorize(offset_ns.__getitem__, otypes=[np.int64])
    naive_ns = (day - dt.date(1970, 1, 1)).days * 86_400 * NS
    return naive_ns + ns_after_midnight - (lookup(hours) if len(hours) else 0)


def _seconds_to_ns(text: str) -> int:
    """'34200.015105074' -> 34200015105074 exactly (no float rounding); ValueError if not a time."""
    whole, _, frac = text.strip().partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        raise ValueError(f"time {text.strip()!r} is not seconds after midnight (e.g. 34200.015105074)")
    ns = int(whole) * NS + int((frac + "000000000")[:9])
    return ns + (1 if len(frac) > 9 and frac[9] >= "5" else 0)  # beyond ns: round


def _lines(path: Path, progress: bool) -> Iterator[tuple[int, str]]:
    """(line number, text) of a text file, with a progress bar on request."""
    try:
        handle = path.open(encoding="ascii", newline="")
    except OSError as exc:
        raise LobsterFormatError(path, None, f"cannot read it ({exc.strerror})") from None
    with handle:
        lines: Iterable[str] = handle
        if progress:
            from tqdm import tqdm

            lines = tqdm(handle, desc=path.name, unit=" lines", mininterval=0.5, leave=False)
        lineno = 0
        try:
            for lineno, line in enumerate(lines, 1):
                yield lineno, line
        except UnicodeDecodeError:
            raise LobsterFormatError(path, lineno + 1, "is not ASCII text (a LOBSTER file is plain CSV)") from None


def _data_lines(path: Path, progress: bool) -> Iterator[tuple[int, str]]:
    """`_lines` without trailing blank lines; a blank line followed by data is an error."""
    blank_at = None
    for lineno, line in _lines(path, progress):
        if not line.strip():
            blank_at = blank_at or lineno
            continue
        if blank_at is not None:
            raise LobsterFormatError(path, blank_at, "empty line inside the file")
        yield lineno, line


def _ints(fields: list[str], names: tuple[str, ...]) -> list[int]:
    out = []
    for text, name in zip(fields, names, strict=True):
        text = text.strip()
        if not text.lstrip("-").isdigit():
            raise ValueError(f"{name} {text!r} is not an integer")
        out.append(int(text))
    return out


def read_messages(path: Path, progress: bool = False) -> Messages:
    """Parse and check a message file; `LobsterFormatError` names the first bad line."""
    cols: list[list[int]] = [[], [], [], [], [], []]
    last_ns = -1
    for lineno, line in _data_lines(path, progress):
        fields = line.rstrip("\r\n").split(",")
        if len(fields) == 7 and not fields[6].strip():
            fields.pop()  # a trailing comma
        if len(fields) != 6:
            raise LobsterFormatError(path, lineno, f"expected 6 comma-separated fields, got {len(fields)}; {_LINE_FORM}")
        try:
            ns = _seconds_to_ns(fields[0])
            kind, oid, size, price, direction = _ints(fields[1:], ("type", "order id", "size", "price", "direction"))
            problem = _message_problem(ns, last_ns, kind, oid, size, price, direction)
        except ValueError as exc:
            problem = str(exc)
        if problem:
            raise LobsterFormatError(path, lineno, f"{problem} ({line.strip()!r}); {_LINE_FORM}")
        last_ns = ns
        for col, value in zip(cols, (ns, kind, oid, size, price, direction), strict=True):
            col.append(value)
    if not cols[0]:
        raise LobsterFormatError(path, None, "has no messages")
    return Messages(*(np.array(c, dtype=t) for c, t in zip(
        cols, (np.int64, np.int8, np.int64, np.int64, np.int64, np.int8), strict=True)))


def _message_problem(ns: int, last_ns: int, kind: int, oid: int, size: int, price: int, direction: int) -> str | None:
    if ns >= 86_400 * NS:
        return "time is past midnight (seconds after midnight must be < 86400)"
    if ns < last_ns:
        return "time goes backwards (the messages must be in time order)"
    if not NEW <= kind <= HALT:
        return f"type {kind} is not a LOBSTER event type (1-7)"
    if direction not in (1, -1):
        return f"direction {direction} must be 1 (buy) or -1 (sell)"
    if oid < 0:
        return f"order id {oid} is negative"
    if kind <= CROSS_TRADE and size <= 0:
        return f"size {size} must be > 0"
    if kind <= EXEC_HIDDEN and price <= 0:
        return f"price {price} must be > 0 (dollars x 10000)"
    return None


def read_best_quotes(path: Path, n_messages: int, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(best bid, best ask) after each message, LOBSTER integers; 0 where a side is empty."""
    bids, asks = np.zeros(n_messages, np.int64), np.zeros(n_messages, np.int64)
    n = 0
    for lineno, line in _data_lines(path, progress):
        if n == n_messages:
            raise LobsterFormatError(path, lineno, f"more rows than the message file's {n_messages:,}; "
                                                   "the two files must be one LOBSTER pair")
        n_fields = line.count(",") + 1
        if n_fields < 4 or n_fields % 4:
            raise LobsterFormatError(path, lineno, f"expected 4 fields per level (ask price, ask size, bid price, "
                                                   f"bid size, ...), got {n_fields}")
        try:
            ask, ask_size, bid, bid_size = _ints(line.split(",", 4)[:4], ("ask price", "ask size", "bid price", "bid size"))
        except ValueError as exc:
            raise LobsterFormatError(path, lineno, str(exc)) from None
        if ask_size < 0 or bid_size < 0:
            raise LobsterFormatError(path, lineno, "a level size is negative")
        asks[n] = ask if 0 < ask < EMPTY_ASK and ask_size > 0 else 0
        bids[n] = bid if bid > 0 and bid_size > 0 else 0
        n += 1
    if n != n_messages:
        raise LobsterFormatError(path, None, f"has {n:,} rows but the message file has {n_messages:,}; "
                                             "the two files must be one LOBSTER pair")
    return bids, asks


def _rebuilt_quotes_before(msgs: Messages, stats: ImportStats, depth: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Best bid/ask before each message from the book the messages rebuild (0 = empty side);
    `depth`: the levels the file covers (see `VisibleBook`)."""
    book = VisibleBook(depth)
    n = len(msgs)
    bids, asks = np.zeros(n, np.int64), np.zeros(n, np.int64)
    rows = zip(msgs.kind.tolist(), msgs.order_id.tolist(), msgs.direction.tolist(),
               msgs.price.tolist(), msgs.size.tolist(), strict=True)
    for i, (kind, oid, direction, price, size) in enumerate(rows):
        side = BID if direction == 1 else ASK
        book.clear_stale_for(kind, side, price)  # evidence about the book the message met
        bids[i], asks[i] = book.best(BID) or 0, book.best(ASK) or 0
        book.apply(kind, oid, side, price, size)
    stats.unknown_order_refs, stats.stale_orders_dropped = book.unknown_refs, book.stale_dropped
    stats.beyond_depth_dropped = book.beyond_depth_dropped
    return bids, asks


def _usable_quotes(bids: np.ndarray, asks: np.ndarray, stats: ImportStats) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fill empty sides with their last price and repair crossed quotes; (bid, ask, has quote).

    A crossed quote whose one side was carried forward is locked to the fresh side (the
    carried price is the stale one); one crossed on two fresh sides (never seen in LOBSTER
    data) keeps the last good quote.
    """
    n = len(bids)
    out_bid, out_ask = np.zeros(n, np.int64), np.zeros(n, np.int64)
    last_bid = last_ask = 0
    for i, (bid, ask) in enumerate(zip(bids.tolist(), asks.tolist(), strict=True)):
        b, a = bid or last_bid, ask or last_ask
        if (b != bid) or (a != ask):
            stats.side_carried += bool(b and a)
        if b and a and b > a:
            stats.crossed_repaired += 1
            if bid and not ask:
                a = b
            elif ask and not bid:
                b = a
            else:
                b, a = last_bid, last_ask
        out_bid[i], out_ask[i] = b, a
        if b and a:
            last_bid, last_ask = b, a
    return out_bid, out_ask, (out_bid > 0) & (out_ask > 0)


def convert(msgs: Messages, ticker: str, day: dt.date, quotes_after: tuple[np.ndarray, np.ndarray] | None = None,
            venue: str = VENUE, population: Population | None = None,
            window_ns: tuple[int, int] | None = None, levels: int | None = None) -> tuple[pa.Table, ImportStats]:
    """Messages (+ the orderbook file's best quotes after each message) -> contract table.

    `window_ns` keeps rows whose wall-clock time (ns after midnight) is in [start, end);
    the book is still rebuilt from the first message. `levels`: the book levels the
    message file covers (its name's N), for the rebuilt book; None: unbounded.
    """
    population = population or Population()
    stats = ImportStats(messages=len(msgs), quote_source="orderbook file" if quotes_after else "messages")
    if quotes_after is not None:  # row i met the book after message i-1; row 0 met an unknown book
        bid_raw = np.concatenate([[0], quotes_after[0][:-1]])
        ask_raw = np.concatenate([[0], quotes_after[1][:-1]])
    else:
        bid_raw, ask_raw = _rebuilt_quotes_before(msgs, stats, levels)
    bid, ask, quoted = _usable_quotes(bid_raw, ask_raw, stats)

    is_event = msgs.kind <= EXEC_HIDDEN
    stats.skipped_cross_trades = int((msgs.kind == CROSS_TRADE).sum())
    stats.skipped_halts = int((msgs.kind == HALT).sum())
    stats.dropped_no_quote = int((is_event & ~quoted).sum())
    keep = is_event & quoted
    if window_ns is not None:
        inside = (msgs.ns_after_midnight >= window_ns[0]) & (msgs.ns_after_midnight < window_ns[1])
        stats.dropped_outside_window = int((keep & ~inside).sum())
        keep &= inside
    idx = np.flatnonzero(keep)
    table = _table(msgs, idx, bid[idx], ask[idx], ticker, day, venue, population)
    stats.rows = table.num_rows
    kinds = msgs.kind[idx]
    for k, name in _EVENT_OF.items():
        stats.by_event[name] = stats.by_event.get(name, 0) + int((kinds == k).sum())
    validate_table(table)
    return table, stats


def _table(msgs: Messages, idx: np.ndarray, bid: np.ndarray, ask: np.ndarray, ticker: str, day: dt.date,
           venue: str, population: Population) -> pa.Table:
    kind, oid = msgs.kind[idx], msgs.order_id[idx]
    ts = epoch_ns_utc(day, msgs.ns_after_midnight[idx])
    hidden = kind == EXEC_HIDDEN
    is_fill = hidden | (kind == EXEC_VISIBLE)
    lines = idx + 1
    # a hidden execution's order is unnamed (id 0): each is its own order, keyed by its line
    order_key = np.where(hidden, -lines, oid)
    order_ids = [f"LH{k}" if h else f"L{k}" for k, h in zip(np.where(hidden, lines, oid).tolist(), hidden.tolist(), strict=True)]
    names = pa.array(population.names(), pa.string())
    participant = names.take(pa.array(population.of(order_key, salt=0)))
    contra = names.take(pa.array(population.of(ts, salt=1), mask=~is_fill))
    event = pa.array(np.array(["", "new", "cancel", "cancel", "fill", "fill"], dtype=object)[kind], pa.string())
    side = pa.array(np.where(msgs.direction[idx] == 1, "B", "S").astype(object), pa.string())
    n = len(idx)
    columns = {
        "ts": pa.array(ts, pa.int64()),
        "instrument": pa.array([ticker] * n, pa.string()),
        "venue": pa.array([venue] * n, pa.string()),
        "event": event,
        "order_id": pa.array(order_ids, pa.string()),
        "participant": participant,
        "side": side,
        "price": pa.array(msgs.price[idx] / PRICE_SCALE, pa.float64()),
        "qty": pa.array(msgs.size[idx], pa.int64()),
        "contra": contra,
        "bid": pa.array(bid / PRICE_SCALE, pa.float64()),
        "ask": pa.array(ask / PRICE_SCALE, pa.float64()),
        "hidden": pa.array(hidden, pa.bool_()),
    }
    return pa.Table.from_arrays([columns[f.name] for f in EVENT_SCHEMA], schema=EVENT_SCHEMA)


def _wall_clock(ns_after_midnight: int) -> str:
    """ns after midnight -> 'HH:MM:SS'.

    >>> _wall_clock(34_200 * 10**9)
    '09:30:00'
    """
    seconds = ns_after_midnight // 1_000_000_000
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def import_lobster(message: Path, out: Path, orderbook: Path | None = None, ticker: str | None = None,
                   day: dt.date | None = None, venue: str = VENUE, population: Population | None = None,
                   window_ns: tuple[int, int] | None = None, levels: int | None = None,
                   progress: bool | None = None) -> ImportStats:
    """Read, convert, validate and write one LOBSTER message file (+ orderbook file).

    Ticker, date and levels default to those in the LOBSTER file name. Raises
    `LobsterFormatError` for a malformed file and ValueError for missing names.
    """
    t0 = time.perf_counter()
    named = name_parts(message)
    ticker = ticker or (named[0] if named else None)
    day = day or (named[1] if named else None)
    levels = levels or (named[2] if named else None)
    if not ticker or not day:
        raise ValueError(f"{message.name} is not named like TICKER_YYYY-MM-DD_..._message_N.csv: "
                         "give the ticker and the date (--ticker, --date)")
    if progress is None:
        progress = message.stat().st_size > 50_000_000
    msgs = read_messages(message, progress)
    quotes = read_best_quotes(orderbook, len(msgs), progress) if orderbook else None
    table, stats = convert(msgs, ticker, day, quotes, venue, population, window_ns, levels)
    if table.num_rows == 0:  # an empty file written would look like a successful import
        clock = np.asarray(msgs.ns_after_midnight)
        span = (f"its messages run {_wall_clock(int(clock.min()))}-{_wall_clock(int(clock.max()))} New York time"
                if len(clock) else "it holds no message")
        cause = "the --start/--end window keeps none of them" if window_ns is not None else "none converts to an event"
        raise ValueError(f"no event to write from {message.name}: {span}, and {cause}")
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out, compression="zstd")
    stats.seconds = time.perf_counter() - t0
    return stats
