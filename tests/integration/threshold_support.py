"""Helpers of the decision-stage cluster tests: windows with chosen scores, savepoints.

The cluster tests drive tests/integration/threshold_job.py (the job's decision operator,
ShardThresholds, between Kafka topics) on the real local stack.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from core import paths
from core.alerts import PROCESSING_TIME_FIELDS
from core.records import ScoredWindow
from core.schemas import SCENARIOS
from darkpool.stack import flink, jobs, smoke
from darkpool.stack.settings import StackConfig

JOB = Path(__file__).with_name("threshold_job.py")
SLIDE, T0 = 5_000, 1_700_000_000_000


def win(inst: str, i: int, score: float, scenario: int = 1) -> ScoredWindow:
    """A scored window of `inst` ending at pane i, `scenario` (index in SCENARIOS) leading."""
    probs = [0.02] * len(SCENARIOS)
    probs[scenario] = 0.84
    end = T0 + i * SLIDE
    return ScoredWindow(
        instrument=inst, window_start=end - 60_000, window_end=end, score=score, scenario_probs=tuple(probs),
        recon_error=0.1, channel_z=(0.5, 3.0, -1.0), volatility=3.0, volume=1000.0, model_version="it-1",
        global_threshold=1.0, max_event_ts=end - 1, features=(1.0, 2.0, 3.0), participants=(("P1", 2.0),),
    )  # fmt: skip


def produce(stack: StackConfig, topic: str, windows: list[ScoredWindow]) -> None:
    smoke.produce(stack, topic, [w.to_json() for w in windows])


def committed_alerts(stack: StackConfig, topic: str, until, timeout_s: float = 120) -> list[dict[str, Any]]:  # noqa: ANN001
    """Poll the topic (read_committed, from the start) until `until(alerts)` holds."""
    deadline = time.monotonic() + timeout_s
    got: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        got = [json.loads(m) for m in smoke.consume(stack, topic, expected=10**9, timeout_s=2)]
        if until(got):
            return got
    raise AssertionError(f"condition not met after {timeout_s:.0f}s; alerts so far: {[(a['instrument'], a['status']) for a in got]}")


def _post(stack: StackConfig, path: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(
        f"{stack.rest_url}{path}", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


def stop_with_savepoint(stack: StackConfig, job_id: str, timeout_s: float = 120) -> str:
    """POST /jobs/<id>/stop; returns the savepoint location once it is written."""
    target = (stack.flink_dir / "savepoints").as_uri()
    trigger = _post(stack, f"/jobs/{job_id}/stop", {"targetDirectory": target, "drain": False})["request-id"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = flink.rest_get(stack, f"/jobs/{job_id}/savepoints/{trigger}")
        if info["status"]["id"] == "COMPLETED":
            op = info["operation"]
            if "failure-cause" in op:
                raise AssertionError(f"stop-with-savepoint failed: {op['failure-cause']}")
            return op["location"]
        time.sleep(0.5)
    raise AssertionError(f"savepoint of {job_id} not done after {timeout_s:.0f}s")


def submit(stack: StackConfig, args: list[str], savepoint: str | None = None) -> str:
    """flink run -d [-s savepoint] -py threshold_job.py args (the platform's submit has no -s)."""
    argv = [str(flink.flink_home() / "bin" / "flink"), "run", "-d"]
    if savepoint:
        argv += ["-s", savepoint]
    argv += ["-py", str(JOB), *args]
    done = subprocess.run(argv, env=flink.client_env(stack), cwd=paths.REPO_ROOT, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    m = jobs._JOB_ID.search(out)
    assert done.returncode == 0 and m, f"flink run failed:\n{out[-3000:]}"
    jobs.wait_for_state(stack, m.group(1), {"RUNNING"}, timeout_s=120)
    return m.group(1)


def comparable(alerts: list[dict[str, Any]]) -> list[tuple]:
    """Alert events without the processing-time fields, sorted: equal for equal decisions."""
    return sorted(
        tuple(sorted((k, json.dumps(v)) for k, v in a.items() if k not in PROCESSING_TIME_FIELDS)) for a in alerts
    )
