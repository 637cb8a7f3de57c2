"""Alerts against injected episodes (pure): the one fold of alert events and the one
matcher, used by `darkpool demo` (`match`, below) and by the evaluation
(darkpool/evaluate/episodes.py for offline models, alert_metrics.py for the job's alerts).

* **Fold** (`fold_alert_events`): an alert is its events (open / update / close) under
  one `alert_id`; its latest event (highest `seq`) holds its final interval, its
  earliest the time it was first raised.
* **Match** (`match_alerts`): an alert *detects* an injected episode when both are on the
  same instrument and the alert's span, widened by a tolerance on both sides, overlaps
  the episode's [first, last] manipulative event. The span and tolerance are the
  caller's: the demo widens `[episode_start, episode_end]` by `slack_ms` (an alert's
  interval starts at the start of its first flagged window, which reaches `window size`
  back before the abuse that tripped it). An alert that matches no episode is a false
  alert.

Units: episodes in the simulator's epoch **nanoseconds** (`start_ts`, `end_ts` of
core.schemas.EPISODE_SCHEMA), alerts in epoch **milliseconds** (core/alerts.py).

>>> eps = [{"instrument": "AAA", "scenario": "wash_trade", "start_ts": 10_000_000_000, "end_ts": 20_000_000_000}]
>>> al = [{"alert_id": "x", "seq": 0, "instrument": "AAA", "episode_start": 15_000, "episode_end": 30_000},
...       {"alert_id": "y", "seq": 0, "instrument": "BBB", "episode_start": 15_000, "episode_end": 30_000}]
>>> s = match(eps, al, slack_ms=0)
>>> (s.injected, s.detected, s.alerts, s.false_alerts, s.by_scenario)
(1, 1, 2, 1, {'wash_trade': (1, 1)})
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

NS_PER_MS = 1_000_000

# an episode as the matcher takes it: (instrument, first manipulative event, last), ms
EpisodeSpan = tuple[str, int, int]
# an alert as the matcher takes it: (instrument, span start, span end, tolerance), ms
AlertSpan = tuple[str, int, int, int]


def fold_alert_events(events: Iterable[Mapping[str, Any]]) -> dict[str, tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """alert_id -> (its earliest event, its latest event) by `seq`, in the order the
    alerts first appear; of events with equal seq the first one counts.

    >>> ev = [{"alert_id": "x", "seq": 1, "n": "b"}, {"alert_id": "x", "seq": 0, "n": "a"}, {"alert_id": "y", "seq": 0, "n": "c"}]
    >>> {k: (first["n"], last["n"]) for k, (first, last) in fold_alert_events(ev).items()}
    {'x': ('a', 'b'), 'y': ('c', 'c')}
    """
    out: dict[str, tuple[Mapping[str, Any], Mapping[str, Any]]] = {}
    for e in events:
        k = str(e["alert_id"])
        cur = out.get(k)
        if cur is None:
            out[k] = (e, e)
        elif e["seq"] < cur[0]["seq"]:
            out[k] = (e, cur[1])
        elif e["seq"] > cur[1]["seq"]:
            out[k] = (cur[0], e)
    return out


def episode_spans(episodes: pd.DataFrame | Iterable[Mapping[str, Any]]) -> list[EpisodeSpan]:
    """EPISODE_SCHEMA rows (a frame or mappings; times in ns) -> the matcher's (instrument, start_ms, end_ms)."""
    rows = episodes.to_dict("records") if isinstance(episodes, pd.DataFrame) else episodes
    return [(str(e["instrument"]), int(e["start_ts"]) // NS_PER_MS, int(e["end_ts"]) // NS_PER_MS) for e in rows]


def match_alerts(episodes: Iterable[EpisodeSpan], alerts: Sequence[AlertSpan]) -> list[list[int]]:
    """For each episode, the indices (ascending) of the alerts that detect it: same
    instrument, and the alert's span widened by its tolerance overlaps the episode
    (closed intervals).

    >>> match_alerts([("A", 100, 200), ("A", 500, 510), ("B", 0, 10)],
    ...              [("A", 150, 300, 0), ("A", 520, 600, 10), ("A", 520, 600, 0)])
    [[0], [1], []]
    """
    by_inst: dict[str, list[tuple[int, int, int]]] = {}
    for i, (inst, lo, hi, tol) in enumerate(alerts):
        by_inst.setdefault(inst, []).append((i, lo - tol, hi + tol))
    return [[i for i, lo, hi in by_inst.get(inst, ()) if lo <= end and hi >= start] for inst, start, end in episodes]


@dataclass(frozen=True)
class MatchSummary:
    injected: int  # episodes in the ground truth
    detected: int  # ... overlapped by at least one alert
    alerts: int  # distinct alert ids
    false_alerts: int  # ... overlapping no episode
    by_scenario: dict[str, tuple[int, int]] = field(
        default_factory=dict
    )  # scenario -> (injected, detected)
    named: int = 0  # detected episodes whose alerts name a scenario (not "unknown")
    named_right: int = 0  # ... and one of them names the episode's own

    @property
    def recall(self) -> float:
        return self.detected / self.injected if self.injected else 0.0

    def lines(self) -> list[str]:
        out = [
            f"episodes injected: {self.injected}, alerted: {self.detected} ({self.recall:.0%})",
            f"alerts: {self.alerts}, false alerts (no injected episode): {self.false_alerts}",
            f"scenario named on {self.named} of {self.detected} alerted episodes, the right one on {self.named_right}",
        ]
        for name, (n, d) in sorted(self.by_scenario.items()):
            out.append(f"  {name:<20} {d}/{n}")
        return out


def latest_per_alert(events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Collapse open/update/close events to the latest (highest seq) per alert_id."""
    return [last for _, last in fold_alert_events(events).values()]


def match(
    episodes: Iterable[Mapping[str, Any]],
    alert_events: Iterable[Mapping[str, Any]],
    slack_ms: int = 60_000,
) -> MatchSummary:
    alerts = latest_per_alert(alert_events)
    eps = list(episodes)
    spans = [(str(a["instrument"]), int(a["episode_start"]), int(a["episode_end"]), slack_ms) for a in alerts]
    hits = match_alerts(episode_spans(eps), spans)
    by_scenario: dict[str, list[int]] = {}
    for ep, h in zip(eps, hits, strict=True):
        counts = by_scenario.setdefault(str(ep["scenario"]), [0, 0])
        counts[0] += 1
        counts[1] += bool(h)
    used = {i for h in hits for i in h}
    said = [{str(alerts[i].get("scenario") or "unknown") for i in h} - {"unknown"} for h in hits]
    return MatchSummary(
        len(eps),
        sum(bool(h) for h in hits),
        len(alerts),
        len(alerts) - len(used),
        {k: (v[0], v[1]) for k, v in by_scenario.items()},
        named=sum(bool(n) for n in said),
        named_right=sum(str(ep["scenario"]) in n for ep, n in zip(eps, said, strict=True)),
    )
