"""PNG of one instrument: the NBBO, dark fills (manipulators coloured by scenario) and the
labeled episodes shaded, so a person can see what the generated data looks like."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.schemas import SCENARIOS


def busiest_instrument(episodes: pa.Table, events: pa.Table) -> str:
    """The instrument with the most episodes (the first instrument if there are none)."""
    if episodes.num_rows:
        counts = pc.value_counts(episodes.column("instrument"))
        best = int(np.argmax(counts.field("counts").to_numpy()))
        return str(counts.field("values")[best])
    return str(events.column("instrument")[0])


def plot_instrument(events: pa.Table, episodes: pa.Table, path: Path, instrument: str | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    instrument = instrument or busiest_instrument(episodes, events)
    ev = events.filter(pc.equal(events.column("instrument"), instrument))
    if not ev.num_rows:
        raise ValueError(f"instrument {instrument!r} has no events; pick one of the generated symbols")
    ts = ev.column("ts").to_numpy().astype("datetime64[ns]")
    kind = ev.column("event").to_numpy(zero_copy_only=False)
    scen = ev.column("scenario").to_numpy(zero_copy_only=False)
    price = ev.column("price").to_numpy()
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive"]

    def colors(k: int) -> str:  # one colour per scenario, none grey (grey = normal fills)
        return palette[k % len(palette)]

    fig, ax = plt.subplots(figsize=(14, 6), dpi=110)
    ax.step(ts, ev.column("bid").to_numpy(), where="post", lw=0.7, color="tab:cyan", label="NBBO bid")
    ax.step(ts, ev.column("ask").to_numpy(), where="post", lw=0.7, color="black", label="NBBO ask")
    fill = kind == "fill"
    normal = fill & (scen == "normal")
    ax.scatter(ts[normal], price[normal], s=3, color="0.55", label="fill (normal)", zorder=2)
    for k, name in enumerate(SCENARIOS[1:]):
        sel = fill & (scen == name)
        if sel.any():
            ax.scatter(ts[sel], price[sel], s=14, color=colors(k), label=f"fill ({name})", zorder=3)
    eps = episodes.filter(pc.equal(episodes.column("instrument"), instrument)).to_pylist()
    for e in eps:
        k = SCENARIOS.index(e["scenario"]) - 1
        t0, t1 = np.datetime64(e["start_ts"], "ns"), np.datetime64(max(e["end_ts"], e["start_ts"] + 10**9), "ns")
        ax.axvspan(t0, t1, color=colors(k), alpha=0.18, lw=0)
        ax.text(t0, ax.get_ylim()[1], f" {e['scenario']} ({e['intensity']:.2f})", rotation=90,
                va="top", ha="right", fontsize=7, color=colors(k))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("price")
    ax.set_title(f"{instrument}: NBBO, dark fills and {len(eps)} labeled episodes (shaded; intensity in brackets)")
    ax.legend(loc="upper left", fontsize=7, ncol=2, markerscale=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
