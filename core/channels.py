"""The model's channel list, defined once: names, groups, units, plain descriptions, and
which are computed per pane.

The model input of one window is `float32 [T, N_CHANNELS]` in the order of `CHANNELS`.
Pane channels are computed from a pane's events (core/features.py); the others when a
window is assembled (window-relative levels, time of day, `pane_active`). The level
channels named in core/pane_normals.RELATIVE_CHANNELS enter the model as deviations from
the instrument's own normal (robust z), not as the raw values described below.

`CHANNEL_UNITS` and `CHANNEL_DESCRIPTIONS` are what an analyst reads: alerts name their
top channels by these, and docs/CHANNELS.md is generated from this table
(`python scripts/gen_docs.py`; a unit test fails when the file is out of date).
"""

from __future__ import annotations

# ---- channel list --------------------------------------------------------------------
# (name, group, computed per pane?, unit, plain description): window channels are added
# by `window_tensor`. The unit is the pane value's; "log1p(x)" = ln(1 + x).
_CHANNEL_SPEC: tuple[tuple[str, str, bool, str, str], ...] = (
    # price
    ("ret_mid_bps", "price", True, "bps",
     "log return of the NBBO midpoint over the pane"),
    ("fill_dev_hs", "price", True, "half-spreads",
     "size-weighted distance of fill prices from the midpoint"),
    ("fill_outside_hs", "price", True, "half-spreads",
     "how far the worst fill printed outside the NBBO (0 when all inside)"),
    ("mid_vol_bps", "price", True, "bps",
     "realized volatility of the midpoint within the pane"),
    ("spread_bps", "price", True, "bps of mid",
     "mean quoted NBBO spread"),
    # volume
    ("log_volume", "volume", True, "log1p(shares)",
     "shares filled"),
    ("log_mean_fill", "volume", True, "log1p(shares)",
     "mean fill size"),
    ("log_max_fill", "volume", True, "log1p(shares)",
     "largest fill size"),
    ("block_count", "volume", True, "log1p(count)",
     "block prints (notional >= BLOCK_NOTIONAL, $200,000)"),
    ("hidden_share", "volume", True, "fraction 0..1",
     "share of filled shares that hit hidden liquidity"),
    ("volume_vs_window", "volume", False, "log ratio",
     "shares filled vs the window's average traded pane"),
    ("fill_size_vs_window", "volume", False, "log ratio",
     "largest fill vs the window's mean fill size"),
    # time
    ("log_events", "time", True, "log1p(count)",
     "order events (new, cancel, fill)"),
    ("gap_median_ms", "time", True, "log1p(ms)",
     "median time between events (the slide length when under 2 events)"),
    ("burst_100ms", "time", True, "log1p(count)",
     "most events inside one 100 ms slot"),
    ("activity_vs_window", "time", False, "log ratio",
     "events vs the window's average active pane"),
    ("tod_sin", "time", False, "-1..1",
     "time of day of the pane start, New York (DST included), sine"),
    ("tod_cos", "time", False, "-1..1",
     "time of day of the pane start, New York, cosine"),
    ("to_close_h", "time", False, "hours",
     "time from pane start to the 16:00 New York close, clipped to -0.5..1"),
    ("pane_active", "time", False, "0 or 1",
     "1 if the pane had events, 0 if empty"),
    # order flow
    ("log_new", "flow", True, "log1p(count)",
     "new orders"),
    ("log_cancel", "flow", True, "log1p(count)",
     "cancels"),
    ("log_fill", "flow", True, "log1p(count)",
     "fills"),
    ("cancel_fill_ratio", "flow", True, "log ratio",
     "cancels vs fills: ln((cancels + 1) / (fills + 1))"),
    ("new_imbalance", "flow", True, "-1..1",
     "buy minus sell shares of new orders, over their total"),
    ("fill_imbalance", "flow", True, "-1..1",
     "buy minus sell filled shares (by order side), over their total"),
    # participant
    ("self_cross_share", "participant", True, "fraction 0..1",
     "share of filled shares where buyer and seller are the same participant or firm"),
    ("top_cancel_ratio", "participant", True, "fraction 0..1",
     "cancels among the events of the most active participant"),
    ("top_volume_share", "participant", True, "fraction 0..1",
     "that participant's share of traded shares (both sides)"),
    ("participant_hhi", "participant", True, "0..1",
     "concentration of events over participants (Herfindahl index; 1 = one participant)"),
    ("log_participants", "participant", True, "log1p(count)",
     "distinct participants"),
    ("front_run_ratio", "participant", True, "fraction 0..1",
     "most net same-direction shares a third party traded just before the pane's large "
     "fill, over that fill's size"),
    # one participant's behaviour: the pane's most suspicious participant for each
    ("lead_layered_shares", "participant", True, "log1p(shares)",
     "most shares one participant placed and cancelled on one side while trading the other"),
    ("lead_probes", "participant", True, "log1p(count)",
     "most small orders (<= 100 shares) one participant placed and cancelled"),
    ("lead_net_fill_share", "participant", True, "fraction 0..1",
     "largest one-directional (net bought or sold) share of the pane's volume of a "
     "participant with 3 or more fills"),
)  # fmt: skip

CHANNELS: tuple[str, ...] = tuple(spec[0] for spec in _CHANNEL_SPEC)
N_CHANNELS = len(CHANNELS)
CHANNEL_GROUPS: dict[str, str] = {spec[0]: spec[1] for spec in _CHANNEL_SPEC}
PANE_CHANNELS: tuple[str, ...] = tuple(spec[0] for spec in _CHANNEL_SPEC if spec[2])
N_PANE_CHANNELS = len(PANE_CHANNELS)
CHANNEL_UNITS: dict[str, str] = {spec[0]: spec[3] for spec in _CHANNEL_SPEC}
CHANNEL_DESCRIPTIONS: dict[str, str] = {spec[0]: spec[4] for spec in _CHANNEL_SPEC}
