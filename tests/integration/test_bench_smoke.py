"""Every benchmark in bench/ still runs against the current code: its `--smoke` mode
(seconds, tiny sizes), run here as a user runs the script, so a benchmark that an
interface change broke fails the suite instead of the next person who measures.

A script added to bench/ without an entry in SMOKE fails
`test_every_bench_script_has_a_smoke_run`: nothing is left out silently. Scripts that
need Kafka get the session's stack; stack_bench starts a stack of its own (own run dir
and ports, as it always does); soak's smoke submits its job to the session's stack
(--shared-stack: its own topics; one stack start less), the job benchmarks run the job on
PyFlink's mini cluster, each smoke one job (every job is a JVM start, the bulk of the cost). chaos.py's smoke only plans its
faults: the real chaos run, on the session stack, is tests/integration/test_chaos.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from core.paths import REPO_ROOT
from darkpool.stack.settings import StackConfig

BENCH = REPO_ROOT / "bench"
SMOKE_OPTION = re.compile(r"""add_argument\(\s*['"]--smoke""")


@dataclass(frozen=True)
class Smoke:
    check: Callable[[dict], bool]  # on the JSON object the script printed last
    args: tuple[str, ...] = ()  # besides --smoke
    needs_stack: bool = False  # Kafka of the session's stack (DARKPOOL_* env)
    timeout_s: float = 420.0
    env: dict[str, str] = field(default_factory=dict)


def _kinds_all_dead(r: dict) -> bool:
    return r["job_exit"] == 0 and r["hostile"] > 0 and r["hostile_not_dead_lettered"] == 0 and r["valid_dead_lettered"] == 0


SMOKE: dict[str, Smoke] = {
    "assembly_bench.py": Smoke(lambda r: r["assembly_us_per_window"] > 0),
    "chaos.py": Smoke(lambda r: r["smoke"] and len(r["plan"]) == 4, args=("--faults", "4")),
    "decision_bench.py": Smoke(lambda r: r["us_per_window"]["step"] > 0),
    "decision_sweep.py": Smoke(lambda r: "recall" in r and "max_flag_rate" in r["setting"]),
    "detection_bench.py": Smoke(lambda r: r["episodes"] > 0),  # its summary is text; see _last_json
    "explain_bench.py": Smoke(lambda r: r["events"] == 4000 and r["explain_s"] > 0),
    "fuzz_bench.py": Smoke(_kinds_all_dead, needs_stack=True),
    "gpu_bench.py": Smoke(lambda r: r["best_in_process_windows_per_s"] > 0 and r["service"]),
    "job_bench.py": Smoke(lambda r: set(r["runs"]) == {"job_full"}, needs_stack=True),
    "job_latency.py": Smoke(lambda r: r["smoke"] and "alert_events" in r["fast"], needs_stack=True),
    "job_stages.py": Smoke(lambda r: set(r["stages"]) == {"panes"}),
    "market_bench.py": Smoke(lambda r: r["replay"].get("events") == 2000, needs_stack=True),
    "scorer_bench.py": Smoke(lambda r: r["best_windows_per_s"] > 0),
    "scorer_hey.py": Smoke(lambda r: r["status_codes"] == {"200": 100}),
    # on the session's stack: stack_bench's smoke is the one that starts (and stops) a stack
    "soak.py": Smoke(lambda r: r["samples"] >= 2 and "stopped_early" not in r, args=("--shared-stack",), needs_stack=True),
    "start_bench.py": Smoke(lambda r: r["starts"] == 1 and r["failures"] == 0 and r["race"]),
    "stack_bench.py": Smoke(lambda r: r["idle_rss_total_mb"] > 0 and r["profile"] == "default", args=("--port-offset", "7")),
    "train_bench.py": Smoke(lambda r: [p["preset"] for p in r["presets"]] == ["small"] and "error" not in r["presets"][0]),
}


def _last_json(stdout: str) -> dict:
    """The last line of the output that is a JSON object (detection_bench prints a text
    report: its figures are parsed from the summary table's episode line)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
        if line.startswith("episode recall"):  # detection_bench: "episode recall   72.7% (8/11) ..."
            return {"episodes": int(line.split("(")[1].split("/")[1].split(")")[0])}
    raise AssertionError(f"no JSON object in the output:\n{stdout[-2000:]}")


def _adopt_orphans() -> None:
    """Make this process the reaper of its descendants' orphans (Linux: a child subreaper).

    A script's JVMs (PyFlink's gateway, a stack's daemons) outlive the process that
    started them; re-parented to init, their CPU time would never reach RUSAGE_CHILDREN."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _reap_orphans(grace_s: float = 2.0) -> None:
    """Wait for the orphans that exited (or exit within `grace_s` of the last one), so their
    CPU time counts; children still running (a session stack's daemons) are left alone."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid:
            deadline = time.monotonic() + grace_s
        else:
            time.sleep(0.2)


def _children_cpu_s() -> float:
    """User + system CPU seconds of this process's waited-for children (and theirs)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def test_every_bench_script_has_a_smoke_run() -> None:
    scripts = {p.name for p in BENCH.glob("*.py") if not p.name.startswith("_")}
    assert scripts - set(SMOKE) == set(), "bench scripts without a smoke run here: give them --smoke and an entry"
    assert set(SMOKE) - scripts == set(), "SMOKE names scripts that are gone"
    for name in scripts:
        assert SMOKE_OPTION.search((BENCH / name).read_text()), f"{name} has no --smoke option"


@pytest.mark.integration
@pytest.mark.cluster
@pytest.mark.minicluster
@pytest.mark.parametrize("script", sorted(SMOKE))
def test_bench_smoke(script: str, stack: StackConfig) -> None:
    spec = SMOKE[script]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **spec.env}
    if spec.needs_stack:
        env["DARKPOOL_BOOTSTRAP_SERVERS"] = stack.bootstrap_servers
        env["DARKPOOL_KAFKA_PORT"] = str(stack.kafka_port)
    _adopt_orphans()
    t0, cpu0 = time.monotonic(), _children_cpu_s()
    done = subprocess.run([sys.executable, str(BENCH / script), "--smoke", *spec.args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=spec.timeout_s)  # fmt: skip
    seconds = time.monotonic() - t0
    _reap_orphans()
    cpu = _children_cpu_s() - cpu0
    # CPU seconds too: on a loaded machine they, not the wall time, say what a run costs
    print(f"{script} --smoke: {seconds:.1f} s, {cpu:.1f} CPU s")
    assert done.returncode == 0, f"{script} --smoke exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    result = _last_json(done.stdout)
    assert spec.check(result), f"{script} --smoke printed an unexpected result: {json.dumps(result)[:2000]}"
