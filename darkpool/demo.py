"""`darkpool demo`: the README's first command, end to end on the embedded default.

    local stack up -> simulated market (generated if missing) -> small model (trained if
    none) -> scorer in the background -> detection job submitted -> market replayed into
    Kafka -> committed alerts printed as they arrive -> summary vs the injected episodes

Each step reuses what is already there (stack, data, artifact, a healthy scorer), so a
second run is fast. Every step is one public function of its owner part; a part that
is not there yet stops the demo with "not available yet: ..." instead of a stand-in.
The scorer's pid file lives in the stack's run dir (.run/pids/scorer.json);
`darkpool demo --stop` cancels the demo's job and stops that scorer.
"""

from __future__ import annotations

import importlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import click

from core import paths
from core.config import KafkaConfig, ScorerEndpoint, from_env
from darkpool.market.config import PRESETS as MARKET_PRESETS

SCORER = "scorer"  # pid-file name
STATE_FILE = "demo.json"  # in the run dir: the job id the demo submitted


def _need(module: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            raise click.ClickException(f"not available yet: {what} ({module} is missing)") from exc
        raise


def step(n: int, text: str) -> None:
    click.secho(f"[{n}/7] {text}", bold=True)


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200
    except OSError:
        return False


# ---- steps ----------------------------------------------------------------------------
def ensure_stack():  # noqa: ANN201
    core = _need("darkpool.stack.core", "the local stack")
    from darkpool.stack.procs import StackError
    from darkpool.stack.settings import StackConfig

    cfg = StackConfig.load()
    try:
        res = core.up(cfg, progress=lambda line: click.echo(f"  {line}"))
    except StackError as exc:
        raise click.ClickException(f"stack up failed: {exc}") from exc
    click.echo(
        f"  started: {', '.join(res.started) or '-'}; already running: {', '.join(res.already) or '-'}"
    )
    return cfg


# The demo model's training market: the preset's kind of market, drawn bigger where the
# preset is too small to learn the scenarios from (tiny: 4 instruments x 30 min give ~1,400
# windows and a scenario head that names nothing; 12 x 1 h give ~8,500, trained in ~30 s:
# the alerts then name their scenario).
TRAINING_SCALE = {"tiny": {"n_instruments": 12, "n_events": 240_000, "duration_s": 3_600}}


def ensure_market(preset: str, seed: int | None = None, training: bool = False) -> Path:
    """The preset's market (its own seed), or the same preset drawn with another seed
    (`training`: at TRAINING_SCALE)."""
    scale = TRAINING_SCALE.get(preset, {}) if training else {}
    name = preset if seed is None else f"{preset}-seed{seed}"
    out = paths.data_dir() / (name + ("-" + "-".join(f"{v}" for v in scale.values()) if scale else ""))
    if (out / "events.parquet").exists() and (out / "episodes.parquet").exists():
        click.echo(f"  reusing {out}")
        return out
    sim = _need("darkpool.market.simulate", "the market simulator")
    import dataclasses

    from darkpool.market.config import PRESETS

    t0 = time.monotonic()
    config = PRESETS[preset] if seed is None else dataclasses.replace(PRESETS[preset], seed=seed)
    config = dataclasses.replace(config, **scale)
    result = sim.simulate(config, progress=True)
    sim.write(result, out)
    click.echo(
        f"  {result.events.num_rows:,} events, {result.episodes.num_rows} episodes -> {out} ({time.monotonic() - t0:.0f}s)"
    )
    return out


def ensure_model(data: Path, preset: str, minutes: float) -> Path:
    art = paths.artifacts_dir() / f"demo-{data.name}"  # named after its training data
    if (art / "VERSION").exists():
        click.echo(f"  reusing {art} (version {(art / 'VERSION').read_text().strip()})")
        return art
    _need("model.train", "model training")
    click.echo(f"  training a small model on {data} (progress below) ...")
    cmd = [
        sys.executable,
        "-m",
        "darkpool.cli",
        "train",
        "--data",
        str(data),
        "--out",
        str(art),
        "--preset",
        "small",
        "--max-minutes",
        str(minutes),
    ]
    if subprocess.run(cmd, cwd=paths.REPO_ROOT).returncode != 0 or not (art / "VERSION").exists():
        raise click.ClickException(f"training failed (command: {' '.join(cmd)})")
    return art


def ensure_scorer(stack, artifact: Path, timeout_s: float = 180):  # noqa: ANN001, ANN201
    _need("model.scorer.server", "the scorer service")
    from darkpool.stack.procs import PidFiles, launch

    ep = from_env(ScorerEndpoint)
    ready = f"{ep.scorer_url}/v2/health/ready"
    if not _http_ok(ready):
        from darkpool.stack.scorer import ScorerStartError, scorer_argv, wait_ready

        port = int(ep.scorer_url.rsplit(":", 1)[-1].split("/")[0])
        log = stack.log_dir / "scorer.log"
        pids = PidFiles(stack.pid_dir)
        proc = launch(SCORER, scorer_argv(artifact, port), dict(os.environ), log, paths.REPO_ROOT, pids)
        click.echo(f"  started scorer pid {proc.pid} (log {log})")
        try:
            wait_ready(ep.scorer_url, lambda: pids.live(SCORER) is not None, log, timeout_s)
        except ScorerStartError as exc:
            raise click.ClickException(str(exc)) from exc
    meta = _scorer_metadata(ep)
    wanted = (artifact / "VERSION").read_text().strip()
    if meta.version != wanted:
        # A scorer left running by an earlier demo serves another model: hot-reload ours
        # (in-flight requests are not dropped) rather than score with the wrong one.
        click.echo(f"  scorer serves model {meta.version}; reloading {artifact} ({wanted})")
        meta = _scorer_metadata(ep, reload=artifact)
    click.echo(f"  scorer ready at {ep.scorer_url}: model version {meta.version}, global threshold {meta.threshold}")
    return meta


def _scorer_metadata(ep, reload: Path | None = None):  # noqa: ANN001, ANN202
    """The served model's metadata (the protocol's model config), after an optional hot reload."""
    import asyncio

    from model.scorer.client import ScorerClient, ScorerError

    async def ask():  # noqa: ANN202
        async with ScorerClient(ep.scorer_url, ep.model_name, timeout_s=120) as client:
            if reload is not None:
                await client.load(str(reload))
            return await client.metadata()

    try:
        return asyncio.run(ask())
    except ScorerError as exc:
        raise click.ClickException(f"the scorer at {ep.scorer_url}: {exc}") from exc


def submit(stack, job_args: list[str]) -> str:  # noqa: ANN001
    from darkpool.stack import jobs

    _stop_previous(stack)
    try:
        job_id = jobs.submit(stack, jobs.DETECTION_JOB, job_args)
    except jobs.SubmitError as exc:
        raise click.ClickException(str(exc)) from exc
    (stack.run_dir / STATE_FILE).write_text(json.dumps({"job_id": job_id}))

    jobs.wait_for_state(stack, job_id, {"RUNNING"}, timeout_s=120)
    click.echo(f"  job {job_id} RUNNING; web UI {stack.rest_url}/#/job/running/{job_id}/overview")
    return job_id


def _stop_previous(stack) -> None:  # noqa: ANN001
    """Cancel the job an earlier demo submitted (only that one), so two never compete."""
    from darkpool.stack import jobs

    state = stack.run_dir / STATE_FILE
    if not state.exists():
        return
    old = json.loads(state.read_text()).get("job_id")
    try:
        if old and jobs.job(stack, old)["state"] not in jobs.TERMINAL:
            jobs.cancel(stack, old)
            click.echo(f"  cancelled the previous demo job {old}")
    except OSError:
        pass  # cluster restarted since: that job is gone
    state.unlink()


def replay_and_watch(
    stack, job_id: str, data: Path, speed: float, settle_s: float, max_wait_s: float
) -> list[dict[str, Any]]:  # noqa: ANN001
    """Replay the market and print committed alerts until the job has gone quiet.

    Quiet = replay finished, no operator of the job read a record and no alert came for
    `settle_s`, then one more completed checkpoint (alerts of the exactly-once topic
    become visible only when a checkpoint completes). The last windows of the session
    stay open until event time moves on, exactly as they would on a live feed.
    """
    market_replay = _need("darkpool.market.replay", "market replay")
    from core.alerts import format_line
    from darkpool.market.simulate import read_events

    kafka = from_env(KafkaConfig)
    got: queue.Queue[dict[str, Any]] = queue.Queue()
    stop = threading.Event()
    # Read the topic from the beginning but keep only alerts made after this point:
    # no race with the consumer's first position, and earlier demos' alerts drop out.
    since_ms = int(time.time() * 1000)
    threading.Thread(target=_watch, args=(kafka, got, stop, since_ms), daemon=True).start()
    table = read_events(data)
    result: dict[str, Any] = {}
    sender = threading.Thread(
        target=lambda: result.setdefault("stats", market_replay.replay(table, kafka, speed=speed)),
        daemon=True,
    )
    t0 = time.monotonic()
    sender.start()
    alerts: list[dict[str, Any]] = []
    last_change = next_progress = time.monotonic()
    progress: tuple = ()
    while time.monotonic() - t0 < max_wait_s:
        try:
            a = got.get(timeout=2.0)
            alerts.append(a)
            last_change = time.monotonic()
            click.echo("  " + format_line(a))
            continue
        except queue.Empty:
            pass
        now, seen = time.monotonic(), _records_read(stack, job_id)
        if seen != progress or sender.is_alive():
            progress, last_change = seen, now
        if now >= next_progress:
            next_progress = now + 15
            state = "replaying" if sender.is_alive() else "job catching up"
            click.echo(
                f"  ... {state}: {now - t0:.0f}s, {sum(seen):,} records through the job's operators, {len(alerts)} alert events"
            )
        if now - last_change > settle_s:
            break
    _wait_next_checkpoint(stack, job_id)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            a = got.get(timeout=0.5)
            alerts.append(a)
            click.echo("  " + format_line(a))
        except queue.Empty:
            pass
    stop.set()
    if "stats" in result:
        click.echo(f"  replayed: {result['stats']}")
    return alerts


def _records_read(stack, job_id: str) -> tuple[int, ...]:  # noqa: ANN001
    from darkpool.stack import jobs

    try:
        return tuple(
            int(v["metrics"].get("read-records", 0)) for v in jobs.job(stack, job_id)["vertices"]
        )
    except (OSError, KeyError):
        return ()


def _wait_next_checkpoint(stack, job_id: str, timeout_s: float = 90) -> None:  # noqa: ANN001
    from darkpool.stack import flink

    def completed() -> int:
        try:
            return int(flink.rest_get(stack, f"/jobs/{job_id}/checkpoints")["counts"]["completed"])
        except (OSError, KeyError):
            return -1

    first, deadline = completed(), time.monotonic() + timeout_s
    while completed() <= first and time.monotonic() < deadline:
        time.sleep(1)


def _watch(kafka: KafkaConfig, got: queue.Queue, stop: threading.Event, since_ms: int) -> None:
    from darkpool.stack.alerts_topic import read_alerts

    for a in read_alerts(
        kafka.bootstrap_servers, kafka.alerts_topic, from_beginning=True, idle_timeout_s=None
    ):
        if a.get("emitted_at", 0) >= since_ms:
            got.put(a)
        if stop.is_set():
            return


def summary(data: Path, alerts: list[dict[str, Any]], slack_ms: int) -> None:
    import pyarrow.parquet as pq

    from darkpool.episodes import match

    episodes = pq.read_table(data / "episodes.parquet").to_pylist()
    s = match(episodes, alerts, slack_ms=slack_ms)
    for line in s.lines():
        click.echo("  " + line)


@click.command()
@click.option(
    "--preset",
    type=click.Choice(sorted(MARKET_PRESETS)),
    default="tiny",  # = `make demo` (the Makefile's DEMO_PRESET)
    show_default=True,
    help="market preset: tiny finishes in minutes on 2 cores; default is the 800k-event market",
)
@click.option(
    "--speed",
    type=float,
    default=0.0,
    show_default=True,
    help="replay speed (0 = as fast as possible)",
)
@click.option(
    "--settle",
    type=float,
    default=30.0,
    show_default=True,
    help="seconds without job progress or a new alert that end the watch phase",
)
@click.option(
    "--max-wait",
    type=float,
    default=1800.0,
    show_default=True,
    help="hard limit on the watch phase, seconds",
)
@click.option(
    "--train-minutes",
    type=float,
    default=8.0,
    show_default=True,
    help="training budget when no model exists yet",
)
@click.option("--job-arg", "job_args", multiple=True, help="extra flag for the job (repeatable)")
@click.option(
    "--stop", "stop_only", is_flag=True, help="cancel the demo's job and stop its scorer, then exit"
)
def demo(preset: str, speed: float, settle: float, max_wait: float, train_minutes: float, job_args: tuple[str, ...],
         stop_only: bool) -> None:  # fmt: skip
    """Run the whole product locally on a simulated market and summarize what it caught."""
    if stop_only:
        return _stop_all()
    _check_settings()  # a bad DARKPOOL_* value fails here, not after the stack has started
    t0 = time.monotonic()
    step(1, "local stack (Kafka + Flink)")
    stack = ensure_stack()
    step(2, f"simulated market ({preset})")
    data = ensure_market(preset)
    step(3, "model")
    # Trained on another draw of the same market (seed + 1), so the summary below is
    # out-of-sample: the replayed episodes were never seen in training.
    train_data = ensure_market(preset, seed=MARKET_PRESETS[preset].seed + 1, training=True)
    artifact = ensure_model(train_data, preset, train_minutes)
    step(4, "scorer service")
    ensure_scorer(stack, artifact)
    step(5, "detection job")
    job_id = submit(stack, list(job_args))
    step(6, "replaying the market into Kafka; committed alerts follow")
    alerts = replay_and_watch(stack, job_id, data, speed, settle, max_wait)
    step(7, "summary")
    from core.config import WindowConfig

    summary(data, alerts, slack_ms=from_env(WindowConfig).size_s * 1000)
    click.echo(f"  {len(alerts)} alert events in {time.monotonic() - t0:.0f}s")
    click.echo(
        f"  web UI: {stack.rest_url}   (stop the demo's job and scorer: darkpool demo --stop)"
    )


def _check_settings() -> None:
    """Read every DARKPOOL_* setting the demo's steps use, so a bad one is one line now."""
    from core.config import FlinkConfig, WindowConfig
    from darkpool.stack.settings import StackConfig

    for cls in (KafkaConfig, ScorerEndpoint, WindowConfig, FlinkConfig):
        from_env(cls)
    try:
        StackConfig.load()
    except (ValueError, TypeError) as exc:
        raise click.ClickException(f"bad stack configuration (DARKPOOL_* environment): {exc}") from exc


def _stop_all() -> None:
    from darkpool.stack.procs import PidFiles, stop
    from darkpool.stack.settings import StackConfig

    stack = StackConfig.load()
    _stop_previous(stack)
    pids = PidFiles(stack.pid_dir)
    proc = pids.live(SCORER)
    if proc is not None:
        stop(proc, stack.stop_timeout_s)
        pids.remove(SCORER)
        click.echo(f"stopped scorer pid {proc.pid}")
