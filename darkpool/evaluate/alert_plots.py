"""PNG plots of the job-alert grading (`alert_metrics.grade_job_alerts` results; matplotlib Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: CI, servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from core.schemas import SCENARIOS  # noqa: E402
from darkpool.evaluate.alert_metrics import TARGETS  # noqa: E402

# Episode colours by scenario index; red and black are kept for the alert spans.
EPISODE_COLORS = ("tab:gray", "tab:blue", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
                  "tab:cyan", "gold")
MAX_TIMELINE_ROWS = 40  # more instruments than this: the ones with the most episodes and alerts


def _save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_recall_by_scenario(res: dict[str, Any], path: Path) -> None:
    """Episode recall and type-right share per scenario, with the per-scenario recall target."""
    scen = sorted(res["by_scenario"], key=lambda s: SCENARIOS.index(s) if s in SCENARIOS else len(SCENARIOS))
    rec = [res["by_scenario"][s]["recall"] or 0.0 for s in scen]
    typed = [res["by_scenario"][s]["type_right"] / res["by_scenario"][s]["episodes"] for s in scen]
    x = np.arange(len(scen))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(scen) + 2), 4.5))
    ax.bar(x - 0.2, rec, 0.4, label="detected")
    ax.bar(x + 0.2, typed, 0.4, label="detected and typed right")
    ax.axhline(TARGETS["worst_scenario_recall"][1], color="r", ls="--", lw=1, label="per-scenario recall target")
    for i, s in enumerate(scen):
        v = res["by_scenario"][s]
        ax.text(i - 0.2, rec[i] + 0.02, f"{v['detected']}/{v['episodes']}", ha="center", fontsize=7)
    ax.set_xticks(x, scen, rotation=30, ha="right", fontsize=8)
    ax.set(ylim=(0, 1.1), ylabel="share of episodes", title="Job alerts: episodes detected per scenario")
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_durations(res: dict[str, Any], path: Path) -> None:
    """Histogram of alert durations (flagged windows) and of the graded spans."""
    dur = [r["duration_s"] for r in res["alert_rows"]]
    span = [r["span_s"] for r in res["alert_rows"]]
    fig, ax = plt.subplots(figsize=(8, 4))
    if dur:
        bins = np.linspace(0, max(max(dur), max(span), 1.0), 30)
        ax.hist(dur, bins=bins, histtype="step", lw=1.5, label=f"alert duration (n={len(dur)}, max {max(dur):.0f} s)")
        ax.hist(span, bins=bins, histtype="step", lw=1.5, ls="--", label="graded span (evidence, else duration)")
        ax.legend(fontsize=8)
    ax.set(xlabel="seconds of event time", ylabel="alerts", title="Job alert durations")
    _save(fig, path)


def plot_timeline(res: dict[str, Any], path: Path) -> None:
    """Per instrument: episodes (top, coloured by scenario) vs alert spans (bottom; red = false alert)."""
    eps, als = res["episode_rows"], res["alert_rows"]
    weight: dict[str, int] = {}
    for r in (*eps, *als):
        weight[r["instrument"]] = weight.get(r["instrument"], 0) + 1
    insts = sorted(sorted(weight), key=lambda i: -weight[i])[:MAX_TIMELINE_ROWS]
    insts.sort()
    starts = [r["start_ms"] for r in eps] + [r["span_start_ms"] for r in als]
    ends = [r["end_ms"] for r in eps] + [r["span_end_ms"] for r in als]
    fig, ax = plt.subplots(figsize=(12, 0.6 * max(len(insts), 2) + 1.5))
    if starts:
        t0 = min(starts)
        total_h = max((max(ends) - t0) / 3.6e6, 1e-3)
        min_w = total_h / 600  # a 1-second episode on an 8-hour axis must still show
        row = {inst: i for i, inst in enumerate(insts)}
        seen: set[str] = set()
        for r in eps:
            if r["instrument"] not in row:
                continue
            k = SCENARIOS.index(r["scenario"]) if r["scenario"] in SCENARIOS else 0
            lab = r["scenario"] if r["scenario"] not in seen else None
            seen.add(r["scenario"])
            x = (r["start_ms"] - t0) / 3.6e6
            ax.broken_barh([(x, max((r["end_ms"] - r["start_ms"]) / 3.6e6, min_w))], (row[r["instrument"]] + 0.05, 0.35),
                           color=EPISODE_COLORS[k % len(EPISODE_COLORS)], label=lab)
        for lab, false in (("alert span (detects an episode)", False), ("false alert span", True)):
            bars = [(r, (r["span_start_ms"] - t0) / 3.6e6) for r in als if r["instrument"] in row and
                    (not r["episodes"]) == false]
            for j, (r, x) in enumerate(bars):
                ax.broken_barh([(x, max((r["span_end_ms"] - r["span_start_ms"]) / 3.6e6, min_w))],
                               (row[r["instrument"]] - 0.4, 0.35), color="red" if false else "black",
                               label=lab if j == 0 else None)
        ax.set_yticks(range(len(insts)), insts, fontsize=8)
        ax.set_xlabel(f"hours of event time since {np.datetime64(int(t0), 'ms')} UTC")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    more = len(weight) - len(insts)
    ax.set_title("Episodes (upper bars) vs job alert spans (lower bars)" + (f"; {more} instruments not shown" if more > 0 else ""))
    _save(fig, path)
