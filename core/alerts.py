"""Alert events on `darkpool.alerts`: the JSON schema, its builder helpers and the readable
line (pure, no Flink).

One *episode* of suspicious activity on one instrument = one `alert_id`, carried by a
sequence of events: exactly one `open`, zero or more `update`, one `close`. Consumers
keep the latest event per `alert_id` (highest `seq`). The id is deterministic, so a job
restarted from a checkpoint or a replay of the same history emits the same ids, and the
at-least-once fast topic can be de-duplicated on (`alert_id`, `seq`).

Schema (version 3; JSON object, UTF-8; the Kafka message has no key: the job's sink sets
only the value, consumers key on `alert_id`). Times are event time in epoch milliseconds
unless named otherwise; every `*_iso` field is the same instant as ISO-8601 UTC
("2024-03-01T15:31:05.250Z"). docs/ALERTS.md is the reader's version of this list.

Versions, each a superset of the one before (`validate` checks an event against the
fields of its own version, so events written by older jobs stay readable):
    1  the original layout (FIELDS_V1)
    2  + evidence_start, evidence_end, continues
    3  + severity, score_margin, the *_iso times, top_features[].z_clipped / level /
       unit, participants[].share
    4  + account

    schema                int    4
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
                                 surprise is >= evidence_fraction x the window's most
                                 surprising pane (ScoredWindow.pane_surprise; the window's
                                 last pane when the producer sends none);
                                 [evidence_start, evidence_end) is their union, inside
                                 [episode_start, episode_end]
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
    threshold_source      str    one of THRESHOLD_SOURCES (THRESHOLD_SOURCE_TEXT says each
                                 in words):
                                 global        warm-up: the model's calibrated threshold
                                               (the instrument's first warmup_windows)
                                 instrument    the instrument's own baseline
                                 regime        its baseline for the window's regime
                                 floor | ceil  clamped to floor_ratio | ceil_ratio x global
                                 recalibrated  the instrument broke its alert budget
                                               (flagged share > max_flag_rate): its
                                               threshold is being / was re-learned from
                                               recent windows, flagged ones included
                                 budget        any of the above raised by the instrument's
                                               alert-budget cut (--alert-budget FILE,
                                               core/alert_budget.py)
                                 rules         degraded mode (threshold 1)
    regime                str    calm | normal | active (triggering window vs the instrument's normal)
    global_threshold      float  the model's calibrated threshold
    scenario              str    one of ALERT_SCENARIOS: most likely manipulation (mean
                                 P(scenario | abuse) over the episode's flagged windows,
                                 from the model's calibrated scenario head), or
                                 "unknown" when that mean is below
                                 min_scenario_probability (alert-only value, not in
                                 core.schemas.SCENARIOS): a label is never shown below it
    scenario_probability  float  the best scenario's mean probability (also for unknown)
    severity              str    low | medium | high: `severity(score_margin, episode
                                 length, scenario)`, the rule in SEVERITY_*
    score_margin          float  peak_score over threshold on the threshold's scale:
                                 logit(peak) - logit(threshold) for the model's probability
                                 scores, (peak - threshold) / threshold for raw or rules scores
    top_features          list   [{"channel", "z", "z_clipped", "level", "value", "unit",
                                 "normal"}] at the peak window: the channels with the
                                 largest positive channel_z (none <= 0: a channel the
                                 model explained better than usual is no evidence).
                                 z is the scorer's raw, unbounded
                                 per-channel z (the rules' channel score when degraded);
                                 z_clipped = z within +-Z_CLIP and level its word
                                 (Z_LEVELS); value = the window's mean of the channel as
                                 the model sees it, in `unit` (core/channels.py; "z vs own
                                 normal" for the level channels of
                                 core/pane_normals.RELATIVE_CHANNELS), normal = the
                                 instrument's learned normal of that value (null when the
                                 job has no summary)
    participants          list   [{"participant", "weight", "share"}] whose activity rose
                                 most over the episode: weight = the sum over flagged
                                 windows of the participant's share of the window's named
                                 participants' burst (udfs.assembler.burst_activity: events
                                 above its own median pane); share = weight / n_windows
    account               str|null  what the first of `participants` did inside the evidence
                                 span, in one line (core/participant_account.py): orders
                                 placed per side (count, shares, ticks from the quote),
                                 shares bought / sold, cancels and how soon; null when the
                                 producer sent no per-pane activity for it
    close_reason          str|null  below_threshold | quiet_gap | max_duration (close only)
    model_version         str
    degraded              bool   any window of the episode scored in degraded mode
    emitted_at            int    processing time (wall clock, ms) when the event was made
    latency_ms            int|null  emitted_at - the wall-clock time at which the job's
                                 source read the event whose window caused this decision:
                                 the job's own decision latency, live or on a replay (the
                                 exactly-once topic adds the checkpoint wait). null for a
                                 close decided by a timer (quiet gap seen by the watermark:
                                 no single read caused it). From a scorer outside the job
                                 (no read time), emitted_at - window_end
    window_end_iso, episode_start_iso, episode_end_iso, evidence_start_iso,
    evidence_end_iso, peak_window_end_iso, emitted_at_iso   str   ISO-8601 UTC of the same
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from core.channels import CHANNEL_UNITS
from core.pane_normals import RELATIVE_CHANNELS, Z_CLIP
from core.schemas import SCENARIOS
from core.thresholds import logit

SCHEMA_VERSION = 4
STATUSES = ("open", "update", "close")
CLOSE_REASONS = ("below_threshold", "quiet_gap", "max_duration")
# every value of threshold_source, in one place (core/thresholds.py makes them)
THRESHOLD_SOURCES = ("global", "instrument", "regime", "floor", "ceil", "recalibrated", "budget", "rules")
# ... and what each means to someone reading an alert
THRESHOLD_SOURCE_TEXT = {
    "global": "model default, instrument warming up",
    "instrument": "instrument's own",
    "regime": "instrument's own for this market regime",
    "floor": "instrument's own, at its floor",
    "ceil": "instrument's own, at its cap",
    "recalibrated": "raised: this instrument alerts often",
    "budget": "raised to keep this instrument within the alert budget",
    "rules": "rules, scorer down",
}
UNKNOWN_SCENARIO = "unknown"  # no scenario likely enough (alerts only)
ALERT_SCENARIOS = (*SCENARIOS[1:], UNKNOWN_SCENARIO)  # "normal" is never an alert's scenario

# ---- severity: a pure function of margin, length and scenario ---------------------------
SEVERITIES = ("low", "medium", "high")
# score_margin (logit units for the model: +0.75 = odds 2.1x the threshold's, +2 = 7.4x)
# worth one and two points
SEVERITY_MARGINS = (0.75, 2.0)
# an episode at least this long (episode_end - episode_start) is worth a point: one
# 60 s window flagged on its own spans 60 s, so this is over a minute of flagging
SEVERITY_LONG_MS = 120_000
# a named scenario (not "unknown") is worth a point; points -> severity:
# 0-1 low, 2 medium, 3-4 high
SEVERITY_POINTS = (2, 3)

# top_features: words for |z| (upper bounds; at or above Z_CLIP: "extreme")
Z_LEVELS = ((2.0, "mild"), (4.0, "elevated"), (Z_CLIP, "high"))
RELATIVE_UNIT = "z vs own normal"  # the model sees these channels as robust z (clipped +-8)

FIELDS_V1 = (
    "schema", "alert_id", "seq", "status", "instrument", "episode_start", "episode_end",
    "window_end", "n_windows", "score", "peak_score", "peak_window_end", "threshold",
    "threshold_source", "regime", "global_threshold", "scenario", "scenario_probability",
    "top_features", "participants", "close_reason", "model_version", "degraded",
    "emitted_at", "latency_ms",
)  # fmt: skip
FIELDS_V2 = (*FIELDS_V1[:7], "evidence_start", "evidence_end", "continues", *FIELDS_V1[7:])
# epoch-ms fields that get an ISO-8601 twin named <field>_iso
ISO_TIMES = ("window_end", "episode_start", "episode_end", "evidence_start", "evidence_end",
             "peak_window_end", "emitted_at")  # fmt: skip
FIELDS_V3 = (*FIELDS_V2, "severity", "score_margin", *(f"{f}_iso" for f in ISO_TIMES))
FIELDS = (*FIELDS_V3, "account")
_FIELDS_OF = {1: FIELDS_V1, 2: FIELDS_V2, 3: FIELDS_V3}  # older schema -> its fields (newest: FIELDS)
# fields that depend on when the event was made, not on what was decided: two runs that
# decide the same differ only in these (used to compare runs: recovery tests, chaos)
PROCESSING_TIME_FIELDS = ("emitted_at", "emitted_at_iso", "latency_ms")


def alert_id(instrument: str, open_window_end: int, model_version: str) -> str:
    """Deterministic id of an episode: same history + same model -> same id."""
    key = f"{instrument}|{int(open_window_end)}|{model_version}".encode()
    return hashlib.sha1(key).hexdigest()[:20]


def channel_names(n: int) -> tuple[str, ...]:
    """Names of the n model channels (core.features.CHANNELS when it matches)."""
    from core.channels import CHANNELS  # the feature owner's list: one source of truth

    if len(CHANNELS) == n:
        return tuple(CHANNELS)
    return tuple(f"channel_{i}" for i in range(n))


def z_level(z: float) -> str:
    """A word for |z|: mild < 2 <= elevated < 4 <= high < Z_CLIP <= extreme.

    >>> [z_level(z) for z in (1.0, -3.0, 5.0, 1425.0)]
    ['mild', 'elevated', 'high', 'extreme']
    """
    return next((word for bound, word in Z_LEVELS if abs(z) < bound), "extreme")


def value_unit(channel: str) -> str | None:
    """The unit of a top feature's `value`: the model sees level channels as z."""
    return RELATIVE_UNIT if channel in RELATIVE_CHANNELS else CHANNEL_UNITS.get(channel)


