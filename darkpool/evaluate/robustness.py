"""Robustness: results per market regime, and leave-one-scenario-out (LOSO).

Per regime: each test window takes the simulator's regime (regimes.parquet spells) of
its instrument at the window's end; metrics at the model's validation threshold.

LOSO: for each abuse type s, retrain on train windows whose (dominant) scenario is not
s, fit the threshold on validation windows without s, then test on normal + s test
windows: how much of a pattern never seen in training is still caught. Windows where s
is present but another pattern dominates stay in training (the label keeps only the
dominant scenario); they are rare because episodes of one instrument do not overlap.
The transformer is left out: model.train trains from a Parquet path, not from windows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from darkpool.config import WindowConfig
from darkpool.evaluate import metrics as M
from model.windows import WindowSet
from udfs.schemas import SCENARIOS


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


def leave_one_scenario_out(tr: WindowSet, va: WindowSet, te: WindowSet, cfg: Any, data: Path, out: Path,
                           wcfg: WindowConfig, log=print) -> dict[str, dict[str, dict[str, float]]]:
    """{model: {left-out scenario: recall / PR-AUC on normal + that scenario, at the val threshold}}."""
    from darkpool.evaluate.harness import make_detector

    res: dict[str, dict[str, dict[str, float]]] = {}
    present = [s for s in range(1, len(SCENARIOS)) if (te.scenario == s).any() and (tr.scenario == s).any()]
    models = [m for m in cfg.loso_models if m != "transformer"]
    for name in models:
        res[name] = {}
        for s in tqdm(present, desc=f"LOSO {name}", unit="scenario"):
            trs, vas = tr.subset(np.flatnonzero(tr.scenario != s)), va.subset(np.flatnonzero(va.scenario != s))
            tes = te.subset(np.flatnonzero((te.scenario == 0) | (te.scenario == s)))
            det = make_detector(name, cfg, data, out, wcfg)
            det.fit(trs, vas)
            s_val = det.score(vas.x)
            thr = M.threshold_best_f1(vas.y, s_val, cfg.max_fpr)
            s_te = det.score(tes.x)
            wm = M.window_metrics(tes.y, s_te, thr)
            res[name][SCENARIOS[s]] = {"recall_unseen": wm["recall"], "pr_auc_unseen": wm["pr_auc"],
                                       "fpr": wm["fpr"], "windows": int(tes.y.sum())}
        log(f"LOSO {name}: " + ", ".join(f"{k} {v['recall_unseen']:.2f}" for k, v in res[name].items()))
    return res
