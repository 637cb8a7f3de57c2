"""The alert's one-line account of its first participant (core/participant_account.py),
from the pane kernel through the window assembler to the alert built by core.coalesce."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from core import alerts
from core.coalesce import InstrumentState, step
from core.participant_account import (
    N_STATS,
    STATS,
    account,
    merge,
    pair_stats,
    tick_of,
    unpack_accounts,
    vector,
)
from core.records import ScoredWindow
from core.schemas import SCENARIOS
from core.thresholds import ThresholdConfig

MS = 1_000_000  # ns
SLIDE_MS = 5_000
T0 = 1_700_000_000_000  # ms, a pane boundary
S = {name: i for i, name in enumerate(STATS)}


def _frame(rows: list[tuple]) -> dict[str, np.ndarray]:
    """(ts_ms, event, participant, side, price, qty, contra, order_id) rows of instrument X,
    NBBO 10.00 / 10.02."""
    cols = list(zip(*rows, strict=True))
    n = len(rows)
    return dict(
        key=np.array(["X"] * n, dtype=object), ts=np.array(cols[0], dtype=np.int64) * MS,
        event=np.array(cols[1], dtype=object), participant=np.array(cols[2], dtype=object),
        side=np.array(cols[3], dtype=object), price=np.array(cols[4], dtype=float),
        qty=np.array(cols[5], dtype=np.int64), contra=np.array(cols[6], dtype=object),
        bid=np.full(n, 10.0), ask=np.full(n, 10.02), order_id=np.array(cols[7], dtype=object),
    )  # fmt: skip


LAYERING = [  # P layers 3 sells above the ask, buys 300 from Q on the other side, pulls the layers
    (0, "new", "P", "S", 10.04, 5000, None, "s1"),
    (50, "new", "P", "S", 10.05, 6000, None, "s2"),
    (90, "new", "P", "S", 10.08, 7000, None, "s3"),
    (200, "new", "P", "B", 10.01, 300, None, "b1"),  # at the mid
    (300, "fill", "Q", "S", 10.01, 300, "P", "q1"),  # Q's sell order filled against P: P bought
    (700, "cancel", "P", "S", 10.04, 5000, None, "s1"),
    (800, "cancel", "P", "S", 10.05, 6000, None, "s2"),
    (950, "cancel", "P", "S", 10.08, 7000, None, "s3"),
    (960, "cancel", "P", "S", 10.10, 100, None, "old"),  # placed in an earlier pane: not timed
]


def test_pair_stats_layering_and_its_line() -> None:
    stats = pair_stats(**_frame(LAYERING), want_key=np.array(["X", "X", "X"]), want_name=np.array(["P", "Q", "Z"]))
    p, q, z = stats
    assert p[S["sell_n"]] == 3 and p[S["sell_qty"]] == 18_000
    assert (p[S["sell_near"]], p[S["sell_far"]]) == (2.0, 6.0)  # ticks above the ask
    assert p[S["buy_n"]] == 1 and p[S["buy_mid"]] == 1 and p[S["bought"]] == 300 and p[S["sold"]] == 0
    assert p[S["cancel_n"]] == 4 and p[S["cancel_timed"]] == 3 and p[S["cancel_ms_max"]] == 860
    assert q[S["sold"]] == 300 and q[S["bought"]] == 0 and q[S["cancel_n"]] == 0
    assert not z.any()  # a wanted participant without events
    assert account(p) == ("placed 1 buy order, 300 shares, at the mid; placed 3 sell orders, 18,000 shares, "
                          "2-6 ticks above the ask; bought 300; cancelled 4 (18,100 shares), 3 within 0.9 s")


def test_pair_stats_is_a_per_event_loop() -> None:
    """The vectorized kernel against the plain loop it stands for, on random events of two
    instruments (legs: the owner's event, the contra's fill on the other side)."""
    rng = np.random.default_rng(7)
    n = 400
    key = rng.choice(["X", "Y"], n).astype(object)
    ev = rng.choice(["new", "cancel", "fill"], n, p=[0.5, 0.3, 0.2]).astype(object)
    who = rng.choice(["A", "B", "C"], n).astype(object)
    contra = np.where(ev == "fill", rng.choice(["A", "B", "D"], n), None).astype(object)
    side = rng.choice(["B", "S"], n).astype(object)
    bid = np.full(n, 10.0)
    ask = bid + 0.02 * rng.integers(1, 4, n)
    price = np.round(bid + 0.01 * rng.integers(-5, 8, n), 2)
    qty = rng.integers(1, 50, n) * 100
    ts = np.sort(rng.choice(5_000, n, replace=False)) * MS
    oid = rng.choice([f"o{i}" for i in range(120)], n).astype(object)
    wk, wn = np.array(["X", "X", "Y", "Y", "X"]), np.array(["A", "D", "B", "C", "Z"])
    got = pair_stats(key, who, contra, ev, side, price, qty, bid, ask, ts, oid, wk, wn)

    for row, (k, name) in zip(got, zip(wk, wn, strict=True), strict=True):
        want = np.zeros(N_STATS)
        dists: dict[str, list[float]] = {"buy": [], "sell": []}
        placed: dict[str, int] = {}
        lat = []
        for i in range(n):
            if key[i] != k:
                continue
            if ev[i] == "new":
                placed.setdefault(oid[i], ts[i])  # rows in time order: the first placement
            legs = [(who[i], side[i] == "B")]
            if ev[i] == "fill" and contra[i] is not None:
                legs.append((contra[i], side[i] != "B"))
            for owner, buy in legs:
                if owner != name:
                    continue
                s = "buy" if buy else "sell"
                if ev[i] == "new":
                    want[S[f"{s}_n"]] += 1
                    want[S[f"{s}_qty"]] += qty[i]
                    dists[s].append(round(((bid[i] - price[i]) if buy else (price[i] - ask[i])) / 0.01, 2))
                    want[S[f"{s}_mid"]] += abs(price[i] - (bid[i] + ask[i]) / 2) <= 0.0025
                elif ev[i] == "fill":
                    want[S["bought" if buy else "sold"]] += qty[i]
                else:
                    want[S["cancel_n"]] += 1
                    want[S["cancel_qty"]] += qty[i]
                    if oid[i] in placed:
                        lat.append((ts[i] - placed[oid[i]]) / 1e6)
        for s in ("buy", "sell"):
            if dists[s]:
                want[S[f"{s}_near"]], want[S[f"{s}_far"]] = min(dists[s]), max(dists[s])
        want[S["cancel_timed"]], want[S["cancel_ms_max"]] = len(lat), max(lat, default=0.0)
        assert np.allclose(row, want), (k, name, row - want)
    assert got[0].any() and not got[4].any()


def test_merge_and_account_words() -> None:
    assert account(vector(buy_n=2, buy_qty=400, buy_near=-1, buy_far=3)) == (
        "placed 2 buy orders, 400 shares, from 1 tick above to 3 ticks below the bid")
    a = vector(buy_n=2, buy_qty=400, buy_near=-1, buy_far=0, sold=100)
    b = vector(sell_n=1, sell_qty=100, sell_near=-2, sell_far=-2, cancel_n=1, cancel_qty=100)
    line = account(merge([a, b]))
    assert line == ("placed 2 buy orders, 400 shares, 0-1 ticks above the bid; "
                    "placed 1 sell order, 100 shares, 2 ticks below the ask; sold 100; cancelled 1 (100 shares)")
    assert merge([]).tolist() == [0.0] * N_STATS and account(merge([])) is None
    assert tick_of(np.array([0.99]))[0] == 0.0001


# ---- the alert, built end to end by core.coalesce ------------------------------------------
CFG = ThresholdConfig(warmup_windows=40, min_learned=30, regime_min=15, close_after=3, update_every=4,
                      score_scale="raw", evidence_fraction=0.5)  # fmt: skip


def _window(i: int, score: float, accounts=(), surprise=None) -> ScoredWindow:  # noqa: ANN001
    probs = [0.02] * len(SCENARIOS)
    probs[2] = 0.84
    end = T0 + i * SLIDE_MS
    return ScoredWindow(
        instrument="AAA", window_start=end - 60_000, window_end=end, score=score, scenario_probs=tuple(probs),
        recon_error=0.0, channel_z=(0.1, 2.5), volatility=3.0, volume=1000.0, model_version="v1",
        global_threshold=1.0, max_event_ts=end - 1, features=(1.0, 2.0), participants=(("P1", 0.7), ("P2", 0.3)),
        pane_surprise=tuple(surprise or [0.0] * 12), accounts=tuple(accounts),
    )  # fmt: skip


def test_the_alert_says_what_the_first_participant_did_in_its_evidence_span() -> None:
    st = InstrumentState()
    for i in range(60):  # a quiet history: the warm-up ends, nothing alerts
        assert step(st, _window(i, 0.5 + 0.01 * (i % 7)), CFG, now_ms=0) == []
    i = 60
    end = T0 + i * SLIDE_MS
    pane = [end - (12 - k) * SLIDE_MS for k in range(12)]  # the window's pane starts
    layers = vector(sell_n=3, sell_qty=18_000, sell_near=2, sell_far=6, cancel_n=3, cancel_qty=18_000,
                    cancel_timed=3, cancel_ms_max=860)  # fmt: skip
    fill = vector(bought=300)
    before = vector(buy_n=50, buy_qty=5_000, buy_near=0, buy_far=0)  # outside the evidence span
    surprise = [0.1] * 9 + [3.0, 2.0, 0.2]  # evidence = panes 9 and 10
    accounts = [("P1", pane[3], tuple(before)), ("P1", pane[9], tuple(layers)), ("P1", pane[10], tuple(fill)),
                ("P2", pane[9], tuple(vector(sold=300)))]  # fmt: skip
    (ev,) = step(st, _window(i, 9.0, accounts, surprise), CFG, now_ms=1)
    assert ev["status"] == "open" and (ev["evidence_start"], ev["evidence_end"]) == (pane[9], pane[11])
    assert ev["participants"][0]["participant"] == "P1"
    assert ev["account"] == ("placed 3 sell orders, 18,000 shares, 2-6 ticks above the ask; bought 300; "
                             "cancelled all within 0.9 s")
    alerts.validate(ev)
    assert json.loads(alerts.encode(ev))["account"] == ev["account"]
    assert "P1 did: placed 3 sell orders" in alerts.format_line(ev)

    # the state round trip keeps it; a window without accounts changes nothing
    st = InstrumentState.from_json(st.to_json(), CFG)
    evs = step(st, _window(i + 1, 10.0, (), [0.1] * 8 + [3.0, 2.0, 0.2, 0.1]), CFG, now_ms=2)
    assert evs and evs[-1]["account"] == ev["account"]


def test_no_activity_sent_means_no_account() -> None:
    st = InstrumentState()
    for i in range(60):
        step(st, _window(i, 0.5), CFG, now_ms=0)
    (ev,) = step(st, _window(60, 9.0), CFG, now_ms=1)
    assert ev["account"] is None
    alerts.validate(ev)
    assert " did: " not in alerts.format_line(ev)


def test_older_alert_versions_stay_valid() -> None:
    st = InstrumentState()
    for i in range(60):
        step(st, _window(i, 0.5), CFG, now_ms=0)
    (ev,) = step(st, _window(60, 9.0), CFG, now_ms=1)
    v3 = {k: v for k, v in ev.items() if k != "account"} | {"schema": 3}
    alerts.validate(v3)  # an event of the version before `account`
    bad = dict(ev, account=12)
    try:
        alerts.validate(bad)
    except ValueError as exc:
        assert "account" in str(exc)
    else:
        raise AssertionError("a numeric account was accepted")


def test_the_activity_travels_from_the_pane_udaf_to_the_scored_window() -> None:
    """pane_batch (the UDAF body) -> pane_entries -> assemble_batch: the window's leading
    participant carries its per-pane activity, which is what the scoring stage hands on."""
    from udfs.assembler import (
        add_pane,
        assemble_batch,
        pane_entries,
        window_participants,
    )
    from udfs.pane_udaf import UDAF_COLUMNS, pane_batch

    rows = [(T0 + t, e, p, s, px, q, c, o) for t, e, p, s, px, q, c, o in LAYERING]
    f = _frame(rows)
    df = pd.DataFrame({"instrument": f["key"], "ts": f["ts"], "event": f["event"], "participant": f["participant"],
                       "side": f["side"], "price": f["price"], "qty": f["qty"], "contra": f["contra"],
                       "bid": f["bid"], "ask": f["ask"], "hidden": False, "order_id": f["order_id"],
                       "read_ms": 1})  # fmt: skip
    instruments, panes, max_ts, _read, *rest = pane_batch({c: df[c] for c in UDAF_COLUMNS}, SLIDE_MS * MS)
    ((name, entry),) = pane_entries(instruments, max_ts, *rest)
    _, buffer, normal = add_pane(None, panes[0], entry, 12)
    row = assemble_batch(0, [buffer], panes[0], 12, SLIDE_MS, [name], [normal])
    ((named, accounts),) = window_participants(row)
    assert named[0][0] == "P" and accounts[0][0] == "P"
    ((name, pane_ms, stats),) = unpack_accounts(accounts[:1])
    assert pane_ms == panes[0] * SLIDE_MS and account(stats).startswith("placed 1 buy order, 300 shares, at the mid")
    assert [a[0] for a in accounts] == [n for n, _ in named[: len(accounts)]] and len(accounts) <= 2  # the leading ones
