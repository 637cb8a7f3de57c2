"""Smoke job: Kafka topic -> Python map -> Kafka topic, through the real connector.

Proves the platform end to end: the shaded `flink-sql-connector-kafka` jar loads in
PyFlink, a Python operator runs in the cluster's Python worker, and the exactly-once
KafkaSink commits its transaction on a checkpoint (readers use read_committed).

Each input message `m` becomes the JSON object {"echo": m, "chars": len(m)}.

Flags:
  --bootstrap-servers  broker list (default: KafkaConfig, env DARKPOOL_BOOTSTRAP_SERVERS)
  --input-topic        topic to read; without it a bundled sample is printed instead
  --output-topic       topic to write (required with --input-topic)
  --group-id           consumer group of the source (default: smoke-<output topic>)
  --guarantee          exactly-once (default) | at-least-once
  --transactional-id-prefix  unique per application (default: smoke-<output topic>)
  --unbounded          keep reading; default: stop at the offsets that are the latest
                       when the job starts, so the job FINISHES (and its last checkpoint
                       commits the final transaction)

Run on the local cluster:  flink run -d -py jobs/smoke_kafka_roundtrip.py --input-topic a --output-topic b
(`darkpool stack smoke` does exactly that with fresh topics).
"""

from __future__ import annotations

import argparse
import json
import sys

from pyflink.common import Types, WatermarkStrategy
from pyflink.common.serialization import SimpleStringSchema
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.datastream.connectors.base import DeliveryGuarantee
from pyflink.datastream.connectors.kafka import (
    KafkaOffsetsInitializer,
    KafkaRecordSerializationSchema,
    KafkaSink,
    KafkaSource,
)

from core.config import KafkaConfig, from_env

SAMPLE = ["ORD-1 new AAPL", "ORD-1 fill AAPL", "ORD-2 cancel MSFT"]
# below the broker's transaction.max.timeout.ms (1 h, darkpool/stack/kafka.py)
SINK_TRANSACTION_TIMEOUT_MS = 15 * 60 * 1000


def echo(message: str) -> str:
    return json.dumps({"echo": message, "chars": len(message)})


def build_pipeline(messages: DataStream) -> DataStream:
    return messages.map(echo, output_type=Types.STRING()).name("echo")


def kafka_source(args: argparse.Namespace) -> KafkaSource:
    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(args.bootstrap_servers)
        .set_topics(args.input_topic)
        .set_group_id(args.group_id or f"smoke-{args.output_topic}")
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_value_only_deserializer(SimpleStringSchema())
    )
    if not args.unbounded:
        builder = builder.set_bounded(KafkaOffsetsInitializer.latest())
    return builder.build()


def kafka_sink(args: argparse.Namespace) -> KafkaSink:
    guarantee = {
        "exactly-once": DeliveryGuarantee.EXACTLY_ONCE,
        "at-least-once": DeliveryGuarantee.AT_LEAST_ONCE,
    }[args.guarantee]
    record = (
        KafkaRecordSerializationSchema.builder()
        .set_topic(args.output_topic)
        .set_value_serialization_schema(SimpleStringSchema())
        .build()
    )
    return (
        KafkaSink.builder()
        .set_bootstrap_servers(args.bootstrap_servers)
        .set_record_serializer(record)
        .set_delivery_guarantee(guarantee)
        .set_transactional_id_prefix(args.transactional_id_prefix or f"smoke-{args.output_topic}")
        .set_property("transaction.timeout.ms", str(SINK_TRANSACTION_TIMEOUT_MS))
        .build()
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", default=from_env(KafkaConfig).bootstrap_servers)
    parser.add_argument("--input-topic")
    parser.add_argument("--output-topic")
    parser.add_argument("--group-id")
    parser.add_argument("--guarantee", choices=["exactly-once", "at-least-once"], default="exactly-once")
    parser.add_argument("--transactional-id-prefix")
    parser.add_argument("--unbounded", action="store_true")
    args, _ = parser.parse_known_args(argv)
    if args.input_topic and not args.output_topic:
        parser.error("--output-topic is required with --input-topic")
    return args


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    env = StreamExecutionEnvironment.get_execution_environment()
    if args.input_topic is None:
        build_pipeline(env.from_collection(SAMPLE, type_info=Types.STRING())).print()
        env.execute("smoke (bundled sample)")
        return
    messages = env.from_source(kafka_source(args), WatermarkStrategy.no_watermarks(), "kafka-in")
    build_pipeline(messages).sink_to(kafka_sink(args)).name("kafka-out")
    env.execute(f"smoke kafka roundtrip {args.input_topic} -> {args.output_topic}")


if __name__ == "__main__":
    main(sys.argv[1:])
