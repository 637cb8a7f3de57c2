"""Adaptive threshold + alert coalescing (pure logic of core/thresholds.py, core/coalesce.py)."""

from __future__ import annotations

import json
import random
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from core import alerts
from core.coalesce import InstrumentState, close_if_quiet, is_idle, step
from core.records import ScoredWindow
from core.schemas import SCENARIOS
from core.thresholds import Baseline, ThresholdConfig

SLIDE = 5_000
T0 = 1_700_000_000_000
# The raw scale: these tests drive the baseline's arithmetic with unbounded scores; the
# model's probability scores take the logit scale (tests at the end of this file).
CFG = ThresholdConfig(
    warmup_windows=40, min_learned=30, regime_min=15, close_after=3, update_every=4, score_scale="raw",
    evidence_fraction=0.5,  # (the tests below check the fraction; the default is 1.0)
)


def win(i: int, score: float, vol: float = 3.0, volume: float = 1000.0, scenario: int = 2,
        who: tuple[tuple[str, float], ...] = (("P1", 3.0), ("P2", 1.0)), version: str = "v1",
        instrument: str = "AAA", gthr: float = 1.0) -> ScoredWindow:  # fmt: skip
    probs = [0.02] * len(SCENARIOS)
    probs[scenario] = 1.0 - 0.02 * (len(SCENARIOS) - 1)
    end = T0 + i * SLIDE
    return ScoredWindow(
        instrument=instrument, window_start=end - 60_000, window_end=end, score=score,
        scenario_probs=tuple(probs), recon_error=score / 2, channel_z=(0.1, -4.0, 2.5, 0.3),
        volatility=vol, volume=volume, model_version=version, global_threshold=gthr,
        max_event_ts=end - 1, features=(1.0, 2.0, 3.0, 4.0), participants=who,
    )  # fmt: skip


def run(state: InstrumentState, windows, cfg=CFG, roundtrip=False):
    events = []
    for w in windows:
        if roundtrip:  # a restore from a checkpoint between every window
            state = InstrumentState.from_json(state.to_json())
        events += step(state, w, cfg, now_ms=w.window_end + 250)
    return state, events


def normal_scores(n: int, seed: int = 1, mu: float = 0.5, sd: float = 0.05) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(mu, sd) for _ in range(n)]


def test_warmup_uses_the_global_threshold_then_the_instruments_own():
    state = InstrumentState()
    seen = []
    for i, s in enumerate(normal_scores(80)):
        thr = state.baseline.threshold(3.0, 1000.0, 1.0, CFG)
        seen.append((i, thr.source, thr.value))
        step(state, win(i, s), CFG, 0)
    assert all(src == "global" and v == 1.0 for i, src, v in seen if i < CFG.warmup_windows)
    # mean 0.5 + 4 * 0.05 = 0.7 < floor 0.8 x global: the floor holds
    assert all(
        src == "floor" and abs(v - 0.8) < 1e-9 for i, src, v in seen if i >= CFG.warmup_windows + 1
    )
    loose = replace(CFG, floor_ratio=0.1)
    thr = state.baseline.threshold(3.0, 1000.0, 1.0, loose)
    assert thr.source in ("instrument", "regime") and 0.6 < thr.value < 0.8


def test_threshold_moves_with_the_market_regime():
    cfg = replace(CFG, floor_ratio=0.1, ceil_ratio=10.0)
    rng = random.Random(3)
    state = InstrumentState()
    for i in range(600):
        u = rng.random()
        if u < 0.1:  # calm: low volatility and volume, low scores
            w = win(i, rng.gauss(0.35, 0.05), vol=0.5, volume=100.0)
        elif u < 0.2:  # busy: scores run higher without any abuse
            w = win(i, rng.gauss(0.8, 0.1), vol=20.0, volume=20_000.0)
        else:
            w = win(i, rng.gauss(0.5, 0.1))
        step(state, w, cfg, 0)
    b = state.baseline
    calm = b.threshold(0.5, 100.0, 1.0, cfg)
    normal = b.threshold(3.0, 1000.0, 1.0, cfg)
    active = b.threshold(20.0, 20_000.0, 1.0, cfg)
    assert (calm.regime, normal.regime, active.regime) == ("calm", "normal", "active")
    assert {calm.source, normal.source, active.source} == {"regime"}
    assert calm.value < normal.value < active.value
    # a 1.1 is ordinary in a busy market but an outlier in a normal one
    assert normal.value < 1.1 < active.value


