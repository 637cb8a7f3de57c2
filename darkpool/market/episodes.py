"""Scheduling of manipulation episodes: which pattern, where, when, how blatant.

Episodes are drawn until the manipulator rows reach the target anomaly count. Patterns
cycle through a shuffled order so even a tiny data set has every scenario; each episode
gets a budget of rows so the total lands close to the target. Episodes on one
instrument do not overlap when that can be avoided (so labels stay unambiguous).

Episodes are generated in batches (all episodes of one pattern in one numpy pass, see
batch.py) and then placed one by one, in schedule order, with scalar arithmetic only.
An episode of a batch is kept only if it is what drawing it alone would have given:
its budget, min(cap, rows still missing), did not cut it short.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from core.schemas import SCENARIOS
from darkpool.market.batch import Batch, Impacts
from darkpool.market.config import NS, SimConfig
from darkpool.market.events import NEW, Block, block, concat, take
from darkpool.market.flow import pick_venues
from darkpool.market.injectors import INJECTORS
from darkpool.market.nbbo import Impact
from darkpool.market.universe import Universe

MIN_BUDGET = 6  # rows; below this an episode is not worth drawing
PLACEMENT_TRIES = 12
ROWS_PER_EPISODE_GUESS = 100  # sizes the first batch; later batches use the mean seen so far
CLOSING = "marking_the_close"


@dataclass(frozen=True, eq=False)  # eq=False: hashed by identity
class _Drawn:
    """One batch of generated episodes; rows grouped by episode (`start`, `size`)."""

    names: list[str]
    rows: Block  # `episode` = index into the batch, on every row
    impacts: Impacts
    manipulators: np.ndarray  # (n, 2) participant indices, -1 = none
    inst: np.ndarray
    t0: np.ndarray
    intensity: np.ndarray
    budget: int
    start: np.ndarray  # first row of each episode
    size: np.ndarray  # rows of each episode
    ts_min: np.ndarray  # over all its rows
    ts_max: np.ndarray
    n_labeled: np.ndarray
    lab_min: np.ndarray  # over its manipulator rows
    lab_max: np.ndarray

    def segment(self, j: int) -> slice:
        return slice(int(self.start[j]), int(self.start[j] + self.size[j]))


@dataclass(frozen=True)
class _Placed:
    batch: _Drawn
    j: int  # episode in the batch
    inst: int
    shift: int  # ns added to every row
    keep: np.ndarray | None  # rows of its segment kept (None: all); rows before the open go
    start: int  # first / last manipulator row, after the shift
    end: int
    n: int  # manipulator rows


def _draw(cfg: SimConfig, rng: np.random.Generator, uni: Universe, inst_cdf: np.ndarray, names: list[str],
          budget: int, next_oid: list[int]) -> _Drawn:
    n = len(names)
    # Across the whole session (episodes running past the close are shifted back by
    # placement): a time-based train/val/test split needs every pattern in each part.
    t0 = cfg.open_ns + (rng.uniform(0.02, 0.97, n) * (cfg.close_ns - cfg.open_ns)).astype(np.int64)
    intensity = rng.uniform(0.05, 1.0, n)
    inst = _pick(inst_cdf, rng.random(n))
    venue = pick_venues(cfg, rng, n)
    scen = np.array([SCENARIOS.index(s) for s in names])
    blocks, pushes, manip = [], [], np.full((n, 2), -1, dtype=np.int64)
    for name, inject in INJECTORS.items():
        idx = np.flatnonzero(scen == SCENARIOS.index(name))
        if not len(idx):
            continue
        rows, imp, parts = inject(Batch(cfg, rng, uni, inst[idx], t0[idx], intensity[idx], venue[idx], budget,
                                        SCENARIOS.index(name), next_oid))
        blocks.append(dict(rows, episode=idx[rows["episode"]].astype(np.int32)))
        pushes.append(Impacts(idx[imp.ep], imp.t0, imp.t1, imp.logret, imp.revert, imp.revert_s, imp.spread_add))
        manip[idx] = parts
    rows = concat(blocks)
    rows = take(rows, np.argsort(rows["episode"], kind="stable"))
    size = np.bincount(rows["episode"], minlength=n)
    start = np.cumsum(size) - size
    lab = rows["label"] == 1
    ts = rows["ts"]
    big, small = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    impacts = Impacts(*(np.concatenate([getattr(p, f) for p in pushes]) for f in Impacts.__dataclass_fields__))
    return _Drawn(names, rows, impacts, manip, inst, t0, intensity, budget, start, size,
                  np.minimum.reduceat(ts, start), np.maximum.reduceat(ts, start),
                  np.bincount(rows["episode"][lab], minlength=n),
                  np.minimum.reduceat(np.where(lab, ts, big), start), np.maximum.reduceat(np.where(lab, ts, small), start))


def _pick(cdf: np.ndarray, u: np.ndarray | float) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, u), len(cdf) - 1)


class _Placement:
    """Where episodes go: no two on one instrument overlap when avoidable, one marked close per instrument."""

    def __init__(self, cfg: SimConfig, rng: np.random.Generator, p_inst: np.ndarray) -> None:
        self.cfg, self.rng, self.p_inst = cfg, rng, p_inst
        self.cdf = np.cumsum(p_inst)
        self.taken: dict[int, list[tuple[int, int]]] = {}  # instrument -> episode spans
        self.closes: list[int] = []  # instruments whose close is marked

    def _overlaps(self, inst: int, t0: int, t1: int) -> bool:
        return any(t0 <= e and s <= t1 for s, e in self.taken.get(inst, ()))

    def place(self, d: _Drawn, j: int) -> _Placed | None:
        cfg, rng = self.cfg, self.rng
        closing = d.names[j] == CLOSING
        cdf = self.cdf
        if closing:  # two closes marked on one instrument would be one episode: only free instruments
            free = np.ones(len(self.p_inst), dtype=bool)
            free[self.closes] = False
            if not free.any() or len(self.closes) >= self.cfg.marked_close_share * len(self.p_inst):
                return None
            cdf = np.cumsum(self.p_inst * free)
            cdf /= cdf[-1]
        placed = None
        # Generated once; on a clash it is moved (prices are relative to the NBBO, so any
        # instrument and time will do), not generated again. The close stays the close.
        for attempt in range(PLACEMENT_TRIES):
            inst = int(d.inst[j]) if attempt == 0 and not closing else int(_pick(cdf, rng.random()))
            shift = 0 if attempt == 0 or closing else \
                cfg.open_ns + int(rng.uniform(0.02, 0.97) * (cfg.close_ns - cfg.open_ns)) - int(d.t0[j])
            fit = _fit_session(cfg, d, j, inst, shift)
            if fit is None:
                continue
            placed = fit
            if not self._overlaps(inst, fit.start, fit.end):
                break
        if placed is not None:
            self.taken.setdefault(placed.inst, []).append((placed.start, placed.end))
            if closing:
                self.closes.append(placed.inst)
        return placed


def _fit_session(cfg: SimConfig, d: _Drawn, j: int, inst: int, shift: int) -> _Placed | None:
    """Shift an episode that runs past the close back into the session; drop what falls
    before the open (whole orders: no fill or cancel without its new). None if no
    manipulator row is left."""
    shift -= max(0, int(d.ts_max[j]) + shift - (cfg.close_ns - NS))
    if int(d.ts_min[j]) + shift >= cfg.open_ns:
        return _Placed(d, j, inst, shift, None, int(d.lab_min[j]) + shift, int(d.lab_max[j]) + shift, int(d.n_labeled[j]))
    seg = d.segment(j)
    ts, oid, ev = d.rows["ts"][seg] + shift, d.rows["oid"][seg], d.rows["ev"][seg]
    early = ts < cfg.open_ns
    keep = ~np.isin(oid, oid[early & (ev == NEW)]) & ~early
    lab = keep & (d.rows["label"][seg] == 1)
    if not lab.any():
        return None
    return _Placed(d, j, inst, shift, keep, int(ts[lab].min()), int(ts[lab].max()), int(lab.sum()))


class _Cycle:
    """Scenario names in shuffled rounds of all eight; names not used go back to the front."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng, self.queue = rng, deque()

    def take(self, n: int) -> list[str]:
        while len(self.queue) < n:
            self.queue.extend(self.rng.permutation(list(INJECTORS)))
        return [str(self.queue.popleft()) for _ in range(n)]

    def put_back(self, names: list[str]) -> None:
        self.queue.extendleft(reversed(names))


