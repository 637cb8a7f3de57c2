"""Grade what the deployed job actually alerted: `darkpool evaluate --alerts FILE_OR_TOPIC --test-data DIR`.

Input: alert events as JSON lines (what `darkpool alerts --json` prints), or the Kafka
alerts topic read from the beginning with isolation_level=read_committed (so only
alerts of completed checkpoints count, as a downstream consumer would see them).
Graded against the labeled events and episodes of the replayed data by
`alert_metrics.grade_job_alerts` (the rules are in that module's docstring). Writes
`alerts_grade.json` (every figure; the headline ones at the top level),
`ALERTS_REPORT.md` and three PNGs (`alert_plots.py`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from core.alerts import validate
from darkpool.evaluate.alert_metrics import UNKNOWN, GradingRules, grade_job_alerts

# Suffixes that mark --alerts as a file; anything else that is not a file is a Kafka topic.
FILE_SUFFIXES = (".jsonl", ".json", ".ndjson", ".txt", ".log")


def looks_like_file(src: str) -> bool:
    """A path separator or a file suffix means the user meant a file, not a topic name.

    >>> looks_like_file("missing.jsonl"), looks_like_file("out/alerts"), looks_like_file("darkpool.alerts")
    (True, True, False)
    """
    return "/" in src or "\\" in src or src.lower().endswith(FILE_SUFFIXES)


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
    from darkpool.stack.alerts_topic import read_alerts

    return list(read_alerts(bootstrap_servers, topic, from_beginning=True, idle_timeout_s=idle_timeout_s))


def read_labeled(data: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(events[instrument, ts, label], episodes) of a `darkpool generate` / `inject` folder."""
    for name in ("events.parquet", "episodes.parquet"):
        if not (data / name).exists():
            raise FileNotFoundError(f"{data} has no {name}: give a folder written by `darkpool generate` "
                                    "or `darkpool inject` (events.parquet, episodes.parquet)")
    cols = ["instrument", "ts", "label"]
    have = pq.read_schema(data / "events.parquet").names
    if missing := [c for c in cols if c not in have]:
        raise ValueError(f"{data / 'events.parquet'} lacks the columns {missing}: it holds no labels to grade against")
    return pq.read_table(data / "events.parquet", columns=cols).to_pandas(), pd.read_parquet(data / "episodes.parquet")


def events_file(data: Path) -> Path:
    """The contract events of `data`: the Parquet file itself, or a folder's events.parquet."""
    return data if data.suffix == ".parquet" else data / "events.parquet"


def is_clean(data: Path) -> bool:
    """A stretch with no labels: a Parquet file, or a folder without episodes.parquet."""
    return data.suffix == ".parquet" or not (data / "episodes.parquet").exists()


