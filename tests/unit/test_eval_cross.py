"""`darkpool evaluate` across data sets (--train-data A / --artifact DIR, --test-data B) and its
grading of the job's alerts on B, end to end on two tiny simulated markets (seconds)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner, Result

from core.alerts import FIELDS
from darkpool.evaluate import alerts_grading
from darkpool.evaluate.cli import evaluate
from darkpool.market.config import PRESETS
from darkpool.market.simulate import simulate, write

ALERT_PNGS = ("alerts_recall_by_scenario.png", "alerts_durations.png", "alerts_timeline.png")


@pytest.fixture(scope="module")
def markets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    a, b = tmp_path_factory.mktemp("market_a"), tmp_path_factory.mktemp("market_b")
    write(simulate(PRESETS["tiny"]), a)
    write(simulate(replace(PRESETS["tiny"], seed=11)), b)
    return a, b


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DARKPOOL_CACHE", str(tmp_path / "cache"))  # window cache of this test only


def _invoke(args: list[str]) -> Result:
    return CliRunner().invoke(evaluate, args)


def _alert_lines(b: Path) -> list[dict]:
    """An alert on B's first episode (evidence on it, typed right) and a false one an hour before the data."""
    eps = pd.read_parquet(b / "episodes.parquet")
    ep = eps.iloc[0]
    s, e = int(ep.start_ts) // 10**6, int(ep.end_ts) // 10**6
    f = int(eps["start_ts"].min()) // 10**6 - 3_600_000
    out = []
    for aid, seq, start, end, ev, scen in (("hit", 0, s - 55_000, s + 5_000, None, "unknown"),
                                           ("hit", 1, s - 55_000, e + 5_000, (s, e + 1), ep.scenario),
                                           ("false", 0, f, f + 60_000, (f + 50_000, f + 55_000), "pinging")):
        a = {f: None for f in FIELDS}
        a.update(schema=1, alert_id=aid, seq=seq, status="open" if seq == 0 else "close", instrument=ep.instrument,
                 episode_start=start, episode_end=end, window_end=end, scenario=scen, scenario_probability=0.9,
                 close_reason=None if seq == 0 else "below_threshold", model_version="v0", latency_ms=40,
                 top_features=[], participants=[], degraded=False)
        if ev is not None:
            a["evidence_start"], a["evidence_end"] = ev
        out.append(a)
    return out


def _write_alerts(path: Path, b: Path) -> Path:
    path.write_text("\n".join(json.dumps(a) for a in _alert_lines(b)) + "\n")
    return path


def test_missing_alert_file_is_reported_not_read_as_a_topic(markets, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    def no_kafka(*_a, **_k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("must not read Kafka")

    monkeypatch.setattr(alerts_grading, "read_alert_topic", no_kafka)
    res = _invoke(["--alerts", str(tmp_path / "missing.jsonl"), "--test-data", str(markets[1]),
                   "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "does not exist" in res.output and "Traceback" not in res.output
    res = _invoke(["--alerts", "missing.jsonl", "--data", str(markets[1]), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "alerts file missing.jsonl does not exist" in res.output


def test_test_data_without_episodes_is_one_line(markets, tmp_path: Path) -> None:  # noqa: ANN001
    folder = tmp_path / "no_episodes"
    folder.mkdir()
    shutil.copy(markets[1] / "events.parquet", folder)
    res = _invoke(["--alerts", str(_write_alerts(tmp_path / "a.jsonl", markets[1])), "--test-data", str(folder),
                   "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "has no episodes.parquet" in res.output
    assert res.output.strip().count("\n") == 0, res.output


@pytest.mark.parametrize("args, message", [
    (["--train-data", "A"], "need --test-data"),
    (["--data", "A", "--test-data", "B"], "--data is the one-data-set mode"),
    (["--test-data", "B"], "--test-data B needs"),
    (["--train-data", "A", "--artifact", "A", "--test-data", "B"], "not both"),
    (["--train-data", "A", "--test-data", "B", "--loso"], "--data only"),
    ([], "give --data DIR"),
])
def test_meaningless_combinations_are_refused(markets, tmp_path: Path, args: list[str], message: str) -> None:  # noqa: ANN001
    paths = {"A": str(markets[0]), "B": str(markets[1])}
    res = _invoke([paths.get(a, a) for a in args] + ["--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and message in res.output, res.output


def test_train_on_a_test_on_b(markets, tmp_path: Path) -> None:  # noqa: ANN001
    a, b = markets
    out = tmp_path / "rep"
    res = _invoke(["--train-data", str(a), "--test-data", str(b), "--out", str(out), "--models", "rules,iforest",
                   "--quick"])
    assert res.exit_code == 0, res.output
    r = json.loads((out / "results.json").read_text())
    assert r["cross"] == {"train_data": str(a), "artifact": None, "test_data": str(b)}
    assert r["windows"]["test"] == r["windows"]["all"]  # every window of B is a test window
    assert r["windows"]["train"]["windows"] > 0 and r["test_episodes"] == len(pd.read_parquet(b / "episodes.parquet"))
    assert all(m["episodes"]["episodes"] == r["test_episodes"] for m in r["models"].values())
    assert "Cross-domain: trained on" in (out / "REPORT.md").read_text()


def test_artifact_on_b_with_the_jobs_alerts(markets, tmp_path: Path) -> None:  # noqa: ANN001
    from model.config import TrainConfig
    from model.train import train

    a, b = markets
    art = tmp_path / "artifact"
    train(a, art, TrainConfig(max_epochs=1, max_minutes=0.5), log=lambda *_: None)
    alerts = _write_alerts(tmp_path / "alerts.jsonl", b)
    bad = _invoke(["--artifact", str(art), "--test-data", str(b), "--out", str(tmp_path / "x"), "--models", "rules"])
    assert bad.exit_code == 2 and "trained transformer" in bad.output
    out = tmp_path / "rep"
    res = _invoke(["--artifact", str(art), "--test-data", str(b), "--alerts", str(alerts), "--out", str(out), "--quick"])
    assert res.exit_code == 0, res.output
    assert "episode recall" in res.output and "false alerts / instrument-hour" in res.output  # the printed table
    r = json.loads((out / "results.json").read_text())
    assert list(r["models"]) == ["transformer"] and r["models"]["transformer"]["info"]["artifact"] == str(art)
    assert r["job_alerts"]["false_alerts"] == 1
    g = json.loads((out / "alerts_grade.json").read_text())
    assert (g["alert_events"], g["alerts"], g["alerts_with_evidence"]) == (3, 2, 2)
    first = g["episode_rows"][0]  # the episode the "hit" alert points at (others nearby may match too)
    assert first["detected"] and first["alert_scenario"] == first["scenario"] and first["delay_s"] == 5.0
    assert g["duration_s"]["max"] == 60.0 + (first["end_ms"] - first["start_ms"]) / 1000
    assert "The job's alerts on the test data" in (out / "REPORT.md").read_text()
    assert "## By instrument" in (out / "ALERTS_REPORT.md").read_text()
    for png in ALERT_PNGS:
        assert (out / png).stat().st_size > 0, png
