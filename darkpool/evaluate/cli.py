"""`darkpool evaluate`: offline model comparison, cross-domain tests, grading of the deployed job's alerts.

    darkpool evaluate --data DIR --out reports/NAME [--models transformer,lstm,cnn,gbt,iforest,rules]
                      [--preset small] [--quick] [--loso] [--transformer-artifact DIR]
    darkpool evaluate --train-data A --test-data B --out reports/NAME [--models ...] [--alerts FILE]
    darkpool evaluate --artifact ART --test-data B --out reports/NAME [--alerts FILE]
    darkpool evaluate --alerts FILE_OR_TOPIC --test-data B --out reports/NAME      (or --data B)

DIR, A and B hold events.parquet + episodes.parquet (+ regimes.parquet), as written by
`darkpool generate` or `darkpool inject`. --data: one data set, time split. --train-data:
train on A, test on all of B. --artifact: a `darkpool train` artifact tested on all of B.
--alerts takes a JSON-lines file (`darkpool alerts --json`) or, when the value has no path
separator and no file suffix (.jsonl, .json, .ndjson, .txt, .log), the name of a Kafka
topic read from the beginning with read_committed. Alone (with --data or --test-data) it
grades only the alerts; with --train-data or --artifact the report holds both.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from core.cli_types import BOOTSTRAP_SERVERS, FRACTION, POSITIVE, POSITIVE_INT, out_folder_problem
from core.config import KafkaConfig, WindowConfig, from_env
from model.config import PRESETS as MODEL_PRESETS
from model.scorer.cli import check_artifact

DIR = click.Path(path_type=Path, exists=True, file_okay=False)


@click.command()
@click.option("--data", type=DIR, default=None,
              help="one labeled folder (darkpool generate --out), time-split into train / validation / test")
@click.option("--train-data", type=DIR, default=None, help="cross-domain: train on this labeled folder (A) ...")
@click.option("--test-data", type=DIR, default=None, help="... and test on every window of this one (B)")
@click.option("--artifact", type=DIR, default=None,
              help="cross-domain: grade this `darkpool train` artifact on --test-data (no training)")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="report folder, e.g. reports/default")
@click.option("--models", default=None, show_default="all; transformer with --artifact",
              help="comma-separated subset of transformer,lstm,cnn,gbt,iforest,rules")
@click.option("--preset", type=click.Choice(sorted(MODEL_PRESETS)), default="small", show_default=True,
              help="transformer preset")
@click.option("--quick", is_flag=True, help="short training budgets and fewer bootstrap resamples (tiny data, tests)")
@click.option("--loso", is_flag=True, help="also leave-one-scenario-out (retrains --loso-models once per scenario)")
@click.option("--loso-models", default=None, show_default="transformer,gbt,rules", help="models retrained in LOSO")
@click.option("--loso-epochs", type=POSITIVE_INT, default=None, show_default="2",
              help="max epochs of each transformer LOSO fit")
@click.option("--transformer-artifact", type=DIR, default=None,
              help="with --data: reuse a `darkpool train` artifact trained on the same data (its split is checked)")
# the defaults are EvalConfig's (darkpool/evaluate/detectors.py; tests/unit/test_cli_conventions.py holds them equal)
@click.option("--transformer-minutes", type=POSITIVE, default=None, show_default="12; --quick: 2",
              help="transformer training budget, minutes")
@click.option("--seq-seconds", type=POSITIVE, default=None, show_default="300; --quick: 60",
              help="LSTM / CNN training budget each, seconds")
@click.option("--max-fpr", type=FRACTION, default=None, show_default="0.005",
              help="validation FPR bound of the decision threshold")
@click.option("--alerts", "alerts_src", default=None,
              help="grade the job's alerts: JSON-lines file, or Kafka topic name")
@click.option("--bootstrap-servers", type=BOOTSTRAP_SERVERS, default=None,
              show_default="KafkaConfig / DARKPOOL_BOOTSTRAP_SERVERS", help="Kafka brokers for --alerts TOPIC")
@click.option("--match-tolerance-s", type=click.FloatRange(min=0), default=None, show_default="the window length",
              help="alert grading: slack around an alert's evidence span when matching episodes")
@click.option("--bin-seconds", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="alert grading: bin length of the clean / abusive time shares")
def evaluate(data: Path | None, train_data: Path | None, test_data: Path | None, artifact: Path | None, out: Path,
             models: str | None, preset: str, quick: bool, loso: bool, loso_models: str | None,
             loso_epochs: int | None, transformer_artifact: Path | None, transformer_minutes: float | None,
             seq_seconds: float | None, max_fpr: float | None, alerts_src: str | None, bootstrap_servers: str | None,
             match_tolerance_s: float | None, bin_seconds: float) -> None:
    """Evaluate detectors on labeled data (window, scenario, episode, cost metrics) and write a report.

    \b
    one data set, time-split:     --data DIR
    train on A, test on all of B: --train-data A --test-data B
    a trained artifact on B:      --artifact DIR --test-data B
    the job's alerts on B:        --alerts FILE_OR_TOPIC --test-data B
                                  (alone, or added to either of the two above)
    """
    _check_modes(data, train_data, test_data, artifact, alerts_src, loso, transformer_artifact)
    _check_companions(click.get_current_context(), alerts_src, loso, artifact)
    labeled = test_data or data
    instruments: set[str] = set()
    for flag, folder in (("--data", data), ("--train-data", train_data), ("--test-data", test_data)):
        if folder is not None:
            found = _check_labeled(flag, folder)
            instruments = found if folder == labeled else instruments
    for flag, folder in (("--artifact", artifact), ("--transformer-artifact", transformer_artifact)):
        if folder is not None:
            check_artifact(folder, flag)
    problem = out_folder_problem(out)
    if problem:
        raise click.BadParameter(f"{out} {problem}: choose another report folder", param_hint="--out")
    grades_models = alerts_src is None or train_data is not None or artifact is not None
    events: list[dict[str, Any]] = []
    rules: Any = None
    names: tuple[str, ...] | None = None  # None: the default set (the detectors' import costs torch's)
    loso_names: tuple[str, ...] | None = None
    if grades_models and (models or loso_models):  # every flag checked before anything is trained or written
        from darkpool.evaluate.detectors import ALL_MODELS

        names = _model_names(models, ALL_MODELS, artifact is not None)
        loso_names = _loso_names(loso_models, ALL_MODELS)
    wcfg = from_env(WindowConfig)
    job_alerts = None
    if alerts_src is not None:
        from darkpool.evaluate.alert_metrics import GradingRules

        tol = wcfg.size_s if match_tolerance_s is None else match_tolerance_s
        rules = GradingRules(bin_s=bin_seconds, evidence_tolerance_s=tol)
        events = read_alerts_source(alerts_src, bootstrap_servers)  # before any training: fail fast on a bad source
        _check_alert_instruments(events, alerts_src, labeled, instruments)  # type: ignore[arg-type]
    with _removed_on_failure(out):
        if alerts_src is not None:
            job_alerts = _grade_alerts(events, alerts_src, labeled, out, rules)  # type: ignore[arg-type]
            if train_data is None and artifact is None:
                return
        _evaluate_models(out, data, train_data, test_data, artifact, job_alerts, names, loso_names, preset, quick,
                         loso, transformer_artifact, transformer_minutes, seq_seconds, loso_epochs, max_fpr, wcfg)


@contextmanager
def _removed_on_failure(out: Path) -> Iterator[None]:
    """The report folder, created here; a refused or failed run leaves none behind."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except click.ClickException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise


