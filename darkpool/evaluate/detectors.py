"""The detectors the evaluation compares, and its configuration: one place that builds them.

Shared by the harness (one fit on the time split) and the robustness checks (one fit per
left-out scenario), so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from core.config import WindowConfig
from darkpool.evaluate.sequence import SeqConfig, SequenceDetector
from darkpool.evaluate.tabular import GradientBoosting, IsolationForest, Rules
from darkpool.evaluate.transformer import TransformerDetector
from model.config import TrainConfig
from model.windows import WindowSet

ALL_MODELS = ("transformer", "lstm", "cnn", "gbt", "iforest", "rules")


class Detector(Protocol):
    name: str

    def fit(self, train: WindowSet, val: WindowSet) -> None: ...

    def score(self, x: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class EvalConfig:
    models: tuple[str, ...] = ALL_MODELS
    preset: str = "small"  # transformer preset (model.config.PRESETS)
    val_frac: float = TrainConfig.val_frac  # same split as `darkpool train`
    test_frac: float = TrainConfig.test_frac
    max_fpr: float = 0.005  # decision threshold: best validation F1 with validation FPR <= this
    seq: SeqConfig = field(default_factory=SeqConfig)  # LSTM / CNN training
    transformer_minutes: float = 12.0  # wall-clock budget of the transformer training
    transformer_epochs: int = 8
    transformer_artifact: Path | None = None  # reuse a trained artifact (split is checked)
    n_boot: int = 200  # bootstrap resamples for the CIs
    boot_block_s: float = 300.0  # bootstrap block = one instrument x this much event time, in panes
    latency_calls: int = 200  # timed scoring calls per batch size
    batch: int = 256  # the "batched" latency batch size
    seed: int = 0
    torch_threads: int = 1  # torch CPU threads for training and scoring (0 = torch default)
    loso: bool = False  # also run leave-one-scenario-out
    # models retrained once per left-out scenario (x7 on the default data: each scenario in both train and test)
    loso_models: tuple[str, ...] = ("transformer", "gbt", "rules")
    # the transformer's LOSO retrains are shorter than its main training (2-core budget):
    # a few epochs, the cosine schedule compressed to them, same early stopping
    loso_transformer_epochs: int = 2
    loso_transformer_minutes: float = 3.0

    @classmethod
    def quick(cls, **kw: Any) -> EvalConfig:
        """Minutes, not tens of minutes: for the tiny preset and tests."""
        base = cls(seq=SeqConfig(epochs=3, max_seconds=60), transformer_minutes=2.0, transformer_epochs=3,
                   n_boot=50, latency_calls=30, loso_transformer_minutes=1.0)
        return replace(base, **kw)


def make_detector(name: str, cfg: EvalConfig, data: Path, out: Path, wcfg: WindowConfig) -> Detector:
    if name == "transformer":
        return TransformerDetector(data, out, wcfg, cfg.val_frac, cfg.test_frac, cfg.preset, cfg.transformer_minutes,
                                   cfg.transformer_epochs, cfg.seed, cfg.transformer_artifact)
    if name in ("lstm", "cnn"):
        return SequenceDetector(name, replace(cfg.seq, seed=cfg.seed))
    if name == "gbt":
        return GradientBoosting(seed=cfg.seed)
    if name == "iforest":
        return IsolationForest(seed=cfg.seed)
    if name == "rules":
        return Rules()
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(ALL_MODELS)}")
