"""The surveillance job: trades -> panes -> sliding windows -> scorer -> thresholds -> alerts.

Graph (operator names as in the web UI; every operator has a stable uid):

    source (Kafka raw payload, or a JSON-lines file)         JVM: parse_event (Java),
      -> typed / checked / split (SQL views, udfs/sources.py)     validation, rowtime + watermark
      -> panes: TUMBLE(slide) pandas UDAF per instrument shard (udfs/pane_udaf.py)
      -> "split-dead-letters": pane batches / dead letters (udfs/deadletter.py)
      -> "assemble-windows": keyed by shard, each instrument's last T panes -> its
         window [T, F]; one window batch per (shard, pane) (udfs/assembler.py)
      -> "score-windows": ordered async I/O to the scorer, one request per batch(es);
         one scored batch out (udfs/scoring.py)
      -> "adaptive-threshold": keyed by shard, per-instrument thresholds + coalescing in
         MapState (udfs/shard_thresholds.py; the pure logic is core/coalesce.py)
      -> "alerts-sink" EXACTLY_ONCE Kafka (+ "alerts-fast-sink" AT_LEAST_ONCE)
    dead letters -> "dead-letter-sink" AT_LEAST_ONCE Kafka (ids make repeats visible)

Run on a cluster:
    flink run -d -py jobs/detect_anomalies.py -pyfs <repo or zip> -pyexec <python> [FLAGS]
    darkpool submit -- [FLAGS]                       (same, against the local stack)
Run locally on the mini cluster (needs a scorer on --scorer-url):
    python jobs/detect_anomalies.py --backtest data/tiny/events.parquet
    (alerts and dead letters are printed unless --to-kafka is given)

Flags: `python jobs/detect_anomalies.py --help` lists every one with its default and
meaning; they are generated from JobConfig's fields (jobs/job_flags.py), so a field and
its flag cannot drift. The window geometry comes from the model the scorer serves
(--window-size / --window-slide only to insist on one; a disagreement exits). Run modes:
    --backtest PATH            read a contract Parquet (or .jsonl) file instead of Kafka
    --to-kafka                 with --backtest: write alerts / dead letters to Kafka too
    --bounded                  Kafka source stops at the latest offsets of job start (replay
                               a topic as a backtest; the end of input flushes all windows)
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

if __package__ in (None, ""):  # `flink run -py jobs/detect_anomalies.py` / `python jobs/...`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pyflink.common import Configuration, Time, Types
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.datastream.async_data_stream import AsyncDataStream
from pyflink.datastream.connectors import Sink
from pyflink.table import StreamTableEnvironment

from core.alert_budget import AlertBudget
from core.job_config import GeometryMismatch, JobConfig, window_from_model
from jobs.job_flags import parse_job_args
from model.scorer.client import ScorerClient
from udfs import planner, sources
from udfs.assembler import WINDOW_BATCH_TYPE, WindowAssembler
from udfs.deadletter import DEAD_LETTERS, PANE_BATCH_TYPE, SplitDeadLetters
from udfs.heartbeat import Heartbeat
from udfs.pane_udaf import make_pane_udaf, pane_query
from udfs.scoring import ScoreWindows
from udfs.shard_thresholds import HOUSEKEEPING, SCORED_BATCH_TYPE, decide_batches

# A sink is a connector Sink (sink_to) or a function attaching one (print, tests).
SinkLike = Sink | Callable[[DataStream], Any]


@dataclass
class Pipeline:
    """The streams build_pipeline made (tests and the benchmark attach to them)."""

    panes: DataStream
    windows: DataStream
    scored: DataStream
    alerts: DataStream
    dead_letters: DataStream


def _attach(stream: DataStream, sink: SinkLike | None, uid: str) -> None:
    if sink is None:
        return
    if isinstance(sink, Sink):
        stream.sink_to(sink).name(uid).uid(uid)
    else:
        sink(stream)


def union_query(main_view: str, side_view: str, slide_s: int, shards: int) -> str:
    """Pane rows and side rows in one insert-only table (one source scan, one conversion).

    Converting two tables to DataStreams would plan the source twice (two Kafka readers
    decoding everything twice); one UNION ALL keeps a single scan.
    """
    null = "CAST(NULL AS {})".format
    panes = f"""SELECT 'pane' AS kind, shard, p.instruments AS instruments, p.panes AS panes,
  p.max_ts_ms AS max_ts_ms, p.read_ms AS read_ms, p.feats AS feats, p.parts AS parts, p.part_n AS part_n,
  p.part_k AS part_k, p.part_stats AS part_stats,
  {null("STRING")} AS reason, {null("STRING")} AS payload, {null("INT")} AS src_partition,
  {null("BIGINT")} AS src_offset, {null("BIGINT")} AS ts, {null("BIGINT")} AS watermark_ms
