"""Normal (benign) order flow of the dark pool.

Orders arrive as a Hawkes-like cluster process: immigrants follow the intensity
tier x intraday U shape x regime, and every order spawns Poisson(BRANCH) children a few
seconds later, mostly from the same participant on the same side (a broker algo slicing
a parent, a market maker re-quoting), so arrivals are self-exciting and bursty.
Each order then lives its type's life: fills at or near the midpoint, partial fills,
cancels, or it rests until the close. Large blocks, heavy cancelling and same-firm
crosses are all part of normal flow.

Two flow styles, per instrument (Universe.lit): dark midpoint flow (limit prices a few
ticks around the mid, most fills at the midpoint) and lit-style flow as in a NASDAQ
book (orders at or just behind the touch, most cancelled within a second or so:
cancels outnumber fills ~18 to 1; fills at the touch). Classic instruments are dark.
"""

from __future__ import annotations

import numpy as np

from darkpool.market.config import NS, SimConfig
from darkpool.market.events import (
    BUY,
    CANCEL,
    FILL,
    NEW,
    PK_COPY,
    PK_INSIDE,
    PK_LIMIT,
    Block,
    assemble,
    group_cumsum,
)
from darkpool.market.nbbo import intraday_u
from darkpool.market.universe import (
    ORDER_TYPE_SHARE,
    REGIME_ACTIVITY,
    Universe,
    draw_senders,
    inverse_cdf,
    pick_contra,
)

# Per flow style (row 0 dark, row 1 lit) and participant type (columns in the order of
# universe.TYPES: MM, HFT, ALGO, INST).
TYPE_SHARE = ORDER_TYPE_SHARE  # share of immigrant orders
P_FILL = np.array([[0.25, 0.10, 0.55, 0.50], [0.03, 0.01, 0.07, 0.08]])  # order gets at least one fill
P_CANCEL = np.array([[0.70, 0.88, 0.35, 0.30], [0.96, 0.98, 0.90, 0.85]])  # ... else cancelled; the rest rests
EXTRA_FILLS = np.array([[0.1, 0.0, 0.6, 2.0], [0.1, 0.0, 0.3, 0.6]])  # mean fills per filled order minus one
P_PARTIAL = np.array([[0.2, 0.1, 0.3, 0.4], [0.3, 0.2, 0.4, 0.5]])  # filled orders that cancel a remainder
FILL_DELAY_S = np.array([[0.8, 0.05, 4.0, 25.0], [2.0, 0.5, 5.0, 20.0]])  # mean wait for each fill
CANCEL_DELAY_S = np.array([[1.5, 0.08, 20.0, 60.0], [0.8, 0.03, 3.0, 15.0]])  # mean wait for the cancel
HIDDEN_P = np.array([[0.2, 0.1, 0.5, 0.8], [0.02, 0.01, 0.1, 0.2]])  # order is non-displayed
LIT_BEHIND_P = 0.45  # lit orders: ticks behind the touch ~ geometric(this) - 1
VENUE_P = np.array([0.5, 0.3, 0.2])  # the first venue is the biggest

ARRIVAL_CELL_S = 10  # resolution of the arrival intensity
BRANCH = 0.55  # children per order (branching ratio < 1: stationary)
CHILD_DELAY_S = 3.0
P_CHILD_SAME = 0.75  # child comes from the same participant, same side
MAX_GENERATIONS = 8


def events_per_order(lit: bool = False) -> float:
    """Expected event rows per order (new + fills + cancels) of a flow style, to size the
    immigrant rate."""
    s = int(lit)
    per_type = 1 + P_FILL[s] * (1 + EXTRA_FILLS[s] + P_PARTIAL[s]) + P_CANCEL[s]
    return float(TYPE_SHARE @ per_type)


def pick_venues(cfg: SimConfig, rng: np.random.Generator, n: int) -> np.ndarray:
    nv = len(cfg.venues)
    p = VENUE_P[:nv] if nv <= len(VENUE_P) else np.ones(nv)
    return inverse_cdf(np.cumsum(p) / p.sum(), rng.random(n))


