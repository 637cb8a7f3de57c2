"""Classic per-scenario surveillance rules on the raw window channels (pure numpy).

Two uses, one calibration:
- the rules baseline of the evaluation harness (darkpool/evaluate), with the model
  contract `fit(train, val)` / `score(x)`;
- the detection job's degraded mode (`--degraded-rules`): when the scorer stays down,
  windows are scored by these rules instead (udfs/scoring.py), marked `degraded`.
  Training fits them on the same normal validation windows as the model's threshold
  and saves them as `rules.json` in the artifact.

Scale: each rule's statistic minus its median on normal windows, divided by (its
`quantile` on normal windows - median). So 0 = typical, 1 = the rule's threshold, for
every rule: the rules score (the most-triggered rule) has a global threshold of 1.0.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.features import CHANNELS
from core.schemas import SCENARIOS

if TYPE_CHECKING:
    from model.windows import WindowSet

_C = {name: i for i, name in enumerate(CHANNELS)}
THRESHOLD = 1.0  # a rule score of 1 = that rule's threshold
RULES_FILE = "rules.json"  # in a model artifact folder


def _ch(x: np.ndarray, name: str) -> np.ndarray:
    return x[:, :, _C[name]]


def _near_close(x: np.ndarray) -> np.ndarray:
    return _ch(x, "to_close_h") <= 0.25  # the last 15 minutes of the session


# One statistic per scenario, computed from the raw (un-normalized) window channels, each
# a classic surveillance alert condition: name -> (statistic, calibration statistic).
# The calibration statistic is what the threshold is fitted on; it differs only for
# marking the close, whose statistic is zero away from the close (validation has no
# close), so its threshold is the normal *intraday* price move, applied at the close.
RULES = {
    "wash_trade": (lambda x: _ch(x, "self_cross_share").max(1), None),  # self-cross share of volume
    "spoofing_layering": (lambda x: (_ch(x, "cancel_fill_ratio") + np.abs(_ch(x, "new_imbalance"))).max(1), None),  # cancels + one-sided layering
    "quote_stuffing": (lambda x: _ch(x, "burst_100ms").max(1), None),  # message rate in 100 ms slots
    "momentum_ignition": (lambda x: np.abs(_ch(x, "ret_mid_bps")).max(1), None),  # sharp price move
    "pinging": (lambda x: _ch(x, "top_cancel_ratio").max(1), None),  # one participant probing then cancelling
    "off_market_print": (lambda x: _ch(x, "fill_outside_hs").max(1), None),  # price outside the NBBO
    "marking_the_close": (lambda x: (np.abs(_ch(x, "ret_mid_bps")) * _near_close(x)).max(1),
                          lambda x: np.abs(_ch(x, "ret_mid_bps")).max(1)),  # end-of-day price move
    "front_running": (lambda x: _ch(x, "front_run_ratio").max(1), None),  # same-side trading ahead of a block
}


# the channels each rule reads: in degraded mode a channel's "z" is the score of the most
# triggered rule that reads it, so an alert's top features name the rules that fired
RULE_CHANNELS = {
    "wash_trade": ("self_cross_share",),
    "spoofing_layering": ("cancel_fill_ratio", "new_imbalance"),
    "quote_stuffing": ("burst_100ms",),
    "momentum_ignition": ("ret_mid_bps",),
    "pinging": ("top_cancel_ratio",),
    "off_market_print": ("fill_outside_hs",),
    "marking_the_close": ("ret_mid_bps", "to_close_h"),
    "front_running": ("front_run_ratio",),
}


@dataclass
class Rules:
    quantile: float = 0.999  # per-rule threshold = this quantile of the statistic on normal validation windows
    name: str = "rules"

    def fit(self, train: WindowSet, val: WindowSet) -> None:
        self.fit_normal(val.x[val.y == 0])

    def fit_normal(self, normal: np.ndarray) -> None:
        """Fit each rule's median and threshold on normal windows [N, T, F] (raw channels)."""
        if len(normal) == 0:
            raise ValueError("rules need normal validation windows to fit their thresholds")
        self.med, self.scale = {}, {}
        for rule, (stat, calib) in RULES.items():
            v = (calib or stat)(normal)
            med, q = float(np.median(v)), float(np.quantile(v, self.quantile))
            self.med[rule] = med
            self.scale[rule] = max(q - med, 1e-6 * (1 + abs(med)))

    def rule_scores(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Per rule: 0 at the normal median, 1 at the rule's threshold."""
        return {r: (stat(x) - self.med[r]) / self.scale[r] for r, (stat, _) in RULES.items()}

    def score(self, x: np.ndarray) -> np.ndarray:
        return np.max(np.stack(list(self.rule_scores(x).values())), axis=0)

    def scenario_probs(self, x: np.ndarray) -> np.ndarray:
        """[N, len(SCENARIOS)]: each triggered rule's share of the triggered rules' excess
        over the threshold; a window no rule triggers is all `normal`. A rough stand-in for
        the model's classifier, for alerts raised in degraded mode."""
        scores = self.rule_scores(x)
        probs = np.zeros((len(x), len(SCENARIOS)))
        for rule, s in scores.items():
            probs[:, SCENARIOS.index(rule)] = np.maximum(s - THRESHOLD, 0.0)
        total = probs.sum(1)
        probs[total == 0, SCENARIOS.index("normal")] = 1.0
        return probs / np.maximum(probs.sum(1, keepdims=True), 1e-12)

    def channel_scores(self, x: np.ndarray) -> np.ndarray:
        """[N, F]: per channel, the score of the most triggered rule reading it (0 if none)."""
        out = np.zeros((len(x), len(CHANNELS)))
        for rule, s in self.rule_scores(x).items():
            for ch in RULE_CHANNELS[rule]:
                out[:, _C[ch]] = np.maximum(out[:, _C[ch]], s)
        return out

    def version(self) -> str:
        """Short content hash: alerts scored by these rules name it as their model version."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return "rules-" + hashlib.sha256(text.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        return {"quantile": self.quantile, "median": self.med, "scale": self.scale, "channels": list(CHANNELS)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Rules:
        if d.get("channels") != list(CHANNELS):
            raise ValueError("rules were calibrated on other channels than core.features.CHANNELS; retrain the model")
        missing = set(RULES) - set(d["median"]) | set(RULES) - set(d["scale"])
        if missing:
            raise ValueError(f"rules calibration lacks {sorted(missing)}; retrain the model")
        r = cls(quantile=float(d["quantile"]))
        r.med = {k: float(d["median"][k]) for k in RULES}
        r.scale = {k: float(d["scale"][k]) for k in RULES}
        return r

    def save(self, folder: Path) -> Path:
        path = Path(folder) / RULES_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, path: Path | str) -> Rules:
        """From a rules.json or a model artifact folder holding one."""
        path = Path(path)
        if path.is_dir():
            path = path / RULES_FILE
        if not path.exists():
            raise FileNotFoundError(
                f"no rules calibration at {path}: pass a model artifact trained by this version "
                "(`darkpool train` writes rules.json) or its rules.json"
            )
        return cls.from_dict(json.loads(path.read_text()))