def top_features(
    channel_z: tuple[float, ...] | list[float],
    values: tuple[float, ...] | list[float],
    normals: list[float] | None,
    k: int,
) -> list[dict[str, Any]]:
    """The k channels with the largest positive z, with the window value vs the
    instrument normal. z is how much worse than in normal windows the model explained a
    channel (or a rule's score for it): a negative z means *better* explained than usual,
    which is no evidence, so such channels are never listed (they once read "elevated
    (z -2.7)" next to a channel that was not behind the alert).

    >>> [f["channel"] for f in top_features([0.5, -6.0, 3.0], [1, 2, 3], None, 3)]
    ['channel_2', 'channel_0']
    """
    names = channel_names(len(channel_z))
    evidence = (i for i in range(len(channel_z)) if channel_z[i] > 0)
    order = sorted(evidence, key=lambda i: (-channel_z[i], i))[:k]
    out = []
    for i in order:
        has_value = i < len(values)
        z = float(channel_z[i])
        out.append(
            {
                "channel": names[i],
                "z": round(z, 4),
                "z_clipped": round(max(-Z_CLIP, min(Z_CLIP, z)), 4),
                "level": z_level(z),
                "value": round(float(values[i]), 6) if has_value else None,
                "unit": value_unit(names[i]),
                "normal": round(float(normals[i]), 6)
                if has_value and normals and i < len(normals)
                else None,
            }
        )
    return out


