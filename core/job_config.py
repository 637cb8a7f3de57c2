"""Typed configuration of the detection job (one frozen dataclass, a comment per field).

Built from `core.config` (shared Kafka / window / scorer settings, which read
`DARKPOOL_<FIELD>` env overrides) plus the job's own knobs below. The job's flags are
generated from these fields and their comments (jobs/job_flags.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.config import GeometryMismatch, KafkaConfig, ScorerEndpoint, WindowConfig, check_geometry
from core.features import CHANNELS
from core.schemas import TimePlausibility
from core.thresholds import ThresholdConfig


def model_config_parameters(config: Mapping[str, Any]) -> dict[str, str]:
    """The `parameters` of a Triton model configuration (`GET /v2/models/{name}/config`,
    a config.pbtxt served as JSON: `{key: {"string_value": s}}`) as `{key: s}`.

    What the job needs from the model travels there, so a standard Triton server can
    serve it: version, threshold, channels and scenarios (comma-separated), n_buckets,
    window_size_s and window_slide_s (absent for artifacts that record no window).

    >>> model_config_parameters({"parameters": {"n_buckets": {"string_value": "12"}}})
    {'n_buckets': '12'}
    """
    raw = config.get("parameters") or {}
    if not isinstance(raw, Mapping):
        raise ValueError("the model configuration's parameters must be a map of {key: {string_value: ...}}")
    return {k: str(v.get("string_value", "")) if isinstance(v, Mapping) else str(v) for k, v in raw.items()}


def geometry_from_model_config(config: Mapping[str, Any]) -> tuple[dict[str, int], list[str]]:
    """(window, channels) a scorer's model configuration declares, as `window_from_model`
    takes them.

    >>> geometry_from_model_config({"parameters": {"n_buckets": {"string_value": "12"},
    ...     "window_size_s": {"string_value": "60"}, "window_slide_s": {"string_value": "5"},
    ...     "channels": {"string_value": "a,b"}}})
    ({'n_buckets': 12, 'size_s': 60, 'slide_s': 5}, ['a', 'b'])
    """
    p = model_config_parameters(config)
    missing = [k for k in ("n_buckets", "channels") if not p.get(k)]
    if missing:
        raise ValueError(f"the scorer's model configuration lacks parameters {', '.join(missing)}: "
                         "serve an artifact written by `darkpool train` with `darkpool scorer serve`")
    try:
        window = {"n_buckets": int(p["n_buckets"])}
        for key in ("size_s", "slide_s"):
            if p.get(f"window_{key}"):
                window[key] = int(p[f"window_{key}"])
    except ValueError as exc:
        raise ValueError(f"the scorer's model configuration has a non-integer window parameter: {exc}") from None
    return window, p["channels"].split(",")


def window_from_model(configured: WindowConfig, explicit: bool, model_window: dict[str, Any],
                      model_channels: Sequence[str]) -> WindowConfig:  # fmt: skip
    """The window geometry the job must run with: the model artifact's.

    `model_window` and `model_channels` come from the scorer's model configuration
    (`geometry_from_model_config`). The artifact is the one source of the window size,
    slide and bucket count (a model trained on 5 s panes scores 10 s panes without
    error, and meaninglessly). A geometry
    set explicitly (flag or DARKPOOL_SIZE_S / DARKPOOL_SLIDE_S) must agree with it
    (`core.config.check_geometry`); otherwise the model's is used. An artifact that
    records no window (older ones) leaves the configured geometry, checked against its
    bucket count only.

    >>> model = {"size_s": 60, "slide_s": 5, "n_buckets": 12}
    >>> window_from_model(WindowConfig(120, 10), False, model, CHANNELS)
    WindowConfig(size_s=60, slide_s=5)
    >>> window_from_model(WindowConfig(60, 10), True, model, CHANNELS)
    Traceback (most recent call last):
    ...
    core.config.GeometryMismatch: the scorer's model was trained on 60 s sliding every 5 s (12 panes) but the window here is 60 s sliding every 10 s (6 panes): set --window-size/--window-slide (job) or DARKPOOL_SIZE_S/DARKPOOL_SLIDE_S to the model's geometry, or use a model trained on this one
    """
    if list(model_channels) != list(CHANNELS):
        raise GeometryMismatch(
            f"the model expects {len(model_channels)} channels ({', '.join(model_channels[:3])}, ...) but this job "
            f"computes {len(CHANNELS)} (core.features.CHANNELS): serve a model trained with this code (`darkpool train`)"
        )
    if model_window.get("slide_s") and not explicit:
        return WindowConfig(size_s=int(model_window["size_s"]), slide_s=int(model_window["slide_s"]))
    check_geometry(configured, model_window, "the scorer's model")
    return configured


# Default instrument shard count (JobConfig.pane_shards): the most subtasks the keyed
# stages can ever use, as a maximum parallelism is for a Flink job. Not 128 (Flink's
# default maximum parallelism): each (shard, pane) record costs ~5 ms of CPU through the
# stages (measured, 2-core box, 200 instruments, bench/job_stages.py --stages full):
# 13-15k events/s with 1 shard, 5.0k with 32, 1.4k with 128. Live, 32 shards cost ~3% of
# a core per 5 s pane; 128 would cost ~13% and cap a catch-up at ~8x real time.
PANE_SHARDS = 32


@dataclass(frozen=True)
class JobConfig:
    # --- where things are ------------------------------------------------------------
    kafka: KafkaConfig = field(default_factory=KafkaConfig)  # broker + topic names
    scorer: ScorerEndpoint = field(default_factory=ScorerEndpoint)  # scorer service URL
    window: WindowConfig = field(default_factory=WindowConfig)  # size / slide (= pane)
    # the decision stage: adaptive thresholds, warm-up, alert budget, coalescing
    thresholds: ThresholdConfig = field(default_factory=ThresholdConfig)
    # a file from `darkpool budget`: per-instrument threshold raises that keep a clean
    # stretch of each instrument's history within N alerts per hour. "" = none
    alert_budget: str = ""
    # when an event's time is a bad clock (dead-lettered as implausible_time)
    time_plausibility: TimePlausibility = field(default_factory=TimePlausibility)
    job_name: str = "darkpool-detect"  # Flink job name; also seeds the ids below
    # --- event time ------------------------------------------------------------------
    out_of_orderness_ms: int = 2_000  # watermark = max event time seen - this; older = late
    source_idle_timeout_ms: int = 10_000  # a partition silent this long stops holding back the watermark
    # --- source ----------------------------------------------------------------------
    start_from: str = "committed"  # committed (fallback earliest) | earliest | latest
    # --- fault tolerance -------------------------------------------------------------
    checkpoint_interval_ms: int = 5_000  # exactly-once alerts become visible at this cadence
    # a checkpoint slower than this is declared failed; a final checkpoint waits for the
    # Python flushes and the scorer calls in flight (retries included) to drain
    checkpoint_timeout_ms: int = 600_000
    # failed / expired checkpoints in a row before the job fails over. Under heavy
    # backpressure (measured: 5,000 instruments replayed as fast as possible) barriers
    # can queue past the timeout; with 0 the whole job failed instead of checkpointing later
    tolerable_failed_checkpoints: int = 5
    # where checkpoints go: "" = the cluster's execution.checkpointing.dir; a local mini
    # cluster run (not under `flink run`) then uses a temporary file:// folder, because its
    # default in-JobManager storage fails any checkpoint over 5 MB of state (measured: a
    # fast bounded replay buffers ~10 MB of open panes)
    checkpoint_dir: str = ""
    restart_attempts: int = 10  # fixed-delay restarts before the job is declared failed
    restart_delay_ms: int = 5_000  # ... and the delay between them (lets a scorer come back)
    # --- scoring (Flink async I/O) -----------------------------------------------------
    # window batches (one per instrument shard and pane) in flight per subtask; beyond
    # that, backpressure. A batch holds every instrument of its shard with events in the pane
    async_capacity: int = 32
    scorer_timeout_s: float = 5.0  # one HTTP attempt; enforced by asyncio.wait_for, no timer thread
    scorer_retries: int = 4  # extra attempts after the first; then the task fails -> restart
    scorer_backoff_s: float = 0.25  # first retry delay, doubled each attempt (0.25+0.5+1+2 s)
    # degraded mode: a model artifact folder (or its rules.json). When the retries run
    # out, windows are scored by its calibrated rules, marked degraded, instead of the
    # task failing. "" = off: a scorer outage fails the task and the job restarts
    degraded_rules: str = ""
    degraded_probe_s: float = 10.0  # in degraded mode, try the scorer again after this long
    # --- sinks -----------------------------------------------------------------------
    fast_alerts: bool = False  # also write at-least-once alerts to kafka.alerts_fast_topic
    transaction_timeout_ms: int = 15 * 60 * 1000  # Kafka transaction timeout; <= the broker's transaction.max.timeout.ms (1 h)
    transactional_id_prefix: str = ""  # exactly-once sink's transactional ids; empty -> job_name + alerts topic (tx_prefix)
    # --- parallelism / Python runtime ----------------------------------------------------
    parallelism: int = 0  # 0 -> the cluster's default
    python_bundle_size: int = 10_000  # elements per Python bundle (throughput vs latency)
    python_bundle_time_ms: int = 200  # ... or this long, whichever first (bounds pane latency)
    # how often the source emits a watermark (pipeline.auto-watermark-interval, Flink's
    # default); each one makes every Python operator finish its bundle before passing it
    # on. 1 s measured no faster on the 2-core box (jobs/README.md), and adds latency
    watermark_interval_ms: int = 200
    arrow_batch_size: int = 10_000  # rows per Arrow batch into the pandas UDAF
    # keyed states (decision stage: one per instrument) and MapState entries (window
    # assembly: one per instrument) the Python workers cache. A miss is a round trip to
    # the JVM's state backend; Flink's default of 1,000 thrashes with more instruments
    # than that per subtask. Memory: ~3.5 kB and ~1.5 kB per cached instrument.
    python_state_cache_size: int = 20_000
    # instrument shards: an instrument's shard is a stable hash of its name mod this, and
    # the panes, window assembly and thresholds are keyed by shard (one record per shard
    # and pane). Like Flink's maximum parallelism, it is the unit of rescaling: the
    # shards' state moves between subtasks with Flink's key groups when the parallelism
    # changes, so a savepoint restores at any parallelism up to this with every
    # instrument's state. FIXED FOR THE LIFE OF THE STATE: a restore with another count
    # would move instruments to other shards, away from their state; the job refuses it
    # (udfs/assembler.ShardCountChanged). More shards cost more, smaller records per pane
    # (jobs/README.md has the measurement)
    pane_shards: int = PANE_SHARDS

    def __post_init__(self) -> None:
        if self.start_from not in ("committed", "earliest", "latest"):
            raise ValueError(
                f"start_from must be committed|earliest|latest, got {self.start_from!r}"
            )
        if self.transaction_timeout_ms > 60 * 60 * 1000:
            raise ValueError(
                "transaction_timeout_ms exceeds the broker's 1 h transaction.max.timeout.ms"
            )
        if self.transaction_timeout_ms <= self.checkpoint_interval_ms:
            raise ValueError(
                "a transaction must outlive a checkpoint interval (transaction_timeout_ms)"
            )
        if self.pane_shards < 1:
            raise ValueError(f"pane_shards must be >= 1, got {self.pane_shards} (default {PANE_SHARDS})")
        if self.parallelism > self.pane_shards:
            raise ValueError(
                f"parallelism {self.parallelism} exceeds pane_shards {self.pane_shards}: the keyed stages would "
                "have idle subtasks; lower --parallelism (--pane-shards is fixed for the life of the job's state)"
            )
        if self.degraded_probe_s <= 0:
            raise ValueError("degraded_probe_s must be > 0")
        if self.scorer_retries < 0 or self.scorer_timeout_s <= 0 or self.async_capacity <= 0:
            raise ValueError(
                "scorer_retries >= 0, scorer_timeout_s > 0, async_capacity > 0 required"
            )

    @property
    def tx_prefix(self) -> str:
        """Transactional id prefix of the exactly-once alerts sink.

        It must be unique among the applications writing to the broker (two jobs sharing
        a prefix fence each other's producers) and *stable across restarts of the same
        job* (on restore the sink aborts lingering transactions of its own prefix; a new
        prefix would leave them open and stall read_committed consumers until they time
        out). Hence: job name + alerts topic, not a random suffix.
        """
        raw = self.transactional_id_prefix or f"{self.job_name}.{self.kafka.alerts_topic}"
        return re.sub(r"[^A-Za-z0-9._-]", "_", raw)

    @property
    def group_id(self) -> str:
        """Kafka consumer group of the trades source (offsets are committed on checkpoints)."""
        return re.sub(r"[^A-Za-z0-9._-]", "_", f"{self.job_name}.{self.kafka.trades_topic}")