def _evaluate_models(out: Path, data: Path | None, train_data: Path | None, test_data: Path | None,  # noqa: PLR0913
                     artifact: Path | None, job_alerts: dict[str, Any] | None, names: tuple[str, ...] | None,
                     loso_names: tuple[str, ...] | None, preset: str, quick: bool, loso: bool,
                     transformer_artifact: Path | None, transformer_minutes: float | None, seq_seconds: float | None,
                     loso_epochs: int | None, max_fpr: float | None, wcfg: WindowConfig) -> None:  # fmt: skip
    from darkpool.evaluate.harness import ALL_MODELS, EvalConfig
    from darkpool.evaluate.report import write_report

    names = names or _model_names(None, ALL_MODELS, artifact is not None)
    cfg = EvalConfig.quick() if quick else EvalConfig()
    cfg = replace(cfg, models=names, preset=preset, loso=loso, transformer_artifact=transformer_artifact)
    if transformer_minutes is not None:
        cfg = replace(cfg, transformer_minutes=transformer_minutes)
    if seq_seconds is not None:
        cfg = replace(cfg, seq=replace(cfg.seq, max_seconds=seq_seconds))
    if loso_names:
        cfg = replace(cfg, loso_models=loso_names)
    if loso_epochs is not None:
        cfg = replace(cfg, loso_transformer_epochs=loso_epochs)
    if max_fpr is not None:
        cfg = replace(cfg, max_fpr=max_fpr)
    t0 = time.time()
    try:
        if data is not None:
            from darkpool.evaluate.harness import run

            results = run(data, out, cfg, wcfg, log=click.echo)
        else:
            from darkpool.evaluate.cross import run_cross

            results = run_cross(test_data, out, cfg, wcfg, train_data=train_data,  # type: ignore[arg-type]
                                artifact=artifact, log=click.echo)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if job_alerts is not None:
        results["job_alerts"] = job_alerts
    md = write_report(results, out)
    click.echo(f"report {md} ({time.time() - t0:.0f} s)")