def read_clean(data: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(events[instrument, ts, label 0], no episodes) of a clean stretch: every alert is false."""
    f = events_file(data)
    if not f.is_file():
        raise FileNotFoundError(f"{data}: no events ({f} does not exist)")
    ev = pq.read_table(f, columns=["instrument", "ts"]).to_pandas().assign(label=0)
    return ev, pd.DataFrame({"instrument": [], "scenario": [], "start_ts": [], "end_ts": []})


def grade_alerts(events: list[dict[str, Any]], data: Path, rules: GradingRules | None = None,
                 allow_clean: bool = False) -> dict[str, Any]:  # fmt: skip
    """Every alert metric of the job's alert events against the labeled folder `data`
    (`allow_clean`: or a clean stretch, is_clean, whose every alert is false)."""
    labeled, episodes = read_clean(data) if allow_clean and is_clean(data) else read_labeled(data)
    out = grade_job_alerts(events, labeled, episodes, rules)
    lat = [e["latency_ms"] for e in events if e.get("seq") == 0 and e.get("latency_ms") is not None]
    if lat:
        out["open_latency_ms_p50"] = float(np.percentile(lat, 50))
        out["open_latency_ms_p99"] = float(np.percentile(lat, 99))
    out["model_versions"] = sorted({str(e.get("model_version")) for e in events})
    return out


def _f(v: float | None, p: int = 3) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.{p}f}"


def _share(n: int, d: int) -> str:
    return f"{n / d:.1%} ({n}/{d})" if d else f"n/a ({n}/{d})"


def headline(res: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, value, target verdict) rows of the summary table."""
    t, b, bs = res["targets"], res["bins"], res["bins"]["bin_s"]
    worst = min(((v["recall"], s) for s, v in res["by_scenario"].items() if v["recall"] is not None), default=None)

    def verdict(k: str) -> str:
        m = t[k]["met"]
        return f"{t[k]['target']}: " + ("n/a" if m is None else "met" if m else "NOT met")

    dur, span = res["duration_s"], res["span_s"]
    return [
        ("episode recall", _share(res["detected"], res["episodes"]), verdict("recall")),
        ("worst scenario recall", "n/a" if worst is None else f"{worst[0]:.3f} ({worst[1]})",
         verdict("worst_scenario_recall")),
        ("scenario type right (detected)", _share(res["type_right"], res["detected"]), verdict("type_accuracy")),
        (f"  alert said {UNKNOWN}", _share(res["type_unknown"], res["detected"]), ""),
        ("actor named first (participant patterns)",
         _share(res["actor_first"]["actor_first"], res["actor_first"]["detected"]), ">= 0.8"),
        ("false alerts / instrument-hour",
         f"{_f(res['false_alerts_per_instrument_hour'], 2)} ({res['false_alerts']} in {res['instrument_hours']:.2f} h)",
         verdict("false_alerts_per_instrument_hour")),
        (f"clean {bs:g}-s bins alerted", _share(b["clean_alerted"], b["clean"]), verdict("clean_bin_alerted_share")),
        (f"abusive {bs:g}-s bins alerted", _share(b["abusive_alerted"], b["abusive"]), ""),
        ("alerts (with evidence span)", f"{res['alerts']} ({res['alerts_with_evidence']})", ""),
        ("alert duration p50 / p90 / max s", f"{_f(dur['p50'], 0)} / {_f(dur['p90'], 0)} / {_f(dur['max'], 0)}", ""),
        ("graded span p50 / max s", f"{_f(span['p50'], 0)} / {_f(span['max'], 0)}", ""),
        ("detection delay p50 / p90 s", f"{_f(res['delay_s_median'], 0)} / {_f(res['delay_s_p90'], 0)}", ""),
    ]


def summary_table(res: dict[str, Any]) -> str:
    """Plain-text table of the headline figures (printed by the CLI, read by benchmark scripts)."""
    rows = [("figure", "value", "target"), *headline(res)]
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{a:<{w[0]}}  {b:<{w[1]}}  {c}".rstrip() for a, b, c in rows) + "\n"


def rate_rows(res: dict[str, Any]) -> list[list[str]]:
    """The recall-at-false-alert-rate curve (alert_metrics.recall_at_rates) as table rows,
    the header first: one row per budget, one column per scenario."""
    curve = res.get("recall_at_rates") or []
    scen = list(curve[0]["by_scenario"]) if curve else []
    rows = [["false alerts / inst-h <=", "alerts", "false / h", "recall", *scen]]
    for p in curve:
        mark = " (run)" if p["at_run_point"] else ""
        rows.append([f"{p['rate']:g}{mark}", str(p["alerts"]), _f(p["false_alerts_per_instrument_hour"], 2),
                     _f(p["recall"], 2), *(_f(p["by_scenario"][k], 2) for k in scen)])  # fmt: skip
    return rows


def rate_table(res: dict[str, Any]) -> str:
    """Plain text of rate_rows; "(run)": the run's own threshold limits that point."""
    rows = rate_rows(res)
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(f"{c:<{w[i]}}" for i, c in enumerate(r)).rstrip() for r in rows) + "\n"


