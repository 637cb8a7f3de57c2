"""Per-instrument character of a contract event file: rates, cancel:fill ratio, spread.

The figures that place a venue's flow among the simulator's character ranges (events/s,
lit-style cancel-heavy vs dark-style fill-heavy flow, price level, spread).

    python -m darkpool.venue.rates EVENTS.parquet [...]
"""

from __future__ import annotations

import sys

import numpy as np
import pyarrow.parquet as pq


def instrument_rates(path: str) -> list[dict[str, float | str]]:
    """One dict per instrument: events, span_s, events_per_s, new/cancel/fill, cancel_to_fill,
    hidden_fill_share, median price and median spread in bps."""
    table = pq.read_table(path, columns=["ts", "instrument", "event", "price", "bid", "ask", "hidden"])
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


def main(paths: list[str]) -> None:
    for path in paths:
        for row in instrument_rates(path):
            print(path, " ".join(f"{k}={v}" for k, v in row.items()))


if __name__ == "__main__":
    main(sys.argv[1:])
