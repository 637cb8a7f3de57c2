"""Episode-level grading (pure): alerts against the injected episodes.

Used for both the offline models (window decisions turned into alerts here by the
decision stage's own episode state machine, core.coalesce.step, with its
`close_after` / `quiet_gap_ms` / `max_episode_ms` from core.thresholds.ThresholdConfig)
and the deployed job (its alert events, `alerts_grading.py`). One rule for both:

- an alert covers [episode_start, episode_end] (ms): the start of its first flagged
  window to the end of its last one, as in docs/ALERTS.md;
- it *detects* an episode of the same instrument when the intervals overlap (the one
  matcher, darkpool/episodes.py `match_alerts`, here with no extra slack by default: the
  alert interval already reaches one window back);
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

from core.coalesce import InstrumentState, close_if_quiet, step
from core.records import ScoredWindow
from core.thresholds import ThresholdConfig
from darkpool.episodes import NS_PER_MS, episode_spans, fold_alert_events, match_alerts


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
    """Turn per-window decisions into alerts the way the decision stage does: through
    its own episode state machine (core.coalesce.step), window by window in event-time
    order per instrument.

    The decisions are already made, so each window enters on a fixed threshold (score
    1 or 0 against 0.5, on the path of a degraded window, whose threshold neither adapts
    nor learns): an alert opens on a flagged window, closes after `close_after`
    consecutive unflagged windows or `quiet_gap_ms` of event time without a window (also
    at the end of the input), and one that would outgrow `max_episode_ms` goes on as a
    new alert.
    """
    cfg = cfg or ThresholdConfig()
    order = np.lexsort((end_pane, instrument))
    states: dict[str, InstrumentState] = {}
    events: list[dict[str, Any]] = []
    size_ms = n_buckets * slide_ms
    for inst, pane, flag in zip(np.asarray(instrument)[order].tolist(), np.asarray(end_pane)[order].tolist(),
                                np.asarray(flagged)[order].tolist(), strict=True):  # fmt: skip
        end = (int(pane) + 1) * slide_ms
        w = ScoredWindow(instrument=str(inst), window_start=end - size_ms, window_end=end, score=1.0 if flag else 0.0,
                         scenario_probs=(), recon_error=0.0, channel_z=(), volatility=0.0, volume=0.0,
                         model_version="offline", global_threshold=0.5, max_event_ts=end - 1, degraded=True)  # fmt: skip
        st = states.get(w.instrument)
        if st is None:  # (not setdefault: a fresh state per window costs more than the step)
            st = states[w.instrument] = InstrumentState()
        events += step(st, w, cfg, now_ms=end)
    for st in states.values():  # the input ends: what the job's timer does once the watermark passes the gap
        if st.last_end is not None:
            events += close_if_quiet(st, st.last_end + cfg.quiet_gap_ms, cfg, now_ms=st.last_end + cfg.quiet_gap_ms)
    return alerts_from_events(events)


def alerts_from_events(events: Iterable[Mapping[str, Any]]) -> list[Alert]:
    """Alerts of the streaming job (open/update/close events, docs/ALERTS.md) -> one Alert per alert_id.

    Interval from the latest event (highest seq); open time from the earliest one.
    """
    return [Alert(str(last["instrument"]), int(last["episode_start"]), int(last["episode_end"]),
                  int(first.get("window_end", last["episode_start"])))
            for first, last in fold_alert_events(events).values()]  # fmt: skip


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


def grade(episodes: pd.DataFrame, alerts: list[Alert], instrument_hours: float, slack_ms: int = 0,
          exempt: pd.DataFrame | None = None) -> EpisodeGrade:
    """Grade alerts against episodes (EPISODE_SCHEMA rows, times in ns).

    Alerts overlapping an `exempt` episode (e.g. one that started before the graded
    period) are not false alerts, though that episode is not graded.
    """
    spans = [(a.instrument, a.start_ms, a.end_ms, slack_ms) for a in alerts]
    hits = match_alerts(episode_spans(episodes), spans)
    used = {i for h in hits for i in h}
    if exempt is not None:
        used.update(i for h in match_alerts(episode_spans(exempt), spans) for i in h)
    delays: list[float] = []
    by_scen: dict[str, list[int]] = {}
    for ep, h in zip(episodes.itertuples(index=False), hits, strict=True):
        c = by_scen.setdefault(str(ep.scenario), [0, 0])
        c[0] += 1
        if h:
            c[1] += 1
            first_open = min(alerts[i].open_ms for i in h)
            delays.append(max(0.0, (first_open - int(ep.start_ts) // NS_PER_MS) / 1000.0))
    return EpisodeGrade(len(episodes), len(delays), len(alerts), len(alerts) - len(used), instrument_hours, delays,
                        {k: (v[0], v[1]) for k, v in by_scen.items()})