def test_flagged_windows_do_not_raise_the_baseline():
    # no alert budget here: this is the protection on its own (the budget would re-learn)
    cfg = replace(CFG, floor_ratio=0.1, max_episode_ms=10**9, max_flag_rate=1.0)
    state, _ = run(InstrumentState(), [win(i, s) for i, s in enumerate(normal_scores(100))], cfg)
    before = state.baseline.to_dict()
    thr_before = state.baseline.threshold(3.0, 1000.0, 1.0, cfg).value
    state, events = run(state, [win(100 + i, 5.0) for i in range(200)], cfg)
    assert state.baseline.overall.mean == before["overall"][1]
    assert state.baseline.threshold(3.0, 1000.0, 1.0, cfg).value == thr_before
    assert [e["status"] for e in events].count("open") == 1
    # the same windows *learned* would have dragged the baseline up: the check can fail
    unprotected = Baseline.from_dict(before)
    for _ in range(200):
        unprotected.learn(5.0, 3.0, 1000.0, cfg)
    assert unprotected.overall.mean > before["overall"][1] + 0.5


def test_windows_right_after_an_episode_are_not_learned_either():
    cfg = replace(CFG, floor_ratio=0.1)
    state, _ = run(InstrumentState(), [win(i, s) for i, s in enumerate(normal_scores(100))], cfg)
    n_learned = state.baseline.overall.n
    # episode, then 2 windows below (episode still open, cool-down), then the close window
    state, events = run(state, [win(100, 3.0), win(101, 0.5), win(102, 0.5), win(103, 0.5)], cfg)
    assert [e["status"] for e in events] == ["open", "close"]
    assert state.baseline.overall.n == n_learned
    state, _ = run(state, [win(104, 0.5)], cfg)
    assert state.baseline.overall.n == n_learned + 1


def test_one_alert_per_episode_open_update_close():
    warm = [win(i, s) for i, s in enumerate(normal_scores(60))]
    scores = [1.5, 1.7, 2.4, 1.6, 1.6, 1.6, 1.6, 1.6, 0.4, 1.9, 0.4, 0.4, 0.4, 0.5, 0.5]
    episode = [win(60 + i, s, who=(("P9", 5.0), (f"X{i}", 0.5))) for i, s in enumerate(scores)]
    _, events = run(InstrumentState(), warm + episode)
    assert {e["alert_id"] for e in events} == {events[0]["alert_id"]}
    statuses = [e["status"] for e in events]
    assert statuses[0] == "open" and statuses[-1] == "close" and statuses.count("open") == 1
    assert statuses.count("close") == 1 and "update" in statuses
    assert [e["seq"] for e in events] == list(range(len(events)))
    close = events[-1]
    assert close["close_reason"] == "below_threshold"
    assert close["peak_score"] == 2.4 and close["peak_window_end"] == T0 + 62 * SLIDE
    assert close["episode_start"] == T0 + 60 * SLIDE - 60_000
    assert close["episode_end"] == T0 + 69 * SLIDE  # the 1.9 after one dip stays in the episode
    assert close["n_windows"] == 9
    assert close["scenario"] == "spoofing_layering" and close["scenario_probability"] > 0.8
    assert close["participants"][0]["participant"] == "P9"
    # by z, largest first; channel 1's z -4.0 (explained better than usual) is no evidence
    assert [f["channel"] for f in close["top_features"]] == [alerts.channel_names(4)[i] for i in (2, 3, 0)]
    assert close["top_features"][0]["normal"] == 3.0 and close["top_features"][0]["value"] == 3.0
    assert close["latency_ms"] == 250
    for e in events:
        alerts.validate(e)
        assert json.loads(alerts.encode(e)) == e


