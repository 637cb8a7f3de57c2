"""The eight manipulation patterns, one injector each.

An injector gets an `EpisodeCtx` (instrument, start, intensity 0 subtle .. 1 blatant,
an event budget) and returns the episode's rows, the price impact it has on the lit
market, and its manipulators. Manipulator rows carry label 1 and the scenario; rows of
innocent parties inside the episode (the victim block of front running, contras) stay
normal. Prices are relative to the NBBO (see events.py), resolved later.

Every pattern is built from ingredients normal flow also has (new, cancel, fills at or
near the mid, blocks, same-firm crosses); what gives it away is the *combination* and
timing, stronger with intensity. Only `off_market_print` prints outside the NBBO, and
its subtle prints sit one tick outside.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
    PK_OFF,
    Block,
    block,
    concat,
)
from darkpool.market.nbbo import Impact
from darkpool.market.universe import TYPES, Universe, other_account, pick_contra

P_HIDDEN_ORDER = 0.36  # share of non-displayed orders in normal flow (flow.HIDDEN_P mix)
P_ODD_LOT = 0.08  # ... and of odd-lot sizes, so neither column singles manipulators out


@dataclass
class EpisodeCtx:
    cfg: SimConfig
    rng: np.random.Generator
    uni: Universe
    inst: int
    t0: int  # ns, nominal start
    intensity: float  # 1 blatant .. ~0 subtle
    budget: int  # most manipulator rows this episode may have
    scen: int  # index into SCENARIOS
    episode: int
    venue: int
    next_oid: list[int]  # shared counter, [next free internal order id]

    def oids(self, n: int) -> np.ndarray:
        start = self.next_oid[0]
        self.next_oid[0] += n
        return np.arange(start, start + n, dtype=np.int64)

    def participant(self, type_name: str | None = None) -> int:
        """A manipulator: any type (uniformly) or the given one, by activity within the type."""
        t = int(self.rng.integers(len(TYPES))) if type_name is None else TYPES.index(type_name)
        members, cdf = self.uni.type_members[t], self.uni.type_cdf[t]
        return int(members[min(int(np.searchsorted(cdf, self.rng.random())), len(members) - 1)])

    def orders(self, ts, part, side, qty, pv, *, label: bool = True, hidden=None) -> Block:
        """`new` rows of fresh orders (arrays or scalars broadcast to len(ts)); non-displayed
        as often as normal orders unless `hidden` says otherwise."""
        ts = np.asarray(ts, dtype=np.int64)
        n = len(ts)
        if hidden is None:
            hidden = self.rng.random(n) < P_HIDDEN_ORDER
        return block(n, ts=ts, inst=self.inst, venue=self.venue, ev=NEW, oid=self.oids(n), part=part,
                     side=side, pk=PK_LIMIT, pv=pv, qty=qty, hidden=hidden, **self._tag(label))

    def follow(self, new: Block, dt_ns, ev: int, *, pv=0.0, pk=PK_INSIDE, qty=None, contra=None,
               hidden=None, label: bool = True) -> Block:
        """One fill or cancel per order in `new`, `dt_ns` after it."""
        n = len(new["ts"])
        if ev == CANCEL:
            pk, contra = PK_COPY, -1
            hidden = new["hidden"] if hidden is None else hidden
        elif contra is None:
            contra = pick_contra(self.uni, self.rng, new["part"])
        if hidden is None:  # fills: as in normal flow, likelier against a hidden order's side
            hidden = self.rng.random(n) < 0.35 + 0.4 * new["hidden"]
        return block(
            n, ts=new["ts"] + np.maximum(1000, np.asarray(dt_ns, dtype=np.int64)), inst=self.inst,
            venue=self.venue, ev=ev, oid=new["oid"], part=new["part"], side=new["side"], pk=pk, pv=pv,
            qty=new["qty"] if qty is None else qty, contra=contra,
            hidden=hidden, **self._tag(label),
        )

    def _tag(self, label: bool) -> dict[str, int]:
        return {"label": 1, "scen": self.scen, "episode": self.episode} if label else {}

    def gaps(self, mean_s: float, n: int) -> np.ndarray:
        """Increasing offsets (ns) of n events with exponential gaps of the given mean."""
        return np.cumsum((self.rng.exponential(mean_s, size=n) * NS).astype(np.int64) + 1000)

    def delays(self, mean_s: float, n: int) -> np.ndarray:
        """Independent exponential delays (ns, at least 1 us) of the given mean."""
        return (self.rng.exponential(mean_s, size=n) * NS).astype(np.int64) + 1000

    def lots(self, lo: int, hi: int, n: int) -> np.ndarray:
        """Round lots in [lo, hi) hundreds, with odd lots as often as in normal flow."""
        q = 100 * self.rng.integers(lo, hi, size=n)
        odd = self.rng.random(n) < P_ODD_LOT
        q[odd] += self.rng.integers(1, 100, size=int(odd.sum()))
        return q


Result = tuple[Block, list[Impact], list[int]]


def _sign(side: int) -> int:
    return 1 if side == BUY else -1


def wash_trade(c: EpisodeCtx) -> Result:
    """Round trips between accounts of one beneficial owner (or colluding firms), net flat."""
    i, rng = c.intensity, c.rng
    rounds = max(1, min(3 + int(25 * i), c.budget // 3))
    a = c.participant()
    mode = rng.choice(3, p=[0.6, 0.1, 0.3])  # other account / same account / other firm
    b = [int(other_account(c.uni, rng, np.array([a]))[0]), a, c.participant()][mode]
    t = c.t0 + c.gaps(5 + 40 * (1 - i), rounds)
    side_a = np.arange(rounds) % 2  # A buys, then sells it back, ...
    qty = np.maximum(100, np.rint(c.lots(10, 200, 1) * (1 + 0.4 * (1 - i) * rng.uniform(-1, 1, rounds)) / 100) * 100)
    na = c.orders(t, a, side_a, qty, np.where(side_a == BUY, 1, -1))
    nb = c.orders(t + c.delays(0.3 * (1.5 - i), rounds), b, 1 - side_a, qty, np.where(side_a == BUY, -1, 1))
    fill = c.follow(na, nb["ts"] - na["ts"] + rng.integers(1, 50, rounds) * 1_000_000, FILL, contra=b)
    return concat([na, nb, fill]), [], sorted({a, b})


def spoofing_layering(c: EpisodeCtx) -> Result:
    """Layers of large orders on one side, a small genuine fill on the other, layers cancelled."""
    i, rng = c.intensity, c.rng
    layers = 2 + int(6 * i)
    cycles = max(1, min(1 + int(5 * i), c.budget // (2 * layers + 2)))
    part, spoof = c.participant(), int(rng.integers(2))
    s = _sign(spoof)

    def exp_ns(mean_s: float, shape: tuple[int, ...]) -> np.ndarray:
        return (rng.exponential(mean_s, size=shape) * NS).astype(np.int64) + 1000

    # All cycles at once, as offsets from each cycle's start: layers go in, the genuine
    # order follows and fills, then the layers are pulled; the next cycle starts after a pause.
    lay_off = np.cumsum(exp_ns(0.05 + 0.5 * (1 - i), (cycles, layers)), axis=1)
    gen_off = lay_off[:, -1] + exp_ns(1.0, (cycles,))
    fill_off = gen_off + exp_ns(0.5, (cycles,))
    cancel_off = fill_off[:, None] + np.cumsum(exp_ns(0.3 + 3 * (1 - i), (cycles, layers)), axis=1)
    length = cancel_off[:, -1] + exp_ns(20 + 100 * (1 - i), (cycles,))
    start = c.t0 + np.concatenate([[0], np.cumsum(length[:-1])])

    lay = c.orders((start[:, None] + lay_off).ravel(), part, spoof, c.lots(20, 200, cycles * layers) * (0.5 + i),
                   np.tile(-s * (1 + np.arange(layers)), cycles))
    gen = c.orders(start + gen_off, part, 1 - spoof, c.lots(2, 20, cycles), s * 1)
    gfill = c.follow(gen, fill_off - gen_off, FILL, pv=s * 0.5)  # sells above / buys below the mid
    cancel = c.follow(lay, (start[:, None] + cancel_off).ravel() - lay["ts"], CANCEL)
    impacts = [Impact(c.inst, int(t0), int(t1), s * 0.0004 * (0.3 + i), 0.8, 60)
               for t0, t1 in zip(start + lay_off[:, 0], start + fill_off, strict=True)]
    return concat([lay, gen, gfill, cancel]), impacts, [part]


def quote_stuffing(c: EpisodeCtx) -> Result:
    """A burst of orders cancelled within milliseconds, degrading the quote."""
    i, rng = c.intensity, c.rng
    n = max(3, min(int(40 + 460 * i), c.budget // 2))
    span = 1 + 30 * (1 - i)
    part = c.participant("HFT" if rng.random() < 0.7 else None)
    new = c.orders(c.t0 + np.sort((rng.uniform(0, span, n) * NS).astype(np.int64)), part,
                   rng.integers(0, 2, n), c.lots(1, 3, n), rng.integers(-2, 3, n))
    cancel = c.follow(new, rng.exponential(0.002 + 0.05 * (1 - i), n) * NS, CANCEL)
    # blatant bursts degrade the lit quote by a tick; subtle ones leave no trace there
    spread = Impact(c.inst, c.t0, c.t0 + int(span * NS), 0.0, spread_add=int(i > 0.5))
    return concat([new, cancel]), [spread], [part]


def momentum_ignition(c: EpisodeCtx) -> Result:
    """Quiet accumulation, a rapid run of aggressive same-side fills, then selling into the move."""
    i, rng = c.intensity, c.rng
    part, side = c.participant(), int(rng.integers(2))
    s = _sign(side)
    acc, unwind = 2 + int(rng.integers(0, 3)), 2 + int(4 * i)
    run = max(1, min(5 + int(25 * i), c.budget // 2 - acc - unwind))
    t_acc = c.t0 + c.gaps(30 + 60 * (1 - i), acc)
    t_run = t_acc[-1] + c.gaps(0.2 + 2 * (1 - i), run) + int(60 * NS)
    t_out = t_run[-1] + c.gaps(5 + 25 * (1 - i), unwind)
    # one block of orders and one of fills for the three phases (fewer, larger numpy calls)
    phase = np.repeat([0, 1, 2], [acc, run, unwind])  # accumulate, run, unwind
    qty = np.concatenate([c.lots(5, 30, acc), c.lots(2, 20, run), c.lots(5, 40, unwind)])
    new = c.orders(np.concatenate([t_acc, t_run, t_out]), part, np.where(phase == 2, 1 - side, side), qty,
                   np.array([s, s * 3, -s])[phase])
    dt = np.concatenate([c.delays(1, acc), rng.integers(1, 30, run) * 1_000_000, c.delays(0.5, unwind)])
    fill = c.follow(new, dt, FILL, pv=np.array([0.0, s * (0.5 + 0.5 * i), -s * 0.5])[phase])
    push = Impact(c.inst, int(t_run[0]), int(t_run[-1]) + 1, s * (0.001 + 0.008 * i), 0.7, 300)
    return concat([new, fill]), [push], [part]


def pinging(c: EpisodeCtx) -> Result:
    """Small probing orders hunting hidden liquidity, then a large order where it was found."""
    i, rng = c.intensity, c.rng
    probes = max(2, min(10 + int(50 * i), (c.budget - 3) // 2))
    part = c.participant()
    qty = np.where(rng.random(probes) < 0.5, 100, rng.integers(1, 100, probes))
    side = rng.integers(0, 2, probes)
    new = c.orders(c.t0 + c.gaps(0.1 + 3 * (1 - i), probes), part, side, qty, np.where(side == BUY, 1, -1))
    hit = rng.random(probes) < 0.35
    dt = c.delays(0.005, probes)
    fill = c.follow({k: v[hit] for k, v in new.items()}, dt[hit], FILL, hidden=True)
    miss = c.follow({k: v[~hit] for k, v in new.items()}, dt[~hit], CANCEL)
    big_side = int(np.bincount(side[hit], minlength=2).argmax()) if hit.any() else int(side[0])
    k = int(rng.integers(1, 4))
    big = c.orders(new["ts"][-1:] + c.gaps(1 + 9 * (1 - i), 1), part, big_side, c.lots(100, 1000, 1), _sign(big_side))
    bq = np.maximum(1, big["qty"][0] // k)
    bfill = c.follow({col: np.repeat(v, k) for col, v in big.items()}, c.gaps(2.0, k), FILL, qty=bq, hidden=True)
    return concat([new, fill, miss, big, bfill]), [], [part]


def off_market_print(c: EpisodeCtx) -> Result:
    """Crosses printed outside the NBBO between colluders: one tick out (subtle) to percents."""
    i, rng = c.intensity, c.rng
    k = max(1, min(1 + int(4 * i), c.budget // 3))
    a = c.participant()
    b = int(other_account(c.uni, rng, np.array([a]))[0]) if rng.random() < 0.3 else c.participant()
    side = rng.integers(0, 2, k)
    s = np.where(side == BUY, 1, -1)
    frac = i**3 * 0.03 * rng.uniform(0.5, 1, k)  # of the mid: ~1 tick (subtle) .. 3% (blatant)
    ticks_out = 2 + frac * c.uni.price0[c.inst] / c.cfg.tick
    t = c.t0 + c.gaps(30 + 270 * (1 - i), k)
    qty = c.lots(20, 500, k)
    na = c.orders(t, a, side, qty, s * ticks_out)
    nb = c.orders(t + c.delays(0.2, k), b, 1 - side, qty, -s * ticks_out)
    fill = c.follow(na, nb["ts"] - na["ts"] + 1_000_000, FILL, pk=PK_OFF, pv=s * frac, contra=b)
    return concat([na, nb, fill]), [], sorted({a, b})


def marking_the_close(c: EpisodeCtx) -> Result:
    """Orders bunched ever tighter into the last minutes, printing at the far touch."""
    i, rng = c.intensity, c.rng
    n = max(1, min(5 + int(25 * i), c.budget // 2))
    window_s = 120 + 600 * (1 - i)
    close = c.cfg.close_ns
    u = np.sort(rng.uniform(0, 1, n))
    t = close - int(2 * NS) - ((1 - u) ** 2 * window_s * NS).astype(np.int64)
    part, side = c.participant(), int(rng.random() < 0.3)
    s = _sign(side)
    new = c.orders(t, part, side, c.lots(5, 50, n), s * 2)
    fill = c.follow(new, rng.integers(1, 200, n) * 1_000_000, FILL, pv=s * (0.4 + 0.6 * i))
    push = Impact(c.inst, int(t[0]), close, s * (0.001 + 0.006 * i))
    return concat([new, fill]), [push], [part]


def front_running(c: EpisodeCtx) -> Result:
    """A broker trades ahead of a client block on the same side, then unwinds after it fills."""
    i, rng = c.intensity, c.rng
    part, victim, side = c.participant("ALGO"), c.participant("INST"), int(rng.integers(2))
    s = _sign(side)
    ahead, unwind = 2 + int(8 * i), 1 + int(rng.integers(0, 3))
    ahead = max(1, min(ahead, c.budget // 2 - unwind))
    lead_s = 5 + 60 * (1 - i) * rng.uniform(0.5, 1)
    tb = c.t0 + int(lead_s * NS)
    block_qty = c.lots(200, 3000, 1)
    vk = int(rng.integers(2, 5))
    vnew = c.orders(np.array([tb]), victim, side, block_qty, s * 2, label=False, hidden=True)
    vfill = c.follow({k: np.repeat(v, vk) for k, v in vnew.items()}, c.gaps(10, vk), FILL,
                     qty=np.maximum(100, block_qty[0] // vk // 100 * 100), label=False)
    qty_each = max(100, int(block_qty[0] * (0.02 + 0.1 * i) / ahead) // 100 * 100)
    t_ahead = tb - (np.sort(rng.uniform(0.05, 1, ahead))[::-1] * lead_s * NS).astype(np.int64)
    t_out = vfill["ts"].max() + c.gaps(5, unwind)
    out = np.repeat([False, True], [ahead, unwind])  # trades ahead, then the unwind
    new = c.orders(np.concatenate([t_ahead, t_out]), part, np.where(out, 1 - side, side),
                   np.where(out, qty_each * ahead // unwind, qty_each), np.where(out, -s, s))
    dt = np.concatenate([rng.integers(5, 300, ahead), rng.integers(5, 500, unwind)]) * 1_000_000
    fill = c.follow(new, dt, FILL, pv=np.where(out, -s * 0.5, 0.0))
    push = Impact(c.inst, tb, int(vfill["ts"].max()) + 1, s * (0.0005 + 0.003 * i), 0.5, 300)
    return concat([vnew, vfill, new, fill]), [push], [part]


INJECTORS: dict[str, Callable[[EpisodeCtx], Result]] = {
    f.__name__: f
    for f in (wash_trade, spoofing_layering, quote_stuffing, momentum_ignition, pinging,
              off_market_print, marking_the_close, front_running)
}
