"""Window features shared by the Flink job and by training (numpy/pandas only).

Two stages, both pure:

1. `pane_features(df)`: the events of one instrument in one pane (= one `slide` of
   event time, pane index `ts // slide_ns`) -> one row of `N_PANE_CHANNELS` raw
   channels. The Flink pandas UDAF calls it on one (instrument, pane) group; training
   calls `pane_features_by_key` on everything at once. Both run the same vectorized
   kernel `_pane_matrix` (per-group reductions only), so a pane's numbers are identical
   whichever call computed them (a test checks, and checks the kernel against a plain
   per-pane loop implementation).
2. `window_tensor(panes, end_pane, ...)`: the last T pane rows of an instrument ->
   the model input `float32 [T, N_CHANNELS]`. Missing panes become `EMPTY_PANE`, and
   window-relative channels are added (volume / fill size / activity against the
   window's own level, time of day, time to the session close). Training uses
   `windows_from_panes`, which runs the same `assemble_raw` kernel over many windows.

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

import datetime as dt
import functools
import zoneinfo
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from core.channels import (  # noqa: F401  (re-exported: the feature module's public names)
    CHANNEL_GROUPS,
    CHANNELS,
    N_CHANNELS,
    N_PANE_CHANNELS,
    PANE_CHANNELS,
)
from core.config import DEFAULT_WINDOW
from core.pane_normals import (
    RELATIVE_CHANNELS,
    PaneNormal,
    normals_for_windows,
    pane_surprise,
    relative_z,
)

# A window's normal: mean [N, R], scale [N, R], ready [N] (core/pane_normals.py)
Normals = tuple[np.ndarray, np.ndarray, np.ndarray]

# Where each pane channel lands in the model input.
_PANE_TO_CHANNEL = np.array([CHANNELS.index(c) for c in PANE_CHANNELS])
_P = {name: i for i, name in enumerate(PANE_CHANNELS)}
_C = {name: i for i, name in enumerate(CHANNELS)}
_REL_TO_CHANNEL = np.array([CHANNELS.index(c) for c in RELATIVE_CHANNELS])

# ---- constants of the definitions ------------------------------------------------------
DEFAULT_SLIDE_NS = DEFAULT_WINDOW.slide_ns  # pane length if the caller gives none
BLOCK_NOTIONAL = 200_000.0  # a print of at least this notional (price * qty) is a block
LARGE_FILL_RATIO = 4.0  # a fill is "large" if >= this x the mean size of the pane's other fills
BURST_SLOT_NS = 100_000_000  # slot length of the burst count
EXCHANGE_TZ = "America/New_York"  # the clock of the time channels (US equity sessions)
SESSION_CLOSE_LOCAL_S = 16 * 3600  # session close, seconds after local midnight (16:00 New York)
TO_CLOSE_CLIP_H = (-0.5, 1.0)  # to_close_h is clipped to this range, hours: the close matters in its last hour, and a model trained on sessions' last hour then sees a whole day as it saw that hour's start
PROBE_MAX_QTY = 100  # an order of at most this many shares, placed and cancelled, may be a probe
RUN_MIN_FILLS = 3  # fills of one participant before its net direction counts (lead_net_fill_share)
FIRM_SEPARATORS = "-./:"  # a participant id "FIRM-desk" belongs to firm "FIRM"
# Columns `pane_features` reads (contract names; `pane` and `instrument` only for grouping).
REQUIRED_COLUMNS = ("ts", "event", "participant", "side", "price", "qty", "contra", "bid", "ask", "hidden")


def firm_of(participant: str) -> str:
    """Firm of a participant id: the text before the first separator ("F07-desk2" -> "F07")."""
    for i, ch in enumerate(participant):
        if ch in FIRM_SEPARATORS:
            return participant[:i]
    return participant


def _group_max(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Max of each contiguous group (groups start at `starts`, none empty)."""
    return np.maximum.reduceat(values, starts) if len(values) else np.zeros(0)


