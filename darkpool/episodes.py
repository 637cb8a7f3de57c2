"""Match alerts to injected episodes (pure): what `darkpool demo` summarizes.

An alert (one `alert_id`, its latest event) *detects* an injected episode when both are
on the same instrument and their event-time intervals overlap, after widening the
episode by `slack_ms` on both sides: an alert's interval starts at the start of its
first flagged window, which reaches `window size` back before the abuse that tripped it.
An alert that matches no episode is a false alert.

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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MatchSummary:
    injected: int  # episodes in the ground truth
    detected: int  # ... overlapped by at least one alert
    alerts: int  # distinct alert ids
    false_alerts: int  # ... overlapping no episode
    by_scenario: dict[str, tuple[int, int]] = field(
        default_factory=dict
    )  # scenario -> (injected, detected)

    @property
    def recall(self) -> float:
        return self.detected / self.injected if self.injected else 0.0

    def lines(self) -> list[str]:
        out = [
            f"episodes injected: {self.injected}, alerted: {self.detected} ({self.recall:.0%})",
            f"alerts: {self.alerts}, false alerts (no injected episode): {self.false_alerts}",
        ]
        for name, (n, d) in sorted(self.by_scenario.items()):
            out.append(f"  {name:<20} {d}/{n}")
        return out


def latest_per_alert(events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Collapse open/update/close events to the latest (highest seq) per alert_id."""
    latest: dict[str, Mapping[str, Any]] = {}
    for e in events:
        cur = latest.get(e["alert_id"])
        if cur is None or e["seq"] > cur["seq"]:
            latest[e["alert_id"]] = e
    return list(latest.values())


def match(
    episodes: Iterable[Mapping[str, Any]],
    alert_events: Iterable[Mapping[str, Any]],
    slack_ms: int = 60_000,
) -> MatchSummary:
    alerts = latest_per_alert(alert_events)
    by_inst: dict[str, list[tuple[int, int]]] = {}
    for a in alerts:
        by_inst.setdefault(a["instrument"], []).append(
            (int(a["episode_start"]), int(a["episode_end"]))
        )
    eps = list(episodes)
    used: set[tuple[str, int, int]] = set()
    by_scenario: dict[str, list[int]] = {}
    detected = 0
    for ep in eps:
        lo = int(ep["start_ts"]) // 1_000_000 - slack_ms
        hi = int(ep["end_ts"]) // 1_000_000 + slack_ms
        hits = [(s, e) for s, e in by_inst.get(ep["instrument"], []) if s <= hi and e >= lo]
        counts = by_scenario.setdefault(str(ep["scenario"]), [0, 0])
        counts[0] += 1
        if hits:
            detected += 1
            counts[1] += 1
            used.update((ep["instrument"], s, e) for s, e in hits)
    false_alerts = sum(
        1
        for a in alerts
        if (a["instrument"], int(a["episode_start"]), int(a["episode_end"])) not in used
    )
    return MatchSummary(
        len(eps),
        detected,
        len(alerts),
        false_alerts,
        {k: (v[0], v[1]) for k, v in by_scenario.items()},
    )
