"""Evaluation metrics (pure numpy): window level, per scenario, bootstrap CIs.

Raw point-wise metrics only: no point adjustment (a detection never spreads to
neighbouring windows through the labels). Thresholds are *inputs* here; the functions
that fit them (`threshold_*`) are meant to be called on validation data only.

>>> y = np.array([0, 0, 0, 1]); s = np.array([0.1, 0.2, 0.9, 0.8])
>>> m = window_metrics(y, s, threshold=0.5)
>>> (m["tp"], m["fp"], m["precision"], m["recall"], m["fpr"])
(1, 1, 0.5, 1.0, 0.3333333333333333)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def confusion(y: np.ndarray, pred: np.ndarray) -> tuple[int, int, int, int]:
    """(tp, fp, tn, fn) of binary labels y and binary predictions pred."""
    y, pred = np.asarray(y).astype(bool), np.asarray(pred).astype(bool)
    tp = int((y & pred).sum())
    fp = int((~y & pred).sum())
    return tp, fp, int((~y & ~pred).sum()), int((y & ~pred).sum())


def _div(a: float, b: float) -> float:
    # 0/0 -> 0: a detector that never alerts has precision 0, not NaN (it found nothing)
    return float(a) / float(b) if b else 0.0


def ranking_metrics(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """ROC-AUC and PR-AUC (average precision); NaN when y has a single class."""
    y = np.asarray(y).astype(int)
    if len(y) == 0 or y.min() == y.max():
        return {"roc_auc": float("nan"), "pr_auc": float("nan")}
    return {"roc_auc": float(roc_auc_score(y, score)), "pr_auc": float(average_precision_score(y, score))}


def window_metrics(y: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, precision, recall, F1, FPR at `threshold` (alert = score >= threshold) + AUCs."""
    pred = np.asarray(score) >= threshold
    tp, fp, tn, fn = confusion(y, pred)
    precision, recall = _div(tp, tp + fp), _div(tp, tp + fn)
    return {
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        "accuracy": _div(tp + tn, tp + fp + tn + fn),
        "precision": precision,
        "recall": recall,
        "f1": _div(2 * precision * recall, precision + recall),
        "fpr": _div(fp, fp + tn),
        **ranking_metrics(y, score),
    }


def recall_by_scenario(pred: np.ndarray, scenario: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Share of the windows of each abuse scenario (index >= 1) that are flagged."""
    pred = np.asarray(pred).astype(bool)
    return {names[s]: float(pred[scenario == s].mean()) for s in range(1, len(names)) if (scenario == s).any()}


def pr_auc_by_scenario(y: np.ndarray, score: np.ndarray, scenario: np.ndarray,
                       names: Sequence[str]) -> dict[str, float]:
    """PR-AUC of each abuse scenario against the normal windows alone (other abuses left out).

    The same quantity LOSO reports for a scenario never seen in training, so the two
    can be compared side by side.
    """
    return {names[s]: ranking_metrics(y[(scenario == 0) | (scenario == s)],
                                      score[(scenario == 0) | (scenario == s)])["pr_auc"]
            for s in range(1, len(names)) if (scenario == s).any()}


def threshold_at_fpr(normal_scores: np.ndarray, fpr: float) -> float:
    """Smallest threshold whose FPR on these normal scores is <= fpr (alert = score >= t)."""
    s = np.sort(np.asarray(normal_scores, dtype=np.float64))
    k = min(int(np.floor(fpr * len(s) + 1e-9)), len(s))  # at most k normal windows may be flagged
    if k == len(s):
        return float(s[0])
    # just above the (k+1)-th highest: only scores strictly above it (<= k of them) alert
    return float(np.nextafter(s[-k - 1], np.inf))


def threshold_best_f1(y: np.ndarray, score: np.ndarray, max_fpr: float) -> float:
    """Threshold maximizing F1 among those with FPR <= max_fpr (fit on validation only).

    Candidates are the distinct scores; alert = score >= t. If no anomaly is above the
    FPR-limited threshold, that threshold is returned (the detector then flags nothing useful).
    """
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    floor = threshold_at_fpr(score[~y], max_fpr)
    order = np.argsort(-score, kind="stable")
    s, yy = score[order], y[order]
    tp, fp = np.cumsum(yy), np.cumsum(~yy)
    last = np.r_[s[1:] != s[:-1], True]  # cut only between distinct scores
    ok = last & (s >= floor)
    if not ok.any() or y.sum() == 0:
        return floor
    f1 = 2 * tp / (tp + fp + y.sum())  # = 2PR/(P+R) with P = tp/(tp+fp), R = tp/npos
    i = int(np.flatnonzero(ok)[np.argmax(f1[ok])])
    return float(s[i])


def block_groups(instrument: np.ndarray, end_pane: np.ndarray, panes_per_block: int) -> np.ndarray:
    """Group id per window: (instrument, block of consecutive panes).

    Sliding windows overlap, so neighbouring windows are not independent; resampling
    whole blocks (a block bootstrap) keeps that dependence and gives honest, wider CIs.
    """
    key = np.char.add(np.asarray(instrument).astype(str), "|")
    key = np.char.add(key, (np.asarray(end_pane) // panes_per_block).astype(str))
    return np.unique(key, return_inverse=True)[1]


def bootstrap_ci(
    metric: Callable[[np.ndarray], float], groups: np.ndarray, n_boot: int = 200, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile CI of metric(indices) over resampled groups (with replacement)."""
    rng = np.random.default_rng(seed)
    members = np.split(np.argsort(groups, kind="stable"), np.cumsum(np.bincount(groups))[:-1])
    vals = []
    for _ in range(n_boot):
        pick = rng.integers(len(members), size=len(members))
        v = metric(np.concatenate([members[i] for i in pick]))
        if np.isfinite(v):
            vals.append(v)
    if not vals:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    return float(np.quantile(vals, a)), float(np.quantile(vals, 1 - a))
