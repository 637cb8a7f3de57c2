"""Each instrument's own normal, per pane channel: the model sees levels as deviations.

Why: the raw level channels (event, cancel and fill counts, spreads, fill sizes,
participant counts) differ by orders of magnitude between instruments and venues. A
model that learned one market's levels sees another market's ordinary flow as abuse
(measured on real NASDAQ order messages: a busy, cancel-heavy instrument was flagged in
every window for an hour). So each level channel enters the model as a robust z-score
against the *instrument's own* recent history; the channels that carry meaning on their
own (a fill outside the NBBO, a self-cross, a front-running ratio, imbalances, time of
day) stay absolute (`RELATIVE_CHANNELS` lists the converted ones).

The normal, per instrument (`PaneNormal`, pure; the job keeps it in keyed state, training
recomputes it in the same pass over time with the same code: `normals_for_windows`):

* a winsorized EWMA of mean and mean absolute deviation per channel (the arithmetic of
  `core.thresholds.ChannelNormals`), with a half-life of `HALF_LIFE_S` of event time
  (in panes of the job's slide: `core.config.WindowConfig.panes_in`);
* learned from the panes *with events* only, and only once a pane has left every
  window (the window ending at pane e is judged against the panes <= e - T): a window
  is never compared with itself;
* each residual is clipped at `WINSOR_C` sigmas before it is learned, so an episode
  cannot drag the normal along: a one-minute episode moves a channel's mean by at most
  k x alpha x 3 sigma ~ 0.03 sigma, whatever the slide (k = panes a minute, alpha =
  1 - 0.5 ** (1 / half-life in panes), so k x alpha ~ ln 2 / 60);
* after `IDLE_S` of event time without events the normal starts afresh, as the
  decision stage's state does.

Warm-up: until the normal has learned `WARMUP_PANES` panes the relative channels are 0
("as usual"): the first T + WARMUP_PANES active panes of an instrument (a sample size,
not a span of time: 3 minutes of a busy instrument at the default slide) are scored on
the absolute channels alone; the decision stage's own warm-up covers that time. An
empty pane's relative channels are 0 as well (the `pane_active` channel tells the model
the pane was empty).

z = (x - mean) / max(1.2533 * mad, SIGMA_FLOOR[channel]), clipped to +-Z_CLIP.

>>> import numpy as np
>>> from core.channels import N_PANE_CHANNELS
>>> n = PaneNormal.fresh()
>>> for v in np.linspace(1.0, 2.0, WARMUP_PANES):
...     n.fold(np.full(N_PANE_CHANNELS, v))
>>> mean, scale, ready = n.snapshot()
>>> i = RELATIVE_CHANNELS.index("log_events")
>>> bool(ready), round(float(mean[i]), 3), round(float(scale[i]), 3)
(True, 1.5, 0.339)
"""

from __future__ import annotations

import functools

import numpy as np

from core.channels import PANE_CHANNELS
from core.config import DEFAULT_WINDOW, panes_in
from core.thresholds import ChannelNormals

# (pane channel, the smallest sigma a z is divided by, in the channel's unit)
_RELATIVE_SPEC: tuple[tuple[str, float], ...] = (
    ("ret_mid_bps", 0.5),
    ("fill_dev_hs", 0.05),
    ("mid_vol_bps", 0.25),
    ("spread_bps", 0.25),
    ("log_volume", 0.1),
    ("log_mean_fill", 0.1),
    ("log_max_fill", 0.1),
    ("block_count", 0.1),
    ("hidden_share", 0.02),
    ("log_events", 0.1),
    ("gap_median_ms", 0.1),
    ("burst_100ms", 0.1),
    ("log_new", 0.1),
    ("log_cancel", 0.1),
    ("log_fill", 0.1),
    ("cancel_fill_ratio", 0.1),
    ("top_cancel_ratio", 0.02),
    ("top_volume_share", 0.02),
    ("participant_hhi", 0.02),
    ("log_participants", 0.1),
)
RELATIVE_CHANNELS: tuple[str, ...] = tuple(name for name, _ in _RELATIVE_SPEC)
REL_INDEX = np.array([PANE_CHANNELS.index(c) for c in RELATIVE_CHANNELS])  # into a pane row
SIGMA_FLOOR = np.array([floor for _, floor in _RELATIVE_SPEC])
HALF_LIFE_S = 3600  # the normal's memory, seconds of event time
IDLE_S = 3600  # an instrument silent this long (event time) starts a fresh normal
WINSOR_C = 3.0  # residuals clipped at +- this many sigmas before they are learned
WARMUP_PANES = 24  # active panes learned before the relative channels are used (a sample size)
DEFAULT_SLIDE_S = DEFAULT_WINDOW.slide_s  # the pane length of callers that give none


