"""`darkpool import ...`: real venue data into the event contract."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import click

from core.cli_types import COUNT, POSITIVE_INT


def _wall_clock_ns(text: str, param: str) -> int:
    """'09:30' or '09:30:15' -> ns after midnight."""
    m = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", text.strip())
    if not m or int(m[1]) > 23 or int(m[2]) > 59 or int(m[3] or 0) > 59:
        raise click.BadParameter(f"{text!r} is not a New York wall-clock time like 09:30 or 15:59:30",
                                 param_hint=param)
    return (int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3] or 0)) * 1_000_000_000


@click.group(name="import")
def import_() -> None:
    """Convert real venue data into the event contract (Parquet)."""


@import_.command()
@click.option("--message", "message", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="LOBSTER message file (TICKER_DATE_START_END_message_N.csv)")
@click.option("--orderbook", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              show_default="rebuilt from the messages", help="its orderbook file: bid/ask from it")
@click.option("--ticker", show_default="from the file name", help="instrument name")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), show_default="from the file name",
              help="trading day, YYYY-MM-DD")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="output Parquet file")
@click.option("--venue", default="NASDAQ-LOBSTER", show_default=True)
@click.option("--start", "start", help="keep events from this New York time on, e.g. 09:30")
@click.option("--end", "end", help="keep events before this New York time, e.g. 10:30")
@click.option("--levels", type=POSITIVE_INT, show_default="from the file name",
              help="book levels the message file covers, for the rebuilt book")
@click.option("--accounts", type=POSITIVE_INT, default=240, show_default=True, help="pseudo accounts the anonymous orders are hashed into")
@click.option("--firms", type=POSITIVE_INT, default=24, show_default=True, help="firms the pseudo accounts belong to")
@click.option("--seed", type=COUNT, default=0, show_default=True, help="salt of the participant hash")
def lobster(message, orderbook, ticker, day, out, venue, start, end, levels, accounts, firms, seed) -> None:
    """LOBSTER message file (+ orderbook file) -> contract events.

    Participants are absent from LOBSTER: each order id is hashed into pseudo accounts
    R<firm>-d<desk>, a fill's contra from its timestamp (darkpool/venue/README.md).
    """
    from darkpool.venue.lobster import LobsterFormatError, Population, import_lobster

    window = None
    if start or end:
        window = (_wall_clock_ns(start, "--start") if start else 0,
                  _wall_clock_ns(end, "--end") if end else 86_400 * 1_000_000_000)
        if window[0] >= window[1]:
            raise click.BadParameter(f"--start {start} is not before --end {end}: the window would keep no event",
                                     param_hint="--start/--end")
    if firms > accounts:
        raise click.BadParameter(f"--firms {firms} exceeds --accounts {accounts}: each firm needs an account",
                                 param_hint="--firms")
    try:
        population = Population(accounts=accounts, firms=firms, seed=seed)
        stats = import_lobster(message, out, orderbook=orderbook, ticker=ticker,
                               day=day.date() if isinstance(day, dt.datetime) else None, venue=venue,
                               population=population, window_ns=window, levels=levels)
    except (LobsterFormatError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(stats.summary())
    click.echo(f"  events   {out}")
