"""Invariants every generated data set must satisfy (used by the tests and by
`darkpool generate --check`). Each check returns a list of human-readable violations."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from darkpool.market.simulate import SimResult


def _np(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy(zero_copy_only=False)


def check_rows(r: SimResult) -> list[str]:
    ev, cfg, out = r.events, r.config, []
    ts, qty, price, bid, ask = (_np(ev, c) for c in ("ts", "qty", "price", "bid", "ask"))
    kind, scen, label = _np(ev, "event"), _np(ev, "scenario"), _np(ev, "label")
    if ev.num_rows != cfg.n_events:
        out.append(f"{ev.num_rows} rows, config asks for {cfg.n_events}")
    if (np.diff(ts) < 0).any():
        out.append("rows are not sorted by ts (per-instrument time order breaks)")
    opens, closes = (np.array(x) for x in zip(*cfg.session_bounds(), strict=True))
    k = np.searchsorted(opens, ts, side="right") - 1  # the session each event would belong to
    if (k < 0).any() or (ts >= closes[np.maximum(k, 0)]).any():
        out.append("events outside the sessions")
    if (qty <= 0).any() or (price <= 0).any() or not (bid < ask).all():
        out.append("qty/price not positive or NBBO not bid < ask")
    fill = kind == "fill"
    outside = fill & ((price < bid - 1e-9) | (price > ask + 1e-9))
    if (outside & (scen != "off_market_print")).any():
        out.append(f"{int((outside & (scen != 'off_market_print')).sum())} fills outside the NBBO not labeled off_market_print")
    if (pc.is_null(ev.column("contra")).to_numpy(zero_copy_only=False) == fill).any():
        out.append("contra must be set on fills and only on fills")
    if ((label == 1) != (scen != "normal")).any():
        out.append("label and scenario disagree")
    return out


def check_episodes(r: SimResult) -> list[str]:
    """Every anomalous row lies in an episode of its instrument and scenario, by one of its participants."""
    out = []
    label = _np(r.events, "label")
    ev = r.events.filter(pa.array(label == 1))
    ts, inst, scen, part = (_np(ev, c) for c in ("ts", "instrument", "scenario", "participant"))
    covered = np.zeros(ev.num_rows, dtype=bool)
    for e in r.episodes.to_pylist():
        m = (inst == e["instrument"]) & (scen == e["scenario"]) & (ts >= e["start_ts"]) \
            & (ts <= e["end_ts"]) & np.isin(part, e["participants"])
        if m.sum() < e["n_events"]:
            out.append(f"episode {e['episode_id']} claims {e['n_events']} rows, {int(m.sum())} found")
        covered |= m
    if not covered.all():
        out.append(f"{int((~covered).sum())} anomalous rows belong to no episode")
    if int(pc.sum(r.episodes.column("n_events")).as_py() or 0) != int(label.sum()):
        out.append("episodes' n_events do not add up to the anomalous rows")
    return out


def check_orders(r: SimResult) -> list[str]:
    """Order lifecycles: a `new` first, a cancel last, one instrument/participant/side,
    cancels keep the limit price."""
    ev, out = r.events, []
    order = pc.sort_indices(ev, sort_keys=[("order_id", "ascending"), ("ts", "ascending")])
    t = ev.take(order)
    oid = _np(t, "order_id")
    first = np.ones(len(oid), dtype=bool)
    first[1:] = oid[1:] != oid[:-1]
    kind = _np(t, "event")
    if (kind[first] != "new").any() or (kind[~first] == "new").any():
        out.append("every order must start with exactly one new")
    start = np.flatnonzero(first)
    head = np.repeat(start, np.diff(np.append(start, len(oid))))
    for c in ("instrument", "participant", "side"):
        col = _np(t, c)
        if (col != col[head]).any():
            out.append(f"an order changes {c}")
    price = _np(t, "price")
    cancel = kind == "cancel"
    last = np.append(first[1:], True)  # last row of its order
    if (cancel & ~last).any():
        out.append("an order has events after its cancel")
    if (price[cancel] != price[head[cancel]]).any():
        out.append("a cancel's price differs from its order's limit price")
    return out


def check_regimes(r: SimResult) -> list[str]:
    out = []
    reg, cfg = r.regimes, r.config
    bounds = cfg.session_bounds()
    opens = np.array([o for o, _ in bounds])
    for sym in pc.unique(reg.column("instrument")).to_pylist():
        spells = reg.filter(pc.equal(reg.column("instrument"), sym))
        s, e = _np(spells, "start_ts"), _np(spells, "end_ts")
        k = np.searchsorted(opens, s, side="right") - 1
        tiled = (k >= 0).all() and all(
            len(mine := np.flatnonzero(k == j)) and s[mine[0]] == o and e[mine[-1]] == c
            and (s[mine[1:]] == e[mine[:-1]]).all()
            for j, (o, c) in enumerate(bounds))
        if not tiled:
            out.append(f"regime spells of {sym} do not tile every session")
    if not set(pc.unique(r.events.column("instrument")).to_pylist()) <= set(pc.unique(reg.column("instrument")).to_pylist()):
        out.append("events on instruments without regimes")
    return out


def check_all(r: SimResult) -> list[str]:
    return check_rows(r) + check_episodes(r) + check_orders(r) + check_regimes(r)
