"""Grade what the deployed job actually alerted: `darkpool evaluate --alerts FILE_OR_TOPIC --data DIR`.

Input: alert events as JSON lines (what `darkpool alerts --json` prints), or the Kafka
alerts topic read from the beginning with isolation_level=read_committed (so only
alerts of completed checkpoints count, as a downstream consumer would see them).
Graded against the episodes.parquet of the replayed data with the same rule as the
offline models (darkpool/evaluate/episodes.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from darkpool.evaluate.episodes import alerts_from_events, grade
from udfs.alerts import validate


def read_alert_file(path: Path) -> list[dict[str, Any]]:
    """JSON lines; blank lines skipped; a malformed line is an error naming its number."""
    events = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            e = json.loads(line)
            validate(e)
        except ValueError as exc:  # JSONDecodeError is a ValueError
            raise ValueError(f"{path}:{n}: not an alert event ({exc})") from exc
        events.append(e)
    return events


def read_alert_topic(topic: str, bootstrap_servers: str, idle_timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """All committed alert events on the topic (read_committed, from the beginning)."""
    from jobs.cli import read_alerts

    return list(read_alerts(bootstrap_servers, topic, from_beginning=True, idle_timeout_s=idle_timeout_s))


def instrument_hours(events_path: Path) -> float:
    """Sum over instruments of the event-time span of their events, hours."""
    t = pq.read_table(events_path, columns=["instrument", "ts"]).to_pandas()
    span = t.groupby("instrument")["ts"].agg(lambda s: s.max() - s.min())
    return float(span.sum()) / 3.6e12


def grade_alerts(events: list[dict[str, Any]], data: Path) -> dict[str, Any]:
    """Episode-level metrics of the job's alerts against data/episodes.parquet."""
    episodes = pd.read_parquet(data / "episodes.parquet")
    alerts = alerts_from_events(events)
    g = grade(episodes, alerts, instrument_hours(data / "events.parquet"))
    out: dict[str, Any] = {"alert_events": len(events), **g.summary(), "delays_s": g.delays_s}
    lat = [e["latency_ms"] for e in events if e.get("seq") == 0 and e.get("latency_ms") is not None]
    if lat:
        out["open_latency_ms_p50"] = float(np.percentile(lat, 50))
        out["open_latency_ms_p99"] = float(np.percentile(lat, 99))
    versions = sorted({str(e.get("model_version")) for e in events})
    out["model_versions"] = versions
    return out


def markdown(res: dict[str, Any], source: str) -> str:
    lines = [
        "# Deployed job: alerts graded against injected episodes", "",
        f"Source: `{source}` ({res['alert_events']} alert events, model versions {', '.join(res['model_versions'])}).", "",
        "| episodes | detected | share | alerts | false alerts | false / instrument-hour | delay p50 s | delay p90 s |",
        "|---|---|---|---|---|---|---|---|",
        f"| {res['episodes']} | {res['detected']} | {res['share_detected']:.1%} | {res['alerts']} | {res['false_alerts']} "
        f"| {res['false_alerts_per_instrument_hour']:.2f} | {res['delay_s_median']:.0f} | {res['delay_s_p90']:.0f} |", "",
    ]
    if "open_latency_ms_p50" in res:
        lines += [f"Decision-stage latency of `open` events (event time -> alert): p50 {res['open_latency_ms_p50']:.0f} ms, "
                  f"p99 {res['open_latency_ms_p99']:.0f} ms.", ""]
    lines += ["| scenario | episodes | detected |", "|---|---|---|"]
    lines += [f"| {k} | {v['episodes']} | {v['detected']} |" for k, v in res["by_scenario"].items()]
    return "\n".join(lines) + "\n"