def order_sizes(rng: np.random.Generator, types: np.ndarray) -> np.ndarray:
    """Heavy-tailed order sizes by participant type, mostly round lots."""
    n = len(types)
    q = np.empty(n, dtype=np.int64)
    lots = {
        0: lambda m: 100 * rng.choice([1, 2, 3, 5], size=m, p=[0.4, 0.3, 0.2, 0.1]),
        1: lambda m: 100 * rng.geometric(0.6, size=m),
        2: lambda m: 100 * np.maximum(1, np.rint(rng.lognormal(np.log(3), 0.8, size=m))),
        3: lambda m: 100 * np.minimum(20_000, np.rint(20 * (1 + rng.pareto(1.2, size=m)))),
    }
    for t, draw_lots in lots.items():
        mask = types == t
        q[mask] = draw_lots(int(mask.sum()))
    odd = rng.random(n) < 0.05
    q[odd] = rng.integers(1, 100, size=int(odd.sum()))
    return q


def _arrivals(cfg: SimConfig, rng: np.random.Generator, uni: Universe, regime: np.ndarray,
              n_orders: float | np.ndarray) -> dict[str, np.ndarray]:
    """Order arrivals: columns ts, inst, part, side (only these: no full blocks to copy).
    `n_orders`: in all (classic: spread by tier activity) or per instrument (varied)."""
    # Intensity on a coarser grid than the NBBO (ARRIVAL_CELL_S): 20x fewer Poisson draws,
    # and activity does not need sub-second resolution.
    per = max(1, int(ARRIVAL_CELL_S * 1000 // cfg.grid_ms))
    while regime.shape[1] % per:
        per -= 1
    regime = regime[:, ::per]
    n_inst, n_cells = regime.shape
    cell_ns = cfg.grid_ms * per * NS // 1000
    u = intraday_u(cfg, n_cells * per)[::per]
    if np.ndim(n_orders):  # each instrument's own total; regimes and the U shape only move it in time
        shape = REGIME_ACTIVITY[regime] * u[None, :]
        lam = (shape * (np.asarray(n_orders) * (1 - BRANCH) / shape.sum(axis=1))[:, None]).ravel()
    else:
        activity = uni.activity[:, None] * REGIME_ACTIVITY[regime] * u[None, :]
        lam = activity.ravel() * (n_orders * (1 - BRANCH) / activity.sum())
    cell = np.repeat(np.arange(lam.size, dtype=np.int64), rng.poisson(lam))
    n = len(cell)
    ts = cfg.open_ns + (cell % n_cells) * cell_ns + rng.integers(0, cell_ns, size=n)
    inst = (cell // n_cells).astype(np.int32)
    gen = dict(ts=ts, inst=inst, part=draw_senders(uni, rng, inst), side=rng.integers(0, 2, size=n).astype(np.int8))
    out = [gen]
    for _ in range(MAX_GENERATIONS):
        kids = rng.poisson(BRANCH, size=len(gen["ts"]))
        if not kids.sum():
            break
        parent = np.repeat(np.arange(len(kids)), kids)
        m = len(parent)
        same = rng.random(m) < P_CHILD_SAME
        other = draw_senders(uni, rng, gen["inst"][parent])
        gen = dict(
            ts=gen["ts"][parent] + (rng.exponential(CHILD_DELAY_S, size=m) * NS).astype(np.int64) + 1,
            inst=gen["inst"][parent],
            part=np.where(same, gen["part"][parent], other),
            side=np.where(same, gen["side"][parent], rng.integers(0, 2, size=m).astype(np.int8)),
        )
        out.append(gen)
    return {c: np.concatenate([g[c] for g in out]) for c in out[0]}


def normal_flow(
    cfg: SimConfig, rng: np.random.Generator, uni: Universe, regime: np.ndarray, n_events: float, oid0: int
) -> Block:
    """About `n_events` benign event rows (new, fill, cancel), order ids from `oid0` on;
    varied instruments get shares of them in proportion to their event rates."""
    if uni.absolute_rates:
        per_order = np.where(uni.lit, events_per_order(lit=True), events_per_order())
        n_orders = n_events * uni.activity / uni.activity.sum() / per_order
    else:
        n_orders = n_events / events_per_order()
    orders = _arrivals(cfg, rng, uni, regime, n_orders)
    n = len(orders["ts"])
    t = uni.part_type[orders["part"]]
    lit = uni.lit[orders["inst"]]
    style = lit.astype(np.int64)
    qty = order_sizes(rng, t)
    sign = np.where(orders["side"] == BUY, 1, -1)
    common = dict(
        inst=orders["inst"],
        oid=oid0 + np.arange(n),
        part=orders["part"],
        side=orders["side"],
        venue=pick_venues(cfg, rng, n),
    )
    limit = sign * rng.integers(-2, 4, size=n)  # ticks from the mid
    if lit.any():  # lit: at the touch (half the instrument's spread from the mid) or just behind it
        half_spread = uni.spread_ticks[orders["inst"][lit]] / 2
        limit = limit.astype(np.float64)
        limit[lit] = -sign[lit] * (half_spread + rng.geometric(LIT_BEHIND_P, size=int(lit.sum())) - 1)
    hidden = rng.random(n) < HIDDEN_P[style, t]
    new = dict(ts=orders["ts"], ev=NEW, pk=PK_LIMIT, pv=limit, qty=qty, hidden=hidden, **common)

    u = rng.random(n)
    filled = u < P_FILL[style, t]
    cancelled = ~filled & (u < P_FILL[style, t] + P_CANCEL[style, t])
    partial = filled & (rng.random(n) < P_PARTIAL[style, t])

    # Fills: k per filled order, at increasing times, splitting (part of) the order size.
    k = np.where(filled, rng.geometric(1 / (1 + EXTRA_FILLS[style, t])), 0)
    fo = np.repeat(np.arange(n), k)
    kf = k[filled]
    delay = (rng.exponential(1.0, size=len(fo)) * FILL_DELAY_S[style[fo], t[fo]] * NS).astype(np.int64) + 1000
    fts = orders["ts"][fo] + group_cumsum(delay, kf)
    share = rng.exponential(1.0, size=len(fo))
    share /= np.bincount(fo, share, minlength=n)[fo]
    frac = np.where(partial, rng.uniform(0.2, 0.9, size=n), 1.0)
    fqty = np.floor(qty[fo] * frac[fo] * share).astype(np.int64)
    fqty = np.maximum(1, np.where(fqty >= 100, fqty // 100 * 100, fqty))
    fill_pv = np.where(rng.random(len(fo)) < 0.75, 0.0, rng.choice([-1.0, -0.5, 0.5, 1.0], size=len(fo)))
    at_mid = lit[fo] & (fill_pv == 0)
    fill_pv[at_mid] = -sign[fo][at_mid]  # lit: a resting order fills at its own touch
    fill = dict(
        ts=fts, ev=FILL, pk=PK_INSIDE, pv=fill_pv, qty=fqty,
        contra=pick_contra(uni, rng, orders["part"][fo], orders["inst"][fo]),
        hidden=rng.random(len(fo)) < 0.35 + 0.4 * hidden[fo],
        **{c: v[fo] for c, v in common.items()},
    )

    # Cancels: whole orders, and unfilled remainders of partially filled ones.
    last_ts = orders["ts"].copy()
    last_ts[np.flatnonzero(filled)] = fts[np.cumsum(kf) - 1]  # each filled order's last fill
    remainder = qty - np.bincount(fo, fqty, minlength=n)
    cx = np.flatnonzero(cancelled | (partial & (remainder > 0)))
    cdelay = (rng.exponential(1.0, size=len(cx)) * CANCEL_DELAY_S[style[cx], t[cx]] * NS).astype(np.int64) + 1000
    cancel = dict(
        ts=last_ts[cx] + cdelay, ev=CANCEL, pk=PK_COPY,
        qty=np.where(cancelled[cx], qty[cx], remainder[cx]),
        hidden=hidden[cx], **{c: v[cx] for c, v in common.items()},
    )
    return assemble([(n, new), (len(fo), fill), (len(cx), cancel)])
