"""Transformer shapes, determinism, presets, and the artifact round trip."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from core.features import CHANNELS, N_CHANNELS
from core.schemas import SCENARIOS
from model.artifact import load_artifact, save_artifact
from model.config import PRESETS, ModelConfig, preset
from model.transformer import ScoringModel, count_params


def make_model(seed: int = 0, **overrides) -> ScoringModel:
    torch.manual_seed(seed)
    m = ScoringModel(preset("small", **overrides))
    # non-trivial fitted buffers, as after training
    g = torch.Generator().manual_seed(seed)
    m.mean.copy_(torch.randn(N_CHANNELS, generator=g))
    m.std.copy_(torch.rand(N_CHANNELS, generator=g) + 0.5)
    m.recon_mu.fill_(-1.0)
    m.chan_mu.copy_(torch.randn(N_CHANNELS, generator=g))
    return m.eval()


def windows(b: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, 12, N_CHANNELS, generator=torch.Generator().manual_seed(seed))


def test_forward_shapes_and_ranges():
    m = make_model()
    with torch.no_grad():
        out = m(windows(5))
    assert out["score"].shape == (5,)
    assert out["scenario_probs"].shape == (5, len(SCENARIOS))
    assert out["recon_error"].shape == (5,)
    assert out["channel_z"].shape == (5, N_CHANNELS)
    assert torch.all((out["score"] >= 0) & (out["score"] <= 1))
    torch.testing.assert_close(out["scenario_probs"].sum(-1), torch.ones(5))
    assert torch.all(out["recon_error"] > 0)


def test_same_seed_same_model_and_outputs():
    a, b = make_model(3), make_model(3)
    x = windows(4)
    with torch.no_grad():
        oa, ob = a(x), b(x)
    for k in oa:
        assert torch.equal(oa[k], ob[k]), k
    c = make_model(4)
    with torch.no_grad():
        assert not torch.equal(c(x)["score"], oa["score"])


def test_window_scores_do_not_depend_on_batch_neighbours():
    # the dynamic batcher mixes requests: row i must score the same alone or in a batch
    m = make_model()
    x = windows(64)
    with torch.no_grad():
        full = m(x)["score"]
        alone = torch.cat([m(x[i : i + 1])["score"] for i in range(0, 64, 7)])
    torch.testing.assert_close(full[::7], alone, rtol=1e-5, atol=1e-6)


def test_combined_score_rises_with_reconstruction_error():
    m = make_model()
    x = windows(8)
    with torch.no_grad():
        base = m(x)
        p_sup = torch.sigmoid(base["logit"])
        m.recon_mu.fill_(float(torch.log(base["recon_error"]).max()) + 100)  # every error looks tiny
        assert torch.allclose(m(x)["score"], p_sup, atol=1e-6)  # score = supervised head alone
        m.recon_mu.fill_(-100.0)  # every error looks huge
        assert torch.all(m(x)["score"] >= p_sup + 0.9 * m.cfg.recon_weight * (1 - p_sup))


def test_presets():
    assert PRESETS["enhanced"] == dict(n_layer=8, n_head=12, n_embd=768)
    assert PRESETS["baseline"] == dict(n_layer=6, n_head=8, n_embd=512)
    small = count_params(ScoringModel(preset("small")))
    assert small < 500_000, small
    with pytest.raises(ValueError, match="unknown model preset"):
        preset("huge")
    with pytest.raises(ValueError, match="multiple of n_head"):
        ModelConfig(n_embd=65, n_head=4)


def test_artifact_round_trip(tmp_path):
    m = make_model(5)
    version = save_artifact(tmp_path / "a", m, threshold=0.7, target_fpr=0.01, metrics={"val": {"pr_auc": 0.5}})
    files = {p.name for p in (tmp_path / "a").iterdir()}
    assert {"model.safetensors", "config.json", "normalization.json", "threshold.json", "metrics.json",
            "VERSION"} <= files
    # safetensors: tensors only, no pickle
    state = load_file(str(tmp_path / "a" / "model.safetensors"))
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    art = load_artifact(tmp_path / "a")
    assert art.version == version and art.threshold == 0.7
    assert json.loads((tmp_path / "a" / "config.json").read_text())["channels"] == list(CHANNELS)
    x = windows(6)
    with torch.no_grad():
        o1, o2 = m(x), art.model(x)
    for k in o1:
        torch.testing.assert_close(o1[k], o2[k])
    # same content -> same version; different weights -> different version
    assert save_artifact(tmp_path / "b", m, 0.7, 0.01, {}) == version
    assert save_artifact(tmp_path / "c", make_model(6), 0.7, 0.01, {}) != version


def test_artifact_tampering_and_bad_folders_are_refused(tmp_path):
    save_artifact(tmp_path / "a", make_model(), 0.5, 0.01, {})
    (tmp_path / "a" / "threshold.json").write_text('{"threshold": 0.0, "target_fpr": 0.01}')
    with pytest.raises(ValueError, match="modified after training"):
        load_artifact(tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="darkpool train"):
        load_artifact(tmp_path / "nothing")


def test_bf16_compute_dtype_keeps_float32_outputs():
    m = make_model()
    m.net.to(torch.bfloat16)
    with torch.no_grad():
        out = m(windows(3))
    assert all(v.dtype == torch.float32 for v in out.values())
    assert torch.all(torch.isfinite(out["score"]))


def test_ignored_channels_do_not_reach_the_model(tmp_path):
    m = make_model(ignored_channels=("tod_sin", "tod_cos", "to_close_h"))
    x = windows(4)
    y = x.clone()
    y[:, :, CHANNELS.index("to_close_h")] += 5.0
    with torch.no_grad():
        torch.testing.assert_close(m(x)["score"], m(y)["score"])
    save_artifact(tmp_path / "a", m, 0.5, 0.01, {})
    assert load_artifact(tmp_path / "a").cfg.ignored_channels == ("tod_sin", "tod_cos", "to_close_h")
    with pytest.raises(ValueError, match="not in core.features.CHANNELS"):
        ScoringModel(preset("small", ignored_channels=("nope",)))


def test_ignored_channels_are_never_top_features() -> None:
    import torch

    from core.features import CHANNELS, N_CHANNELS
    from model.config import preset
    from model.transformer import ScoringModel

    ignored = ("tod_sin", "tod_cos", "to_close_h")
    model = ScoringModel(preset("small", n_buckets=12, ignored_channels=ignored)).eval()
    with torch.no_grad():
        z = model(torch.randn(4, 12, N_CHANNELS) * 5)["channel_z"]
    for name in ignored:
        assert torch.all(z[:, CHANNELS.index(name)] == 0)