def test_quiet_gap_closes_the_episode_on_next_window_and_on_timer():
    warm = [win(i, s) for i, s in enumerate(normal_scores(60))]
    state, events = run(InstrumentState(), warm + [win(60, 3.0)])
    assert [e["status"] for e in events] == ["open"]
    # timer path: nothing arrives; the watermark reaches last_end + gap
    assert close_if_quiet(state, T0 + 60 * SLIDE + CFG.quiet_gap_ms - 1, CFG, 0) == []
    ev = close_if_quiet(state, T0 + 60 * SLIDE + CFG.quiet_gap_ms, CFG, 0)
    assert [(e["status"], e["close_reason"]) for e in ev] == [("close", "quiet_gap")]
    assert state.episode is None
    # next-window path: a window after a long gap closes the old episode and opens a new one
    state, events = run(InstrumentState(), warm + [win(60, 3.0), win(100, 3.0)])
    assert [(e["status"], e["close_reason"]) for e in events] == [
        ("open", None),
        ("close", "quiet_gap"),
        ("open", None),
    ]
    assert events[0]["alert_id"] == events[1]["alert_id"] != events[2]["alert_id"]


def test_no_alert_outlasts_max_episode_ms_and_continuations_are_marked():
    """(b) 19 minutes of flagged windows with a 5-minute maximum: four alerts in a chain,
    none longer than max_episode_ms, each after the first naming the one it continues,
    starting where it ended (no overlap, no gap)."""
    cfg = replace(CFG, max_episode_ms=300_000, max_flag_rate=1.0)  # budget off: flagging goes on
    warm = [win(i, s) for i, s in enumerate(normal_scores(60))]
    _, events = run(InstrumentState(), warm + [win(60 + i, 3.0) for i in range(220)], cfg)
    last = {}
    for e in events:
        alerts.validate(e)
        last[e["alert_id"]] = e
    chain = sorted(last.values(), key=lambda e: e["episode_start"])
    assert len(chain) == 4, [(e["episode_start"], e["episode_end"]) for e in chain]
    assert all(e["episode_end"] - e["episode_start"] <= cfg.max_episode_ms for e in chain)
    assert [e["close_reason"] for e in chain] == ["max_duration"] * 3 + [None]  # the last is still open
    assert chain[0]["continues"] is None
    for before, after in zip(chain, chain[1:], strict=False):
        assert after["continues"] == before["alert_id"]
        assert after["episode_start"] == before["episode_end"]
    opens = [e for e in events if e["status"] == "open"]
    assert [e["continues"] for e in opens] == [None] + [e["alert_id"] for e in chain[:-1]]


def test_alert_ids_are_deterministic_and_survive_restarts():
    rng = random.Random(11)
    ws = [win(i, rng.gauss(0.5, 0.05) if rng.random() > 0.05 else 3.0) for i in range(400)]
    _, a = run(InstrumentState(), ws)
    _, b = run(InstrumentState(), ws, roundtrip=True)
    assert a == b and len({e["alert_id"] for e in a}) > 3
    assert a[0]["alert_id"] == alerts.alert_id("AAA", a[0]["window_end"], "v1")
    _, c = run(InstrumentState(), [replace(w, model_version="v2") for w in ws])
    assert [e["status"] for e in c] == [e["status"] for e in a]
    assert not {e["alert_id"] for e in a} & {e["alert_id"] for e in c}


def test_latency_is_measured_from_the_read_of_the_deciding_event():
    """From when the source read the deciding window's event (a replay of old data shows
    the job's own latency, not the data's age); null for a close a timer decided."""
    read_at = 1_900_000_000_000  # wall clock of the read, unrelated to the data's event time
    warm = [win(i, s) for i, s in enumerate(normal_scores(60))]
    state, _ = run(InstrumentState(), warm)
    flagged = replace(win(60, 3.0), read_ms=read_at)
    opened = step(state, flagged, CFG, now_ms=read_at + 40)
    assert opened[0]["status"] == "open" and opened[0]["latency_ms"] == 40
    closed = close_if_quiet(state, flagged.window_end + CFG.quiet_gap_ms, CFG, now_ms=read_at + 90_000)
    assert closed[0]["close_reason"] == "quiet_gap" and closed[0]["latency_ms"] is None
    for e in opened + closed:
        alerts.validate(e)
        assert "lag timer" in alerts.format_line(closed[0])


