"""Cross-domain evaluation: train on data set A (or take a trained artifact), test on data set B.

    darkpool evaluate --train-data A --test-data B --out DIR   # every model trained on A, graded on all of B
    darkpool evaluate --artifact ART --test-data B --out DIR    # a `darkpool train` artifact graded on all of B

Training on A is the `--data` protocol restricted to A: A's time split (the same
fractions as `darkpool train`, so the transformer's artifact is the one `darkpool train
--data A` would write), fit on A's training windows, early stopping and the decision
threshold from A's validation windows. A's own test part is not used. Nothing of B
reaches a fit or a threshold: B is scored once, every window of it, and graded with
the same window, scenario and episode metrics as `--data` (harness.grade_model).
An artifact is graded at the global threshold it carries (threshold.json), the one the
job starts from. B's instrument-hours are its active sessions (alert_metrics).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from core.config import WindowConfig, check_geometry
from darkpool.evaluate import metrics as M
from darkpool.evaluate.alert_metrics import NS_PER_HOUR, GradingRules, active_sessions
from darkpool.evaluate.harness import (
    EvalConfig,
    fit_and_threshold,
    grade_model,
    latency,
    make_detector,
    model_size_mb,
)
from darkpool.evaluate.robustness import per_regime
from model.windows import load_windows, time_split


@dataclass
class ArtifactDetector:
    """A trained transformer artifact, scored as served, never refitted."""

    folder: Path
    wcfg: WindowConfig
    name: str = "transformer"
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        from model.artifact import load_artifact

        art = load_artifact(self.folder)
        check_geometry(self.wcfg, art.window, f"artifact {self.folder}")
        self.model, self.threshold, self.metrics = art.model, art.threshold, art.metrics
        self.info.update(version=art.version, artifact=str(self.folder), artifact_threshold=art.threshold,
                         train_seconds=art.metrics.get("train_seconds"))

    def score(self, x: np.ndarray) -> np.ndarray:
        from model.train import predict

        return predict(self.model, x)["score"]

    def outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        from model.train import predict

        return predict(self.model, x)


def active_instrument_hours(data: Path, rules: GradingRules | None = None) -> float:
    """Sum over instruments of their active sessions in B's events, hours (alert_metrics rules)."""
    ev = pd.read_parquet(data / "events.parquet", columns=["instrument", "ts"])
    sessions = active_sessions(ev, (rules or GradingRules()).session_gap_s)
    return float(sum(int((s[:, 1] - s[:, 0]).sum()) for s in sessions.values())) / NS_PER_HOUR


def _val_from_artifact(metrics: dict[str, Any]) -> dict[str, Any]:
    v = metrics.get("val", {})
    p, r = v.get("precision"), v.get("recall")
    f1 = 2 * p * r / (p + r) if p is not None and r is not None and p + r > 0 else float("nan")
    return {"f1": f1, "fpr": v.get("fpr", float("nan"))}


def run_cross(test_data: Path, out: Path, cfg: EvalConfig, wcfg: WindowConfig | None = None,
              train_data: Path | None = None, artifact: Path | None = None, log=print) -> dict[str, Any]:
    """Evaluate cfg.models trained on `train_data` (or the `artifact`) on every window of `test_data`.

    Returns results in the shape of harness.run (report.write_report renders them), with
    a "cross" entry naming the data sets.
    """
    if (train_data is None) == (artifact is None):
        raise ValueError("give exactly one of train_data and artifact")
    wcfg = wcfg or WindowConfig()
    out.mkdir(parents=True, exist_ok=True)
    if cfg.torch_threads:
        import torch

        torch.set_num_threads(cfg.torch_threads)  # one thread on a shared 2-core box (model/config.py)
    t0 = time.time()
    te = load_windows(test_data, wcfg.n_buckets, wcfg.slide_ns)
    idx = np.arange(len(te))
    episodes = pd.read_parquet(test_data / "episodes.parquet")
    hours = active_instrument_hours(test_data)
    regimes = pd.read_parquet(test_data / "regimes.parquet") if (test_data / "regimes.parquet").exists() else None
    log(f"test data {test_data}: {len(te)} windows, {len(episodes)} episodes, {hours:.2f} instrument-hours "
        f"({time.time() - t0:.0f}s)")
    empty = {"windows": 0, "anomalous": 0, "by_scenario": {}}
    if train_data is not None:
        ws = load_windows(train_data, wcfg.n_buckets, wcfg.slide_ns)
        split = time_split(ws.end_pane, wcfg.n_buckets, cfg.val_frac, cfg.test_frac)
        tr, va = ws.subset(split.train), ws.subset(split.val)
        train_sum, val_sum = tr.summary(), va.summary()
        log(f"train data {train_data}: train {len(tr)} val {len(va)} windows (its test part is not used)")
    else:
        det_art = ArtifactDetector(artifact, wcfg)  # type: ignore[arg-type]
        wins = det_art.metrics.get("windows", {})
        train_sum, val_sum = wins.get("train", empty), wins.get("val", empty)
    results: dict[str, Any] = {
        "data": f"{train_data or artifact} -> {test_data}",
        "cross": {"train_data": None if train_data is None else str(train_data),
                  "artifact": None if artifact is None else str(artifact), "test_data": str(test_data)},
        "config": {k: str(v) for k, v in cfg.__dict__.items()},
        "window": {"size_s": wcfg.size_s, "slide_s": wcfg.slide_s},
        "windows": {"all": te.summary(), "train": train_sum, "val": val_sum, "test": te.summary()},
        "test_episodes": len(episodes), "test_instrument_hours": hours, "models": {}, "_scores": {}, "_test": te,
    }
    for name in tqdm(cfg.models, desc="models", unit="model"):
        if train_data is not None:
            det = make_detector(name, cfg, train_data, out, wcfg)
            s_val, thr, cost = fit_and_threshold(det, tr, va, cfg.max_fpr)
            val = M.window_metrics(va.y, s_val, thr)
        else:
            det, thr = det_art, det_art.threshold
            cost = {"train_seconds": det.info.get("train_seconds") or float("nan"), "train_rss_growth_mb": 0.0}
            val = _val_from_artifact(det.metrics)
        s_te = det.score(te.x)  # the only time a model sees B
        res = grade_model(te.y, s_te, thr, te, idx, cfg, episodes, wcfg, int(np.iinfo(np.int64).min), hours)
        res.update(threshold=thr, val=val)
        res["cost"] = {**cost, **latency(det, te.x, cfg.latency_calls, cfg.batch), "model_mb": model_size_mb(det)}
        if getattr(det, "info", None):
            res["info"] = det.info
        if regimes is not None:
            res["by_regime"] = per_regime(te, s_te, thr, regimes, wcfg)
        results["models"][name] = res
        results["_scores"][name] = s_te
        if hasattr(det, "outputs"):
            results["_scenario_pred"] = det.outputs(te.x)["scenario_probs"].argmax(axis=1)
        log(f"{name}: test F1 {res['f1']:.3f} FPR {res['fpr']:.4f} PR-AUC {res['pr_auc']:.3f} (thr {thr:.4g})")
    return results

