"""The venue workflow end to end on a small real sample, as a user runs it (the CLI):
import LOBSTER order messages -> inject labeled abuse -> fine-tune a model on the
injected history -> evaluate it there (data-samples/lobster: GOOG 2012-06-21)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from core.schemas import LABELED_SCHEMA

ROOT = Path(__file__).resolve().parents[2]
RAW = ROOT / "data-samples" / "lobster" / "raw"
DAY = "GOOG_2012-06-21_34200000_36000000"


def darkpool(*args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "darkpool.cli", *args], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_import_inject_train_evaluate(tmp_path: Path) -> None:
    events = tmp_path / "goog.parquet"
    darkpool("import", "lobster", "--message", str(RAW / f"{DAY}_message_1.csv"),
             "--orderbook", str(RAW / f"{DAY}_orderbook_1.csv"), "--out", str(events))  # fmt: skip
    assert pq.read_metadata(events).num_rows > 1000
    # the whole converted day (same import, shipped) as the background: half an hour is too
    # short for a time split with episodes in every part
    day = ROOT / "data-samples" / "lobster" / "GOOG_2012-06-21_events.parquet"
    darkpool("inject", "--background", str(day), "--out", str(tmp_path / "inj"), "--rate", "0.01",
             "--scenarios", "wash_trade,off_market_print,quote_stuffing", "--seed", "3")  # fmt: skip
    labeled = pq.read_table(tmp_path / "inj" / "events.parquet")
    assert set(LABELED_SCHEMA.names) <= set(labeled.column_names)
    episodes = pq.read_table(tmp_path / "inj" / "episodes.parquet").to_pandas()
    assert set(episodes["scenario"]) == {"wash_trade", "off_market_print", "quote_stuffing"}

    # a base model on the injected half hour, then fine-tuned from it (the venue's step 5)
    darkpool("train", "--data", str(tmp_path / "inj"), "--out", str(tmp_path / "base"), "--epochs", "1",
             "--max-minutes", "0.5")  # fmt: skip
    darkpool("train", "--data", str(tmp_path / "inj"), "--out", str(tmp_path / "tuned"), "--epochs", "1",
             "--max-minutes", "0.5", "--from-artifact", str(tmp_path / "base"), "--lr", "0.0003")  # fmt: skip
    darkpool("evaluate", "--artifact", str(tmp_path / "tuned"), "--test-data", str(tmp_path / "inj"),
             "--out", str(tmp_path / "report"), "--quick")  # fmt: skip
    report = (tmp_path / "report" / "REPORT.md").read_text()
    assert "transformer" in report and "PR-AUC" in report
    metrics = json.loads((tmp_path / "tuned" / "metrics.json").read_text())
    assert metrics["val"]["windows"] > 0
