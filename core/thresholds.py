"""Per-instrument adaptive threshold: pure logic, no Flink (unit-tested on its own).

Score and decision are kept apart (river's `QuantileFilter` over a detector): the scorer
returns a score where high = anomalous; this module learns, per instrument, what its
*normal* scores look like and turns a score into a yes/no against a threshold.

How the threshold is made: the model's probability scores (`score_scale="logit"`)
-----------------------------------------------------------------------------------
The model's score is a probability in (0, 1) with most windows near 0, abuse near 1,
and a heavy tail in between. A mean + k sigma rule on it, per instrument, measured on
real NASDAQ flow (GOOG 2012-06-21 with injected episodes) and on a simulated validation
set, either sat above 1 and never flagged (it learned the abuse below a too-high
threshold as normal) or, anchored at the global threshold, cut recall from 87 % to
10-35 %. Because the inputs are already relative to each instrument's own normal
(core/pane_normals.py), the model's calibrated global threshold is the instrument's
threshold, raised only by the instrument's **alert budget**:

* Warm-up (cannot deadlock): the first `warmup_windows` windows (`WARMUP_S`, 5 minutes
  of event time, at the job's slide: `ThresholdConfig.for_window`) are judged on the global threshold (`threshold_source
  "global"`; alerts are raised, not suppressed), and *all* their scores, flagged or not,
  in logit, form a sample that seeds the budget quantile: the sample's
  (1 - max_flag_rate) quantile, with a step size from its median absolute deviation.
* Then, per window, one stochastic-approximation step moves that level toward the
  (1 - max_flag_rate) quantile of *all* the instrument's window scores (a quantile is
  robust to the abuse among them, so every window may teach it; nothing can deadlock).
  threshold = max(global, level), capped at global logit + `ceil_logit`. Source
  "instrument" while the global threshold holds (the instrument's flow flags less than
  max_flag_rate of its windows: 35 % by default, where an ordinary instrument flags
  ~1 %, and the densest injected test sets ~30 % abusive windows), "recalibrated" while
  its own level holds it higher (an instrument the model sees as hot in every window
  then flags at most ~max_flag_rate of them, in alerts of at most `max_episode_ms`).
  Chosen on a simulated validation set, never on the real-data set: max_flag_rate 0.2 /
  0.35 / 0.5 gave episode recall 78 / 84 / 86 % at 0.56 / 0.62 / 0.64 false alerts per
  instrument-hour (`python bench/decision_sweep.py --artifact A --data D --set
  max_flag_rate=0.2,0.35,0.5`; jobs/README.md has the commands and data).
* Regime (calm / normal / active from the instrument's own volatility and volume, as
  below) is tracked and reported.

The raw scale (`score_scale="raw"`: unbounded scores of another scorer)
-----------------------------------------------------------------------
* Baseline = a robust EWMA of the instrument's scores: mean and mean absolute deviation,
  with each residual winsorized at `winsor_c` sigmas first, so one odd window moves the
  baseline by a bounded amount. threshold = mean + k_sigma * sigma.
* Regime: the market is calmer or busier than usual. The instrument's own normal
  log-volatility and log-volume are tracked the same way; a window whose volatility
  or volume z-score is above `regime_high` is "active", both below `regime_low` "calm",
  otherwise "normal". Each regime has its own baseline, used once it has `regime_min`
  samples, else the instrument-wide one.
* Warm-up: the first `warmup_windows` windows are judged on the global threshold and all
  their scores seed the estimate (median and median absolute deviation: a real episode
  inside the warm-up barely lifts it).
* Alert budget: an EWMA of the 0/1 flag (time constant `budget_windows`); past
  `max_flag_rate` the instrument re-learns from its next `relearn_windows` windows
  including flagged ones ("recalibrated").
* The result is clamped to [floor_ratio, ceil_ratio] x global threshold.
* protect_anomaly_detector: `learn` is only called for windows that were *not* flagged
  and are outside an open episode (core/coalesce.py).

State written before the warm-up sample existed (no "phase" key) restores as follows:
an instrument that had finished the old warm-up (`warmup_windows` seen *and*
`min_learned` learned, under the config it is restored with) keeps its estimates and
is steady, with an empty alert budget (flagged share 0); any other (still warming up,
or deadlocked on the global threshold) starts the new warm-up at its next window.

Example (seeded, exact):

>>> import random
>>> cfg = ThresholdConfig(warmup_windows=50, score_scale="raw")
>>> b = Baseline()
>>> rng = random.Random(7)
>>> for _ in range(400):
...     score = rng.gauss(1.0, 0.1)
...     b.learn(score, volatility=8.0, volume=1000.0, cfg=cfg)
...     b.calibrate(score, flagged=False, cfg=cfg)
>>> t = b.threshold(volatility=8.0, volume=1000.0, global_threshold=2.0, cfg=cfg)
>>> round(t.value, 2), t.source, t.regime
(1.6, 'floor', 'normal')

Scores all at 3x the global threshold from the first window: the warm-up still ends.

>>> b = Baseline()
>>> for _ in range(cfg.warmup_windows):
...     b.calibrate(rng.gauss(3.0, 0.1), flagged=True, cfg=cfg)
>>> t = b.threshold(volatility=8.0, volume=1000.0, global_threshold=1.0, cfg=cfg)
>>> round(t.value, 2), t.source
(3.35, 'instrument')

The model's scale: an instrument whose every window scores 0.99 against a global
threshold of 0.9 is held to its own level after the warm-up.

>>> cfg, b = ThresholdConfig(warmup_windows=50), Baseline()
>>> for i in range(400):
...     score = min(0.999, max(0.9, rng.gauss(0.99, 0.004)))
...     t = b.threshold(8.0, 1000.0, 0.9, cfg)
...     b.calibrate(score, flagged=score > t.value, cfg=cfg)
>>> t.source, 0.98 < t.value < 0.999
('recalibrated', True)
"""

