"""Window labels, the time split and normalization (training data preparation)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core import features as ft
from core.schemas import SCENARIOS
from model.windows import build_windows, fit_normalization, time_split

S = 1_000_000_000
SLIDE = 5 * S


def events(rows: list[tuple[int, str, int, str]]) -> pd.DataFrame:
    """rows: (ts, instrument, label, scenario) of simple new orders."""
    ts, inst, label, scen = zip(*rows, strict=True)
    n = len(rows)
    return pd.DataFrame({
        "ts": np.array(ts, dtype=np.int64), "instrument": inst, "venue": "DKX", "event": "new",
        "order_id": [f"o{i}" for i in range(n)], "participant": "F1.A1", "side": "B", "price": 10.0,
        "qty": 100, "contra": None, "bid": 9.99, "ask": 10.01, "hidden": False,
        "label": np.array(label, dtype=np.int8), "scenario": scen,
    })


def test_window_labels_and_majority_scenario():
    rows = [(p * SLIDE + S, "AAA", 0, "normal") for p in range(20)]
    rows += [(3 * SLIDE + 2 * S, "AAA", 1, "spoofing_layering")]
    rows += [(4 * SLIDE + 2 * S, "AAA", 1, "wash_trade"), (4 * SLIDE + 3 * S, "AAA", 1, "wash_trade")]
    rows += [(2 * SLIDE, "BBB", 0, "normal")]
    ws = build_windows(events(rows), n_buckets=3, slide_ns=SLIDE)
    aaa = ws.instrument == "AAA"
    end, y, scen = ws.end_pane[aaa], ws.y[aaa], ws.scenario[aaa]
    assert list(end) == list(range(20))  # one window per pane with events
    # windows ending at 3..6 contain pane 3 or 4 (T = 3)
    assert list(np.flatnonzero(y)) == [3, 4, 5, 6]
    wash, spoof = SCENARIOS.index("wash_trade"), SCENARIOS.index("spoofing_layering")
    assert scen[3] == spoof  # only the spoofing event
    assert scen[4] == wash and scen[5] == wash and scen[6] == wash  # 2 wash events beat 1 spoofing
    assert (scen[y == 0] == 0).all()
    assert ws.x.shape == (21, 3, ft.N_CHANNELS)
    # the BBB window has no history: its first two buckets are empty panes
    b = ws.x[ws.instrument == "BBB"][0]
    absolute = [c for c in ft.PANE_CHANNELS if c not in ft.RELATIVE_CHANNELS]
    pane_cols = [ft.CHANNELS.index(c) for c in absolute]
    assert np.array_equal(b[0, pane_cols], ft.EMPTY_PANE[[ft.PANE_CHANNELS.index(c) for c in absolute]])
    assert not b[0, [ft.CHANNELS.index(c) for c in ft.RELATIVE_CHANNELS]].any()


def test_time_split_has_no_overlapping_windows():
    end = np.arange(1000)
    sp = time_split(end, n_buckets=12, val_frac=0.2, test_frac=0.2)
    tr, va, te = end[sp.train], end[sp.val], end[sp.test]
    # covered panes [e - 11, e] must not intersect across parts
    assert tr.max() < va.min() - 11 and va.max() < te.min() - 11
    assert len(tr) > 500 and len(va) > 150 and len(te) > 150
    with pytest.raises(ValueError, match="empty part"):
        time_split(np.arange(10), n_buckets=12, val_frac=0.2, test_frac=0.2)


def test_normalization_fitted_on_given_windows_only():
    x = np.zeros((4, 2, 3), np.float32)
    x[:, :, 0] = [[1, 3], [1, 3], [1, 3], [1, 3]]
    mean, std = fit_normalization(x)
    assert mean[0] == 2 and std[0] == 1
    assert std[1] == 1.0  # constant channel: std 1, not 0
