"""`darkpool scorer serve`: run the scoring service on one artifact."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from core.config import ScorerEndpoint, from_env


@click.group()
def scorer() -> None:
    """The model scoring service (Open Inference Protocol v2 over HTTP)."""


@scorer.command()
@click.option("--artifact", type=click.Path(path_type=Path), required=True,
              help="artifact folder written by `darkpool train`")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=None, help="default: the port of DARKPOOL_SCORER_URL (8500)")
@click.option("--max-batch", type=int, default=256, show_default=True, help="most windows per model call")
@click.option("--max-delay-ms", type=float, default=2.0, show_default=True,
              help="longest a request waits for its batch to fill")
@click.option("--max-queue", type=int, default=8192, show_default=True,
              help="most queued windows; more -> HTTP 503 overloaded")
@click.option("--device", default="auto", show_default=True, help="auto (cuda if present), cpu, cuda")
@click.option("--dtype", default="auto", show_default=True, help="auto (bf16 on cuda), float32, bfloat16")
@click.option("--threads", type=int, default=1, show_default=True,
              help="torch CPU threads (0 = torch default); 1 leaves a core to the HTTP loop")
def serve(artifact: Path, host: str, port: int | None, max_batch: int, max_delay_ms: float, max_queue: int,
          device: str, dtype: str, threads: int) -> None:
    """Load ARTIFACT, warm up, and serve until interrupted (SIGHUP reloads the artifact)."""
    from model.scorer.server import ScorerConfig  # torch import only when serving
    from model.scorer.server import serve as run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if port is None:
        port = int(from_env(ScorerEndpoint).scorer_url.rsplit(":", 1)[-1].split("/")[0])
    try:
        cfg = ScorerConfig(artifact=artifact, host=host, port=port, max_batch=max_batch,
                           max_delay_ms=max_delay_ms, max_queue=max_queue, device=device, dtype=dtype,
                           threads=threads)
        run(cfg)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc} (is another scorer running?)") from exc
