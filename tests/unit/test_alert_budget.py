"""The alert budget (core/alert_budget.py): calibrated on a clean stretch, it keeps that
stretch within N alerts per instrument-hour, through the pure decision step and through
the operator the job runs; its file and its command refuse what they cannot use."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from core.alert_budget import AlertBudget, BudgetFileError, calibrate
from core.coalesce import InstrumentState, close_if_quiet, step
from core.records import encode_scored_batch
from core.thresholds import ThresholdConfig
from darkpool.evaluate.alert_metrics import latest_alerts
from tests.support import harness
from tests.unit.test_thresholds import SLIDE, T0, win
from udfs.shard_thresholds import ShardThresholds

CFG = ThresholdConfig(warmup_windows=40, close_after=3, quiet_gap_ms=30_000, idle_ttl_ms=3_600_000)
HOUR_WINDOWS = 3_600_000 // SLIDE


def stretch(inst: str, seed: int, spikes: int, n: int = HOUR_WINDOWS + 1) -> list:
    """An hour of one instrument's windows (first to last end: 1 h): probability scores near 0.02, `spikes` short
    runs of higher ones (a busy name's false alerts), of varied height."""
    rng = random.Random(seed)
    hot = {}
    for k in range(spikes):
        at = 60 + k * (n - 80) // max(spikes, 1)
        for j in range(2):
            hot[at + j] = 0.6 + 0.39 * rng.random()
    return [win(i, hot.get(i, min(0.2, abs(rng.gauss(0.02, 0.01)))), instrument=inst, gthr=0.5) for i in range(n)]


def decide(windows: list, budget: AlertBudget | None = None) -> list[dict]:
    states: dict[str, InstrumentState] = {}
    out: list[dict] = []
    for w in sorted(windows, key=lambda w: (w.window_end, w.instrument)):
        st = states.setdefault(w.instrument, InstrumentState())
        out += step(st, w, CFG, w.window_end, budget.cut(w.instrument) if budget else 0.0)
    for st in states.values():
        out += close_if_quiet(st, T0 + 10**9, CFG, 0)
    return out


def margins(events: list[dict]) -> dict[str, list[float]]:
    """Per instrument, each alert's margin (its latest event's), as `darkpool budget` reads them."""
    out: dict[str, list[float]] = {}
    for a in latest_alerts(events):
        out.setdefault(a.instrument, []).append(a.margin or 0.0)
    return out


def alerts_per_instrument(events: list[dict]) -> dict[str, int]:
    ids: dict[str, set] = {}
    for e in events:
        ids.setdefault(e["instrument"], set()).add(e["alert_id"])
    return {k: len(v) for k, v in ids.items()}


def test_a_calibrated_budget_keeps_the_clean_stretch_within_it_and_says_so() -> None:
    windows = stretch("BUSY", 1, spikes=9) + stretch("CALM", 2, spikes=1)
    before = decide(windows)
    assert alerts_per_instrument(before) == {"BUSY": 9, "CALM": 1}
    budget = calibrate(margins(before), {"BUSY": 1.0, "CALM": 1.0}, alerts_per_hour=2.0)
    assert budget.cut("BUSY") > 0 and budget.cut("CALM") == 0.0
    after = decide(windows, budget)
    assert alerts_per_instrument(after) == {"BUSY": 2, "CALM": 1}  # the two strongest of BUSY's nine
    strongest = sorted((e["score_margin"] for e in before if e["instrument"] == "BUSY"), reverse=True)
    assert all(e["threshold_source"] == "budget" for e in after if e["instrument"] == "BUSY")
    assert all(e["threshold_source"] != "budget" for e in after if e["instrument"] == "CALM")
    # the raise is the cut on the margin scale: what is left kept its margin above the cut
    left = {e["alert_id"]: e["score_margin"] for e in after if e["instrument"] == "BUSY"}
    assert len(left) == 2 and max(strongest) - budget.cut("BUSY") == pytest.approx(max(left.values()), abs=1e-9)


def test_the_operator_the_job_runs_applies_the_same_cuts() -> None:
    windows = stretch("BUSY", 1, spikes=9) + stretch("CALM", 2, spikes=1)
    budget = calibrate(margins(decide(windows)), {"BUSY": 1.0, "CALM": 1.0}, alerts_per_hour=2.0)
    op = harness.Harness(ShardThresholds(CFG, budget=budget))
    out: list = []
    ends = sorted({w.window_end for w in windows})
    for end in ends:
        batch = [w for w in windows if w.window_end == end]
        out += op.process((0, encode_scored_batch(sorted(batch, key=lambda w: w.instrument))), key=0)
    got = alerts_per_instrument([json.loads(x) for x in harness.main_output(out)])
    assert got == {"BUSY": 2, "CALM": 1}


def test_a_budget_file_round_trips_and_bad_ones_are_one_clear_error(tmp_path: Path) -> None:
    b = AlertBudget(0.5, 0.25, {"X": 1.5}, {"X": (2.0, 4)})
    f = tmp_path / "b.json"
    f.write_text(b.to_json())
    assert AlertBudget.load(f) == b and AlertBudget.load(f).cut("Y") == 0.25
    with pytest.raises(BudgetFileError, match="does not exist"):
        AlertBudget.load(tmp_path / "none.json")
    for text, says in (("{", "not an alert budget"), ('{"cuts": {}}', "format"),
                       (json.dumps({**json.loads(b.to_json()), "cuts": {"X": -1}}), ">= 0")):  # fmt: skip
        f.write_text(text)
        with pytest.raises(BudgetFileError, match=says):
            AlertBudget.load(f)


def test_darkpool_budget_writes_the_file_the_job_reads(tmp_path: Path) -> None:
    from darkpool.cli import cli  # through the group, as a user types it (its -h and settings)
    from jobs.job_flags import parse_job_args

    windows = stretch("BUSY", 1, spikes=9) + stretch("CALM", 2, spikes=1)
    (tmp_path / "alerts.jsonl").write_text("".join(json.dumps(e) + "\n" for e in decide(windows)))
    ts = [w.window_end * 1_000_000 for w in windows]
    pq.write_table(pa.table({"instrument": [w.instrument for w in windows], "ts": ts}), tmp_path / "events.parquet")
    out = tmp_path / "budget.json"
    r = CliRunner().invoke(cli, ["budget", "--alerts", str(tmp_path / "alerts.jsonl"), "--data", str(tmp_path),
                                    "--per-hour", "2", "--out", str(out)])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "1 of 2 instruments raised" in r.output and "-> 3 " in r.output, r.output
    assert AlertBudget.load(out).cut("BUSY") > 0
    cfg, _ = parse_job_args(["--alert-budget", str(out), "--backtest", str(tmp_path / "events.parquet")])
    assert cfg.alert_budget == str(out)