def _pane_matrix(c: dict[str, np.ndarray], g: np.ndarray, starts: np.ndarray, slide_ns: int) -> np.ndarray:
    """Raw channels of G panes at once: rows sorted by (pane group g, ts); float64 [G, F_raw].

    Everything is a per-group reduction (bincount / reduceat over contiguous groups), so a
    group's numbers do not depend on which other groups are in the call.
    """
    G, n = len(starts), len(g)
    out = np.zeros((G, N_PANE_CHANNELS), dtype=np.float64)
    ends = np.append(starts[1:], n)
    cnt = (ends - starts).astype(np.float64)

    def total(w: np.ndarray) -> np.ndarray:
        return np.bincount(g, weights=w.astype(np.float64), minlength=G)

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.divide(num, den, out=np.zeros(G), where=den > 0)

    ts, qty = c["ts"].astype(np.int64), c["qty"].astype(np.float64)
    bid, ask, price = (c[k].astype(np.float64) for k in ("bid", "ask", "price"))
    event = c["event"]
    is_new, is_cancel, is_fill = event == "new", event == "cancel", event == "fill"
    buy = c["side"] == "B"
    sign = np.where(buy, 1.0, -1.0)
    mid = (bid + ask) / 2.0
    half = np.maximum((ask - bid) / 2.0, mid * 1e-6)  # a locked NBBO must not divide by zero
    same_group = g[1:] == g[:-1]  # consecutive rows of one pane

    # price
    out[:, _P["ret_mid_bps"]] = np.log(mid[ends - 1] / mid[starts]) * 1e4
    dlog = np.diff(np.log(mid))
    out[:, _P["mid_vol_bps"]] = np.sqrt(np.bincount(g[1:], weights=np.where(same_group, dlog**2, 0.0),
                                                    minlength=G)) * 1e4
    out[:, _P["spread_bps"]] = total((ask - bid) / mid) / cnt * 1e4
    fq = np.where(is_fill, qty, 0.0)
    vol, n_fill = total(fq), total(is_fill)
    out[:, _P["fill_dev_hs"]] = ratio(total(np.abs(price - mid) / half * fq), vol)
    outside = np.where(is_fill, np.maximum(np.maximum(price - ask, bid - price), 0.0) / half, 0.0)
    out[:, _P["fill_outside_hs"]] = _group_max(outside, starts)
    # volume
    out[:, _P["log_volume"]] = np.log1p(vol)
    out[:, _P["log_mean_fill"]] = np.log1p(ratio(vol, n_fill))
    out[:, _P["log_max_fill"]] = np.log1p(_group_max(fq, starts))
    out[:, _P["block_count"]] = np.log1p(total(is_fill & (price * qty >= BLOCK_NOTIONAL)))
    out[:, _P["hidden_share"]] = ratio(total(fq * c["hidden"].astype(bool)), vol)
    out[:, _P["fill_imbalance"]] = ratio(total(fq * sign), vol)

    # time
    out[:, _P["log_events"]] = np.log1p(cnt)
    out[:, _P["gap_median_ms"]] = np.log1p(_group_median_gap(ts, g, same_group, G, slide_ns) / 1e6)
    slot = ts // BURST_SLOT_NS
    run_start = np.ones(n, dtype=bool)
    run_start[1:] = ~same_group | (slot[1:] != slot[:-1])
    run_id = np.cumsum(run_start) - 1
    run_len = np.bincount(run_id)
    first_run = run_id[starts]
    out[:, _P["burst_100ms"]] = np.log1p(np.maximum.reduceat(run_len, first_run))

    # order flow
    n_new, n_cancel = total(is_new), total(is_cancel)
    out[:, _P["log_new"]] = np.log1p(n_new)
    out[:, _P["log_cancel"]] = np.log1p(n_cancel)
    out[:, _P["log_fill"]] = np.log1p(n_fill)
    out[:, _P["cancel_fill_ratio"]] = np.log((n_cancel + 1) / (n_fill + 1))
    nq = np.where(is_new, qty, 0.0)
    out[:, _P["new_imbalance"]] = ratio(total(nq * sign), total(nq))

    _participant_matrix(out, c, g, starts, (is_new, is_cancel, is_fill, buy), qty, fq, sign, vol, cnt)
    return out


def _group_median_gap(ts: np.ndarray, g: np.ndarray, same_group: np.ndarray, G: int, slide_ns: int) -> np.ndarray:
    """Median inter-arrival (ns) per group; the slide length where a group has < 2 events."""
    gaps = np.diff(ts)[same_group].astype(np.float64)
    gg = g[1:][same_group]
    med = np.full(G, float(slide_ns))
    if len(gaps):
        order = np.lexsort((gaps, gg))
        s, sg = gaps[order], gg[order]
        m = np.bincount(sg, minlength=G)
        off = np.concatenate([[0], np.cumsum(m)[:-1]])
        has = m > 0
        lo, hi = off[has] + (m[has] - 1) // 2, off[has] + m[has] // 2
        med[has] = (s[lo] + s[hi]) / 2.0
    return med


