"""Baselines on window summary features and the rule-based surveillance baseline.

Every detector follows one contract (river's `score_one`, batched): `fit(train, val)`
then `score(x) -> float [N]`, high = anomalous. The decision threshold is not part of
a detector; the harness fits it on validation scores for all models alike.

- `GradientBoosting`: scikit-learn HistGradientBoosting on summary statistics of each
  channel over the window (supervised, traditional ML).
- `IsolationForest`: the same features, unsupervised (labels unused).
- `Rules`: classic per-scenario surveillance rules, one statistic per abuse type on the
  raw window channels; each rule is scaled by its own threshold, fitted on *normal
  validation* windows, and the window score is the most-triggered rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.ensemble import IsolationForest as SkIsolationForest
from threadpoolctl import threadpool_limits

from model.rules import Rules  # the rules baseline; also the job's degraded-mode scorer
from model.windows import WindowSet


def summary_features(x: np.ndarray) -> np.ndarray:
    """[N, T, F] window tensors -> [N, 5F]: mean, std, min, max and last pane per channel."""
    x = x.astype(np.float32, copy=False)
    return np.concatenate([x.mean(1), x.std(1), x.min(1), x.max(1), x[:, -1]], axis=1)


@dataclass
class GradientBoosting:
    max_iter: int = 100  # boosting rounds (early stopping on an internal split of train); 100 for the 2-core time budget
    seed: int = 0
    name: str = "gbt"

    def fit(self, train: WindowSet, val: WindowSet) -> None:
        # class_weight balances the ~5-10% anomalies; val is not used (threshold fitting only)
        self.clf = HistGradientBoostingClassifier(max_iter=self.max_iter, learning_rate=0.1, class_weight="balanced",
                                                  early_stopping=True, random_state=self.seed)
        # one OpenMP thread: on an oversubscribed 2-core box every parallel region waits for
        # a second thread to be scheduled; a run stalled > 10 min that takes ~1 min alone
        with threadpool_limits(limits=1):
            self.clf.fit(summary_features(train.x), train.y)

    def score(self, x: np.ndarray) -> np.ndarray:
        with threadpool_limits(limits=1):
            return self.clf.predict_proba(summary_features(x))[:, 1]


@dataclass
class IsolationForest:
    n_estimators: int = 200
    seed: int = 0
    name: str = "iforest"

    def fit(self, train: WindowSet, val: WindowSet) -> None:
        # unsupervised: fitted on all training windows, labels unused (as deployed on unlabeled flow)
        self.clf = SkIsolationForest(n_estimators=self.n_estimators, random_state=self.seed, n_jobs=1)
        self.clf.fit(summary_features(train.x))

    def score(self, x: np.ndarray) -> np.ndarray:
        return -self.clf.score_samples(summary_features(x))  # sklearn: lower = more abnormal


__all__ = ["GradientBoosting", "IsolationForest", "Rules", "summary_features"]