def test_state_stays_bounded():
    rng = random.Random(5)
    state = InstrumentState()
    sizes = []
    for i in range(6000):
        who = tuple((f"P{rng.randrange(10_000)}", rng.random()) for _ in range(8))
        score = 3.0 if (i // 300) % 2 else rng.gauss(0.5, 0.05)  # long episodes + calm stretches
        step(state, win(i, score, who=who), replace(CFG, max_episode_ms=200 * SLIDE), 0)
        if i % 500 == 499:
            sizes.append(len(state.to_json()))
    assert max(sizes) < 4096, sizes
    assert state.episode is None or len(state.episode.participants) <= 2 * CFG.top_participants


def test_state_of_the_reorder_buffer_era_restores_with_its_pending_list_ignored():
    """Earlier versions wrote a `pending` reorder buffer (always empty in the job's state)."""
    state, _ = run(InstrumentState(), [win(i, 0.5) for i in range(5)])
    old = json.loads(state.to_json())
    assert "pending" not in old
    old["pending"] = []
    restored = InstrumentState.from_json(json.dumps(old), CFG)
    assert restored.to_json() == state.to_json()


def test_stale_windows_are_counted_not_decided_and_idle_state_detected():
    state, _ = run(InstrumentState(), [win(i, 0.5) for i in range(5)])
    assert step(state, win(2, 9.0), CFG, 0) == [] and state.stale == 1
    assert not is_idle(state, T0 + 4 * SLIDE + CFG.idle_ttl_ms - 1, CFG)
    assert is_idle(state, T0 + 4 * SLIDE + CFG.idle_ttl_ms, CFG)


def test_nan_scores_are_refused_at_the_record():
    import pytest

    with pytest.raises(ValueError, match="finite"):
        win(0, float("nan"))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=4.0), min_size=1, max_size=150))
def test_every_alert_has_one_open_first_and_at_most_one_close_last(scores):
    warm = [win(i, s) for i, s in enumerate(normal_scores(45))]
    _, events = run(InstrumentState(), warm + [win(45 + i, s) for i, s in enumerate(scores)])
    by_id: dict[str, list[dict]] = {}
    for e in events:
        by_id.setdefault(e["alert_id"], []).append(e)
    for evs in by_id.values():
        statuses = [e["status"] for e in evs]
        assert statuses[0] == "open" and statuses.count("open") == 1
        assert statuses.count("close") <= 1 and ("close" not in statuses or statuses[-1] == "close")
        assert [e["seq"] for e in evs] == list(range(len(evs)))


def test_channel_normals_equal_one_robust_ewma_per_channel() -> None:
    """The vectorized normals are RobustEwma element by element (NaNs skipped), and their
    JSON layout is RobustEwma's, so state written before loads unchanged."""
    import math
    import random

    from core.thresholds import ChannelNormals, RobustEwma

    rng = random.Random(5)
    scalar = [RobustEwma() for _ in range(5)]
    vec = ChannelNormals.empty(5)
    for i in range(300):
        # outliers (clipped); a channel constant at first (spread 0: its first change is
        # not clipped); NaNs now and then (the general path), long runs without (warm)
        x = [rng.gauss(0, 1) * (20 if i % 37 == 0 else 1) for _ in range(4)]
        x.append(0.25 if i < 200 else rng.gauss(0, 1))
        if i % 11 == 0 and i < 150:
            x[i % 5] = math.nan
        for est, v in zip(scalar, x, strict=True):
            est.update(v, CFG.alpha, CFG.winsor_c)
        vec.update(x, CFG.alpha, CFG.winsor_c)
        assert vec.to_list() == [e.to_list() for e in scalar], f"step {i}"
    assert ChannelNormals.from_list([e.to_list() for e in scalar]).to_list() == vec.to_list()


