"""Window geometry has one owner (core.config.WindowConfig): every pane or window count
that stands for a span of event time is derived from it, so another geometry keeps the
spans; and one check says whether a model fits the geometry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core import pane_normals as pn
from core.config import DEFAULT_WINDOW, GeometryMismatch, WindowConfig, check_geometry
from core.features import DEFAULT_SLIDE_NS, N_PANE_CHANNELS
from core.thresholds import ThresholdConfig, logit
from darkpool.evaluate.episodes import coalesce, grade
from model.config import ModelConfig

FAST = WindowConfig(size_s=30, slide_s=2)  # a non-default geometry: 15 panes of 2 s


def test_the_default_geometry_keeps_every_count_it_had() -> None:
    # the values these counts had as literals before they were derived
    assert (DEFAULT_WINDOW.size_s, DEFAULT_WINDOW.slide_s, DEFAULT_WINDOW.n_buckets) == (60, 5, 12)
    assert ModelConfig().n_buckets == 12 and DEFAULT_SLIDE_NS == 5_000_000_000
    assert pn.IDLE_PANES == 720 and pn.ALPHA == 1.0 - 0.5 ** (1.0 / 720.0)
    t = ThresholdConfig()
    assert (t.warmup_windows, t.half_life_windows, t.budget_windows, t.relearn_windows, t.fallback_pane_ms) == (
        60, 360.0, 360, 60, 5_000)
    assert t.for_window(DEFAULT_WINDOW) == t


def test_another_geometry_gives_the_same_spans_of_event_time() -> None:
    assert (FAST.n_buckets, FAST.slide_ms, FAST.panes_per_minute, FAST.panes_in(3600)) == (15, 2000, 30.0, 1800)
    # the instrument normal: one hour of memory and of idle time, in 2 s panes
    assert pn.idle_panes(FAST.slide_s) == 1800
    assert (1 - pn.alpha(FAST.slide_s)) ** 1800 == pytest.approx(0.5)
    assert pn.PaneNormal.fresh(FAST.slide_s).alpha == pn.alpha(FAST.slide_s)
    back = pn.PaneNormal.from_state(pn.PaneNormal.fresh(FAST.slide_s).to_state(), FAST.slide_s)
    assert back.alpha == pn.alpha(FAST.slide_s)
    assert not pn.is_stale(0, 1800, FAST.slide_s) and pn.is_stale(0, 1801, FAST.slide_s)
    assert pn.is_stale(0, 721)  # the default slide: one hour is 720 panes
    # the decision stage: 5 min warm-up, 30 min half-life and budget, 5 min re-learn, 2 s panes
    t = ThresholdConfig().for_window(FAST)
    assert (t.warmup_windows, t.half_life_windows, t.budget_windows, t.relearn_windows, t.fallback_pane_ms) == (
        150, 900.0, 900, 150, 2_000)
    # a count the operator set is theirs, only the pane length follows the geometry
    assert ThresholdConfig(warmup_windows=20).for_window(FAST).warmup_windows == 20


def test_training_normals_follow_the_slide() -> None:
    # 40 active panes, then a silence of 1,000 panes, then 40 more: 1,000 x 2 s is under
    # an hour (the normal carries on), 1,000 x 5 s is over it (the normal starts afresh)
    panes = np.r_[np.arange(40), np.arange(1040, 1080)]
    X = np.random.default_rng(0).normal(1.0, 0.1, (len(panes), N_PANE_CHANNELS))
    _, _, ready_fast = pn.normals_for_windows(panes, X, FAST.n_buckets, FAST.slide_s)
    _, _, ready_default = pn.normals_for_windows(panes, X, DEFAULT_WINDOW.n_buckets)
    assert ready_fast[40] and not ready_default[40]


def test_one_geometry_check_names_the_settings_to_change() -> None:
    check_geometry(FAST, {"size_s": 30, "slide_s": 2, "n_buckets": 15})
    check_geometry(FAST, {"n_buckets": 15})  # an artifact that records its bucket count only
    with pytest.raises(GeometryMismatch, match="DARKPOOL_SIZE_S/DARKPOOL_SLIDE_S") as exc:
        check_geometry(FAST, {"size_s": 60, "slide_s": 5, "n_buckets": 12}, "artifact X")
    assert "artifact X was trained on 60 s sliding every 5 s (12 panes)" in str(exc.value)
    assert "--window-size/--window-slide" in str(exc.value)
    with pytest.raises(GeometryMismatch, match="n_buckets=12"):
        check_geometry(FAST, {"n_buckets": 12})


def test_the_logit_is_defined_once() -> None:
    from core.alerts import score_margin

    assert score_margin(0.9, 0.5, "logit") == logit(0.9) - logit(0.5)
    assert ThresholdConfig().scaled(1.0) == logit(1.0) == pytest.approx(13.8155, abs=1e-4)


def test_offline_alerts_are_the_decision_stages_own() -> None:
    cfg = ThresholdConfig()
    # flagged for 8 minutes: the job closes the alert at max_episode_ms and goes on in a
    # continuation; the offline coalescing is the same state machine (core.coalesce.step)
    pane = np.arange(96)
    alerts = coalesce(np.full(96, "A"), pane, np.ones(96, bool), 5_000, 12, cfg)
    assert len(alerts) == 2 and alerts[0].end_ms - alerts[0].start_ms <= cfg.max_episode_ms + 5_000
    assert alerts[1].start_ms == alerts[0].end_ms
    # a silence of exactly quiet_gap_ms between windows closes the alert, as in the job
    gap = cfg.quiet_gap_ms // 5_000
    alerts = coalesce(np.full(2, "A"), np.array([0, gap]), np.ones(2, bool), 5_000, 12, cfg)
    assert len(alerts) == 2
    # both graded by the one matcher: the episode inside the first alert is detected once
    eps = pd.DataFrame({"instrument": ["A"], "scenario": ["wash_trade"], "start_ts": [0], "end_ts": [1_000_000]})
    g = grade(eps, alerts, instrument_hours=1.0)
    assert (g.detected, g.false_alerts) == (1, 1)
