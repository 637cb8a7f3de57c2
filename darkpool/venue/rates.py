"""Per-instrument character of a contract event file: rates, cancel:fill ratio, spread.

The figures that place a venue's flow among the simulator's character ranges (events/s,
lit-style cancel-heavy vs dark-style fill-heavy flow, price level, spread).

    python -m darkpool.venue.rates EVENTS.parquet [...]   (a folder stands for its events.parquet)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

COLUMNS = ["ts", "instrument", "event", "price", "bid", "ask", "hidden"]


def instrument_rates(path: str) -> list[dict[str, float | str]]:
    """One dict per instrument: events, span_s, events_per_s, new/cancel/fill, cancel_to_fill,
    hidden_fill_share, median price and median spread in bps."""
    table = pq.read_table(path, columns=COLUMNS)
    df = table.to_pandas()
    out: list[dict[str, float | str]] = []
    for name, g in df.groupby("instrument", sort=True):
        span_s = (g.ts.max() - g.ts.min()) / 1e9
        counts = g.event.value_counts()
        fills = int(counts.get("fill", 0))
        cancels = int(counts.get("cancel", 0))
        mid = (g.bid + g.ask) / 2
        out.append({
            "instrument": str(name),
            "events": len(g),
            "span_s": round(float(span_s), 1),
            "events_per_s": round(len(g) / span_s, 2) if span_s else float("nan"),
            "new": int(counts.get("new", 0)),
            "cancel": cancels,
            "fill": fills,
            "cancel_to_fill": round(cancels / fills, 2) if fills else float("inf"),
            "hidden_fill_share": round(float(g.hidden[g.event == "fill"].mean()), 3) if fills else 0.0,
            "median_price": round(float(g.price.median()), 2),
            "median_spread_bps": round(float(np.median((g.ask - g.bid) / mid * 1e4)), 2),
        })
    return out


def readable(text: str) -> str:
    """argparse type: an events file (or a folder holding events.parquet) in the contract,
    checked before any is read: one line naming the file, not a pyarrow traceback."""
    path = Path(text)
    if path.is_dir():
        path = path / "events.parquet"
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{path} does not exist")
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise argparse.ArgumentTypeError(f"{path} is not a Parquet file ({str(exc).splitlines()[0]})") from None
    missing = [c for c in COLUMNS if c not in schema.names]
    if missing:
        raise argparse.ArgumentTypeError(f"{path} lacks the event contract's columns {', '.join(missing)} "
                                         "(an events.parquet of `darkpool generate`, `inject` or `import`?)")
    return str(path)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m darkpool.venue.rates", allow_abbrev=False,
                                description=__doc__.split("\n\n")[0])
    p.add_argument("events", nargs="+", type=readable, metavar="EVENTS",
                   help="events Parquet file(s) in the contract, or folders holding events.parquet")
    a = p.parse_args(argv)
    for path in a.events:
        rows = instrument_rates(path)
        if not rows:
            print(f"warning: {path} holds no events", file=sys.stderr)
        for row in rows:
            print(path, " ".join(f"{k}={v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
