"""Columnar event blocks used inside the simulator, before they become contract rows.

A block is a dict of equal-length numpy arrays with integer codes instead of strings
(instrument / participant / venue indices, event and side codes). Prices are kept
*relative to the NBBO* (`pk`, `pv`) until the NBBO path exists, so episodes can be
generated before the lit market that they push around; `resolve_prices` turns them
into absolute prices on the tick grid once the NBBO at each event time is known.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

Block = dict[str, np.ndarray]

NEW, CANCEL, FILL = 0, 1, 2  # order of core.schemas.EVENT_KINDS
BUY, SELL = 0, 1  # order of core.schemas.SIDES

# Price kinds: how `pv` turns into a price once the NBBO at the event time is known.
PK_LIMIT = 0  # limit price: mid + pv ticks, rounded to the tick grid
PK_INSIDE = 1  # execution inside the NBBO: bid + (pv + 1) / 2 * spread (pv in [-1, 1]), half-tick grid
PK_OFF = 2  # execution outside the NBBO: |pv| is a fraction of the mid (at least 1 tick), sign = above ask / below bid
PK_COPY = 3  # cancel: repeats the limit price of the order's `new` event

COLUMNS: dict[str, type] = {
    "ts": np.int64,  # event time, epoch ns
    "inst": np.int32,  # instrument index
    "venue": np.int8,  # venue index
    "ev": np.int8,  # NEW / CANCEL / FILL
    "oid": np.int64,  # internal order id (dense, renumbered by time at the end)
    "part": np.int32,  # participant index
    "side": np.int8,  # BUY / SELL
    "pk": np.int8,  # price kind, see PK_*
    "pv": np.float64,  # price value, meaning depends on pk
    "qty": np.int64,
    "contra": np.int32,  # participant index of the contra side of a fill, -1 = null
    "hidden": np.bool_,
    "label": np.int8,  # 0 normal, 1 manipulator event
    "scen": np.int8,  # index into core.schemas.SCENARIOS
    "episode": np.int32,  # episode id of a manipulator event, -1 otherwise
}
_DEFAULTS = {"contra": -1, "episode": -1}


_CONST: dict[tuple[str, int], np.ndarray] = {}
_CONST_MAX = 1 << 16  # bigger blocks (normal flow) get their own arrays
_CACHEABLE = {"inst", "venue", "ev", "side", "pk", "label", "scen", "part"}  # few distinct values


def _const(name: str, value: int, n: int) -> np.ndarray:
    """Read-only view of a cached constant column: episodes build thousands of tiny blocks."""
    if n > _CONST_MAX:
        return np.full(n, value, dtype=COLUMNS[name])
    buf = _CONST.get((name, value))
    if buf is None or len(buf) < n:
        buf = np.full(max(n, 4096), value, dtype=COLUMNS[name])
        buf.flags.writeable = False
        _CONST[(name, value)] = buf
    return buf[:n]


def block(n: int, **cols: object) -> Block:
    """A block of `n` rows; scalars broadcast, missing columns take their defaults.

    Columns may be read-only views (defaults): blocks are never modified in place, only
    combined with `concat` / `take`, which copy."""
    unknown = set(cols) - set(COLUMNS)
    if unknown:
        raise KeyError(f"unknown block columns {sorted(unknown)}")
    out: Block = {}
    for name, dtype in COLUMNS.items():
        if name not in cols:
            out[name] = _const(name, _DEFAULTS.get(name, 0), n)
            continue
        value = cols[name]
        if name in _CACHEABLE and isinstance(value, int | np.integer):
            out[name] = _const(name, int(value), n)
            continue
        if isinstance(value, np.ndarray) and value.ndim == 1:
            if len(value) != n:
                raise ValueError(f"column {name} has {len(value)} rows, expected {n}")
            out[name] = value.astype(dtype, copy=False)
        else:
            out[name] = np.full(n, value, dtype=dtype)
    return out


def concat(blocks: Iterable[Block]) -> Block:
    blocks = [b for b in blocks if len(b["ts"])]
    if not blocks:
        return block(0)
    return {name: np.concatenate([b[name] for b in blocks]) for name in COLUMNS}


def assemble(parts: list[tuple[int, dict[str, object]]]) -> Block:
    """One block from parts given as (rows, columns), a column an array or a scalar
    (missing: its default): each column is allocated once and filled part by part,
    instead of building a block per part and copying them all again in `concat`."""
    total = sum(n for n, _ in parts)
    out: Block = {}
    for name, dtype in COLUMNS.items():
        col = np.empty(total, dtype=dtype)
        at = 0
        for n, cols in parts:
            col[at : at + n] = cols.get(name, _DEFAULTS.get(name, 0))
            at += n
        out[name] = col
    unknown = {c for _, cols in parts for c in cols} - set(COLUMNS)
    if unknown:
        raise KeyError(f"unknown block columns {sorted(unknown)}")
    return out


def take(b: Block, idx: np.ndarray) -> Block:
    return {name: arr[idx] for name, arr in b.items()}


def size(b: Block) -> int:
    return len(b["ts"])


def group_cumsum(values: np.ndarray, group_sizes: np.ndarray) -> np.ndarray:
    """Cumulative sum restarted at each group (groups are consecutive runs of the given sizes)."""
    total = np.cumsum(values)
    starts = np.cumsum(group_sizes) - group_sizes
    offset = np.repeat(total[starts] - values[starts], group_sizes)
    return total - offset


def resolve_prices(
    b: Block, bid_t: np.ndarray, ask_t: np.ndarray, tick: float
) -> np.ndarray:
    """Absolute prices from the relative encoding, given the NBBO (in ticks) at each event.

    Limit prices sit on the tick grid; executions inside the NBBO on the half-tick grid
    (the midpoint of a one-tick spread is a half tick); off-market executions at least
    one tick outside. PK_COPY rows are filled in by the caller (they need the order's
    `new` row).
    """
    pk, pv = b["pk"], b["pv"]
    mid2 = bid_t + ask_t  # mid in half ticks
    # Limit and inside prices are computed for every row, then picked by kind: whole-array
    # arithmetic (in place) is cheaper than gathering and scattering the rows of each kind.
    half = mid2 / 2  # price in half ticks
    half += pv
    np.rint(half, out=half)
    np.maximum(half, 1, out=half)
    half *= 2

    inside = np.clip(pv, -1, 1)  # bid + (pv + 1) / 2 * spread
    inside += 1
    inside /= 2
    inside *= 2 * (ask_t - bid_t)
    inside += 2 * bid_t
    np.rint(inside, out=inside)
    np.copyto(half, inside, where=pk == PK_INSIDE)

    off = np.flatnonzero(pk == PK_OFF)
    mag = np.maximum(1, np.ceil(np.abs(pv[off]) * mid2[off] / 2))
    below = bid_t[off] - mag
    # An off-market print below a bid that close to zero goes above the ask instead.
    up = (pv[off] > 0) | (below < 1)
    half[off] = 2 * np.where(up, ask_t[off] + mag, below)

    half[pk == PK_COPY] = np.nan
    half *= tick / 2
    return np.round(half, 6)


def time_order(ts: np.ndarray) -> np.ndarray:
    """np.argsort(ts, kind="stable"), about twice as fast: row numbers packed under the
    times into one uint64 key and sorted by value (numpy's vectorized sort), then, if the
    times had to lose low bits to fit, one stable pass over the nearly sorted rows."""
    if len(ts) == 0:
        return np.zeros(0, dtype=np.int64)
    lo = int(ts.min())
    row_bits = max(1, (len(ts) - 1).bit_length())
    drop = max(0, (int(ts.max()) - lo).bit_length() + row_bits - 64)
    key = ((ts - lo) >> drop).astype(np.uint64) << np.uint64(row_bits)
    key |= np.arange(len(ts), dtype=np.uint64)
    key.sort()
    order = (key & np.uint64((1 << row_bits) - 1)).astype(np.int64)
    return order[np.argsort(ts[order], kind="stable")] if drop else order