# ---- readable fields ----------------------------------------------------------------------
def iso_utc(ms: int | None) -> str | None:
    """Epoch milliseconds -> ISO-8601 UTC with a "Z".

    >>> iso_utc(1709307065250)
    '2024-03-01T15:31:05.250Z'
    """
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_times(alert: dict[str, Any]) -> dict[str, str | None]:
    """The `*_iso` twins of an event's epoch-ms fields."""
    return {f"{f}_iso": iso_utc(alert.get(f)) for f in ISO_TIMES}


def score_margin(score: float, threshold: float, scale: str) -> float:
    """How far `score` clears `threshold`: logit difference on the "logit" scale (the
    model's probabilities), the excess as a share of the threshold otherwise ("raw" and
    the rules, whose threshold is 1).

    >>> round(score_margin(0.9, 0.5, "logit"), 3), score_margin(3.0, 1.0, "raw")
    (2.197, 2.0)
    """
    if scale == "logit":
        return logit(score) - logit(threshold)
    return (score - threshold) / max(abs(threshold), 1e-9)


def severity(margin: float, duration_ms: int, scenario: str) -> str:
    """low | medium | high from the score margin, the episode's length and its scenario:
    a point per SEVERITY_MARGINS bound cleared, one for an episode of SEVERITY_LONG_MS or
    more, one for a named scenario; SEVERITY_POINTS bounds medium and high.

    >>> severity(0.3, 60_000, "unknown"), severity(2.5, 60_000, "unknown"), severity(2.5, 60_000, "spoofing")
    ('low', 'medium', 'high')
    """
    points = sum(margin >= m for m in SEVERITY_MARGINS)
    points += duration_ms >= SEVERITY_LONG_MS
    points += scenario not in (UNKNOWN_SCENARIO, "")
    return SEVERITIES[sum(points >= p for p in SEVERITY_POINTS)]


def validate(alert: dict[str, Any]) -> None:
    """Raise ValueError when an alert dict breaks the schema (used by tests and consumers).

    An event is checked against the fields of its own schema version (1, 2 or 3), so
    events written by older jobs stay valid; values new in a version are checked on
    events of that version and later.
    """
    version = alert.get("schema")
    missing = [f for f in _FIELDS_OF.get(version, FIELDS) if f not in alert]  # type: ignore[arg-type]
    if missing:
        raise ValueError(f"alert misses fields {missing}")
    if alert["status"] not in STATUSES:
        raise ValueError(f"bad status {alert['status']!r}")
    if alert["status"] == "close" and alert["close_reason"] not in CLOSE_REASONS:
        raise ValueError(f"close without a valid close_reason: {alert['close_reason']!r}")
    if alert["episode_end"] < alert["episode_start"]:
        raise ValueError("episode_end before episode_start")
    if version == 1:
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
    if version == 2:
        return
    if alert["severity"] not in SEVERITIES:
        raise ValueError(f"bad severity {alert['severity']!r} (expected one of {SEVERITIES})")
    if version != 3 and not (alert["account"] is None or isinstance(alert["account"], str)):
        raise ValueError(f"account must be a line of text or null, got {alert['account']!r}")


