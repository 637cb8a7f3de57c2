"""Model artifact: one folder that holds everything the scorer needs.

    model.safetensors    weights + fitted buffers (normalization, recon calibration); no pickle
    config.json          ModelConfig, TrainConfig, window geometry, channel and scenario lists
    normalization.json   per-channel mean/std (readable copy of the buffers; checked on load)
    threshold.json       global score threshold and the validation FPR it was calibrated for
    metrics.json         validation / test metrics of the run
    VERSION              content hash of the files above = the model version

The version is a hash of the content, so two byte-identical artifacts share a version
and any edit changes it; `load_artifact` recomputes it and refuses a mismatch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from core.features import CHANNELS
from core.schemas import SCENARIOS
from model.config import ModelConfig
from model.transformer import ScoringModel

HASHED_FILES = ("model.safetensors", "config.json", "normalization.json", "threshold.json")


def _version(folder: Path) -> str:
    h = hashlib.sha256()
    for name in HASHED_FILES:
        h.update(name.encode())
        h.update((folder / name).read_bytes())
    return h.hexdigest()[:16]


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_artifact(
    folder: Path,
    model: ScoringModel,
    threshold: float,
    target_fpr: float,
    metrics: dict[str, Any],
    extra_config: dict[str, Any] | None = None,
) -> str:
    """Write the artifact folder; returns its version."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    _write_json(folder / "config.json", {
        "model": model.cfg.to_dict(),
        "channels": list(CHANNELS),
        "scenarios": list(SCENARIOS),
        **(extra_config or {}),
    })
    _write_json(folder / "normalization.json", {
        "channels": list(CHANNELS),
        "mean": [float(v) for v in model.mean.cpu()],
        "std": [float(v) for v in model.std.cpu()],
    })
    _write_json(folder / "threshold.json", {"threshold": float(threshold), "target_fpr": float(target_fpr)})
    _write_json(folder / "metrics.json", metrics)
    version = _version(folder)
    (folder / "VERSION").write_text(version + "\n")
    return version


@dataclass
class Artifact:
    model: ScoringModel  # eval mode, on the requested device/dtype
    cfg: ModelConfig
    threshold: float  # global score threshold (target FPR on validation)
    version: str  # content hash
    metrics: dict[str, Any]
    config: dict[str, Any]  # the whole config.json
    path: Path

    @property
    def window(self) -> dict[str, int]:
        """The window geometry it was trained on (size_s, slide_s, n_buckets), as
        `core.config.check_geometry` takes it; the bucket count alone for artifacts
        written before the geometry was recorded."""
        return self.config.get("window") or {"n_buckets": self.cfg.n_buckets}


def load_artifact(folder: Path | str, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32) -> Artifact:
    """Load and check an artifact folder; the model is put in eval mode on device/dtype."""
    folder = Path(folder)
    missing = [n for n in (*HASHED_FILES, "VERSION") if not (folder / n).exists()]
    if missing:
        raise FileNotFoundError(
            f"{folder} is not a model artifact (missing {', '.join(missing)}); "
            "give the folder `darkpool train --data DIR --out artifacts/NAME` wrote"
        )
    version = _version(folder)
    recorded = (folder / "VERSION").read_text().strip()
    if version != recorded:
        raise ValueError(f"artifact {folder} was modified after training: content hash {version} != VERSION {recorded}")
    config = json.loads((folder / "config.json").read_text())
    if config.get("channels") != list(CHANNELS):
        raise ValueError(
            f"artifact {folder} was trained on other feature channels than core.features.CHANNELS; "
            "retrain it with this code (`darkpool train`)"
        )
    cfg = ModelConfig.from_dict(config["model"])
    model = ScoringModel(cfg)
    try:
        weights = load_file(str(folder / "model.safetensors"))
        # artifacts trained before the scenario calibration have no temperature: 1 (as trained)
        weights.setdefault("scen_temperature", torch.ones(()))
        model.load_state_dict(weights)
    except (SafetensorError, RuntimeError, OSError) as exc:  # truncated / foreign weights file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"artifact {folder}: model.safetensors cannot be loaded ({first}); the file is damaged or "
            f"does not match config.json: copy the artifact again or retrain it with `darkpool train`"
        ) from exc
    norm = json.loads((folder / "normalization.json").read_text())
    if not (np.allclose(norm["mean"], model.mean.numpy()) and np.allclose(norm["std"], model.std.numpy())):
        raise ValueError(f"{folder}/normalization.json disagrees with the buffers in model.safetensors")
    # Buffers (normalization, calibration) stay float32; only the encoder takes the compute dtype.
    model.to(device)
    model.net.to(dtype)
    model.eval()
    threshold = float(json.loads((folder / "threshold.json").read_text())["threshold"])
    metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").exists() else {}
    return Artifact(model, cfg, threshold, version, metrics, config, folder)
