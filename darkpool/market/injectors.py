"""The eight manipulation patterns, one injector each.

An injector gets a `Batch` of episodes of its pattern (per episode: instrument, start,
intensity 0 subtle .. 1 blatant; and an event budget) and returns all their rows at once,
the price impacts they have on the lit market, and their manipulators. Manipulator rows
carry label 1 and the scenario; rows of innocent parties inside an episode (the victim
block of front running, contras) stay normal. Prices are relative to the NBBO (see
events.py), resolved later. Each episode is drawn as it would be alone (its own counts,
gaps and sizes); the batch only shares the numpy calls (see batch.py).

Every pattern is built from ingredients normal flow also has (new, cancel, fills at or
near the mid, blocks, same-firm crosses); what gives it away is the *combination* and
timing, stronger with intensity. Only `off_market_print` prints outside the NBBO, and
its subtle prints sit one tick outside.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from darkpool.market.batch import Batch, Impacts, first_of, last_of, ragged, sign
from darkpool.market.config import NS
from darkpool.market.events import BUY, CANCEL, FILL, PK_OFF, Block, concat, group_cumsum, take
from darkpool.market.universe import other_account

# rows, pushes on the lit market, manipulators per episode ((n, 2), -1 = none)
Result = tuple[Block, Impacts, np.ndarray]


def _whole(x: np.ndarray) -> np.ndarray:
    """int(x) of non-negative floats, elementwise."""
    return x.astype(np.int64)


def _manipulators(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    return np.stack([a, np.full(len(a), -1) if b is None else b], axis=1)


def wash_trade(c: Batch) -> Result:
    """Round trips between accounts of one beneficial owner (or colluding firms), net flat."""
    i, rng = c.intensity, c.rng
    rounds = np.maximum(1, np.minimum(3 + _whole(25 * i), c.budget // 3))
    ep, k = ragged(rounds)
    m = len(ep)
    a = c.participant()
    mode = rng.choice(3, size=c.n, p=[0.6, 0.1, 0.3])  # other account / same account / other firm
    b = np.choose(mode, [other_account(c.uni, rng, a), a, c.participant()])
    t = c.t0[ep] + c.gaps(5 + 40 * (1 - i[ep]), rounds)
    side_a = k % 2  # A buys, then sells it back, ...
    base = c.lots(10, 200, c.n)  # one size per episode, varied less the more blatant
    qty = np.maximum(100, np.rint(base[ep] * (1 + 0.4 * (1 - i[ep]) * rng.uniform(-1, 1, m)) / 100) * 100)
    na = c.orders(ep, t, a[ep], side_a, qty, np.where(side_a == BUY, 1, -1))
    nb = c.orders(ep, t + c.delays(0.3 * (1.5 - i[ep]), m), b[ep], 1 - side_a, qty, np.where(side_a == BUY, -1, 1))
    fill = c.follow(na, nb["ts"] - na["ts"] + rng.integers(1, 50, m) * 1_000_000, FILL, contra=b[ep])
    return concat([na, nb, fill]), Impacts.none(), _manipulators(a, b)


def spoofing_layering(c: Batch) -> Result:
    """Layers of large orders on one side, a small genuine fill on the other, layers cancelled."""
    i, rng = c.intensity, c.rng
    layers = 2 + _whole(6 * i)
    cycles = np.maximum(1, np.minimum(1 + _whole(5 * i), c.budget // (2 * layers + 2)))
    part, spoof = c.participant(), rng.integers(0, 2, c.n)
    s = sign(spoof)
    cyc_ep, _ = ragged(cycles)  # one row per cycle
    per_cycle = layers[cyc_ep]
    lay_cyc, lay_no = ragged(per_cycle)  # one row per layer order
    lay_ep = cyc_ep[lay_cyc]
    il, ic = i[lay_ep], i[cyc_ep]
    n_lay, n_cyc = len(lay_ep), len(cyc_ep)

    # Offsets from each cycle's start: layers go in, the genuine order follows and fills,
    # then the layers are pulled; the next cycle starts after a pause.
    lay_off = group_cumsum(c.delays(0.05 + 0.5 * (1 - il), n_lay), per_cycle)
    gen_off = last_of(lay_off, per_cycle) + c.delays(1.0, n_cyc)
    fill_off = gen_off + c.delays(0.5, n_cyc)
    cancel_off = fill_off[lay_cyc] + group_cumsum(c.delays(0.3 + 3 * (1 - il), n_lay), per_cycle)
    length = last_of(cancel_off, per_cycle) + c.delays(20 + 100 * (1 - ic), n_cyc)
    start = c.t0[cyc_ep] + group_cumsum(length, cycles) - length

    lay = c.orders(lay_ep, start[lay_cyc] + lay_off, part[lay_ep], spoof[lay_ep],
                   c.lots(20, 200, n_lay) * (0.5 + il), -s[lay_ep] * (1 + lay_no))
    gen = c.orders(cyc_ep, start + gen_off, part[cyc_ep], 1 - spoof[cyc_ep], c.lots(2, 20, n_cyc), s[cyc_ep])
    gfill = c.follow(gen, fill_off - gen_off, FILL, pv=s[cyc_ep] * 0.5)  # sells above / buys below the mid
    cancel = c.follow(lay, start[lay_cyc] + cancel_off - lay["ts"], CANCEL)
    push = Impacts.of(cyc_ep, start + first_of(lay_off, per_cycle), start + fill_off,
                      s[cyc_ep] * 0.0004 * (0.3 + ic), 0.8, 60)
    return concat([lay, gen, gfill, cancel]), push, _manipulators(part)


def quote_stuffing(c: Batch) -> Result:
    """A burst of orders cancelled within milliseconds, degrading the quote."""
    i, rng = c.intensity, c.rng
    n = np.maximum(3, np.minimum(_whole(40 + 460 * i), c.budget // 2))
    span = 1 + 30 * (1 - i)
    part = np.where(rng.random(c.n) < 0.7, c.participant("HFT"), c.participant())
    ep, _ = ragged(n)
    m = len(ep)
    new = c.orders(ep, c.t0[ep] + (rng.uniform(0, span[ep]) * NS).astype(np.int64), part[ep],
                   rng.integers(0, 2, m), c.lots(1, 3, m), rng.integers(-2, 3, m))
    cancel = c.follow(new, rng.exponential(0.002 + 0.05 * (1 - i[ep])) * NS, CANCEL)
    # blatant bursts degrade the lit quote by a tick; subtle ones leave no trace there
    spread = Impacts.of(np.arange(c.n), c.t0, c.t0 + (span * NS).astype(np.int64), 0.0,
                        spread_add=(i > 0.5).astype(np.int64))
    return concat([new, cancel]), spread, _manipulators(part)


def momentum_ignition(c: Batch) -> Result:
    """Quiet accumulation, a rapid run of aggressive same-side fills, then selling into the move."""
    i, rng = c.intensity, c.rng
    part, side = c.participant(), rng.integers(0, 2, c.n)
    s = sign(side)
    acc, unwind = 2 + rng.integers(0, 3, c.n), 2 + _whole(4 * i)
    run = np.maximum(1, np.minimum(5 + _whole(25 * i), c.budget // 2 - acc - unwind))
    phases = np.stack([acc, run, unwind], axis=1).ravel()  # accumulate, run, unwind
    grp, _ = ragged(phases)
    ep, ph = grp // 3, grp % 3
    m, ie = len(ep), i[ep]
    # One clock per episode: the gaps of the three phases, with a minute's pause before the run.
    gap = c.delays(np.choose(ph, [30 + 60 * (1 - ie), 0.2 + 2 * (1 - ie), 5 + 25 * (1 - ie)]), m)
    gap[first_of(np.arange(m), phases)[1::3]] += 60 * NS
    t = c.t0[ep] + group_cumsum(gap, acc + run + unwind)
    qty = c.lots(np.array([5, 2, 5])[ph], np.array([30, 20, 40])[ph], m)
    new = c.orders(ep, t, part[ep], np.where(ph == 2, 1 - side[ep], side[ep]), qty,
                   np.choose(ph, [s[ep], 3 * s[ep], -s[ep]]))
    dt = np.choose(ph, [c.delays(1, m), rng.integers(1, 30, m) * 1_000_000, c.delays(0.5, m)])
    fill = c.follow(new, dt, FILL, pv=np.choose(ph, [np.zeros(m), s[ep] * (0.5 + 0.5 * ie), -s[ep] * 0.5]))
    t_run = t[ph == 1]
    push = Impacts.of(np.arange(c.n), first_of(t_run, run), last_of(t_run, run) + 1, s * (0.001 + 0.008 * i), 0.7, 300)
    return concat([new, fill]), push, _manipulators(part)


def pinging(c: Batch) -> Result:
    """Small probing orders hunting hidden liquidity, then a large order where it was found."""
    i, rng = c.intensity, c.rng
    probes = np.maximum(2, np.minimum(10 + _whole(50 * i), (c.budget - 3) // 2))
    part = c.participant()
    ep, _ = ragged(probes)
    m = len(ep)
    qty = np.where(rng.random(m) < 0.5, 100, rng.integers(1, 100, m))
    side = rng.integers(0, 2, m)
    new = c.orders(ep, c.t0[ep] + c.gaps(0.1 + 3 * (1 - i[ep]), probes), part[ep], side, qty, sign(side))
    hit = rng.random(m) < 0.35
    dt = c.delays(0.005, m)
    fill = c.follow(take(new, hit), dt[hit], FILL, hidden=True)
    miss = c.follow(take(new, ~hit), dt[~hit], CANCEL)
    # the big order goes to the side that found most hidden liquidity (ties: buy); no hit: the first probe's side
    hits = np.bincount(ep * 2 + side, weights=hit, minlength=2 * c.n).reshape(c.n, 2)
    big_side = np.where(hits.sum(axis=1) > 0, hits.argmax(axis=1), first_of(side, probes))
    every = np.arange(c.n)
    big = c.orders(every, last_of(new["ts"], probes) + c.delays(1 + 9 * (1 - i), c.n), part, big_side,
                   c.lots(100, 1000, c.n), sign(big_side))
    k = rng.integers(1, 4, c.n)
    rep = np.repeat(every, k)
    bfill = c.follow(take(big, rep), c.gaps(2.0, k), FILL, qty=np.maximum(1, big["qty"] // k)[rep], hidden=True)
    return concat([new, fill, miss, big, bfill]), Impacts.none(), _manipulators(part)


def off_market_print(c: Batch) -> Result:
    """Crosses printed outside the NBBO between colluders: one tick out (subtle) to percents."""
    i, rng = c.intensity, c.rng
    k = np.maximum(1, np.minimum(1 + _whole(4 * i), c.budget // 3))
    a = c.participant()
    b = np.where(rng.random(c.n) < 0.3, other_account(c.uni, rng, a), c.participant())
    ep, _ = ragged(k)
    m = len(ep)
    side = rng.integers(0, 2, m)
    s = sign(side)
    frac = i[ep] ** 3 * 0.03 * rng.uniform(0.5, 1, m)  # of the mid: ~1 tick (subtle) .. 3% (blatant)
    ticks_out = 2 + frac * c.uni.price0[c.inst[ep]] / c.cfg.tick
    t = c.t0[ep] + c.gaps(30 + 270 * (1 - i[ep]), k)
    qty = c.lots(20, 500, m)
    na = c.orders(ep, t, a[ep], side, qty, s * ticks_out)
    nb = c.orders(ep, t + c.delays(0.2, m), b[ep], 1 - side, qty, -s * ticks_out)
    fill = c.follow(na, nb["ts"] - na["ts"] + 1_000_000, FILL, pk=PK_OFF, pv=s * frac, contra=b[ep])
    return concat([na, nb, fill]), Impacts.none(), _manipulators(a, b)


def marking_the_close(c: Batch) -> Result:
    """Orders bunched ever tighter into the last minutes, printing at the far touch."""
    i, rng = c.intensity, c.rng
    n = np.maximum(1, np.minimum(5 + _whole(25 * i), c.budget // 2))
    ep, _ = ragged(n)
    m = len(ep)
    window_s = 120 + 600 * (1 - i)
    close = c.cfg.close_ns
    t = close - int(2 * NS) - ((1 - rng.uniform(0, 1, m)) ** 2 * window_s[ep] * NS).astype(np.int64)
    part, side = c.participant(), (rng.random(c.n) < 0.3).astype(np.int64)
    s = sign(side)
    new = c.orders(ep, t, part[ep], side[ep], c.lots(5, 50, m), s[ep] * 2)
    fill = c.follow(new, rng.integers(1, 200, m) * 1_000_000, FILL, pv=s[ep] * (0.4 + 0.6 * i[ep]))
    push = Impacts.of(np.arange(c.n), np.minimum.reduceat(t, np.cumsum(n) - n), close, s * (0.001 + 0.006 * i))
    return concat([new, fill]), push, _manipulators(part)


def front_running(c: Batch) -> Result:
    """A broker trades ahead of a client block on the same side, then unwinds after it fills."""
    i, rng = c.intensity, c.rng
    part, victim, side = c.participant("ALGO"), c.participant("INST"), rng.integers(0, 2, c.n)
    s = sign(side)
    unwind = 1 + rng.integers(0, 3, c.n)
    ahead = np.maximum(1, np.minimum(2 + _whole(8 * i), c.budget // 2 - unwind))
    lead_s = 5 + 60 * (1 - i) * rng.uniform(0.5, 1, c.n)
    tb = c.t0 + (lead_s * NS).astype(np.int64)
    block_qty = c.lots(200, 3000, c.n)
    every = np.arange(c.n)
    vnew = c.orders(every, tb, victim, side, block_qty, s * 2, label=False, hidden=np.ones(c.n, dtype=bool))
    vk = rng.integers(2, 5, c.n)
    rep = np.repeat(every, vk)
    vfill = c.follow(take(vnew, rep), c.gaps(10, vk), FILL, qty=np.maximum(100, block_qty // vk // 100 * 100)[rep],
                     label=False)
    block_done = last_of(vfill["ts"], vk)  # the client's last fill (gaps increase)
    qty_each = np.maximum(100, _whole(block_qty * (0.02 + 0.1 * i) / ahead) // 100 * 100)
    grp, _ = ragged(np.stack([ahead, unwind], axis=1).ravel())  # trades ahead, then the unwind
    ep, out = grp // 2, grp % 2 == 1
    m = len(ep)
    t = tb[ep] - (rng.uniform(0.05, 1, m) * lead_s[ep] * NS).astype(np.int64)
    t[out] = block_done[ep[out]] + c.gaps(5, unwind)
    new = c.orders(ep, t, part[ep], np.where(out, 1 - side[ep], side[ep]),
                   np.where(out, qty_each[ep] * ahead[ep] // unwind[ep], qty_each[ep]), np.where(out, -s[ep], s[ep]))
    dt = np.where(out, rng.integers(5, 500, m), rng.integers(5, 300, m)) * 1_000_000
    fill = c.follow(new, dt, FILL, pv=np.where(out, -s[ep] * 0.5, 0.0))
    push = Impacts.of(every, tb, block_done + 1, s * (0.0005 + 0.003 * i), 0.5, 300)
    return concat([vnew, vfill, new, fill]), push, _manipulators(part)


INJECTORS: dict[str, Callable[[Batch], Result]] = {
    f.__name__: f
    for f in (wash_trade, spoofing_layering, quote_stuffing, momentum_ignition, pinging,
              off_market_print, marking_the_close, front_running)
}


# ---- the alternative rendition (`darkpool inject --rendition alt`) ---------------------------
# The same eight behaviours drawn with other parameters: other sizes, distances, timings,
# counts and orderings, each chosen independently of the rendition above. A detector that
# learned one rendition and is graded on the other shows whether it learned the behaviour
# or the simulator's numbers. Each keeps its pattern's defining shape (the docstrings say
# what that is and what changed).


def wash_trade_alt(c: Batch) -> Result:
    """Round trips between accounts of one owner, net flat: an even number of rounds, the
    other account placing first and selling first, bigger and fewer trades seconds apart."""
    i, rng = c.intensity, c.rng
    rounds = 2 * np.maximum(1, np.minimum(1 + _whole(5 * i), c.budget // 6))  # even: net flat
    ep, k = ragged(rounds)
    m = len(ep)
    a = c.participant()
    mode = rng.choice(3, size=c.n, p=[0.3, 0.2, 0.5])  # other account / same account / other firm
    b = np.choose(mode, [other_account(c.uni, rng, a), a, c.participant()])
    t = c.t0[ep] + c.gaps(2 + 8 * (1 - i[ep]), rounds)
    side_b = 1 - k % 2  # B sells first, then buys it back, ...
    qty = c.lots(50, 500, c.n)[ep]  # one size per episode, repeated exactly
    nb = c.orders(ep, t, b[ep], side_b, qty, np.where(side_b == BUY, 2, -2))
    na = c.orders(ep, t + (rng.uniform(0.005, 0.05, m) * NS).astype(np.int64), a[ep], 1 - side_b, qty,
                  np.where(side_b == BUY, -2, 2))
    fill = c.follow(nb, na["ts"] - nb["ts"] + rng.integers(1, 5, m) * 1_000_000, FILL, contra=a[ep])
    return concat([nb, na, fill]), Impacts.none(), _manipulators(a, b)


def spoofing_layering_alt(c: Batch) -> Result:
    """Layers on one side, a fill on the other, layers pulled: here the genuine order rests
    first, fewer but bigger layers go in at once every 2 ticks from 2 ticks out, and all are
    pulled within a second of the fill, the farthest first; short pauses between cycles."""
    i, rng = c.intensity, c.rng
    layers = 3 + _whole(3 * i)
    cycles = np.maximum(1, np.minimum(2 + _whole(4 * i), c.budget // (2 * layers + 2)))
    part, spoof = c.participant(), rng.integers(0, 2, c.n)
    s = sign(spoof)
    cyc_ep, _ = ragged(cycles)
    per_cycle = layers[cyc_ep]
    lay_cyc, lay_no = ragged(per_cycle)
    lay_ep = cyc_ep[lay_cyc]
    ic = i[cyc_ep]
    n_lay, n_cyc = len(lay_ep), len(cyc_ep)

    gen_off = np.zeros(n_cyc, dtype=np.int64)  # the genuine order first ...
    lay_off = (rng.uniform(0.3, 1.5, n_cyc) * NS).astype(np.int64)[lay_cyc] + (
        lay_no * rng.uniform(0.005, 0.05, n_lay) * NS).astype(np.int64)  # ... then a burst of layers
    fill_off = last_of(lay_off, per_cycle) + (rng.uniform(0.05, 0.5, n_cyc) * NS).astype(np.int64)
    step = rng.uniform(0.01, 0.1, n_cyc)[lay_cyc]  # s; at most 6 layers: all pulled within 0.6 s
    cancel_off = fill_off[lay_cyc] + ((per_cycle[lay_cyc] - lay_no) * step * NS).astype(np.int64)  # far first
    length = cancel_off[np.cumsum(per_cycle) - per_cycle] + c.delays(5 + 30 * (1 - ic), n_cyc)
    start = c.t0[cyc_ep] + group_cumsum(length, cycles) - length

    gen = c.orders(cyc_ep, start + gen_off, part[cyc_ep], 1 - spoof[cyc_ep], c.lots(1, 10, n_cyc), s[cyc_ep])
    lay = c.orders(lay_ep, start[lay_cyc] + lay_off, part[lay_ep], spoof[lay_ep], c.lots(100, 600, n_lay),
                   -s[lay_ep] * (2 + 2 * lay_no))
    gfill = c.follow(gen, fill_off - gen_off, FILL, pv=s[cyc_ep] * 0.8)
    cancel = c.follow(lay, start[lay_cyc] + cancel_off - lay["ts"], CANCEL)
    push = Impacts.of(cyc_ep, start + first_of(lay_off, per_cycle), start + fill_off,
                      s[cyc_ep] * 0.0003 * (0.5 + ic), 0.9, 30)
    return concat([gen, lay, gfill, cancel]), push, _manipulators(part)


def quote_stuffing_alt(c: Batch) -> Result:
    """Orders cancelled within milliseconds, here in a few tight bursts of one side and one
    price each, single round lots, pulled 0.5-10 ms after they went in."""
    i, rng = c.intensity, c.rng
    n = np.maximum(3, np.minimum(_whole(30 + 300 * i), c.budget // 2))
    bursts = np.minimum(3 + rng.integers(0, 6, c.n), n)
    span = 0.5 + 10 * (1 - i)
    part = np.where(rng.random(c.n) < 0.5, c.participant("HFT"), c.participant("MM"))
    ep, k = ragged(n)
    m = len(ep)
    burst = k * bursts[ep] // n[ep]  # consecutive orders share a burst
    key = np.cumsum(bursts) - bursts  # first burst row of each episode
    b_start = rng.uniform(0, 1, int(bursts.sum()))
    b_side = rng.integers(0, 2, int(bursts.sum()))
    b_pv = rng.integers(-1, 2, int(bursts.sum()))
    row = key[ep] + burst
    t = c.t0[ep] + ((b_start[row] * span[ep] + (k % 50) * 0.002) * NS).astype(np.int64)
    new = c.orders(ep, t, part[ep], b_side[row], np.full(m, 100), b_pv[row])
    cancel = c.follow(new, (rng.uniform(0.0005, 0.01, m) * NS).astype(np.int64), CANCEL)
    spread = Impacts.of(np.arange(c.n), c.t0, c.t0 + (span * NS).astype(np.int64), 0.0,
                        spread_add=(i > 0.3).astype(np.int64))
    return concat([new, cancel]), spread, _manipulators(part)


def momentum_ignition_alt(c: Batch) -> Result:
    """Accumulate, run the price with aggressive same-side fills, sell into the move: here a
    short accumulation, a longer run of small orders fractions of a second apart, and an
    unwind in one to three big orders."""
    i, rng = c.intensity, c.rng
    part, side = c.participant(), rng.integers(0, 2, c.n)
    s = sign(side)
    acc, unwind = 1 + rng.integers(0, 2, c.n), 1 + _whole(2 * i)
    run = np.maximum(2, np.minimum(8 + _whole(30 * i), c.budget // 2 - acc - unwind))
    phases = np.stack([acc, run, unwind], axis=1).ravel()
    grp, _ = ragged(phases)
    ep, ph = grp // 3, grp % 3
    m, ie = len(ep), i[ep]
    gap = c.delays(np.choose(ph, [10 + 10 * (1 - ie), 0.05 + 0.5 * (1 - ie), 2 + 5 * (1 - ie)]), m)
    gap[first_of(np.arange(m), phases)[1::3]] += 20 * NS
    t = c.t0[ep] + group_cumsum(gap, acc + run + unwind)
    run_total = np.zeros(c.n)
    qty = c.lots(np.array([10, 1, 1])[ph], np.array([60, 10, 2])[ph], m)
    np.add.at(run_total, ep[ph == 1], qty[ph == 1])
    qty = np.where(ph == 2, np.maximum(100, (run_total[ep] / unwind[ep]) // 100 * 100).astype(np.int64), qty)
    new = c.orders(ep, t, part[ep], np.where(ph == 2, 1 - side[ep], side[ep]), qty,
                   np.choose(ph, [np.zeros(m), 2 * s[ep], -s[ep]]))
    dt = np.choose(ph, [c.delays(3, m), rng.integers(1, 10, m) * 1_000_000, c.delays(0.2, m)])
    fill = c.follow(new, dt, FILL, pv=np.choose(ph, [np.zeros(m), s[ep] * (0.7 + 0.3 * ie), -s[ep] * 0.7]))
    t_run = t[ph == 1]
    push = Impacts.of(np.arange(c.n), first_of(t_run, run), last_of(t_run, run) + 1, s * (0.002 + 0.006 * i), 0.8, 120)
    return concat([new, fill]), push, _manipulators(part)


def pinging_alt(c: Batch) -> Result:
    """Small probes hunting hidden liquidity, then a large order where it was found: here
    odd-lot probes at the mid on one side, faster, pulled in 1-3 ms, fewer hits, and the
    large order soon after, filled in more pieces."""
    i, rng = c.intensity, c.rng
    probes = np.maximum(2, np.minimum(6 + _whole(30 * i), (c.budget - 7) // 2))
    part, side0 = c.participant(), rng.integers(0, 2, c.n)
    ep, _ = ragged(probes)
    m = len(ep)
    side = side0[ep]
    new = c.orders(ep, c.t0[ep] + c.gaps(0.02 + 0.5 * (1 - i[ep]), probes), part[ep], side,
                   rng.integers(1, 50, m), np.zeros(m))
    hit = rng.random(m) < 0.2
    dt = (rng.uniform(0.001, 0.003, m) * NS).astype(np.int64)
    fill = c.follow(take(new, hit), dt[hit], FILL, hidden=True)
    miss = c.follow(take(new, ~hit), dt[~hit], CANCEL)
    every = np.arange(c.n)
    big = c.orders(every, last_of(new["ts"], probes) + (rng.uniform(0.2, 2.0, c.n) * NS).astype(np.int64), part,
                   side0, c.lots(50, 400, c.n), np.zeros(c.n))
    k = rng.integers(2, 7, c.n)
    rep = np.repeat(every, k)
    bfill = c.follow(take(big, rep), c.gaps(0.5, k), FILL, qty=np.maximum(1, big["qty"] // k)[rep], hidden=True)
    return concat([new, fill, miss, big, bfill]), Impacts.none(), _manipulators(part)


def off_market_print_alt(c: Batch) -> Result:
    """Crosses printed outside the NBBO between colluders: here the colluder's order rests
    first, blocks are bigger, and the distance grows more gently with intensity."""
    i, rng = c.intensity, c.rng
    k = np.maximum(1, np.minimum(2 + _whole(3 * i), c.budget // 3))
    a = c.participant()
    b = np.where(rng.random(c.n) < 0.5, other_account(c.uni, rng, a), c.participant())
    ep, _ = ragged(k)
    m = len(ep)
    side = rng.integers(0, 2, m)
    s = sign(side)
    frac = (0.1 + i[ep]) ** 2 * 0.01 * rng.uniform(0.5, 1, m)  # of the mid: ~0.01% .. 1.2%
    ticks_out = 1 + frac * c.uni.price0[c.inst[ep]] / c.cfg.tick
    t = c.t0[ep] + c.gaps(10 + 90 * (1 - i[ep]), k)
    qty = c.lots(100, 1000, m)
    nb = c.orders(ep, t, b[ep], 1 - side, qty, -s * ticks_out)
    na = c.orders(ep, t + c.delays(1.0, m), a[ep], side, qty, s * ticks_out)
    fill = c.follow(na, rng.integers(1, 20, m) * 1_000_000, FILL, pk=PK_OFF, pv=s * frac, contra=b[ep])
    return concat([nb, na, fill]), Impacts.none(), _manipulators(a, b)


def marking_the_close_alt(c: Batch) -> Result:
    """Aggressive orders bunched into the last minutes: here fewer, larger, more often
    selling, one tick through the mid, over a shorter stretch bunched harder at the end."""
    i, rng = c.intensity, c.rng
    n = np.maximum(1, np.minimum(3 + _whole(12 * i), c.budget // 2))
    ep, _ = ragged(n)
    m = len(ep)
    window_s = 60 + 300 * (1 - i)
    close = c.cfg.close_ns
    t = close - int(1 * NS) - ((1 - rng.uniform(0, 1, m)) ** 3 * window_s[ep] * NS).astype(np.int64)
    part, side = c.participant(), (rng.random(c.n) < 0.6).astype(np.int64)
    s = sign(side)
    new = c.orders(ep, t, part[ep], side[ep], c.lots(20, 120, m), s[ep] * 1)
    fill = c.follow(new, rng.integers(50, 1000, m) * 1_000_000, FILL, pv=s[ep] * (0.7 + 0.3 * i[ep]))
    push = Impacts.of(np.arange(c.n), np.minimum.reduceat(t, np.cumsum(n) - n), close, s * (0.002 + 0.004 * i))
    return concat([new, fill]), push, _manipulators(part)


def front_running_alt(c: Batch) -> Result:
    """A broker trades ahead of a client block on the same side, then unwinds: here fewer,
    larger trades in the last seconds before the block, the block filled in more pieces,
    and the unwind in one order."""
    i, rng = c.intensity, c.rng
    part, victim, side = c.participant("ALGO"), c.participant("INST"), rng.integers(0, 2, c.n)
    s = sign(side)
    unwind = np.ones(c.n, dtype=np.int64)
    ahead = np.maximum(1, np.minimum(1 + _whole(4 * i), c.budget // 2 - unwind))
    lead_s = 0.5 + 4.5 * (1 - i) * rng.uniform(0.5, 1, c.n)
    tb = c.t0 + (lead_s * NS).astype(np.int64)
    block_qty = c.lots(500, 5000, c.n)
    every = np.arange(c.n)
    vnew = c.orders(every, tb, victim, side, block_qty, s * 1, label=False, hidden=np.ones(c.n, dtype=bool))
    vk = rng.integers(3, 9, c.n)
    rep = np.repeat(every, vk)
    vfill = c.follow(take(vnew, rep), c.gaps(3, vk), FILL, qty=np.maximum(100, block_qty // vk // 100 * 100)[rep],
                     label=False)
    block_done = last_of(vfill["ts"], vk)
    qty_each = np.maximum(100, _whole(block_qty * (0.05 + 0.2 * i) / ahead) // 100 * 100)
    grp, _ = ragged(np.stack([ahead, unwind], axis=1).ravel())
    ep, out = grp // 2, grp % 2 == 1
    m = len(ep)
    t = tb[ep] - (rng.uniform(0.1, 0.9, m) * lead_s[ep] * NS).astype(np.int64)
    t[out] = block_done[ep[out]] + (rng.uniform(1, 20, int(out.sum())) * NS).astype(np.int64)
    new = c.orders(ep, t, part[ep], np.where(out, 1 - side[ep], side[ep]),
                   np.where(out, qty_each[ep] * ahead[ep], qty_each[ep]), np.where(out, -s[ep], 2 * s[ep]))
    dt = np.where(out, rng.integers(1, 100, m), rng.integers(1, 50, m)) * 1_000_000
    fill = c.follow(new, dt, FILL, pv=np.where(out, -s[ep] * 0.8, s[ep] * 0.8))
    push = Impacts.of(every, tb, block_done + 1, s * (0.001 + 0.004 * i), 0.6, 200)
    return concat([vnew, vfill, new, fill]), push, _manipulators(part)


ALT_INJECTORS: dict[str, Callable[[Batch], Result]] = {
    "wash_trade": wash_trade_alt, "spoofing_layering": spoofing_layering_alt, "quote_stuffing": quote_stuffing_alt,
    "momentum_ignition": momentum_ignition_alt, "pinging": pinging_alt, "off_market_print": off_market_print_alt,
    "marking_the_close": marking_the_close_alt, "front_running": front_running_alt,
}  # fmt: skip
# rendition name -> the injectors drawing it (`darkpool inject --rendition`)
RENDITIONS: dict[str, dict[str, Callable[[Batch], Result]]] = {"default": INJECTORS, "alt": ALT_INJECTORS}
