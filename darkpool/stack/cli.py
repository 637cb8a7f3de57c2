"""`darkpool stack up | down | status | env | smoke`."""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import asdict

import click

from core.cli_types import POSITIVE, POSITIVE_INT
from darkpool.stack import core, flink, kafka
from darkpool.stack.procs import StackError, port_open
from darkpool.stack.settings import PROFILES, StackConfig


def _cfg(timeout: float | None = None, profile: str | None = None) -> StackConfig:
    try:
        return StackConfig.load(ready_timeout_s=timeout, profile=profile)
    except (ValueError, TypeError) as exc:
        raise click.ClickException(f"bad stack configuration (DARKPOOL_* environment): {exc}") from exc


def _run(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc


def _progress() -> core.Progress:
    """A start takes about a minute: one timed line per step meanwhile."""
    t0 = time.monotonic()
    return lambda line: click.echo(f"  [{time.monotonic() - t0:4.0f}s] {line}")


@click.group()
def stack() -> None:
    """The local stack: a Kafka KRaft broker and a Flink standalone cluster."""


@stack.command()
@click.option("--only", type=click.Choice(core.PARTS), multiple=True, help="start only this part (repeatable)")
@click.option("--timeout", type=POSITIVE, default=None, show_default=f"DARKPOOL_READY_TIMEOUT_S or {StackConfig.ready_timeout_s:g}",
              help="seconds to wait for each part")
@click.option("--profile", type=click.Choice(list(PROFILES)), default=None,
              show_default=f"DARKPOOL_PROFILE or {StackConfig.profile}",
              help="memory of the JVMs: default = an 8 GB laptop; production = fixed, pre-touched heaps (flat RSS over hours)")
def up(only: tuple[str, ...], timeout: float | None, profile: str | None) -> None:
    """Start whatever is not running yet (idempotent) and wait until it is ready.

    Parts that still run keep the profile they were started with.
    """
    cfg = _cfg(timeout, profile)
    result = _run(core.up, cfg, only or core.PARTS, progress=_progress())
    if result.started:
        click.echo(f"started {', '.join(result.started)} in {result.seconds:.1f}s")
    if result.already:
        click.echo(f"already running: {', '.join(result.already)}")
    if result.topics_created:
        click.echo(f"created topics: {', '.join(result.topics_created)}")
    _print_status(cfg)


@stack.command()
@click.option("--only", type=click.Choice(core.PARTS), multiple=True, help="stop only this part (repeatable)")
def down(only: tuple[str, ...]) -> None:
    """Stop the processes this stack started (TaskManager and its Python workers, JobManager, broker)."""
    cfg = _cfg()
    names = core.ORDER if not only else tuple(n for n in core.ORDER if n.split("-")[0] in only)
    stopped = _run(core.down, cfg, names)
    click.echo(f"stopped {', '.join(stopped)}" if stopped else f"nothing to stop (no live pid files in {cfg.pid_dir})")


@stack.command()
@click.option("--features", is_flag=True, help="also ask the broker for its finalized feature levels")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def status(features: bool, as_json: bool) -> None:
    """What runs, where it listens, which log to read. Exit 1 if a part is down."""
    cfg = _cfg()
    parts = core.status(cfg)
    foreign = _foreign_ports(cfg, parts)
    feats = None
    if features:
        if parts[0].running or kafka.NAME in foreign:  # a broker answers: ask it, whoever started it
            feats = _run(kafka.describe_features, cfg)
        elif not as_json:
            click.echo(f"kafka features: no broker answers on port {cfg.kafka_port}", err=True)
    if as_json:
        click.echo(json.dumps({"parts": [asdict(p) for p in parts], "web_ui": cfg.rest_url, "features": feats,
                               "answering_not_started_here": foreign}))
    else:
        _print_status(cfg, parts, foreign)
        if feats:
            owner = " (of a broker this clone did not start)" if kafka.NAME in foreign else ""
            click.echo(f"kafka features{owner}: " + ", ".join(f"{k}={v}" for k, v in sorted(feats.items())))
    if not all(p.running for p in parts):
        raise SystemExit(1)


@stack.command()
def env() -> None:
    """Print shell exports to use Flink's own CLI against this stack: eval "$(darkpool stack env)"."""
    cfg = _cfg()
    variables = _run(flink.client_env, cfg)
    for key in ("FLINK_HOME", "FLINK_CONF_DIR", "FLINK_LIB_DIR", "FLINK_PLUGINS_DIR", "FLINK_LOG_DIR"):
        click.echo(f"export {key}={shlex.quote(variables[key])}")
    click.echo(f'export PATH={shlex.quote(variables["FLINK_HOME"] + "/bin")}:"$PATH"')


@stack.command()
@click.option("-n", "--messages", type=POSITIVE_INT, default=20, show_default=True, help="messages to push through")
def smoke(messages: int) -> None:
    """Bring the stack up and push messages through a real PyFlink Kafka job on it."""
    from darkpool.stack import smoke as smoke_mod

    cfg = _cfg()
    _run(core.up, cfg, progress=_progress())
    click.echo(f"submitting {smoke_mod.SMOKE_JOB.name} to {cfg.rest_url} ...")
    result = _run(smoke_mod.run, cfg, messages)
    click.echo(f"job {result.job_id} {result.state}: sent {result.sent}, read back {len(result.received)} (read_committed) in {result.seconds:.1f}s")
    for record in result.received[:3]:
        click.echo(f"  {json.dumps(record)}")
    click.echo(f"web UI: {cfg.rest_url}/#/job/completed/{result.job_id}/overview")
    if len(result.received) != result.sent:
        raise click.ClickException(f"expected {result.sent} messages back, got {len(result.received)}")


def _foreign_ports(cfg: StackConfig, parts: list[core.PartStatus]) -> dict[str, int]:
    """Ports of parts this clone did not start that answer anyway (e.g. another clone's stack)."""
    listens = {kafka.NAME: cfg.kafka_port, flink.JM: cfg.rest_port}  # the TaskManager has no fixed port
    return {p.name: listens[p.name] for p in parts
            if not p.running and p.name in listens and port_open(cfg.host, listens[p.name])}


def _print_status(cfg: StackConfig, parts: list[core.PartStatus] | None = None,
                  foreign: dict[str, int] | None = None) -> None:
    parts = parts if parts is not None else core.status(cfg)
    foreign = foreign if foreign is not None else _foreign_ports(cfg, parts)
    for p in parts:
        state = f"running pid {p.pid} ({p.processes} proc, {p.rss_mb:.0f} MiB)" if p.running else "stopped"
        click.echo(f"{p.name:18} {state:40} port {p.port}\n{'':18} log {p.log}")
        if p.name in foreign:
            click.echo(f"{'':18} port {foreign[p.name]} answers but this clone did not start it "
                       f"(another clone's stack? its run dir is not {cfg.run_dir})")
    click.echo(f"kafka bootstrap    {cfg.bootstrap_servers}")
    click.echo(f"web UI             {cfg.rest_url}{_cluster_summary(cfg)}")
    click.echo(f"run dir            {cfg.run_dir}")
    running = flink.running_profile(cfg) if any(p.running for p in parts) else None
    if running:
        click.echo(f"memory profile     {running} (Flink config; settings.PROFILES)")


def _cluster_summary(cfg: StackConfig) -> str:
    try:
        o = flink.rest_get(cfg, "/overview", timeout=2)
    except (OSError, ValueError):
        return " (not answering)"
    return f" ({o['slots-available']}/{o['slots-total']} slots free, {o['jobs-running']} jobs running)"
