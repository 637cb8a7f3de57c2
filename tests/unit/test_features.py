"""Hand-computed checks of every feature channel, and serving == training equality."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from core import features as ft
from core.features import CHANNELS, PANE_CHANNELS
from core.pane_normals import RELATIVE_CHANNELS, WARMUP_PANES, PaneNormal

S = 1_000_000_000
COLS = ["ts", "event", "participant", "side", "price", "qty", "contra", "bid", "ask", "hidden"]


def frame(rows: list[tuple], instrument: str = "XYZ") -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLS)
    df["instrument"] = instrument
    df["venue"] = "DKX"
    df["order_id"] = [f"o{i}" for i in range(len(df))]
    return df


# One pane (0 .. 5 s) with every kind of event; expectations below are worked out by hand.
PANE = [
    (int(1.00 * S), "new", "F1.A1", "B", 10.00, 100, None, 9.99, 10.01, False),
    (int(1.05 * S), "new", "F2.A1", "S", 10.02, 200, None, 9.99, 10.01, False),
    (int(1.50 * S), "cancel", "F1.A1", "B", 10.00, 100, None, 10.00, 10.02, False),
    (int(2.00 * S), "fill", "F1.A2", "B", 10.01, 300, "F1.A1", 10.00, 10.02, True),  # same firm F1
    (int(3.00 * S), "fill", "F3.A1", "S", 10.05, 100, "F4.A1", 10.00, 10.02, False),  # 3 half-spreads above ask
]


def ch(x: np.ndarray, name: str) -> float:
    return float(x[PANE_CHANNELS.index(name)])


def test_channel_list_is_grouped_and_complete():
    groups = [ft.CHANNEL_GROUPS[c] for c in CHANNELS]
    order = ["price", "volume", "time", "flow", "participant"]
    assert groups == sorted(groups, key=order.index), "channels must be grouped in this order"
    assert ft.N_CHANNELS == len(CHANNELS) == len(set(CHANNELS))
    assert set(PANE_CHANNELS) < set(CHANNELS)
    assert ft.EMPTY_PANE.shape == (ft.N_PANE_CHANNELS,)


def test_each_pane_channel_by_hand():
    x = ft.pane_features(frame(PANE))
    assert x.shape == (1, ft.N_PANE_CHANNELS) and x.dtype == np.float32
    x = x[0]
    expect = {
        # mids 10.00, 10.00, 10.01, 10.01, 10.01
        "ret_mid_bps": np.log(10.01 / 10.00) * 1e4,
        "mid_vol_bps": abs(np.log(10.01 / 10.00)) * 1e4,
        "spread_bps": np.mean([0.02 / 10.00] * 2 + [0.02 / 10.01] * 3) * 1e4,
        # fill 1 at the mid (0 half-spreads), fill 2 at 10.05 vs mid 10.01, half-spread 0.01 -> 4
        "fill_dev_hs": (0 * 300 + 4 * 100) / 400,
        "fill_outside_hs": (10.05 - 10.02) / 0.01,
        "log_volume": np.log1p(400),
        "log_mean_fill": np.log1p(200),
        "log_max_fill": np.log1p(300),
        "block_count": 0.0,  # notionals 3003 and 1005 < 200k
        "hidden_share": 300 / 400,
        "log_events": np.log1p(5),
        "gap_median_ms": np.log1p((450 + 500) / 2),  # gaps 50, 450, 500, 1000 ms
        "burst_100ms": np.log1p(2),  # 1.00 s and 1.05 s share a 100 ms slot
        "log_new": np.log1p(2),
        "log_cancel": np.log1p(1),
        "log_fill": np.log1p(2),
        "cancel_fill_ratio": np.log(2 / 3),
        "new_imbalance": (100 - 200) / 300,
        "fill_imbalance": (300 - 100) / 400,
        "self_cross_share": 300 / 400,  # F1.A2 vs F1.A1
        "top_cancel_ratio": 1 / 2,  # F1.A1: 2 events, 1 cancel
        "top_volume_share": 300 / (2 * 400),  # F1.A1 only as contra of the 300 fill
        "participant_hhi": (2**2 + 1 + 1 + 1) / 5**2,
        "log_participants": np.log1p(4),
        "front_run_ratio": 0.0,  # the largest fill is the first one: nothing ahead of it
        # F1.A1 placed and pulled 100 to buy while it sold 300 (the contra of F1.A2's buy)
        "lead_layered_shares": np.log1p(100),
        "lead_probes": np.log1p(1),  # F1.A1's one small order, cancelled
        "lead_net_fill_share": 0.0,  # nobody has 3 fills
    }
    assert set(expect) == set(PANE_CHANNELS)
    for name, value in expect.items():
        assert ch(x, name) == pytest.approx(value, rel=1e-5, abs=1e-6), name


def test_one_participants_run_of_fills_in_one_direction():
    rows = [
        (1 * S, "fill", "F5.A1", "B", 10.0, 100, "F6.A1", 9.99, 10.01, False),
        (2 * S, "fill", "F7.A1", "B", 10.0, 100, "F5.A1", 9.99, 10.01, False),  # F5 sells: not one-directional
        (3 * S, "fill", "F8.A1", "S", 10.0, 100, "F9.A1", 9.99, 10.01, False),
        (4 * S, "fill", "F8.A1", "S", 10.0, 100, "F6.A1", 9.99, 10.01, False),
        (4 * S + 1, "fill", "F8.A1", "S", 10.0, 100, "F7.A1", 9.99, 10.01, False),
    ]
    # F8 sold 300 in 3 fills (net 300 of 500); F5, F6, F7 have 2 fills each: too few
    assert ch(ft.pane_features(frame(rows))[0], "lead_net_fill_share") == pytest.approx(300 / 500)


def test_front_running_ahead_of_a_large_fill():
    rows = [
        (1 * S, "fill", "F5.A1", "B", 10.0, 100, "F6.A1", 9.99, 10.01, False),
        (2 * S, "fill", "F5.A1", "B", 10.0, 200, "F7.A1", 9.99, 10.01, False),
        (3 * S, "fill", "F8.A1", "S", 10.0, 100, "F5.A1", 9.99, 10.01, False),  # F5 buys as contra
        (4 * S, "fill", "F9.A1", "B", 10.0, 5000, "F10.A1", 9.99, 10.01, False),  # 5000 >= 4 * 133
    ]
    x = ft.pane_features(frame(rows))[0]
    assert ch(x, "front_run_ratio") == pytest.approx(400 / 5000)  # F5 net +400 same direction
    assert ch(x, "block_count") == 0.0  # 5000 * $10 = 50k notional: large here, but not a block
    # a large fill that does not stand out (< 4x the others) is not "large"
    rows[3] = (4 * S, "fill", "F9.A1", "B", 10.0, 500, "F10.A1", 9.99, 10.01, False)
    assert ch(ft.pane_features(frame(rows))[0], "front_run_ratio") == 0.0


def test_block_prints_and_empty_pane():
    rows = [(1 * S, "fill", "A", "B", 50.0, 5000, "B", 49.9, 50.1, False)]  # 250k notional
    x = ft.pane_features(frame(rows))[0]
    assert ch(x, "block_count") == pytest.approx(np.log1p(1))
    empty = ft.pane_features(frame([]))
    assert np.array_equal(empty[0], ft.EMPTY_PANE)
    assert ch(ft.EMPTY_PANE, "gap_median_ms") == pytest.approx(np.log1p(5000))
    assert np.count_nonzero(ft.EMPTY_PANE) == 1


def test_arrival_order_does_not_matter():
    df = frame(PANE)
    shuffled = df.sample(frac=1.0, random_state=3)
    assert np.array_equal(ft.pane_features(df), ft.pane_features(shuffled))


def random_events(n: int, seed: int, span_s: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ev = rng.choice(["new", "cancel", "fill"], n, p=[0.5, 0.3, 0.2])
    mid = 20 + np.cumsum(rng.normal(0, 0.01, n))
    parts = np.array([f"F{i}.A{j}" for i in range(5) for j in (1, 2)])
    df = pd.DataFrame({
        "ts": rng.integers(0, span_s * S, n),
        "instrument": rng.choice(["AAA", "BBB", "CCC"], n),
        "venue": "DKX", "order_id": [f"o{i}" for i in range(n)], "event": ev,
        "participant": rng.choice(parts, n), "side": rng.choice(["B", "S"], n),
        "price": np.round(mid + rng.normal(0, 0.02, n), 2), "qty": rng.integers(1, 50, n) * 100,
        "contra": np.where(ev == "fill", rng.choice(parts, n), None),
        "bid": np.round(mid - 0.01, 2), "ask": np.round(mid + 0.01, 2), "hidden": rng.random(n) < 0.3,
    })
    df["pane"] = df["ts"] // ft.DEFAULT_SLIDE_NS
    return df


def test_per_group_call_equals_vectorized_call():
    df = random_events(3000, 0)
    keys, X = ft.pane_features_by_key(df, keys=("instrument", "pane"))
    assert len(keys) == df.groupby(["instrument", "pane"]).ngroups
    for i, (inst, pane) in enumerate(zip(keys["instrument"], keys["pane"], strict=True)):
        # the UDAF sees one group, without the pane column, in arrival order
        group = df[(df["instrument"] == inst) & (df["pane"] == pane)].drop(columns="pane")
        assert np.array_equal(ft.pane_features(group)[0], X[i]), (inst, pane)


def test_window_tensor_by_hand():
    def pane(log_fill, log_volume, log_mean, log_max, log_events):
        v = np.zeros(ft.N_PANE_CHANNELS, np.float32)
        for name, val in zip(("log_fill", "log_volume", "log_mean_fill", "log_max_fill", "log_events"),
                             (log_fill, log_volume, log_mean, log_max, log_events), strict=True):
            v[PANE_CHANNELS.index(name)] = val
        return v

    day = int(dt.datetime(2026, 3, 2, tzinfo=dt.UTC).timestamp())
    end = (day + 21 * 3600 - 60) // 5  # pane starting at 20:59:00 UTC, 1 minute before the close
    panes = {end - 2: pane(1, 2.0, 1.0, 1.5, 1.0), end: pane(1, 4.0, 2.0, 3.0, 3.0)}
    w = ft.window_tensor(panes, end_pane=end, n_buckets=3, slide_ns=5 * S)
    assert w.shape == (3, ft.N_CHANNELS) and w.dtype == np.float32
    c = {name: w[:, CHANNELS.index(name)] for name in CHANNELS}
    np.testing.assert_allclose(c["volume_vs_window"], [-1, 0, 1])  # mean of traded panes = 3
    np.testing.assert_allclose(c["fill_size_vs_window"], [1.5 - 1.5, 0, 3 - 1.5])
    np.testing.assert_allclose(c["activity_vs_window"], [-1, 0, 1])
    np.testing.assert_allclose(c["to_close_h"], [70 / 3600, 65 / 3600, 60 / 3600], rtol=1e-5)
    tod = (np.array([75530, 75535, 75540]) - 5 * 3600) * 2 * np.pi / 86400  # New York time (EST)
    np.testing.assert_allclose(c["tod_sin"], np.sin(tod), atol=1e-6)
    np.testing.assert_allclose(c["tod_cos"], np.cos(tod), atol=1e-6)
    # the missing middle pane is the empty pane: absolute channels as EMPTY_PANE, the
    # relative ones 0 (as usual), and flagged inactive
    absolute = [p for p in PANE_CHANNELS if p not in RELATIVE_CHANNELS]
    mid = w[1, [CHANNELS.index(p) for p in absolute]]
    assert np.array_equal(mid, ft.EMPTY_PANE[[PANE_CHANNELS.index(p) for p in absolute]])
    assert not w[1, [CHANNELS.index(p) for p in RELATIVE_CHANNELS]].any()
    np.testing.assert_array_equal(c["pane_active"], [1, 0, 1])
    # no normal learned yet: every relative channel reads 0
    assert not w[:, [CHANNELS.index(p) for p in RELATIVE_CHANNELS]].any()


def test_pane_normal_state_round_trips_and_refuses_other_layouts():
    n = PaneNormal.fresh()
    for v in range(30):
        n.fold(np.full(ft.N_PANE_CHANNELS, float(v)))
    back = PaneNormal.from_state(n.to_state())
    for a, b in zip(n.snapshot(), back.snapshot(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert PaneNormal.from_state(b"\0" * 24).learned == 0  # another channel list: learn afresh


def test_window_tensor_rejects_wrong_vector():
    with pytest.raises(ValueError, match="pane channels"):
        ft.window_tensor({5: np.zeros(3)}, end_pane=5, n_buckets=12)


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="contra"):
        ft.pane_features(frame(PANE).drop(columns="contra"))


def test_training_windows_equal_serving_windows():
    df = random_events(8000, 1, span_s=600)
    keys, X = ft.pane_features_by_key(df)
    for inst in ("AAA", "CCC"):
        sel = (keys["instrument"] == inst).to_numpy()
        panes, Xi = keys["pane"].to_numpy()[sel], X[sel]
        end, W = ft.windows_from_panes(panes, Xi, n_buckets=12)
        state = {int(p): Xi[i] for i, p in enumerate(panes)}  # what the keyed assembler holds
        normal, learned = PaneNormal.fresh(), 0  # ... and its normal: panes that left every window
        for k, p in enumerate(end):
            while panes[learned] <= p - 12:
                normal.fold(Xi[learned])
                learned += 1
            assert np.array_equal(ft.window_tensor(state, int(p), 12, normal=normal), W[k])
        assert learned > WARMUP_PANES  # the relative channels were live


def test_relative_channels_do_not_see_an_instruments_level():
    """An instrument whose levels all sit higher (10x the events, fills and cancels, a
    wider spread) looks the same to the model once its normal is learned."""
    df = random_events(8000, 3, span_s=600)
    keys, X = ft.pane_features_by_key(df)
    sel = (keys["instrument"] == "AAA").to_numpy()
    panes, Xi = keys["pane"].to_numpy()[sel], X[sel]
    busy = Xi.copy()
    for name in ("log_events", "log_new", "log_cancel", "log_fill", "burst_100ms", "log_volume", "spread_bps"):
        busy[:, PANE_CHANNELS.index(name)] += np.log(10) if name != "spread_bps" else 40.0
    _, W = ft.windows_from_panes(panes, Xi, n_buckets=12)
    _, Wb = ft.windows_from_panes(panes, busy, n_buckets=12)
    rel = [CHANNELS.index(c) for c in RELATIVE_CHANNELS]
    np.testing.assert_allclose(Wb[:, :, rel], W[:, :, rel], atol=1e-4)
    assert np.abs(W[:, :, rel]).max() > 1  # (and they do vary)


def test_vectorized_kernel_matches_plain_per_pane_loop():
    from tests.unit.reference_features import _pane_vector

    df = random_events(3000, 2)
    # some large fills after smaller ones, so front running is exercised too
    big = df.index[(df["event"] == "fill")][::15]
    df.loc[big, "qty"] = 40_000
    keys, X = ft.pane_features_by_key(df)
    cols = ["ts", "event", "participant", "side", "price", "qty", "contra", "bid", "ask", "hidden"]
    checked_front = 0
    for i, (inst, pane) in enumerate(zip(keys["instrument"], keys["pane"], strict=True)):
        grp = df[(df["instrument"] == inst) & (df["pane"] == pane)].sort_values("ts", kind="stable")
        want = _pane_vector(*(grp[c].to_numpy() for c in cols), slide_ns=ft.DEFAULT_SLIDE_NS)
        np.testing.assert_allclose(X[i], want.astype(np.float32), rtol=2e-6, atol=1e-5, err_msg=f"{inst} {pane}")
        checked_front += want[PANE_CHANNELS.index("front_run_ratio")] > 0
    assert checked_front > 5
