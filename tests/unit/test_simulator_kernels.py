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
