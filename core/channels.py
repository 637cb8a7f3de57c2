"""The model's channel list, defined once: names, groups, and which are computed per pane.

The model input of one window is `float32 [T, N_CHANNELS]` in the order of `CHANNELS`.
Pane channels are computed from a pane's events (core/features.py); the others when a
window is assembled (window-relative levels, time of day, `pane_active`). The level
channels named in core/pane_normals.RELATIVE_CHANNELS enter the model as deviations from
the instrument's own normal (robust z), not as the raw values described below.
"""

from __future__ import annotations

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
    ("tod_sin", "time", False),  # time of day of the pane start (New York, DST included), sine
    ("tod_cos", "time", False),  # ... cosine
    ("to_close_h", "time", False),  # hours from pane start to the 16:00 New York close, clipped
    ("pane_active", "time", False),  # 1 if the pane had events, 0 if empty
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
