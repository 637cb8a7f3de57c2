"""`darkpool train`: labeled Parquet -> model artifact folder."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import click

from core.cli_types import COUNT, FRACTION, POSITIVE, POSITIVE_INT, out_folder_problem
from core.config import WindowConfig, from_env
from core.paths import artifacts_dir, data_dir
from model.config import PRESETS, TrainConfig
from model.scorer.cli import DEVICES, DTYPES, check_artifact, check_device


@click.command()
@click.option("--data", type=click.Path(path_type=Path), default=None, show_default="<data dir>/default",
              help="folder with events.parquet from `darkpool generate`")
@click.option("--out", type=click.Path(path_type=Path), default=None, show_default="<artifacts dir>/<preset>",
              help="artifact folder to write")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="small", show_default=True)
@click.option("--seed", type=COUNT, default=0, show_default=True)
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True,
              help="auto = cuda if present, else cpu")
@click.option("--dtype", type=click.Choice(DTYPES), default="float32", show_default=True,
              help="auto = bfloat16 on cuda, float32 on cpu")
@click.option("--epochs", type=POSITIVE_INT, default=TrainConfig.max_epochs, show_default=True, help="max epochs")
@click.option("--batch-size", type=POSITIVE_INT, default=TrainConfig.batch_size, show_default=True)
@click.option("--max-minutes", type=POSITIVE, default=TrainConfig.max_minutes, show_default=True,
              help="wall-clock budget; the best model so far is kept")
@click.option("--lr", type=POSITIVE, default=TrainConfig.lr, show_default=True, help="AdamW peak learning rate")
@click.option("--patience", type=POSITIVE_INT, default=TrainConfig.patience, show_default=True,
              help="evaluations without a better val PR-AUC before stopping")
@click.option("--ignore-channels", default=",".join(TrainConfig.ignored_channels), show_default=True,
              help="comma-separated channels the model must not see ('' = none; use that on multi-day data)")
@click.option("--threads", type=COUNT, default=TrainConfig.num_threads, show_default=True,
              help="torch CPU threads (0 = torch default)")
@click.option("--target-fpr", type=FRACTION, default=TrainConfig.target_fpr, show_default=True,
              help="false-positive rate of the global threshold on normal validation windows")
@click.option("--from-artifact", "init_from", type=click.Path(path_type=Path),
              help="fine-tune this trained artifact on --data (e.g. a venue's history with `darkpool inject`ed "
                   "episodes) instead of training a fresh network; use a lower --lr, e.g. 0.0003")
def train(data: Path | None, out: Path | None, preset: str, seed: int, device: str, dtype: str,
          epochs: int, batch_size: int, max_minutes: float, lr: float, patience: int, ignore_channels: str,
          threads: int, target_fpr: float, init_from: Path | None) -> None:
    """Train the transformer on labeled events and write an artifact folder."""
    data = data or data_dir() / "default"
    out = out or artifacts_dir() / preset
    if not data.exists():  # before torch loads: say where the data should come from
        folder = data.parent if data.suffix == ".parquet" else data
        raise click.ClickException(f"no labeled events at {data}: generate them with "
                                   f"`darkpool generate --out {folder}` or pass --data DIR")
    if data.is_dir() and not (data / "events.parquet").is_file():
        raise click.BadParameter(f"{data} has no events.parquet: give a folder written by `darkpool generate --out` "
                                 "or `darkpool inject --out`", param_hint="--data")
    ignored = tuple(c.strip() for c in ignore_channels.split(",") if c.strip())
    _check_channels(ignored)
    _check_out(out, data)
    if init_from is not None:
        preset, ignored = _fine_tune_settings(click.get_current_context(), init_from, preset, ignored)
        if out.resolve() == init_from.resolve():
            raise click.BadParameter(f"{out} is the --from-artifact folder: write the fine-tuned model to another "
                                     "folder (the original stays the fallback)", param_hint="--out")
    check_device(device)
    from model.train import train as run  # torch import only when the command runs

    tcfg = TrainConfig(preset=preset, seed=seed, device=device, dtype=dtype, max_epochs=epochs,
                       batch_size=batch_size, max_minutes=max_minutes, num_threads=threads, lr=lr, patience=patience,
                       ignored_channels=ignored,
                       target_fpr=target_fpr, init_from=str(init_from or ""))
    try:
        metrics = run(data, out, tcfg, from_env(WindowConfig))
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps({k: metrics[k] for k in ("version", "threshold", "val", "test")}, indent=2))


def _check_channels(ignored: tuple[str, ...]) -> None:
    from core.features import CHANNELS

    unknown = [c for c in ignored if c not in CHANNELS]
    if unknown:
        near = sorted({m for c in unknown for m in difflib.get_close_matches(c, CHANNELS, n=2)})
        hint = f"did you mean {', '.join(near)}? " if near else ""
        raise click.BadParameter(f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not a channel; "
                                 f"{hint}docs/CHANNELS.md lists the {len(CHANNELS)}",
                                 param_hint="--ignore-channels")  # fmt: skip


def _check_out(out: Path, data: Path) -> None:
    """Before minutes of training, not after: the artifact folder must be writable, and not
    a data folder (an artifact beside events.parquet would be taken for both)."""
    problem = out_folder_problem(out)
    if problem:
        raise click.BadParameter(f"{out} {problem}: choose another folder", param_hint="--out")
    if (out / "events.parquet").exists() or out.resolve() == data.resolve():
        raise click.BadParameter(f"{out} is a data folder (events.parquet): write the artifact to a folder of its "
                                 "own, e.g. artifacts/NAME", param_hint="--out")


def _fine_tune_settings(ctx: click.Context, init_from: Path, preset: str,
                        ignored: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:  # fmt: skip
    """(preset, ignored channels) of a fine-tune: the artifact's own network fixes both, so
    asking for others is refused rather than silently ignored."""
    check_artifact(init_from, "--from-artifact")
    config = json.loads((init_from / "config.json").read_text())
    model = config.get("model") or {}
    for flag, name in (("--preset", "preset"), ("--ignore-channels", "ignore_channels")):
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT:
            raise click.UsageError(f"{flag} does not go with --from-artifact: a fine-tune keeps the network of "
                                   f"{init_from} (its preset and ignored channels); drop {flag}")
    own = (config.get("train") or {}).get("preset") or preset
    return own, tuple(model["ignored_channels"]) if "ignored_channels" in model else ignored
