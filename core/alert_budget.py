"""The alert budget: how many alerts per instrument-hour the operator will read, and the
per-instrument threshold raise that keeps a clean stretch of each instrument's own
history within it (pure: alert events and active hours in, a small JSON file out).

Surveillance teams size their work by alert volume, not by a flag rate per window. An
instrument's adaptive threshold (core/thresholds.py) already follows its own score
level; what it cannot know is how many *alerts* its normal flow produces, busy openings
included. `calibrate` looks at the alerts a clean stretch of history raised (a backtest
of the job over it: every alert there is false by construction) and finds, per
instrument, the smallest **margin cut** c >= 0 such that the alerts whose
`score_margin` exceeds c number at most `alerts_per_hour` x its active hours. The
job (`--alert-budget FILE`) then raises that instrument's threshold by c on the
`score_margin` scale (core.thresholds.ThresholdConfig.raised): an alert opens only where
it would have reached a margin above c. Instruments the calibration never saw get the
pooled cut (the same rule over all instruments' alerts and hours together).

>>> b = calibrate({"X": [2.0, 0.9], "Y": [0.1]}, {"X": 2.0, "Y": 10.0}, alerts_per_hour=0.5)
>>> b.cut("X"), b.cut("Y"), b.cut("NEW")  # X: 2 alerts in 2 h, 1 allowed -> cut at 0.9
(0.9, 0.0, 0.0)
>>> AlertBudget.from_json(b.to_json()) == b
True
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

FORMAT = "darkpool-alert-budget/1"


class BudgetFileError(ValueError):
    """A budget file that is missing, unreadable or not one `darkpool budget` wrote."""


@dataclass(frozen=True)
class AlertBudget:
    alerts_per_hour: float  # the budget the cuts were calibrated for, per instrument-hour
    default_cut: float = 0.0  # the pooled cut, for instruments the calibration never saw
    cuts: Mapping[str, float] = field(default_factory=dict)  # instrument -> margin cut (>= 0)
    # what the calibration saw, for the reader of the file: hours and alerts per instrument
    seen: Mapping[str, tuple[float, int]] = field(default_factory=dict)

    def cut(self, instrument: str) -> float:
        return self.cuts.get(instrument, self.default_cut)

    def to_json(self) -> str:
        return json.dumps({
            "format": FORMAT, "alerts_per_hour": self.alerts_per_hour, "default_cut": self.default_cut,
            "cuts": dict(sorted(self.cuts.items())),
            "seen": {k: {"hours": round(h, 4), "alerts": n} for k, (h, n) in sorted(self.seen.items())},
        }, indent=1)  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> AlertBudget:
        d = json.loads(text)
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise BudgetFileError(f"not an alert budget (no \"format\": \"{FORMAT}\")")
        cuts = {str(k): float(v) for k, v in d.get("cuts", {}).items()}
        bad = [k for k, v in cuts.items() if not (math.isfinite(v) and v >= 0)]
        if bad or not (math.isfinite(d.get("default_cut", 0.0)) and d.get("default_cut", 0.0) >= 0):
            raise BudgetFileError(f"cuts must be finite and >= 0 (bad: {(bad or ['default_cut'])[:3]})")
        seen = {str(k): (float(v["hours"]), int(v["alerts"])) for k, v in d.get("seen", {}).items()}
        return cls(float(d["alerts_per_hour"]), float(d.get("default_cut", 0.0)), cuts, seen)

    @classmethod
    def load(cls, path: str | Path) -> AlertBudget:
        """The budget in `path`; any problem is one BudgetFileError naming the file."""
        p = Path(path)
        if not p.is_file():
            raise BudgetFileError(f"{p} does not exist (write one with `darkpool budget`)")
        try:
            return cls.from_json(p.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise BudgetFileError(f"{p} is not an alert budget written by `darkpool budget`: {exc}") from None


def margin_cut(margins: list[float], hours: float, alerts_per_hour: float) -> float:
    """The smallest cut c >= 0 leaving at most floor(alerts_per_hour x hours) margins > c.

    >>> margin_cut([3.0, 1.0, 2.0], hours=1.0, alerts_per_hour=1.0)  # one allowed: keep 3.0
    2.0
    >>> margin_cut([3.0, 1.0], hours=4.0, alerts_per_hour=1.0)  # within budget already
    0.0
    >>> margin_cut([0.5, 0.5, 0.5], hours=1.0, alerts_per_hour=2.0)  # ties: all or none
    0.5
    """
    allowed = int(math.floor(alerts_per_hour * hours + 1e-9))
    desc = sorted((m for m in margins if m > 0), reverse=True)
    if len(desc) <= allowed:
        return 0.0
    return max(0.0, desc[allowed])  # margins strictly above it: at most `allowed` (fewer on ties)


def calibrate(margins: Mapping[str, list[float]], hours: Mapping[str, float],
              alerts_per_hour: float) -> AlertBudget:  # fmt: skip
    """Per-instrument cuts from the alerts of a clean stretch (see the module docstring).

    `margins`: per instrument, the `score_margin` of each alert's latest event (the peak
    the whole alert reached over its threshold). `hours`: each instrument's active hours
    in that stretch (darkpool.evaluate's instrument-hours); an instrument with alerts but
    no hours gets the pooled cut."""
    if not (alerts_per_hour > 0 and math.isfinite(alerts_per_hour)):
        raise ValueError(f"alerts_per_hour must be > 0 (got {alerts_per_hour})")
    pooled = margin_cut([m for ms in margins.values() for m in ms], sum(hours.values()), alerts_per_hour)
    cuts = {inst: margin_cut(margins.get(inst, []), h, alerts_per_hour) for inst, h in hours.items() if h > 0}
    seen = {inst: (float(h), len(margins.get(inst, []))) for inst, h in hours.items()}
    return AlertBudget(alerts_per_hour, pooled, cuts, seen)
