"""Hostile input at scale through the real job: tests/integration/test_fuzz_input.py with
more hostile messages (default 10,000) mixed into the tiny market's 20,000 valid events.

    flock /tmp/stack.lock .venv/bin/python bench/fuzz_bench.py [--hostile N] [--seed S]
    .venv/bin/python bench/fuzz_bench.py --smoke     # 2,000 valid events, 200 hostile ones

The hostile kinds are darkpool/market/hostile.py (the test's too); the scorer serves a
freshly initialized small model (dead-lettering does not depend on the weights).

Needs the local stack's Kafka (`darkpool stack up`). The job runs bounded with no restart
allowed, so `restarts` is 0 when it finished and any failure shows as `job_exit` != 0.
Prints one JSON object: messages sent per hostile kind, dead letters per kind, late
ones, valid events lost, restarts, wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _scorer_load import start_scorer, stop_scorer  # noqa: E402
from _smoke import untrained_artifact  # noqa: E402

from darkpool.market.hostile import HOSTILE_KINDS, mix, produce_recording, read_all, tiny_market  # noqa: E402
from darkpool.stack import smoke  # noqa: E402
from darkpool.stack.settings import StackConfig  # noqa: E402


def run_job(bootstrap: str, topics: dict[str, str], scorer_url: str, log: Path, timeout_s: float) -> int:
    """jobs/detect_anomalies.py on the local mini cluster, bounded, no restart allowed;
    its exit status (0: the job finished)."""
    argv = [sys.executable, str(ROOT / "jobs" / "detect_anomalies.py"), "--bootstrap-servers", bootstrap,
            "--trades-topic", topics["trades"], "--dead-letter-topic", topics["dlq"], "--alerts-topic", topics["alerts"],
            "--scorer-url", scorer_url, "--start-from", "earliest", "--bounded", "--parallelism", "1",
            "--checkpoint-interval-ms", "2000", "--job-name", f"fuzz-{topics['trades'][-8:]}", "--restart-attempts", "0"]  # fmt: skip
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            return proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise SystemExit(f"fuzz_bench: the job did not finish in {timeout_s:.0f} s; its log ends:\n{tail}") from None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hostile", type=int, default=10_000, help="hostile messages to mix in")
    p.add_argument("--seed", type=int, default=1, help="seed of the hostile messages and their positions")
    p.add_argument("--timeout-s", type=float, default=900, help="longest the job may run")
    p.add_argument("--valid", type=int, default=0, help="only the first N valid events of the tiny market (0: all 20,000)")
    p.add_argument("--smoke", action="store_true", help="seconds, not minutes: --valid 2000 --hostile 200")
    a = p.parse_args()
    if a.smoke:
        a.valid, a.hostile, a.timeout_s = a.valid or 2000, min(a.hostile, 200), min(a.timeout_s, 300)
    cfg = StackConfig.load()
    bootstrap = cfg.bootstrap_servers
    tag = uuid.uuid4().hex[:8]
    topics = {n: f"bench.fuzz.{n}.{tag}" for n in ("trades", "dlq", "alerts", "scored")}
    try:
        smoke.create_topics(cfg, list(topics.values()), 2)
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback
        raise SystemExit(f"fuzz_bench: no Kafka at {bootstrap} ({exc}); start the stack: darkpool stack up") from None
    try:
        with tempfile.TemporaryDirectory(prefix="fuzz-bench-") as tmp:
            work = Path(tmp)
            valid = tiny_market(work / "market", a.valid or None)
            messages = mix(valid, a.hostile, a.seed)
            hostile = produce_recording(bootstrap, topics["trades"], messages)
            scorer, url = start_scorer(untrained_artifact(work / "model"), ["--device", "cpu", "--threads", "1"])
            t0 = time.perf_counter()
            try:
                status = run_job(bootstrap, topics, url, work / "job.log", a.timeout_s)
            finally:
                stop_scorer(scorer)
            wall = time.perf_counter() - t0
            letters = read_all(bootstrap, topics["dlq"])
    finally:
        smoke.delete_topics(cfg, list(topics.values()))
    coords = {(d["source"]["partition"], d["source"]["offset"]): d for d in letters}
    dead_by_kind = Counter(hostile[c] for c in coords if c in hostile)
    sent_by_kind = Counter(hostile.values())
    wrong_kind = sum(1 for c, d in coords.items() if c in hostile and d["kind"] != HOSTILE_KINDS[hostile[c]][1])
    print(json.dumps({
        "valid": len(valid),
        "hostile": len(hostile),
        "per_kind": {k: {"sent": sent_by_kind[k], "dead_lettered": dead_by_kind[k]} for k in sorted(sent_by_kind)},
        "dead_lettered": len(coords),
        "dead_letter_kinds": dict(Counter(d["kind"] for d in coords.values())),
        "hostile_not_dead_lettered": len(set(hostile) - set(coords)),
        "valid_dead_lettered": len(set(coords) - set(hostile)),
        "wrong_dead_letter_kind": wrong_kind,
        "without_reason": sum(1 for d in coords.values() if not d["reason"]),
        "validator_disagreements": sum(1 for d in coords.values() if d["validator_disagreement"]),
        "late": sum(1 for d in coords.values() if d["kind"] == "late"),
        "duplicate_dead_letters": len(letters) - len(coords),
        "job_exit": status,
        "restarts": 0 if status == 0 else None,  # none allowed: a failure ends the job
        "wall_s": round(wall, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
