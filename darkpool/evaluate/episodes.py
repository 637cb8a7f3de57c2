"""Episode-level grading (pure): alerts against the injected episodes.

Used for both the offline models (window decisions coalesced into alerts here, with the
decision stage's `close_after` / `quiet_gap_ms` from core.thresholds.ThresholdConfig)
and the deployed job (its alert events, `alerts_grading.py`). One rule for both:

- an alert covers [episode_start, episode_end] (ms): the start of its first flagged
  window to the end of its last one, as in docs/ALERTS.md;
- it *detects* an episode of the same instrument when the intervals overlap (the same
  rule as darkpool/episodes.py `match`, here with no extra slack by default: the alert
  interval already reaches one window back);
- detection delay = end of the alert's first flagged window (the earliest event time
  at which it could be raised) minus the episode's first manipulative event, >= 0;
- an alert overlapping no episode is a false alert; the rate is per instrument-hour.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.thresholds import ThresholdConfig

NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class Alert:
    instrument: str
    start_ms: int  # start of the first flagged window
    end_ms: int  # end of the last flagged window
    open_ms: int  # end of the first flagged window (when it could first be raised)


def coalesce(
    instrument: np.ndarray, end_pane: np.ndarray, flagged: np.ndarray, slide_ms: int, n_buckets: int,
    cfg: ThresholdConfig | None = None,
) -> list[Alert]:
    """Turn per-window decisions into alerts the way the decision stage does.

    An alert opens on a flagged window and closes after `close_after` consecutive
    unflagged windows or an event-time gap of more than `quiet_gap_ms` between windows.
    """
    cfg = cfg or ThresholdConfig()
    out: list[Alert] = []
    order = np.lexsort((end_pane, instrument))
    inst_s, pane_s, flag_s = np.asarray(instrument)[order], np.asarray(end_pane)[order], np.asarray(flagged)[order]
    quiet_panes = cfg.quiet_gap_ms / slide_ms
    cur: list[Any] | None = None  # [instrument, first end pane, last flagged end pane, below]
    prev_inst, prev_pane = None, None

    def close() -> None:
        inst, first, last, _ = cur  # type: ignore[misc]
        out.append(Alert(str(inst), (first - n_buckets + 1) * slide_ms, (last + 1) * slide_ms, (first + 1) * slide_ms))

    for inst, pane, flag in zip(inst_s, pane_s, flag_s, strict=True):
        if cur is not None and (inst != prev_inst or pane - prev_pane > quiet_panes):
            close()
            cur = None
        if flag:
            if cur is None:
                cur = [inst, int(pane), int(pane), 0]
            cur[2], cur[3] = int(pane), 0
        elif cur is not None:
            cur[3] += 1
            if cur[3] >= cfg.close_after:
                close()
                cur = None
        prev_inst, prev_pane = inst, pane
    if cur is not None:
        close()
    return out


def alerts_from_events(events: Iterable[Mapping[str, Any]]) -> list[Alert]:
    """Alerts of the streaming job (open/update/close events, docs/ALERTS.md) -> one Alert per alert_id.

    Interval from the latest event (highest seq); open time from the earliest one.
    """
    first: dict[str, Mapping[str, Any]] = {}
    last: dict[str, Mapping[str, Any]] = {}
    for e in events:
        k = e["alert_id"]
        if k not in first or e["seq"] < first[k]["seq"]:
            first[k] = e
        if k not in last or e["seq"] > last[k]["seq"]:
            last[k] = e
    return [Alert(str(last[k]["instrument"]), int(last[k]["episode_start"]), int(last[k]["episode_end"]),
                  int(first[k].get("window_end", last[k]["episode_start"]))) for k in last]


@dataclass
class EpisodeGrade:
    episodes: int  # injected episodes graded
    detected: int  # ... overlapped by at least one alert
    alerts: int
    false_alerts: int  # alerts overlapping no episode
    instrument_hours: float
    delays_s: list[float] = field(default_factory=list)  # one per detected episode
    by_scenario: dict[str, tuple[int, int]] = field(default_factory=dict)  # scenario -> (episodes, detected)

    @property
    def share_detected(self) -> float:
        return self.detected / self.episodes if self.episodes else float("nan")

    @property
    def false_per_instrument_hour(self) -> float:
        return self.false_alerts / self.instrument_hours if self.instrument_hours else float("nan")

    def summary(self) -> dict[str, Any]:
        d = np.asarray(self.delays_s)
        return {
            "episodes": self.episodes, "detected": self.detected, "share_detected": self.share_detected,
            "alerts": self.alerts, "false_alerts": self.false_alerts,
            "false_alerts_per_instrument_hour": self.false_per_instrument_hour,
            "delay_s_median": float(np.median(d)) if len(d) else float("nan"),
            "delay_s_p90": float(np.quantile(d, 0.9)) if len(d) else float("nan"),
            "by_scenario": {k: {"episodes": n, "detected": m} for k, (n, m) in sorted(self.by_scenario.items())},
        }


def _overlapping(ep: Any, by_inst: dict[str, list[Alert]], slack_ms: int) -> list[Alert]:
    lo = int(ep.start_ts) // NS_PER_MS - slack_ms
    hi = int(ep.end_ts) // NS_PER_MS + slack_ms
    return [a for a in by_inst.get(str(ep.instrument), []) if a.start_ms <= hi and a.end_ms >= lo]


def grade(episodes: pd.DataFrame, alerts: list[Alert], instrument_hours: float, slack_ms: int = 0,
          exempt: pd.DataFrame | None = None) -> EpisodeGrade:
    """Grade alerts against episodes (EPISODE_SCHEMA rows, times in ns).

    Alerts overlapping an `exempt` episode (e.g. one that started before the graded
    period) are not false alerts, though that episode is not graded.
    """
    by_inst: dict[str, list[Alert]] = {}
    for a in alerts:
        by_inst.setdefault(a.instrument, []).append(a)
    used: set[int] = set()
    delays: list[float] = []
    by_scen: dict[str, list[int]] = {}
    if exempt is not None:
        for ep in exempt.itertuples(index=False):
            used.update(id(a) for a in _overlapping(ep, by_inst, slack_ms))
    for ep in episodes.itertuples(index=False):
        hits = _overlapping(ep, by_inst, slack_ms)
        c = by_scen.setdefault(str(ep.scenario), [0, 0])
        c[0] += 1
        if hits:
            c[1] += 1
            used.update(id(a) for a in hits)
            first_open = min(a.open_ms for a in hits)
            delays.append(max(0.0, (first_open - int(ep.start_ts) // NS_PER_MS) / 1000.0))
    false = sum(1 for a in alerts if id(a) not in used)
    return EpisodeGrade(len(episodes), len(delays), len(alerts), false, instrument_hours, delays,
                        {k: (v[0], v[1]) for k, v in by_scen.items()})
