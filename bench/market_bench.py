"""Market-data benchmark: simulator events/s to Parquet, replay events/s into the local broker.

    .venv/bin/python bench/market_bench.py [--preset default] [--repeat 2] [--replay-events 50000] [--smoke]

Prints one JSON object. Generation is timed end to end (simulate + contract validation +
Parquet write, as `darkpool generate` does) with per-stage seconds; the best of `--repeat` runs is reported, with the
1-minute load average because the machine is shared. Replay sends the first
`--replay-events` rows to a fresh topic (deleted afterwards) and is skipped, with the
reason, when no broker answers at KafkaConfig.bootstrap_servers.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import time
import uuid
from pathlib import Path

import pyarrow as pa

from core.config import KafkaConfig, from_env
from core.schemas import FIELD_NAMES, encode_message
from darkpool.market.config import PRESETS
from darkpool.market.simulate import SimResult, simulate, write


def bench_generate(preset: str, repeat: int, out: Path) -> tuple[dict, SimResult]:
    cfg = PRESETS[preset]
    best: dict | None = None
    result = None
    for _ in range(repeat):
        stages: dict[str, float] = {}
        t0, c0 = time.perf_counter(), time.process_time()
        result = simulate(cfg, timings=stages)
        t1 = time.perf_counter()
        paths = write(result, out)  # validates the contract while writing
        t3 = time.perf_counter()
        stages.update(validate_and_write=t3 - t1)
        run = {
            "preset": preset,
            "events": result.coded.num_rows,
            "anomalous_fraction": round(float(result.coded.column("label").to_numpy().mean()), 5),
            "episodes": result.episodes.num_rows,
            "seconds": round(t3 - t0, 3),
            "cpu_seconds": round(time.process_time() - c0, 3),
            "events_per_s": round(result.coded.num_rows / (t3 - t0)),
            "stages_s": {k: round(v, 3) for k, v in stages.items()},
            "parquet_mb": round(paths["events"].stat().st_size / 2**20, 1),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
        if best is None or run["seconds"] < best["seconds"]:
            best = run
    return best, result


def bench_replay(events: pa.Table, n: int) -> dict:
    from kafka.admin import KafkaAdminClient, NewTopic

    from darkpool.market.replay import replay

    cfg = from_env(KafkaConfig)
    host, port = cfg.bootstrap_servers.split(",")[0].rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError as exc:
        return {"skipped": f"no broker at {cfg.bootstrap_servers} ({exc}); start it with `darkpool stack up`"}
    table = events.slice(0, n)
    t = time.perf_counter()
    for rec in table.slice(0, min(n, 50_000)).select(list(FIELD_NAMES)).to_pylist():
        encode_message(rec)
    encode_rate = min(n, 50_000) / (time.perf_counter() - t)
    topic = f"bench.replay.{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=cfg.bootstrap_servers)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=cfg.partitions, replication_factor=1)])
        stats = replay(table, cfg, topic=topic)
    finally:
        admin.delete_topics([topic])
        admin.close()
    return {
        "events": stats.sent,
        "seconds": round(stats.seconds, 3),
        "events_per_s": round(stats.rate),
        "partitions": cfg.partitions,
        "encode_only_events_per_s": round(encode_rate),
        "bootstrap": cfg.bootstrap_servers,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default", choices=sorted(PRESETS))
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--replay-events", type=int, default=50_000)
    ap.add_argument("--smoke", action="store_true", help="seconds: the tiny preset once, 2,000 events replayed")
    args = ap.parse_args()
    if args.smoke:
        args.preset, args.repeat, args.replay_events = "tiny", 1, min(args.replay_events, 2000)
    with tempfile.TemporaryDirectory() as tmp:
        gen, result = bench_generate(args.preset, args.repeat, Path(tmp))
    out = {"generate": gen, "target_events_per_s": 1_000_000, "cpus": os.cpu_count()}
    out["replay"] = bench_replay(result.events, args.replay_events) if args.replay_events else {"skipped": "--replay-events 0"}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