def _participant_matrix(out: np.ndarray, c: dict[str, np.ndarray], g: np.ndarray, starts: np.ndarray,
                        masks: tuple[np.ndarray, ...], qty: np.ndarray, fq: np.ndarray, sign: np.ndarray,
                        vol: np.ndarray, cnt: np.ndarray) -> None:
    """Participant-level channels of G panes (written into `out`); `masks` = the rows'
    (is_new, is_cancel, is_fill, buy)."""
    is_cancel, is_fill = masks[1], masks[2]
    G = len(starts)
    contra = np.where(pd.isna(c["contra"]), "", c["contra"])  # no contra = "" (never a participant)
    # One sorted code space for participants and contras: ties for "most active" go to the
    # smallest id, whatever else is in the call. (pd.factorize hashes the Python strings:
    # np.unique on them cost ~1.3 us per event, a sixth of the whole pane UDAF.)
    inv, names = pd.factorize(np.concatenate([c["participant"], contra]), sort=True)
    n = len(g)
    code_p, code_c = inv[:n], inv[n:]
    firm = np.unique([firm_of(str(x)) for x in names], return_inverse=True)[1]
    P = len(names)

    pair = g.astype(np.int64) * P + code_p
    upair, pinv, pcount = np.unique(pair, return_inverse=True, return_counts=True)
    pg = upair // P
    out[:, _P["participant_hhi"]] = np.bincount(pg, weights=(pcount / cnt[pg]) ** 2, minlength=G)
    out[:, _P["log_participants"]] = np.log1p(np.bincount(pg, minlength=G))
    # top participant per group: most events, then smallest code (pairs are sorted by g, code)
    order = np.lexsort((upair % P, -pcount, pg))
    first = np.ones(len(order), dtype=bool)
    first[1:] = pg[order][1:] != pg[order][:-1]
    top_pair = order[first]  # one per group, in group order
    top_code = (upair % P)[top_pair]
    pcancel = np.bincount(pinv, weights=is_cancel.astype(np.float64), minlength=len(upair))
    out[:, _P["top_cancel_ratio"]] = pcancel[top_pair] / pcount[top_pair]

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.divide(num, den, out=np.zeros(G), where=den > 0)

    same = is_fill & ((code_p == code_c) | (firm[code_p] == firm[code_c]))
    out[:, _P["self_cross_share"]] = ratio(np.bincount(g, weights=np.where(same, fq, 0.0), minlength=G), vol)
    tc = top_code[g]
    top_vol = np.where(code_p == tc, fq, 0.0) + np.where(code_c == tc, fq, 0.0)
    out[:, _P["top_volume_share"]] = ratio(np.bincount(g, weights=top_vol, minlength=G), 2 * vol)
    out[:, _P["front_run_ratio"]] = _front_run(g[is_fill], fq[is_fill], sign[is_fill], code_p[is_fill],
                                               code_c[is_fill], G, P)
    _lead_behaviour(out, g, G, P, code_p, code_c, is_fill & (contra != ""), masks, qty, vol)