def _assemble(uni: Universe, placed: list[_Placed]) -> tuple[Block, list[Impact], dict[str, list]]:
    """The placed episodes' rows (moved, renumbered: episode id = order of placement), impacts, table rows."""
    rows: dict[str, list] = {k: [] for k in
                             ("episode_id", "scenario", "instrument", "participants", "start_ts", "end_ts", "n_events", "intensity")}
    blocks, impacts = [], []
    for d in dict.fromkeys(p.batch for p in placed):  # batches, in order
        mine = [(e, p) for e, p in enumerate(placed) if p.batch is d]
        n = len(d.names)
        final, inst, shift = np.full(n, -1), np.zeros(n, dtype=np.int32), np.zeros(n, dtype=np.int64)
        keep = np.zeros(len(d.rows["ts"]), dtype=bool)
        for e, p in mine:
            final[p.j], inst[p.j], shift[p.j] = e, p.inst, p.shift
            keep[d.segment(p.j)] = True if p.keep is None else p.keep
        b = take(d.rows, keep)
        ep = b["episode"]
        blocks.append(dict(b, ts=b["ts"] + shift[ep], inst=inst[ep],
                           episode=np.where(b["label"] == 1, final[ep], -1).astype(np.int32)))
        m = d.impacts
        for k in np.flatnonzero(final[m.ep] >= 0):
            j = int(m.ep[k])
            impacts.append(Impact(int(inst[j]), int(m.t0[k]) + int(shift[j]), int(m.t1[k]) + int(shift[j]),
                                  float(m.logret[k]), float(m.revert[k]), float(m.revert_s[k]), int(m.spread_add[k])))
    for e, p in enumerate(placed):
        d, j = p.batch, p.j
        parts = sorted({int(x) for x in d.manipulators[j] if x >= 0})
        for k, v in (("episode_id", e), ("scenario", d.names[j]), ("instrument", str(uni.symbols[p.inst])),
                     ("participants", [str(uni.part_names[x]) for x in parts]), ("start_ts", p.start),
                     ("end_ts", p.end), ("n_events", p.n), ("intensity", float(d.intensity[j]))):
            rows[k].append(v)
    return concat(blocks) if blocks else block(0), impacts, rows


