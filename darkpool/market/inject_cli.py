"""`darkpool inject`: manipulation episodes injected into any event history."""

from __future__ import annotations

import time
from pathlib import Path

import click

from core.cli_types import COUNT, Bounded
from darkpool.market.cli import check_writable, echo_written
from darkpool.market.inject import DEFAULT_RATE
from darkpool.market.injectors import RENDITIONS


@click.command()
@click.option("--background", required=True, type=click.Path(path_type=Path),
              help="events Parquet in the contract (core/schemas.py EVENT_SCHEMA), or a folder holding events.parquet")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="output folder: events/episodes/regimes Parquet, as `darkpool generate` writes them")
@click.option("--rate", type=Bounded(float, lo=0, hi=0.5, lo_open=True, hi_open=True), default=DEFAULT_RATE, show_default=True,
              help="target fraction of anomalous rows in the output, in (0, 0.5); every requested "
                   "scenario gets at least one episode even if that overshoots it")
@click.option("--scenarios", default="all", show_default=True,
              help="comma-separated patterns to inject (e.g. wash_trade,pinging), or all")
@click.option("--seed", type=COUNT, default=0, show_default=True,
              help="random seed (same background, options and seed -> identical files)")
@click.option("--rendition", type=click.Choice(list(RENDITIONS)), default="default", show_default=True,
              help="how the patterns are drawn: default (the simulator's) or alt (the same behaviours with other "
                   "sizes, distances, timings, counts and orderings: train on one, grade on the other)")
@click.option("--check", is_flag=True, help="also verify the data invariants on the output")
def inject(background: Path, out: Path, rate: float, scenarios: str, seed: int, rendition: str,  # noqa: PLR0913
           check: bool) -> None:
    """Inject labeled manipulation episodes into an event history; write a generate-style folder."""
    from darkpool.market.inject import InjectConfig, InjectError, read_background
    from darkpool.market.inject import inject as run_inject
    from darkpool.market.injectors import INJECTORS
    from darkpool.market.simulate import write

    names = tuple(INJECTORS) if scenarios.strip() == "all" else tuple(s.strip() for s in scenarios.split(",") if s.strip())
    unknown = [n for n in names if n not in INJECTORS]
    if unknown or not names:
        raise click.BadParameter(f"{', '.join(unknown) or 'no pattern'} {'is' if len(unknown) < 2 else 'are'} not a "
                                 f"pattern; choose among {', '.join(INJECTORS)}, or all", param_hint="--scenarios")
    source = background / "events.parquet" if background.is_dir() else background
    if not source.is_file():
        where = f"{background} has no events.parquet" if background.is_dir() else f"{background} does not exist"
        raise click.BadParameter(f"{where}: give a contract events Parquet or a folder holding events.parquet",
                                 param_hint="--background")
    if out.resolve() == source.parent.resolve():
        raise click.BadParameter(f"{out} holds the --background events: write the injected copy to another folder "
                                 "(the history stays as it is)", param_hint="--out")
    try:
        cfg = InjectConfig(rate=rate, scenarios=names, seed=seed, rendition=rendition)
        check_writable(out)
        t0 = time.perf_counter()
        table = read_background(background)
        result = run_inject(table, cfg)
    except InjectError as exc:
        raise click.ClickException(str(exc)) from None
    secs = time.perf_counter() - t0
    try:
        paths = write(result, out)
    except OSError as exc:
        raise click.ClickException(f"cannot write to {out} ({exc.strerror or exc})") from None
    ev = result.events
    n_anom = int(ev.column("label").to_numpy().sum())
    click.echo(f"{table.num_rows:,} background events + {ev.num_rows - table.num_rows:,} injected "
               f"({n_anom:,} anomalous, {n_anom / ev.num_rows:.2%} of {ev.num_rows:,}), "
               f"{result.episodes.num_rows} episodes, seed {seed}, rendition {rendition}: {secs:.2f} s "
               f"({table.num_rows / secs:,.0f} background events/s)")
    echo_written(paths, result if check else None, "the output breaks invariants")
