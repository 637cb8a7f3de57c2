"""Evaluation metrics against hand-computed cases (darkpool/evaluate/metrics.py, episodes.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from darkpool.evaluate import metrics as M
from darkpool.evaluate.episodes import Alert, alerts_from_events, coalesce, grade


def test_hand_computed_confusion_and_rates() -> None:
    # 6 normal, 4 anomalous; threshold 0.5 flags: TP = 3 (0.9, 0.8, 0.6), FP = 1 (0.7), FN = 1 (0.2)
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.7, 0.05, 0.4, 0.9, 0.8, 0.6, 0.2])
    m = M.window_metrics(y, s, 0.5)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (3, 1, 5, 1)
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["precision"] == pytest.approx(0.75)
    assert m["recall"] == pytest.approx(0.75)
    assert m["f1"] == pytest.approx(0.75)
    assert m["fpr"] == pytest.approx(1 / 6)
    # ROC-AUC by pair counting: of 24 (anomalous, normal) pairs, the anomalous 0.2 loses to
    # 0.7, 0.3, 0.4 and ties 0.2 (half); 0.6 loses to 0.7 -> (24 - 4 - 0.5) / 24
    assert m["roc_auc"] == pytest.approx(19.5 / 24)
    # AP: ranks 0.9 (P=1), 0.8 (P=1), 0.7 normal, 0.6 (P=3/4), then 0.4, 0.3 normal, 0.2 tie
    # (anomalous and normal at one score count at once: 4 of 8 flagged, P=1/2) -> mean of the 4
    assert m["pr_auc"] == pytest.approx((1 + 1 + 0.75 + 0.5) / 4)


def test_all_normal_classifier_has_high_accuracy_and_zero_f1() -> None:
    # the seed paper's trap: 5.7% anomalies -> "always normal" is 94.3% accurate
    y = np.r_[np.zeros(943), np.ones(57)].astype(int)
    m = M.window_metrics(y, np.zeros(1000), threshold=0.5)
    assert m["accuracy"] == pytest.approx(0.943)
    assert (m["recall"], m["precision"], m["f1"], m["fpr"]) == (0.0, 0.0, 0.0, 0.0)
    assert m["roc_auc"] == pytest.approx(0.5)  # all tied
    assert m["pr_auc"] == pytest.approx(0.057)  # = prevalence


def test_random_scorer_scores_badly() -> None:
    rng = np.random.default_rng(1)
    y = (rng.random(20_000) < 0.057).astype(int)
    s = rng.random(20_000)
    m = M.window_metrics(y, s, threshold=M.threshold_at_fpr(s[y == 0], 0.005))
    assert abs(m["roc_auc"] - 0.5) < 0.03
    assert m["pr_auc"] < 0.08  # ~ prevalence
    assert m["recall"] < 0.02 and m["f1"] < 0.05


def test_perfect_scorer() -> None:
    y = np.array([0, 0, 1, 1])
    m = M.window_metrics(y, np.array([0.1, 0.2, 0.8, 0.9]), 0.5)
    assert (m["f1"], m["fpr"], m["roc_auc"], m["pr_auc"]) == (1.0, 0.0, 1.0, 1.0)


def test_single_class_auc_is_nan_not_an_error() -> None:
    m = M.window_metrics(np.zeros(5, int), np.arange(5.0), 2.0)
    assert np.isnan(m["roc_auc"]) and np.isnan(m["pr_auc"])


def test_threshold_at_fpr_flags_at_most_the_budget() -> None:
    normal = np.arange(1000, dtype=float)
    t = M.threshold_at_fpr(normal, 0.005)
    assert (normal >= t).sum() == 5
    ties = np.r_[np.zeros(990), np.ones(10)]  # 10 tied at the top, budget 5 -> none of them
    assert (ties >= M.threshold_at_fpr(ties, 0.005)).sum() == 0


def test_threshold_best_f1_respects_the_fpr_bound() -> None:
    # normal scores 0..99; anomalies at 50.5 (10 of them) and 200 (5): the best F1 without a bound
    # would flag 50.5 and 49 normals; with FPR <= 5% only the 200s (and >= 95 normals) qualify
    y = np.r_[np.zeros(100), np.ones(15)].astype(int)
    s = np.r_[np.arange(100.0), np.full(10, 50.5), np.full(5, 200.0)]
    t = M.threshold_best_f1(y, s, max_fpr=0.05)
    assert ((s >= t) & (y == 0)).sum() <= 5
    assert t == 200.0  # flagging only the 5 clear ones: F1 = 2*5/(5+15) = 0.5, the best allowed


def test_recall_by_scenario() -> None:
    pred = np.array([1, 0, 1, 1, 0])
    scen = np.array([0, 1, 1, 2, 2])
    assert M.recall_by_scenario(pred, scen, ("normal", "a", "b")) == {"a": 0.5, "b": 0.5}


def test_bootstrap_ci_contains_the_estimate_and_shrinks_with_data() -> None:
    rng = np.random.default_rng(0)
    def ci_width(n: int) -> tuple[float, float, float]:
        x = rng.random(n)
        lo, hi = M.bootstrap_ci(lambda i: float(x[i].mean()), np.arange(n) // 10, n_boot=200, seed=0)
        return lo, hi, float(x.mean())
    lo, hi, est = ci_width(400)
    assert lo < est < hi
    lo2, hi2, _ = ci_width(10_000)
    assert hi2 - lo2 < (hi - lo) / 3


def test_block_groups_keep_instrument_and_time_blocks() -> None:
    g = M.block_groups(np.array(["A", "A", "A", "B"]), np.array([0, 59, 60, 0]), 60)
    assert g[0] == g[1] != g[2] and g[3] not in (g[0], g[2])


def test_coalesce_merges_runs_and_closes_after_gaps() -> None:
    # panes 0..19 on one instrument; flagged 2,3,5 (gap of one unflagged: same alert), then 12
    pane = np.arange(20)
    flag = np.isin(pane, [2, 3, 5, 12])
    alerts = coalesce(np.full(20, "A"), pane, flag, slide_ms=5000, n_buckets=12)
    assert [(a.start_ms, a.end_ms, a.open_ms) for a in alerts] == [
        ((2 - 11) * 5000, 6 * 5000, 3 * 5000), ((12 - 11) * 5000, 13 * 5000, 13 * 5000)]


def test_coalesce_splits_instruments() -> None:
    alerts = coalesce(np.array(["A", "B"]), np.array([3, 3]), np.array([True, True]), 5000, 12)
    assert sorted(a.instrument for a in alerts) == ["A", "B"]


def test_grade_detection_delay_and_false_alerts() -> None:
    eps = pd.DataFrame({"instrument": ["A", "A"], "scenario": ["wash_trade", "pinging"],
                        "start_ts": [100_000 * 10**6, 500_000 * 10**6], "end_ts": [130_000 * 10**6, 510_000 * 10**6]})
    alerts = [Alert("A", 60_000, 140_000, 115_000),  # detects ep 0, 15 s after its start
              Alert("A", 900_000, 950_000, 905_000),  # false
              Alert("B", 100_000, 140_000, 120_000)]  # other instrument: false
    g = grade(eps, alerts, instrument_hours=2.0)
    assert (g.episodes, g.detected, g.alerts, g.false_alerts) == (2, 1, 3, 2)
    assert g.delays_s == [15.0]
    assert g.false_per_instrument_hour == 1.0
    assert g.by_scenario == {"wash_trade": (1, 1), "pinging": (1, 0)}
    # an alert on an exempt (ungraded) episode is not false
    g2 = grade(eps.iloc[:1], alerts, 2.0, exempt=eps.iloc[1:].assign(start_ts=900_000 * 10**6, end_ts=901_000 * 10**6))
    assert g2.false_alerts == 1


def test_alerts_from_stream_events_keep_latest_interval_and_first_open() -> None:
    ev = [{"alert_id": "x", "seq": 1, "instrument": "A", "episode_start": 0, "episode_end": 90, "window_end": 90},
          {"alert_id": "x", "seq": 0, "instrument": "A", "episode_start": 0, "episode_end": 60, "window_end": 60}]
    assert alerts_from_events(ev) == [Alert("A", 0, 90, 60)]
