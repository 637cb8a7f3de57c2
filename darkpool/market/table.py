"""Time-ordered event blocks -> the contract's Arrow table, and their prices.

The low-cardinality strings stay dictionary-encoded (codes + a small dictionary) from
the simulator to the Parquet writer (CODED_SCHEMA): no 800k-row string columns are
built, hashed and re-dictionary-encoded by the writer. The file is the same: its columns
are strings, and `decode` gives LABELED_SCHEMA in memory.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.schemas import EVENT_KINDS, LABELED_SCHEMA, SCENARIOS, SIDES
from darkpool.market.config import SimConfig
from darkpool.market.events import NEW, PK_COPY, Block, resolve_prices
from darkpool.market.nbbo import Nbbo
from darkpool.market.universe import Universe

DICT_COLUMNS = ["instrument", "venue", "event", "participant", "side", "contra", "scenario"]
CODED_SCHEMA = pa.schema([
    pa.field(f.name, pa.dictionary(pa.int32(), pa.string()), nullable=f.nullable) if f.name in DICT_COLUMNS else f
    for f in LABELED_SCHEMA
])
PRICE_INPUTS = ("ts", "inst", "ev", "oid", "pk", "pv")  # block columns `prices` reads


def _new_row_of_order(b: Block) -> np.ndarray:
    """Row of each internal order id's `new` (-1: none), rows in time order."""
    new_rows = np.flatnonzero(b["ev"] == NEW)
    row = np.full(int(b["oid"].max(initial=-1)) + 1, -1, dtype=np.int64)
    row[b["oid"][new_rows]] = new_rows
    return row


def prices(cfg: SimConfig, nbbo: Nbbo, b: Block) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """price, bid, ask of time-ordered rows (only PRICE_INPUTS are read)."""
    bid_t, ask_t = nbbo.lookup(b["inst"], b["ts"])
    price = resolve_prices(b, bid_t, ask_t, cfg.tick)
    copy = b["pk"] == PK_COPY  # cancels repeat their order's limit price
    price[copy] = price[_new_row_of_order(b)[b["oid"][copy]]]
    return price, np.round(bid_t * cfg.tick, 6), np.round(ask_t * cfg.tick, 6)


def _coded(values: list[str] | tuple[str, ...] | np.ndarray, codes: np.ndarray,
           null: np.ndarray | None = None) -> pa.Array:
    """`values[codes]` as a dictionary array (null where `null`), without copying strings."""
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32, copy=False), mask=null),
                                          pa.array(list(values), pa.string()))


def _order_ids(b: Block) -> pa.Array:
    """`O<n>`, n numbered by the time of the order's `new` (rows are sorted by ts), as a
    venue would assign them, so an id says nothing about who made the order."""
    new_row = _new_row_of_order(b)[b["oid"]]
    assert (new_row >= 0).all(), "every order must have a new event"
    order_no = np.cumsum(b["ev"] == NEW)[new_row]  # its new is the n-th new
    return pc.binary_join_element_wise("O", pc.cast(pa.array(order_no), pa.string()), "")


def events_table(cfg: SimConfig, uni: Universe, b: Block, price: np.ndarray, bid: np.ndarray,
                 ask: np.ndarray) -> pa.Table:
    """Time-ordered rows in CODED_SCHEMA."""
    cols = {
        "instrument": _coded(uni.symbols, b["inst"]),
        "venue": _coded(cfg.venues, b["venue"]),
        "event": _coded(EVENT_KINDS, b["ev"]),
        "order_id": _order_ids(b),
        "participant": _coded(uni.part_names, b["part"]),
        "side": _coded(SIDES, b["side"]),
        "contra": _coded(uni.part_names, np.maximum(b["contra"], 0), null=b["contra"] < 0),
        "scenario": _coded(SCENARIOS, b["scen"]),
        "ts": pa.array(b["ts"], pa.int64()),
        "price": pa.array(price, pa.float64()),
        "qty": pa.array(b["qty"], pa.int64()),
        "bid": pa.array(bid, pa.float64()),
        "ask": pa.array(ask, pa.float64()),
        "hidden": pa.array(b["hidden"], pa.bool_()),
        "label": pa.array(b["label"], pa.int8()),
    }
    return pa.table([cols[name] for name in CODED_SCHEMA.names], schema=CODED_SCHEMA)


def decode(coded: pa.Table) -> pa.Table:
    """CODED_SCHEMA (or LABELED_SCHEMA) -> LABELED_SCHEMA: plain string columns."""
    return coded.cast(LABELED_SCHEMA)
