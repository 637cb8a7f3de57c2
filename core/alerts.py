"""Alert events on `darkpool.alerts`: the JSON schema and its builder (pure, no Flink).

One *episode* of suspicious activity on one instrument = one `alert_id`, carried by a
sequence of events: exactly one `open`, zero or more `update`, one `close`. Consumers
keep the latest event per `alert_id` (highest `seq`). The id is deterministic, so a job
restarted from a checkpoint or a replay of the same history emits the same ids, and the
at-least-once fast topic can be de-duplicated on (`alert_id`, `seq`).

Schema (version 2; JSON object, UTF-8, message key = instrument). Times are event time
in epoch milliseconds unless named otherwise:

    schema                int    2 (1: without evidence_start, evidence_end, continues)
    alert_id              str    sha1(instrument | episode open window_end | model_version)[:20]
    seq                   int    0 for open, then +1 per event of the same alert
    status                str    open | update | close
    instrument            str
    episode_start         int    window_start of the first window above threshold
    episode_end           int    window_end of the last window above threshold
                                 (for a continuation, episode_start is where the alert it
                                 continues ended; episode_end - episode_start <=
                                 max_episode_ms, at least one window)
    evidence_start        int    start of the panes that made the alert fire: over the
    evidence_end          int    flagged windows, the panes whose instrument-relative
                                 surprise is >= half the window's most surprising pane
                                 (ScoredWindow.pane_surprise; the window's last pane when
                                 the producer sends none); [evidence_start, evidence_end)
                                 is their union, inside [episode_start, episode_end]
    continues             str|null  alert_id of the alert this one continues: a run of
                                 flagged windows longer than max_episode_ms is closed
                                 (close_reason max_duration) and goes on in a new alert
    window_end            int    window that triggered this event (for close: the last
                                 one seen, or the quiet-gap deadline)
    n_windows             int    windows above threshold so far
    score                 float  score of the triggering window
    peak_score            float  highest score in the episode
    peak_window_end       int
    threshold             float  threshold in force for the triggering window
    threshold_source      str    one of THRESHOLD_SOURCES:
                                 global        warm-up: the model's calibrated threshold
                                               (the instrument's first warmup_windows)
                                 instrument    the instrument's own baseline
                                 regime        its baseline for the window's regime
                                 floor | ceil  clamped to floor_ratio | ceil_ratio x global
                                 recalibrated  the instrument broke its alert budget
                                               (flagged share > max_flag_rate): its
                                               threshold is being / was re-learned from
                                               recent windows, flagged ones included
                                 rules         degraded mode (threshold 1)
    regime                str    calm | normal | active (triggering window vs the instrument's normal)
    global_threshold      float  the model's calibrated threshold
    scenario              str    one of ALERT_SCENARIOS: most likely manipulation (mean
                                 probabilities over the episode's flagged windows,
                                 "normal" excluded), or "unknown" when that mean is below
                                 min_scenario_probability (alert-only value, not in
                                 core.schemas.SCENARIOS)
    scenario_probability  float  the best scenario's mean probability (also for unknown)
    top_features          list   [{"channel", "z", "value", "normal"}] at the peak window:
                                 the channels with the largest |channel_z|; value = the
                                 window's raw channel summary, normal = the instrument's
                                 learned normal for it (null when the job has no summary)
    participants          list   [{"participant", "weight"}] most involved over the episode
    close_reason          str|null  below_threshold | quiet_gap | max_duration (close only)
    model_version         str
    degraded              bool   any window of the episode scored in degraded mode
    emitted_at            int    processing time (wall clock, ms) when the event was made
    latency_ms            int    emitted_at - window_end: event time -> alert latency at the
                                 decision stage (the exactly-once topic adds the
                                 checkpoint interval before consumers see it)
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from core.schemas import SCENARIOS

SCHEMA_VERSION = 2
STATUSES = ("open", "update", "close")
CLOSE_REASONS = ("below_threshold", "quiet_gap", "max_duration")
# every value of threshold_source, in one place (core/thresholds.py makes them)
THRESHOLD_SOURCES = ("global", "instrument", "regime", "floor", "ceil", "recalibrated", "rules")
UNKNOWN_SCENARIO = "unknown"  # no scenario likely enough (alerts only)
ALERT_SCENARIOS = (*SCENARIOS[1:], UNKNOWN_SCENARIO)  # "normal" is never an alert's scenario

FIELDS_V1 = (
    "schema", "alert_id", "seq", "status", "instrument", "episode_start", "episode_end",
    "window_end", "n_windows", "score", "peak_score", "peak_window_end", "threshold",
    "threshold_source", "regime", "global_threshold", "scenario", "scenario_probability",
    "top_features", "participants", "close_reason", "model_version", "degraded",
    "emitted_at", "latency_ms",
)  # fmt: skip
FIELDS = (*FIELDS_V1[:7], "evidence_start", "evidence_end", "continues", *FIELDS_V1[7:])


def alert_id(instrument: str, open_window_end: int, model_version: str) -> str:
    """Deterministic id of an episode: same history + same model -> same id."""
    key = f"{instrument}|{int(open_window_end)}|{model_version}".encode()
    return hashlib.sha1(key).hexdigest()[:20]


def channel_names(n: int) -> tuple[str, ...]:
    """Names of the n model channels (core.features.CHANNELS when it matches)."""
    try:
        from core.features import CHANNELS  # the feature owner's list: one source of truth
    except ImportError:
        CHANNELS = ()  # noqa: N806
    if len(CHANNELS) == n:
        return tuple(CHANNELS)
    return tuple(f"channel_{i}" for i in range(n))


def top_features(
    channel_z: tuple[float, ...] | list[float],
    values: tuple[float, ...] | list[float],
    normals: list[float] | None,
    k: int,
) -> list[dict[str, Any]]:
    """The k channels with the largest |z|, with the window value vs the instrument normal."""
    names = channel_names(len(channel_z))
    order = sorted(range(len(channel_z)), key=lambda i: (-abs(channel_z[i]), i))[:k]
    out = []
    for i in order:
        has_value = i < len(values)
        out.append(
            {
                "channel": names[i],
                "z": round(float(channel_z[i]), 4),
                "value": round(float(values[i]), 6) if has_value else None,
                "normal": round(float(normals[i]), 6)
                if has_value and normals and i < len(normals)
                else None,
            }
        )
    return out


def validate(alert: dict[str, Any]) -> None:
    """Raise ValueError when an alert dict breaks the schema (used by tests and consumers).

    Schema 1 events (written before evidence and continuations) are checked against the
    schema-1 fields; values new in schema 2 are checked on schema-2 events.
    """
    v2 = alert.get("schema") != 1
    missing = [f for f in (FIELDS if v2 else FIELDS_V1) if f not in alert]
    if missing:
        raise ValueError(f"alert misses fields {missing}")
    if alert["status"] not in STATUSES:
        raise ValueError(f"bad status {alert['status']!r}")
    if alert["status"] == "close" and alert["close_reason"] not in CLOSE_REASONS:
        raise ValueError(f"close without a valid close_reason: {alert['close_reason']!r}")
    if alert["episode_end"] < alert["episode_start"]:
        raise ValueError("episode_end before episode_start")
    if not v2:
        return
    if alert["scenario"] not in ALERT_SCENARIOS:
        raise ValueError(f"bad scenario {alert['scenario']!r} (expected one of {ALERT_SCENARIOS})")
    if alert["threshold_source"] not in THRESHOLD_SOURCES:
        raise ValueError(f"bad threshold_source {alert['threshold_source']!r} (expected one of {THRESHOLD_SOURCES})")
    lo, hi = alert["evidence_start"], alert["evidence_end"]
    if not (isinstance(lo, int) and isinstance(hi, int) and alert["episode_start"] <= lo <= hi <= alert["episode_end"]):
        raise ValueError(f"evidence [{lo}, {hi}) is not a span inside the episode "
                         f"[{alert['episode_start']}, {alert['episode_end']}]")  # fmt: skip
    if alert["continues"] is not None and not isinstance(alert["continues"], str):
        raise ValueError(f"continues must be an alert_id or null, got {alert['continues']!r}")


def encode(alert: dict[str, Any]) -> bytes:
    return json.dumps({f: alert[f] for f in FIELDS}, separators=(",", ":")).encode()


def format_line(a: dict[str, Any]) -> str:
    """One readable line per alert event (for `darkpool alerts`)."""
    feats = ", ".join(f"{f['channel']} z={f['z']:+.1f}" for f in a.get("top_features", [])[:3])
    who = ",".join(p["participant"] for p in a.get("participants", [])[:3]) or "-"
    tail = f" [{a['close_reason']}]" if a["status"] == "close" else ""
    deg = " DEGRADED" if a.get("degraded") else ""
    evidence = f" evidence={a['evidence_start']}..{a['evidence_end']}" if a.get("evidence_end") else ""
    cont = f" continues={a['continues'][:10]}" if a.get("continues") else ""
    return (
        f"{a['status'].upper():6} {a['alert_id'][:10]} {a['instrument']:<8} "
        f"{a['scenario']}({a['scenario_probability']:.2f}) peak={a['peak_score']:.3f} "
        f"thr={a['threshold']:.3f}/{a['threshold_source']} windows={a['n_windows']} "
        f"episode={a['episode_start']}..{a['episode_end']}{evidence}{cont} who={who} [{feats}] "
        f"lat={a['latency_ms']}ms{deg}{tail}"
    )