def _check_modes(data: Path | None, train_data: Path | None, test_data: Path | None, artifact: Path | None,
                 alerts_src: str | None, loso: bool, transformer_artifact: Path | None) -> None:
    """One clear line for every combination of data options that does not make sense."""
    if data is not None and (train_data or test_data or artifact):
        raise click.UsageError("--data is the one-data-set mode (time split); for cross-domain use "
                               "--train-data A --test-data B, or --artifact DIR --test-data B")
    if train_data is not None and artifact is not None:
        raise click.UsageError("give --train-data (train here) or --artifact (already trained), not both")
    if (train_data or artifact) and test_data is None:
        raise click.UsageError("--train-data and --artifact need --test-data B (the labeled folder to test on)")
    if test_data is not None and not (train_data or artifact or alerts_src):
        raise click.UsageError("--test-data B needs --train-data A, --artifact DIR or --alerts FILE")
    if data is None and test_data is None:
        raise click.UsageError("give --data DIR, or --test-data B with --train-data A, --artifact DIR or --alerts FILE")
    if train_data is not None and test_data is not None and train_data.resolve() == test_data.resolve():
        raise click.UsageError("--train-data and --test-data are the same folder: the test would grade the training "
                               "windows; use --data DIR for a time split of one data set")
    if data is None and (loso or transformer_artifact):
        raise click.UsageError("--loso and --transformer-artifact work with --data only (use --artifact to test an "
                               "artifact on --test-data)")


def _check_companions(ctx: click.Context, alerts_src: str | None, loso: bool, artifact: Path | None) -> None:
    """Flags that only mean something beside another one are refused without it, not ignored."""
    given = {name for name in ctx.params if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT}
    needs = [("--loso", loso, ("loso_models", "loso_epochs")),
             ("--alerts", alerts_src is not None, ("match_tolerance_s", "bin_seconds", "bootstrap_servers"))]
    for partner, present, names in needs:
        for name in names:
            if name in given and not present:
                raise click.UsageError(f"--{name.replace('_', '-')} works with {partner} only; add {partner} or "
                                       f"drop --{name.replace('_', '-')}")
    if artifact is not None:  # a trained artifact: nothing of the training applies
        for name in ("preset", "transformer_minutes", "seq_seconds"):
            if name in given:
                raise click.UsageError(f"--{name.replace('_', '-')} shapes a training; --artifact is trained "
                                       "already: drop one")


