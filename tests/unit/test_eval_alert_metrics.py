"""Job-alert grading (darkpool/evaluate/alert_metrics.py) on hand-made inputs, every figure computed by hand.

Two instruments, times in seconds of event time:

- A: an event every 10 s from 0 to 3600 (one session, 1 h, bins 0..360 = 361 bins);
  abusive events at 100, 110 (episode 1, wash_trade 100-110) and 2000 (episode 2,
  spoofing 2000-2005): abusive bins {10, 11, 200}, 358 clean.
- B: an event every 10 s from 0 to 1800 and from 5400 to 7200 (two sessions: the 3600 s
  gap is over the 1800 s session gap), 0.5 h + 0.5 h, 181 + 181 bins; abusive events at
  500 (episode 3, quote_stuffing 500-505) and 6000 (episode 4, pinging 6000-6001):
  abusive bins {50, 600}, 360 clean.

Alerts (evidence spans are half-open; tolerance 60 s around evidence spans, 0 otherwise):

- a1 on A, two events: the latest (seq 1) has evidence [95, 115) and says wash_trade:
  detects episode 1, type right; bins 9, 10, 11 (one clean). Opened at window_end 105:
  delay 5 s. Its earlier event said spoofing: ignored.
- a2 on A, evidence [2040, 2050), "unknown": 35 s after episode 2 -> detects it within
  the tolerance, type unknown; bin 204 (clean). Opened at 2100: delay 100 s.
- a3 on A, no evidence, flagged windows [3000, 3060]: false; bins 300..305 (6 clean).
- a4 on B, evidence [520, 530), says pinging: 15 s after episode 3 -> detects it, type
  wrong; bin 52 (clean). Opened at 540: delay 40 s.
- a5 on B, evidence [6200, 6210): 199 s after episode 4 -> false; bin 620 (clean).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from darkpool.evaluate.alert_metrics import (
    GradingRules,
    active_sessions,
    grade_job_alerts,
    latest_alerts,
)

S = 1000  # ms per second
NS = 10**9  # ns per second


def _events() -> pd.DataFrame:
    a = np.arange(0, 3601, 10)
    b = np.r_[np.arange(0, 1801, 10), np.arange(5400, 7201, 10)]
    df = pd.DataFrame({"instrument": ["A"] * len(a) + ["B"] * len(b), "ts": np.r_[a, b] * NS, "label": 0})
    abusive = {("A", 100), ("A", 110), ("A", 2000), ("B", 500), ("B", 6000)}
    df["label"] = [int((i, t // NS) in abusive) for i, t in zip(df["instrument"], df["ts"], strict=True)]
    return df


def _episodes() -> pd.DataFrame:
    return pd.DataFrame({
        "episode_id": [1, 2, 3, 4], "instrument": ["A", "A", "B", "B"],
        "scenario": ["wash_trade", "spoofing_layering", "quote_stuffing", "pinging"],
        "start_ts": np.array([100, 2000, 500, 6000]) * NS, "end_ts": np.array([110, 2005, 505, 6001]) * NS})


def _alert(aid: str, seq: int, inst: str, scenario: str, start_s: float, end_s: float, open_s: float,
           evidence: tuple[float, float] | None) -> dict:
    e = {"alert_id": aid, "seq": seq, "instrument": inst, "scenario": scenario, "episode_start": int(start_s * S),
         "episode_end": int(end_s * S), "window_end": int(open_s * S)}
    if evidence is not None:
        e["evidence_start"], e["evidence_end"] = int(evidence[0] * S), int(evidence[1] * S)
    return e


def _alerts() -> list[dict]:
    return [
        _alert("a1", 1, "A", "wash_trade", 40, 160, 160, (95, 115)),
        _alert("a1", 0, "A", "spoofing_layering", 40, 100, 105, None),
        _alert("a2", 0, "A", "unknown", 2000, 2100, 2100, (2040, 2050)),
        _alert("a3", 0, "A", "pinging", 3000, 3060, 3060, None),
        _alert("a4", 0, "B", "pinging", 480, 540, 540, (520, 530)),
        _alert("a5", 0, "B", "pinging", 6180, 6240, 6240, (6200, 6210)),
    ]


def test_hand_computed_figures() -> None:
    g = grade_job_alerts(_alerts(), _events(), _episodes())
    assert (g["alert_events"], g["alerts"], g["alerts_with_evidence"]) == (6, 5, 4)
    assert (g["episodes"], g["detected"], g["recall"]) == (4, 3, 0.75)
    assert (g["type_right"], g["type_unknown"], g["type_wrong"]) == (1, 1, 1)
    assert g["type_accuracy"] == pytest.approx(1 / 3) and g["type_accuracy_named"] == 0.5
    assert (g["false_alerts"], g["instrument_hours"], g["false_alerts_per_instrument_hour"]) == (2, 2.0, 1.0)
    assert g["bins"] == {"bin_s": 10.0, "clean": 718, "clean_alerted": 10, "abusive": 5, "abusive_alerted": 2}
    assert g["clean_bin_alerted_share"] == pytest.approx(10 / 718) and g["abusive_bin_alerted_share"] == 0.4
    assert g["delays_s"] == [5.0, 100.0, 40.0]
    assert g["duration_s"]["max"] == 120.0 and g["duration_s"]["p50"] == 60.0
    assert g["longest_alert"] == {"alert_id": "a1", "instrument": "A", "duration_s": 120.0}


def test_per_scenario_and_per_instrument() -> None:
    g = grade_job_alerts(_alerts(), _events(), _episodes())
    rec = {s: (v["detected"], v["episodes"], v["type_right"], v["type_unknown"]) for s, v in g["by_scenario"].items()}
    assert rec == {"wash_trade": (1, 1, 1, 0), "spoofing_layering": (1, 1, 0, 1), "quote_stuffing": (1, 1, 0, 0),
                   "pinging": (0, 1, 0, 0)}
    assert g["worst_scenario_recall"] == 0.0
    assert g["type_confusion"] == {"wash_trade": {"wash_trade": 1}, "spoofing_layering": {"unknown": 1},
                                   "quote_stuffing": {"pinging": 1}}
    a, b = g["by_instrument"]["A"], g["by_instrument"]["B"]
    assert (a["episodes"], a["detected"], a["alerts"], a["false_alerts"], a["instrument_hours"]) == (2, 2, 3, 1, 1.0)
    assert (a["clean_bins"], a["clean_bins_alerted"], a["abusive_bins"], a["abusive_bins_alerted"]) == (358, 8, 3, 2)
    assert (b["episodes"], b["detected"], b["alerts"], b["false_alerts"], b["instrument_hours"]) == (2, 1, 2, 1, 1.0)
    assert (b["clean_bins"], b["clean_bins_alerted"], b["abusive_bins"], b["abusive_bins_alerted"]) == (360, 2, 2, 0)
    assert (a["duration_s_max"], b["duration_s_max"]) == (120.0, 60.0)
    assert g["targets"]["recall"] == {"value": 0.75, "target": ">= 0.9", "met": False}
    assert g["targets"]["false_alerts_per_instrument_hour"]["met"] is True  # 1.0 <= 1.0


def test_tolerance_decides_the_near_misses() -> None:
    # 10 s of slack: a2 (35 s after episode 2) and a4 (15 s after episode 3) no longer match
    g = grade_job_alerts(_alerts(), _events(), _episodes(), GradingRules(evidence_tolerance_s=10))
    assert (g["detected"], g["false_alerts"], g["type_right"]) == (1, 4, 1)
    # bins do not depend on the tolerance
    assert g["bins"]["clean_alerted"] == 10


def test_falls_back_to_the_flagged_windows_without_evidence() -> None:
    # a1's latest event without evidence: graded on [40, 160], bins 4..15 (12 bins, 10 and 11 abusive)
    ev = [{k: v for k, v in e.items() if not k.startswith("evidence")} for e in _alerts()[:2]]
    g = grade_job_alerts(ev, _events(), _episodes())
    assert (g["detected"], g["alerts_with_evidence"]) == (1, 0)
    assert g["by_instrument"]["A"]["clean_bins_alerted"] == 10
    assert g["alert_rows"][0]["span_s"] == 120.0


def test_alert_on_an_instrument_without_events_is_false_and_has_no_rate() -> None:
    g = grade_job_alerts([_alert("z", 0, "C", "pinging", 0, 60, 60, None)], _events(), _episodes())
    c = g["by_instrument"]["C"]
    assert (c["false_alerts"], c["instrument_hours"], c["false_alerts_per_instrument_hour"]) == (1, 0.0, None)
    assert g["false_alerts_per_instrument_hour"] == 0.5  # 1 over the 2 h of A and B


def test_latest_event_wins_and_bad_evidence_is_refused() -> None:
    a = latest_alerts(_alerts()[:2])
    assert [(x.scenario, x.span_ms, x.open_ms) for x in a] == [("wash_trade", (95_000, 115_000), 105_000)]
    bad = _alert("b", 0, "A", "pinging", 0, 60, 60, (50, 40))
    with pytest.raises(ValueError, match="evidence_end"):
        latest_alerts([bad])


def test_sessions_split_on_long_gaps() -> None:
    s = active_sessions(_events(), session_gap_s=1800)
    assert s["A"].tolist() == [[0, 3600 * NS]]
    assert s["B"].tolist() == [[0, 1800 * NS], [5400 * NS, 7200 * NS]]


def test_the_actor_named_first_and_the_recall_at_a_budget() -> None:
    """Detected participant patterns whose best alert names an actor first; and the
    operating curve: keeping only the largest-margin alerts trades false alerts for recall."""
    eps = _episodes().assign(participants=[["W1"], ["S1"], ["Q1"], ["P1"]])
    alerts = _alerts()
    for e, who, margin in zip(alerts, (["W1", "X"], ["W1"], ["X", "S1"], ["Y"], ["Q1"], ["Z"]),
                              (3.0, 3.0, 2.0, 0.5, 1.0, 0.2), strict=True):  # fmt: skip
        e["participants"] = [{"participant": p, "weight": 1.0, "share": 0.5} for p in who]
        e["score_margin"] = margin
    g = grade_job_alerts(alerts, _events(), eps)
    # detected: wash_trade (a1 names W1 first: right), spoofing (a2 names X first: wrong);
    # quote_stuffing is no participant pattern
    assert g["actor_first"] == {"detected": 2, "actor_first": 1, "share": 0.5}
    curve = {p["rate"]: p for p in g["recall_at_rates"]}
    # 2 false alerts (a3 margin 0.5, a5 margin 0.2) in 2 instrument-hours
    assert curve[0.1]["false_alerts"] == 0 and curve[0.1]["recall"] == 0.75 and curve[0.1]["cut"] == 0.5
    assert curve[1.0]["false_alerts"] == 2 and curve[1.0]["at_run_point"]
