"""Ways to run a trained ScoringModel forward: raw windows [B, T, F] float32 in, the served
outputs (model.scorer.protocol.OUTPUT_NAMES) out as NumPy arrays. Same weights
(model.safetensors), same arithmetic, different engines:

    torch    eager PyTorch (the model as trained; CPU or CUDA, any dtype)
    jax      the same forward written in jax.numpy from the state dict, jitted by XLA
             (CPU or GPU, float32). Batches are padded up to a power of two so that
             the scorer's varying batch sizes compile a handful of programs, not one
             per size.

`bench/scorer_bench.py --backends torch,jax` races them in one run;
tests/unit/test_backends.py checks they give the same outputs to a stated tolerance.
The scorer serves one of them (`darkpool scorer serve --backend`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from model.artifact import Artifact
from model.scorer import protocol

BACKENDS = ("torch", "jax")
Forward = Callable[[np.ndarray], dict[str, np.ndarray]]


def make_forward(name: str, art: Artifact) -> Forward:
    """The artifact's forward pass on backend `name` (one of BACKENDS)."""
    if name == "torch":
        return _torch_forward(art)
    if name == "jax":
        return _jax_forward(art)
    raise ValueError(f"unknown backend {name!r}: one of {', '.join(BACKENDS)}")


def warmup_sizes(name: str, max_batch: int) -> list[int]:
    """Batch sizes to run once before serving: jax compiles one program per padded size
    (each ~0.1-1 s on a CPU), so all of them up to max_batch; torch needs only the largest.

    >>> warmup_sizes("jax", 10), warmup_sizes("torch", 10)
    ([1, 2, 4, 8, 16], [10])
    """
    if name != "jax":
        return [max_batch]
    return [1 << i for i in range(_padded_size(max_batch).bit_length())]


def _torch_forward(art: Artifact) -> Forward:
    model = art.model

    @torch.inference_mode()
    def forward(x: np.ndarray) -> dict[str, np.ndarray]:
        # a request's own binary tensor is a read-only view of its body: torch wants a copy
        t = torch.from_numpy(x) if x.flags.writeable else torch.tensor(x)
        out = model(t.to(model.mean.device))
        return {k: out[k].float().cpu().numpy() for k in protocol.OUTPUT_NAMES}

    return forward


def _padded_size(n: int) -> int:
    """The power of two that holds n rows (the jitted program's batch size).

    >>> [_padded_size(n) for n in (1, 2, 3, 64, 65)]
    [1, 2, 4, 64, 128]
    """
    return 1 << max(0, (n - 1).bit_length())


def _jax_forward(art: Artifact) -> Forward:
    import jax
    import jax.numpy as jnp

    cfg = art.cfg
    if art.model.net.embed.weight.device.type != "cpu" or art.model.net.embed.weight.dtype != torch.float32:
        raise ValueError("the jax backend takes a float32 artifact loaded on the CPU (it places the weights itself)")
    p = {k: jnp.asarray(v.detach().cpu().numpy()) for k, v in art.model.state_dict().items()}
    keep = jnp.asarray(art.model.keep.cpu().numpy())
    time_idx = np.asarray(art.model.net.time_idx.cpu().numpy())
    n_head, C = cfg.n_head, cfg.n_embd

    def linear(name: str, x: Any) -> Any:
        return x @ p[f"{name}.weight"].T + p[f"{name}.bias"]

    def layer_norm(name: str, x: Any) -> Any:
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / jnp.sqrt(var + 1e-5) * p[f"{name}.weight"] + p[f"{name}.bias"]

    def mlp(name: str, x: Any) -> Any:
        return linear(f"{name}.out", jax.nn.gelu(linear(f"{name}.fc", x), approximate=False))

    def attention(name: str, x: Any) -> Any:
        B, T, _ = x.shape
        q, k, v = jnp.split(linear(f"{name}.qkv", x), 3, axis=2)
        q, k, v = (t.reshape(B, T, n_head, C // n_head).transpose(0, 2, 1, 3) for t in (q, k, v))
        att = jax.nn.softmax(q @ k.transpose(0, 1, 3, 2) / np.sqrt(C // n_head), axis=-1)
        return linear(f"{name}.proj", (att @ v).transpose(0, 2, 1, 3).reshape(B, T, C))

    def net(x: Any) -> tuple[Any, Any, Any]:
        pos = p["net.pos"][None] + linear("net.time", x[:, :, time_idx])
        h = linear("net.embed", x) + pos
        for i in range(cfg.n_layer):
            b = f"net.blocks.{i}"
            h = h + attention(f"{b}.attn", layer_norm(f"{b}.ln1", h))
            h = h + mlp(f"{b}.mlp", layer_norm(f"{b}.ln2", h))
        h = layer_norm("net.ln_f", h)
        ways = {"mean": lambda: h.mean(axis=1), "last": lambda: h[:, -1], "max": lambda: h.max(axis=1)}
        pooled = jnp.concatenate([ways[w]() for w in cfg.pooling], axis=-1)
        logit = linear("net.anomaly_head", pooled)[:, 0]
        scen = linear("net.scenario_head", pooled)
        z = linear("net.from_latent", linear("net.to_latent", pooled))
        return logit, scen, mlp("net.decoder", z[:, None, :] + pos)

    @jax.jit
    def scoring(raw: Any) -> dict[str, Any]:  # ScoringModel.forward, line by line
        x = (raw - p["mean"]) / p["std"] * keep
        logit, scen, recon = net(x)
        err = ((recon - x) ** 2).mean(axis=1)
        recon_error = err.mean(axis=1)
        z_rec = (jnp.log(recon_error + 1e-8) - p["recon_mu"]) / p["recon_sd"]
        p_rec = cfg.recon_weight * jax.nn.sigmoid(2.0 * (z_rec - cfg.recon_z0))
        p_sup = jax.nn.sigmoid(logit)
        probs = jax.nn.softmax(scen, axis=-1)
        rest = jax.nn.softmax(scen[:, 1:] / p["scen_temperature"], axis=-1) * (1.0 - probs[:, :1])
        return {
            "score": 1.0 - (1.0 - p_sup) * (1.0 - p_rec),
            "scenario_probs": jnp.concatenate([probs[:, :1], rest], axis=-1),
            "recon_error": recon_error,
            "channel_z": (jnp.log(err + 1e-8) - p["chan_mu"]) / p["chan_sd"] * keep,
        }

    def forward(x: np.ndarray) -> dict[str, np.ndarray]:
        n = len(x)
        size = _padded_size(n)
        if size != n:
            x = np.concatenate([x, np.zeros((size - n, *x.shape[1:]), np.float32)])
        out = scoring(x)
        return {k: np.asarray(out[k])[:n] for k in protocol.OUTPUT_NAMES}

    return forward
