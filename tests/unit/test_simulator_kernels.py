"""The simulator's fast numpy kernels give exactly what the plain numpy calls give."""

from __future__ import annotations

import numpy as np
import pytest

from darkpool.market.config import PRESETS
from darkpool.market.events import time_order
from darkpool.market.universe import inverse_cdf, make_universe


@pytest.mark.parametrize("span", [0, 1_000, 23_400 * 10**9, 2**62])
@pytest.mark.parametrize("n", [0, 1, 7, 50_000])
def test_time_order_is_a_stable_argsort(span: int, n: int) -> None:
    rng = np.random.default_rng(n + span % 97)
    ts = 1_772_460_000 * 10**9 + rng.integers(0, span + 1, n)
    ts[: n // 10] = ts[n // 10 : 2 * (n // 10)]  # ties
    assert np.array_equal(time_order(ts), np.argsort(ts, kind="stable"))


def test_inverse_cdf_is_searchsorted() -> None:
    uni = make_universe(PRESETS["default"], np.random.default_rng(3))
    rng = np.random.default_rng(1)
    for cdf in (uni.order_cdf, uni.contra_cdf, np.array([0.5, 0.8, 1.0]), np.array([1.0]),
                np.array([0.0, 0.0, 0.3, 0.3, 0.9999999999])):
        u = np.concatenate([rng.random(100_000), cdf, np.nextafter(cdf, 0), [0.0, np.nextafter(1.0, 0)]])
        u = u[(u >= 0) & (u < 1)]
        assert np.array_equal(inverse_cdf(cdf, u), np.minimum(np.searchsorted(cdf, u), len(cdf) - 1))


def _resolve_by_kind(pk, pv, bid_t, ask_t, tick):
    """The per-kind (masked) formulation of events.resolve_prices, for reference."""
    from darkpool.market.events import PK_COPY, PK_INSIDE, PK_LIMIT, PK_OFF

    mid2 = bid_t + ask_t
    half = np.empty(len(pk))
    lim, ins, off = pk == PK_LIMIT, pk == PK_INSIDE, pk == PK_OFF
    half[lim] = 2 * np.maximum(1, np.rint(mid2[lim] / 2 + pv[lim]))
    frac = (np.clip(pv[ins], -1, 1) + 1) / 2
    half[ins] = np.rint(2 * bid_t[ins] + frac * 2 * (ask_t[ins] - bid_t[ins]))
    mag = np.maximum(1, np.ceil(np.abs(pv[off]) * mid2[off] / 2))
    below = bid_t[off] - mag
    half[off] = 2 * np.where((pv[off] > 0) | (below < 1), ask_t[off] + mag, below)
    half[pk == PK_COPY] = np.nan
    return np.round(half * (tick / 2), 6)


def test_resolve_prices_matches_the_per_kind_formulas() -> None:
    from darkpool.market.events import resolve_prices

    rng = np.random.default_rng(4)
    n = 200_000
    bid_t = rng.integers(1, 100_000, n)
    ask_t = bid_t + rng.integers(1, 6, n)
    pk = rng.integers(0, 4, n).astype(np.int8)
    pv = np.where(pk == 0, rng.integers(-3, 4, n), np.where(pk == 2, rng.uniform(-0.05, 0.05, n),
                                                           rng.choice([-1.5, -1, -0.5, -0.3, 0, 0.25, 0.5, 0.9, 1], n)))
    pv = pv.astype(float)
    for tick in (0.01, 0.05):
        got = resolve_prices({"pk": pk, "pv": pv}, bid_t, ask_t, tick)
        assert np.array_equal(got, _resolve_by_kind(pk, pv, bid_t, ask_t, tick), equal_nan=True)