from __future__ import annotations

import base64
import dataclasses
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.config import DEFAULT_WINDOW, WindowConfig

REGIMES = ("calm", "normal", "active")
MAX_COUNT = 1_000_000_000  # counters saturate here: state stays a fixed size forever

# Spans of event time that ThresholdConfig counts in windows (an instrument has one window
# per slide): its defaults are these spans at the default geometry, `for_window` gives
# them at another.
HALF_LIFE_S = 1800  # memory of the raw scale's EWMAs
WARMUP_S = 300  # warm-up on the global threshold
BUDGET_S = 1800  # alert budget period
RELEARN_S = 300  # a recalibration's sample
_SPANS = {"half_life_windows": HALF_LIFE_S, "warmup_windows": WARMUP_S, "budget_windows": BUDGET_S,
          "relearn_windows": RELEARN_S}
LOGIT_EPS = 1e-6  # probability scores are clipped to [eps, 1 - eps] before the logit (+-13.8)


def logit(p: float) -> float:
    """log(p / (1 - p)) of a probability clipped to [LOGIT_EPS, 1 - LOGIT_EPS]: the scale
    the decision stage learns the model's scores on, and alerts' score margins.

    >>> round(logit(0.9), 3), round(logit(1.0), 1), logit(0.5)
    (2.197, 13.8, 0.0)
    """
    p = min(max(p, LOGIT_EPS), 1.0 - LOGIT_EPS)
    return math.log(p / (1.0 - p))


