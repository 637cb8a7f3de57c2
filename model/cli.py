"""`darkpool train`: labeled Parquet -> model artifact folder."""

from __future__ import annotations

import json
from pathlib import Path

import click

from core.config import WindowConfig, from_env
from core.paths import artifacts_dir, data_dir
from model.config import PRESETS, TrainConfig
from model.scorer.cli import DEVICES, DTYPES, check_device


@click.command()
@click.option("--data", type=click.Path(path_type=Path), default=None, show_default="<data dir>/default",
              help="folder with events.parquet from `darkpool generate`")
@click.option("--out", type=click.Path(path_type=Path), default=None, show_default="<artifacts dir>/<preset>",
              help="artifact folder to write")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="small", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True,
              help="auto = cuda if present, else cpu")
@click.option("--dtype", type=click.Choice(DTYPES), default="float32", show_default=True,
              help="auto = bfloat16 on cuda, float32 on cpu")
@click.option("--epochs", type=int, default=TrainConfig.max_epochs, show_default=True, help="max epochs")
@click.option("--batch-size", type=int, default=TrainConfig.batch_size, show_default=True)
@click.option("--max-minutes", type=float, default=TrainConfig.max_minutes, show_default=True,
              help="wall-clock budget; the best model so far is kept")
@click.option("--lr", type=float, default=TrainConfig.lr, show_default=True, help="AdamW peak learning rate")
@click.option("--patience", type=int, default=TrainConfig.patience, show_default=True,
              help="evaluations without a better val PR-AUC before stopping")
@click.option("--ignore-channels", default=",".join(TrainConfig.ignored_channels), show_default=True,
              help="comma-separated channels the model must not see ('' = none; use that on multi-day data)")
@click.option("--threads", type=int, default=TrainConfig.num_threads, show_default=True,
              help="torch CPU threads (0 = torch default)")
@click.option("--target-fpr", type=float, default=TrainConfig.target_fpr, show_default=True,
              help="false-positive rate of the global threshold on normal validation windows")
@click.option("--from-artifact", "init_from", type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="fine-tune this trained artifact on --data (e.g. a venue's history with `darkpool inject`ed "
                   "episodes) instead of training a fresh network; use a lower --lr, e.g. 0.0003")
def train(data: Path | None, out: Path | None, preset: str, seed: int, device: str, dtype: str,
          epochs: int, batch_size: int, max_minutes: float, lr: float, patience: int, ignore_channels: str,
          threads: int, target_fpr: float, init_from: Path | None) -> None:
    """Train the transformer on labeled events and write an artifact folder."""
    from model.train import train as run  # torch import only when the command runs

    data = data or data_dir() / "default"
    out = out or artifacts_dir() / preset
    if not data.exists():  # before torch loads: say where the data should come from
        folder = data.parent if data.suffix == ".parquet" else data
        raise click.ClickException(f"no labeled events at {data}: generate them with "
                                   f"`darkpool generate --out {folder}` or pass --data DIR")
    check_device(device)
    tcfg = TrainConfig(preset=preset, seed=seed, device=device, dtype=dtype, max_epochs=epochs,
                       batch_size=batch_size, max_minutes=max_minutes, num_threads=threads, lr=lr, patience=patience,
                       ignored_channels=tuple(c for c in ignore_channels.split(",") if c),
                       target_fpr=target_fpr, init_from=str(init_from or ""))
    try:
        metrics = run(data, out, tcfg, from_env(WindowConfig))
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps({k: metrics[k] for k in ("version", "threshold", "val", "test")}, indent=2))
