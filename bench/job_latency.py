"""Window end -> alert visible latency, on the exactly-once topic and on the fast topic.

    python bench/job_latency.py [--seconds 120] [--rate 500] [--instruments 20]
    python bench/job_latency.py --smoke      # under a minute: checks the script

A live stream is produced with event time = wall-clock time (so event-time window ends
and wall-clock receive times are comparable), the job runs live (mini cluster,
`--fast-alerts`), and two consumers record when each alert event becomes visible:
read_committed on the alerts topic, read_uncommitted on the fast topic. Latency =
receive wall time - the event's `window_end`; it includes the out-of-orderness (the
watermark trails by that much), the pane firing, scoring, the decision stage and, for
the exactly-once topic, the wait for the next checkpoint. The synthetic flow is out
of the model's training distribution, so it alerts a lot; only the timing matters.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.job_bench import _topic, start_scorer  # noqa: E402


def _produce(bootstrap: str, topic: str, seconds: float, rate: int, instruments: int, stop: threading.Event) -> None:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    rng = np.random.default_rng(0)
    i, t_end = 0, time.time() + seconds
    while time.time() < t_end and not stop.is_set():
        for _ in range(rate // 10):
            kind = ("new", "fill", "cancel")[i % 3]
            inst = f"L{rng.integers(instruments):03d}"
            rec = {"ts": time.time_ns(), "instrument": inst, "venue": "DP1", "event": kind, "order_id": f"o{i}",
                   "participant": f"F{rng.integers(30)}-d", "side": "BS"[i % 2], "price": 10.0, "qty": int(rng.integers(1, 900)),
                   "contra": f"F{rng.integers(30)}-x" if kind == "fill" else None, "bid": 9.99, "ask": 10.01,
                   "hidden": bool(i % 5 == 0)}  # fmt: skip
            p.send(topic, json.dumps(rec).encode(), key=inst.encode())
            i += 1
        time.sleep(0.1)
    p.flush()
    p.close()


def _consume(bootstrap: str, topic: str, committed: bool, out: list, stop: threading.Event) -> None:
    from kafka import KafkaConsumer

    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=500,
                      isolation_level="read_committed" if committed else "read_uncommitted")  # fmt: skip
    while not stop.is_set():
        for msg in c:
            out.append((time.time() * 1000, json.loads(msg.value)))
    c.close()


def _stats(samples: list) -> dict:
    lat = np.array([recv - ev["window_end"] for recv, ev in samples], dtype=np.float64)
    if not lat.size:
        return {"alert_events": 0}
    return {"alert_events": int(lat.size), "p50_ms": round(float(np.percentile(lat, 50))),
            "p99_ms": round(float(np.percentile(lat, 99))), "max_ms": round(float(lat.max()))}  # fmt: skip


def main() -> None:
    from core.paths import artifacts_dir

    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=120)
    p.add_argument("--rate", type=int, default=500)
    p.add_argument("--instruments", type=int, default=20)
    p.add_argument("--checkpoint-interval-ms", type=int, default=5000)
    p.add_argument("--bootstrap", default=None, help="Kafka [the local stack's: DARKPOOL_* env, localhost:9092]")
    p.add_argument("--artifact", type=Path, default=artifacts_dir() / "small")
    p.add_argument("--scorer-port", type=int, default=8598)
    p.add_argument("--smoke", action="store_true",
                   help="under a minute: 10 s at 40 events/s of 2 instruments, an untrained model, shorter waits")
    a = p.parse_args()
    from darkpool.stack import smoke
    from darkpool.stack.settings import StackConfig

    a.bootstrap = a.bootstrap or StackConfig.load().bootstrap_servers
    startup_s, drain_s = 45, 30
    if a.smoke:
        import tempfile

        from bench._smoke import untrained_artifact
        from darkpool.stack.scorer import free_port

        a.seconds, a.rate, a.instruments, a.scorer_port = 10, 40, 2, free_port()
        a.artifact = untrained_artifact(Path(tempfile.mkdtemp(prefix="latency-smoke-")) / "model")
        # the smoke checks that the script runs through with a live job, not a latency: a
        # job still starting when production begins only sees fewer events
        startup_s, drain_s = 15, 10
    trades, alerts, fast, dead = topics = [_topic(a.bootstrap, n) for n in (2, 1, 1, 1)]
    scorer = start_scorer(a.artifact, a.scorer_port)
    job = subprocess.Popen(
        [sys.executable, str(ROOT / "jobs" / "detect_anomalies.py"), "--bootstrap-servers", a.bootstrap,
         "--trades-topic", trades, "--alerts-topic", alerts, "--alerts-fast-topic", fast, "--fast-alerts",
         "--dead-letter-topic", dead, "--scorer-url", f"http://127.0.0.1:{a.scorer_port}", "--start-from", "latest",
         "--checkpoint-interval-ms", str(a.checkpoint_interval_ms), "--parallelism", "1",
         "--job-name", f"latency-{uuid.uuid4().hex[:6]}"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    stop = threading.Event()
    got = {"exactly_once": [], "fast": []}
    try:
        time.sleep(startup_s)  # job start-up (mini cluster + Python workers); the source starts at latest
        threads = [threading.Thread(target=_consume, args=(a.bootstrap, t, c, got[k], stop), daemon=True)
                   for t, c, k in ((alerts, True, "exactly_once"), (fast, False, "fast"))]  # fmt: skip
        for t in threads:
            t.start()
        _produce(a.bootstrap, trades, a.seconds, a.rate, a.instruments, stop)
        time.sleep(drain_s)  # let the last windows close (the watermark needs newer events) and commit
        if job.poll() is not None:  # a job that died has no latency: say so instead of printing none
            raise SystemExit(f"job_latency: the job exited during the run (exit status {job.returncode})")
    finally:
        stop.set()
        if job.poll() is None:
            os.killpg(job.pid, 15)
        job.wait(30)
        scorer.kill()
        smoke.delete_topics(StackConfig.load(), topics)
    print(json.dumps({
        "seconds": a.seconds, "rate": a.rate, "instruments": a.instruments,
        "checkpoint_interval_ms": a.checkpoint_interval_ms, "out_of_orderness_ms": 2000, "smoke": a.smoke,
        "exactly_once": _stats(got["exactly_once"]), "fast": _stats(got["fast"]), "load_average": os.getloadavg(),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
