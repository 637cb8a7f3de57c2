"""Stop with savepoint, restart from it: the per-instrument threshold state survives.

Phase 1 teaches instrument A its normal (scores ~0.5, warm-up completed, one episode
opened and closed). The job is stopped with a savepoint and resubmitted from it.
Phase 2 sends A a window of 1.2: a restored A decides against its learned baseline
(threshold_source "floor", 0.8 x global), while instrument C, first seen after the
restart, is still warming up (threshold_source "global"). Phase 1's episode is not
re-emitted (no duplicate through the restore).
"""

from __future__ import annotations

import random
import re

import pytest
from ruamel.yaml import YAML

from darkpool.stack import flink, jobs
from tests.integration.threshold_support import (
    committed_alerts,
    produce,
    stop_with_savepoint,
    submit,
    win,
)

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


def test_threshold_state_survives_stop_with_savepoint_and_restore(stack, kafka_topic):
    src, out = kafka_topic("windows", partitions=1), kafka_topic("alerts", partitions=1)
    args = ["--input-topic", src, "--output-topic", out, "--tx-prefix", f"sp-{out}",
            "--bootstrap-servers", stack.bootstrap_servers]  # fmt: skip
    rng = random.Random(9)
    phase1 = [win("A", i, 3.0 if 70 <= i < 72 else rng.gauss(0.5, 0.05)) for i in range(90)]
    job = submit(stack, args)
    try:
        produce(stack, src, phase1)
        first = committed_alerts(stack, out, lambda a: any(e["status"] == "close" for e in a))
        assert [e["status"] for e in first] == ["open", "close"]
        assert_bounded_manifest(stack, job)
        savepoint = stop_with_savepoint(stack, job)
        jobs.wait_for_state(stack, job, {"FINISHED"}, timeout_s=60)

        job = submit(stack, args, savepoint=savepoint)
        phase2 = [win("A", 95, 1.2)] + [win("C", i, 1.2 if i == 95 else 0.5) for i in range(90, 100)]
        phase2 += [win("A", i, 0.5) for i in range(96, 110)]  # closes A's episode, moves the watermark
        produce(stack, src, sorted(phase2, key=lambda w: w.window_end))
        alerts = committed_alerts(stack, out, lambda a: {e["instrument"] for e in a if e["status"] == "open"} >= {"A", "C"}
                                  and sum(e["instrument"] == "A" and e["status"] == "open" for e in a) == 2)
    finally:
        if jobs.job(stack, job)["state"] not in jobs.TERMINAL:
            jobs.cancel(stack, job)
    a_open = [e for e in alerts if e["instrument"] == "A" and e["status"] == "open"]
    c_open = [e for e in alerts if e["instrument"] == "C" and e["status"] == "open"]
    assert a_open[1]["window_end"] == win("A", 95, 1.2).window_end
    assert a_open[1]["threshold_source"] == "floor" and a_open[1]["threshold"] == pytest.approx(0.8)
    assert c_open[0]["threshold_source"] == "global" and c_open[0]["threshold"] == pytest.approx(1.0)
    ids = [(e["alert_id"], e["seq"]) for e in alerts]
    assert len(ids) == len(set(ids)), "an alert event was emitted twice across the restore"


def assert_bounded_manifest(stack, job_id: str) -> None:
    """The running job's RocksDB instances took flink-conf's options factory: RocksDB
    writes the options it opened with into an OPTIONS file in each instance's folder."""
    conf = YAML(typ="safe").load(flink.BASE_CONFIG.read_text())
    size = conf["darkpool"]["rocksdb"]["max-manifest-size"]
    number, unit = re.fullmatch(r"(\d+)\s*(kb|mb)", size.lower()).groups()
    want = int(number) * {"kb": 2**10, "mb": 2**20}[unit]
    dbs = list((stack.flink_dir / "tmp").glob(f"tm_*/tmp/job_{job_id}_op_*/db"))
    assert dbs, f"no RocksDB instance of job {job_id} under {stack.flink_dir / 'tmp'}"
    for db in dbs:
        options = max(db.glob("OPTIONS-*"), key=lambda f: f.stat().st_mtime).read_text()
        assert f"max_manifest_file_size={want}" in options, db
