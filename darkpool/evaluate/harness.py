"""Train every model on the same windows and time split, score, threshold, measure.

Protocol (the same for every model, no leakage):
- windows and labels from model.windows.build_windows (the job's feature functions);
- time split from model.windows.time_split: train < val < test with a one-window gap;
- each detector fits on train (normalization inside it, from train only); validation
  is used for early stopping / rule thresholds and for the decision threshold, which
  maximizes validation F1 subject to validation FPR <= `max_fpr`;
- test windows are scored once and graded with that threshold: raw window metrics,
  per-scenario recall, block-bootstrap CIs, episodes after coalescing, cost.
"""

from __future__ import annotations

import pickle
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from core.config import WindowConfig
from core.schemas import SCENARIOS
from core.thresholds import ThresholdConfig
from darkpool.evaluate import metrics as M
from darkpool.evaluate.detectors import ALL_MODELS, Detector, EvalConfig, make_detector  # noqa: F401  (re-exported)
from darkpool.evaluate.episodes import coalesce, grade
from darkpool.evaluate.robustness import leave_one_scenario_out, loso_skipped, per_regime
from model.windows import Split, WindowSet, load_windows, time_split


def model_size_mb(det: Detector) -> float:
    if hasattr(det, "model"):
        return sum(p.numel() * p.element_size() for p in det.model.parameters()) / 2**20
    if hasattr(det, "net"):
        return sum(p.numel() * p.element_size() for p in det.net.parameters()) / 2**20
    obj = getattr(det, "clf", None) or (det.med, det.scale)  # type: ignore[attr-defined]
    return len(pickle.dumps(obj)) / 2**20


def latency(det: Detector, x: np.ndarray, calls: int, batch: int) -> dict[str, float]:
    """Scoring latency in ms at batch 1 and at `batch` windows per call (p50/p99)."""
    out: dict[str, float] = {}
    rng = np.random.default_rng(0)
    for b, tag in ((1, "b1"), (batch, f"b{batch}")):
        det.score(x[:b])  # warm-up
        ts = []
        for _ in range(calls):
            i = int(rng.integers(max(len(x) - b, 1)))
            t0 = time.perf_counter()
            det.score(x[i : i + b])
            ts.append((time.perf_counter() - t0) * 1000)
        out[f"latency_{tag}_p50_ms"] = float(np.percentile(ts, 50))
        out[f"latency_{tag}_p99_ms"] = float(np.percentile(ts, 99))
    out["throughput_windows_per_s"] = batch / (out[f"latency_b{batch}_p50_ms"] / 1000)
    return out


def fit_measured(det: Detector, train: WindowSet, val: WindowSet) -> dict[str, float]:
    """Fit with wall time and growth of the process's peak RSS.

    ru_maxrss is a high-water mark: the growth shows memory a fit needed beyond every
    earlier peak of this process (windows already loaded), so it is a lower bound that
    depends on model order. tracemalloc was dropped: it slowed sklearn fits ~10x and
    does not see torch's allocator anyway.
    """
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.time()
    det.fit(train, val)
    secs = time.time() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"train_seconds": secs, "rss_peak_mb": rss1 / 1024, "train_rss_growth_mb": (rss1 - rss0) / 1024}


def fit_and_threshold(det: Detector, tr: WindowSet, va: WindowSet, max_fpr: float) -> tuple[np.ndarray, float, dict]:
    """Fit on train (+ validation for early stopping / rules), threshold from validation only.

    Test windows are not an argument: nothing here can leak them into a fit or a threshold.
    """
    cost = fit_measured(det, tr, va)
    s_val = det.score(va.x)
    return s_val, M.threshold_best_f1(va.y, s_val, max_fpr), cost


def graded_period(ws: WindowSet, split: Split, wcfg: WindowConfig) -> tuple[int, int, float]:
    """(start ns, end ns, instrument-hours) covered by the test windows."""
    te = split.test
    start = int((ws.end_pane[te].min() - wcfg.n_buckets + 1) * wcfg.slide_ns)
    end = int((ws.end_pane[te].max() + 1) * wcfg.slide_ns)
    return start, end, len(np.unique(ws.instrument[te])) * (end - start) / 3.6e12


