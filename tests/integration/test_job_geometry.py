"""The job takes its window geometry from the model the scorer serves, and refuses one
that disagrees (a model trained on 5 s panes would score 10 s panes without error)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.job_support import ROOT, ScorerProcess, free_port
from tests.samples import payload

# the job's own entry point on its local mini cluster (here refused before the cluster starts)
pytestmark = pytest.mark.minicluster


def _job(scorer_url: str, *flags: str, tmp: Path) -> subprocess.CompletedProcess:
    events = tmp / "one.jsonl"  # one event: an empty file is refused as a backtest that cannot alert
    events.write_text(payload() + "\n")
    return subprocess.run(
        [sys.executable, "jobs/detect_anomalies.py", "--backtest", str(events), "--scorer-url", scorer_url, *flags],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_a_slide_that_disagrees_with_the_model_is_refused(trained_model: Path, tmp_path: Path) -> None:
    scorer = ScorerProcess(trained_model, free_port(), tmp_path / "scorer.log")
    try:
        r = _job(scorer.url, "--window-size", "60", "--window-slide", "10", tmp=tmp_path)
    finally:
        scorer.kill()
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "sliding every 10 s (6 panes)" in lines[0] and "sliding every 5 s (12 panes)" in lines[0]
