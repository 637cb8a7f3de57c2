"""Scheduling of manipulation episodes: which pattern, where, when, how blatant.

Episodes are drawn until the manipulator rows reach the target anomaly count. Patterns
cycle through a shuffled order so even a tiny data set has every scenario; each episode
gets a budget of rows so the total lands close to the target. Episodes on one
instrument do not overlap when that can be avoided (so labels stay unambiguous).
"""

from __future__ import annotations

import numpy as np

from darkpool.market.config import NS, SimConfig
from darkpool.market.events import NEW, Block, concat, size, take
from darkpool.market.flow import pick_venues
from darkpool.market.injectors import INJECTORS, EpisodeCtx
from darkpool.market.nbbo import Impact
from darkpool.market.universe import TIER_ACTIVITY, Universe
from udfs.schemas import SCENARIOS

MIN_BUDGET = 6  # rows; below this an episode is not worth drawing
PLACEMENT_TRIES = 12


def _overlaps(taken: dict[int, list[tuple[int, int]]], inst: int, t0: int, t1: int) -> bool:
    return any(t0 <= e and s <= t1 for s, e in taken.get(inst, ()))


def _fit_session(cfg: SimConfig, b: Block, impacts: list[Impact]) -> tuple[Block, list[Impact]]:
    """Shift an episode that runs past the close back into the session; drop what falls before the open."""
    last = int(b["ts"].max())
    shift = max(0, last - (cfg.close_ns - NS))
    if shift:
        b = dict(b, ts=b["ts"] - shift)
        impacts = [Impact(m.inst, m.t0 - shift, m.t1 - shift, m.logret, m.revert, m.revert_s, m.spread_add)
                   for m in impacts]
    early = b["ts"] < cfg.open_ns
    if not early.any():
        return b, impacts
    # drop whole orders that would start before the open (no fill or cancel without its new)
    keep = ~np.isin(b["oid"], b["oid"][early & (b["ev"] == NEW)]) & ~early
    return take(b, keep), impacts


def _pick(cdf: np.ndarray, rng: np.random.Generator) -> int:
    return min(int(np.searchsorted(cdf, rng.random())), len(cdf) - 1)


def _move(b: Block, impacts: list[Impact], inst: int, shift: int) -> tuple[Block, list[Impact]]:
    """The same episode on another instrument and/or `shift` ns later."""
    if shift == 0 and inst == int(b["inst"][0]):
        return b, impacts
    moved = dict(b, ts=b["ts"] + shift, inst=np.full(len(b["ts"]), inst, dtype=b["inst"].dtype))
    return moved, [Impact(inst, m.t0 + shift, m.t1 + shift, m.logret, m.revert, m.revert_s, m.spread_add)
                   for m in impacts]


def make_episodes(
    cfg: SimConfig, rng: np.random.Generator, uni: Universe, target_rows: int, next_oid: list[int]
) -> tuple[Block, list[Impact], dict[str, list]]:
    """Episode rows (manipulators and their victims), impacts, and the episodes table rows."""
    # Manipulation happens in thin names too, somewhat more than their share of volume.
    w = TIER_ACTIVITY[uni.tier] ** 0.75
    p_inst = w / w.sum()
    cap = max(20, target_rows // len(INJECTORS))
    names = list(INJECTORS)
    blocks: list[Block] = []
    impacts: list[Impact] = []
    taken: dict[int, list[tuple[int, int]]] = {}  # instrument -> episode spans
    rows: dict[str, list] = {k: [] for k in
                             ("episode_id", "scenario", "instrument", "participants", "start_ts", "end_ts", "n_events", "intensity")}
    total, order, failures = 0, [], 0
    taken_close: list[tuple[int, int, int]] = []
    dur = cfg.close_ns - cfg.open_ns
    while target_rows - total >= MIN_BUDGET:
        if not order:
            order = list(rng.permutation(names))
        scen = order.pop()
        ep = len(rows["episode_id"])
        placed = None
        # Two closes marked on one instrument would be one episode: only free instruments.
        free = np.ones(uni.n_inst, dtype=bool)
        if scen == "marking_the_close":
            free[[i for i, *_ in taken_close]] = False
        if free.any():
            p = np.cumsum(p_inst * free)
            p /= p[-1]
            # Across the whole session (episodes running past the close are shifted back by
            # _fit_session): a time-based train/val/test split needs every pattern in each part.
            t0 = cfg.open_ns + int(rng.uniform(0.02, 0.97) * dur)
            ctx = EpisodeCtx(cfg, rng, uni, _pick(p, rng), t0, float(rng.uniform(0.05, 1.0)),
                             min(cap, target_rows - total), SCENARIOS.index(scen), ep,
                             int(pick_venues(cfg, rng, 1)[0]), next_oid)
            b0, imp0, parts = INJECTORS[scen](ctx)
            # Generated once; on a clash it is moved (prices are relative to the NBBO, so any
            # instrument and time will do), not generated again. The close stays the close.
            for attempt in range(PLACEMENT_TRIES):
                inst = ctx.inst if attempt == 0 else _pick(p, rng)
                shift = 0 if attempt == 0 or scen == "marking_the_close" else \
                    cfg.open_ns + int(rng.uniform(0.02, 0.97) * dur) - ctx.t0
                b, imp = _fit_session(cfg, *_move(b0, imp0, inst, shift))
                manip = b["label"] == 1
                if not manip.any():
                    continue
                start, end = int(b["ts"][manip].min()), int(b["ts"][manip].max())
                placed = (inst, b, imp, parts, start, end, int(manip.sum()))
                if not _overlaps(taken, inst, start, end):
                    break
        if placed is None:  # no room for this pattern: go on with the next one
            failures += 1
            if failures > 4 * len(names):
                raise RuntimeError(f"cannot place manipulation episodes in this session ({cfg}); "
                                   "lower --anomaly-rate or use a longer --duration")
            continue
        failures = 0
        inst, b, imp, parts, start, end, n = placed
        taken.setdefault(inst, []).append((start, end))
        if scen == "marking_the_close":
            taken_close.append((inst, start, end))
        blocks.append(b)
        impacts += imp
        total += n
        for k, v in (("episode_id", ep), ("scenario", scen), ("instrument", str(uni.symbols[inst])),
                     ("participants", [str(uni.part_names[p]) for p in parts]), ("start_ts", start),
                     ("end_ts", end), ("n_events", n), ("intensity", ctx.intensity)):
            rows[k].append(v)
    out = concat(blocks)
    assert size(out) == 0 or out["ts"].min() >= cfg.open_ns
    return out, impacts, rows
