"""`darkpool budget`: calibrate the alert budget (alerts per instrument-hour) on a clean stretch.

    darkpool budget --alerts FILE_OR_TOPIC --data DIR_OR_PARQUET --per-hour 0.5 --out budget.json

--alerts: the job's alert events over that stretch, from a run *without* --alert-budget
(a JSON-lines file such as bench/detection_bench.py's alerts.jsonl or
`darkpool alerts --json`, or a Kafka topic name). --data: the events of the same
stretch (a folder with events.parquet, or the Parquet file), for each instrument's
active hours; when the folder also holds episodes.parquet, alerts that detect a labeled
episode are left out (only false alerts count against the budget). Writes the per-
instrument margin cuts (core/alert_budget.py) that the job reads with
`--alert-budget FILE`, and prints what they would have left on that stretch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from core.alert_budget import AlertBudget, alert_margins, calibrate
from core.cli_types import BOOTSTRAP_SERVERS, POSITIVE
from darkpool.evaluate.cli import read_alerts_source


def _events_file(data: Path) -> Path:
    f = data / "events.parquet" if data.is_dir() else data
    if not f.is_file():
        raise click.ClickException(f"--data {data}: no events.parquet there (give the folder or Parquet file of the "
                                   "stretch the alerts came from)")
    return f


def _false_only(events: list[dict[str, Any]], labeled: Any, episodes_file: Path) -> list[dict[str, Any]]:
    """The events of the alerts that detect no labeled episode (the one matcher's verdict)."""
    import pandas as pd

    from darkpool.evaluate.alert_metrics import grade_job_alerts

    res = grade_job_alerts(events, labeled.assign(label=0), pd.read_parquet(episodes_file))
    false_ids = {r["alert_id"] for r in res["alert_rows"] if not r["episodes"]}
    return [e for e in events if e["alert_id"] in false_ids]


@click.command()
@click.option("--alerts", "alerts_src", required=True,
              help="alert events of a run without --alert-budget: JSON-lines file or Kafka topic")
@click.option("--data", type=click.Path(path_type=Path, exists=True), required=True,
              help="the same stretch's events: a folder with events.parquet, or the Parquet file")
@click.option("--per-hour", type=POSITIVE, required=True, help="the budget: alerts per instrument-hour, e.g. 0.5")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="the budget file to write (refused if it exists, unless --force)")
@click.option("--force", is_flag=True, help="overwrite --out")
@click.option("--session-gap-s", type=POSITIVE, default=1800.0, show_default=True,
              help="a longer gap between an instrument's events ends its active time (as the grading counts hours)")
@click.option("--bootstrap-servers", type=BOOTSTRAP_SERVERS, default=None,
              help="Kafka, when --alerts is a topic [the local stack's]")
def budget(alerts_src: str, data: Path, per_hour: float, out: Path, force: bool, session_gap_s: float,
           bootstrap_servers: str | None) -> None:  # fmt: skip
    """Calibrate per-instrument threshold raises that keep a clean stretch within --per-hour alerts."""
    import pyarrow.parquet as pq

    from darkpool.evaluate.alert_metrics import NS_PER_HOUR, active_sessions

    if out.exists() and not force:
        raise click.ClickException(f"--out {out} exists: give another file, or --force to overwrite it")
    if not out.parent.is_dir():
        raise click.ClickException(f"--out {out}: folder {out.parent} does not exist")
    events_file = _events_file(data)
    try:
        labeled = pq.read_table(events_file, columns=["instrument", "ts"]).to_pandas()
    except Exception as exc:  # not Parquet, no such columns: one line
        raise click.ClickException(f"--data {events_file}: not a contract events file ({exc})") from exc
    events = read_alerts_source(alerts_src, bootstrap_servers)
    if not events:
        raise click.ClickException(f"--alerts {alerts_src} holds no alert events: nothing to calibrate on "
                                   "(a stretch with no alerts needs no budget)")
    if raised := sorted({e["alert_id"] for e in events if e.get("threshold_source") == "budget"}):
        raise click.ClickException(f"--alerts {alerts_src}: {len(raised)} alert(s) come from a job run with "
                                   "--alert-budget (threshold_source budget): calibrate on a run without it")
    hours = {k: float((s[:, 1] - s[:, 0]).sum()) / NS_PER_HOUR for k, s in active_sessions(labeled, session_gap_s).items()}
    named = {str(e["instrument"]) for e in events}
    if not named & set(hours):
        raise click.ClickException(f"--alerts {alerts_src}: none of its instruments ({', '.join(sorted(named)[:5])}) "
                                   f"is in {events_file}: the alerts come from another stretch")
    episodes_file = (data if data.is_dir() else data.parent) / "episodes.parquet"
    n_all = sum(len(v) for v in alert_margins(events).values())
    if episodes_file.is_file():
        events = _false_only(events, labeled, episodes_file)
    b = calibrate(events, hours, per_hour)
    out.write_text(b.to_json() + "\n")
    click.echo(_summary(b, alert_margins(events), n_all, hours, out))


def _summary(b: AlertBudget, margins: dict[str, list[float]], n_all: int, hours: dict[str, float], out: Path) -> str:
    total_h = sum(hours.values())
    n = sum(len(v) for v in margins.values())
    left = sum(sum(m > b.cut(k) for m in ms) for k, ms in margins.items())
    raised = sum(c > 0 for c in b.cuts.values())
    return (f"wrote {out}: {b.alerts_per_hour:g} alerts per instrument-hour; {raised} of {len(b.cuts)} instruments "
            f"raised (largest cut {max(b.cuts.values(), default=0.0):.2f}), pooled cut {b.default_cut:.2f} for "
            f"the others.\non this stretch ({total_h:.2f} instrument-hours): {n} counted alerts of {n_all} "
            f"({n / total_h if total_h else 0:.2f} per instrument-hour) -> {left} "
            f"({left / total_h if total_h else 0:.2f}). The job reads it with --alert-budget {out}")
