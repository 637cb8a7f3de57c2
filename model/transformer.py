"""The detector: a transformer encoder over the T time buckets of a window.

Read top to bottom: attention, MLP, block, the encoder with its three heads, then
`ScoringModel`, which wraps the encoder with the fitted normalization and calibration
so that raw window tensors go in and the served outputs come out.

Shapes: B windows, T buckets, F channels, C = n_embd, S scenarios.

How the heads combine into one score (high = anomalous):

    p_sup   = sigmoid(anomaly_logit)                      supervised, knows the 8 patterns
    z_rec   = (log recon_error - mu) / sd                 vs normal validation windows
    p_rec   = recon_weight * sigmoid(2 * (z_rec - recon_z0))
    score   = 1 - (1 - p_sup) * (1 - p_rec)               noisy-OR

The reconstruction head is trained on normal windows only through a narrow
bottleneck, so a window unlike anything normal (a pattern never seen in training)
reconstructs badly and can raise the score even when the supervised head is unsure.
For a normal window p_rec is ~0, so the score is then just p_sup.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.features import CHANNELS
from model.config import ModelConfig


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # [B, T, C] -> [B, nh, T, hs]; every bucket sees the whole window (not causal)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig, n_in: int | None = None, n_out: int | None = None):
        super().__init__()
        n_in = n_in or cfg.n_embd
        self.fc = nn.Linear(n_in, cfg.mlp_ratio * cfg.n_embd)
        self.out = nn.Linear(cfg.mlp_ratio * cfg.n_embd, n_out or cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.out(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(cfg.n_embd), SelfAttention(cfg)
        self.ln2, self.mlp = nn.LayerNorm(cfg.n_embd), MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class DarkpoolTransformer(nn.Module):
    """Normalized window [B, T, F] -> anomaly logit, scenario logits, reconstruction."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        C = cfg.n_embd
        self.register_buffer(
            "time_idx", torch.tensor([CHANNELS.index(c) for c in cfg.time_channels]), persistent=False
        )
        self.embed = nn.Linear(cfg.n_channels, C)
        # time-aware positions: a learned vector per bucket + a projection of the time of day
        self.pos = nn.Parameter(torch.zeros(cfg.n_buckets, C))
        self.time = nn.Linear(len(cfg.time_channels), C)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(C)
        P = len(cfg.pooling) * C  # pooled width
        self.anomaly_head = nn.Linear(P, 1)
        self.scenario_head = nn.Linear(P, cfg.n_scenarios)
        # reconstruction: pooled state -> tiny latent -> every bucket again (plus its position)
        self.to_latent = nn.Linear(P, cfg.n_latent)
        self.from_latent = nn.Linear(cfg.n_latent, C)
        self.decoder = MLP(cfg, n_out=cfg.n_channels)
        self.apply(self._init)
        nn.init.normal_(self.pos, std=0.02)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def positions(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, F] -> [B, T, C]: bucket position + time-of-day embedding."""
        return self.pos[None] + self.time(x[:, :, self.time_idx])

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        """[B, T, C] -> [B, len(pooling) * C], in the order of cfg.pooling."""
        ways = {"mean": lambda: h.mean(dim=1), "last": lambda: h[:, -1], "max": lambda: h.amax(dim=1)}
        return torch.cat([ways[p]() for p in self.cfg.pooling], dim=-1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, T, F] -> logit [B], scenario logits [B, S], reconstruction [B, T, F]."""
        pos = self.positions(x)
        h = self.drop(self.embed(x) + pos)  # [B, T, C]
        for block in self.blocks:
            h = block(h)
        h = self.ln_f(h)
        pooled = self.pool(h)  # [B, P]
        logit = self.anomaly_head(pooled).squeeze(-1)  # [B]
        scen = self.scenario_head(pooled)  # [B, S]
        z = self.from_latent(self.to_latent(pooled))  # [B, C]
        recon = self.decoder(z[:, None, :] + pos)  # [B, T, F]
        return logit, scen, recon


