"""Batch episode generation (batch.py, injectors.py, episodes.py): ragged helpers, and the
episodes table agreeing with the rows, also where placement shifts episodes back from
the close and drops orders that would start before the open (short sessions)."""

from __future__ import annotations

import numpy as np
import pytest

from core.schemas import SCENARIOS
from darkpool.market.batch import first_of, last_of, ragged
from darkpool.market.config import PRESETS, SimConfig
from darkpool.market.episodes import MIN_BUDGET, make_episodes
from darkpool.market.events import NEW
from darkpool.market.universe import make_universe


def test_ragged_groups() -> None:
    group, pos = ragged(np.array([2, 1, 3]))
    assert group.tolist() == [0, 0, 1, 2, 2, 2] and pos.tolist() == [0, 1, 0, 0, 1, 2]
    values = np.arange(6) * 10
    assert first_of(values, np.array([2, 1, 3])).tolist() == [0, 20, 30]
    assert last_of(values, np.array([2, 1, 3])).tolist() == [10, 20, 50]


CONFIGS = [
    PRESETS["tiny"],
    # 5 minutes, 15% anomalous: long episodes are shifted back from the close and lose
    # the orders that would start before the open
    *(SimConfig(n_instruments=2, n_events=6_000, duration_s=300, anomaly_rate=0.15, seed=s) for s in range(4)),
    SimConfig(n_instruments=6, n_events=200_000, anomaly_rate=0.057, seed=11),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.n_instruments}x{c.duration_s}s-{c.seed}")
def test_episode_rows_agree_with_the_episodes_table(cfg: SimConfig) -> None:
    rng = np.random.default_rng(cfg.seed)
    uni = make_universe(cfg, rng)
    target = int(round(cfg.anomaly_rate * cfg.n_events))
    b, impacts, rows = make_episodes(cfg, rng, uni, target, [0])
    n_eps = len(rows["episode_id"])
    assert rows["episode_id"] == list(range(n_eps))
    assert set(rows["scenario"]) == set(SCENARIOS[1:])
    # the anomaly count lands on the target (the last episode may overshoot by a few rows)
    assert -4 <= target - sum(rows["n_events"]) < MIN_BUDGET
    ts, lab = b["ts"], b["label"] == 1
    assert ts.min() >= cfg.open_ns and ts.max() < cfg.close_ns
    assert (b["episode"][~lab] == -1).all() and (b["scen"][~lab] == 0).all() and (b["scen"][lab] > 0).all()
    for e in range(n_eps):
        mine = lab & (b["episode"] == e)
        assert mine.sum() == rows["n_events"][e]
        assert ts[mine].min() == rows["start_ts"][e] and ts[mine].max() == rows["end_ts"][e]
        assert (b["scen"][mine] == SCENARIOS.index(rows["scenario"][e])).all()
        assert set(uni.part_names[b["part"][mine]]) <= set(rows["participants"][e])
        assert (uni.symbols[b["inst"][mine]] == rows["instrument"][e]).all()
    # every order: exactly one new, first; one instrument
    order = np.lexsort((ts, b["oid"]))
    oid, ev, inst = b["oid"][order], b["ev"][order], b["inst"][order]
    first = np.ones(len(oid), dtype=bool)
    first[1:] = oid[1:] != oid[:-1]
    assert (ev[first] == NEW).all() and (ev[~first] != NEW).all()
    head = np.repeat(np.flatnonzero(first), np.diff(np.append(np.flatnonzero(first), len(oid))))
    assert (inst == inst[head]).all()
    # one marked close per instrument; pushes stay on the session's instruments
    closes = [i for i, s in zip(rows["instrument"], rows["scenario"], strict=True) if s == "marking_the_close"]
    assert len(closes) == len(set(closes))
    assert all(0 <= m.inst < cfg.n_instruments and m.t0 <= m.t1 for m in impacts)