def grade_model(
    y: np.ndarray, score: np.ndarray, threshold: float, ws: WindowSet, idx: np.ndarray, cfg: EvalConfig,
    episodes: pd.DataFrame, wcfg: WindowConfig, t_start: int, inst_hours: float,
) -> dict[str, Any]:
    """Window metrics with CIs, per-scenario recall and episode metrics on the windows idx.

    Episodes that start in the test period are graded; one that started earlier and runs
    into it is not, but an alert on its tail is not a false alert either (`exempt`).
    """
    res: dict[str, Any] = M.window_metrics(y, score, threshold)
    pred = score >= threshold
    res["recall_by_scenario"] = M.recall_by_scenario(pred, ws.scenario[idx], SCENARIOS)
    res["pr_auc_by_scenario"] = M.pr_auc_by_scenario(y, score, ws.scenario[idx], SCENARIOS)
    groups = M.block_groups(ws.instrument[idx], ws.end_pane[idx], wcfg.panes_in(cfg.boot_block_s))
    def f1(i: np.ndarray) -> float:
        tp, fp, _, fn = M.confusion(y[i], pred[i])
        return 2 * tp / (2 * tp + fp + fn) if tp else 0.0

    def fpr(i: np.ndarray) -> float:
        _, fp, tn, _ = M.confusion(y[i], pred[i])
        return fp / (fp + tn) if fp + tn else float("nan")

    fns = {"f1": f1, "fpr": fpr, "pr_auc": lambda i: M.ranking_metrics(y[i], score[i])["pr_auc"]}
    res["ci95"] = {k: M.bootstrap_ci(f, groups, cfg.n_boot, cfg.seed) for k, f in fns.items()}
    alerts = coalesce(ws.instrument[idx], ws.end_pane[idx], pred, wcfg.slide_ms, wcfg.n_buckets,
                      ThresholdConfig().for_window(wcfg))
    g = grade(episodes[episodes["start_ts"] >= t_start], alerts, inst_hours, exempt=episodes)
    res["episodes"] = {**g.summary(), "delays_s": g.delays_s}
    return res


def run(data: Path, out: Path, cfg: EvalConfig, wcfg: WindowConfig | None = None, log=print) -> dict[str, Any]:
    """Evaluate cfg.models on data; returns results (with per-model test scores under "_scores")."""

    wcfg = wcfg or WindowConfig()
    out.mkdir(parents=True, exist_ok=True)
    if cfg.torch_threads:
        # one thread: on a shared 2-core box two spinning OpenMP threads are far slower (model/config.py)
        import torch

        torch.set_num_threads(cfg.torch_threads)
    t0 = time.time()
    ws = load_windows(data, wcfg.n_buckets, wcfg.slide_ns)  # the model part's cached build_windows
    log(f"{len(ws)} windows in {time.time() - t0:.0f}s")
    split = time_split(ws.end_pane, wcfg.n_buckets, cfg.val_frac, cfg.test_frac)
    tr, va, te = ws.subset(split.train), ws.subset(split.val), ws.subset(split.test)
    t_start, t_end, inst_hours = graded_period(ws, split, wcfg)
    data_dir = data if data.is_dir() else data.parent
    all_eps = pd.read_parquet(data_dir / "episodes.parquet")
    eps = all_eps[(all_eps["end_ts"] >= t_start) & (all_eps["start_ts"] < t_end)]
    regimes = pd.read_parquet(data_dir / "regimes.parquet") if (data_dir / "regimes.parquet").exists() else None
    results: dict[str, Any] = {
        "data": str(data), "config": {k: str(v) for k, v in cfg.__dict__.items()},
        "window": {"size_s": wcfg.size_s, "slide_s": wcfg.slide_s},
        "windows": {"all": ws.summary(), "train": tr.summary(), "val": va.summary(), "test": te.summary()},
        "test_episodes": int((eps["start_ts"] >= t_start).sum()), "test_instrument_hours": inst_hours, "models": {}, "_scores": {},
    }
    log(f"windows train {len(tr)} val {len(va)} test {len(te)}; test episodes {results['test_episodes']}")
    for name in tqdm(cfg.models, desc="models", unit="model"):
        det = make_detector(name, cfg, data, out, wcfg)
        s_val, thr, cost = fit_and_threshold(det, tr, va, cfg.max_fpr)
        s_te = det.score(te.x)  # the only time a model sees test windows
        res = grade_model(te.y, s_te, thr, ws, split.test, cfg, eps, wcfg, t_start, inst_hours)
        res["threshold"] = thr
        res["val"] = M.window_metrics(va.y, s_val, thr)
        res["cost"] = {**cost, **latency(det, te.x, cfg.latency_calls, cfg.batch), "model_mb": model_size_mb(det)}
        if getattr(det, "info", None):
            res["info"] = det.info  # type: ignore[attr-defined]
        if regimes is not None:
            res["by_regime"] = per_regime(te, s_te, thr, regimes, wcfg)
        results["models"][name] = res
        results["_scores"][name] = s_te
        if hasattr(det, "outputs"):  # the transformer also names the scenario: keep its guess
            results["_scenario_pred"] = det.outputs(te.x)["scenario_probs"].argmax(axis=1)
        log(f"{name}: test F1 {res['f1']:.3f} FPR {res['fpr']:.4f} PR-AUC {res['pr_auc']:.3f} "
            f"(val thr {thr:.4g}, fit {cost['train_seconds']:.0f}s)")
    results["_test"] = te
    if cfg.loso:

        results["loso"] = leave_one_scenario_out(tr, va, te, cfg, data, out, wcfg, log)
        results["loso_skipped"] = loso_skipped(tr, te)
    return results
