"""`darkpool generate` and `darkpool replay`."""

from __future__ import annotations

import re
import time
from pathlib import Path

import click

from darkpool.market.config import PRESETS


def _duration_s(text: str | None) -> int | None:
    """'1800', '30m', '6.5h', '90s' -> seconds."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m:
        raise click.BadParameter(f"{text!r} is not a duration; use seconds (1800) or 90s / 30m / 6.5h")
    return int(float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)])


@click.command()
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="default", show_default=True,
              help="tiny: tests (20k events); default: demo/training (one session); seed-table5: 2,543,678 events, 5.7% anomalous.")
@click.option("--instruments", type=int, help="number of instruments (overrides the preset)")
@click.option("--events", type=int, help="exact number of event rows (overrides the preset)")
@click.option("--duration", help="session length ending at the 21:00 UTC close: 1800, 30m, 6.5h")
@click.option("--seed", type=int, help="random seed (same seed and options -> identical files)")
@click.option("--anomaly-rate", type=float, help="target fraction of anomalous rows, e.g. 0.057")
@click.option("--out", type=click.Path(path_type=Path), help="output folder [default: <data dir>/<preset>]")
@click.option("--plot", is_flag=True, help="also write a PNG of one instrument (NBBO, fills, episodes)")
@click.option("--plot-instrument", help="instrument for --plot [default: the one with most episodes]")
@click.option("--check", is_flag=True, help="also verify the data invariants (time order, NBBO, labels vs episodes, ...)")
def generate(preset, instruments, events, duration, seed, anomaly_rate, out, plot, plot_instrument, check) -> None:
    """Simulate a dark pool with labeled manipulation; write events/episodes/regimes Parquet."""
    from darkpool.market.simulate import simulate, write
    from darkpool.paths import data_dir

    try:
        cfg = PRESETS[preset].replace(n_instruments=instruments, n_events=events, duration_s=_duration_s(duration),
                                      seed=seed, anomaly_rate=anomaly_rate)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    out = out or data_dir() / preset
    t0 = time.perf_counter()
    result = simulate(cfg, progress=cfg.n_events >= 1_000_000)
    paths = write(result, out)
    secs = time.perf_counter() - t0
    ev = result.coded  # the counts do not need the decoded strings
    n_anom = int(ev.column("label").to_numpy().sum())
    click.echo(f"{ev.num_rows:,} events ({n_anom:,} anomalous, {n_anom / ev.num_rows:.2%}) on "
               f"{cfg.n_instruments} instruments, {result.episodes.num_rows} episodes, seed {cfg.seed}: "
               f"{secs:.1f} s ({ev.num_rows / secs:,.0f} events/s)")
    for name, path in paths.items():
        click.echo(f"  {name:8s} {path}")
    if check:
        from darkpool.market.invariants import check_all

        problems = check_all(result)
        if problems:
            raise click.ClickException("generated data breaks its invariants (a simulator bug): " + "; ".join(problems))
        click.echo("  check    all invariants hold")
    if plot:
        from darkpool.market import plot as market_plot

        png = market_plot.plot_instrument(result.events, result.episodes, out / "instrument.png", plot_instrument)
        click.echo(f"  plot     {png}")


@click.command()
@click.option("--input", "-i", "input_path", type=click.Path(path_type=Path),
              help="events Parquet file or a folder holding events.parquet [default: <data dir>/default]")
@click.option("--bootstrap", help="Kafka bootstrap servers [default: KafkaConfig / DARKPOOL_BOOTSTRAP_SERVERS]")
@click.option("--topic", help="topic [default: KafkaConfig.trades_topic]")
@click.option("--speed", type=float, default=0.0, show_default=True,
              help="0 = as fast as possible; X = event-time pace times X (1 = real time)")
@click.option("--limit", type=int, help="send only the first N events")
@click.option("--inject-bad", type=int, default=0, show_default=True,
              help="mix N malformed messages in (not JSON, missing field, bad types, crossed NBBO, ...)")
@click.option("--seed", type=int, default=0, show_default=True, help="where the bad messages go")
@click.option("--compression", type=click.Choice(["none", "gzip"]), default="none", show_default=True)
@click.option("--create-topic", is_flag=True, help="create the topic if missing (KafkaConfig.partitions partitions)")
@click.option("--engine", type=click.Choice(["auto", "python", "kafka"]), default="auto", show_default=True,
              help="python = kafka-python (paces, injects bad messages); kafka = Kafka's own console producer "
                   "(JVM, ~10x faster, neither); auto = kafka when neither is asked for")
def replay(input_path, bootstrap, topic, speed, limit, inject_bad, seed, compression, create_topic, engine) -> None:
    """Send a generated events file into Kafka (key = instrument), printing the achieved rate."""
    from darkpool.config import KafkaConfig, from_env
    from darkpool.market.replay import ReplayError, bulk_replay
    from darkpool.market.replay import replay as run_replay
    from darkpool.market.simulate import read_events
    from darkpool.paths import data_dir

    plain = speed == 0 and inject_bad == 0 and compression == "none"
    if engine == "kafka" and not plain:
        raise click.ClickException("--engine kafka cannot pace (--speed), inject bad messages or compress; "
                                   "use --engine python for those")
    cfg = from_env(KafkaConfig, bootstrap_servers=bootstrap, trades_topic=topic)
    try:
        table = read_events(input_path or data_dir() / "default")
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
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
