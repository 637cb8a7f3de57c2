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

from core.alert_budget import AlertBudget, calibrate
from core.cli_types import BOOTSTRAP_SERVERS, POSITIVE
from darkpool.evaluate.cli import read_alerts_source


def _counted_margins(events: list[dict[str, Any]], data: Path, session_gap_s: float) -> tuple[dict, dict, int]:
    """(per instrument the margins of the alerts that count against the budget, per
    instrument its active hours, how many alerts there were in all): a labeled folder's
    alerts that detect an episode (the one matcher's verdict) do not count."""
    from darkpool.evaluate.alert_metrics import (
        NS_PER_HOUR,
        GradingRules,
        active_sessions,
        grade_job_alerts,
        latest_alerts,
    )
    from darkpool.evaluate.alerts_grading import is_clean, read_clean, read_labeled

    try:
        labeled, episodes = read_clean(data) if is_clean(data) else read_labeled(data)
    except Exception as exc:  # not Parquet, no such columns: one line
        raise click.ClickException(f"--data {data}: not a contract events file or labeled folder ({exc})") from exc
    hours = {k: float((s[:, 1] - s[:, 0]).sum()) / NS_PER_HOUR for k, s in active_sessions(labeled, session_gap_s).items()}
    alerts = latest_alerts(events)
    n_all = len(alerts)
    named = {a.instrument for a in alerts}
    if not named & set(hours):
        raise click.ClickException(f"--alerts: none of its instruments ({', '.join(sorted(named)[:5])}) is in "
                                   f"{data}: the alerts come from another stretch")
    if not episodes.empty:
        rows = grade_job_alerts(events, labeled, episodes, GradingRules(session_gap_s=session_gap_s))["alert_rows"]
        true_ids = {r["alert_id"] for r in rows if r["episodes"]}
        alerts = [a for a in alerts if a.alert_id not in true_ids]
    margins: dict[str, list[float]] = {}
    for a in alerts:
        margins.setdefault(a.instrument, []).append(a.margin or 0.0)
    return margins, hours, n_all


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
    from darkpool.evaluate.alerts_grading import events_file

    if out.exists() and not force:
        raise click.ClickException(f"--out {out} exists: give another file, or --force to overwrite it")
    if not out.parent.is_dir():
        raise click.ClickException(f"--out {out}: folder {out.parent} does not exist")
    if not events_file(data).is_file():
        raise click.ClickException(f"--data {data}: no events.parquet there (give the folder or Parquet file of the "
                                   "stretch the alerts came from)")
    events = read_alerts_source(alerts_src, bootstrap_servers)
    if not events:
        raise click.ClickException(f"--alerts {alerts_src} holds no alert events: nothing to calibrate on "
                                   "(a stretch with no alerts needs no budget)")
    if raised := sorted({e["alert_id"] for e in events if e.get("threshold_source") == "budget"}):
        raise click.ClickException(f"--alerts {alerts_src}: {len(raised)} alert(s) come from a job run with "
                                   "--alert-budget (threshold_source budget): calibrate on a run without it")
    margins, hours, n_all = _counted_margins(events, data, session_gap_s)
    b = calibrate(margins, hours, per_hour)
    out.write_text(b.to_json() + "\n")
    click.echo(_summary(b, margins, n_all, hours, out))


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