def _check_labeled(flag: str, folder: Path) -> set[str]:
    """The folder's instruments, after checking that its files exist and agree: episodes
    on instruments the events never name would be graded as missed, silently."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    for name in ("events.parquet", "episodes.parquet"):
        if not (folder / name).is_file():
            raise click.ClickException(
                f"{flag} {folder} has no {name}: give a folder written by `darkpool generate --out` or "
                "`darkpool inject --out` (events.parquet, episodes.parquet, regimes.parquet)")
    try:
        events = set(pc.unique(pq.read_table(folder / "events.parquet", columns=["instrument"])["instrument"])
                     .to_pylist())
        episodes = set(pc.unique(pq.read_table(folder / "episodes.parquet", columns=["instrument"])["instrument"])
                       .to_pylist())
    except (pa.ArrowException, OSError, KeyError) as exc:
        raise click.ClickException(f"{flag} {folder}: cannot read its Parquet files ({str(exc).splitlines()[0]})") \
            from None
    if not events:
        raise click.ClickException(f"{flag} {folder}: events.parquet holds no events")
    absent = sorted(episodes - events)
    if absent and not episodes & events:
        raise click.ClickException(f"{flag} {folder}: no instrument of episodes.parquet ({', '.join(absent[:5])}) "
                                   "is in events.parquet: the two files come from different data sets")
    if absent:
        click.echo(f"warning: {flag} {folder}: episodes on {len(absent)} instrument(s) absent from events.parquet "
                   f"({', '.join(absent[:5])}) count as missed", err=True)
    return events


def _loso_names(loso_models: str | None, all_models: tuple[str, ...]) -> tuple[str, ...] | None:
    if not loso_models:
        return None
    names = tuple(m.strip() for m in loso_models.split(",") if m.strip())
    bad = [m for m in names if m not in all_models]
    if bad or not names:
        raise click.BadParameter(f"unknown models {bad}; choose from {', '.join(all_models)}",
                                 param_hint="--loso-models")
    return names


def _check_alert_instruments(events: list[dict[str, Any]], src: str, data: Path, instruments: set[str]) -> None:
    """Alerts graded against the wrong data set would all count as false: refuse that; an
    empty source is graded (a job may alert on nothing) but said."""
    if not events:
        click.echo(f"warning: --alerts {src} holds no alert events: grading 0 alerts (was the job's output "
                   "captured? `darkpool alerts --json --from-beginning --timeout 10 > FILE`)", err=True)
        return
    named = {e.get("instrument") for e in events}
    absent = sorted(str(i) for i in named - instruments)
    if absent and not named & instruments:
        raise click.ClickException(f"--alerts {src}: none of its instruments ({', '.join(absent[:5])}) is in "
                                   f"{data}: the alerts come from another data set")
    if absent:
        click.echo(f"warning: --alerts {src}: alerts on {len(absent)} instrument(s) not in {data} "
                   f"({', '.join(absent[:5])}) count as false alerts", err=True)


def _model_names(models: str | None, all_models: tuple[str, ...], artifact: bool) -> tuple[str, ...]:
    if models is None:
        return ("transformer",) if artifact else all_models
    names = tuple(m.strip() for m in models.split(",") if m.strip())
    bad = [m for m in names if m not in all_models]
    if bad or not names:
        raise click.BadParameter(f"unknown models {bad}; choose from {', '.join(all_models)}", param_hint="--models")
    if artifact and names != ("transformer",):
        raise click.BadParameter("an --artifact is a trained transformer: use --models transformer, or "
                                 "--train-data A to train the others", param_hint="--models")
    return names


def read_alerts_source(src: str, bootstrap_servers: str | None) -> list[dict[str, Any]]:
    from darkpool.evaluate.alerts_grading import looks_like_file, read_alert_file, read_alert_topic

    path = Path(src)
    if path.is_dir():
        raise click.ClickException(f"--alerts {src} is a folder: give the JSON-lines file of alert events")
    if not path.exists() and looks_like_file(src):
        raise click.ClickException(f"alerts file {src} does not exist (write one with `darkpool alerts --json > FILE`; "
                                   "a Kafka topic name has no path separator and no file suffix)")
    try:
        if path.exists():
            return read_alert_file(path)
        kafka = from_env(KafkaConfig, bootstrap_servers=bootstrap_servers)
        return read_alert_topic(src, kafka.bootstrap_servers)
    except Exception as exc:  # broker down, bad file: one clear line, not a traceback
        raise click.ClickException(f"cannot read alerts from {src}: {exc}") from exc


def _grade_alerts(events: list[dict[str, Any]], src: str, data: Path, out: Path, rules: Any) -> dict[str, Any]:
    from darkpool.evaluate.alerts_grading import grade_alerts, summary_table, write_alert_report

    try:
        res = grade_alerts(events, data, rules)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    md = write_alert_report(res, src, out)
    click.echo(f"job alerts on {data}:\n" + summary_table(res) + f"report {md}, figures {out / 'alerts_grade.json'}")
    return {"source": src, **res}

