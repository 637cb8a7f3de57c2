"""Every scorer backend (model/scorer/backends.py) gives the same outputs as eager torch, from the
same artifact, to a stated tolerance: float32 arithmetic in another order (XLA fuses and
reorders) moves scores by ~1e-6; the tolerance is 1e-4 absolute on probabilities and
1e-3 relative on the unbounded outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.artifact import load_artifact, save_artifact
from model.config import preset
from model.scorer.backends import BACKENDS, make_forward
from model.transformer import ScoringModel

TOL = {"score": (1e-4, 0), "scenario_probs": (1e-4, 0), "recon_error": (1e-6, 1e-3), "channel_z": (1e-4, 1e-3)}


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    torch.manual_seed(3)
    model = ScoringModel(preset("small"))
    with torch.no_grad():  # calibration buffers away from their defaults, as after training
        model.recon_mu.fill_(-1.0)
        model.recon_sd.fill_(0.5)
        model.chan_mu.normal_(0, 0.3)
        model.scen_temperature.fill_(1.7)
        for p in model.net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    folder = tmp_path_factory.mktemp("backend-artifact") / "a"
    save_artifact(folder, model, 0.5, 0.01, {})
    return load_artifact(folder)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "torch"])
@pytest.mark.parametrize("batch", [1, 5, 64])
def test_every_backend_gives_the_torch_outputs(artifact, backend: str, batch: int) -> None:
    x = np.random.default_rng(batch).normal(0, 2, (batch, artifact.cfg.n_buckets, artifact.cfg.n_channels))
    x = x.astype(np.float32)
    want = make_forward("torch", artifact)(x)
    got = make_forward(backend, artifact)(x)
    for name, (atol, rtol) in TOL.items():
        assert got[name].shape == want[name].shape, name
        np.testing.assert_allclose(got[name], want[name], atol=atol, rtol=rtol, err_msg=f"{backend} {name}")
    assert np.ptp(want["score"]) > 0 or batch == 1  # the windows differ: a constant output would pass vacuously


def test_an_unknown_backend_is_named() -> None:
    with pytest.raises(ValueError, match="one of torch, jax"):
        make_forward("onnx", None)  # type: ignore[arg-type]


def test_the_scorer_serves_each_backend_and_the_cli_offers_exactly_them(artifact) -> None:
    from model.scorer.cli import serve
    from model.scorer.server import ModelRunner, ScorerConfig

    offered = next(p for p in serve.params if p.name == "backend").type.choices
    assert tuple(offered) == BACKENDS
    x = np.random.default_rng(0).normal(0, 1, (3, artifact.cfg.n_buckets, artifact.cfg.n_channels)).astype(np.float32)
    outs = {}
    for backend in BACKENDS:
        runner = ModelRunner(ScorerConfig(artifact=artifact.path, device="cpu", max_batch=8, backend=backend,
                                          warmup_batches=1))  # fmt: skip
        outs[backend], version = runner.run_batch(x)
        assert version == artifact.version
    np.testing.assert_allclose(outs["jax"]["score"], outs["torch"]["score"], atol=1e-4)
