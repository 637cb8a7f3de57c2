"""Grade the job's alerts on a labeled data set: pure (alert events, events, episodes in; a dict out).

The rules, in one place (docs: darkpool/evaluate/README.md, "Grading the job's alerts"):

- **Alert** = the latest event (highest `seq`) of each `alert_id`; its open time is the
  `window_end` of its earliest event.
- **Alert span** = `[evidence_start, evidence_end)` when the alert carries both (the
  panes that made it fire), else `[episode_start, episode_end]` (first flagged window
  start to last flagged window end), epoch ms.
- **Match** (the one matcher, darkpool/episodes.py `match_alerts`): an alert detects an
  episode of the same instrument when its span, widened by a tolerance on both sides,
  overlaps the episode's [first, last] manipulative event. Tolerance: one window length
  (the default 60 s) for evidence spans, which are short and pane-aligned while an
  injected episode's label can start before its first visible effect; none for
  `[episode_start, episode_end]`, which already reaches a window back.
- **Scenario type** of a detected episode = the scenario of the matched alert that
  overlaps it most (ties: the earlier alert). `unknown` (or no scenario) counts as
  wrong, and is also counted on its own.
- **False alert** = an alert that detects no episode.
- **Active time**: an instrument's events are cut into sessions wherever two
  consecutive events are more than `session_gap_s` (30 min) apart; its active time is
  the sum of its sessions' spans (first to last event). Instrument-hours = the sum over
  instruments. On one session per instrument this is the span of its events; on
  several days it leaves the nights out.
- **Bins**: each instrument's active time is cut into 10-second bins of event time
  (aligned to the epoch). A bin is abusive when a labeled abusive event of that
  instrument falls in it, else clean. A bin is alerted when any alert span of that
  instrument overlaps it (an alert covering one millisecond of a bin costs the whole
  bin: the analyst reads whole bins).

>>> import pandas as pd
>>> ev = pd.DataFrame({"instrument": ["A"] * 4, "ts": [0, 15_000, 1_800_000, 3_600_000], "label": [0, 1, 0, 0]})
>>> ev["ts"] *= 1_000_000  # ms -> ns
>>> eps = pd.DataFrame({"instrument": ["A"], "scenario": ["wash_trade"], "start_ts": [15_000_000],
...                     "end_ts": [15_000_000]})
>>> alert = {"alert_id": "a", "seq": 0, "instrument": "A", "scenario": "wash_trade",
...          "episode_start": 0, "episode_end": 60_000, "window_end": 60_000}
>>> g = grade_job_alerts([alert], ev, eps)
>>> g["recall"], g["type_accuracy"], g["false_alerts"], g["instrument_hours"]
(1.0, 1.0, 0, 1.0)
>>> g["bins"]["clean"], g["bins"]["clean_alerted"], round(g["clean_bin_alerted_share"], 4)
(360, 5, 0.0139)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.config import DEFAULT_WINDOW
from core.schemas import SCENARIOS
from darkpool.episodes import episode_spans, fold_alert_events, match_alerts

NS_PER_MS = 1_000_000
NS_PER_HOUR = 3_600 * 10**9
UNKNOWN = "unknown"

# Acceptance figures for alerts on a venue's flow (model trained on simulated data only).
TARGETS: dict[str, tuple[str, float]] = {
    "recall": (">=", 0.9),
    "worst_scenario_recall": (">=", 0.7),
    "type_accuracy": (">=", 0.8),
    "false_alerts_per_instrument_hour": ("<=", 1.0),
    "clean_bin_alerted_share": ("<=", 0.03),
}


@dataclass(frozen=True)
class GradingRules:
    bin_s: float = 10.0  # bin length for the clean / abusive time shares
    evidence_tolerance_s: float = float(DEFAULT_WINDOW.size_s)  # match slack of an evidence span (one window)
    episode_span_tolerance_s: float = 0.0  # match slack of the [episode_start, episode_end] fallback
    session_gap_s: float = 1_800.0  # a longer gap between an instrument's events ends its session

    def __post_init__(self) -> None:
        if self.bin_s <= 0 or self.session_gap_s <= 0:
            raise ValueError(f"bin_s ({self.bin_s}) and session_gap_s ({self.session_gap_s}) must be > 0")
        if min(self.evidence_tolerance_s, self.episode_span_tolerance_s) < 0:
            raise ValueError("match tolerances must be >= 0 seconds")


@dataclass(frozen=True)
class JobAlert:
    alert_id: str
    instrument: str
    scenario: str  # "unknown" when the alert named none
    start_ms: int  # episode_start of the latest event
    end_ms: int  # episode_end of the latest event
    evidence_start_ms: int | None
    evidence_end_ms: int | None
    open_ms: int  # window_end of the earliest event: when the alert was first raised
    threshold_source: str = "n/a"  # of the latest event (core.alerts.THRESHOLD_SOURCES)
    margin: float | None = None  # score_margin of the latest event: the episode's peak over its threshold
    top_participant: str | None = None  # first of the latest event's `participants` (the largest share)

    @property
    def has_evidence(self) -> bool:
        return self.evidence_start_ms is not None and self.evidence_end_ms is not None

    @property
    def span_ms(self) -> tuple[int, int]:
        """The span graded: the evidence when present, else the flagged windows."""
        if self.has_evidence:
            return int(self.evidence_start_ms), int(self.evidence_end_ms)  # type: ignore[arg-type]
        return self.start_ms, self.end_ms

    def tolerance_ms(self, rules: GradingRules) -> int:
        s = rules.evidence_tolerance_s if self.has_evidence else rules.episode_span_tolerance_s
        return int(round(s * 1000))


def _opt_int(v: Any) -> int | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else int(v)


def _first_participant(e: Mapping[str, Any]) -> str | None:
    parts = e.get("participants") or []
    first = parts[0] if parts else None
    return str(first.get("participant")) if isinstance(first, Mapping) and first.get("participant") else None


# The patterns that are one participant's actions: for these the alert's first named
# participant should be the episode's actor.
PARTICIPANT_SCENARIOS = ("spoofing_layering", "pinging", "front_running", "momentum_ignition", "wash_trade")


def latest_alerts(events: Iterable[Mapping[str, Any]]) -> list[JobAlert]:
    """One JobAlert per alert_id: the latest event (highest seq), opened at the earliest one's window_end."""
    folded = fold_alert_events(events)
    out = []
    for k in sorted(folded):
        first, e = folded[k]
        ev_lo, ev_hi = _opt_int(e.get("evidence_start")), _opt_int(e.get("evidence_end"))
        if ev_lo is not None and ev_hi is not None and ev_hi < ev_lo:
            raise ValueError(f"alert {k}: evidence_end {ev_hi} is before evidence_start {ev_lo}")
        out.append(JobAlert(k, str(e["instrument"]), str(e.get("scenario") or UNKNOWN), int(e["episode_start"]),
                            int(e["episode_end"]), ev_lo, ev_hi,
                            int(first.get("window_end") or e["episode_start"]),
                            str(e.get("threshold_source") or "n/a"),
                            None if e.get("score_margin") is None else float(e["score_margin"]),
                            _first_participant(e)))
    return out