@functools.lru_cache(maxsize=16)
def alpha(slide_s: float = DEFAULT_SLIDE_S) -> float:
    """EWMA weight of one pane of `slide_s` seconds: a half-life of HALF_LIFE_S."""
    return 1.0 - 0.5 ** (1.0 / panes_in(HALF_LIFE_S, slide_s))


def idle_panes(slide_s: float = DEFAULT_SLIDE_S) -> int:
    """Panes of `slide_s` seconds without events after which the normal starts afresh."""
    return panes_in(IDLE_S, slide_s)


ALPHA = alpha()  # at the default geometry
IDLE_PANES = idle_panes()  # at the default geometry
Z_CLIP = 8.0  # |z| beyond this carries no more information
SURPRISE_TOP = 2  # a pane's surprise = mean |z| of its this-many most surprising channels


class PaneNormal:
    """One instrument's normal of the relative pane channels (see the module docstring)."""

    def __init__(self, est: ChannelNormals, slide_s: float = DEFAULT_SLIDE_S):
        self.est = est
        self.alpha = alpha(slide_s)  # per pane: the half-life stays HALF_LIFE_S of event time

    @classmethod
    def fresh(cls, slide_s: float = DEFAULT_SLIDE_S) -> PaneNormal:
        return cls(ChannelNormals.empty(len(RELATIVE_CHANNELS)), slide_s)

    @property
    def learned(self) -> int:
        return int(self.est.n.max()) if len(self.est) else 0

    def fold(self, pane_row: np.ndarray) -> None:
        """Learn one active pane's raw row (float32 [N_PANE_CHANNELS]) that left every window."""
        self.est.update(np.asarray(pane_row, dtype=np.float64)[REL_INDEX], self.alpha, WINSOR_C)

    def snapshot(self) -> tuple[np.ndarray, np.ndarray, bool]:
        """(mean, scale, ready): what a window is judged against now."""
        scale = np.maximum(1.2533 * self.est.mad, SIGMA_FLOOR)
        return self.est.mean.copy(), scale, self.learned >= WARMUP_PANES

    def to_state(self) -> bytes:
        """Exact, compact bytes for keyed state: n, then mean, then mad (little-endian)."""
        e = self.est
        return e.n.astype("<i8").tobytes() + e.mean.astype("<f8").tobytes() + e.mad.astype("<f8").tobytes()

    @classmethod
    def from_state(cls, data: bytes, slide_s: float = DEFAULT_SLIDE_S) -> PaneNormal:
        k = len(RELATIVE_CHANNELS)
        if len(data) != 24 * k:  # a channel list of another version: learn afresh
            return cls.fresh(slide_s)
        n = np.frombuffer(data[: 8 * k], dtype="<i8").astype(np.int64)
        mean = np.frombuffer(data[8 * k : 16 * k], dtype="<f8").astype(np.float64)
        mad = np.frombuffer(data[16 * k :], dtype="<f8").astype(np.float64)
        return cls(ChannelNormals(n, mean, mad), slide_s)


