"""A real (tiny) training run on simulator data: it must learn, not just run."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from core.config import WindowConfig
from model.artifact import load_artifact
from model.config import TrainConfig
from model.train import predict, train
from model.windows import build_windows, read_events, time_split

# Stated bar: on a small market (the `tiny` preset widened to 12 instruments / 60k events,
# ~2,700 training windows) the small model must beat the validation base rate (share of
# anomalous windows: the PR-AUC of a random score) by a clear margin, and rank better
# than chance. The 4-instrument tiny market (~900 windows) was too small for a stable bar:
# over 16 seeds a quarter fell below PR-AUC 0.75, and seed 7 fell to the base rate.
# Measured with the default TrainConfig, seeds 7 / 8 / 9: PR-AUC 0.637 / 0.615 / 0.787
# over base rates 0.40 / 0.38 / 0.49; ROC-AUC 0.71 / 0.68 / 0.76.
MIN_LIFT_OVER_BASE_RATE = 0.15
MIN_VAL_ROC_AUC = 0.6


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from darkpool.market.config import PRESETS
    from darkpool.market.simulate import simulate, write

    out = tmp_path_factory.mktemp("tiny")
    write(simulate(replace(PRESETS["tiny"], n_instruments=12, n_events=60_000)), out)
    return out


@pytest.mark.slow
def test_tiny_training_reaches_the_bar_and_round_trips(tiny_data, tmp_path):
    tcfg = TrainConfig(seed=0, max_epochs=25, patience=6, max_minutes=3)
    metrics = train(tiny_data, tmp_path / "art", tcfg, WindowConfig(), log=lambda *_: None)
    val = metrics["val"]
    base_rate = val["positives"] / val["windows"]
    assert val["pr_auc"] >= base_rate + MIN_LIFT_OVER_BASE_RATE, (val["pr_auc"], base_rate)
    assert val["roc_auc"] >= MIN_VAL_ROC_AUC, val
    assert val["fpr"] <= 0.05  # the threshold was calibrated for 1 % on these normal windows

    # the artifact reproduces the trained model's scores exactly (and nothing is unpickled)
    art = load_artifact(tmp_path / "art")
    assert art.version == metrics["version"]
    ws = build_windows(read_events(tiny_data), 12, WindowConfig().slide_ns)
    split = time_split(ws.end_pane, 12, tcfg.val_frac, tcfg.test_frac)
    x = ws.x[split.test][:64]
    with torch.no_grad():
        served = art.model(torch.from_numpy(x))["score"].numpy()
    np.testing.assert_allclose(served, predict(art.model, x)["score"], rtol=1e-6)
    saved = json.loads((tmp_path / "art" / "metrics.json").read_text())
    assert saved["val"]["pr_auc"] == pytest.approx(val["pr_auc"])


def test_training_refuses_data_without_anomalies(tmp_path):
    with pytest.raises(FileNotFoundError, match="darkpool generate"):
        train(tmp_path / "nothing", tmp_path / "art", TrainConfig(), WindowConfig(), log=lambda *_: None)


def test_fine_tuning_starts_from_the_artifact_and_keeps_its_scaling(tiny_data, tmp_path):
    """`train --from-artifact`: the new artifact has the old one's network and input
    normalization, and its weights moved (it trained); a short run, not a quality bar."""
    quick = TrainConfig(seed=0, max_epochs=1, patience=1, max_minutes=1)
    train(tiny_data, tmp_path / "base", quick, WindowConfig(), log=lambda *_: None)
    train(tiny_data, tmp_path / "tuned", replace(quick, init_from=str(tmp_path / "base"), lr=3e-4, preset="baseline"),
          WindowConfig(), log=lambda *_: None)
    base, tuned = load_artifact(tmp_path / "base"), load_artifact(tmp_path / "tuned")
    assert tuned.cfg == base.cfg  # the artifact's network, not the preset's
    assert torch.equal(tuned.model.mean, base.model.mean) and torch.equal(tuned.model.std, base.model.std)
    moved = [not torch.equal(a, b) for a, b in zip(base.model.net.parameters(), tuned.model.net.parameters(), strict=True)]
    assert any(moved)
