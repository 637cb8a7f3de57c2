"""The transformer, trained by the model part's own code (model.train) and scored as served.

`model.train.train` builds the windows and the time split itself; we check that its
split is the harness's (same window geometry, same fractions, same window counts), so
all models are compared on the same test windows. A pre-trained artifact can be reused
(`--transformer-artifact`) under the same checks.

With `from_windows`, the detector instead trains on exactly the windows it is given
(`model.train.fit`, the same loop as `darkpool train`, no artifact written): that is
how leave-one-scenario-out trains it without the left-out scenario.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.config import WindowConfig, check_geometry
from model.windows import WindowSet


@dataclass
class TransformerDetector:
    data: Path  # events the harness evaluates (model.train reads them itself)
    workdir: Path  # where the artifact is written
    wcfg: WindowConfig
    val_frac: float
    test_frac: float
    preset: str = "small"
    max_minutes: float = 12.0
    max_epochs: int = 8
    seed: int = 0
    artifact: Path | None = None  # reuse this artifact instead of training
    from_windows: bool = False  # train on the given windows in memory (LOSO), not from `data`
    name: str = "transformer"
    info: dict = field(default_factory=dict)

    def _train_config(self):  # noqa: ANN202 (model.config is imported lazily: torch)
        from model.config import TrainConfig

        return TrainConfig(preset=self.preset, seed=self.seed, max_minutes=self.max_minutes,
                           max_epochs=self.max_epochs, val_frac=self.val_frac, test_frac=self.test_frac)

    def fit(self, train: WindowSet, val: WindowSet) -> None:
        if self.from_windows:
            self._fit_windows(train, val)
            return
        from model.artifact import load_artifact
        from model.train import train as train_model

        folder = self.artifact
        if folder is None:
            folder = self.workdir / f"transformer_{self.preset}"
            tcfg = self._train_config()
            t0 = time.time()
            train_model(self.data, folder, tcfg, self.wcfg)
            self.info["train_seconds_measured"] = time.time() - t0
        art = load_artifact(folder)
        check_geometry(self.wcfg, art.window, f"transformer artifact {folder}")
        self._check_split(art.config, art.metrics, train, val)
        self.model, self.info["version"], self.info["artifact"] = art.model, art.version, str(folder)
        self.info["train_seconds"] = art.metrics.get("train_seconds")
        self.info["artifact_threshold"] = art.threshold

    def _fit_windows(self, train: WindowSet, val: WindowSet) -> None:
        from model.train import fit

        t0 = time.time()
        fitted = fit(train, val, self._train_config(), self.wcfg, log=lambda *_: None, desc=self.name)
        self.model = fitted.model
        self.info.update(train_seconds_measured=time.time() - t0, steps=fitted.steps, best_step=fitted.best["step"],
                         val_pr_auc=fitted.best["pr_auc"])

    def _check_split(self, config: dict, metrics: dict, train: WindowSet, val: WindowSet) -> None:
        t = config.get("train", {})
        want = {"val_frac": self.val_frac, "test_frac": self.test_frac}
        got = {"val_frac": t.get("val_frac"), "test_frac": t.get("test_frac")}
        if want != got:
            raise ValueError(f"transformer artifact was trained with {got}, the harness uses {want}")
        wins = metrics.get("windows", {})
        counts = (wins.get("train", {}).get("windows"), wins.get("val", {}).get("windows"))
        if counts != (len(train), len(val)):
            raise ValueError(f"transformer artifact saw train/val windows {counts}, the harness has "
                             f"{(len(train), len(val))}: trained on other data?")

    def score(self, x: np.ndarray) -> np.ndarray:
        from model.train import predict

        return predict(self.model, x)["score"]

    def outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        from model.train import predict

        return predict(self.model, x)
