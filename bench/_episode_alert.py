"""An alert as the job would write it for one labeled episode of a `darkpool generate`
folder: inputs of `darkpool explain` for its benchmark and its tests (no job, no model).

The fields agree with the history: the evidence span is the episode's own span on the
job's 5 s pane grid, the episode starts a 60 s window before it, the participants are the
three with most events inside the evidence span (shares of their events), and the account
is what core/participant_account.py says the first of them did there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from core import alerts
from core.channels import CHANNELS, N_CHANNELS
from core.participant_account import account, merge, pair_stats
from core.thresholds import logit

MS = 1_000_000
SLIDE_MS, WINDOW_MS = 5_000, 60_000
PEAK, THRESHOLD = 0.97, 0.8


def episode_alert(data: Path, episode: int = 0, model_version: str = "explain-bench") -> list[dict[str, Any]]:
    """The open and close events of an alert for episode number `episode` of `data`."""
    ep = pq.read_table(data / "episodes.parquet").slice(episode, 1).to_pylist()[0]
    lo = ep["start_ts"] // MS // SLIDE_MS * SLIDE_MS
    hi = -(-(ep["end_ts"] // MS + 1) // SLIDE_MS) * SLIDE_MS
    ev = pq.read_table(data / "events.parquet", filters=[("instrument", "=", ep["instrument"]),
                                                         ("ts", ">=", lo * MS), ("ts", "<", hi * MS)]).to_pandas()  # fmt: skip
    counts = ev["participant"].value_counts().head(3)
    names = counts.index.tolist()
    n_windows = (hi - lo) // SLIDE_MS + 1
    cols = {c: ev[c].to_numpy(object if c in ("participant", "contra", "event", "side", "order_id") else None)
            for c in ("participant", "contra", "event", "side", "price", "qty", "bid", "ask", "ts", "order_id")}  # fmt: skip
    key = np.full(len(ev), "k", dtype=object)
    first = pair_stats(key=key, **cols, want_key=np.array(["k"], dtype=object), want_name=np.array(names[:1], dtype=object))
    z = [0.0] * N_CHANNELS
    for channel, value in (("cancel_fill_ratio", 9.5), ("log_cancel", 4.2), ("participant_hhi", 2.5)):
        z[CHANNELS.index(channel)] = value
    margin = logit(PEAK) - logit(THRESHOLD)
    scenario = ep["scenario"] if ep["scenario"] in alerts.ALERT_SCENARIOS else alerts.UNKNOWN_SCENARIO
    base: dict[str, Any] = {
        "schema": alerts.SCHEMA_VERSION, "alert_id": alerts.alert_id(ep["instrument"], lo + WINDOW_MS, model_version),
        "instrument": ep["instrument"], "episode_start": lo - WINDOW_MS + SLIDE_MS, "episode_end": hi,
        "evidence_start": lo, "evidence_end": hi, "continues": None, "window_end": hi, "n_windows": n_windows,
        "score": PEAK, "peak_score": PEAK, "peak_window_end": hi, "threshold": THRESHOLD,
        "threshold_source": "instrument", "regime": "active", "global_threshold": 0.75, "scenario": scenario,
        "scenario_probability": 0.62, "severity": alerts.severity(margin, hi - lo + WINDOW_MS - SLIDE_MS, scenario),
        "score_margin": round(margin, 4),
        "top_features": alerts.top_features(z, z, None, 3),  # level channels: the value is a z too
        "participants": [{"participant": n, "weight": round(float(c / counts.sum() * n_windows), 4),
                          "share": round(float(c / counts.sum()), 4)} for n, c in counts.items()],
        "account": account(merge(first)), "close_reason": None, "model_version": model_version, "degraded": False,
        "emitted_at": hi + 250, "latency_ms": 250,
    }  # fmt: skip
    opened = {**base, "seq": 0, "status": "open", "peak_score": 0.9, "score": 0.9}
    closed = {**base, "seq": 1, "status": "close", "close_reason": "below_threshold"}
    out = [{**e, **alerts.iso_times(e)} for e in (opened, closed)]
    for e in out:
        alerts.validate(e)
    return out