def test_degraded_windows_are_judged_by_the_rules_threshold_and_teach_nothing():
    """Scored by the rules while the scorer was down: threshold 1 (source `rules`), the
    alert is marked degraded, and neither the baseline nor the channel normals move."""
    state, _ = run(InstrumentState(), [win(i, s) for i, s in enumerate(normal_scores(80))])
    learned = state.to_json()

    def degraded(i: int, score: float) -> ScoredWindow:
        return replace(win(i, score, version="rules-abc"), degraded=True)

    quiet = [degraded(i, 0.9) for i in range(80, 90)]  # below 1: no alert, nothing learned
    state, events = run(state, quiet)
    assert events == []
    before, after = json.loads(learned), json.loads(state.to_json())
    assert before["baseline"] == after["baseline"] and before["channels"] == after["channels"]
    state, events = run(state, [degraded(90, 1.4)])
    (ev,) = events
    assert ev["status"] == "open" and ev["degraded"] and ev["model_version"] == "rules-abc"
    assert ev["threshold_source"] == "rules" and ev["threshold"] == 1.0
    # back on the model: the learned baseline judges again; a new peak updates the episode
    state, events = run(state, [win(91, 1.5)])
    assert [e["status"] for e in events] == ["update"] and events[0]["threshold_source"] != "rules"


def test_channel_normals_packed_form_round_trips_exactly_and_old_state_still_reads() -> None:
    import numpy as np

    from core.thresholds import ChannelNormals

    rng = np.random.default_rng(3)
    vec = ChannelNormals.empty(7)
    for _ in range(5):
        vec.update(rng.normal(size=7), alpha=0.1, winsor_c=3.0)
    packed = json.loads(json.dumps(vec.to_packed()))  # as it travels in the state JSON
    got = ChannelNormals.from_packed(packed)
    assert got.to_list() == vec.to_list()  # bit-exact
    assert got.n.dtype == np.int64 and got.mean.dtype == np.float64 and got.mad.dtype == np.float64
    # state written before the packed form still reads, through InstrumentState
    st = InstrumentState(channels=vec)
    old = json.loads(st.to_json())
    old["channels"] = vec.to_list()
    assert InstrumentState.from_json(json.dumps(old)).channels.to_list() == vec.to_list()
    assert InstrumentState.from_json(st.to_json()).channels.to_list() == vec.to_list()


# ---- issue #13: warm-up, alert budget, evidence, unknown scenario, old state ----------


def alert_spans(events: list[dict]) -> dict[str, dict]:
    """The latest event of each alert."""
    last: dict[str, dict] = {}
    for e in events:
        alerts.validate(e)
        last[e["alert_id"]] = e
    return last


def test_an_instrument_scoring_far_above_the_global_threshold_warms_up_and_stops_alerting():
    """(a) Every window scores 3x the global threshold from the first one (a busy lit
    instrument the model misreads). Flagged windows used to never teach the baseline, so
    it stayed on the global threshold and alerted for ever. Now: the global threshold for
    the documented warm-up (warmup_windows), then its own threshold, and no alert."""
    cfg = replace(CFG, max_episode_ms=3_600_000)
    rng = random.Random(4)
    ws = [win(i, rng.gauss(3.0, 0.15)) for i in range(400)]
    state = InstrumentState()
    sources, events = [], []
    for w in ws:
        events += step(state, w, cfg, w.window_end)
        sources.append(state.last_thr[1])
    assert set(sources[: cfg.warmup_windows]) == {"global"}
    assert "global" not in sources[cfg.warmup_windows :]
    assert set(sources[cfg.warmup_windows :]) <= {"instrument", "regime"}
    last = alert_spans(events)
    # one alert during the warm-up (marked global), closed soon after it; none later
    assert len(last) == 1 and all(e["threshold_source"] == "global" for e in events if e["status"] == "open")
    (only,) = last.values()
    assert only["status"] == "close" and only["close_reason"] == "below_threshold"
    assert only["episode_end"] <= ws[cfg.warmup_windows - 1].window_end
    assert 3.2 < state.last_thr[0] < 4.5  # its own threshold, above its ordinary scores


def test_a_real_episode_inside_the_warm_up_does_not_lift_the_instruments_threshold():
    """Robust warm-up: 12 windows of a real episode (scores 3.0) inside a 40-window
    warm-up leave the seeded estimate at the ordinary flow (median, not mean)."""
    cfg = replace(CFG, floor_ratio=0.1)
    scores = normal_scores(40)
    scores[10:22] = [3.0] * 12
    state, _ = run(InstrumentState(), [win(i, s) for i, s in enumerate(scores)], cfg)
    assert state.baseline.phase == "steady"
    assert abs(state.baseline.overall.mean - 0.5) < 0.05 and state.baseline.overall.sigma < 0.12
    assert state.baseline.threshold(3.0, 1000.0, 1.0, cfg).value < 1.0