class ScoringModel(nn.Module):
    """Raw window tensors in, served outputs out; holds normalization and calibration.

    All fitted statistics are buffers, so they travel in model.safetensors with the
    weights. They are float32 and the normalization runs in float32 whatever the
    compute dtype of the encoder (bf16 on GPU).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.net = DarkpoolTransformer(cfg)
        F_ = cfg.n_channels
        self.register_buffer("mean", torch.zeros(F_))  # per-channel mean of training windows
        self.register_buffer("std", torch.ones(F_))  # per-channel std of training windows
        self.register_buffer("recon_mu", torch.zeros(()))  # mean log recon error, normal val windows
        self.register_buffer("recon_sd", torch.ones(()))  # its std
        self.register_buffer("chan_mu", torch.zeros(F_))  # mean log per-channel error, normal val
        self.register_buffer("chan_sd", torch.ones(F_))  # its std
        # temperature of the scenario head's manipulation logits, fitted on validation
        # windows of known abuse (model.train.calibrate_scenarios); 1 = as trained
        self.register_buffer("scen_temperature", torch.ones(()))
        unknown = set(cfg.ignored_channels) - set(CHANNELS)
        if unknown:
            raise ValueError(f"ignored_channels {sorted(unknown)} are not in core.features.CHANNELS")
        keep = torch.tensor([0.0 if c in cfg.ignored_channels else 1.0 for c in CHANNELS])
        self.register_buffer("keep", keep, persistent=False)  # derived from cfg, not saved

    def normalize(self, raw: torch.Tensor) -> torch.Tensor:
        return (raw.float() - self.mean) / self.std * self.keep

    def errors(self, x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        """Per-channel reconstruction error [B, F] (mean square over buckets, normalized units)."""
        return (recon.float() - x).pow(2).mean(dim=1)

    def forward(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        """raw [B, T, F] float32 -> score [B], scenario_probs [B, S], recon_error [B], channel_z [B, F]."""
        x = self.normalize(raw)
        dtype = next(self.net.parameters()).dtype
        logit, scen, recon = self.net(x.to(dtype))
        err = self.errors(x, recon)  # [B, F]
        recon_error = err.mean(dim=1)  # [B]
        eps = 1e-8
        z_rec = (torch.log(recon_error + eps) - self.recon_mu) / self.recon_sd
        p_rec = self.cfg.recon_weight * torch.sigmoid(2.0 * (z_rec - self.cfg.recon_z0))
        p_sup = torch.sigmoid(logit.float())
        return {
            "score": 1.0 - (1.0 - p_sup) * (1.0 - p_rec),
            "scenario_probs": scenario_probs(scen.float(), self.scen_temperature),
            "recon_error": recon_error,
            # ignored channels are zeroed at the input: their reconstruction error says
            # nothing about this window, so they must not be named as top features
            "channel_z": (torch.log(err + eps) - self.chan_mu) / self.chan_sd * self.keep,
            "logit": logit.float(),
        }


def scenario_probs(logits: torch.Tensor, temperature: torch.Tensor | float) -> torch.Tensor:
    """[B, S] head logits -> probabilities in core.schemas.SCENARIOS order: P(normal) as the
    head says, and the rest shared by softmax(manipulation logits / temperature), so that
    P(scenario | abuse) = probs[s] / (1 - probs[0]) is the calibrated part. At
    temperature 1 this is the plain softmax.

    >>> z = torch.tensor([[2.0, 1.0, 0.0]])
    >>> torch.allclose(scenario_probs(z, 1.0), torch.softmax(z, -1))
    True
    >>> p = scenario_probs(z, 2.0); round(float(p[0, 0]), 4) == round(float(torch.softmax(z, -1)[0, 0]), 4)
    True
    """
    p = torch.softmax(logits, dim=-1)
    rest = torch.softmax(logits[:, 1:] / temperature, dim=-1) * (1.0 - p[:, :1])
    return torch.cat([p[:, :1], rest], dim=-1)


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when present else cpu; anything else as given (with a clear error)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available; use --device cpu or auto")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto' -> bfloat16 on CUDA, float32 on CPU; or an explicit torch dtype name."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    dt = getattr(torch, name, None)
    if not isinstance(dt, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}; use float32, bfloat16, float16 or auto")
    return dt

