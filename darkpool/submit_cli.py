"""`darkpool submit` (the detection job onto a Flink cluster) and `darkpool alerts` (read them).

    darkpool submit [--jobmanager HOST:PORT] [-- JOB FLAGS...]
        Runs `flink run -d -py jobs/detect_anomalies.py` (darkpool.stack.jobs.submit) against
        the local stack (default; its FLINK_CONF_DIR names the cluster) or the given
        JobManager. Everything after `--` goes to the job (`python jobs/detect_anomalies.py
        --help`). Prints the job id and the web UI URL. The flags are recorded in the run
        dir (.run/submit/detection-job.json) for --resume.

    darkpool submit --resume
        After a JobManager loss (the local cluster has no high availability: a new
        JobManager has lost every job): `darkpool stack up`, then this. Submits the job
        again with the recorded flags, restoring the newest retained checkpoint of the
        previous run (`flink run -s .run/flink/checkpoints/<job id>/chk-<n>`). Alerts
        committed before the loss are not repeated; those after it are made again, once.

    darkpool alerts [--from-beginning] [--max N] [--timeout S] [--json] [--topic T]
        Reads the alerts topic with isolation_level=read_committed, so only alerts of
        committed checkpoints are shown (the exactly-once contract), one line each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import click

from core.cli_types import BOOTSTRAP_SERVERS, POSITIVE, POSITIVE_INT
from core.config import FlinkConfig, KafkaConfig, from_env
from core.paths import REPO_ROOT
from darkpool.stack.alerts_topic import BrokerUnavailable, read_alerts


@click.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "--jobmanager",
    "-m",
    default=None,
    show_default="the local stack",
    help="HOST:PORT of another cluster's JobManager REST",
)
@click.option(
    "--python", default=None, show_default="this clone's .venv", help="interpreter of the Python workers"
)
@click.option(
    "--resume",
    is_flag=True,
    help="after a JobManager loss: the previous submit again (same flags), from its newest retained checkpoint",
)
@click.argument("job_args", nargs=-1, type=click.UNPROCESSED)
def submit(jobmanager: str | None, python: str | None, resume: bool, job_args: tuple[str, ...]) -> None:
    """Submit the detection job (jobs/detect_anomalies.py) to a Flink cluster, detached."""
    from darkpool.stack import jobs  # needs pyflink: imported only when submitting
    from darkpool.stack.procs import StackError
    from darkpool.stack.settings import StackConfig

    if resume and (job_args or jobmanager or python):
        raise click.UsageError("--resume reuses the previous submit's flags, cluster and python: give no others")
    if python is not None and not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise click.BadParameter(f"{python} is not an executable Python interpreter", param_hint="--python")
    if jobmanager is not None:
        host, _, port = jobmanager.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise click.BadParameter(f"{jobmanager!r} is not HOST:PORT (e.g. localhost:8081)", param_hint="--jobmanager")
    if job_args:
        check_job_flags(job_args)
    cfg = StackConfig.load()
    try:
        if resume:
            job_id, checkpoint = jobs.resume(cfg)
            sub = jobs.load_submission(cfg, jobs.DETECTION_RECORD)
            jobmanager = sub.jobmanager
            click.echo(f"resumed from: {checkpoint}")
            if "--bounded" in sub.args:
                # FLINK-33466: a restored bounded Kafka source never gets "no more splits"
                click.echo("note: a --bounded job restored from a checkpoint reads to its end offsets but does not "
                           "finish by itself (Kafka connector bug FLINK-33466); stop it with "
                           "`flink stop --drain <job id>` once its source has caught up", err=True)  # fmt: skip
        else:
            job_id = jobs.submit(cfg, jobs.DETECTION_JOB, list(job_args), jobmanager, python)
            sub = jobs.Submission(str(jobs.DETECTION_JOB), list(job_args), jobmanager, python, [job_id])
            jobs.record_submission(cfg, jobs.DETECTION_RECORD, sub)
    except StackError as exc:  # SubmitError included
        raise click.ClickException(str(exc)) from exc
    ui = f"http://{jobmanager}" if jobmanager else from_env(FlinkConfig).rest_url
    click.echo(f"job id: {job_id}")
    click.echo(f"web UI: {ui}/#/job/running/{job_id}/overview")


def check_job_flags(job_args: tuple[str, ...]) -> None:
    """The job's own flag check (`python -m jobs.job_flags`), in seconds rather than after
    the Flink client's JVM start; a separate process, as the layers keep jobs out of here."""
    done = subprocess.run([sys.executable, "-m", "jobs.job_flags", *job_args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise click.ClickException(f"job flags after --: {lines[-1] if lines else f'exit {done.returncode}'}")


@click.command()
@click.option(
    "--bootstrap-servers",
    type=BOOTSTRAP_SERVERS,
    default=None,
    show_default="KafkaConfig / DARKPOOL_BOOTSTRAP_SERVERS",
    help="Kafka brokers",
)
@click.option("--topic", default=None, show_default="KafkaConfig.alerts_topic", help="alerts topic")
@click.option(
    "--from-beginning", is_flag=True, help="start at the earliest committed alert, not at the end"
)
@click.option("--max", "max_alerts", type=POSITIVE_INT, default=None, show_default="no limit",
              help="stop after N alert events")
@click.option("--timeout", type=POSITIVE, default=None, show_default="wait for ever; Ctrl-C stops",
              help="stop after S seconds without a new alert")
@click.option(
    "--json", "as_json", is_flag=True, help="print raw JSON lines instead of readable lines"
)
def alerts(bootstrap_servers: str | None, topic: str | None, from_beginning: bool,
           max_alerts: int | None, timeout: float | None, as_json: bool) -> None:  # fmt: skip
    """Print committed alerts (read_committed) from the alerts topic."""
    from core.alerts import format_line

    kafka = from_env(KafkaConfig, bootstrap_servers=bootstrap_servers, alerts_topic=topic)
    try:
        for alert in read_alerts(
            kafka.bootstrap_servers, kafka.alerts_topic, from_beginning, timeout, max_alerts
        ):
            click.echo(json.dumps(alert, separators=(",", ":")) if as_json else format_line(alert))
    except BrokerUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
