"""Test job: the decision stage alone on the cluster, Kafka in and out.

Kafka topic of ScoredWindow JSON (core/records.py), in event-time order per instrument ->
event time from window_end -> one-window batches keyed by shard -> the job's decision
operator (udfs/shard_thresholds.decide_batches, uid "adaptive-threshold-by-shard") ->
exactly-once KafkaSink of alert JSON.
Used by the savepoint and failure-recovery tests, which need windows with *chosen*
scores (the full job's scores come from a trained model and cannot be dictated).

Flags:
  --bootstrap-servers   broker list (default: KafkaConfig / DARKPOOL_BOOTSTRAP_SERVERS)
  --input-topic         scored windows (one partition: the test controls event order)
  --output-topic        alert events, written with EXACTLY_ONCE
  --tx-prefix           transactional id prefix, unique per test and stable across restarts
  --checkpoint-ms       checkpoint interval (default 1000)
  --quiet-gap-ms / --idle-ttl-ms / --warmup-windows   ThresholdConfig overrides
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from dataclasses import replace

from pyflink.common import Duration, Row, WatermarkStrategy
from pyflink.common.serialization import SimpleStringSchema
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import CheckpointingMode, StreamExecutionEnvironment
from pyflink.datastream.connectors.base import DeliveryGuarantee
from pyflink.datastream.connectors.kafka import (
    KafkaOffsetsInitializer,
    KafkaRecordSerializationSchema,
    KafkaSink,
    KafkaSource,
)

from core.config import KafkaConfig, from_env
from core.records import ScoredWindow, encode_scored_batch
from core.thresholds import ThresholdConfig
from udfs.shard_thresholds import SCORED_BATCH_TYPE, decide_batches

SHARDS = 4  # instruments spread over shards (and the two decision subtasks) by name


def one_window_batch(text: str) -> Row:
    """ScoredWindow JSON -> the decision stage's input record (shard, [window])."""
    w = ScoredWindow.from_json(text)
    return Row(zlib.crc32(w.instrument.encode()) % SHARDS, encode_scored_batch([w]))


class WindowEnd(TimestampAssigner):
    def extract_timestamp(self, value, record_timestamp):  # noqa: ANN001
        return int(json.loads(value)["window_end"]) - 1


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap-servers", default=from_env(KafkaConfig).bootstrap_servers)
    p.add_argument("--input-topic", required=True)
    p.add_argument("--output-topic", required=True)
    p.add_argument("--tx-prefix", required=True)
    p.add_argument("--checkpoint-ms", type=int, default=1000)
    p.add_argument("--quiet-gap-ms", type=int, default=60_000)
    p.add_argument("--idle-ttl-ms", type=int, default=3_600_000)
    p.add_argument("--warmup-windows", type=int, default=60)
    args, _ = p.parse_known_args(argv)
    # raw scale: the tests send synthetic, unbounded scores (0.5 normal, 3.0 abuse), not
    # the model's probabilities (the job's logit scale)
    cfg = replace(ThresholdConfig(), quiet_gap_ms=args.quiet_gap_ms, idle_ttl_ms=args.idle_ttl_ms,
                  warmup_windows=args.warmup_windows, score_scale="raw")  # fmt: skip

    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(args.checkpoint_ms, CheckpointingMode.EXACTLY_ONCE)
    # One channel into the decision stage, as in the job: at parallelism 2 the Python
    # timestamp extractor would shuffle windows over two channels and undo their order.
    env.set_parallelism(1)
    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(args.bootstrap_servers)
        .set_topics(args.input_topic)
        .set_group_id(f"{args.tx_prefix}-in")
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_value_only_deserializer(SimpleStringSchema())
        .build()
    )
    windows = (
        env.from_source(source, WatermarkStrategy.no_watermarks(), "scored-windows")
        .uid("scored-windows-source").set_parallelism(1)
        .assign_timestamps_and_watermarks(
            WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_seconds(20)).with_timestamp_assigner(WindowEnd())
        ).uid("window-end-timestamps").set_parallelism(1)
    )  # fmt: skip
    sink = (
        KafkaSink.builder()
        .set_bootstrap_servers(args.bootstrap_servers)
        .set_record_serializer(
            KafkaRecordSerializationSchema.builder()
            .set_topic(args.output_topic)
            .set_value_serialization_schema(SimpleStringSchema())
            .build()
        )
        .set_delivery_guarantee(DeliveryGuarantee.EXACTLY_ONCE)
        .set_transactional_id_prefix(args.tx_prefix)
        .set_property("transaction.timeout.ms", str(15 * 60 * 1000))
        .build()
    )
    batches = windows.map(one_window_batch, output_type=SCORED_BATCH_TYPE).uid("one-window-batches")
    decided = decide_batches(batches, cfg).set_parallelism(2)
    decided.sink_to(sink).name("alerts-sink").uid("alerts-sink")
    env.execute(f"threshold-test {args.input_topic}")


if __name__ == "__main__":
    main(sys.argv[1:])
