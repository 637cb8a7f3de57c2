"""Leave-one-scenario-out with the transformer: retrained on windows without the
left-out scenario (checked on what the trainer actually receives), scored on it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import model.train
from core.config import WindowConfig
from core.features import CHANNELS, N_CHANNELS
from core.schemas import SCENARIOS
from darkpool.evaluate.harness import EvalConfig
from darkpool.evaluate.robustness import leave_one_scenario_out, loso_skipped
from model.windows import WindowSet

T = 12
WASH, QUOTE, CLOSE = (SCENARIOS.index(s) for s in ("wash_trade", "quote_stuffing", "marking_the_close"))


def _windows(n: int, seed: int, scenarios: tuple[int, ...]) -> WindowSet:
    """Noise windows; each abuse adds a burst to its own channel in one pane."""
    rng = np.random.default_rng(seed)
    scen = np.where(rng.random(n) < 0.2, rng.choice(scenarios, n), 0)
    x = np.abs(rng.normal(0, 0.1, size=(n, T, N_CHANNELS))).astype(np.float32)
    pane = rng.integers(0, T, n)
    for s, ch in ((WASH, "self_cross_share"), (QUOTE, "burst_100ms"), (CLOSE, "ret_mid_bps")):
        x[scen == s, pane[scen == s], CHANNELS.index(ch)] += 3.0
    return WindowSet(x, (scen > 0).astype(np.int8), scen.astype(np.int64), np.full(n, "A", dtype=object), np.arange(n))


def test_transformer_loso_trains_without_the_left_out_scenario(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    tr, va = _windows(600, 0, (WASH, QUOTE)), _windows(300, 1, (WASH, QUOTE))
    te = _windows(300, 2, (WASH, QUOTE, CLOSE))  # marking the close: never in training
    seen_by_fit: list[set[int]] = []
    real_fit = model.train.fit

    def spy(train, val, *a, **kw):  # noqa: ANN001, ANN202
        seen_by_fit.append(set(train.scenario.tolist()) | set(val.scenario.tolist()))
        return real_fit(train, val, *a, **kw)

    monkeypatch.setattr(model.train, "fit", spy)
    cfg = replace(EvalConfig.quick(), loso_models=("transformer",), loso_transformer_epochs=2, n_boot=10)
    res = leave_one_scenario_out(tr, va, te, cfg, tmp_path, tmp_path, WindowConfig(), log=lambda *_: None)

    assert list(res) == ["transformer"]
    assert set(res["transformer"]) == {"wash_trade", "quote_stuffing"}  # not the close: nothing to leave out
    assert seen_by_fit == [{0, QUOTE}, {0, WASH}]  # one fit per left-out scenario, without it
    for name, r in res["transformer"].items():
        assert r["windows"] == int((te.scenario == SCENARIOS.index(name)).sum())
        assert 0 <= r["recall_unseen"] <= 1 and 0 <= r["pr_auc_unseen"] <= 1 and 0 <= r["fpr"] <= 1
        assert r["fit_seconds"] > 0
    skipped = loso_skipped(tr, te)
    assert list(skipped) == ["marking_the_close"] and "never in training" in skipped["marking_the_close"]