@dataclass(frozen=True)
class ThresholdConfig:
    k_sigma: float = 4.0  # threshold = baseline mean + k_sigma * robust sigma
    # EWMA memory, in windows: 30 min of event time (a count left at its default follows the slide)
    half_life_windows: float = float(DEFAULT_WINDOW.panes_in(HALF_LIFE_S))
    # warm-up: the instrument's first N windows are judged on the global threshold and
    # all of them (flagged or not) seed its own estimate: 5 min of event time (a count
    # left at its default follows the slide)
    warmup_windows: int = DEFAULT_WINDOW.panes_in(WARMUP_S)
    # restore of state written before the warm-up sample: an instrument counts as warm
    # when it had seen warmup_windows and learned this many (else its warm-up restarts)
    min_learned: int = 30
    regime_min: int = 20  # samples a regime baseline needs before it is used alone
    regime_low: float = -0.75  # activity z below this (vol and volume) -> "calm"
    regime_high: float = 1.0  # activity z above this (vol or volume) -> "active"
    # the scale the baseline is learned on: "logit" for probability scores in (0, 1) (the
    # model's: a bounded, two-humped score, on which mean + k sigma lands above 1 and
    # never flags; measured on real NASDAQ flow), "raw" for unbounded scores
    score_scale: str = "logit"
    ceil_logit: float = 4.0  # logit scale: threshold <= global logit + this
    min_sigma_logit: float = 0.25  # logit scale: the smallest spread the budget's step is sized from
    floor_ratio: float = 0.8  # raw scale: adaptive threshold >= floor_ratio * global threshold
    # raw scale: adaptive threshold <= ceil_ratio * global threshold. Generous: on a real
    # venue an instrument's ordinary flow can score several times the global threshold
    ceil_ratio: float = 10.0
    min_sigma_frac: float = 0.05  # raw scale: sigma >= this * |global|: flat histories would flag any uptick
    winsor_c: float = 3.0  # residuals clipped at +-winsor_c sigma before learning
    # alert budget: the largest share of an instrument's windows its threshold lets flag
    # (logit scale: the quantile level; raw: the flagged-share EWMA that triggers a
    # re-learn), over ~budget_windows. An ordinary instrument flags ~1 % (the global
    # threshold's calibration); injected test sets hold up to ~30 % abusive windows; a
    # model wrong about an instrument flags ~100 %. 1.0 = no budget
    max_flag_rate: float = 0.35
    budget_windows: int = DEFAULT_WINDOW.panes_in(BUDGET_S)  # alert budget period, in windows: 30 min of event time
    relearn_windows: int = DEFAULT_WINDOW.panes_in(RELEARN_S)  # windows (flagged ones too) a recalibration learns from: 5 min
    close_after: int = 3  # consecutive windows below threshold that close an episode
    quiet_gap_ms: int = 60_000  # event-time silence that closes an open episode
    # longest alert (episode_end - episode_start, event time); a longer run of flagged
    # windows is closed (max_duration) and goes on as a new alert whose `continues` names it
    max_episode_ms: int = 300_000
    update_every: int = 6  # UPDATE at least every N flagged windows (and on new peak)
    idle_ttl_ms: int = 3_600_000  # event-time silence after which all keyed state is cleared
    top_features: int = 3  # channels reported per alert
    top_participants: int = 5  # participants reported per alert (and kept per episode x2)
    # evidence span: the panes with surprise >= this x the episode's most surprising pane.
    # 1.0 = that pane (and its ties) only. Measured on a simulated validation set
    # (bench/decision_sweep.py): 0.5 / 0.8 / 1.0 -> clean 10-s bins inside evidence spans
    # 14 / 7.7 / 3.1 %, episode recall 84 / 81 / 79 % (a narrower span overlaps fewer episodes)
    evidence_fraction: float = 1.0
    # pane length assumed for a window without pane_surprise (its last pane is its
    # evidence): the job's slide (`for_window`)
    fallback_pane_ms: int = DEFAULT_WINDOW.slide_ms
    # below this mean probability of the best non-normal scenario, an alert's scenario
    # is "unknown" (the probability is still reported)
    min_scenario_probability: float = 0.3

    def __post_init__(self) -> None:
        checks = {
            "warmup_windows >= 1": self.warmup_windows >= 1,
            "relearn_windows >= 1": self.relearn_windows >= 1,
            "budget_windows >= 1": self.budget_windows >= 1,
            "0 < max_flag_rate <= 1": 0 < self.max_flag_rate <= 1,
            "max_episode_ms > 0": self.max_episode_ms > 0,
            "0 < evidence_fraction <= 1": 0 < self.evidence_fraction <= 1,
            "fallback_pane_ms > 0": self.fallback_pane_ms > 0,
            "0 <= min_scenario_probability <= 1": 0 <= self.min_scenario_probability <= 1,
            "score_scale logit|raw": self.score_scale in ("logit", "raw"),
            "ceil_logit >= 0": self.ceil_logit >= 0,
        }
        bad = [rule for rule, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"ThresholdConfig: {', '.join(bad)} required; fix these fields")

    @property
    def alpha(self) -> float:
        return 1.0 - 0.5 ** (1.0 / self.half_life_windows)

    def for_window(self, window: WindowConfig) -> ThresholdConfig:
        """This config on `window`'s geometry: its pane length, and each window count
        that is still at its default (a span of event time at the default geometry) as
        the same span in `window`'s windows. A count set to another value is kept.

        >>> c = ThresholdConfig(relearn_windows=10).for_window(WindowConfig(30, 2))
        >>> c.warmup_windows, c.half_life_windows, c.budget_windows, c.relearn_windows, c.fallback_pane_ms
        (150, 900.0, 900, 10, 2000)
        >>> ThresholdConfig().for_window(WindowConfig()) == ThresholdConfig()
        True
        """
        default = ThresholdConfig()
        spans = {k: window.panes_in(s) for k, s in _SPANS.items() if getattr(self, k) == getattr(default, k)}
        spans = {k: type(getattr(default, k))(v) for k, v in spans.items()}
        return dataclasses.replace(self, fallback_pane_ms=window.slide_ms, **spans)

    def scaled(self, score: float) -> float:
        """A score on the scale the baseline learns on (`score_scale`)."""
        if self.score_scale == "raw":
            return score
        return logit(score)

    def unscaled(self, value: float) -> float:
        """Back from the learning scale to the score's own."""
        if self.score_scale == "raw":
            return value
        return 1.0 / (1.0 + math.exp(-value)) if value > -700 else 0.0

    def raised(self, threshold: float, cut: float) -> float:
        """`threshold` raised by `cut` on the alerts' `score_margin` scale: a score clears
        the result exactly when its margin over `threshold` exceeds `cut` (logit units for
        probabilities, a share of the threshold on the raw scale). The alert budget's
        per-instrument raise (core/alert_budget.py).

        >>> c = ThresholdConfig()
        >>> round(logit(c.raised(0.5, 2.0)), 6), ThresholdConfig(score_scale="raw").raised(2.0, 0.5)
        (2.0, 3.0)
        """
        if cut <= 0:
            return threshold
        if self.score_scale == "raw":
            return threshold + cut * max(abs(threshold), 1e-9)
        return self.unscaled(logit(threshold) + cut)


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
    source: str  # one of core.alerts.THRESHOLD_SOURCES
    regime: str  # calm | normal | active


