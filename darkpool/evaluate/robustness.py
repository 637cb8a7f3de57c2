"""Robustness: results per market regime, and leave-one-scenario-out (LOSO).

Per regime: each test window takes the simulator's regime (regimes.parquet spells) of
its instrument at the window's end; metrics at the model's validation threshold.

LOSO: for each abuse type s, retrain on train windows whose (dominant) scenario is not
s, fit the threshold on validation windows without s, then test on normal + s test
windows: how much of a pattern never seen in training is still caught. Windows where s
is present but another pattern dominates stay in training (the label keeps only the
dominant scenario); they are rare because episodes of one instrument do not overlap.
The transformer is retrained by model.train.fit on the reduced windows, with the
shorter LOSO budget of EvalConfig (loso_transformer_epochs / _minutes).
A scenario absent from train or from test cannot be left out (`loso_skipped`).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from core.config import WindowConfig
from core.schemas import SCENARIOS
from darkpool.evaluate import metrics as M
from darkpool.evaluate.detectors import make_detector
from model.windows import WindowSet


def window_regimes(ws: WindowSet, regimes: pd.DataFrame, wcfg: WindowConfig) -> np.ndarray:
    """Regime name of each window: its instrument's spell containing the window's last instant."""
    t = (ws.end_pane.astype(np.int64) + 1) * wcfg.slide_ns - 1
    left = pd.DataFrame({"instrument": ws.instrument.astype(str), "t": t, "i": np.arange(len(ws))}).sort_values("t")
    right = regimes.rename(columns={"start_ts": "t"}).sort_values("t")[["instrument", "t", "end_ts", "regime"]]
    m = pd.merge_asof(left, right, on="t", by="instrument", direction="backward")
    inside = m["end_ts"].notna() & (m["t"] < m["end_ts"].fillna(0))
    out = np.full(len(ws), "unknown", dtype=object)
    out[m["i"].to_numpy()] = np.where(inside, m["regime"].astype(str), "unknown")
    return out


def per_regime(te: WindowSet, score: np.ndarray, threshold: float, regimes: pd.DataFrame,
               wcfg: WindowConfig) -> dict[str, dict[str, float]]:
    reg = window_regimes(te, regimes, wcfg)
    out = {}
    for r in sorted(set(reg)):
        m = reg == r
        wm = M.window_metrics(te.y[m], score[m], threshold)
        out[r] = {"windows": int(m.sum()), "anomalous": int(te.y[m].sum()),
                  **{k: wm[k] for k in ("recall", "fpr", "precision", "f1", "pr_auc")}}
    return out


def loso_scenarios(tr: WindowSet, te: WindowSet) -> list[int]:
    """Scenarios that can be left out: seen in training, and in test to measure the loss."""
    return [s for s in range(1, len(SCENARIOS)) if (te.scenario == s).any() and (tr.scenario == s).any()]


def loso_skipped(tr: WindowSet, te: WindowSet) -> dict[str, str]:
    """Why a scenario of the data is not in the LOSO table (absent from both: not listed)."""
    out = {}
    for s in range(1, len(SCENARIOS)):
        in_train, in_test = (tr.scenario == s).any(), (te.scenario == s).any()
        if in_test and not in_train:
            out[SCENARIOS[s]] = "never in training: unseen by every model already (see its main-table recall)"
        elif in_train and not in_test:
            out[SCENARIOS[s]] = "no test windows"
    return out


def loso_detector(name: str, cfg: Any, data: Path, out: Path, wcfg: WindowConfig):  # noqa: ANN201
    """A fresh detector for one LOSO fit; the transformer trains on the given windows."""
    det = make_detector(name, replace(cfg, transformer_artifact=None), data, out, wcfg)
    if name == "transformer":
        det = replace(det, from_windows=True, max_epochs=cfg.loso_transformer_epochs,
                      max_minutes=cfg.loso_transformer_minutes, info={})
    return det


def leave_one_scenario_out(tr: WindowSet, va: WindowSet, te: WindowSet, cfg: Any, data: Path, out: Path,
                           wcfg: WindowConfig, log=print) -> dict[str, dict[str, dict[str, float]]]:
    """{model: {left-out scenario: recall / PR-AUC on normal + that scenario, at the val threshold}}."""
    res: dict[str, dict[str, dict[str, float]]] = {}
    present = loso_scenarios(tr, te)
    for name in cfg.loso_models:
        res[name] = {}
        for s in tqdm(present, desc=f"LOSO {name}", unit="scenario"):
            trs, vas = tr.subset(np.flatnonzero(tr.scenario != s)), va.subset(np.flatnonzero(va.scenario != s))
            tes = te.subset(np.flatnonzero((te.scenario == 0) | (te.scenario == s)))
            det = loso_detector(name, cfg, data, out, wcfg)
            t0 = time.time()
            det.fit(trs, vas)
            secs = time.time() - t0
            s_val = det.score(vas.x)
            thr = M.threshold_best_f1(vas.y, s_val, cfg.max_fpr)
            s_te = det.score(tes.x)
            wm = M.window_metrics(tes.y, s_te, thr)
            res[name][SCENARIOS[s]] = {"recall_unseen": wm["recall"], "pr_auc_unseen": wm["pr_auc"],
                                       "fpr": wm["fpr"], "windows": int(tes.y.sum()), "fit_seconds": secs}
        log(f"LOSO {name}: " + ", ".join(f"{k} {v['recall_unseen']:.2f}" for k, v in res[name].items()))
    return res
