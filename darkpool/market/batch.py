"""Many episodes of one pattern at once: ragged numpy arrays instead of a Python call per episode.

A `Batch` holds per-episode parameters (instrument, nominal start, intensity, venue);
an injector draws every episode's rows with one numpy call per ingredient. Rows know
their episode through `ep` (index into the batch), which also goes into the block's
`episode` column of *every* row, victims included, so that placement can move an
episode as a whole; episodes.py turns it into the final episode id of manipulator rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from darkpool.market.config import NS, SimConfig
from darkpool.market.events import (
    CANCEL,
    NEW,
    PK_COPY,
    PK_INSIDE,
    PK_LIMIT,
    Block,
    block,
    group_cumsum,
)
from darkpool.market.universe import TYPES, Universe, pick_contra

P_HIDDEN_ORDER = 0.36  # share of non-displayed orders in normal flow (flow.HIDDEN_P mix)
P_ODD_LOT = 0.08  # ... and of odd-lot sizes, so neither column singles manipulators out


def ragged(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of consecutive groups of the given sizes: (group of each row, position in its group)."""
    counts = np.asarray(counts, dtype=np.int64)
    group = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return group, np.arange(len(group)) - starts[group]


def first_of(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """First value of each group (groups are consecutive runs of the given sizes, none empty)."""
    return values[np.cumsum(counts) - counts]


def last_of(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Last value of each group (groups are consecutive runs of the given sizes, none empty)."""
    return values[np.cumsum(counts) - 1]


def sign(side: np.ndarray) -> np.ndarray:
    return np.where(side == 0, 1, -1)  # BUY = 0


@dataclass(frozen=True)
class Impacts:
    """Price pressure of episodes on their lit market, one entry per push (see nbbo.Impact)."""

    ep: np.ndarray  # episode (index into the batch)
    t0: np.ndarray  # ns, start of the push
    t1: np.ndarray  # ns, end of the push
    logret: np.ndarray
    revert: np.ndarray
    revert_s: np.ndarray
    spread_add: np.ndarray

    @staticmethod
    def of(ep, t0, t1, logret, revert=0.0, revert_s=120.0, spread_add=0) -> Impacts:
        """Scalars broadcast to the number of pushes."""
        n = len(ep)
        full = [np.broadcast_to(np.asarray(v), n) for v in (t0, t1, logret, revert, revert_s, spread_add)]
        return Impacts(np.asarray(ep), *full)

    @staticmethod
    def none() -> Impacts:
        return Impacts.of(np.zeros(0, dtype=np.int64), 0, 0, 0.0)


@dataclass
class Batch:
    cfg: SimConfig
    rng: np.random.Generator
    uni: Universe
    inst: np.ndarray  # per episode: instrument
    t0: np.ndarray  # per episode: nominal start, ns
    intensity: np.ndarray  # per episode: 1 blatant .. ~0 subtle
    venue: np.ndarray  # per episode
    budget: int  # most manipulator rows any episode of the batch may have
    scen: int  # index into SCENARIOS
    next_oid: list[int]  # shared counter, [next free internal order id]

    @property
    def n(self) -> int:
        return len(self.t0)

    def oids(self, n: int) -> np.ndarray:
        start = self.next_oid[0]
        self.next_oid[0] += n
        return np.arange(start, start + n, dtype=np.int64)

    def participant(self, type_name: str | None = None) -> np.ndarray:
        """A manipulator per episode: of any type (uniformly) or the given one, by activity within the type."""
        n = self.n
        t = self.rng.integers(len(TYPES), size=n) if type_name is None else np.full(n, TYPES.index(type_name))
        u = self.rng.random(n)
        out = np.empty(n, dtype=np.int32)
        for k, (members, cdf) in enumerate(zip(self.uni.type_members, self.uni.type_cdf, strict=True)):
            m = t == k
            out[m] = members[np.minimum(np.searchsorted(cdf, u[m]), len(members) - 1)]
        return out

    def orders(self, ep: np.ndarray, ts, part, side, qty, pv, *, label: bool = True, hidden=None) -> Block:
        """`new` rows of fresh orders of episodes `ep` (one per row); non-displayed as often
        as normal orders unless `hidden` says otherwise."""
        n = len(ep)
        if hidden is None:
            hidden = self.rng.random(n) < P_HIDDEN_ORDER
        return block(n, ts=np.asarray(ts, dtype=np.int64), inst=self.inst[ep], venue=self.venue[ep], ev=NEW,
                     oid=self.oids(n), part=part, side=side, pk=PK_LIMIT, pv=pv, qty=qty, hidden=hidden, episode=ep,
                     **self._tag(label))

    def follow(self, new: Block, dt_ns, ev: int, *, pv=0.0, pk=PK_INSIDE, qty=None, contra=None,
               hidden=None, label: bool = True) -> Block:
        """One fill or cancel per order in `new`, `dt_ns` (at least 1 us) after it."""
        n = len(new["ts"])
        if ev == CANCEL:
            pk, contra = PK_COPY, -1
            hidden = new["hidden"] if hidden is None else hidden
        elif contra is None:
            contra = pick_contra(self.uni, self.rng, new["part"])
        if hidden is None:  # fills: as in normal flow, likelier against a hidden order's side
            hidden = self.rng.random(n) < 0.35 + 0.4 * new["hidden"]
        return block(
            n, ts=new["ts"] + np.maximum(1000, np.asarray(dt_ns, dtype=np.int64)), inst=new["inst"],
            venue=new["venue"], ev=ev, oid=new["oid"], part=new["part"], side=new["side"], pk=pk, pv=pv,
            qty=new["qty"] if qty is None else qty, contra=contra, hidden=hidden, episode=new["episode"],
            **self._tag(label),
        )

    def _tag(self, label: bool) -> dict[str, int]:
        return {"label": 1, "scen": self.scen} if label else {}

    def delays(self, mean_s, n: int) -> np.ndarray:
        """Independent exponential delays (ns, at least 1 us); `mean_s` a scalar or one per row."""
        return (self.rng.exponential(mean_s, size=n) * NS).astype(np.int64) + 1000

    def gaps(self, mean_s, counts: np.ndarray) -> np.ndarray:
        """Increasing offsets (ns) within each group of `counts` rows, exponential gaps of the given mean."""
        return group_cumsum(self.delays(mean_s, int(np.sum(counts))), np.asarray(counts))

    def lots(self, lo, hi, n: int) -> np.ndarray:
        """Round lots in [lo, hi) hundreds (scalars or per row), odd lots as often as in normal flow."""
        q = 100 * self.rng.integers(lo, hi, size=n)
        odd = self.rng.random(n) < P_ODD_LOT
        q[odd] += self.rng.integers(1, 100, size=int(odd.sum()))
        return q
