"""The decision stage's Flink wrappers on PyFlink's local mini cluster (parallelism 2).

ShardThresholds (the job's decision operator), fed ordered batches of windows of several
instruments keyed by shard, must decide exactly what the pure functions decide on the
same windows in event-time order, and must drop an instrument's state once it has been
quiet for idle_ttl_ms of event time: the instrument then warms up again on the global
threshold.

No broker needed (a collection source), but it starts a JVM and Python workers, so it
lives with the integration tests.
"""

from __future__ import annotations

import json
import random
import sys
import time

import pytest

from core.alerts import PROCESSING_TIME_FIELDS
from core.coalesce import InstrumentState, close_if_quiet, step
from core.records import ScoredWindow
from core.thresholds import ThresholdConfig
from tests.integration import threshold_support

pytestmark = pytest.mark.minicluster  # a collection source: no Kafka

SLIDE, T0 = 5_000, 1_700_000_000_000
CFG = ThresholdConfig(warmup_windows=30, min_learned=20, regime_min=10, quiet_gap_ms=30_000, idle_ttl_ms=120_000)
PAUSE = "__pause__"  # marker: the source stalls so periodic watermarks catch up


def win(inst: str, i: int, score: float) -> ScoredWindow:
    return threshold_support.win(inst, i, score, scenario=3)


def scenario() -> tuple[list[list[ScoredWindow]], dict[str, list[ScoredWindow]]]:
    """Phases of windows of A and B, in event-time order."""
    rng = random.Random(4)
    a1 = [win("A", i, 3.0 if 45 <= i < 49 else rng.gauss(0.5, 0.05)) for i in range(80)]
    b = [win("B", i, 3.0 if i in (60, 61, 110) else rng.gauss(0.5, 0.05)) for i in range(160)]
    a3 = [win("A", i, 1.2 if i == 142 else rng.gauss(0.5, 0.05)) for i in range(140, 150)]
    phases = [a1 + b[:80], b[80:140], a3 + b[140:]]
    for p in phases:
        p.sort(key=lambda w: w.window_end)
    return phases, {"A": a1 + a3, "B": b}


def expected_events(by_inst: dict[str, list[ScoredWindow]]) -> list[dict]:
    out = []
    for ws in by_inst.values():
        st = InstrumentState()
        for w in sorted(ws, key=lambda w: w.window_end):
            if st.last_end is not None and w.window_end - 1 >= st.last_end + CFG.idle_ttl_ms:
                out += close_if_quiet(st, st.last_end + CFG.idle_ttl_ms, CFG, 0)
                st = InstrumentState()  # the housekeeping timer cleared it
            out += step(st, w, CFG, 0)
        out += close_if_quiet(st, 2**62, CFG, 0)  # end of input: the final watermark
    return out


def strip(ev: dict) -> tuple:
    return tuple(sorted((k, json.dumps(v)) for k, v in ev.items() if k not in PROCESSING_TIME_FIELDS))


def batches(phase: list[ScoredWindow]) -> list[str]:
    """An ordered phase -> ShardThresholds input texts: one JSON array per window end
    (the timestamp assigner below reads JSON; the batch is packed for the job's
    SCORED_BATCH_TYPE just before the decision stage)."""
    ends = sorted({w.window_end for w in phase})
    return ["[" + ",".join(w.to_json() for w in phase if w.window_end == e) + "]" for e in ends]


def run_on_mini_cluster(phases: list[list[ScoredWindow]]) -> tuple[list[dict], list[str]]:
    from pyflink.common import Configuration, Duration, Row, Types, WatermarkStrategy
    from pyflink.common.watermark_strategy import TimestampAssigner
    from pyflink.datastream import StreamExecutionEnvironment

    from core.records import encode_scored_batch
    from udfs.shard_thresholds import HOUSEKEEPING, SCORED_BATCH_TYPE, ShardThresholds

    class WindowEnd(TimestampAssigner):
        def extract_timestamp(self, value, record_timestamp):
            return json.loads(value)[0]["window_end"] - 1  # a batch of windows sharing their end

    def stall(value):
        if value == PAUSE:
            time.sleep(1.5)  # let the periodic watermark (50 ms) reach everything before
            return
        yield value

    conf = Configuration()
    conf.set_string("python.executable", sys.executable)
    conf.set_string("python.fn-execution.bundle.size", "1")  # no record waits in a bundle
    conf.set_string("pipeline.auto-watermark-interval", "50 ms")
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    # key_by adds a key-extraction operator at the default parallelism. At 2, fed from the
    # parallelism-1 source, it would round-robin records over two channels and undo the
    # order; ordered input (as in the job, where it runs at the async stage's
    # parallelism) needs it at the producer's parallelism.
    env.set_parallelism(1)
    records = [r for p in phases for r in ([*batches(p), PAUSE])]
    src = env.from_collection(records, type_info=Types.STRING())
    timed = (
        src.flat_map(stall, output_type=Types.STRING()).set_parallelism(1)
        .assign_timestamps_and_watermarks(
            WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_seconds(20)).with_timestamp_assigner(WindowEnd())
        ).set_parallelism(1)
        # its own task: chained to the stall, its periodic watermark could not fire while
        # the stall sleeps (one thread), so the next phase could overtake the watermark
        # of the last one (measured: A's next window sometimes came before the sweep)
        .start_new_chain()
    )  # fmt: skip
    # A and B share shard 0: every batch holds both when both traded
    rows = timed.map(lambda t: Row(0, encode_scored_batch([ScoredWindow.from_dict(d) for d in json.loads(t)])),
                     output_type=SCORED_BATCH_TYPE)  # fmt: skip
    decided = rows.key_by(lambda r: r[0], key_type=Types.INT()).process(
        ShardThresholds(CFG), output_type=Types.STRING()
    ).set_parallelism(2)
    tagged = decided.map(lambda s: "A" + s, output_type=Types.STRING()).union(
        decided.get_side_output(HOUSEKEEPING).map(lambda s: "H" + s, output_type=Types.STRING())
    )
    with tagged.execute_and_collect("test-adaptive-threshold") as results:
        got = list(results)
    return [json.loads(r[1:]) for r in got if r[0] == "A"], [r[1:] for r in got if r[0] == "H"]


def test_flink_wrapper_matches_pure_logic_and_clears_quiet_instruments():
    phases, by_inst = scenario()
    events, housekeeping = run_on_mini_cluster(phases)
    want = expected_events(by_inst)
    assert sorted(map(strip, events)) == sorted(map(strip, want))
    # A: one episode in phase 1; after 300 s of silence its state was dropped at
    # last_end + idle_ttl (not at the end of input), so phase 3 starts on the global threshold
    a_quiet_at = T0 + 79 * SLIDE + CFG.idle_ttl_ms
    assert f"cleared A {a_quiet_at}" in housekeeping, housekeeping
    # B never comes back: only the idle sweep can drop it (at the end of input)
    assert any(h.startswith("cleared B ") for h in housekeeping), housekeeping
    a3 = [e for e in events if e["instrument"] == "A" and e["window_end"] >= T0 + 140 * SLIDE]
    assert a3 and a3[0]["status"] == "open" and a3[0]["threshold_source"] == "global"
    assert {e["status"] for e in events if e["instrument"] == "B"} >= {"open", "close"}
    # no read times here (windows made by the test): measured from window_end; null for
    # the closes the quiet-gap timers decided
    assert all(e["latency_ms"] is None or e["latency_ms"] >= 0 for e in events)