def test_the_alert_budget_recalibrates_a_trigger_happy_instrument_and_says_so():
    """(c) After the warm-up the instrument's flow shifts up for good (0.5 -> 1.6): every
    window is flagged, and flagged windows do not teach. The flagged share crosses
    max_flag_rate, the instrument re-learns from recent windows (flagged ones too), its
    alerts say `recalibrated`, and it stops alerting."""
    cfg = replace(CFG, max_episode_ms=3_600_000, max_flag_rate=0.1, budget_windows=360, relearn_windows=30)
    rng = random.Random(8)
    scores = [rng.gauss(0.5, 0.05) for _ in range(100)] + [rng.gauss(1.6, 0.08) for _ in range(200)]
    state = InstrumentState()
    events, flagged = [], []
    for i, s in enumerate(scores):
        events += step(state, win(i, s), cfg, 0)
        flagged.append(state.episode is not None and state.episode.last_above_end == win(i, s).window_end)
    assert not any(flagged[cfg.warmup_windows : 100])  # steady and quiet before the shift
    # breach after ~38 flagged windows (1 - exp(-n/360) > 0.1), then 30 to re-learn
    assert all(flagged[100:135]) and not any(flagged[100 + 38 + 30 + 1 :])
    srcs = [e["threshold_source"] for e in events]
    assert "recalibrated" in srcs
    assert events[-1]["status"] == "close" and events[-1]["threshold_source"] == "recalibrated"
    assert state.baseline.phase == "steady" and state.baseline.threshold(3.0, 1000.0, 1.0, cfg).value > 1.6
    # the marker fades budget_windows windows after the re-learn
    assert state.baseline.recal_left > 0
    state, _ = run(state, [win(300 + i, rng.gauss(1.6, 0.08)) for i in range(cfg.budget_windows)], cfg)
    assert state.last_thr[1] in ("instrument", "regime")
    # without the budget the same flow alerts to the end (the deadlock it breaks)
    _, stuck = run(InstrumentState(), [win(i, s) for i, s in enumerate(scores)], replace(cfg, max_flag_rate=1.0))
    assert stuck[-1]["status"] != "close" and stuck[-1]["n_windows"] > 190


def test_a_normal_instrument_stays_well_inside_the_budget():
    """Sparse real episodes (a 2-window spike every 45 windows) never trigger a re-learn."""
    rng = random.Random(21)
    hot = {j for i in range(70, 2000, 45) for j in (i, i + 1)}
    state, events = run(InstrumentState(), [win(i, 3.0 if i in hot else rng.gauss(0.5, 0.05)) for i in range(2000)])
    assert state.baseline.phase == "steady" and state.baseline.flag_rate < CFG.max_flag_rate / 2
    assert "recalibrated" not in {e["threshold_source"] for e in events}


def surprising(i: int, score: float, panes: tuple[float, ...]) -> ScoredWindow:
    return replace(win(i, score), pane_surprise=panes)


def test_evidence_points_at_the_surprising_panes_not_the_window_start():
    """(d) Abuse in one 5 s pane: the window is 60 s (12 panes), so episode_start points a
    minute early; the evidence is that pane. As the window slides the pane moves one
    position older per window; the evidence stays on the same 5 s of event time."""
    warm = [win(i, s) for i, s in enumerate(normal_scores(60))]
    abuse_end = T0 + 60 * SLIDE  # the abusive pane is [abuse_end - 5 s, abuse_end)
    flagged = []
    for k in range(4):  # windows ending at abuse_end + k slides: the pane is k from the end
        panes = [0.1] * 12
        panes[11 - k] = 6.0
        panes[10 - k] = 3.5  # half of the peak or more: part of the evidence
        panes[9 - k] = 2.0  # less than half: not evidence
        flagged.append(surprising(60 + k, 2.5, tuple(panes)))
    quiet = [win(64 + i, 0.5) for i in range(3)]
    _, events = run(InstrumentState(), warm + flagged + quiet)
    (alert,) = alert_spans(events).values()
    assert alert["episode_start"] == abuse_end - 60_000
    assert (alert["evidence_start"], alert["evidence_end"]) == (abuse_end - 2 * SLIDE, abuse_end)
    # no pane surprise (older producer): each flagged window's last pane
    _, events = run(InstrumentState(), warm + [replace(w, pane_surprise=()) for w in flagged] + quiet)
    (alert,) = alert_spans(events).values()
    assert (alert["evidence_start"], alert["evidence_end"]) == (abuse_end - SLIDE, abuse_end + 3 * SLIDE)


