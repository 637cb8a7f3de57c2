"""Plain per-pane loop implementation of the pane channels: the reference that the
vectorized kernel in core/features.py is checked against (same definitions, written
the obvious way, one pane at a time)."""

from __future__ import annotations

import numpy as np

from core.features import (
    BLOCK_NOTIONAL,
    BURST_SLOT_NS,
    LARGE_FILL_RATIO,
    N_PANE_CHANNELS,
    PANE_CHANNELS,
    PROBE_MAX_QTY,
    RUN_MIN_FILLS,
    firm_of,
)

_P = {name: i for i, name in enumerate(PANE_CHANNELS)}


def _log1p(x: float) -> float:
    return float(np.log1p(x))


def _pane_vector(
    ts: np.ndarray,
    event: np.ndarray,
    participant: np.ndarray,
    side: np.ndarray,
    price: np.ndarray,
    qty: np.ndarray,
    contra: np.ndarray,
    bid: np.ndarray,
    ask: np.ndarray,
    hidden: np.ndarray,
    slide_ns: int,
) -> np.ndarray:
    """Raw channels of one pane; arrays are that pane's events sorted by ts."""
    out = np.zeros(N_PANE_CHANNELS, dtype=np.float64)
    n = len(ts)
    out[_P["gap_median_ms"]] = _log1p(slide_ns / 1e6)
    if n == 0:
        return out
    is_new, is_cancel, is_fill = event == "new", event == "cancel", event == "fill"
    mid = (bid + ask) / 2.0
    # Half-spread floor: a locked NBBO (bid == ask) must not divide by zero.
    half = np.maximum((ask - bid) / 2.0, mid * 1e-6)
    buy = side == "B"

    # price
    out[_P["ret_mid_bps"]] = np.log(mid[-1] / mid[0]) * 1e4
    if n > 1:
        out[_P["mid_vol_bps"]] = float(np.sqrt(np.sum(np.diff(np.log(mid)) ** 2))) * 1e4
    out[_P["spread_bps"]] = float(np.mean((ask - bid) / mid)) * 1e4
    fq = qty[is_fill].astype(np.float64)
    n_fill = int(is_fill.sum())
    if n_fill:
        fp, fmid, fhalf = price[is_fill], mid[is_fill], half[is_fill]
        vol = fq.sum()
        out[_P["fill_dev_hs"]] = float(np.sum(np.abs(fp - fmid) / fhalf * fq) / vol)
        outside = np.maximum(np.maximum(fp - ask[is_fill], bid[is_fill] - fp), 0.0) / fhalf
        out[_P["fill_outside_hs"]] = float(outside.max())
        # volume
        out[_P["log_volume"]] = _log1p(vol)
        out[_P["log_mean_fill"]] = _log1p(vol / n_fill)
        out[_P["log_max_fill"]] = _log1p(fq.max())
        out[_P["block_count"]] = _log1p(float(np.sum(fp * fq >= BLOCK_NOTIONAL)))
        out[_P["hidden_share"]] = float(fq[hidden[is_fill].astype(bool)].sum() / vol)
        fbuy = buy[is_fill]
        out[_P["fill_imbalance"]] = float((fq[fbuy].sum() - fq[~fbuy].sum()) / vol)

    # time
    out[_P["log_events"]] = _log1p(n)
    if n > 1:
        out[_P["gap_median_ms"]] = _log1p(float(np.median(np.diff(ts))) / 1e6)
    _, slot_counts = np.unique(ts // BURST_SLOT_NS, return_counts=True)
    out[_P["burst_100ms"]] = _log1p(slot_counts.max())

    # order flow
    n_new, n_cancel = int(is_new.sum()), int(is_cancel.sum())
    out[_P["log_new"]] = _log1p(n_new)
    out[_P["log_cancel"]] = _log1p(n_cancel)
    out[_P["log_fill"]] = _log1p(n_fill)
    out[_P["cancel_fill_ratio"]] = float(np.log((n_cancel + 1) / (n_fill + 1)))
    if n_new:
        nq, nbuy = qty[is_new].astype(np.float64), buy[is_new]
        out[_P["new_imbalance"]] = float((nq[nbuy].sum() - nq[~nbuy].sum()) / nq.sum())

    _participant_channels(out, participant, is_cancel, is_fill, buy, qty, contra)
    _lead_channels(out, participant, event, buy, qty, contra)
    return out


def _lead_channels(out: np.ndarray, participant: np.ndarray, event: np.ndarray, buy: np.ndarray, qty: np.ndarray,
                   contra: np.ndarray) -> None:  # fmt: skip
    """lead_*: one participant at a time, in plain loops."""
    stats: dict[str, dict[str, float]] = {}

    def of(name: str) -> dict[str, float]:
        return stats.setdefault(name, dict.fromkeys(("pb", "ps", "cb", "cs", "bought", "sold", "fills", "small", "n_cancel"), 0.0))

    vol = 0.0
    for who, ev, b, q, other in zip(participant.astype(str), event, buy, qty.astype(float), contra, strict=True):
        s = of(who)
        if ev == "new":
            s["pb" if b else "ps"] += q
            s["small"] += q <= PROBE_MAX_QTY
        elif ev == "cancel":
            s["cb" if b else "cs"] += q
            s["n_cancel"] += 1
        elif ev == "fill":
            vol += q
            s["bought" if b else "sold"] += q
            s["fills"] += 1
            if other is not None and other == other and str(other) != "":
                o = of(str(other))
                o["sold" if b else "bought"] += q
                o["fills"] += 1
    layered = [max(min(s["pb"], s["cb"]) if s["sold"] > 0 else 0.0, min(s["ps"], s["cs"]) if s["bought"] > 0 else 0.0)
               for s in stats.values()]  # fmt: skip
    out[_P["lead_layered_shares"]] = _log1p(max(layered, default=0.0))
    out[_P["lead_probes"]] = _log1p(max((min(s["small"], s["n_cancel"]) for s in stats.values()), default=0.0))
    nets = [abs(s["bought"] - s["sold"]) for s in stats.values() if s["fills"] >= RUN_MIN_FILLS]
    out[_P["lead_net_fill_share"]] = max(nets, default=0.0) / vol if vol > 0 else 0.0


def _participant_channels(
    out: np.ndarray,
    participant: np.ndarray,
    is_cancel: np.ndarray,
    is_fill: np.ndarray,
    buy: np.ndarray,
    qty: np.ndarray,
    contra: np.ndarray,
) -> None:
    """Participant-level channels of one pane (written into `out`)."""
    # Sorted unique names: ties for "most active" go to the smallest id, whatever the grouping.
    names, code, counts = np.unique(participant.astype(str), return_inverse=True, return_counts=True)
    shares = counts / counts.sum()
    out[_P["participant_hhi"]] = float(np.sum(shares**2))
    out[_P["log_participants"]] = _log1p(len(names))
    top = int(np.argmax(counts))
    out[_P["top_cancel_ratio"]] = float(np.sum(is_cancel & (code == top)) / counts[top])
    if not is_fill.any():
        return
    fp = participant[is_fill].astype(str)
    fc = np.array(["" if c is None or c != c else str(c) for c in contra[is_fill]], dtype=object)
    fq = qty[is_fill].astype(np.float64)
    fbuy = buy[is_fill]
    vol = fq.sum()
    same = np.array([a == b or firm_of(a) == firm_of(b) for a, b in zip(fp, fc, strict=True)])
    out[_P["self_cross_share"]] = float(fq[same].sum() / vol)
    top_name = names[top]
    out[_P["top_volume_share"]] = float((fq[fp == top_name].sum() + fq[fc == top_name].sum()) / (2 * vol))

    # Front running: the pane's largest fill, if it stands out, and the net shares each third
    # party traded in the same direction before it (fills are in ts order).
    if len(fq) < 2:
        return
    big = int(np.argmax(fq))
    others_mean = (vol - fq[big]) / (len(fq) - 1)
    if fq[big] < LARGE_FILL_RATIO * others_mean or big == 0:
        return
    direction = 1.0 if fbuy[big] else -1.0
    parties = {fp[big], fc[big]}
    net: dict[str, float] = {}
    for i in range(big):
        leg = fq[i] if fbuy[i] else -fq[i]  # the order owner's signed shares; the contra has -leg
        for who, signed in ((fp[i], leg), (fc[i], -leg)):
            if who not in parties:
                net[who] = net.get(who, 0.0) + direction * signed
    if net:
        out[_P["front_run_ratio"]] = float(np.clip(max(net.values()) / fq[big], 0.0, 1.0))