def _lead_behaviour(out: np.ndarray, g: np.ndarray, G: int, P: int, code_p: np.ndarray, code_c: np.ndarray,
                    fill_c: np.ndarray, masks: tuple[np.ndarray, ...], q: np.ndarray, vol: np.ndarray) -> None:  # fmt: skip
    """The lead_* channels: per (pane, participant) what it did, as owner of orders and on
    either leg of a fill; each channel takes the pane's most suspicious participant."""
    is_new, is_cancel, is_fill, buy = masks
    n = len(g)
    key = np.concatenate([g, g[fill_c]]).astype(np.int64) * P + np.concatenate([code_p, code_c[fill_c]])
    ukey, inv = np.unique(key, return_inverse=True)
    U, own, con = len(ukey), inv[:n], inv[n:]

    def per_pair(idx: np.ndarray, w: np.ndarray) -> np.ndarray:
        return np.bincount(idx, weights=w.astype(np.float64), minlength=U)

    def pane_max(v: np.ndarray) -> np.ndarray:
        best = np.zeros(G)
        np.maximum.at(best, ukey // P, v)
        return best

    placed_b, placed_s = per_pair(own, np.where(is_new & buy, q, 0.0)), per_pair(own, np.where(is_new & ~buy, q, 0.0))
    pulled_b, pulled_s = (per_pair(own, np.where(is_cancel & buy, q, 0.0)),
                          per_pair(own, np.where(is_cancel & ~buy, q, 0.0)))  # fmt: skip
    fq, cq, cbuy = np.where(is_fill, q, 0.0), q[fill_c], buy[fill_c]  # the contra leg takes the other side
    bought = per_pair(own, np.where(buy, fq, 0.0)) + per_pair(con, np.where(cbuy, 0.0, cq))
    sold = per_pair(own, np.where(buy, 0.0, fq)) + per_pair(con, np.where(cbuy, cq, 0.0))
    fills = per_pair(own, is_fill) + per_pair(con, np.ones(len(cq)))
    layered = np.maximum(np.where(sold > 0, np.minimum(placed_b, pulled_b), 0.0),
                         np.where(bought > 0, np.minimum(placed_s, pulled_s), 0.0))  # fmt: skip
    probes = np.minimum(per_pair(own, is_new & (q <= PROBE_MAX_QTY)), per_pair(own, is_cancel))
    net = np.where(fills >= RUN_MIN_FILLS, np.abs(bought - sold), 0.0)
    out[:, _P["lead_layered_shares"]] = np.log1p(pane_max(layered))
    out[:, _P["lead_probes"]] = np.log1p(pane_max(probes))
    out[:, _P["lead_net_fill_share"]] = np.divide(pane_max(net), vol, out=np.zeros(G), where=vol > 0)


def _front_run(g: np.ndarray, q: np.ndarray, sign: np.ndarray, cp: np.ndarray, cc: np.ndarray,
               G: int, P: int) -> np.ndarray:
    """front_run_ratio per group from its fills (rows sorted by g, ts).

    The group's largest fill (first if tied) is "large" if it is not the first fill and
    >= LARGE_FILL_RATIO x the mean of the other fills. Each third party's net shares in the
    large fill's direction over the earlier fills (owner leg +q*sign, contra leg -q*sign),
    at most 1x the large fill, is the ratio's numerator; the largest one counts.
    """
    res = np.zeros(G)
    if len(g) < 2:
        return res
    fstart = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    nf = np.diff(np.r_[fstart, len(g)])
    fg = g[fstart]  # group of each fill run
    run = np.repeat(np.arange(len(fstart)), nf)
    pos = np.arange(len(g)) - fstart[run]  # rank of the fill inside its group
    gmax = np.maximum.reduceat(q, fstart)
    big_pos = np.minimum.reduceat(np.where(q == gmax[run], pos, len(g)), fstart)
    vol = np.add.reduceat(q, fstart)
    others_mean = np.divide(vol - gmax, nf - 1, out=np.full(len(fstart), np.inf), where=nf > 1)
    large = (nf >= 2) & (big_pos > 0) & (gmax >= LARGE_FILL_RATIO * others_mean)
    big_idx = fstart + big_pos
    ahead = large[run] & (pos < big_pos[run])
    if not ahead.any():
        return res
    r = run[ahead]
    bi = big_idx[r]
    direction = sign[bi]
    legs_code = np.concatenate([cp[ahead], cc[ahead]])
    legs_val = np.concatenate([q[ahead] * sign[ahead] * direction, -q[ahead] * sign[ahead] * direction])
    legs_run = np.concatenate([r, r])
    parties = np.concatenate([bi, bi])
    keep = (legs_code != cp[parties]) & (legs_code != cc[parties])
    if not keep.any():
        return res
    key = legs_run[keep].astype(np.int64) * P + legs_code[keep]
    ukey, kinv = np.unique(key, return_inverse=True)
    net = np.bincount(kinv, weights=legs_val[keep])
    krun = ukey // P
    best = np.full(len(fstart), -np.inf)
    np.maximum.at(best, krun, net)
    has = np.isfinite(best)
    res[fg[has]] = np.clip(best[has] / gmax[has], 0.0, 1.0)
    return res


def _check_columns(df: pd.DataFrame, extra: Sequence[str]) -> None:
    missing = [c for c in (*REQUIRED_COLUMNS, *extra) if c not in df.columns]
    if missing:
        raise ValueError(
            f"pane features need the event-contract columns {missing} (see core/schemas.py "
            f"EVENT_SCHEMA); got columns {list(df.columns)}"
        )


def _columns(df: pd.DataFrame, order: np.ndarray) -> dict[str, np.ndarray]:
    """The kernel's columns as numpy arrays, rows taken in `order` (cheaper than df.iloc)."""
    return {c: df[c].to_numpy()[order] for c in REQUIRED_COLUMNS}


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
    key_arrays = [df[k].to_numpy()[order] for k in keys]
    change = np.zeros(len(df), dtype=bool)
    change[0] = True
    for a in key_arrays:
        change[1:] |= a[1:] != a[:-1]
    starts = np.flatnonzero(change)
    g = np.cumsum(change) - 1
    X = _pane_matrix(_columns(df, order), g, starts, slide_ns).astype(np.float32)
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
    if len(df) == 0:
        return empty_pane(slide_ns)[None]
    order = np.argsort(df["ts"].to_numpy(), kind="stable")
    g = np.zeros(len(df), dtype=np.int64)
    return _pane_matrix(_columns(df, order), g, np.array([0]), slide_ns).astype(np.float32)


def empty_pane(slide_ns: int = DEFAULT_SLIDE_NS) -> np.ndarray:
    """Pane vector of a pane without events: zeros, but the gap is one slide long."""
    v = np.zeros(N_PANE_CHANNELS, dtype=np.float32)
    v[_P["gap_median_ms"]] = np.log1p(slide_ns / 1e6)
    return v


EMPTY_PANE: np.ndarray = empty_pane(DEFAULT_SLIDE_NS)  # for the default slide
EMPTY_PANE.flags.writeable = False


# ---- window assembly ------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _utc_offset_s(utc_day: int) -> int:
    """EXCHANGE_TZ's UTC offset on a UTC day, taken at 12:00 UTC (after any DST switch,
    which happens at 02:00 local, and before the session)."""
    noon = dt.datetime.fromtimestamp(utc_day * 86_400 + 43_200, dt.UTC)
    return int(noon.astimezone(zoneinfo.ZoneInfo(EXCHANGE_TZ)).utcoffset().total_seconds())


def local_time_of_day_s(epoch_s: np.ndarray) -> np.ndarray:
    """Seconds after local midnight in EXCHANGE_TZ (daylight saving included).

    >>> int(local_time_of_day_s(np.array([1340308800]))[0]) // 3600  # 2012-06-21 20:00 UTC (EDT)
    16
    >>> int(local_time_of_day_s(np.array([1772485200]))[0]) // 3600  # 2026-03-02 21:00 UTC (EST)
    16
    """
    epoch_s = np.asarray(epoch_s, dtype=np.int64)
    days, inverse = np.unique(epoch_s // 86_400, return_inverse=True)
    offsets = np.array([_utc_offset_s(int(d)) for d in days], dtype=np.int64)
    return (epoch_s + offsets[inverse.reshape(epoch_s.shape)]) % 86_400


def _masked_mean(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of x over the T axis where mask is set; [N, T] -> [N, 1] (0 if none)."""
    cnt = mask.sum(axis=1, keepdims=True)
    return np.where(cnt > 0, (x * mask).sum(axis=1, keepdims=True) / np.maximum(cnt, 1), 0.0)


def no_normals(n: int) -> Normals:
    """The normal of instruments that learned nothing yet (relative channels read 0)."""
    r = len(RELATIVE_CHANNELS)
    return np.zeros((n, r)), np.ones((n, r)), np.zeros(n, dtype=bool)


def assemble_raw(raw: np.ndarray, end_panes: np.ndarray, slide_ns: int, normals: Normals | None = None) -> np.ndarray:
    """raw pane rows [N, T, F_raw] (dense, oldest first, empty panes = `empty_pane`) of the
    windows ending at `end_panes` [N], and the instrument normal each window is judged
    against (`normals`; None = none learned yet) -> model input [N, T, F] float32. The
    one kernel of training (`windows_from_panes`) and of the streaming job
    (udfs/assembler.py)."""
    n, t, _ = raw.shape
    r = raw.astype(np.float64)
    out = np.zeros((n, t, N_CHANNELS), dtype=np.float64)
    out[:, :, _PANE_TO_CHANNEL] = r
    # levels as deviations from the instrument's own normal (core/pane_normals.py)
    out[:, :, _REL_TO_CHANNEL] = relative_z(r, *(normals if normals is not None else no_normals(n)))
    out[:, :, _C["pane_active"]] = r[:, :, _P["log_events"]] > 0

    traded = r[:, :, _P["log_fill"]] > 0
    lv, lmean, lmax = (r[:, :, _P[c]] for c in ("log_volume", "log_mean_fill", "log_max_fill"))
    out[:, :, _C["volume_vs_window"]] = np.where(traded, lv - _masked_mean(lv, traded), 0.0)
    out[:, :, _C["fill_size_vs_window"]] = np.where(traded, lmax - _masked_mean(lmean, traded), 0.0)
    le = r[:, :, _P["log_events"]]
    active = le > 0
    out[:, :, _C["activity_vs_window"]] = np.where(active, le - _masked_mean(le, active), 0.0)

    # Pane start times: window ending at pane p covers panes p-T+1 .. p.
    panes = end_panes.astype(np.int64)[:, None] + np.arange(-t + 1, 1, dtype=np.int64)[None, :]
    tod_s = local_time_of_day_s((panes * slide_ns) // 1_000_000_000).astype(np.float64)
    angle = 2 * np.pi * tod_s / 86_400
    out[:, :, _C["tod_sin"]] = np.sin(angle)
    out[:, :, _C["tod_cos"]] = np.cos(angle)
    out[:, :, _C["to_close_h"]] = np.clip((SESSION_CLOSE_LOCAL_S - tod_s) / 3600, *TO_CLOSE_CLIP_H)
    return out.astype(np.float32)


def window_pane_surprise(windows: np.ndarray) -> np.ndarray:
    """Model inputs [N, T, F] -> each pane's instrument-relative surprise [N, T]
    (core/pane_normals.pane_surprise of its relative channels; 0 for empty panes)."""
    return pane_surprise(np.asarray(windows, dtype=np.float64)[:, :, _REL_TO_CHANNEL])


def window_tensor(
    panes: Mapping[int, np.ndarray], end_pane: int, n_buckets: int, slide_ns: int = DEFAULT_SLIDE_NS,
    normal: PaneNormal | None = None,
) -> np.ndarray:  # fmt: skip
    """Model input `float32 [n_buckets, N_CHANNELS]` for the window ending at `end_pane`.

    `panes` maps pane index -> raw pane vector (from `pane_features`) for one
    instrument; panes outside `end_pane - n_buckets + 1 .. end_pane` are ignored and
    missing ones count as empty (no events). `normal`: the instrument's normal as of
    this window (None: not learned yet).
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
                    f"(core.features.PANE_CHANNELS), got shape {v.shape}"
                )
            raw[0, i] = v
    normals = None
    if normal is not None:
        mean, scale, ready = normal.snapshot()
        normals = (mean[None], scale[None], np.array([ready]))
    return assemble_raw(raw, np.array([end_pane]), slide_ns, normals)[0]


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
    `window_tensor` at each end pane with the normal the job's assembler holds then
    (same `assemble_raw` kernel and the same sequence of normal updates,
    `normals_for_windows`; a test checks against the job's assembler).
    """
    order = np.argsort(panes)
    panes, X = np.asarray(panes, dtype=np.int64)[order], X[order]
    mean, scale, ready = normals_for_windows(panes, X, n_buckets, slide_ns / 1e9)
    first, grid = dense_pane_grid(panes, X, slide_ns, pad=n_buckets - 1)
    view = np.lib.stride_tricks.sliding_window_view(grid, n_buckets, axis=0)  # [P', F_raw, T]
    idx = panes - first - (n_buckets - 1)  # window starting row for each end pane
    out = np.empty((len(panes), n_buckets, N_CHANNELS), dtype=np.float32)
    for s in range(0, len(panes), chunk):
        raw = view[idx[s : s + chunk]].transpose(0, 2, 1)
        sl = slice(s, s + chunk)
        out[sl] = assemble_raw(raw, panes[sl], slide_ns, (mean[sl], scale[sl], ready[sl]))
    return panes, out
