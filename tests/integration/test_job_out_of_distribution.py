"""Instruments unlike anything the model trained on, through the real job (backtest on
Flink's mini cluster, the scorer serving the test model trained on the default market):
a lit, cancel-heavy market at several times the training rates, and a quiet, expensive,
wide-spread one.

What must hold (issue 13): each instrument gets its own threshold within the documented
warm-up (no alert after it says `global`), no alert outlives the maximum episode length,
the flow is not flagged wholesale (the failure on real NASDAQ flow: one alert per busy
instrument for the whole hour), and the injected episodes are still alerted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from core.thresholds import ThresholdConfig
from darkpool.evaluate.alerts_grading import grade_alerts
from tests.integration.job_support import ROOT, ScorerProcess, free_port

pytestmark = pytest.mark.minicluster  # backtest files, alerts printed: no Kafka

CFG = ThresholdConfig()
WARMUP_MS = CFG.warmup_windows * 5_000  # the documented warm-up: 60 windows x 5 s slide


def _cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "darkpool.cli", *args], cwd=ROOT, check=True, capture_output=True)


# (name, generate flags): markets unlike the `default` training market (classic dark
# midpoint flow, $20-$200, ~0.5-15 events/s per instrument).
MARKETS = {
    # lit, cancel-heavy (>= 10 cancels per fill), up to ~10x the training rates
    "lit-fast": ("--flow", "lit", "--rate-range", "8,30", "--duration", "40m"),
    # a quiet, expensive, wide market: 0.1x the rates, $1,500-$2,000, 40-100 bps spreads
    "quiet-wide": ("--flow", "dark", "--rate-range", "0.3,1", "--price-range", "1500,2000",
                   "--spread-bps", "40,100", "--duration", "90m"),
}  # fmt: skip
# The bars, against the targets (README "Status": episode recall 90 %, false alerts <= 1
# per instrument-hour, clean 10-s bins inside evidence spans <= 3 %) and the figures
# measured 2026-12-07 with the test model (`pytest tests/integration/
# test_job_out_of_distribution.py -s`, load average 13-20 on the 2-core box): a recall
# bar at 2/3 to 3/4 of the measured recall, a ceiling at ~2x the measured false alerts and
# clean-bin share (and no looser than the target where the measured figure is far
# inside it). They catch a decision stage that stops alerting or flags the flow
# wholesale, not a model a few points weaker. A quiet market is this model's weak spot
# (jobs/README.md): its recall is far below the target.
MIN_RECALL = {"lit-fast": 0.5, "quiet-wide": 0.25}  # measured 0.79 (22 of 28 episodes), 0.33
MAX_FALSE_PER_HOUR = {"lit-fast": 4.0, "quiet-wide": 2.7}  # measured 2.00, 1.34 (target <= 1)
MAX_CLEAN_SHARE = {"lit-fast": 0.10, "quiet-wide": 0.03}  # measured 0.048, 0.005 (target <= 0.03)


@pytest.fixture(scope="module", params=sorted(MARKETS))
def ood_market(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ood") / request.param
    _cli("generate", "--preset", "varied", "--instruments", "3", "--sessions", "1", "--seed", "5",
         "--anomaly-rate", "0.015", *MARKETS[request.param], "--out", str(out))  # fmt: skip
    return out


def test_an_out_of_distribution_market_gets_its_own_thresholds_and_bounded_alerts(
    trained_model: Path, ood_market: Path, tmp_path: Path
) -> None:
    market = ood_market  # (one of MARKETS)
    scorer = ScorerProcess(trained_model, free_port(), tmp_path / "scorer.log")
    try:
        r = subprocess.run(
            [sys.executable, "jobs/detect_anomalies.py", "--backtest", str(market / "events.parquet"),
             "--scorer-url", scorer.url],
            cwd=ROOT, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
    finally:
        scorer.kill()
    assert r.returncode == 0, r.stderr[-3000:]
    events = [json.loads(line.split("> ", 1)[-1]) for line in r.stdout.splitlines() if '"alert_id"' in line]
    first_ts = pq.read_table(market / "events.parquet", columns=["instrument", "ts"]).to_pandas()
    first_ms = (first_ts.groupby("instrument")["ts"].min() // 1_000_000).to_dict()

    for e in events:
        assert e["episode_end"] - e["episode_start"] <= CFG.max_episode_ms, e
        if e["window_end"] > first_ms[e["instrument"]] + WARMUP_MS + 60_000:
            assert e["threshold_source"] != "global", e
    res = grade_alerts(events, market)
    print(json.dumps({k: res[k] for k in ("recall", "false_alerts_per_instrument_hour", "clean_bin_alerted_share")}))
    assert res["clean_bin_alerted_share"] <= MAX_CLEAN_SHARE[market.name], res  # not flagged wholesale
    assert res["false_alerts_per_instrument_hour"] <= MAX_FALSE_PER_HOUR[market.name], res
    assert res["recall"] >= MIN_RECALL[market.name], res["by_scenario"]