def test_unknown_scenario_when_no_scenario_is_likely():
    """(e) Flagged windows whose probabilities are spread over the scenarios: "unknown",
    with the best scenario's probability kept; a likely scenario is still named."""
    warm = [win(i, s) for i, s in enumerate(normal_scores(60))]
    flat = tuple([0.2] + [0.1] * (len(SCENARIOS) - 1))
    vague = [replace(win(60 + i, 2.5), scenario_probs=flat) for i in range(3)]
    _, events = run(InstrumentState(), warm + vague + [win(63 + i, 0.5) for i in range(3)])
    assert {e["scenario"] for e in events} == {"unknown"}
    assert events[-1]["scenario_probability"] == 0.125  # P(scenario | abuse) = 0.1 / 0.8
    assert "unknown" not in SCENARIOS and "unknown" in alerts.ALERT_SCENARIOS
    _, events = run(InstrumentState(), warm + vague, replace(CFG, min_scenario_probability=0.05))
    assert events[-1]["scenario"] == SCENARIOS[1]
    bad = dict(events[-1], scenario="normal")
    import pytest

    with pytest.raises(ValueError, match="scenario"):
        alerts.validate(bad)


# Two decision states as the job wrote them before schema 2 (no warm-up sample, alert
# budget, evidence or continuation), made by that code: an instrument deadlocked on the
# global threshold (100 windows at 3x it, one endless alert), and a warm one.
OLD_DEADLOCKED = (
    '{"baseline":{"seen":100,"overall":[0,0.0,0.0],"by_regime":[[0,0.0,0.0],[0,0.0,0.0],[0,0.0,0.0]],'
    '"vol":[0,0.0,0.0],"volume":[0,0.0,0.0]},"channels":{"n":"","mean":"","mad":""},'
    '"episode":{"alert_id":"48533dc0b1ea1828b61f","instrument":"AAA","model_version":"v1",'
    '"start":1699999940000,"last_above_end":1700000495000,"peak_score":3.0,"peak_end":1700000000000,'
    '"n_above":100,"below":0,"seq":17,"prob_sum":[2.0000000000000013,2.0000000000000013,84.0000000000002,'
    '2.0000000000000013,2.0000000000000013,2.0000000000000013,2.0000000000000013,2.0000000000000013,'
    '2.0000000000000013],"participants":{"P1":100.0},"peak_features":[{"channel":"channel_1","z":-4.0,'
    '"value":2.0,"normal":null},{"channel":"channel_0","z":0.1,"value":1.0,"normal":null}],'
    '"degraded":false},"last_end":1700000495000,"pending":[],"stale":0,"last_thr":[1.0,"global","normal",1.0]}'
)
OLD_WARM_BASELINE = {
    "seen": 80, "overall": [80, 0.52, 0.012509233104070266],
    "by_regime": [[0, 0.0, 0.0], [80, 0.52, 0.012509233104070266], [0, 0.0, 0.0]],
    "vol": [80, 1.3862943611198906, 0.0], "volume": [80, 6.90875477931522, 0.0],
}  # fmt: skip


