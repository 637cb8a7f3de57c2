"""One contract for every baseline detector (river's test_estimators idea):
fit(train, val) then score(x) -> finite float [N], high = anomalous, and it learns a
separable pattern better than chance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.config import WindowConfig
from core.features import CHANNELS, N_CHANNELS
from darkpool.evaluate import metrics as M
from darkpool.evaluate.sequence import SeqConfig, SequenceDetector
from darkpool.evaluate.tabular import GradientBoosting, IsolationForest, Rules
from darkpool.evaluate.transformer import TransformerDetector
from model.windows import WindowSet

T = 12


def _windows(n: int, seed: int) -> WindowSet:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.15).astype(np.int8)
    x = np.abs(rng.normal(0, 0.1, size=(n, T, N_CHANNELS))).astype(np.float32)
    x[:, :, CHANNELS.index("to_close_h")] = 3.0  # mid-session
    # the abuse: a burst of one-firm self-crossing in one pane (wash trade signature)
    pane = rng.integers(0, T, n)
    x[y == 1, pane[y == 1], CHANNELS.index("self_cross_share")] += 3.0
    return WindowSet(x, y, np.where(y == 1, 1, 0), np.full(n, "A", dtype=object), np.arange(n))


@pytest.mark.parametrize(("make", "min_pr_auc"), [
    (lambda: GradientBoosting(max_iter=30), 0.6),
    # unsupervised, one informative channel among 31 x 5 summary features: a weaker bar
    (lambda: IsolationForest(n_estimators=100), 0.3),
    (lambda: Rules(), 0.6),
    (lambda: SequenceDetector("cnn", SeqConfig(epochs=12, hidden=16, batch_size=64)), 0.6),
    (lambda: SequenceDetector("lstm", SeqConfig(epochs=15, hidden=16, batch_size=64, lr=5e-3, patience=15)), 0.6),
    # the transformer as LOSO trains it: model.train.fit on the given windows
    (lambda: TransformerDetector(Path("unused"), Path("unused"), WindowConfig(), 0.15, 0.15, max_epochs=15,
                                 max_minutes=1, from_windows=True), 0.6),
], ids=["gbt", "iforest", "rules", "cnn", "lstm", "transformer"])
def test_detector_contract(make, min_pr_auc: float) -> None:  # noqa: ANN001
    tr, va, te = _windows(600, 0), _windows(300, 1), _windows(300, 2)
    det = make()
    det.fit(tr, va)
    s = det.score(te.x)
    assert s.shape == (len(te),) and np.isfinite(s).all()
    assert M.ranking_metrics(te.y, s)["pr_auc"] > min_pr_auc  # chance = prevalence ~0.15
    assert det.score(te.x[:1]).shape == (1,)  # batch of one (latency measurement)
