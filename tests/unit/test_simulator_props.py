"""Property tests of the simulator's invariants over random small configurations."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.schemas import validate_table
from darkpool.market.config import SimConfig
from darkpool.market.invariants import check_all
from darkpool.market.simulate import simulate

configs = st.builds(
    SimConfig,
    n_instruments=st.integers(1, 5),
    n_events=st.integers(500, 6_000),
    duration_s=st.sampled_from([300, 900, 1_800, 3_600]),
    seed=st.integers(0, 2**32 - 1),
    anomaly_rate=st.sampled_from([0.0, 0.02, 0.057, 0.15]),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs)
def test_invariants_hold_for_any_small_config(cfg: SimConfig) -> None:
    r = simulate(cfg)
    validate_table(r.events)  # the contract
    # time order, session bounds, qty > 0, fills inside the NBBO except off_market_print,
    # labels consistent with the episodes table, order lifecycles, regimes tile the session
    assert check_all(r) == []


@settings(max_examples=5, deadline=None)
@given(cfg=configs)
def test_same_seed_same_data(cfg: SimConfig) -> None:
    a, b = simulate(cfg), simulate(cfg)
    assert a.events.equals(b.events) and a.episodes.equals(b.episodes) and a.regimes.equals(b.regimes)