def test_state_written_before_schema_2_restores_with_defaults():
    """(f) Savepoint compatibility: today's layout reads; the deadlocked instrument starts
    the new warm-up (and gets out of it), its open alert keeps going with its whole span
    as evidence and no continuation; a warm instrument stays warm with an empty budget."""
    cfg = replace(CFG, max_episode_ms=3_600_000)
    state = InstrumentState.from_json(OLD_DEADLOCKED, cfg)
    b, ep = state.baseline, state.episode
    assert (b.phase, b.sample, b.flag_rate, b.recal_left) == ("warmup", [], 0.0, 0)
    assert (ep.evidence_start, ep.evidence_end, ep.continues) == (1699999940000, 1700000495000, None)
    i0 = (state.last_end - T0) // SLIDE + 1
    rng = random.Random(2)
    state, events = run(state, [win(i0 + i, rng.gauss(3.0, 0.15)) for i in range(cfg.warmup_windows + 5)], cfg)
    assert state.baseline.phase == "steady" and state.last_thr[1] in ("instrument", "regime")
    assert events[-1]["alert_id"] == "48533dc0b1ea1828b61f" and events[-1]["close_reason"] == "below_threshold"
    assert events[-1]["evidence_start"] == 1699999940000 and events[-1]["continues"] is None
    # round trip of the new layout is exact
    assert InstrumentState.from_json(state.to_json()).to_json() == state.to_json()

    old = json.loads(OLD_DEADLOCKED)
    old["baseline"], old["episode"] = OLD_WARM_BASELINE, None
    warm = InstrumentState.from_json(json.dumps(old), cfg)
    assert (warm.baseline.phase, warm.baseline.flag_rate) == ("steady", 0.0)
    assert warm.baseline.overall.to_list() == OLD_WARM_BASELINE["overall"]
    assert warm.baseline.threshold(3.0, 1000.0, 1.0, replace(cfg, floor_ratio=0.1)).source in ("instrument", "regime")
    # judged by the config it is restored with: a longer warm-up than it saw restarts it
    assert InstrumentState.from_json(json.dumps(old), replace(cfg, warmup_windows=100)).baseline.phase == "warmup"


def test_bad_threshold_config_is_refused_with_what_to_fix():
    import pytest

    with pytest.raises(ValueError, match="max_flag_rate"):
        ThresholdConfig(max_flag_rate=0.0)
    with pytest.raises(ValueError, match="max_episode_ms"):
        ThresholdConfig(max_episode_ms=0)


# ---- the model's probability scores: the logit scale (the job's default) ---------------
LOGIT = ThresholdConfig(warmup_windows=40)


def prob_win(i: int, score: float, gthr: float = 0.9) -> ScoredWindow:
    return win(i, score, gthr=gthr)


def test_logit_scale_an_ordinary_instrument_keeps_the_global_threshold():
    rng = random.Random(3)
    state, events = run(InstrumentState(), [prob_win(i, rng.betavariate(1, 12)) for i in range(600)], LOGIT)
    value, source, _, gthr = state.last_thr
    assert source == "instrument" and value == gthr == 0.9
    assert not events  # its ordinary flow never reaches the global threshold


def test_logit_scale_a_hot_instrument_is_held_to_its_budget_and_still_alerts_a_spike():
    """Every window above the global threshold from the first one (the real-flow failure
    mode): the threshold rises to the instrument's budget quantile, most windows stop
    flagging, no alert outlives max_episode_ms, and a clear spike still alerts."""
    rng = random.Random(4)
    scores = [min(0.995, max(0.91, rng.gauss(0.96, 0.01))) for _ in range(1500)]
    scores[1200:1206] = [0.99999] * 6  # a spike far above its ordinary level
    state, events = run(InstrumentState(), [prob_win(i, s) for i, s in enumerate(scores)], LOGIT)
    assert state.last_thr[1] == "recalibrated" and state.last_thr[0] > 0.95
    late = [e for e in events if e["window_end"] >= T0 + 600 * SLIDE]
    flagged_late = sum(s > state.last_thr[0] for s in scores[600:1200])
    assert flagged_late / 600 < LOGIT.max_flag_rate + 0.1
    assert all(e["episode_end"] - e["episode_start"] <= LOGIT.max_episode_ms for e in events)
    assert any(e["status"] in ("open", "update") and e["score"] > 0.9999 for e in late)  # the spike


def test_logit_scale_state_without_the_budget_learns_it_again():
    state, _ = run(InstrumentState(), [prob_win(i, 0.05) for i in range(100)], LOGIT)
    d = json.loads(state.to_json())
    d["baseline"].pop("budget")
    back = InstrumentState.from_json(json.dumps(d))
    back, _ = run(back, [prob_win(100 + i, 0.05) for i in range(LOGIT.warmup_windows + 1)], LOGIT)
    assert back.baseline.phase == "steady" and back.last_thr[1] == "instrument"
