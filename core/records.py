"""The scored-window record: what the scoring stage hands to the decision stage.

One record per (instrument, window) after the scorer answered. Its JSON layout is the
portable form (tests, the backtest path without Flink, the decision-stage tests send one
per Kafka record); inside the job a shard's windows of one pane travel together, pickled
(udfs/shard_thresholds.SCORED_BATCH_TYPE: cheaper than JSON by ~8x, and never stored).

Fields (times are event time, epoch **milliseconds**):

    instrument        str    key
    window_start      int    first ms covered by the window
    window_end        int    exclusive end of the window (= end of its last pane)
    score             float  combined anomaly score from the scorer, high = anomalous
    scenario_probs    [9]    probabilities in the order of core.schemas.SCENARIOS
    recon_error       float  reconstruction error part of the score
    channel_z         [F]    per-channel deviation (order of core.features.CHANNELS)
    volatility        float  this window's realized mid volatility in bps (regime input), >= 0
    volume            float  this window's traded volume (regime input), >= 0
    features          [F]    optional raw per-channel window summary (e.g. mean over
                             panes), for "value vs the instrument's normal"; [] if absent
    participants      [[name, weight], ...]  optional top participants of the window
    model_version     str    scorer metadata `parameters.version`
    global_threshold  float  scorer metadata `parameters.threshold` (calibrated)
    max_event_ts      int    largest event timestamp inside the window (ms)
    degraded          bool   scored without the model (documented fallback mode)
    pane_surprise     [T]    optional per-pane instrument-relative surprise, oldest pane
                             first (the window's panes; 0 for an empty pane): how far the
                             pane's channels sit from the instrument's own normal. The
                             decision stage takes an alert's evidence span from it; []
                             if absent
    read_ms           int    when the job's source read the window's latest-read event
                             (wall clock, ms); the alert latency is measured from it.
                             0 if unknown (then from window_end)
    accounts          [[name, pane_start_ms, [stats]], ...]  optional: what the window's
                             leading participants did in each of its panes
                             (core.participant_account.STATS), for the alert's
                             one-line account of its evidence span; [] if absent
    packed_accounts                the same still packed (core.participant_account.
                             PackedAccount), as the job's scoring stage hands them on:
                             decoded (`account_rows`) only for the windows an alert
                             keeps, not on every window's path; never in the JSON
"""

from __future__ import annotations

import json
import math
import pickle
from dataclasses import dataclass, field, fields
from typing import Any

from core.participant_account import PackedAccount, unpack_accounts


@dataclass(frozen=True)
class ScoredWindow:
    instrument: str
    window_start: int
    window_end: int
    score: float
    scenario_probs: tuple[float, ...]
    recon_error: float
    channel_z: tuple[float, ...]
    volatility: float
    volume: float
    model_version: str
    global_threshold: float
    max_event_ts: int
    features: tuple[float, ...] = ()
    participants: tuple[tuple[str, float], ...] = field(default_factory=tuple)
    degraded: bool = False
    pane_surprise: tuple[float, ...] = ()
    read_ms: int = 0
    accounts: tuple[tuple[str, int, tuple[float, ...]], ...] = ()
    packed_accounts: tuple[PackedAccount, ...] = ()

    def __post_init__(self) -> None:
        # A NaN score would compare False against every threshold and silently never
        # alert; refuse it here, where the producer can still be named.
        if not math.isfinite(self.score):
            raise ValueError(
                f"{self.instrument}@{self.window_end}: score must be finite, got {self.score}"
            )
        if self.window_end <= self.window_start:
            raise ValueError(
                f"{self.instrument}: window_end {self.window_end} <= window_start {self.window_start}"
            )

    def to_json(self) -> str:
        # Field by field: dataclasses.asdict deep-copies every tuple (measured ~0.5 ms per
        # window, the largest single cost of the decision stage).
        d = {f: getattr(self, f) for f in _FIELDS if f != "packed_accounts"}
        d["participants"] = [list(p) for p in self.participants]
        d["accounts"] = [[n, t, list(v)] for n, t, v in self.account_rows()]
        return json.dumps(d, separators=(",", ":"))

    def account_rows(self) -> tuple[tuple[str, int, tuple[float, ...]], ...]:
        """`accounts`, with the packed ones decoded after them."""
        return self.accounts + unpack_accounts(self.packed_accounts) if self.packed_accounts else self.accounts

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScoredWindow:
        return cls(
            instrument=str(d["instrument"]),
            window_start=int(d["window_start"]),
            window_end=int(d["window_end"]),
            score=float(d["score"]),
            scenario_probs=tuple(float(p) for p in d["scenario_probs"]),
            recon_error=float(d.get("recon_error", 0.0)),
            channel_z=tuple(float(z) for z in d.get("channel_z", ())),
            volatility=float(d.get("volatility", 0.0)),
            volume=float(d.get("volume", 0.0)),
            model_version=str(d.get("model_version", "unknown")),
            global_threshold=float(d["global_threshold"]),
            max_event_ts=int(d.get("max_event_ts", d["window_end"])),
            features=tuple(float(v) for v in d.get("features", ()) or ()),
            participants=tuple((str(p), float(w)) for p, w in d.get("participants", ()) or ()),
            degraded=bool(d.get("degraded", False)),
            pane_surprise=tuple(float(v) for v in d.get("pane_surprise", ()) or ()),
            read_ms=int(d.get("read_ms", 0) or 0),
            accounts=tuple((str(n), int(t), tuple(float(x) for x in v)) for n, t, v in d.get("accounts", ()) or ()),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ScoredWindow:
        return cls.from_dict(json.loads(text))


_FIELDS = tuple(f.name for f in fields(ScoredWindow))


def encode_scored_batch(windows: list[ScoredWindow]) -> bytes:
    """Scored windows -> the `windows` field of the scored-batch record (udfs/shard_thresholds).

    Pickled, because this record only ever goes from the job's scoring stage to its
    decision stage, in one job version, and is never kept in state: ~20 us per window
    both ways against ~160 us for the JSON of ScoredWindow.to_json (measured).
    """
    return pickle.dumps(windows, protocol=pickle.HIGHEST_PROTOCOL)


def scored_windows(value: Any) -> list[ScoredWindow]:
    """The scored windows of a scored-batch record (shard, encode_scored_batch bytes)."""
    return pickle.loads(bytes(value[1]))
