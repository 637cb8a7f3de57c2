"""Markdown report + PNG plots (matplotlib Agg) from harness.run results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: CI, servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from core.schemas import SCENARIOS  # noqa: E402

TARGET_F1, TARGET_FPR = 0.95, 0.005  # the transformer's targets (F1 and false-positive rate on the test windows)


def _f(v: float, p: int = 3) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.{p}f}"


def _ci(m: dict[str, Any], k: str, p: int = 3) -> str:
    lo, hi = m["ci95"][k]
    return f"{_f(m[k], p)} [{_f(lo, p)}, {_f(hi, p)}]"


def plot_curves(results: dict[str, Any], path: Path) -> None:
    y = results["_test"].y
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, s in results["_scores"].items():
        p, r, _ = precision_recall_curve(y, s)
        f, t, _ = roc_curve(y, s)
        m = results["models"][name]
        a.plot(r, p, label=f"{name} (AP {m['pr_auc']:.3f})")
        b.plot(f, t, label=f"{name} (AUC {m['roc_auc']:.3f})")
    a.set(xlabel="recall", ylabel="precision", title="Precision-recall, test windows")
    b.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, test windows", xscale="log", xlim=(1e-4, 1))
    a.legend(fontsize=8)
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion(results: dict[str, Any], path: Path) -> None:
    """Share of test windows flagged, per true scenario (rows) and model (columns)."""
    te, models = results["_test"], list(results["models"])
    present = [s for s in range(len(SCENARIOS)) if (te.scenario == s).any()]
    grid = np.array([[(results["_scores"][m][te.scenario == s] >= results["models"][m]["threshold"]).mean()
                      for m in models] for s in present])
    fig, ax = plt.subplots(figsize=(1.3 * len(models) + 3, 0.5 * len(present) + 1.5))
    ax.imshow(grid, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(models)), models)
    ax.set_yticks(range(len(present)), [f"{SCENARIOS[s]} (n={(te.scenario == s).sum()})" for s in present])
    for i in range(len(present)):
        for j in range(len(models)):
            ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", color="w" if grid[i, j] < 0.6 else "k", fontsize=8)
    ax.set_title("Flagged share by true scenario (normal row = FPR)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_scenario_confusion(results: dict[str, Any], path: Path) -> None:
    """Transformer scenario head: true scenario (rows) x predicted scenario, row-normalized."""
    te, pred = results["_test"], results["_scenario_pred"]
    n = len(SCENARIOS)
    cm = np.zeros((n, n))
    np.add.at(cm, (te.scenario, pred), 1)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.imshow(share, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(n), SCENARIOS, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), [f"{s} (n={int(c)})" for s, c in zip(SCENARIOS, rows[:, 0], strict=True)], fontsize=8)
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, f"{share[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="w" if share[i, j] < 0.6 else "k")
    ax.set(xlabel="predicted scenario (argmax of scenario_probs)", ylabel="true scenario",
           title="Transformer scenario head on test windows (row share)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_scores(results: dict[str, Any], path: Path) -> None:
    te, models = results["_test"], list(results["models"])
    present = [s for s in range(len(SCENARIOS)) if (te.scenario == s).any()]
    fig, axes = plt.subplots(len(models), 1, figsize=(10, 2.2 * len(models)), squeeze=False)
    for ax, m in zip(axes[:, 0], models, strict=True):
        s = results["_scores"][m]
        ax.boxplot([s[te.scenario == k] for k in present], whis=(1, 99), showfliers=False)
        ax.axhline(results["models"][m]["threshold"], color="r", lw=1, ls="--")
        ax.set_xticks(range(1, len(present) + 1), [SCENARIOS[k] for k in present], fontsize=7)
        ax.set_ylabel(m)
    axes[0, 0].set_title("Test score by true scenario (box 25-75%, whiskers 1-99%; red = validation threshold)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_delays(results: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4))
    data = {m: r["episodes"]["delays_s"] for m, r in results["models"].items() if r["episodes"]["delays_s"]}
    if data:
        hi = max(max(v) for v in data.values())
        bins = np.linspace(0, max(hi, 1), 25)
        for m, d in data.items():
            ax.hist(d, bins=bins, histtype="step", label=f"{m} (n={len(d)})")
        ax.legend(fontsize=8)
    ax.set(xlabel="detection delay, s (first flagged window end - episode start)", ylabel="episodes",
           title="Detection delay of detected test episodes")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _train_time(r: dict[str, Any]) -> str:
    """Fit wall time; for a reused transformer artifact, the time its training recorded."""
    art = r.get("info", {}).get("train_seconds")
    if art is not None and "train_seconds_measured" not in r.get("info", {}):
        return f"{art:.0f} s (artifact)"
    return f"{r['cost']['train_seconds']:.0f} s"


def _verdict(results: dict[str, Any]) -> list[str]:
    ms = results["models"]
    if "transformer" not in ms:
        return ["The transformer was not part of this run: no verdict on the targets."]
    t = ms["transformer"]
    ok_f1, ok_fpr = t["f1"] >= TARGET_F1, t["fpr"] <= TARGET_FPR
    beaten = [m for m, r in ms.items() if m != "transformer" and r["pr_auc"] >= t["pr_auc"]]
    better = ", ".join(f"{m} {ms[m]['pr_auc']:.3f}" for m in beaten)
    return [f"- F1 >= {TARGET_F1}: **{'met' if ok_f1 else 'NOT met'}** (test F1 {_ci(t, 'f1')}).",
            f"- FPR <= {TARGET_FPR:.1%}: **{'met' if ok_fpr else 'NOT met'}** (test FPR {_ci(t, 'fpr', 4)}).",
            "- Beats every baseline on PR-AUC: " + ("**met**." if not beaten else
            f"**NOT met**: {better} >= transformer {t['pr_auc']:.3f}.")]


def markdown(results: dict[str, Any], pngs: dict[str, str]) -> str:
    ms, w = results["models"], results["windows"]
    L = ["# Evaluation report", "",
         f"Data `{results['data']}`: {w['all']['windows']} windows ({w['all']['anomalous']} anomalous) of "
         f"{results['window']['size_s']} s sliding every {results['window']['slide_s']} s, built with "
         "core.features via model.windows (the job's functions).",
         *_split_lines(results),
         f"Test scenarios: {w['test']['by_scenario']}. Validation scenarios: {w['val']['by_scenario']}.",
         "Every model's decision threshold maximizes validation F1 with validation FPR <= "
         f"{results['config'].get('max_fpr')}; test windows are scored once. Raw window metrics, no point adjustment; "
         "95% CIs from a block bootstrap (instrument x 5-min blocks).", "",
         "## Targets", "", *_verdict(results), "",
         "## Table 8, measured (same windows, same split)", "",
         "| Model | Accuracy | F1 | FPR | PR-AUC | Latency b=1 p50 / p99 | Latency b=256 p50 | Model size | Peak RSS growth in fit | Training time |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    for m, r in ms.items():
        c = r["cost"]
        b = [k for k in c if k.startswith("latency_b") and k != "latency_b1_p50_ms" and k.endswith("p50_ms")][0]
        L.append(f"| {m} | {r['accuracy']:.4f} | {_f(r['f1'])} | {_f(r['fpr'], 4)} | {_f(r['pr_auc'])} | "
                 f"{c['latency_b1_p50_ms']:.2f} / {c['latency_b1_p99_ms']:.2f} ms | {c[b]:.1f} ms | {c['model_mb']:.2f} MB | "
                 f"{c['train_rss_growth_mb']:.0f} MB | {_train_time(r)} |")
    allnormal = 1 - w["test"]["anomalous"] / w["test"]["windows"]
    L += ["", f"An all-normal classifier scores accuracy {allnormal:.4f} on this test set: accuracy alone says little.",
          "Latency is per scoring call in this process (CPU, shared 2-core machine under load from other work: "
          "absolute numbers are inflated and noisy). Memory: model size = parameters / pickled estimator; "
          "RSS growth = rise of the process's peak resident memory during the fit (a lower bound: the windows are already loaded).", "",
          "## Window metrics with 95% CI (test)", "",
          "| Model | precision | recall | F1 | FPR | ROC-AUC | PR-AUC | threshold (val) | val F1 | val FPR |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for m, r in ms.items():
        L.append(f"| {m} | {_f(r['precision'])} | {_f(r['recall'])} | {_ci(r, 'f1')} | {_ci(r, 'fpr', 4)} | "
                 f"{_f(r['roc_auc'])} | {_ci(r, 'pr_auc')} | {r['threshold']:.4g} | {_f(r['val']['f1'])} | {_f(r['val']['fpr'], 4)} |")
    scen = sorted({s for r in ms.values() for s in r["recall_by_scenario"]}, key=SCENARIOS.index)
    L += ["", "## Recall by scenario (test windows)", "", "| Model | " + " | ".join(scen) + " |",
          "|---" * (len(scen) + 1) + "|"]
    L += [f"| {m} | " + " | ".join(_f(r["recall_by_scenario"].get(s)) for s in scen) + " |" for m, r in ms.items()]
    L += ["", f"## Episodes (test period: {results['test_episodes']} episodes, "
          f"{results['test_instrument_hours']:.1f} instrument-hours; alerts coalesced as the decision stage does)", "",
          "| Model | detected | share | alerts | false alerts | false / instrument-hour | delay p50 s | delay p90 s |",
          "|---|---|---|---|---|---|---|---|"]
    for m, r in ms.items():
        e = r["episodes"]
        L.append(f"| {m} | {e['detected']}/{e['episodes']} | {_f(e['share_detected'])} | {e['alerts']} | {e['false_alerts']} | "
                 f"{_f(e['false_alerts_per_instrument_hour'], 2)} | {_f(e['delay_s_median'], 0)} | {_f(e['delay_s_p90'], 0)} |")
    regs = sorted({g for r in ms.values() for g in r.get("by_regime", {})})
    if regs:
        L += ["", "## By market regime (test windows; recall / FPR / PR-AUC)", "",
              "| Model | " + " | ".join(f"{g} (n={next(iter(ms.values()))['by_regime'].get(g, {}).get('windows', 0)})" for g in regs) + " |",
              "|---" * (len(regs) + 1) + "|"]
        for m, r in ms.items():
            br = r.get("by_regime", {})
            L.append(f"| {m} | " + " | ".join(
                f"{_f(br[g]['recall'], 2)} / {_f(br[g]['fpr'], 4)} / {_f(br[g]['pr_auc'], 2)}" if g in br else "" for g in regs) + " |")
    if results.get("loso"):
        L += _loso_section(results)
    if results.get("job_alerts"):
        from darkpool.evaluate.alerts_grading import headline

        ja = results["job_alerts"]
        L += ["", "## The job's alerts on the test data", "",
              f"Alert events from `{ja['source']}`, graded by darkpool/evaluate/alert_metrics.py; per scenario and "
              "per instrument in [ALERTS_REPORT.md](ALERTS_REPORT.md).", "",
              "| figure | value | target |", "|---|---|---|",
              *(f"| {a.strip()} | {b} | {c} |" for a, b, c in headline(ja))]
    L += ["", "## Plots", ""] + [f"![{k}]({v})" for k, v in pngs.items()]
    return "\n".join(L) + "\n"


def _split_lines(results: dict[str, Any]) -> list[str]:
    """Where the training, validation and test windows came from."""
    w, cross = results["windows"], results.get("cross")
    parts = (f"train {w['train']['windows']} ({w['train']['anomalous']} anomalous), validation "
             f"{w['val']['windows']} ({w['val']['anomalous']})")
    test = f"{w['test']['windows']} ({w['test']['anomalous']} anomalous)"
    if not cross:
        return [f"Time split (model.windows.time_split, one-window gaps): {parts}, test {test}."]
    if cross.get("artifact"):
        return [f"Cross-domain: artifact `{cross['artifact']}` (trained on {parts} windows), scored at the global "
                f"threshold it carries on every window of `{cross['test_data']}`: {test}. The validation threshold "
                "rule below applies to models trained here, not to an artifact."]
    return [f"Cross-domain: trained on `{cross['train_data']}` (its time split: {parts}; its test part unused), "
            f"tested on every window of `{cross['test_data']}`: {test}."]


def _loso_section(results: dict[str, Any]) -> list[str]:
    """Two tables (recall at the validation threshold, PR-AUC vs normal windows), unseen vs seen."""
    lo, ms, cfg = results["loso"], results["models"], results["config"]
    sc = sorted({s for v in lo.values() for s in v}, key=SCENARIOS.index)
    L = ["", "## Leave one scenario out", "",
         "Each model is retrained once per scenario without that scenario's windows (train and validation), its "
         "threshold refitted on that validation set, then tested on normal + that scenario's test windows. "
         "\"seen\" = the same model trained on everything (main tables above). The transformer's LOSO fits run "
         f"{cfg.get('loso_transformer_epochs', '?')} epochs at most (budget {cfg.get('loso_transformer_minutes', '?')} "
         f"min each), its main fit up to {cfg.get('transformer_epochs', '?')}: part of a gap can be the shorter training."]
    for key, seen_key, title in (("recall_unseen", "recall_by_scenario", "Recall at the validation threshold"),
                                 ("pr_auc_unseen", "pr_auc_by_scenario", "PR-AUC, scenario vs normal windows")):
        L += ["", f"{title}: unseen (seen)", "", "| Model | " + " | ".join(sc) + " | fits |", "|---" * (len(sc) + 2) + "|"]
        for m, v in lo.items():
            seen = ms.get(m, {}).get(seen_key, {})
            secs = sum(e.get("fit_seconds", 0) for e in v.values())
            L.append(f"| {m} | " + " | ".join(
                f"{_f(v[s][key], 2)} ({_f(seen.get(s), 2)})" if s in v else "" for s in sc) + f" | {secs:.0f} s |")
    for s, why in results.get("loso_skipped", {}).items():
        L.append(f"\n- not left out: {s}: {why}")
    return L


PNGS = {"PR and ROC": "curves.png", "flagged share by scenario": "confusion_by_scenario.png",
        "score distributions": "scores_by_scenario.png", "detection delay": "detection_delay.png"}


def rewrite_markdown(out: Path) -> Path:
    """Re-render REPORT.md from results.json (the plots need the in-memory scores)."""
    md = out / "REPORT.md"
    md.write_text(markdown(json.loads((out / "results.json").read_text()), PNGS))
    return md


def write_report(results: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    pngs = PNGS
    plot_curves(results, out / pngs["PR and ROC"])
    plot_confusion(results, out / pngs["flagged share by scenario"])
    plot_scores(results, out / pngs["score distributions"])
    plot_delays(results, out / pngs["detection delay"])
    if "_scenario_pred" in results:
        pngs = {**pngs, "transformer scenario confusion": "scenario_confusion.png"}
        plot_scenario_confusion(results, out / pngs["transformer scenario confusion"])
    public = {k: v for k, v in results.items() if not k.startswith("_")}
    (out / "results.json").write_text(json.dumps(public, indent=2, default=float) + "\n")
    md = out / "REPORT.md"
    md.write_text(markdown(results, pngs))
    return md
