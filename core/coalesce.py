"""Per-instrument decision state: threshold baseline + alert coalescing (pure, no Flink).

`InstrumentState` is everything the decision stage (udfs/shard_thresholds.py) keeps per
instrument, as one small JSON document (no pickling; readable in a savepoint dump). Its
size is bounded: fixed-size estimators, channel normals (<= MAX_CHANNELS) and one open
episode with <= 2 x top_participants participants.

Episode state machine (one alert id per episode):

    no episode --window above threshold--> OPEN
    open       --window above-------------> UPDATE (on a new peak, a new leading
                                             scenario, or every `update_every` windows)
    open       --`close_after` consecutive windows below--> CLOSE (below_threshold)
    open       --no window for `quiet_gap_ms` of event time-> CLOSE (quiet_gap)
    open       --a window above, `max_episode_ms` past the episode's start
                                          --> CLOSE (max_duration), and that window
                                              OPENs a continuation: a new alert whose
                                              `continues` is the closed one's id and
                                              whose episode starts where it ended

Evidence: the panes whose surprise (`ScoredWindow.pane_surprise`) is >=
`evidence_fraction` x the episode's most surprising pane so far (1.0: that pane). A
flagged window with a new peak replaces the span with its own such panes; a weaker one
widens it only with panes that reach the cut; a window without per-pane surprise
contributes its last pane. `evidence_start` / `evidence_end` are clipped to the episode
(two ints and the peak in the episode state).

Scenario: the mean of P(scenario | abuse) (each manipulation scenario's probability over
their sum) over the flagged windows; the best one, or "unknown" when that mean is below
`min_scenario_probability`. The model's scenario head is temperature-calibrated on
validation windows of known abuse (model.train.calibrate_scenarios).

Degraded windows (scored by the rules while the scorer was down, udfs/scoring.py) are
judged against the rules' own threshold (source `rules`) and teach nothing.

The baseline learns only from windows that are below threshold *and* outside an open
episode (river's protect_anomaly_detector): overlapping sliding windows right after an
episode still contain its events, and must not teach the baseline that abuse is normal.

Older state (written before schema 2 of the alerts) restores with defaults: see
core/thresholds.py for the threshold (warm or warming up again, empty alert budget);
an open episode gets its whole span as evidence (`episode_start`..`episode_end`) and no
`continues`.

Windows must be fed in event-time order per instrument (the job's ordered scoring stage
does); a window not newer than the last one decided is counted `stale` and skipped.
State written with the reorder buffer of earlier versions (a `pending` list, always empty
in the job's state, which never used it) restores with the list ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.alerts import (
    SCHEMA_VERSION,
    UNKNOWN_SCENARIO,
    alert_id,
    iso_times,
    score_margin,
    severity,
    top_features,
)
from core.participant_account import account, merge
from core.records import ScoredWindow
from core.schemas import COMPACT_JSON, SCENARIOS  # one encoder for every state write
from core.thresholds import Baseline, ChannelNormals, Threshold, ThresholdConfig

MAX_CHANNELS = 64  # channel normals kept per instrument (the model has far fewer)



@dataclass
class Episode:
    alert_id: str
    instrument: str
    model_version: str
    start: int  # window_start of the first window above threshold
    last_above_end: int
    peak_score: float
    peak_end: int
    n_above: int = 1
    below: int = 0  # consecutive windows below threshold since the last one above
    seq: int = 0
    prob_sum: list[float] = field(default_factory=lambda: [0.0] * len(SCENARIOS))
    participants: dict[str, float] = field(default_factory=dict)
    peak_features: list[dict[str, Any]] = field(default_factory=list)
    degraded: bool = False
    # [evidence_start, evidence_end): union of the flagged windows' evidence panes (ms);
    # None only in state written before evidence existed (then: the episode's span)
    evidence_start: int | None = None
    evidence_end: int | None = None
    continues: str | None = None  # alert_id this episode continues (max_duration split)
    # the largest pane surprise of its flagged windows: evidence panes are those within
    # evidence_fraction of it (a later, weaker window cannot widen the span with its
    # ordinary panes; a stronger one replaces it)
    peak_surprise: float = 0.0
    # what the kept participants did per pane of the evidence span (ScoredWindow.accounts):
    # participant -> {pane start ms (str: a JSON key): core.participant_account.STATS}
    pane_stats: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.evidence_start is None or self.evidence_end is None:
            self.evidence_start, self.evidence_end = self.start, self.last_above_end

    def scenario(self, min_probability: float) -> tuple[str, float]:
        """Most likely non-normal scenario by mean probability over flagged windows;
        "unknown" (with that probability) when no scenario reaches `min_probability`."""
        means = [p / max(self.n_above, 1) for p in self.prob_sum]
        best = max(range(1, len(SCENARIOS)), key=lambda i: (means[i], -i))
        return (SCENARIOS[best] if means[best] >= min_probability else UNKNOWN_SCENARIO), means[best]


@dataclass
class InstrumentState:
    baseline: Baseline = field(default_factory=Baseline)
    channels: ChannelNormals = field(default_factory=lambda: ChannelNormals.empty(0))
    episode: Episode | None = None
    last_end: int | None = None  # window_end of the last window processed
    stale: int = 0  # windows that arrived after a later one was already processed
    last_thr: list[Any] | None = None  # [value, source, regime, global] of the last window

    # ---- serialization (JSON of primitives) ------------------------------------------
    def to_json(self) -> str:
        ep = None
        if self.episode is not None:
            ep = dict(self.episode.__dict__)
        return COMPACT_JSON(
            {
                "baseline": self.baseline.to_dict(),
                "channels": self.channels.to_packed(),
                "episode": ep,
                "last_end": self.last_end,
                "stale": self.stale,
                "last_thr": self.last_thr,
            }
        )

    @classmethod
    def from_json(cls, text: str, cfg: ThresholdConfig | None = None) -> InstrumentState:
        """Read `to_json`; `cfg` (the decision stage's config) judges how state written
        before the warm-up sample restores (core/thresholds.py)."""
        d = json.loads(text)
        ep = Episode(**d["episode"]) if d["episode"] else None
        return cls(
            baseline=Baseline.from_dict(d["baseline"], cfg),
            channels=(  # packed since 2026-11-29; the list layout of older state still reads
                ChannelNormals.from_packed(d["channels"])
                if isinstance(d["channels"], dict)
                else ChannelNormals.from_list(d["channels"])
            ),
            episode=ep,
            last_end=d["last_end"],
            stale=int(d["stale"]),
            last_thr=d["last_thr"],
        )


# ---- decision -------------------------------------------------------------------------
def _event(
    ep: Episode, status: str, window_end: int, score: float, thr: Threshold, global_thr: float,
    now_ms: int, cfg: ThresholdConfig, reason: str | None = None, read_ms: int | None = 0,
) -> dict[str, Any]:  # fmt: skip
    """One alert event. `read_ms`: when the source read the event that caused this
    decision (latency_ms = now_ms - read_ms); 0 = not known (a window scored outside the
    job): then measured from window_end, as event time; None = decided by a timer (the
    watermark passed a quiet gap: no single read caused it), latency_ms null."""
    scenario, prob = ep.scenario(cfg.min_scenario_probability)
    parts = sorted(ep.participants.items(), key=lambda kv: (-kv[1], kv[0]))
    panes = ep.pane_stats.get(parts[0][0]) if parts else None
    # the rules score on their own raw scale (threshold 1), whatever the model's scale
    margin = score_margin(ep.peak_score, thr.value, "raw" if thr.source == "rules" else cfg.score_scale)
    ev = {
        "schema": SCHEMA_VERSION,
        "alert_id": ep.alert_id,
        "seq": ep.seq,
        "status": status,
        "instrument": ep.instrument,
        "episode_start": ep.start,
        "episode_end": ep.last_above_end,
        "evidence_start": ep.evidence_start,
        "evidence_end": ep.evidence_end,
        "continues": ep.continues,
        "window_end": window_end,
        "n_windows": ep.n_above,
        "score": round(score, 6),
        "peak_score": round(ep.peak_score, 6),
        "peak_window_end": ep.peak_end,
        "threshold": round(thr.value, 6),
        "threshold_source": thr.source,
        "regime": thr.regime,
        "global_threshold": round(global_thr, 6),
        "scenario": scenario,
        "scenario_probability": round(prob, 4),
        "top_features": ep.peak_features,
        "participants": [
            {"participant": p, "weight": round(w, 4), "share": round(min(w / max(ep.n_above, 1), 1.0), 4)}
            for p, w in parts[: cfg.top_participants]
        ],
        "close_reason": reason,
        "model_version": ep.model_version,
        "degraded": ep.degraded,
        "emitted_at": now_ms,
        "latency_ms": None if read_ms is None else now_ms - (read_ms or window_end),
        "severity": severity(margin, ep.last_above_end - ep.start, scenario),
        "score_margin": round(margin, 4),
        "account": account(merge(panes.values())) if panes else None,
    }
    ev.update(iso_times(ev))
    ep.seq += 1
    return ev


def _absorb(ep: Episode, state: InstrumentState, w: ScoredWindow, cfg: ThresholdConfig) -> None:
    """Fold one flagged window into the episode (bounded participant map)."""
    ep.last_above_end, ep.below = w.window_end, 0
    top = max(w.pane_surprise, default=0.0)
    if top > ep.peak_surprise:  # a stronger signal: the evidence is its panes
        ep.peak_surprise = top
        ep.evidence_start, ep.evidence_end = evidence(w, cfg, not_before=ep.start)
    elif top <= 0.0 or top >= cfg.evidence_fraction * ep.peak_surprise:
        lo, hi = evidence(w, cfg, not_before=ep.start, cut=cfg.evidence_fraction * ep.peak_surprise)
        ep.evidence_start, ep.evidence_end = min(ep.evidence_start, lo), max(ep.evidence_end, hi)
    # the manipulation scenarios as P(scenario | abuse): the alert already says "abuse";
    # which kind is the question (the model's P(normal) stays in slot 0, unused for naming)
    probs = w.scenario_probs[: len(SCENARIOS)]
    rest = sum(probs[1:])
    for i, p in enumerate(probs):
        ep.prob_sum[i] += p if i == 0 or rest <= 0 else p / rest
    for name, weight in w.participants:
        ep.participants[name] = ep.participants.get(name, 0.0) + weight
    keep = sorted(ep.participants.items(), key=lambda kv: (-kv[1], kv[0]))[
        : 2 * cfg.top_participants
    ]
    ep.participants = dict(keep)
    _keep_accounts(ep, w)
    ep.degraded = ep.degraded or w.degraded
    if w.score > ep.peak_score or not ep.peak_features:
        normals = state.channels.mean.tolist() if len(state.channels) else None
        ep.peak_score, ep.peak_end = max(w.score, ep.peak_score), w.window_end
        ep.peak_features = top_features(w.channel_z, w.features, normals, cfg.top_features)


def _keep_accounts(ep: Episode, w: ScoredWindow) -> None:
    """Keep the kept participants' pane stats inside the evidence span (a pane that
    leaves the span is dropped; a later window covering it sends it again)."""
    lo, hi = ep.evidence_start, ep.evidence_end
    kept = {
        name: {t: v for t, v in panes.items() if lo <= int(t) < hi}  # type: ignore[operator]
        for name, panes in ep.pane_stats.items()
        if name in ep.participants
    }
    for name, pane_ms, stats in w.account_rows():  # (decoded here: only windows an alert keeps)
        if lo <= pane_ms < hi and name in ep.participants:  # type: ignore[operator]
            kept.setdefault(name, {})[str(pane_ms)] = list(stats)
    ep.pane_stats = {name: panes for name, panes in kept.items() if panes}


def evidence(w: ScoredWindow, cfg: ThresholdConfig, not_before: int, cut: float | None = None) -> tuple[int, int]:
    """[start, end) of the panes that made window `w` fire, not before `not_before`.

    The panes whose surprise is >= `cut` (default: evidence_fraction x the window's most
    surprising one), from the first to the last of them; the window's last pane when it has no per-pane
    surprise (older producers; all zero), or when all of those panes lie before
    `not_before` (a continuation's first window reaching back into the alert it
    continues).

    >>> from core.records import ScoredWindow
    >>> w = ScoredWindow(instrument="A", window_start=0, window_end=60_000, score=2.0,
    ...                  scenario_probs=(), recon_error=0.0, channel_z=(), volatility=0.0,
    ...                  volume=0.0, model_version="v", global_threshold=1.0, max_event_ts=0,
    ...                  pane_surprise=(0, 0, 0.2, 3.0, 1.6, 0.1, 0, 0, 0, 0, 0, 0))
    >>> evidence(w, ThresholdConfig(evidence_fraction=0.5), not_before=0)
    (15000, 25000)
    >>> evidence(w, ThresholdConfig(), not_before=0)  # the default: the most surprising pane
    (15000, 20000)
    >>> evidence(w, ThresholdConfig(), not_before=40_000)  # all before: the last pane
    (55000, 60000)
    """
    ps, start, end = w.pane_surprise, w.window_start, w.window_end
    n = len(ps)
    top = max(ps) if n else 0.0
    if top > 0:
        cut = min(cfg.evidence_fraction * top if cut is None else cut, top)
        first = next(i for i in range(n) if ps[i] >= cut)
        last = next(i for i in range(n - 1, -1, -1) if ps[i] >= cut)
        lo, hi = start + first * (end - start) // n, start + (last + 1) * (end - start) // n
        if hi > not_before:
            return max(lo, not_before), hi
    pane = (end - start) // n if n else min(cfg.fallback_pane_ms, end - start)
    return max(end - pane, not_before), end


def close_if_quiet(
    state: InstrumentState, now_event: int, cfg: ThresholdConfig, now_ms: int, read_ms: int | None = None
) -> list[dict[str, Any]]:
    """Close the open episode when no window came for quiet_gap_ms of event time.
    `read_ms`: the read time of the window that showed the gap (None: a timer did)."""
    ep = state.episode
    if ep is None or state.last_end is None or now_event < state.last_end + cfg.quiet_gap_ms:
        return []
    value, source, regime, global_thr = state.last_thr or [0.0, "global", "normal", 0.0]
    thr = Threshold(value, source, regime)
    deadline = state.last_end + cfg.quiet_gap_ms
    ev = _event(ep, "close", deadline, ep.peak_score, thr, global_thr, now_ms, cfg, "quiet_gap", read_ms)
    state.episode = None
    return [ev]


def is_idle(state: InstrumentState, now_event: int, cfg: ThresholdConfig) -> bool:
    """True when the instrument was silent for idle_ttl_ms: its state may be dropped."""
    return (
        state.last_end is not None and now_event >= state.last_end + cfg.idle_ttl_ms
    )


def step(
    state: InstrumentState, w: ScoredWindow, cfg: ThresholdConfig, now_ms: int, margin_cut: float = 0.0
) -> list[dict[str, Any]]:
    """Decide on one window (event-time order); returns the alert events it causes.

    `margin_cut`: the instrument's alert-budget raise (core/alert_budget.py), on the
    score_margin scale; the threshold then says source "budget"."""
    if state.last_end is not None and w.window_end <= state.last_end:
        state.stale += 1  # straggler past the reorder buffer: deciding now would reorder history
        return []
    out = close_if_quiet(state, w.window_end, cfg, now_ms, w.read_ms) if state.episode else []
    if w.degraded:
        # scored by the rules (scorer down): their own scale, threshold 1; the model's
        # baseline neither judges nor learns from it
        thr = Threshold(w.global_threshold, "rules", "normal")
    else:
        thr = state.baseline.threshold(w.volatility, w.volume, w.global_threshold, cfg)
        state.baseline.observe()
        if margin_cut > 0:
            thr = Threshold(cfg.raised(thr.value, margin_cut), "budget", thr.regime)
    state.last_thr = [thr.value, thr.source, thr.regime, w.global_threshold]
    ep = state.episode

    def emit(episode: Episode, status: str, reason: str | None = None) -> None:
        out.append(_event(episode, status, w.window_end, w.score, thr, w.global_threshold, now_ms, cfg, reason,
                          w.read_ms))  # fmt: skip

    flagged = w.score > thr.value
    continues, start = None, w.window_start
    if flagged and ep is not None and w.window_end - ep.start > cfg.max_episode_ms:
        # the alert would outgrow max_episode_ms: close it, go on in a new one from its end
        emit(ep, "close", "max_duration")
        continues, start = ep.alert_id, max(w.window_start, ep.last_above_end)
        state.episode = ep = None
    if flagged:
        if ep is None:
            # evidence starts as an empty span (end before start) that _absorb widens
            ep = Episode(
                alert_id=alert_id(w.instrument, w.window_end, w.model_version),
                instrument=w.instrument, model_version=w.model_version, start=start,
                last_above_end=w.window_end, peak_score=w.score, peak_end=w.window_end,
                evidence_start=w.window_end, evidence_end=start, continues=continues,
            )  # fmt: skip
            state.episode = ep
            _absorb(ep, state, w, cfg)
            emit(ep, "open")
        else:
            old_peak, old_scenario = ep.peak_score, ep.scenario(cfg.min_scenario_probability)[0]
            ep.n_above += 1
            _absorb(ep, state, w, cfg)
            if (
                w.score > old_peak
                or ep.scenario(cfg.min_scenario_probability)[0] != old_scenario
                or (ep.n_above - 1) % cfg.update_every == 0
            ):
                emit(ep, "update")
    elif ep is not None:
        ep.below += 1
        if ep.below >= cfg.close_after:
            emit(ep, "close", "below_threshold")
            state.episode = None
    elif not w.degraded:
        state.baseline.learn(w.score, w.volatility, w.volume, cfg)
        _learn_channels(state, w, cfg)
    if not w.degraded:  # warm-up / re-learn sample, or the alert budget
        state.baseline.calibrate(w.score, flagged, cfg)
    state.last_end = w.window_end
    return out


def _learn_channels(state: InstrumentState, w: ScoredWindow, cfg: ThresholdConfig) -> None:
    n = min(len(w.features), MAX_CHANNELS)
    if len(state.channels) != n:
        state.channels = ChannelNormals.empty(n)  # channel set changed: relearn
    state.channels.update(np.asarray(w.features[:n], dtype=np.float64), cfg.alpha, cfg.winsor_c)
