"""`darkpool generate` and `darkpool replay`."""

from __future__ import annotations

import re
import time
from pathlib import Path

import click

from core.cli_types import (
    BOOTSTRAP_SERVERS,
    COUNT,
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    Bounded,
    out_folder_problem,
)
from darkpool.market.config import PRESETS


def _duration_s(text: str | None) -> int | None:
    """'1800', '30m', '6.5h', '90s' -> seconds."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m:
        raise click.BadParameter(f"{text!r} is not a duration; use seconds (1800) or 90s / 30m / 6.5h")
    return int(float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)])


def _range(text: str | None, name: str, integer: bool = False) -> tuple[float, float] | None:
    """'2,2000' -> (2.0, 2000.0); one number 'P' -> (P, P)."""
    if text is None:
        return None
    try:
        parts = [int(p) if integer else float(p) for p in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or parts[0] > parts[1]:
        raise click.BadParameter(f"{text!r} is not a range; use LOW,HIGH (LOW <= HIGH) or one number", param_hint=name)
    return parts[0], parts[1]


# Options that shape the varied character's draws (classic presets have no per-instrument ranges).
VARIED_ONLY = ("--rate-range", "--rate-scale", "--flow", "--price-range", "--spread-bps", "--participants")


# SimConfig's fields -> the flags that set them (its checks name fields)
SIM_FLAGS = {"n_instruments": "--instruments", "n_events": "--events", "duration_s": "--duration",
             "sessions": "--sessions", "anomaly_rate": "--anomaly-rate", "rate_range": "--rate-range",
             "rate_scale": "--rate-scale", "price_range": "--price-range", "spread_bps": "--spread-bps",
             "population_range": "--participants", "flow": "--flow", "activity": "--activity"}


def with_flags(message: str, flags: dict[str, str]) -> str:
    """A config check's message with its field names replaced by the flags that set them.

    >>> with_flags("invalid simulator config: n_instruments must be >= 1, got 0", SIM_FLAGS)
    'invalid simulator config: --instruments must be >= 1, got 0'
    """
    for field, flag in flags.items():
        message = re.sub(rf"(?<![\w-]){field}\b", flag, message)
    return message


def check_writable(out: Path) -> None:
    """Fail before the work, not after it, when the output folder cannot be written; the
    check leaves nothing behind (core.cli_types.out_folder_problem)."""
    problem = out_folder_problem(out)
    if problem:
        raise click.ClickException(f"output folder {out} {problem}; choose another --out")


def read_events_or_fail(path: Path, flag: str = "--input"):  # noqa: ANN201 - a pyarrow Table (lazy pyarrow)
    """The events table at `path`, or one line naming `flag` saying why it cannot be read."""
    import pyarrow as pa

    from darkpool.market.simulate import read_events

    events = path / "events.parquet" if path.is_dir() else path
    if not events.exists():
        where = f"{path} has no events.parquet" if path.is_dir() else f"{path} does not exist"
        raise click.ClickException(f"{flag} {where}: give an events Parquet file or a folder holding events.parquet "
                                   "(`darkpool generate --out DIR` writes one)")
    try:
        return read_events(path)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    except (pa.ArrowException, OSError) as exc:  # truncated or not Parquet at all
        raise click.ClickException(f"cannot read events from {path}: {exc} "
                                   "(regenerate it with `darkpool generate --out DIR`)") from None


def check_instrument(symbols: list[str], wanted: str) -> None:
    if wanted not in symbols:
        shown = ", ".join(symbols[:20]) + (f", ... ({len(symbols)} in all)" if len(symbols) > 20 else "")
        raise click.BadParameter(f"{wanted!r} is not an instrument of this market; choose one of {shown}",
                                 param_hint="--plot-instrument")


def echo_written(paths: dict, checked: object | None, broken: str) -> None:
    """List the files written; with a result to check, verify its data invariants."""
    for name, path in paths.items():
        click.echo(f"  {name:8s} {path}")
    if checked is not None:
        from darkpool.market.invariants import check_all

        problems = check_all(checked)
        if problems:
            raise click.ClickException(f"{broken}: " + "; ".join(problems))
        click.echo("  check    all invariants hold")


@click.command()
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="default", show_default=True,
              help="tiny: tests (20k events); default: demo (one session); seed-table5: 2,543,678 events, 5.7% "
                   "anomalous; varied: training (12 instruments of drawn character, 6 sessions, ~2M events).")
@click.option("--instruments", type=POSITIVE_INT, help="number of instruments (overrides the preset)")
@click.option("--events", type=POSITIVE_INT, help="exact number of event rows (overrides the preset; not with varied, "
                                          "whose size follows from its rates)")
@click.option("--duration", help="length of each session, ending at the 21:00 UTC close: 1800, 30m, 6.5h")
@click.option("--sessions", type=POSITIVE_INT, show_default="1; varied: 6", help="trading days, consecutive")
@click.option("--skip-weekends", is_flag=True, help="put the sessions on weekdays only")
@click.option("--seed", type=COUNT, help="random seed (same seed and options -> identical files)")
@click.option("--anomaly-rate", type=Bounded(float, lo=0, hi=0.5, hi_open=True),
              help="target fraction of anomalous rows, e.g. 0.057")
@click.option("--activity", type=click.Choice(["tiers", "zipf"]),
              help="how activity is shared among instruments: tiers (3 : 1 : 0.3 by liquidity) or zipf (the i-th "
                   "busiest 1 / i^1.1: a few hot names, a long quiet tail) [tiers; not with varied]")
@click.option("--rate-range", help="varied: mean normal events/s per instrument, LOW,HIGH or one value [0.05,100]")
@click.option("--rate-scale", type=POSITIVE, help="varied: multiply every instrument's event rate, e.g. 10 or 0.1")
@click.option("--flow", type=click.Choice(["dark", "lit", "mixed"]),
              help="varied: dark midpoint flow, lit cancel-heavy flow (cancels >= 10x fills) or half each [mixed]")
@click.option("--price-range", help="varied: opening prices in dollars, LOW,HIGH or one price [2,2000]")
@click.option("--spread-bps", help="varied: quoted spread in basis points, LOW,HIGH or one value "
                                   "[1 tick to 100 bps]")
@click.option("--participants", help="varied: accounts trading each instrument, LOW,HIGH [20,3000]")
@click.option("--out", type=click.Path(path_type=Path), show_default="<data dir>/<preset>", help="output folder")
@click.option("--plot", is_flag=True, help="also write a PNG of one instrument (NBBO, fills, episodes)")
@click.option("--plot-instrument", show_default="the one with most episodes", help="instrument for --plot")
@click.option("--check", is_flag=True, help="also verify the data invariants (time order, NBBO, labels vs episodes, ...)")
def generate(preset, instruments, events, duration, sessions, skip_weekends, seed, anomaly_rate, activity, rate_range,
             rate_scale, flow, price_range, spread_bps, participants, out, plot, plot_instrument, check) -> None:
    """Simulate a dark pool with labeled manipulation; write events/episodes/regimes Parquet."""
    from core.paths import data_dir
    from darkpool.market.simulate import simulate, write

    base = PRESETS[preset]
    varied = dict(rate_range=_range(rate_range, "--rate-range"), rate_scale=rate_scale, flow=flow,
                  price_range=_range(price_range, "--price-range"), spread_bps=_range(spread_bps, "--spread-bps"),
                  population_range=_range(participants, "--participants", integer=True))
    if base.character != "varied":
        given = [opt for opt, v in zip(VARIED_ONLY, varied.values(), strict=True) if v is not None]
        if given:
            raise click.BadParameter(f"{', '.join(given)} shape drawn instrument characters; use --preset varied")
    elif events is not None:
        raise click.BadParameter("the varied preset's size follows from its instruments' event rates; set "
                                 "--instruments, --duration, --sessions, --rate-range or --rate-scale instead",
                                 param_hint="--events")
    if plot_instrument is not None and not plot:
        raise click.UsageError("--plot-instrument picks the instrument of --plot: add --plot or drop it")
    out = out or data_dir() / preset
    try:
        cfg = base.replace(n_instruments=instruments, n_events=events, duration_s=_duration_s(duration),
                           sessions=sessions, skip_weekends=skip_weekends or None, seed=seed,
                           anomaly_rate=anomaly_rate, activity=activity, **varied)
    except ValueError as exc:
        raise click.UsageError(with_flags(str(exc), SIM_FLAGS)) from None
    check_writable(out)  # before minutes of simulation, not after
    try:
        t0 = time.perf_counter()
        result = simulate(cfg, progress=(cfg.n_events or 1_000_000) >= 1_000_000)
    except ValueError as exc:
        raise click.UsageError(with_flags(str(exc), SIM_FLAGS)) from None
    except RuntimeError as exc:  # e.g. no room for the episodes in very short sessions
        raise click.ClickException(str(exc)) from None
    if plot and plot_instrument is not None:  # before anything is written
        import pyarrow.compute as pc

        check_instrument(sorted(pc.unique(result.coded.column("instrument")).to_pylist()), plot_instrument)
    try:
        paths = write(result, out)
    except OSError as exc:
        raise click.ClickException(f"cannot write to {out} ({exc.strerror or exc})") from None
    secs = time.perf_counter() - t0
    cfg = result.config
    ev = result.coded  # the counts do not need the decoded strings
    n_anom = int(ev.column("label").to_numpy().sum())
    days = f" over {cfg.sessions} sessions" if cfg.sessions > 1 else ""
    click.echo(f"{ev.num_rows:,} events ({n_anom:,} anomalous, {n_anom / ev.num_rows:.2%}) on "
               f"{cfg.n_instruments} instruments{days}, {result.episodes.num_rows} episodes, seed {cfg.seed}: "
               f"{secs:.1f} s ({ev.num_rows / secs:,.0f} events/s)")
    echo_written(paths, result if check else None, "generated data breaks its invariants (a simulator bug)")
    if plot:
        from darkpool.market import plot as market_plot

        png = market_plot.plot_instrument(result.events, result.episodes, out / "instrument.png", plot_instrument)
        click.echo(f"  plot     {png}")


@click.command()
@click.option("--input", "-i", "input_path", type=click.Path(path_type=Path), show_default="<data dir>/default",
              help="events Parquet file or a folder holding events.parquet")
@click.option("--bootstrap-servers", type=BOOTSTRAP_SERVERS, show_default="KafkaConfig / DARKPOOL_BOOTSTRAP_SERVERS",
              help="Kafka bootstrap servers, HOST:PORT[,HOST:PORT]")
@click.option("--bootstrap", hidden=True, type=BOOTSTRAP_SERVERS, deprecated="use --bootstrap-servers instead",
              help="old spelling of --bootstrap-servers")
@click.option("--topic", show_default="KafkaConfig.trades_topic", help="topic")
@click.option("--speed", type=NON_NEGATIVE, default=0.0, show_default=True,
              help="0 = as fast as possible; X = event-time pace times X (1 = real time)")
@click.option("--limit", type=POSITIVE_INT, help="send only the first N events")
@click.option("--inject-bad", type=COUNT, default=0, show_default=True,
              help="mix N malformed messages in (not JSON, missing field, bad types, crossed NBBO, ...)")
@click.option("--seed", type=COUNT, default=0, show_default=True, help="where the --inject-bad messages go")
@click.option("--compression", type=click.Choice(["none", "gzip"]), default="none", show_default=True)
@click.option("--create-topic", is_flag=True, help="create the topic if missing (KafkaConfig.partitions partitions)")
@click.option("--engine", type=click.Choice(["auto", "python", "kafka"]), default="auto", show_default=True,
              help="python = kafka-python (paces, injects bad messages); kafka = Kafka's own console producer "
                   "(JVM, ~10x faster, neither); auto = kafka when neither is asked for")
def replay(input_path, bootstrap_servers, bootstrap, topic, speed, limit, inject_bad, seed, compression,
           create_topic, engine) -> None:
    """Send a generated events file into Kafka (key = instrument), printing the achieved rate."""
    from core.config import KafkaConfig, from_env
    from core.paths import data_dir
    from darkpool.market.replay import ReplayError, bulk_replay
    from darkpool.market.replay import replay as run_replay

    if bootstrap and bootstrap_servers:
        raise click.UsageError("--bootstrap is the old spelling of --bootstrap-servers: give one")
    ctx = click.get_current_context()
    if inject_bad == 0 and ctx.get_parameter_source("seed") is not click.core.ParameterSource.DEFAULT:
        raise click.UsageError("--seed places the --inject-bad messages; without --inject-bad N it does nothing")
    plain = speed == 0 and inject_bad == 0 and compression == "none"
    if engine == "kafka" and not plain:
        raise click.ClickException("--engine kafka cannot pace (--speed), inject bad messages or compress; "
                                   "use --engine python for those")
    cfg = from_env(KafkaConfig, bootstrap_servers=bootstrap_servers or bootstrap, trades_topic=topic)
    table = read_events_or_fail(input_path or data_dir() / "default")
    if limit is not None:
        table = table.slice(0, limit)
    try:
        if engine == "kafka" or (engine == "auto" and plain):
            stats = bulk_replay(table, cfg, create_topic=create_topic)
        else:
            stats = run_replay(table, cfg, speed=speed, inject_bad=inject_bad, seed=seed,
                               compression=None if compression == "none" else compression,
                               create_topic=create_topic)
    except (ReplayError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"replayed {stats.sent:,} events (+{stats.bad} malformed) to {stats.topic} at {stats.bootstrap} "
               f"in {stats.seconds:.1f} s: {stats.rate:,.0f} messages/s")