def _log_vol(v: float) -> float:
    # volatility arrives in bps (udfs/assembler.py); log1p keeps empty windows (0) finite
    return math.log1p(max(v, 0.0))


def robust_seed(sample: list[float]) -> RobustEwma:
    """A RobustEwma standing for `sample`: median and scaled median absolute deviation.

    Half of the sample can be anything (a real episode inside a warm-up) and the
    estimate stays near the rest. n = len(sample): later updates weigh it as that many
    windows learned.

    >>> e = robust_seed([1.0, 1.1, 0.9, 1.0, 9.0, 9.0])
    >>> round(e.mean, 3), round(e.sigma, 3), e.n
    (1.05, 0.148, 6)
    """
    xs = sorted(sample)
    med = _median(xs)
    spread = _median(sorted(abs(x - med) for x in xs))
    sigma = 1.4826 * spread  # median |x - median| of a normal = sigma / 1.4826
    return RobustEwma(min(len(xs), MAX_COUNT), med, sigma / 1.2533)


def _median(xs: list[float]) -> float:
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


PHASES = ("warmup", "steady", "relearn")  # Baseline.phase


def _pack(xs: list[float]) -> str:
    """Floats -> base64 of their little-endian float64 bytes: exact, and cheaper to
    write per window than their decimal JSON."""
    return base64.b64encode(struct.pack(f"<{len(xs)}d", *xs)).decode("ascii")


