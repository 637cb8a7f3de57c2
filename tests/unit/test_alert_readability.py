"""Alerts an analyst can read: ISO times, bounded z with words, severity, scenario bar,
the readable line (core/alerts.py, core/coalesce.py `_event`)."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from core import alerts
from core.channels import CHANNEL_DESCRIPTIONS, CHANNEL_UNITS, CHANNELS, N_CHANNELS
from core.coalesce import InstrumentState, step
from core.pane_normals import Z_CLIP
from core.records import ScoredWindow
from core.schemas import SCENARIOS
from core.thresholds import ThresholdConfig

SLIDE = 5_000
T0 = 1_709_307_000_000  # 2024-03-01 15:30:00 UTC = 10:30 in New York (EST, UTC-05:00)
CFG = ThresholdConfig()  # the job's defaults: logit scale, min_scenario_probability 0.3
BIG_Z = 1425.0  # the unbounded channel z seen in a real alert


def win(i: int, score: float, best: float, scenario: str = "spoofing_layering") -> ScoredWindow:
    """Window i (5 s slide, 60 s long) whose best scenario has P(scenario | abuse) `best`
    (the rest spread evenly over the other manipulation scenarios)."""
    others = len(SCENARIOS) - 2
    probs = [0.1] + [0.9 * (1.0 - best) / others] * (len(SCENARIOS) - 1)
    probs[SCENARIOS.index(scenario)] = 0.9 * best
    z = [0.5] * N_CHANNELS
    z[CHANNELS.index("cancel_fill_ratio")] = BIG_Z
    z[CHANNELS.index("fill_imbalance")] = 3.0
    z[CHANNELS.index("log_events")] = -6.0  # explained better than usual: no evidence
    end = T0 + i * SLIDE
    return ScoredWindow(
        instrument="AAA", window_start=end - 60_000, window_end=end, score=score,
        scenario_probs=tuple(probs), recon_error=0.1, channel_z=tuple(z), volatility=3.0,
        volume=1000.0, model_version="v1", global_threshold=0.5, max_event_ts=end - 1,
        features=tuple(float(k) for k in range(N_CHANNELS)),
        participants=(("P1", 0.75), ("P2", 0.25)),
    )  # fmt: skip


def events(scores: list[float], best: float, scenario: str = "spoofing_layering", lag_ms: int = 250) -> list[dict]:
    state, out = InstrumentState(), []
    for i, s in enumerate(scores):
        w = win(i, s, best, scenario)
        out += step(state, w, CFG, now_ms=w.window_end + lag_ms)
    return out


def test_events_carry_iso_utc_times_equal_to_the_epoch_fields():
    evs = events([0.9] * 5 + [0.1] * 3, best=0.6)
    assert [e["status"] for e in evs][0] == "open" and evs[-1]["status"] == "close"
    for e in evs:
        alerts.validate(e)
        decoded = json.loads(alerts.encode(e))
        for f in alerts.ISO_TIMES:
            iso = decoded[f"{f}_iso"]
            assert iso.endswith("Z"), iso
            parsed = datetime.fromisoformat(iso)
            assert parsed.utcoffset().total_seconds() == 0
            assert round(parsed.timestamp() * 1000) == e[f]
    assert evs[0]["window_end_iso"] == "2024-03-01T15:30:00.000Z"


def test_unbounded_channel_z_is_shown_clipped_with_a_level_and_unit():
    e = events([0.9], best=0.6)[0]
    top = e["top_features"][0]
    assert top["channel"] == "cancel_fill_ratio" and top["z"] == BIG_Z  # raw value kept
    assert top["z_clipped"] == Z_CLIP and top["level"] == "extreme"
    assert top["unit"] == alerts.RELATIVE_UNIT  # a level channel: the model sees a z
    second = e["top_features"][1]
    assert second["channel"] == "fill_imbalance" and second["level"] == "elevated"
    assert second["unit"] == CHANNEL_UNITS["fill_imbalance"]  # absolute channel: its own unit
    assert "log_events" not in [f["channel"] for f in e["top_features"]]
    line = alerts.format_line(e)
    assert "1425" not in line and f"z > +{Z_CLIP:.0f}" in line and "extreme" in line


@pytest.mark.parametrize(("best", "label"), [(0.17, "unknown"), (0.29, "unknown"), (0.3, "spoofing_layering"), (0.8, "spoofing_layering")])
def test_a_scenario_label_only_when_its_probability_clears_the_bar(best: float, label: str):
    evs = events([0.9] * 3 + [0.1] * 3, best=best)
    for e in evs:
        assert e["scenario"] == label
        assert e["scenario_probability"] == pytest.approx(best, abs=1e-4)
        line = alerts.format_line(e)
        if label == "unknown":
            assert "spoofing_layering" not in line and "scenario unknown" in line
        else:
            assert f"spoofing_layering (p {best:.2f})" in line
        if e["scenario"] != alerts.UNKNOWN_SCENARIO:
            assert e["scenario_probability"] >= CFG.min_scenario_probability


def test_severity_is_the_documented_function_of_margin_length_and_scenario():
    evs = events([0.999] * 20 + [0.1] * 3, best=0.8) + events([0.6, 0.1, 0.1, 0.1], best=0.1)
    for e in evs:
        expected = alerts.severity(e["score_margin"], e["episode_end"] - e["episode_start"], e["scenario"])
        assert e["severity"] == expected
        assert e["score_margin"] == pytest.approx(
            alerts.score_margin(e["peak_score"], e["threshold"], "logit"), abs=1e-3)
    # 0.999 vs 0.5: margin 6.9 logit (2 points) + a named scenario (1) = high at once;
    # 0.6 vs 0.5: margin 0.4, one window, unknown = low
    assert evs[0]["severity"] == "high" and evs[-1]["severity"] == "low"


def test_severity_grows_with_each_input():
    sev = alerts.SEVERITIES.index
    for margin in (0.0, 0.8, 2.5):
        for dur in (60_000, alerts.SEVERITY_LONG_MS):
            base = sev(alerts.severity(margin, dur, "unknown"))
            assert sev(alerts.severity(margin, dur, "spoofing_layering")) >= base
            assert sev(alerts.severity(margin + 2, dur, "unknown")) >= base
            assert sev(alerts.severity(margin, dur + 60_000, "unknown")) >= base
    assert alerts.severity(0.0, 60_000, "unknown") == "low"
    assert alerts.severity(2.5, alerts.SEVERITY_LONG_MS, "spoofing_layering") == "high"


def test_participant_share_is_a_fraction_and_the_line_says_percent():
    e = events([0.9] * 4, best=0.6)[-1]
    shares = {p["participant"]: p["share"] for p in e["participants"]}
    assert shares == {"P1": 0.75, "P2": 0.25}
    line = alerts.format_line(e)
    assert "P1 75%" in line and "weight" not in line


def test_the_line_reads_in_exchange_time_without_codes():
    line = alerts.format_line(events([0.9], best=0.6)[0])
    assert "2024-03-01 10:29:00-10:30:00 New York (UTC-05:00)" in line  # episode = first window
    assert "thr=" not in line and "/global" not in line
    assert "model default, instrument warming up" in line
    assert line.startswith("OPEN   MEDIUM ") or line.startswith("OPEN   HIGH ")


def test_a_replay_of_old_data_does_not_pass_its_age_off_as_latency():
    e = events([0.9], best=0.6, lag_ms=277 * 86_400_000)[0]
    assert e["latency_ms"] == 277 * 86_400_000  # the field is unchanged (documented)
    assert "277.0 d (past data: not a latency)" in alerts.format_line(e)


def test_older_schema_events_stay_valid_and_readable():
    e = events([0.9], best=0.6)[0]
    v2 = {f: e[f] for f in alerts.FIELDS_V2} | {"schema": 2}
    v2["top_features"] = [{k: f[k] for k in ("channel", "z", "value", "normal")} for f in e["top_features"]]
    v2["participants"] = [{k: p[k] for k in ("participant", "weight")} for p in e["participants"]]
    alerts.validate(v2)
    line = alerts.format_line(v2)
    assert "z > +8" in line and "P1 75%" in line
    v1 = {f: e[f] for f in alerts.FIELDS_V1} | {"schema": 1}
    alerts.validate(v1)
    broken = dict(e, severity="urgent")
    with pytest.raises(ValueError, match="severity"):
        alerts.validate(broken)
    missing = {k: v for k, v in e.items() if k != "window_end_iso"}
    with pytest.raises(ValueError, match="window_end_iso"):
        alerts.validate(missing)


def test_every_channel_has_a_unit_and_a_plain_description():
    for c in CHANNELS:
        assert CHANNEL_UNITS[c].strip() and len(CHANNEL_DESCRIPTIONS[c]) >= 5, c
