"""`darkpool submit` (the detection job onto a Flink cluster) and `darkpool alerts` (read them).

    darkpool submit [--jobmanager HOST:PORT] [-- JOB FLAGS...]
        Runs `flink run -d -py jobs/detect_anomalies.py -pyfs <project zip> -pyexec <python>`
        against the local stack (default; its FLINK_CONF_DIR names the cluster) or the
        given JobManager. Everything after `--` goes to the job (see its docstring).
        Prints the job id and the web UI URL.

    darkpool alerts [--from-beginning] [--max N] [--timeout S] [--json] [--topic T]
        Reads the alerts topic with isolation_level=read_committed, so only alerts of
        committed checkpoints are shown (the exactly-once contract), one line each.

Why a zip for -pyfs: the Python workers need this project's packages; shipping the
repository folder would also upload .run/ (Kafka data, checkpoints) and data/.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from darkpool import paths
from darkpool.config import FlinkConfig, KafkaConfig, from_env

JOB_SCRIPT = paths.REPO_ROOT / "jobs" / "detect_anomalies.py"
PACKAGES = ("darkpool", "jobs", "udfs", "model")  # what the Python workers import
_JOB_ID = re.compile(r"JobID ([0-9a-f]{32})")


class SubmitError(Exception):
    """The job could not be submitted; the message carries the client's output."""


def project_zip(dest_dir: Path | None = None) -> Path:
    """Zip the project's Python packages (sources only) for `flink run -pyfs`."""
    dest_dir = dest_dir or paths.run_dir() / "submit"
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = dest_dir / "darkpool-src.zip"
    tmp = out.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for pkg in PACKAGES:
            for f in sorted((paths.REPO_ROOT / pkg).rglob("*.py")):
                zf.write(f, f.relative_to(paths.REPO_ROOT).as_posix())
    tmp.replace(out)  # atomic: a concurrent submit never ships half a zip
    return out


def submit_job(job_args: list[str], jobmanager: str | None = None, python: str | None = None,
               script: Path = JOB_SCRIPT, timeout_s: float = 300) -> str:  # fmt: skip
    """Submit the detection job detached; returns the Flink job id."""
    from darkpool.stack import flink  # needs pyflink: imported only when submitting
    from darkpool.stack.settings import StackConfig

    if not script.exists():
        raise SubmitError(
            f"not available yet: {script.relative_to(paths.REPO_ROOT)} (the job module) is missing"
        )
    python = python or flink.venv_python()
    argv = [str(flink.flink_home() / "bin" / "flink"), "run", "-d"]
    if jobmanager:
        argv += ["-m", jobmanager]
    argv += [
        "-py",
        str(script),
        "-pyfs",
        str(project_zip()),
        "-pyexec",
        python,
        "-pyclientexec",
        python,
        *job_args,
    ]
    stack = StackConfig.load()
    if jobmanager is None and not (stack.flink_conf_dir / "config.yaml").exists():
        raise SubmitError(
            f"no local Flink config in {stack.flink_conf_dir}: run `darkpool stack up` first"
        )
    env = (
        flink.client_env(stack)
        if jobmanager is None
        else {**os.environ, "FLINK_HOME": str(flink.flink_home())}
    )
    try:
        done = subprocess.run(
            argv, env=env, cwd=paths.REPO_ROOT, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired as exc:
        raise SubmitError(f"`flink run` did not return within {timeout_s:.0f}s") from exc
    output = done.stdout + done.stderr
    match = _JOB_ID.search(output)
    if done.returncode != 0 or match is None:
        tail = "\n".join(output.splitlines()[-30:])
        raise SubmitError(f"`flink run` failed (exit {done.returncode}):\n{tail}")
    return match.group(1)


@click.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "--jobmanager",
    "-m",
    default=None,
    help="HOST:PORT of another cluster's JobManager REST (default: the local stack)",
)
@click.option(
    "--python", default=None, help="interpreter of the Python workers (default: this clone's .venv)"
)
@click.argument("job_args", nargs=-1, type=click.UNPROCESSED)
def submit(jobmanager: str | None, python: str | None, job_args: tuple[str, ...]) -> None:
    """Submit the detection job (jobs/detect_anomalies.py) to a Flink cluster, detached."""
    try:
        job_id = submit_job(list(job_args), jobmanager, python)
    except SubmitError as exc:
        raise click.ClickException(str(exc)) from exc
    ui = f"http://{jobmanager}" if jobmanager else from_env(FlinkConfig).rest_url
    click.echo(f"job id: {job_id}")
    click.echo(f"web UI: {ui}/#/job/running/{job_id}/overview")


# ---- reading alerts -------------------------------------------------------------------
class BrokerUnavailable(Exception):
    pass


def _reachable(host_port: str, timeout_s: float = 3.0) -> bool:
    host, _, port = host_port.strip().rpartition(":")
    try:
        with socket.create_connection((host or "localhost", int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def read_alerts(bootstrap_servers: str, topic: str, from_beginning: bool = False,
                idle_timeout_s: float | None = None, max_alerts: int | None = None) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Yield committed alert events (dicts) as they become visible to read_committed."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    if not any(_reachable(hp) for hp in bootstrap_servers.split(",")):
        # fail in seconds: a client left to itself retries its bootstrap for ~30 s
        raise BrokerUnavailable(
            f"no Kafka broker answers at {bootstrap_servers} (is `darkpool stack up` running?)"
        )
    try:
        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap_servers.split(","),
            group_id=None,  # a reader, not a member: no offsets committed, no rebalances
            enable_auto_commit=False,
            isolation_level="read_committed",  # aborted / open transactions stay invisible
            auto_offset_reset="earliest" if from_beginning else "latest",
            consumer_timeout_ms=int(idle_timeout_s * 1000) if idle_timeout_s else float("inf"),
            request_timeout_ms=15000,
        )
    except KafkaError as exc:  # NoBrokersAvailable (2.x) / KafkaTimeoutError (3.x) and kin
        raise BrokerUnavailable(f"Kafka at {bootstrap_servers} is not usable: {exc!r}") from exc
    n = 0
    try:
        for msg in consumer:
            yield json.loads(msg.value)
            n += 1
            if max_alerts is not None and n >= max_alerts:
                return
    finally:
        consumer.close()


@click.command()
@click.option(
    "--bootstrap-servers",
    default=None,
    help="Kafka brokers (default: KafkaConfig / DARKPOOL_BOOTSTRAP_SERVERS)",
)
@click.option("--topic", default=None, help="alerts topic (default: KafkaConfig.alerts_topic)")
@click.option(
    "--from-beginning", is_flag=True, help="start at the earliest committed alert, not at the end"
)
@click.option("--max", "max_alerts", type=int, default=None, help="stop after N alert events")
@click.option(
    "--timeout", type=float, default=None, help="stop after S seconds without a new alert"
)
@click.option(
    "--json", "as_json", is_flag=True, help="print raw JSON lines instead of readable lines"
)
def alerts(bootstrap_servers: str | None, topic: str | None, from_beginning: bool,
           max_alerts: int | None, timeout: float | None, as_json: bool) -> None:  # fmt: skip
    """Print committed alerts (read_committed) from the alerts topic."""
    from udfs.alerts import format_line

    kafka = from_env(KafkaConfig, bootstrap_servers=bootstrap_servers, alerts_topic=topic)
    try:
        for alert in read_alerts(
            kafka.bootstrap_servers, kafka.alerts_topic, from_beginning, timeout, max_alerts
        ):
            click.echo(json.dumps(alert, separators=(",", ":")) if as_json else format_line(alert))
    except BrokerUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
