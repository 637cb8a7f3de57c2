"""Per-instrument adaptive threshold: pure logic, no Flink (unit-tested on its own).

Score and decision are kept apart (river's `QuantileFilter` over a detector): the scorer
returns a score where high = anomalous; this module learns, per instrument, what its
*normal* scores look like and turns a score into a yes/no against a threshold.

How the threshold is made
-------------------------
* Baseline = a robust EWMA of the instrument's scores: mean and mean absolute deviation,
  with each residual winsorized at `winsor_c` sigmas first, so one odd window moves the
  baseline by a bounded amount. threshold = mean + k_sigma * sigma.
* Regime: the market is calmer or busier than usual. The instrument's own normal
  log-volatility and log-volume are tracked the same way; a window whose volatility
  or volume z-score is above `regime_high` is "active", both below `regime_low` "calm",
  otherwise "normal". Each regime has its own baseline (scores are naturally higher in
  busy markets), used once it has `regime_min` samples, else the instrument-wide one.
  Limit: a regime learns only from its unflagged windows, so a regime whose normal
  scores sit above the instrument-wide threshold cannot warm up (its windows alert).
* Warm-up: until `warmup_windows` windows were seen *and* `min_learned` were learned,
  the model's calibrated global threshold is used as is.
* The result is clamped to [floor_ratio, ceil_ratio] x global threshold (when the
  global threshold is > 0), so no instrument silently goes blind or trigger-happy.
* protect_anomaly_detector: `learn` is only called by the caller for windows that were
  *not* flagged and are outside an open episode (see udfs/coalesce.py), so flagged
  windows never pull the baseline up.

Example (seeded, exact):

>>> import random
>>> cfg = ThresholdConfig(warmup_windows=50, min_learned=50)
>>> b = Baseline()
>>> rng = random.Random(7)
>>> for _ in range(400):
...     b.learn(rng.gauss(1.0, 0.1), volatility=8.0, volume=1000.0, cfg=cfg)
>>> t = b.threshold(volatility=8.0, volume=1000.0, global_threshold=2.0, cfg=cfg)
>>> round(t.value, 2), t.source, t.regime
(1.6, 'floor', 'normal')
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

REGIMES = ("calm", "normal", "active")
MAX_COUNT = 1_000_000_000  # counters saturate here: state stays a fixed size forever


@dataclass(frozen=True)
class ThresholdConfig:
    k_sigma: float = 4.0  # threshold = baseline mean + k_sigma * robust sigma
    half_life_windows: float = 360.0  # EWMA memory (360 windows x 5 s slide = 30 min)
    warmup_windows: int = 60  # windows seen before the instrument's own estimate is trusted
    min_learned: int = 30  # ... and unflagged windows learned (flagged ones never are)
    regime_min: int = 20  # samples a regime baseline needs before it is used alone
    regime_low: float = -0.75  # activity z below this (vol and volume) -> "calm"
    regime_high: float = 1.0  # activity z above this (vol or volume) -> "active"
    floor_ratio: float = 0.8  # adaptive threshold >= floor_ratio * global threshold
    ceil_ratio: float = 3.0  # adaptive threshold <= ceil_ratio * global threshold
    min_sigma_frac: float = 0.05  # sigma >= this * |global|: flat histories would flag any uptick
    winsor_c: float = 3.0  # residuals clipped at +-winsor_c sigma before learning
    close_after: int = 3  # consecutive windows below threshold that close an episode
    quiet_gap_ms: int = 60_000  # event-time silence that closes an open episode
    max_episode_windows: int = 720  # longer episodes are closed (a new one may open)
    update_every: int = 6  # UPDATE at least every N flagged windows (and on new peak)
    idle_ttl_ms: int = 3_600_000  # event-time silence after which all keyed state is cleared
    max_pending: int = 64  # reorder buffer bound (windows awaiting the watermark)
    top_features: int = 3  # channels reported per alert
    top_participants: int = 5  # participants reported per alert (and kept per episode x2)

    @property
    def alpha(self) -> float:
        return 1.0 - 0.5 ** (1.0 / self.half_life_windows)


@dataclass
class RobustEwma:
    """EWMA mean and mean absolute deviation with winsorized updates (3 floats)."""

    n: int = 0
    mean: float = 0.0
    mad: float = 0.0

    @property
    def sigma(self) -> float:
        return 1.2533 * self.mad  # mean |x - mu| of a normal = sigma * sqrt(2/pi)

    def z(self, x: float) -> float:
        return (x - self.mean) / max(self.sigma, 1e-9) if self.n else 0.0

    def update(self, x: float, alpha: float, winsor_c: float) -> None:
        if not math.isfinite(x):
            return  # a NaN would poison the estimate forever
        self.n = min(self.n + 1, MAX_COUNT)
        if self.n == 1:
            self.mean, self.mad = x, 0.0
            return
        # 1/n while young: the first windows average out instead of dominating.
        a = max(1.0 / self.n, alpha)
        r = x - self.mean
        if self.n > 3 and self.sigma > 0:
            bound = winsor_c * self.sigma
            r = max(-bound, min(bound, r))
        self.mean += a * r
        self.mad += a * (abs(r) - self.mad)

    def to_list(self) -> list[float]:
        return [self.n, self.mean, self.mad]

    @classmethod
    def from_list(cls, v: list[Any]) -> RobustEwma:
        return cls(int(v[0]), float(v[1]), float(v[2]))


_PACKED = (("n", "<i8"), ("mean", "<f8"), ("mad", "<f8"))  # ChannelNormals.to_packed layout


class ChannelNormals:
    """RobustEwma of every channel at once (numpy): the instrument's normal per channel.

    Same arithmetic as one RobustEwma per channel, element by element (float64), at a
    fraction of the cost (31 Python objects per window were the decision stage's largest
    pure-Python cost). `to_list` gives [[n, mean, mad], ...], the RobustEwma list layout;
    the decision state keeps the packed form (`to_packed`), and either reads back.
    """

    def __init__(self, n: np.ndarray, mean: np.ndarray, mad: np.ndarray):
        self.n, self.mean, self.mad = n, mean, mad

    @classmethod
    def empty(cls, size: int) -> ChannelNormals:
        return cls(np.zeros(size, dtype=np.int64), np.zeros(size), np.zeros(size))

    def __len__(self) -> int:
        return len(self.n)

    def update(self, x: np.ndarray, alpha: float, winsor_c: float) -> None:
        x = np.asarray(x, dtype=np.float64)
        ok = np.isfinite(x)  # a NaN would poison the estimate forever
        if len(x) and self.n.min() >= 3 and ok.all():
            self._update_warm(x, alpha, winsor_c)
            return
        n = np.where(ok, np.minimum(self.n + 1, MAX_COUNT), self.n)
        first = ok & (n == 1)
        a = np.maximum(1.0 / np.maximum(n, 1), alpha)  # 1/n while young
        r = np.where(ok, x, 0.0) - self.mean
        bound = winsor_c * (1.2533 * self.mad)  # = RobustEwma: winsor_c * sigma
        clip = (n > 3) & (self.mad > 0)
        r = np.where(clip, np.clip(r, -bound, bound), r)
        step = ok & ~first
        self.mean = np.where(first, x, np.where(step, self.mean + a * r, self.mean))
        self.mad = np.where(first, 0.0, np.where(step, self.mad + a * (np.abs(r) - self.mad), self.mad))
        self.n = n

    def _update_warm(self, x: np.ndarray, alpha: float, winsor_c: float) -> None:
        """`update` when every value is finite and every channel has seen three or more:
        the steady state, with the same arithmetic in half the numpy calls (the general
        path cost ~60 us per window, half of the decision step; measured)."""
        n = np.minimum(self.n + 1, MAX_COUNT)
        a = np.maximum(1.0 / n, alpha)
        r = x - self.mean
        bound = winsor_c * (1.2533 * self.mad)
        r = np.where(self.mad > 0, np.minimum(np.maximum(r, -bound), bound), r)
        self.mean = self.mean + a * r
        self.mad = self.mad + a * (np.abs(r) - self.mad)
        self.n = n

    def to_list(self) -> list[list[float]]:
        return [[int(n), m, d] for n, m, d in zip(self.n.tolist(), self.mean.tolist(), self.mad.tolist(), strict=True)]

    @classmethod
    def from_list(cls, rows: list[list[Any]]) -> ChannelNormals:
        if not rows:
            return cls.empty(0)
        arr = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
        return cls(arr[:, 0].astype(np.int64), arr[:, 1].copy(), arr[:, 2].copy())

    def to_packed(self) -> dict[str, str]:
        """Compact JSON form: each array as base64 of its little-endian bytes (exact).

        The decision stage writes an instrument's state for every window; printing ~100
        floats in decimal was most of that cost (measured ~60 us of ~85 us per state).
        """
        return {k: base64.b64encode(getattr(self, k).astype(t).tobytes()).decode("ascii") for k, t in _PACKED}

    @classmethod
    def from_packed(cls, d: dict[str, str]) -> ChannelNormals:
        n, mean, mad = (np.frombuffer(base64.b64decode(d[k]), dtype=t).astype(t.lstrip("<")) for k, t in _PACKED)
        return cls(n, mean, mad)


@dataclass(frozen=True)
class Threshold:
    value: float
    source: str  # global | instrument | regime | floor | ceil
    regime: str  # calm | normal | active


def _log_vol(v: float) -> float:
    # volatility arrives in bps (udfs/assembler.py); log1p keeps empty windows (0) finite
    return math.log1p(max(v, 0.0))


@dataclass
class Baseline:
    """Everything learned about one instrument's normal: scores per regime, vol, volume."""

    seen: int = 0
    overall: RobustEwma = field(default_factory=RobustEwma)
    by_regime: list[RobustEwma] = field(default_factory=lambda: [RobustEwma() for _ in REGIMES])
    vol: RobustEwma = field(default_factory=RobustEwma)
    volume: RobustEwma = field(default_factory=RobustEwma)

    def regime(self, volatility: float, volume: float, cfg: ThresholdConfig) -> int:
        if self.vol.n < cfg.regime_min:
            return 1  # no notion of "usual" yet
        z = (self.vol.z(_log_vol(volatility)), self.volume.z(math.log1p(max(volume, 0.0))))
        if max(z) > cfg.regime_high:
            return 2
        if max(z) < cfg.regime_low:
            return 0
        return 1

    def threshold(
        self, volatility: float, volume: float, global_threshold: float, cfg: ThresholdConfig
    ) -> Threshold:
        r = self.regime(volatility, volume, cfg)
        if self.seen < cfg.warmup_windows or self.overall.n < cfg.min_learned:
            return Threshold(global_threshold, "global", REGIMES[r])
        est, source = self.overall, "instrument"
        if self.by_regime[r].n >= cfg.regime_min:
            est, source = self.by_regime[r], "regime"
        sigma = max(est.sigma, cfg.min_sigma_frac * abs(global_threshold))
        value = est.mean + cfg.k_sigma * sigma
        if global_threshold > 0:
            if value < cfg.floor_ratio * global_threshold:
                value, source = cfg.floor_ratio * global_threshold, "floor"
            elif value > cfg.ceil_ratio * global_threshold:
                value, source = cfg.ceil_ratio * global_threshold, "ceil"
        return Threshold(value, source, REGIMES[r])

    def observe(self) -> None:
        """Count a window as seen (warm-up progress), flagged or not."""
        self.seen = min(self.seen + 1, MAX_COUNT)

    def learn(self, score: float, volatility: float, volume: float, cfg: ThresholdConfig) -> None:
        """Learn one *unflagged* window. The regime is taken before the update."""
        r = self.regime(volatility, volume, cfg)
        a, c = cfg.alpha, cfg.winsor_c
        self.overall.update(score, a, c)
        self.by_regime[r].update(score, a, c)
        self.vol.update(_log_vol(volatility), a, c)
        self.volume.update(math.log1p(max(volume, 0.0)), a, c)
        if self.seen < self.overall.n:  # learn() without observe() (doctest, tests)
            self.seen = self.overall.n

    def to_dict(self) -> dict[str, Any]:
        return {
            "seen": self.seen,
            "overall": self.overall.to_list(),
            "by_regime": [e.to_list() for e in self.by_regime],
            "vol": self.vol.to_list(),
            "volume": self.volume.to_list(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Baseline:
        return cls(
            seen=int(d["seen"]),
            overall=RobustEwma.from_list(d["overall"]),
            by_regime=[RobustEwma.from_list(v) for v in d["by_regime"]],
            vol=RobustEwma.from_list(d["vol"]),
            volume=RobustEwma.from_list(d["volume"]),
        )