def _breakdown(title: str, key: str, d: dict[str, dict[str, Any]], extra: bool) -> list[str]:
    head = f"| {key} | episodes | recall | type right | unknown |"
    sep = "|---|---|---|---|---|"
    if extra:
        head += " alerts | false | false / h | clean bins alerted | abusive bins alerted | duration max s |"
        sep += "---|---|---|---|---|---|"
    L = [f"## {title}", "", head, sep]
    for k, v in d.items():
        row = (f"| {k} | {v['episodes']} | {_share(v['detected'], v['episodes'])} | "
               f"{_share(v['type_right'], v['detected'])} | {v['type_unknown']} |")
        if extra:
            row += (f" {v['alerts']} | {v['false_alerts']} | {_f(v['false_alerts_per_instrument_hour'], 2)} | "
                    f"{_share(v['clean_bins_alerted'], v['clean_bins'])} | "
                    f"{_share(v['abusive_bins_alerted'], v['abusive_bins'])} | {_f(v['duration_s_max'], 0)} |")
        L.append(row)
    return L


PNGS = {"recall by scenario": "alerts_recall_by_scenario.png", "alert durations": "alerts_durations.png",
        "timeline": "alerts_timeline.png"}


def markdown(res: dict[str, Any], source: str, pngs: dict[str, str] | None = None) -> str:
    r = res["rules"]
    L = [
        "# Deployed job: alerts graded against injected episodes", "",
        f"Source: `{source}` ({res['alert_events']} alert events, {res['alerts']} alerts, model versions "
        f"{', '.join(res.get('model_versions', [])) or 'n/a'}).",
        f"Rules: an alert detects an episode of its instrument when its evidence span (else its flagged windows) "
        f"overlaps the episode, with {r['evidence_tolerance_s']:g} s slack for evidence spans and "
        f"{r['episode_span_tolerance_s']:g} s otherwise; instrument-hours = active sessions (gaps over "
        f"{r['session_gap_s']:g} s split them); {r['bin_s']:g}-s bins of event time. "
        "Details: darkpool/evaluate/alert_metrics.py.", "",
        "| figure | value | target |", "|---|---|---|",
        *(f"| {a.strip()} | {b} | {c} |" for a, b, c in headline(res)), "",
    ]
    if "open_latency_ms_p50" in res:
        L += [f"Decision-stage latency of `open` events (event time -> alert): p50 {res['open_latency_ms_p50']:.0f} ms, "
              f"p99 {res['open_latency_ms_p99']:.0f} ms.", ""]
    if res.get("recall_at_rates"):
        rr = rate_rows(res)
        L += ["## Recall at an alert budget", "",
              "Only the alerts with the largest score margin, as many as each false-alert rate allows "
              "(alert_metrics.recall_at_rates); \"(run)\": the run's own threshold limits the point.", "",
              "| " + " | ".join(rr[0]) + " |", "|---" * len(rr[0]) + "|",
              *("| " + " | ".join(r) + " |" for r in rr[1:]), ""]  # fmt: skip
    L += _breakdown("By scenario", "scenario", res["by_scenario"], extra=False)
    L += ["", *_breakdown("By instrument", "instrument", res["by_instrument"], extra=True)]
    if res["type_confusion"]:
        named = sorted({a for v in res["type_confusion"].values() for a in v})
        L += ["", "## Scenario named by the alert, per true scenario (detected episodes)", "",
              "| true \\ alert | " + " | ".join(named) + " |", "|---" * (len(named) + 1) + "|"]
        L += [f"| {s} | " + " | ".join(str(v.get(a, "")) for a in named) + " |"
              for s, v in sorted(res["type_confusion"].items())]
    if pngs:
        L += ["", "## Plots", ""] + [f"![{k}]({v})" for k, v in pngs.items()]
    return "\n".join(L) + "\n"


def write_alert_report(res: dict[str, Any], source: str, out: Path) -> Path:
    """alerts_grade.json, ALERTS_REPORT.md and the PNGs in `out`; returns the Markdown path."""
    from darkpool.evaluate.alert_plots import plot_durations, plot_recall_by_scenario, plot_timeline

    out.mkdir(parents=True, exist_ok=True)
    plot_recall_by_scenario(res, out / PNGS["recall by scenario"])
    plot_durations(res, out / PNGS["alert durations"])
    plot_timeline(res, out / PNGS["timeline"])
    (out / "alerts_grade.json").write_text(json.dumps({"source": source, **res}, indent=2) + "\n")
    md = out / "ALERTS_REPORT.md"
    md.write_text(markdown(res, source, PNGS))
    return md
