"""Window features shared by the Flink job and by training (numpy/pandas only).

Two stages, both pure:

1. `pane_features(df)`: the events of one instrument in one pane (= one `slide` of
   event time, pane index `ts // slide_ns`) -> one row of `N_PANE_CHANNELS` raw
   channels. The Flink pandas UDAF calls it on one (instrument, pane) group; training
   calls `pane_features_by_key` on everything at once. Both run the same per-pane
   kernel `_pane_vector`, so the numbers are identical by construction (a test checks).
2. `window_tensor(panes, end_pane, ...)`: the last T pane rows of an instrument ->
   the model input `float32 [T, N_CHANNELS]`. Missing panes become `EMPTY_PANE`, and
   window-relative channels are added (volume / fill size / activity against the
   window's own level, time of day, time to the session close). Training uses
   `windows_from_panes`, which runs the same `_assemble` kernel over many windows.

Channel order is `CHANNELS`, grouped price / volume / time / order flow / participant.
Counts and sizes are log1p-compressed here; per-channel standardization is fitted on
training windows and applied by the scorer (it is part of the model artifact).

>>> import pandas as pd
>>> df = pd.DataFrame({"ts": [2, 1], "event": ["fill", "new"], "participant": ["A-1", "B"],
...     "side": ["B", "B"], "price": [10.0, 10.0], "qty": [100, 100], "contra": ["A-2", None],
...     "bid": [9.99, 9.99], "ask": [10.01, 10.01], "hidden": [True, False]})
>>> x = pane_features(df)
>>> x.shape == (1, N_PANE_CHANNELS), float(x[0, PANE_CHANNELS.index("self_cross_share")])
(True, 1.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

# ---- channel list --------------------------------------------------------------------
# (name, group, computed per pane?) — window channels are added by `window_tensor`.
_CHANNEL_SPEC: tuple[tuple[str, str, bool], ...] = (
    # price
    ("ret_mid_bps", "price", True),  # log return of the NBBO mid over the pane, bps
    ("fill_dev_hs", "price", True),  # qty-weighted |fill price - mid| in half-spreads
    ("fill_outside_hs", "price", True),  # max distance of a fill outside the NBBO, half-spreads
    ("mid_vol_bps", "price", True),  # realized volatility of the mid within the pane, bps
    ("spread_bps", "price", True),  # mean quoted spread, bps of mid
    # volume
    ("log_volume", "volume", True),  # log1p(filled shares)
    ("log_mean_fill", "volume", True),  # log1p(mean fill size)
    ("log_max_fill", "volume", True),  # log1p(largest fill size)
    ("block_count", "volume", True),  # log1p(# block prints: notional >= BLOCK_NOTIONAL)
    ("hidden_share", "volume", True),  # share of filled shares against hidden liquidity
    ("volume_vs_window", "volume", False),  # log_volume - its mean over the window's traded panes
    ("fill_size_vs_window", "volume", False),  # log_max_fill - mean log_mean_fill over the window
    # time
    ("log_events", "time", True),  # log1p(# events)
    ("gap_median_ms", "time", True),  # log1p(median inter-arrival, ms); slide length if < 2 events
    ("burst_100ms", "time", True),  # log1p(max # events inside one 100 ms slot)
    ("activity_vs_window", "time", False),  # log_events - its mean over the window's active panes
    ("tod_sin", "time", False),  # time of day of the pane start (UTC), sine
    ("tod_cos", "time", False),  # ... cosine
    ("to_close_h", "time", False),  # hours from pane start to the session close, clipped
    # order flow
    ("log_new", "flow", True),  # log1p(# new orders)
    ("log_cancel", "flow", True),  # log1p(# cancels)
    ("log_fill", "flow", True),  # log1p(# fills)
    ("cancel_fill_ratio", "flow", True),  # log((cancels + 1) / (fills + 1))
    ("new_imbalance", "flow", True),  # (buy - sell) / total shares of new orders
    ("fill_imbalance", "flow", True),  # (buy - sell) / total filled shares, by order side
    # participant
    ("self_cross_share", "participant", True),  # filled shares with contra == participant or same firm
    ("top_cancel_ratio", "participant", True),  # cancels / events of the most active participant
    ("top_volume_share", "participant", True),  # that participant's share of traded shares (both legs)
    ("participant_hhi", "participant", True),  # Herfindahl index of event counts over participants
    ("log_participants", "participant", True),  # log1p(# distinct participants)
    ("front_run_ratio", "participant", True),  # max net same-direction shares a third party
    # traded before the pane's large fill, / the large fill's size (0..1)
)

CHANNELS: tuple[str, ...] = tuple(name for name, _, _ in _CHANNEL_SPEC)
N_CHANNELS = len(CHANNELS)
CHANNEL_GROUPS: dict[str, str] = {name: group for name, group, _ in _CHANNEL_SPEC}
PANE_CHANNELS: tuple[str, ...] = tuple(name for name, _, per_pane in _CHANNEL_SPEC if per_pane)
N_PANE_CHANNELS = len(PANE_CHANNELS)
# Where each pane channel lands in the model input.
_PANE_TO_CHANNEL = np.array([CHANNELS.index(c) for c in PANE_CHANNELS])
_P = {name: i for i, name in enumerate(PANE_CHANNELS)}
_C = {name: i for i, name in enumerate(CHANNELS)}

# ---- constants of the definitions ------------------------------------------------------
DEFAULT_SLIDE_NS = 5_000_000_000  # pane length if the caller gives none (WindowConfig default)
BLOCK_NOTIONAL = 200_000.0  # a print of at least this notional (price * qty) is a block
LARGE_FILL_RATIO = 4.0  # a fill is "large" if >= this x the mean size of the pane's other fills
BURST_SLOT_NS = 100_000_000  # slot length of the burst count
SESSION_CLOSE_UTC_S = 21 * 3600  # session close, seconds after midnight UTC (16:00 New York in winter; darkpool.market SimConfig.close_utc)
TO_CLOSE_CLIP_H = (-1.0, 8.0)  # to_close_h is clipped to this range, hours
FIRM_SEPARATORS = "-./:"  # a participant id "FIRM-desk" belongs to firm "FIRM"
# Columns `pane_features` reads (contract names; `pane` and `instrument` only for grouping).
REQUIRED_COLUMNS = ("ts", "event", "participant", "side", "price", "qty", "contra", "bid", "ask", "hidden")


def firm_of(participant: str) -> str:
    """Firm of a participant id: the text before the first separator ("F07-desk2" -> "F07")."""
    for i, ch in enumerate(participant):
        if ch in FIRM_SEPARATORS:
            return participant[:i]
    return participant


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
    return out


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


def _check_columns(df: pd.DataFrame, extra: Sequence[str]) -> None:
    missing = [c for c in (*REQUIRED_COLUMNS, *extra) if c not in df.columns]
    if missing:
        raise ValueError(
            f"pane features need the event-contract columns {missing} (see udfs/schemas.py "
            f"EVENT_SCHEMA); got columns {list(df.columns)}"
        )


def _columns(df: pd.DataFrame) -> dict[str, np.ndarray]:
    return {c: df[c].to_numpy() for c in REQUIRED_COLUMNS}


def pane_features_by_key(
    df: pd.DataFrame, keys: Sequence[str] = ("instrument", "pane"), slide_ns: int = DEFAULT_SLIDE_NS
) -> tuple[pd.DataFrame, np.ndarray]:
    """Raw pane channels for every group of `keys`: (keys frame sorted by keys, X [G, F_raw])."""
    keys = list(keys)
    _check_columns(df, keys)
    if len(df) == 0:
        return pd.DataFrame({k: df[k].iloc[:0] for k in keys}), np.zeros((0, N_PANE_CHANNELS), np.float32)
    # Stable sort on (keys..., ts) so each group is a contiguous, time-ordered slice.
    # (keys are factorized first: lexsort cannot sort object arrays such as instrument names)
    codes = [pd.factorize(df[k], sort=True)[0] for k in reversed(keys)]
    order = np.lexsort([df["ts"].to_numpy()] + codes)
    sdf = df.iloc[order]
    cols = _columns(sdf)
    key_arrays = [sdf[k].to_numpy() for k in keys]
    change = np.zeros(len(sdf), dtype=bool)
    change[0] = True
    for a in key_arrays:
        change[1:] |= a[1:] != a[:-1]
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], len(sdf))
    X = np.empty((len(starts), N_PANE_CHANNELS), dtype=np.float32)
    for g, (s, e) in enumerate(zip(starts, ends, strict=True)):
        X[g] = _pane_vector(*(cols[c][s:e] for c in REQUIRED_COLUMNS), slide_ns=slide_ns)
    keys_df = pd.DataFrame({k: a[starts] for k, a in zip(keys, key_arrays, strict=True)})
    return keys_df, X


def pane_features(df: pd.DataFrame, slide_ns: int = DEFAULT_SLIDE_NS) -> np.ndarray:
    """Raw channels `float32 [n_panes, N_PANE_CHANNELS]` of one instrument's events.

    `df` has the contract columns and optionally `pane` (= ts // slide_ns); without it,
    all rows are one pane (the UDAF case). Rows may come in any order (Flink delivers
    arrival order); output rows are in ascending pane order.
    """
    if "pane" in df.columns:
        return pane_features_by_key(df, keys=("pane",), slide_ns=slide_ns)[1]
    _check_columns(df, ())
    sdf = df.iloc[np.argsort(df["ts"].to_numpy(), kind="stable")]
    cols = _columns(sdf)
    return _pane_vector(*(cols[c] for c in REQUIRED_COLUMNS), slide_ns=slide_ns)[None].astype(np.float32)


EMPTY_PANE: np.ndarray = _pane_vector(
    *(np.array([], dtype=t) for t in (np.int64, object, object, object, float, np.int64, object, float, float, bool)),
    slide_ns=DEFAULT_SLIDE_NS,
).astype(np.float32)
EMPTY_PANE.flags.writeable = False


def empty_pane(slide_ns: int = DEFAULT_SLIDE_NS) -> np.ndarray:
    """Pane vector of a pane without events (`EMPTY_PANE` for the default slide)."""
    v = np.zeros(N_PANE_CHANNELS, dtype=np.float32)
    v[_P["gap_median_ms"]] = np.log1p(slide_ns / 1e6)
    return v


# ---- window assembly ------------------------------------------------------------------


def _masked_mean(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of x over the T axis where mask is set; [N, T] -> [N, 1] (0 if none)."""
    cnt = mask.sum(axis=1, keepdims=True)
    return np.where(cnt > 0, (x * mask).sum(axis=1, keepdims=True) / np.maximum(cnt, 1), 0.0)


def _assemble(raw: np.ndarray, end_panes: np.ndarray, slide_ns: int) -> np.ndarray:
    """raw pane rows [N, T, F_raw] (dense, oldest first) -> model input [N, T, F] float32."""
    n, t, _ = raw.shape
    r = raw.astype(np.float64)
    out = np.zeros((n, t, N_CHANNELS), dtype=np.float64)
    out[:, :, _PANE_TO_CHANNEL] = r

    traded = r[:, :, _P["log_fill"]] > 0
    lv, lmean, lmax = (r[:, :, _P[c]] for c in ("log_volume", "log_mean_fill", "log_max_fill"))
    out[:, :, _C["volume_vs_window"]] = np.where(traded, lv - _masked_mean(lv, traded), 0.0)
    out[:, :, _C["fill_size_vs_window"]] = np.where(traded, lmax - _masked_mean(lmean, traded), 0.0)
    le = r[:, :, _P["log_events"]]
    active = le > 0
    out[:, :, _C["activity_vs_window"]] = np.where(active, le - _masked_mean(le, active), 0.0)

    # Pane start times: window ending at pane p covers panes p-T+1 .. p.
    panes = end_panes.astype(np.int64)[:, None] + np.arange(-t + 1, 1, dtype=np.int64)[None, :]
    tod_s = ((panes * slide_ns) // 1_000_000_000 % 86_400).astype(np.float64)
    angle = 2 * np.pi * tod_s / 86_400
    out[:, :, _C["tod_sin"]] = np.sin(angle)
    out[:, :, _C["tod_cos"]] = np.cos(angle)
    out[:, :, _C["to_close_h"]] = np.clip((SESSION_CLOSE_UTC_S - tod_s) / 3600, *TO_CLOSE_CLIP_H)
    return out.astype(np.float32)


def window_tensor(
    panes: Mapping[int, np.ndarray], end_pane: int, n_buckets: int, slide_ns: int = DEFAULT_SLIDE_NS
) -> np.ndarray:
    """Model input `float32 [n_buckets, N_CHANNELS]` for the window ending at `end_pane`.

    `panes` maps pane index -> raw pane vector (from `pane_features`) for one
    instrument; panes outside `end_pane - n_buckets + 1 .. end_pane` are ignored and
    missing ones count as empty (no events).
    """
    empty = empty_pane(slide_ns)
    raw = np.empty((1, n_buckets, N_PANE_CHANNELS), dtype=np.float32)
    for i, p in enumerate(range(end_pane - n_buckets + 1, end_pane + 1)):
        v = panes.get(p)
        if v is None:
            raw[0, i] = empty
        else:
            v = np.asarray(v, dtype=np.float32).reshape(-1)
            if v.shape != (N_PANE_CHANNELS,):
                raise ValueError(
                    f"pane {p}: expected a vector of {N_PANE_CHANNELS} pane channels "
                    f"(udfs.features.PANE_CHANNELS), got shape {v.shape}"
                )
            raw[0, i] = v
    return _assemble(raw, np.array([end_pane]), slide_ns)[0]


def dense_pane_grid(
    panes: np.ndarray, X: np.ndarray, slide_ns: int = DEFAULT_SLIDE_NS, pad: int = 0
) -> tuple[int, np.ndarray]:
    """One instrument's pane rows -> (first pane, dense [P, F_raw]) with empty panes filled.

    `pad` empty panes are added before the first pane, so the first windows see the same
    "no history" that a fresh stream sees.
    """
    first = int(panes.min()) - pad
    grid = np.tile(empty_pane(slide_ns), (int(panes.max()) - first + 1, 1))
    grid[panes.astype(np.int64) - first] = X
    return first, grid


def windows_from_panes(
    panes: np.ndarray, X: np.ndarray, n_buckets: int, slide_ns: int = DEFAULT_SLIDE_NS, chunk: int = 8192
) -> tuple[np.ndarray, np.ndarray]:
    """All windows of ONE instrument that end at a pane with events.

    `panes` [P] pane indices (unique), `X` [P, F_raw] their raw rows. Returns
    (end_panes [P] ascending, windows float32 [P, T, F]); equal to calling
    `window_tensor` at each end pane (same `_assemble` kernel; a test checks).
    """
    order = np.argsort(panes)
    panes, X = np.asarray(panes, dtype=np.int64)[order], X[order]
    first, grid = dense_pane_grid(panes, X, slide_ns, pad=n_buckets - 1)
    view = np.lib.stride_tricks.sliding_window_view(grid, n_buckets, axis=0)  # [P', F_raw, T]
    idx = panes - first - (n_buckets - 1)  # window starting row for each end pane
    out = np.empty((len(panes), n_buckets, N_CHANNELS), dtype=np.float32)
    for s in range(0, len(panes), chunk):
        raw = view[idx[s : s + chunk]].transpose(0, 2, 1)
        out[s : s + chunk] = _assemble(raw, panes[s : s + chunk], slide_ns)
    return panes, out
