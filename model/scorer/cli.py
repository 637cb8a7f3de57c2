"""`darkpool scorer serve`: run the scoring service on one artifact."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from urllib.parse import urlsplit

import click

from core.cli_types import COUNT, NON_NEGATIVE, POSITIVE_INT
from core.config import ScorerEndpoint, from_env

DEVICES = ("auto", "cpu", "cuda")  # auto = cuda when present, else cpu
DTYPES = ("auto", "float32", "bfloat16")  # auto = bfloat16 on cuda, float32 on cpu


def check_device(device: str) -> None:
    """Refuse --device cuda on a machine without one, before the model is loaded."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise click.BadParameter("cuda requested but no CUDA GPU is available here; use --device cpu or auto",
                                     param_hint="--device")


def check_artifact(folder: Path, flag: str) -> None:
    """Refuse a folder that is no `darkpool train` artifact before torch loads, naming the
    flag; a data folder gets a hint that does not write the artifact into it."""
    if not folder.is_dir():
        raise click.BadParameter(f"{folder} {'is a file' if folder.exists() else 'does not exist'}: give the "
                                 "folder `darkpool train --out DIR` wrote", param_hint=flag)  # fmt: skip
    if (folder / "VERSION").is_file() and (folder / "config.json").is_file():
        return
    if (folder / "events.parquet").exists():
        raise click.BadParameter(f"{folder} is a data folder (events.parquet), not a model artifact: train one on it "
                                 f"with `darkpool train --data {folder} --out artifacts/NAME` and give that folder",
                                 param_hint=flag)  # fmt: skip
    raise click.BadParameter(f"{folder} is not a model artifact (no VERSION / config.json): give a folder written "
                             "by `darkpool train --out DIR`", param_hint=flag)  # fmt: skip


def _check_port_free(host: str, port: int) -> None:
    """Loading and warming the model takes seconds: find out first that the port can be bound."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc} "
                                   "(is another scorer running? choose another --port)") from None


@click.group()
def scorer() -> None:
    """The model scoring service (Open Inference Protocol v2 over HTTP)."""


@scorer.command()
@click.option("--artifact", type=click.Path(path_type=Path), required=True,
              help="artifact folder written by `darkpool train`")
@click.option("--host", default="127.0.0.1")
@click.option("--port", type=click.IntRange(0, 65535), default=None, show_default="the port of DARKPOOL_SCORER_URL",
              help="HTTP port (0: any free port)")
@click.option("--max-batch", type=POSITIVE_INT, default=256, help="most windows per model call")
@click.option("--max-delay-ms", type=NON_NEGATIVE, default=2.0, help="longest a request waits for its batch to fill")
@click.option("--max-queue", type=POSITIVE_INT, default=8192, help="most queued windows; more -> HTTP 503 overloaded")
@click.option("--device", type=click.Choice(DEVICES), default="auto", help="auto = cuda if present, else cpu")
@click.option("--dtype", type=click.Choice(DTYPES), default="auto", help="auto = bfloat16 on cuda, float32 on cpu")
@click.option("--threads", type=COUNT, default=1,
              help="torch CPU threads (0 = torch default); 1 leaves a core to the HTTP loop")
@click.option("--backend", type=click.Choice(["torch", "jax"]), default="torch", show_default=True,
              help="how the model runs: torch (eager) or jax (XLA-jitted; CPU float32); bench/scorer_bench.py "
                   "--backends races them")
@click.option("--artifact-root", type=click.Path(path_type=Path, file_okay=False), default=None,
              show_default="$DARKPOOL_SCORER_ARTIFACT_ROOT, else the folder holding --artifact",
              help="hot reloads load only artifacts under this folder")
@click.option("--access-log/--no-access-log", default=None, show_default="$DARKPOOL_SCORER_ACCESS_LOG=1",
              help="one INFO line per request")
def serve(artifact: Path, host: str, port: int | None, max_batch: int, max_delay_ms: float, max_queue: int,
          device: str, dtype: str, threads: int, backend: str, artifact_root: Path | None,
          access_log: bool | None) -> None:
    """Load ARTIFACT, warm up, and serve until interrupted (SIGHUP reloads the artifact)."""
    check_artifact(artifact, "--artifact")
    if max_queue < max_batch:
        raise click.BadParameter(f"--max-queue {max_queue} is smaller than --max-batch {max_batch}: a full batch "
                                 "could never queue", param_hint="--max-queue")  # fmt: skip
    if artifact_root is not None and not artifact_root.is_dir():
        raise click.BadParameter(f"{artifact_root} does not exist: hot reloads would find nothing under it",
                                 param_hint="--artifact-root")
    if port is None:  # from_env has checked that the URL's port is a number
        url = urlsplit(from_env(ScorerEndpoint).scorer_url)
        port = url.port or (443 if url.scheme == "https" else 80)
    _check_port_free(host, port)
    check_device(device)
    from model.scorer.server import ScorerConfig  # torch import only when serving
    from model.scorer.server import serve as run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        cfg = ScorerConfig(artifact=artifact, host=host, port=port, max_batch=max_batch,
                           max_delay_ms=max_delay_ms, max_queue=max_queue, device=device, dtype=dtype,
                           threads=threads, backend=backend, artifact_root=artifact_root, access_log=access_log)
        run(cfg)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc} (is another scorer running?)") from exc
