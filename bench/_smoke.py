"""Inputs of the benchmarks' smoke runs (`--smoke`): seconds to make, real in shape.

tests/integration/test_bench_smoke.py runs every script's smoke mode, so a benchmark that
no longer runs against the current code fails the test suite instead of a release.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def untrained_artifact(folder: Path, preset_name: str = "small") -> Path:
    """An artifact with freshly initialized, seeded weights: as fast as a trained one, and
    enough for smoke runs and for dead-lettering (no detection quality measured)."""
    import torch

    from model.artifact import save_artifact
    from model.config import preset
    from model.transformer import ScoringModel

    torch.manual_seed(0)
    save_artifact(folder, ScoringModel(preset(preset_name)).eval(), threshold=0.5, target_fpr=0.01, metrics={})
    return folder


def tiny_market(out: Path, events: int = 4000, instruments: int = 2, duration: str = "10m") -> Path:
    """A labeled market folder (`darkpool generate`: events, episodes, regimes), small."""
    subprocess.run([sys.executable, "-m", "darkpool.cli", "generate", "--preset", "tiny", "--instruments", str(instruments),
                    "--events", str(events), "--duration", duration, "--seed", "3", "--out", str(out)],
                   cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    return out
