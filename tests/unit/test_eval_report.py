"""End to end on the tiny preset: `darkpool evaluate` writes the report files, and
`darkpool evaluate --alerts FILE` grades a job's alert stream against the episodes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from core.alerts import FIELDS
from darkpool.evaluate.cli import evaluate
from darkpool.market.config import PRESETS
from darkpool.market.simulate import simulate, write

PNGS = ("curves.png", "confusion_by_scenario.png", "scores_by_scenario.png", "detection_delay.png")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    write(simulate(PRESETS["tiny"]), out)
    return out


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DARKPOOL_CACHE", str(tmp_path / "cache"))  # window cache of this test only


def _run(args: list[str]) -> str:
    res = CliRunner().invoke(evaluate, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def _check_report(out: Path, models: list[str]) -> dict:
    for name in ("REPORT.md", "results.json", *PNGS):
        assert (out / name).stat().st_size > 0, name
    md = (out / "REPORT.md").read_text()
    assert "Table 8, measured" in md and "Recall by scenario" in md and "Episodes" in md
    res = json.loads((out / "results.json").read_text())
    assert list(res["models"]) == models
    for m in res["models"].values():
        assert 0 <= m["f1"] <= 1 and 0 <= m["fpr"] <= 1 and 0 <= m["pr_auc"] <= 1
        assert m["cost"]["latency_b1_p50_ms"] > 0 and m["episodes"]["episodes"] == res["test_episodes"]
    return res


def test_evaluate_writes_report(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    _run(["--data", str(tiny), "--out", str(out), "--models", "rules,iforest,cnn", "--quick", "--loso",
          "--loso-models", "rules"])
    res = _check_report(out, ["rules", "iforest", "cnn"])
    assert res["loso"]["rules"]  # one entry per scenario present in train and test


@pytest.mark.slow
def test_evaluate_all_models_with_transformer(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    _run(["--data", str(tiny), "--out", str(out), "--quick", "--transformer-minutes", "1"])
    res = _check_report(out, ["transformer", "lstm", "cnn", "gbt", "iforest", "rules"])
    assert "F1 >= 0.95" in (out / "REPORT.md").read_text()  # the verdict on the targets
    assert res["models"]["transformer"]["info"]["version"]


def _alert(alert_id: str, seq: int, instrument: str, start_ms: int, end_ms: int) -> dict:
    a = {f: None for f in FIELDS}
    a.update(schema=1, alert_id=alert_id, seq=seq, status="open" if seq == 0 else "close", instrument=instrument,
             episode_start=start_ms, episode_end=end_ms, window_end=end_ms, close_reason=None if seq == 0 else "quiet_gap",
             model_version="v0", latency_ms=40, top_features=[], participants=[], degraded=False)
    return a


def test_grade_alert_file(tiny: Path, tmp_path: Path) -> None:
    eps = pd.read_parquet(tiny / "episodes.parquet")
    ep = eps.iloc[0]
    s, e = int(ep.start_ts) // 10**6, int(ep.end_ts) // 10**6
    other = next(i for i in eps["instrument"].unique() if i != ep.instrument)
    busy = eps[eps["instrument"] == other]
    # a false alert on `other`, one hour before the session: overlaps none of its episodes
    f0 = int(busy["start_ts"].min()) // 10**6 - 3_600_000
    lines = [_alert("hit", 0, ep.instrument, s - 30_000, s + 5_000), _alert("hit", 1, ep.instrument, s - 30_000, e),
             _alert("miss", 0, other, f0, f0 + 60_000)]
    path = tmp_path / "alerts.jsonl"
    path.write_text("\n".join(json.dumps(a) for a in lines) + "\n\n")
    out = tmp_path / "graded"
    _run(["--alerts", str(path), "--data", str(tiny), "--out", str(out)])
    res = json.loads((out / "alerts_grade.json").read_text())
    assert (res["alert_events"], res["alerts"], res["false_alerts"], res["episodes"]) == (3, 2, 1, len(eps))
    assert res["detected"] >= 1 and res["delays_s"][0] == 5.0  # open window ended 5 s into the episode
    assert (out / "ALERTS_REPORT.md").exists()


def test_grade_rejects_a_malformed_alert_file(tiny: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"alert_id": "x"}\n')
    res = CliRunner().invoke(evaluate, ["--alerts", str(path), "--data", str(tiny), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "bad.jsonl:1" in res.output