def _unpack(text: str) -> list[float]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 8}d", raw))


@dataclass
class Baseline:
    """Everything learned about one instrument's normal: scores per regime, vol, volume,
    plus the warm-up / re-learn sample and the alert budget (flagged-share EWMA)."""

    seen: int = 0
    overall: RobustEwma = field(default_factory=RobustEwma)
    by_regime: list[RobustEwma] = field(default_factory=lambda: [RobustEwma() for _ in REGIMES])
    vol: RobustEwma = field(default_factory=RobustEwma)
    volume: RobustEwma = field(default_factory=RobustEwma)
    phase: str = "warmup"  # warmup (global threshold) | steady | relearn (budget exceeded)
    sample: list[float] = field(default_factory=list)  # scores of the warm-up / re-learn
    flag_rate: float = 0.0  # EWMA of the 0/1 flag under the instrument's own threshold
    recal_left: int = 0  # windows the source still reads "recalibrated" after a re-learn
    # logit scale: the (1 - max_flag_rate) quantile of all the instrument's window scores
    # (flagged ones too), streamed; the threshold never sits below it (the alert budget)
    budget_level: float = math.nan
    budget_step: float = 0.0  # its stochastic-approximation step, from the warm-up spread

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
        if self.phase == "warmup":
            return Threshold(global_threshold, "global", REGIMES[r])
        if cfg.score_scale == "logit":
            # the global threshold, raised to the instrument's budget quantile when its own
            # flow would flag more than max_flag_rate of its windows (see the module docstring)
            g = cfg.scaled(global_threshold)
            level = self.budget_level if math.isfinite(self.budget_level) else g
            if level <= g:
                return Threshold(global_threshold, "instrument", REGIMES[r])
            value = min(level, g + cfg.ceil_logit)
            return Threshold(cfg.unscaled(value), "recalibrated" if value < g + cfg.ceil_logit else "ceil", REGIMES[r])
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
        if self.phase == "relearn" or self.recal_left:
            source = "recalibrated"  # the value and global_threshold still show any clamp
        return Threshold(value, source, REGIMES[r])

    def observe(self) -> None:
        """Count a window as seen, flagged or not."""
        self.seen = min(self.seen + 1, MAX_COUNT)

    def learn(self, score: float, volatility: float, volume: float, cfg: ThresholdConfig) -> None:
        """Learn one *unflagged* window. The regime is taken before the update. On the
        logit scale only the regime inputs are learned: the score estimates are the raw
        scale's threshold (the logit scale's is the budget quantile, `calibrate`)."""
        a, c = cfg.alpha, cfg.winsor_c
        if cfg.score_scale == "raw":
            r = self.regime(volatility, volume, cfg)
            self.overall.update(score, a, c)
            self.by_regime[r].update(score, a, c)
        self.vol.update(_log_vol(volatility), a, c)
        self.volume.update(math.log1p(max(volume, 0.0)), a, c)
        if self.seen < self.overall.n:  # learn() without observe() (doctest, tests)
            self.seen = self.overall.n

    def calibrate(self, score: float, flagged: bool, cfg: ThresholdConfig) -> None:
        """After each (non-degraded) window: warm-up / re-learn sample, or alert budget.

        Steady: the flagged share moves (a few float operations: this runs per window);
        past `max_flag_rate` a re-learn starts. Warm-up / re-learn: the score joins the
        sample whatever it is; a full sample seeds the instrument's estimate.
        """
        if cfg.score_scale == "logit":
            self._track_budget(cfg.scaled(score), cfg)
            return
        if self.phase == "steady":
            self.flag_rate += ((1.0 if flagged else 0.0) - self.flag_rate) / cfg.budget_windows
            if self.recal_left:
                self.recal_left -= 1
            if self.flag_rate > cfg.max_flag_rate:
                self.phase = "relearn"
            return
        self.sample.append(cfg.scaled(score))
        if len(self.sample) < (cfg.warmup_windows if self.phase == "warmup" else cfg.relearn_windows):
            return
        self.overall = robust_seed(self.sample)
        # the regime baselines learned from unflagged windows only (during a warm-up, the
        # low part of a flow that straddles the global threshold; before a re-learn, the
        # old normal): they start over, the seeded estimate standing in until they are ready
        self.by_regime = [RobustEwma() for _ in REGIMES]
        if self.phase == "relearn":
            self.recal_left = cfg.budget_windows
        self.phase, self.sample, self.flag_rate = "steady", [], 0.0

    def _track_budget(self, x: float, cfg: ThresholdConfig) -> None:
        """Logit scale: warm-up sample -> budget quantile seed; then one Robbins-Monro step
        per window toward the (1 - max_flag_rate) quantile (a few float operations)."""
        tau = 1.0 - cfg.max_flag_rate
        if self.phase != "warmup" and not math.isfinite(self.budget_level):
            self.phase, self.sample = "warmup", []  # state from before the budget quantile: learn it
        if self.phase == "warmup":
            self.sample.append(x)
            if len(self.sample) < cfg.warmup_windows:
                return
            xs = sorted(self.sample)
            self.budget_level = xs[min(int(tau * len(xs)), len(xs) - 1)]
            spread = max(robust_seed(xs).sigma, cfg.min_sigma_logit)
            # ~8 spreads per budget period when every window sits above the level
            self.budget_step = 8.0 * spread / cfg.budget_windows
            self.phase, self.sample = "steady", []
            return
        self.budget_level += self.budget_step * (tau - (1.0 if x <= self.budget_level else 0.0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "seen": self.seen,
            "overall": self.overall.to_list(),
            "by_regime": [e.to_list() for e in self.by_regime],
            "vol": self.vol.to_list(),
            "volume": self.volume.to_list(),
            "phase": self.phase,
            # only while warming up / re-learning; "" otherwise
            "sample": _pack(self.sample) if self.sample else "",
            "flag_rate": self.flag_rate,
            "recal_left": self.recal_left,
            "budget": [self.budget_level, self.budget_step] if math.isfinite(self.budget_level) else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], cfg: ThresholdConfig | None = None) -> Baseline:
        """Read `to_dict` output; state without "phase" (written before the warm-up sample
        and the alert budget) restores as the module docstring says, judged by `cfg`."""
        b = cls(
            seen=int(d["seen"]),
            overall=RobustEwma.from_list(d["overall"]),
            by_regime=[RobustEwma.from_list(v) for v in d["by_regime"]],
            vol=RobustEwma.from_list(d["vol"]),
            volume=RobustEwma.from_list(d["volume"]),
        )
        if "phase" not in d:
            cfg = cfg or ThresholdConfig()
            warm = b.seen >= cfg.warmup_windows and b.overall.n >= cfg.min_learned
            b.phase = "steady" if warm else "warmup"
            return b
        if d["phase"] not in PHASES:
            raise ValueError(f"threshold state: unknown phase {d['phase']!r} (expected one of {PHASES})")
        b.phase, b.sample = d["phase"], _unpack(d["sample"]) if d["sample"] else []
        b.flag_rate, b.recal_left = float(d["flag_rate"]), int(d["recal_left"])
        if d.get("budget"):
            b.budget_level, b.budget_step = float(d["budget"][0]), float(d["budget"][1])
        return b