FROM ({pane_query(main_view, slide_s, shards)})"""
    side = f"""SELECT kind, {null("INT")}, {null("ARRAY<STRING>")}, {null("ARRAY<BIGINT>")}, {null("ARRAY<BIGINT>")},
  {null("ARRAY<BIGINT>")},
  {null("ARRAY<FLOAT>")}, {null("ARRAY<STRING>")}, {null("ARRAY<BIGINT>")}, {null("ARRAY<INT>")},
  {null("ARRAY<FLOAT>")},
  reason, payload, src_partition, src_offset, ts, watermark_ms
FROM {side_view}"""
    return f"{panes}\nUNION ALL\n{side}"


def degraded_rules(cfg: JobConfig) -> dict[str, Any] | None:
    """The degraded mode's rules calibration, read here in the driver (the workers get
    the values, so the file need not exist on the TaskManagers)."""
    if not cfg.degraded_rules:
        return None
    from model.rules import Rules

    return Rules.load(cfg.degraded_rules).to_dict()


def pane_shards(cfg: JobConfig, t_env: StreamTableEnvironment) -> int:
    """Instrument shards (--pane-shards): a fixed count, not derived from the parallelism,
    so that the state keyed by shard moves whole with Flink's key groups on a rescale.

    A parallelism above the count would leave subtasks of the keyed stages without a
    shard: refused here for the cluster's default parallelism (JobConfig refuses an
    explicit --parallelism)."""
    parallelism = cfg.parallelism or int(t_env.get_config().get("parallelism.default", "1") or 1)
    if parallelism > cfg.pane_shards:
        raise SystemExit(f"detect_anomalies: the parallelism {parallelism} exceeds --pane-shards "
                         f"{cfg.pane_shards}: lower the parallelism")  # fmt: skip
    return cfg.pane_shards


def build_pipeline(
    t_env: StreamTableEnvironment,
    main_view: str,
    side_view: str,
    cfg: JobConfig,
    *,
    alerts_sink: SinkLike | None,
    dead_letter_sink: SinkLike | None,
    fast_alerts_sink: SinkLike | None = None,
    source_topic: str | None = None,
    stop_after: str = "full",
) -> Pipeline:
    """Wire the job between its sources (views from udfs.sources) and its sinks.

    `stop_after` (panes | windows | scored | full) cuts the graph after that stage for
    bench/job_stages.py; the later streams are then None and their sinks unattached.
    """
    w = cfg.window
    t_env.create_temporary_function("pane_agg", make_pane_udaf(w.slide_ns))
    shards = pane_shards(cfg, t_env)
    # planner calls through udfs.planner: one landing on another Py4J connection's JVM
    # thread failed the start (NullPointerException: metadataHandlerProvider)
    rows = planner.to_data_stream(t_env, planner.sql_query(t_env, union_query(main_view, side_view, w.slide_s, shards)))
    panes = (
        rows.process(SplitDeadLetters(source_topic), output_type=PANE_BATCH_TYPE)
        .name("split-dead-letters")
        .uid("split-dead-letters")
    )
    dead = panes.get_side_output(DEAD_LETTERS)
    _attach(dead, dead_letter_sink, "dead-letter-sink")
    if stop_after == "panes":
        return Pipeline(panes, None, None, None, dead)
    windows = (
        panes.key_by(lambda r: r[0], key_type=Types.INT())  # instrument shard
        # the heartbeat reaches the slot's Python worker every few seconds, so a worker
        # that dies while no record comes still fails the task (udfs/heartbeat.py)
        .process(Heartbeat(WindowAssembler(w.n_buckets, w.slide_s, shards)), output_type=WINDOW_BATCH_TYPE)
        .name("assemble-windows")
        .uid("assemble-windows")
    )
    if stop_after == "windows":
        return Pipeline(panes, windows, None, None, dead)
    scorer = ScoreWindows(
        cfg.scorer.scorer_url,
        cfg.scorer.model_name,
        w.n_buckets,
        w.slide_s,
        cfg.scorer_timeout_s,
        cfg.scorer_retries,
        cfg.scorer_backoff_s,
        rules=degraded_rules(cfg),
        probe_s=cfg.degraded_probe_s,
    )
    # Ordered: each instrument's windows reach the decision stage in event-time order, so
    # it decides on arrival (no reorder buffer, no per-window timer). Batches finish
    # nearly in order anyway (one scorer, FIFO batching), so little waits at the head.
    # Timeout 0: no per-record timer thread; each attempt is bounded inside the coroutine.
    scored = (
        AsyncDataStream.ordered_wait(
            windows, scorer, Time.milliseconds(0), cfg.async_capacity, SCORED_BATCH_TYPE
        )
        .name("score-windows")
        .uid("score-windows")
    )
    if stop_after == "scored":
        return Pipeline(panes, windows, scored, None, dead)
    # evidence spans fall back to the last pane of a window: the job's pane length
    # window counts left at their defaults keep their span of event time under this geometry
    budget = AlertBudget.load(cfg.alert_budget) if cfg.alert_budget else None  # read here, in the driver
    alerts = decide_batches(scored, cfg.thresholds.for_window(w), budget)
    # The decision stage yields housekeeping lines on a side output; PyFlink treats side
    # output tuples as main records (and fails) unless the side stream is consumed.
    (
        alerts.get_side_output(HOUSEKEEPING)
        .filter(lambda _: False)
        .name("housekeeping-discard")
        .uid("housekeeping-discard")
        .print()
        .name("housekeeping-sink")
        .uid("housekeeping-sink")
    )
    _attach(alerts, alerts_sink, "alerts-sink")
    _attach(alerts, fast_alerts_sink, "alerts-fast-sink")
    return Pipeline(panes, windows, scored, alerts, dead)


# ---- environment, sources and sinks (main) ---------------------------------------------


def under_flink_cli() -> bool:
    """True when `flink run -py` started this driver (it talks to the CLI's gateway)."""
    return "PYFLINK_GATEWAY_PORT" in os.environ


def local_checkpoint_dir(cfg: JobConfig) -> str:
    """file:// checkpoint folder of a local mini-cluster run (kept after the run: inspectable)."""
    folder = os.path.join(tempfile.gettempdir(), "darkpool-checkpoints", re.sub(r"[^\w.-]", "_", cfg.job_name))
    return "file://" + folder


def make_env(
    cfg: JobConfig, jars: list[str] = ()
) -> tuple[StreamExecutionEnvironment, StreamTableEnvironment]:
    conf = Configuration()
    conf.set_string("pipeline.name", cfg.job_name)
    conf.set_string("restart-strategy.type", "fixed-delay")
    conf.set_string("restart-strategy.fixed-delay.attempts", str(cfg.restart_attempts))
    conf.set_string("restart-strategy.fixed-delay.delay", f"{cfg.restart_delay_ms} ms")
    conf.set_string("execution.checkpointing.interval", f"{cfg.checkpoint_interval_ms} ms")
    conf.set_string("execution.checkpointing.mode", "EXACTLY_ONCE")
    conf.set_string("execution.checkpointing.timeout", f"{cfg.checkpoint_timeout_ms} ms")
    conf.set_string(
        "execution.checkpointing.tolerable-failed-checkpoints", str(cfg.tolerable_failed_checkpoints)
    )
    conf.set_string(
        "execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION"
    )
    checkpoint_dir = cfg.checkpoint_dir or (None if under_flink_cli() else local_checkpoint_dir(cfg))
    if checkpoint_dir:
        conf.set_string("execution.checkpointing.dir", checkpoint_dir)
    # No defensive deep copy of every record between chained operators (measured: ~15% of
    # the source thread). Safe here: the SQL runtime is built for reuse, the JVM functions
    # return fresh rows, and the Python operators serialize their input (copying it when
    # they buffer it).
    conf.set_string("pipeline.object-reuse", "true")
    conf.set_string("python.fn-execution.bundle.size", str(cfg.python_bundle_size))
    conf.set_string("python.fn-execution.bundle.time", str(cfg.python_bundle_time_ms))
    conf.set_string("pipeline.auto-watermark-interval", f"{cfg.watermark_interval_ms} ms")
    conf.set_string("python.fn-execution.arrow.batch.size", str(cfg.arrow_batch_size))
    conf.set_string("python.state.cache-size", str(cfg.python_state_cache_size))
    conf.set_string("python.map-state.read-cache-size", str(cfg.python_state_cache_size))
    conf.set_string("python.map-state.write-cache-size", str(cfg.python_state_cache_size))
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    if jars:
        # append, never set: under `flink run -py` pipeline.jars already holds the
        # flink-python jar the client added; replacing it fails the submission with
        # ClassNotFoundException ExternalPythonProcessOperator on the JobManager
        env.add_jars(*jars)
        planner.remember_context_loader()  # add_jars gave only this JVM thread the jars
    if cfg.parallelism:
        env.set_parallelism(cfg.parallelism)
    return env, StreamTableEnvironment.create(env)


def register_source(
    t_env: StreamTableEnvironment, cfg: JobConfig, backtest: str | None, bounded: bool = False
) -> tuple[str, str, str | None]:
    """Create the raw table + views; returns (main view, side view, source topic or None)."""
    sources.register_functions(t_env)
    if backtest is None:
        t_env.execute_sql(sources.kafka_raw_ddl("trades_raw", cfg, bounded=bounded))
        return (
            *sources.register_views(t_env, "trades_raw", has_metadata=True, time_rule=cfg.time_plausibility),
            cfg.kafka.trades_topic,
        )
    path = backtest
    if backtest.endswith(".parquet"):
        path = os.path.join(tempfile.mkdtemp(prefix="darkpool-backtest-"), "events.jsonl")
        sources.parquet_to_ndjson(backtest, path)
    t_env.execute_sql(sources.file_raw_ddl("trades_raw", path, cfg))
    return (*sources.register_views(t_env, "trades_raw", has_metadata=False, time_rule=cfg.time_plausibility), None)


def kafka_string_sink(cfg: JobConfig, topic: str, exactly_once: bool) -> Sink:
    from pyflink.common.serialization import SimpleStringSchema
    from pyflink.datastream.connectors.base import DeliveryGuarantee
    from pyflink.datastream.connectors.kafka import KafkaRecordSerializationSchema, KafkaSink

    builder = (
        KafkaSink.builder()
        .set_bootstrap_servers(cfg.kafka.bootstrap_servers)
        .set_record_serializer(
            KafkaRecordSerializationSchema.builder()
            .set_topic(topic)
            .set_value_serialization_schema(SimpleStringSchema())
            .build()
        )
    )
    if exactly_once:
        builder = (
            builder.set_delivery_guarantee(DeliveryGuarantee.EXACTLY_ONCE)
            .set_transactional_id_prefix(cfg.tx_prefix)
            .set_property("transaction.timeout.ms", str(cfg.transaction_timeout_ms))
        )
    else:
        builder = builder.set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
    return builder.build()


def parse_args(argv: list[str] | None = None) -> tuple[JobConfig, argparse.Namespace]:
    """Flags -> (JobConfig, the run-mode flags); a mistake exits with one line naming the
    flag, before the scorer is asked or the JVM starts (jobs/job_flags.parse_job_args).

    Strict: `flink run -py` hands the script exactly the arguments after its own options,
    so an argument the job does not know is a mistake (a mistyped threshold), never a
    leftover of the Flink client."""
    return parse_job_args(argv, __doc__.split("\n\n")[0])


def local_jars() -> list[str]:
    """Jars for a local (mini cluster) run: the Kafka connector and the job's JVM
    functions (udfs/jvm). A cluster has them in its lib/ (`darkpool stack up`, the image)."""
    from core import paths

    folder = paths.jars_dir("flink-jars")
    jars = sorted(folder.glob("flink-sql-connector-kafka-*.jar")) if folder.exists() else []
    udf = paths.udf_jar()
    return [f"file://{j}" for j in (*jars, *([udf] if udf.exists() else []))]


def with_model_geometry(cfg: JobConfig, a: argparse.Namespace) -> JobConfig:
    """`cfg` with the window geometry of the model the scorer serves (core/job_config.py
    `window_from_model`); exits with one line when an explicit geometry disagrees.

    A scorer that cannot be reached at submission leaves the configured geometry (the
    scoring stage checks the model's pane length again when it first scores)."""
    explicit = a.explicit_window
    try:
        meta = asyncio.run(_metadata(cfg))
    except Exception as exc:  # noqa: BLE001 (unreachable, timeout, an answer of another server)
        print(f"warning: no model metadata from {cfg.scorer.scorer_url} ({exc!r}); using the configured "
              f"window {cfg.window.size_s} s / {cfg.window.slide_s} s", file=sys.stderr)  # fmt: skip
        return cfg
    try:
        window = window_from_model(cfg.window, explicit, meta.window, meta.channels)
    except GeometryMismatch as exc:
        raise SystemExit(f"detect_anomalies: {exc}") from None
    return dataclasses.replace(cfg, window=window)


async def _metadata(cfg: JobConfig) -> Any:
    async with ScorerClient(cfg.scorer.scorer_url, cfg.scorer.model_name, timeout_s=5.0) as client:
        return await client.metadata()


def main(argv: list[str] | None = None, extend: Callable[[Pipeline, JobConfig], None] | None = None) -> None:
    """The job: flags -> sources, build_pipeline, sinks -> execute. `extend(pipeline, cfg)`
    may attach more sinks before the job starts (tests/integration/detect_harness.py taps
    the scored windows)."""
    cfg, a = parse_args(argv)
    cfg = with_model_geometry(cfg, a)
    env, t_env = make_env(cfg, local_jars())
    main_view, side_view, topic = register_source(t_env, cfg, a.backtest, a.bounded)
    to_kafka = a.backtest is None or a.to_kafka
    k = cfg.kafka
    pipeline = build_pipeline(
        t_env,
        main_view,
        side_view,
        cfg,
        alerts_sink=kafka_string_sink(cfg, k.alerts_topic, True) if to_kafka else DataStream.print,
        dead_letter_sink=kafka_string_sink(cfg, k.dead_letter_topic, False)
        if to_kafka
        else DataStream.print,
        fast_alerts_sink=kafka_string_sink(cfg, k.alerts_fast_topic, False)
        if to_kafka and cfg.fast_alerts
        else None,
        source_topic=topic,
    )
    if extend is not None:
        extend(pipeline, cfg)
    env.execute(cfg.job_name)


if __name__ == "__main__":
    main()