def encode(alert: dict[str, Any]) -> bytes:
    return json.dumps({f: alert[f] for f in FIELDS}, separators=(",", ":")).encode()


# ---- the readable line --------------------------------------------------------------------
def _exchange_time(ms: int) -> datetime:
    from core.features import EXCHANGE_TZ  # lazily: core.features loads pandas

    return datetime.fromtimestamp(ms / 1000, ZoneInfo(EXCHANGE_TZ))


def _local(ms: int, date: bool = True) -> str:
    t = _exchange_time(ms)
    return t.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")


def _span(lo: int, hi: int) -> str:
    """Two instants in exchange time, the date once when both share it."""
    same_day = _local(lo)[:10] == _local(hi)[:10]
    return f"{_local(lo)}-{_local(hi, date=not same_day)}"


def _offset(ms: int) -> str:
    off = _exchange_time(ms).strftime("%z")
    return f"UTC{off[:3]}:{off[3:]}"


def _duration(ms: int) -> str:
    s = ms / 1000
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if abs(s) >= size:
            return f"{s / size:.1f} {unit}"
    return f"{s:.1f} s"


def _feature(f: dict[str, Any]) -> str:
    z = float(f.get("z_clipped", max(-Z_CLIP, min(Z_CLIP, f["z"]))))
    shown = f"z {'>' if z > 0 else '<'} {z:+.0f}" if abs(z) >= Z_CLIP else f"z {z:+.1f}"
    text = f"{f['channel']} {f.get('level', z_level(f['z']))} ({shown}"
    if f.get("value") is not None:
        unit = f.get("unit") or value_unit(f["channel"]) or ""
        usual = f", usual {f['normal']:.3g}" if f.get("normal") is not None else ""
        text += f"; value {f['value']:.3g} [{unit}]{usual}"
    return text + ")"


def _who(a: dict[str, Any]) -> str:
    n = max(int(a.get("n_windows") or 1), 1)
    parts = [f"{p['participant']} {100 * p.get('share', p.get('weight', 0.0) / n):.0f}%"
             for p in a.get("participants", [])[:3]]  # fmt: skip
    return ", ".join(parts) or "-"


def format_line(a: dict[str, Any]) -> str:
    """One readable line per alert event (for `darkpool alerts`): times in exchange local
    time (America/New_York) with the UTC offset, words instead of codes. Takes events of
    every schema version (fields added later are derived or left out)."""
    start, end = a["episode_start"], a["episode_end"]
    scen = a["scenario"]
    scenario = "scenario unknown" if scen == UNKNOWN_SCENARIO else f"{scen} (p {a['scenario_probability']:.2f})"
    sev = a.get("severity", "")
    source = THRESHOLD_SOURCE_TEXT.get(a["threshold_source"], a["threshold_source"])
    evidence = ""
    if a.get("evidence_end"):  # inside the episode: the time of day says enough
        lo, hi = a["evidence_start"], a["evidence_end"]
        evidence = f" | look at {_local(lo, date=False)}-{_local(hi, date=_local(lo)[:10] != _local(hi)[:10])}"
    cont = f" | continues {a['continues'][:10]}" if a.get("continues") else ""
    feats = "; ".join(_feature(f) for f in a.get("top_features", [])[:3]) or "-"
    lag = a["latency_ms"]
    if lag is None:
        lag_text = "timer"
    else:
        lag_text = _duration(lag) + (" (past data: not a latency)" if lag >= 86_400_000 else "")
    tail = f" | closed: {a['close_reason'].replace('_', ' ')}" if a["status"] == "close" and a.get("close_reason") else ""
    deg = " | DEGRADED (scored by rules)" if a.get("degraded") else ""
    first = (a.get("participants") or [{}])[0].get("participant", "the first")
    did = f" | {first} did: {a['account']}" if a.get("account") else ""
    return (
        f"{a['status'].upper():6} {sev.upper():6} {a['instrument']:<8} {scenario}"
        f" | {_span(start, end)} New York ({_offset(end)}), {a['n_windows']} window{'s' * (a['n_windows'] != 1)}{evidence}"
        f" | peak {a['peak_score']:.3f} vs threshold {a['threshold']:.3f} ({source})"
        f" | top: {feats} | who: {_who(a)}{did} | id {a['alert_id'][:10]}{cont} | lag {lag_text}{deg}{tail}"
    )