def active_sessions(events: pd.DataFrame, session_gap_s: float) -> dict[str, np.ndarray]:
    """Per instrument, [k, 2] int64 (first ts, last ts) ns of each session of its events."""
    gap = int(session_gap_s * 1e9)
    out = {}
    for inst, ts in events.groupby("instrument", sort=True)["ts"]:
        t = np.sort(ts.to_numpy(dtype=np.int64))
        cut = np.flatnonzero(np.diff(t) > gap)
        out[str(inst)] = np.column_stack([t[np.r_[0, cut + 1]], t[np.r_[cut, len(t) - 1]]])
    return out


def _session_bins(sessions: np.ndarray, bin_ns: int) -> np.ndarray:
    """Sorted unique indices of the bins (ts // bin_ns) that the sessions touch."""
    parts = [np.arange(lo // bin_ns, hi // bin_ns + 1, dtype=np.int64) for lo, hi in sessions]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)


def _covered(bins: np.ndarray, spans_ms: list[tuple[int, int]], bin_ns: int) -> np.ndarray:
    """Mask over `bins`: overlapped by any half-open span [lo, hi) (a zero-length span covers its bin)."""
    hit = np.zeros(len(bins) + 1, dtype=np.int64)
    for lo_ms, hi_ms in spans_ms:
        first = lo_ms * NS_PER_MS // bin_ns
        last = max(first, -(-hi_ms * NS_PER_MS // bin_ns) - 1)
        i, j = np.searchsorted(bins, first, "left"), np.searchsorted(bins, last, "right")
        hit[i] += 1
        hit[j] -= 1
    return np.cumsum(hit[:-1]) > 0


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _dist(values: list[float]) -> dict[str, Any]:
    v = np.asarray(values, dtype=float)
    if not len(v):
        return {"n": 0, "mean": None, "p50": None, "p90": None, "max": None}
    return {"n": len(v), "mean": float(v.mean()), "p50": float(np.median(v)), "p90": float(np.quantile(v, 0.9)),
            "max": float(v.max())}


def _type_counts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    det = [r for r in rows if r["detected"]]
    right = sum(r["alert_scenario"] == r["scenario"] for r in det)
    unknown = sum(r["alert_scenario"] == UNKNOWN for r in det)
    return {"episodes": len(rows), "detected": len(det), "recall": _ratio(len(det), len(rows)),
            "type_right": right, "type_unknown": unknown, "type_accuracy": _ratio(right, len(det)),
            "type_accuracy_named": _ratio(right, len(det) - unknown)}


def _verdict(res: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, (op, target) in TARGETS.items():
        v = res.get(key)
        met = None if v is None else (v >= target if op == ">=" else v <= target)
        out[key] = {"value": v, "target": f"{op} {target}", "met": met}
    return out


def grade_job_alerts(alert_events: Iterable[Mapping[str, Any]], events: pd.DataFrame, episodes: pd.DataFrame,
                     rules: GradingRules | None = None) -> dict[str, Any]:
    """Episode, type, false-alert, bin and duration metrics of the job's alerts (rules: module docstring).

    Parameters
    ----------
    alert_events : alert events as the job writes them (core/alerts.py), any number per alert_id.
    events : columns instrument, ts (epoch ns), label (1 = abusive) of the graded data.
    episodes : columns instrument, scenario, start_ts, end_ts (epoch ns) [, episode_id].

    Returns
    -------
    dict with the headline figures at the top level, `by_scenario`, `by_instrument`,
    `type_confusion` (true -> alerted scenario -> episodes), `targets` (verdicts),
    `alert_rows` and `episode_rows` (one row per alert / episode, for plots and drill-down).
    Ratios whose denominator is 0 are None.
    """
    rules = rules or GradingRules()
    alert_events = list(alert_events)
    alerts = latest_alerts(alert_events)
    by_inst: dict[str, list[JobAlert]] = {}
    for a in alerts:
        by_inst.setdefault(a.instrument, []).append(a)
    matched: dict[str, list[int]] = {a.alert_id: [] for a in alerts}

    ep_rows: list[dict[str, Any]] = []
    delays: list[float] = []
    ids = episodes["episode_id"] if "episode_id" in episodes else pd.Series(range(len(episodes)), index=episodes.index)
    spans = episode_spans(episodes)
    hit_ids = match_alerts(spans, [(a.instrument, *a.span_ms, a.tolerance_ms(rules)) for a in alerts])
    for eid, ep, (_, s_ms, e_ms), h in zip(ids, episodes.itertuples(index=False), spans, hit_ids, strict=True):
        hits = [alerts[i] for i in h]
        for a in hits:
            matched[a.alert_id].append(int(eid))
        row = {"episode_id": int(eid), "instrument": str(ep.instrument), "scenario": str(ep.scenario),
               "start_ms": s_ms, "end_ms": e_ms, "detected": bool(hits), "alert_scenario": None, "delay_s": None}
        if hits:
            # the alert that overlaps the episode most types it (negative overlap = gap inside the tolerance)
            best = max(hits, key=lambda a: (min(a.span_ms[1], e_ms) - max(a.span_ms[0], s_ms), -a.span_ms[0]))
            row["alert_scenario"] = best.scenario
            named = getattr(ep, "participants", None)  # a list, or a NumPy array from Parquet
            actors = set() if named is None else {str(p) for p in named}
            row["actor_first"] = bool(actors) and best.top_participant in actors
            row["delay_s"] = max(0.0, (min(a.open_ms for a in hits) - s_ms) / 1000.0)
            delays.append(row["delay_s"])
        ep_rows.append(row)

    sessions = active_sessions(events, rules.session_gap_s)
    bin_ns = int(round(rules.bin_s * 1e9))
    al_rows = [{"alert_id": a.alert_id, "instrument": a.instrument, "scenario": a.scenario,
                "start_ms": a.start_ms, "end_ms": a.end_ms, "span_start_ms": a.span_ms[0], "span_end_ms": a.span_ms[1],
                "evidence": a.has_evidence, "duration_s": (a.end_ms - a.start_ms) / 1000.0,
                "span_s": (a.span_ms[1] - a.span_ms[0]) / 1000.0, "episodes": matched[a.alert_id],
                "margin": a.margin} for a in alerts]

    instruments = sorted(set(sessions) | {r["instrument"] for r in ep_rows} | set(by_inst))
    abusive = events.loc[events["label"] == 1]
    abusive_bins = {str(k): np.unique(v.to_numpy(dtype=np.int64) // bin_ns)
                    for k, v in abusive.groupby("instrument", sort=False)["ts"]}
    per_inst: dict[str, dict[str, Any]] = {}
    for inst in instruments:
        ses = sessions.get(inst, np.zeros((0, 2), np.int64))
        bins = _session_bins(ses, bin_ns)
        is_abusive = np.isin(bins, abusive_bins.get(inst, np.zeros(0, np.int64)))
        alerted = _covered(bins, [a.span_ms for a in by_inst.get(inst, [])], bin_ns)
        hours = float((ses[:, 1] - ses[:, 0]).sum()) / NS_PER_HOUR
        inst_alerts = [r for r in al_rows if r["instrument"] == inst]
        false = sum(not r["episodes"] for r in inst_alerts)
        dur = [r["duration_s"] for r in inst_alerts]
        per_inst[inst] = {
            **_type_counts([r for r in ep_rows if r["instrument"] == inst]),
            "alerts": len(inst_alerts), "false_alerts": false, "instrument_hours": hours,
            "false_alerts_per_instrument_hour": _ratio(false, hours),
            "clean_bins": int((~is_abusive).sum()), "clean_bins_alerted": int((~is_abusive & alerted).sum()),
            "abusive_bins": int(is_abusive.sum()), "abusive_bins_alerted": int((is_abusive & alerted).sum()),
            "duration_s_max": max(dur) if dur else None, "duration_s_p50": float(np.median(dur)) if dur else None,
        }
        p = per_inst[inst]
        p["clean_bin_alerted_share"] = _ratio(p["clean_bins_alerted"], p["clean_bins"])
        p["abusive_bin_alerted_share"] = _ratio(p["abusive_bins_alerted"], p["abusive_bins"])

    def total(key: str) -> int:
        return sum(p[key] for p in per_inst.values())

    order = sorted({r["scenario"] for r in ep_rows}, key=lambda s: (SCENARIOS.index(s) if s in SCENARIOS else 99, s))
    by_scen = {s: _type_counts([r for r in ep_rows if r["scenario"] == s]) for s in order}
    confusion: dict[str, dict[str, int]] = {}
    for r in ep_rows:
        if r["detected"]:
            row = confusion.setdefault(r["scenario"], {})
            row[r["alert_scenario"]] = row.get(r["alert_scenario"], 0) + 1
    hours = sum(p["instrument_hours"] for p in per_inst.values())
    false = sum(not r["episodes"] for r in al_rows)
    head = _type_counts(ep_rows)
    recalls = [v["recall"] for v in by_scen.values() if v["recall"] is not None]
    longest = max(al_rows, key=lambda r: r["duration_s"], default=None)
    d = np.asarray(delays)
    res: dict[str, Any] = {
        "rules": asdict(rules),
        "alert_events": len(alert_events), "alerts": len(alerts),
        "alerts_with_evidence": sum(a.has_evidence for a in alerts),
        # the threshold each alert was judged against when it last spoke (global in the warm-up)
        "threshold_sources": {s: sum(a.threshold_source == s for a in alerts)
                              for s in sorted({a.threshold_source for a in alerts})},
        **head, "share_detected": head["recall"],
        "type_wrong": head["detected"] - head["type_right"] - head["type_unknown"],
        "worst_scenario_recall": min(recalls) if recalls else None,
        # detected participant patterns whose best alert names one of the episode's actors first
        "actor_first": _actor_first(ep_rows),
        "false_alerts": false, "instrument_hours": hours, "false_alerts_per_instrument_hour": _ratio(false, hours),
        "bins": {"bin_s": rules.bin_s, "clean": total("clean_bins"), "clean_alerted": total("clean_bins_alerted"),
                 "abusive": total("abusive_bins"), "abusive_alerted": total("abusive_bins_alerted")},
        "duration_s": _dist([r["duration_s"] for r in al_rows]),
        "span_s": _dist([r["span_s"] for r in al_rows]),
        "longest_alert": None if longest is None else {k: longest[k] for k in ("alert_id", "instrument", "duration_s")},
        "delays_s": delays,
        "delay_s_median": float(np.median(d)) if len(d) else None,
        "delay_s_p90": float(np.quantile(d, 0.9)) if len(d) else None,
        "by_scenario": by_scen, "by_instrument": per_inst, "type_confusion": confusion,
        "alert_rows": al_rows, "episode_rows": ep_rows,
    }
    b = res["bins"]
    res["clean_bin_alerted_share"] = _ratio(b["clean_alerted"], b["clean"])
    res["abusive_bin_alerted_share"] = _ratio(b["abusive_alerted"], b["abusive"])
    res["targets"] = _verdict(res)
    res["recall_at_rates"] = recall_at_rates(al_rows, ep_rows, hours)
    return res


def _actor_first(ep_rows: list[dict[str, Any]]) -> dict[str, Any]:
    rows = [r for r in ep_rows if r["detected"] and r["scenario"] in PARTICIPANT_SCENARIOS and "actor_first" in r]
    hit = sum(bool(r["actor_first"]) for r in rows)
    return {"detected": len(rows), "actor_first": hit, "share": _ratio(hit, len(rows))}


# False-alert rates (per instrument-hour) at which the operating curve is read: the alert
# budgets an operator would set.
BUDGET_RATES = (0.1, 0.25, 0.5, 1.0, 2.0)


def recall_at_rates(alert_rows: list[dict[str, Any]], episode_rows: list[dict[str, Any]], hours: float,
                    rates: tuple[float, ...] = BUDGET_RATES) -> list[dict[str, Any]]:  # fmt: skip
    """Episode recall, overall and per scenario, when only the alerts with the largest
    `margin` are kept, as many as a false-alert rate of `rate` per instrument-hour allows.

    The operating curve of one run: raising every threshold by a cut c keeps exactly the
    alerts whose margin exceeds c (core.thresholds.ThresholdConfig.raised), so the point
    for a rate is the lowest cut whose false alerts fit in rate x hours. Alerts without a
    margin (schema < 3) are always kept. A rate above the run's own false-alert rate
    reads the run as it is (`at_run_point`): a lower threshold than the run's might do
    better there, which one run cannot say.

    >>> eps = [{"episode_id": 0, "scenario": "spoofing"}, {"episode_id": 1, "scenario": "pinging"}]
    >>> rows = [{"margin": 3.0, "episodes": [0]}, {"margin": 2.0, "episodes": []},
    ...         {"margin": 1.0, "episodes": [1]}]
    >>> [(p["rate"], p["recall"], p["false_alerts"], p["at_run_point"]) for p in recall_at_rates(rows, eps, 2.0, (0.1, 0.5, 1.0))]
    [(0.1, 0.5, 0, False), (0.5, 1.0, 1, True), (1.0, 1.0, 1, True)]
    """
    order = sorted(alert_rows, key=lambda r: -np.inf if r.get("margin") is None else -r["margin"])
    scen = {r["episode_id"]: r["scenario"] for r in episode_rows}
    totals: dict[str, int] = {}
    for s in scen.values():
        totals[s] = totals.get(s, 0) + 1
    # points after each group of equal margins: (cut, kept, false, detected episode ids)
    points: list[tuple[float, int, int, frozenset[int]]] = []
    detected: set[int] = set()
    false = 0
    for i, r in enumerate(order):
        detected.update(r["episodes"])
        false += not r["episodes"]
        nxt = order[i + 1]["margin"] if i + 1 < len(order) else None
        if i + 1 == len(order) or nxt != r["margin"]:
            cut = -np.inf if i + 1 == len(order) else (nxt if nxt is not None else -np.inf)
            points.append((float(cut), i + 1, false, frozenset(detected)))
    points.insert(0, (float(order[0]["margin"]) if order and order[0].get("margin") is not None else np.inf,
                      0, 0, frozenset()))  # fmt: skip
    out = []
    for rate in rates:
        fit = [p for p in points if hours and p[2] <= rate * hours] or points[:1]
        cut, kept, f, det = fit[-1]
        by = {s: sum(scen[e] == s for e in det) / n for s, n in sorted(totals.items())}
        out.append({"rate": rate, "cut": None if not np.isfinite(cut) else round(cut, 4), "alerts": kept,
                    "false_alerts": f, "false_alerts_per_instrument_hour": _ratio(f, hours),
                    "recall": _ratio(len(det), len(scen)), "by_scenario": by,
                    "at_run_point": kept == len(order)})  # fmt: skip
    return out