class PaneNormals:
    """The normals of a batch of instruments at once: [k, R] arrays, one numpy pass per
    fold round instead of one `PaneNormal` (a dozen small numpy calls) per instrument.
    The arithmetic is element by element, so every instrument's floats equal its own
    `PaneNormal`'s (tests/unit/test_job_parts.py checks the windows against training's).

    >>> one, two = PaneNormal.fresh(), PaneNormal.fresh()
    >>> rows = np.random.default_rng(0).random((30, len(PANE_CHANNELS)), dtype=np.float32)
    >>> for r in rows: one.fold(r)
    >>> batch = PaneNormals.from_states([one.to_state(), None])
    >>> batch.fold([0, 1], rows[:2].astype(np.float64)); one.fold(rows[0]); two.fold(rows[1])
    >>> batch.states() == [one.to_state(), two.to_state()]
    True
    >>> [bool(r) for r in batch.snapshot()[2]]  # 31 panes learned, 1
    [True, False]
    """

    def __init__(self, n: np.ndarray, mean: np.ndarray, mad: np.ndarray, slide_s: float = DEFAULT_SLIDE_S):
        self.n, self.mean, self.mad = n, mean, mad
        self.alpha = alpha(slide_s)

    @classmethod
    def from_states(cls, states: list[bytes | None], slide_s: float = DEFAULT_SLIDE_S) -> PaneNormals:
        """From `PaneNormal.to_state` bytes per instrument (None, or another channel
        list's bytes: a fresh normal)."""
        k = len(RELATIVE_CHANNELS)
        n, mean, mad = np.zeros((len(states), k), dtype=np.int64), np.zeros((len(states), k)), np.zeros((len(states), k))
        for i, data in enumerate(states):
            if data is not None and len(data) == 24 * k:
                n[i] = np.frombuffer(data[: 8 * k], dtype="<i8")
                mean[i] = np.frombuffer(data[8 * k : 16 * k], dtype="<f8")
                mad[i] = np.frombuffer(data[16 * k :], dtype="<f8")
        return cls(n, mean, mad, slide_s)

    def fold(self, rows: list[int], pane_rows: np.ndarray) -> None:
        """Instruments `rows` each learn one raw pane row (float64 [len(rows), N_PANE_CHANNELS])."""
        est = ChannelNormals(self.n[rows], self.mean[rows], self.mad[rows])
        est.update(pane_rows[:, REL_INDEX], self.alpha, WINSOR_C)
        self.n[rows], self.mean[rows], self.mad[rows] = est.n, est.mean, est.mad

    def snapshot(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mean [k, R], scale [k, R], ready [k]): `PaneNormal.snapshot` of each instrument."""
        scale = np.maximum(1.2533 * self.mad, SIGMA_FLOOR)
        ready = self.n.max(axis=1, initial=0) >= WARMUP_PANES
        return self.mean.copy(), scale, ready

    def states(self) -> list[bytes]:
        """`PaneNormal.to_state` bytes of each instrument."""
        n, mean, mad = self.n.astype("<i8"), self.mean.astype("<f8"), self.mad.astype("<f8")
        return [n[i].tobytes() + mean[i].tobytes() + mad[i].tobytes() for i in range(len(n))]


def due_to_fold(buffered: list[int], pane: int, n_buckets: int) -> list[int]:
    """Buffered pane indices that no window ending at `pane` or later contains, ascending."""
    return sorted(p for p in buffered if p <= pane - n_buckets)


def is_stale(last_pane: int | None, pane: int, slide_s: float = DEFAULT_SLIDE_S) -> bool:
    """True when the instrument was silent long enough that its normal starts afresh."""
    return last_pane is not None and pane - last_pane > idle_panes(slide_s)


def normals_for_windows(panes: np.ndarray, X: np.ndarray, n_buckets: int, slide_s: float = DEFAULT_SLIDE_S
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """The normal each window of ONE instrument is judged against (training's pass).

    `panes` [P] ascending active pane indices (panes of `slide_s` seconds), `X` [P, F_raw]
    their raw rows. Returns mean [P, R], scale [P, R], ready [P] for the windows ending at
    those panes: the same sequence of `fold`s the job's assembler makes
    (udfs/assembler.py), so equal floats.
    """
    P, R = len(panes), len(RELATIVE_CHANNELS)
    mean, scale, ready = np.zeros((P, R)), np.ones((P, R)), np.zeros(P, dtype=bool)
    normal, nxt, last = PaneNormal.fresh(slide_s), 0, None
    for i, pane in enumerate(panes.tolist()):
        if is_stale(last, pane, slide_s):
            normal, nxt = PaneNormal.fresh(slide_s), i  # the buffered panes are dropped unlearned
        while nxt < i and panes[nxt] <= pane - n_buckets:
            normal.fold(X[nxt])
            nxt += 1
        mean[i], scale[i], ready[i] = normal.snapshot()
        last = pane
    return mean, scale, ready


def relative_z(raw: np.ndarray, mean: np.ndarray, scale: np.ndarray, ready: np.ndarray) -> np.ndarray:
    """raw panes [N, T, F_raw] + each window's normal -> z [N, T, R] (0: empty pane or warm-up)."""
    x = raw[:, :, REL_INDEX].astype(np.float64)
    z = np.clip((x - mean[:, None, :]) / scale[:, None, :], -Z_CLIP, Z_CLIP)
    active = raw[:, :, PANE_CHANNELS.index("log_events")] > 0
    return np.where(active[:, :, None] & ready[:, None, None], z, 0.0)


def pane_surprise(z: np.ndarray) -> np.ndarray:
    """Per pane, the mean |z| of its `SURPRISE_TOP` most surprising channels: [N, T, R] -> [N, T]."""
    a = np.sort(np.abs(z), axis=-1)
    return a[..., -SURPRISE_TOP:].mean(axis=-1)