def make_episodes(
    cfg: SimConfig, rng: np.random.Generator, uni: Universe, target_rows: int, next_oid: list[int]
) -> tuple[Block, list[Impact], dict[str, list]]:
    """Episode rows (manipulators and their victims), impacts, and the episodes table rows."""
    # Manipulation happens in thin names too, more than their share of volume.
    w = uni.episode_weight
    p_inst = w / w.sum()
    cap = max(20, target_rows // len(INJECTORS))
    cycle, where = _Cycle(rng), _Placement(cfg, rng, p_inst)
    placed: list[_Placed] = []
    total, failures, drawn_rows, drawn_eps = 0, 0, 0, 0
    while target_rows - total >= MIN_BUDGET:
        missing = target_rows - total
        per_episode = drawn_rows / drawn_eps if drawn_eps else ROWS_PER_EPISODE_GUESS
        names = cycle.take(int(np.ceil(1.1 * missing / per_episode)) + 1)
        d = _draw(cfg, rng, uni, where.cdf, names, min(cap, missing), next_oid)
        drawn_rows, drawn_eps = drawn_rows + int(d.n_labeled.sum()), drawn_eps + len(names)
        for j in range(len(names)):
            missing = target_rows - total
            if missing < MIN_BUDGET or (d.budget != min(cap, missing) and d.n_labeled[j] > missing):
                cycle.put_back(names[j:])  # its budget would have been smaller: draw it again
                break
            p = where.place(d, j)
            if p is None:  # no room for this pattern: go on with the next one
                failures += 1
                if failures > 4 * len(INJECTORS):
                    raise RuntimeError(f"cannot place manipulation episodes in this session ({cfg}); "
                                       "lower --anomaly-rate or use a longer --duration")
                continue
            failures = 0
            placed.append(p)
            total += p.n
    out, impacts, rows = _assemble(uni, placed)
    assert len(out["ts"]) == 0 or out["ts"].min() >= cfg.open_ns
    return out, impacts, rows
