"""Who did what: a participant's order activity per pane, and the alert's one-line account.

An alert names its participants by share of events; an analyst then asks what the first
of them *did* where the alert points (its evidence span). Two pure parts:

1. `pair_stats(...)`: the events of many (key, pane) groups -> a fixed vector of
   `STATS` per wanted (key, participant) pair: orders placed per side (count, shares,
   distance from the same-side quote in ticks, how many at the mid), shares bought and
   sold in fills (as order owner or as contra), orders cancelled and how soon after
   they were placed. NumPy group-bys only (bincount, ufunc.at): the pane UDAF runs it
   once per (shard, pane) call for the participants it names.
2. `merge(rows)` folds the panes of an evidence span; `account(stats)` says it in one
   line: "placed 6 buy orders, 34,000 shares, 2-7 ticks below the bid; sold 300;
   cancelled all within 0.9 s".

Ticks: one cent at $1 and above, 0.01 cent below (the US sub-penny rule); distances
are signed so that positive means away from the market (a buy below the bid, a sell
above the ask) and negative means inside the spread or through it.

Cancel times pair a cancel with its order's `new` by order id inside the same call (one
pane): a cancel whose order was placed in an earlier pane counts as cancelled but not
timed, and the line says how many were timed.

>>> import numpy as np
>>> ev = dict(key=np.array(["X"] * 4), participant=np.array(["P"] * 4), contra=np.array([None] * 4),
...     event=np.array(["new", "new", "cancel", "cancel"]), side=np.array(["B"] * 4),
...     price=np.array([9.98, 9.95, 9.98, 9.95]), qty=np.array([5000, 3000, 5000, 3000]),
...     bid=np.full(4, 10.0), ask=np.full(4, 10.02), ts=np.array([0, 1, 2, 900], dtype=np.int64) * 1_000_000,
...     order_id=np.array(["a", "b", "a", "b"]))
>>> account(merge([pair_stats(**ev, want_key=np.array(["X"]), want_name=np.array(["P"]))[0]]))
'placed 2 buy orders, 8,000 shares, 2-5 ticks below the bid; cancelled all within 0.9 s'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

# One vector per (pane, participant); sums unless named _near/_far (min/max) or _ms_max.
STATS = (
    "buy_n", "buy_qty", "sell_n", "sell_qty",  # orders placed (new) per side
    "buy_near", "buy_far", "sell_near", "sell_far",  # ticks from the same-side quote: min, max
    "buy_mid", "sell_mid",  # orders placed at the mid (a midpoint pool's usual price)
    "bought", "sold",  # shares filled, as owner or contra
    "cancel_n", "cancel_qty", "cancel_timed", "cancel_ms_max",  # cancels; timed = order seen placed
)  # fmt: skip
N_STATS = len(STATS)
_S = {name: i for i, name in enumerate(STATS)}
_MIN = [_S["buy_near"], _S["sell_near"]]
_MAX = [_S["buy_far"], _S["sell_far"], _S["cancel_ms_max"]]
_SUM = [i for i in range(N_STATS) if i not in _MIN + _MAX]
SUB_PENNY_BELOW = 1.0  # price below which the tick is 0.0001 (else 0.01)
MID_TOLERANCE_TICKS = 0.25  # an order this close to the mid is "at the mid"


def tick_of(price: np.ndarray) -> np.ndarray:
    """The quoting tick at each price: $0.01, or $0.0001 below $1.

    >>> tick_of(np.array([0.5, 1.0, 250.0])).tolist()
    [0.0001, 0.01, 0.01]
    """
    return np.where(np.asarray(price, dtype=np.float64) >= SUB_PENNY_BELOW, 0.01, 0.0001)


def pair_stats(
    key: np.ndarray, participant: np.ndarray, contra: np.ndarray, event: np.ndarray, side: np.ndarray,
    price: np.ndarray, qty: np.ndarray, bid: np.ndarray, ask: np.ndarray, ts: np.ndarray,
    order_id: np.ndarray | None, want_key: np.ndarray, want_name: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """`STATS` of each wanted (key, participant) pair over the given events: float64 [W, N_STATS].

    Rows are contract events in any order (ts in ns); `contra` may hold None/NaN (no
    contra); `order_id` None: cancels are not timed. A wanted pair with no events is zeros.
    """
    n = len(key)
    out = np.zeros((len(want_key), N_STATS))
    if n == 0 or len(want_key) == 0:
        return out
    contra = np.asarray(contra, dtype=object)
    has_c = pd.notna(contra) & (event == "fill")
    # legs: every event for its owner, and each fill once more for its contra (other side)
    key_codes, _ = pd.factorize(np.concatenate([key, key[has_c], want_key]), sort=False)
    name_codes, names = pd.factorize(np.concatenate([participant, contra[has_c], want_name]), sort=False)
    m = n + int(has_c.sum())
    pair = key_codes.astype(np.int64) * len(names) + name_codes
    upair, inv = np.unique(pair, return_inverse=True)
    leg, want = inv[:m], inv[m:]
    U = len(upair)

    new_, cancel_ = event == "new", event == "cancel"
    is_new = np.concatenate([new_, np.zeros(m - n, dtype=bool)])
    is_cancel = np.concatenate([cancel_, np.zeros(m - n, dtype=bool)])
    is_fill = np.concatenate([event == "fill", np.ones(m - n, dtype=bool)])
    buy_owner = side == "B"
    buy = np.concatenate([buy_owner, ~buy_owner[has_c]])
    q = np.concatenate([qty, qty[has_c]]).astype(np.float64)
    px = np.concatenate([price, price[has_c]]).astype(np.float64)
    b = np.concatenate([bid, bid[has_c]]).astype(np.float64)
    a = np.concatenate([ask, ask[has_c]]).astype(np.float64)
    tick = tick_of(px)
    # + away from the market, - inside / through; to 1/100 tick (prices carry float noise)
    dist = np.round(np.where(buy, b - px, px - a) / tick, 2)

    st = np.zeros((U, N_STATS))

    def add(col: str, mask: np.ndarray, w: np.ndarray | None = None) -> None:
        st[:, _S[col]] = np.bincount(leg[mask], weights=None if w is None else w[mask], minlength=U)

    nb, ns = is_new & buy, is_new & ~buy
    add("buy_n", nb)
    add("buy_qty", nb, q)
    add("sell_n", ns)
    add("sell_qty", ns, q)
    at_mid = np.abs(px - (b + a) / 2) <= MID_TOLERANCE_TICKS * tick
    add("buy_mid", nb & at_mid)
    add("sell_mid", ns & at_mid)
    add("bought", is_fill & buy, q)
    add("sold", is_fill & ~buy, q)
    add("cancel_n", is_cancel)
    add("cancel_qty", is_cancel, q)
    for mask, near, far in ((nb, "buy_near", "buy_far"), (ns, "sell_near", "sell_far")):
        lo, hi = np.full(U, np.inf), np.full(U, -np.inf)
        np.minimum.at(lo, leg[mask], dist[mask])
        np.maximum.at(hi, leg[mask], dist[mask])
        has = np.isfinite(lo)
        st[has, _S[near]], st[has, _S[far]] = lo[has], hi[has]
    if order_id is not None:
        _cancel_times(st, key_codes[:n], np.asarray(order_id), new_, cancel_, np.asarray(ts, dtype=np.int64), leg[:n])
    return st[want]


def _cancel_times(st: np.ndarray, key_codes: np.ndarray, order_id: np.ndarray, is_new: np.ndarray,
                  is_cancel: np.ndarray, ts: np.ndarray, leg: np.ndarray) -> None:  # fmt: skip
    """cancel_timed / cancel_ms_max: each cancel paired with its order's first `new` (same
    key and order id) among the given events, when that was placed no later."""
    sel = np.flatnonzero(is_new | is_cancel)
    if not is_cancel.any():
        return
    oid = pd.factorize(order_id[sel])[0].astype(np.int64)
    _, order = np.unique(oid * (int(key_codes.max()) + 1) + key_codes[sel], return_inverse=True)
    placed = np.full(int(order.max()) + 1, np.iinfo(np.int64).max)  # first placement per order
    new = is_new[sel]
    np.minimum.at(placed, order[new], ts[sel][new])
    cancel = ~new
    t_cancel, t_new = ts[sel][cancel], placed[order[cancel]]
    timed = t_new <= t_cancel  # (never placed: int64 max, later than any cancel)
    who = leg[sel][cancel][timed]
    U = len(st)
    st[:, _S["cancel_timed"]] = np.bincount(who, minlength=U)
    ms = np.full(U, -np.inf)
    np.maximum.at(ms, who, (t_cancel[timed] - t_new[timed]) / 1e6)
    st[:, _S["cancel_ms_max"]] = np.where(np.isfinite(ms), ms, 0.0)


# (participant, pane start ms of each pane, float32 bytes [panes, N_STATS]): how the job
# carries an account from the window assembler to the decision stage, undecoded
PackedAccount = tuple[str, Sequence[int], bytes]


def unpack_accounts(packed: Iterable[PackedAccount]) -> tuple[tuple[str, int, tuple[float, ...]], ...]:
    """Packed accounts -> (participant, pane start ms, STATS rounded to 0.1) per pane.

    >>> stats = np.arange(2 * N_STATS, dtype=np.float32).reshape(2, N_STATS) / 3
    >>> rows = unpack_accounts([("P1", [0, 5000], stats.tobytes())])
    >>> [(n, t, v[:3]) for n, t, v in rows]
    [('P1', 0, (0.0, 0.3, 0.7)), ('P1', 5000, (5.3, 5.7, 6.0))]
    """
    out: list[tuple[str, int, tuple[float, ...]]] = []
    for name, pane_ms, stats in packed:
        rows = np.round(np.frombuffer(stats, dtype=np.float32).reshape(-1, N_STATS).astype(np.float64), 1).tolist()
        out += [(str(name), int(t), tuple(r)) for t, r in zip(pane_ms, rows, strict=True)]
    return tuple(out)


def vector(**values: float) -> np.ndarray:
    """A `STATS` vector from named values (the rest 0).

    >>> vector(buy_n=2)[:3].tolist()
    [2.0, 0.0, 0.0]
    """
    out = np.zeros(N_STATS)
    for name, v in values.items():
        out[_S[name]] = v
    return out


def merge(rows: Iterable[Sequence[float]]) -> np.ndarray:
    """The `STATS` of several panes of one participant as one vector (min / max where the
    side had orders, sums otherwise).

    >>> r1 = vector(buy_n=1, buy_qty=100, buy_near=2, buy_far=2, cancel_n=1, cancel_timed=1, cancel_ms_max=300)
    >>> r2 = vector(buy_n=2, buy_qty=200, buy_near=5, buy_far=7, bought=50)
    >>> m = merge([r1, r2]); [float(m[STATS.index(c)]) for c in ("buy_n", "buy_near", "buy_far", "bought", "cancel_ms_max")]
    [3.0, 2.0, 7.0, 50.0, 300.0]
    """
    m = np.asarray(list(rows), dtype=np.float64).reshape(-1, N_STATS)
    out = np.zeros(N_STATS)
    if not len(m):
        return out
    out[_SUM] = m[:, _SUM].sum(axis=0)
    for n_col, near, far in (("buy_n", "buy_near", "buy_far"), ("sell_n", "sell_near", "sell_far")):
        has = m[:, _S[n_col]] > 0
        if has.any():
            out[_S[near]], out[_S[far]] = m[has, _S[near]].min(), m[has, _S[far]].max()
    out[_S["cancel_ms_max"]] = m[:, _S["cancel_ms_max"]].max()
    return out


def _shares(x: float) -> str:
    return f"{x:,.0f}"


def _ticks(n: int) -> str:
    return f"{n} tick{'s' * (n != 1)}"


def _where(near: float, far: float, quote: str, away: str, toward: str) -> str:
    """Words for a range of signed tick distances from `quote` (+ = `away`).

    >>> _where(2, 7, "bid", "below", "above"), _where(0, 0, "bid", "below", "above")
    ('2-7 ticks below the bid', 'at the bid')
    >>> _where(-3, -1, "ask", "above", "below"), _where(-2, 4, "bid", "below", "above")
    ('1-3 ticks below the ask', 'from 2 ticks above to 4 ticks below the bid')
    """
    lo, hi = round(near), round(far)
    if lo == hi == 0:
        return f"at the {quote}"
    if lo >= 0:
        span = _ticks(lo) if lo == hi else f"{lo}-{hi} ticks"
        return f"{span} {away} the {quote}"
    if hi <= 0:
        span = _ticks(-hi) if lo == hi else f"{-hi}-{-lo} ticks"
        return f"{span} {toward} the {quote}"
    return f"from {_ticks(-lo)} {toward} to {_ticks(hi)} {away} the {quote}"


def _seconds(ms: float) -> str:
    return f"{ms:.0f} ms" if ms < 100 else f"{ms / 1000:.1f} s"


def account(stats: Sequence[float] | np.ndarray) -> str | None:
    """One line of what a participant did (`STATS`, e.g. `merge` of an evidence span's
    panes); None when it did nothing there.

    >>> account(vector()) is None
    True
    >>> account(vector(buy_n=6, buy_qty=34_000, buy_near=2, buy_far=7, sold=300, cancel_n=6, cancel_qty=34_000,
    ...                cancel_timed=6, cancel_ms_max=900))
    'placed 6 buy orders, 34,000 shares, 2-7 ticks below the bid; sold 300; cancelled all within 0.9 s'
    >>> account(vector(sell_n=40, sell_qty=4_000, sell_mid=40, cancel_n=40, cancel_qty=4_000, cancel_timed=31,
    ...                cancel_ms_max=4))
    'placed 40 sell orders, 4,000 shares, at the mid; cancelled all, 31 within 4 ms'
    """
    s = np.asarray(stats, dtype=np.float64)
    parts = []
    for side, quote, away, toward in (("buy", "bid", "below", "above"), ("sell", "ask", "above", "below")):
        n = int(s[_S[f"{side}_n"]])
        if n:
            if s[_S[f"{side}_mid"]] >= n:
                where = "at the mid"
            else:
                where = _where(s[_S[f"{side}_near"]], s[_S[f"{side}_far"]], quote, away, toward)
            parts.append(f"placed {n} {side} order{'s' * (n != 1)}, {_shares(s[_S[f'{side}_qty']])} shares, {where}")
    for col, verb in (("bought", "bought"), ("sold", "sold")):
        if s[_S[col]] > 0:
            parts.append(f"{verb} {_shares(s[_S[col]])}")
    n_cancel, timed = int(s[_S["cancel_n"]]), int(s[_S["cancel_timed"]])
    if n_cancel:
        placed = s[_S["buy_qty"]] + s[_S["sell_qty"]]  # "all": every share placed here was pulled
        what = "all" if placed and s[_S["cancel_qty"]] >= placed else f"{n_cancel} ({_shares(s[_S['cancel_qty']])} shares)"
        if timed == n_cancel:
            what += f" within {_seconds(s[_S['cancel_ms_max']])}"
        elif timed:
            what += f", {timed} within {_seconds(s[_S['cancel_ms_max']])}"
        parts.append(f"cancelled {what}")
    return "; ".join(parts) or None
