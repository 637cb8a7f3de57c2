"""`darkpool evaluate`: offline model comparison, or grading of the deployed job's alerts.

    darkpool evaluate --data DIR --out reports/NAME [--models transformer,lstm,cnn,gbt,iforest,rules]
                      [--preset small] [--quick] [--loso] [--transformer-artifact DIR]
    darkpool evaluate --alerts FILE_OR_TOPIC --data DIR --out reports/NAME

DIR holds events.parquet + episodes.parquet (+ regimes.parquet) from `darkpool generate`.
--alerts takes a JSON-lines file (`darkpool alerts --json`) or, when no such file
exists, the name of a Kafka topic read from the beginning with read_committed.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import click

from darkpool.config import KafkaConfig, WindowConfig, from_env


@click.command()
@click.option("--data", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True,
              help="folder with events.parquet and episodes.parquet (darkpool generate --out)")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="report folder, e.g. reports/default")
@click.option("--models", default="transformer,lstm,cnn,gbt,iforest,rules", show_default=True,
              help="comma-separated subset of transformer,lstm,cnn,gbt,iforest,rules")
@click.option("--preset", default="small", show_default=True, help="transformer preset (model.config.PRESETS)")
@click.option("--quick", is_flag=True, help="short training budgets and fewer bootstrap resamples (tiny data, tests)")
@click.option("--loso", is_flag=True, help="also leave-one-scenario-out (retrains --loso-models once per scenario)")
@click.option("--loso-models", default=None, help="models retrained in LOSO [transformer,gbt,rules]")
@click.option("--loso-epochs", type=int, default=None, help="max epochs of each transformer LOSO fit [2]")
@click.option("--transformer-artifact", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="reuse a `darkpool train` artifact trained on the same data (its split is checked)")
@click.option("--transformer-minutes", type=float, default=None, help="transformer training budget, minutes")
@click.option("--seq-seconds", type=float, default=None, help="LSTM / CNN training budget each, seconds")
@click.option("--max-fpr", type=float, default=None, help="validation FPR bound of the decision threshold [0.005]")
@click.option("--alerts", "alerts_src", default=None,
              help="grade the job's alerts instead: JSON-lines file, or Kafka topic name")
@click.option("--bootstrap-servers", default=None, help="Kafka brokers for --alerts TOPIC (default: KafkaConfig)")
def evaluate(data: Path, out: Path, models: str, preset: str, quick: bool, loso: bool, loso_models: str | None,
             loso_epochs: int | None,
             transformer_artifact: Path | None, transformer_minutes: float | None, seq_seconds: float | None,
             max_fpr: float | None, alerts_src: str | None, bootstrap_servers: str | None) -> None:
    """Evaluate detectors on labeled data (window, scenario, episode, cost metrics) and write a report."""
    out.mkdir(parents=True, exist_ok=True)
    if alerts_src is not None:
        _grade_alerts(alerts_src, data, out, bootstrap_servers)
        return
    from darkpool.evaluate.harness import ALL_MODELS, EvalConfig, run
    from darkpool.evaluate.report import write_report

    names = tuple(m.strip() for m in models.split(",") if m.strip())
    bad = [m for m in names if m not in ALL_MODELS]
    if bad:
        raise click.BadParameter(f"unknown models {bad}; choose from {', '.join(ALL_MODELS)}", param_hint="--models")
    cfg = EvalConfig.quick() if quick else EvalConfig()
    cfg = replace(cfg, models=names, preset=preset, loso=loso, transformer_artifact=transformer_artifact)
    if transformer_minutes is not None:
        cfg = replace(cfg, transformer_minutes=transformer_minutes)
    if seq_seconds is not None:
        cfg = replace(cfg, seq=replace(cfg.seq, max_seconds=seq_seconds))
    if loso_models:
        cfg = replace(cfg, loso_models=tuple(m.strip() for m in loso_models.split(",") if m.strip()))
        bad = [m for m in cfg.loso_models if m not in ALL_MODELS]
        if bad:
            raise click.BadParameter(f"unknown models {bad}; choose from {', '.join(ALL_MODELS)}",
                                     param_hint="--loso-models")
    if loso_epochs is not None:
        cfg = replace(cfg, loso_transformer_epochs=loso_epochs)
    if max_fpr is not None:
        cfg = replace(cfg, max_fpr=max_fpr)
    t0 = time.time()
    try:
        results = run(data, out, cfg, from_env(WindowConfig), log=click.echo)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    md = write_report(results, out)
    click.echo(f"report {md} ({time.time() - t0:.0f} s)")


def _grade_alerts(src: str, data: Path, out: Path, bootstrap_servers: str | None) -> None:
    from darkpool.evaluate.alerts_grading import (
        grade_alerts,
        markdown,
        read_alert_file,
        read_alert_topic,
    )

    path = Path(src)
    try:
        if path.exists():
            events = read_alert_file(path)
        else:
            kafka = from_env(KafkaConfig, bootstrap_servers=bootstrap_servers)
            events = read_alert_topic(src, kafka.bootstrap_servers)
    except Exception as exc:  # broker down, bad file: one clear line, not a traceback
        raise click.ClickException(f"cannot read alerts from {src}: {exc}") from exc
    res = grade_alerts(events, data)
    (out / "alerts_grade.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / "ALERTS_REPORT.md").write_text(markdown(res, src))
    click.echo(markdown(res, src))
