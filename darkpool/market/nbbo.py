"""The lit market beside the dark pool: one NBBO path per instrument on a time grid.

Log-mid returns = common market factor + idiosyncratic part, scaled by the instrument's volatility,
regime, a slow stochastic-volatility factor and the intraday U shape; fat tails from a
rare jumps. Manipulation episodes add their price impact (and spread widening) on top,
so the lit market reacts to momentum ignition, spoofing and marking the close.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from darkpool.market.config import NS, SimConfig
from darkpool.market.universe import REGIME_SPREAD, REGIME_VOL, Universe

SV_STEP_S = 60  # the stochastic-volatility factor moves once a minute
JUMP_P = 2e-4  # chance per grid cell of a jump ...
JUMP_SCALE = 8.0  # ... this many sigmas wide
SPREAD_BLOCK_S = 10  # spread flicker is held this long (quotes do not flicker every 500 ms)


@dataclass(frozen=True)
class Impact:
    """Price pressure from an episode on its instrument's lit market."""

    inst: int
    t0: int  # ns, start of the push
    t1: int  # ns, end of the push
    logret: float  # total log-price move over [t0, t1)
    revert: float = 0.0  # fraction of the move given back afterwards ...
    revert_s: float = 120.0  # ... over this many seconds
    spread_add: int = 0  # extra ticks of spread during [t0, t1)


@dataclass(frozen=True)
class Nbbo:
    open_ns: int
    cell_ns: int
    bid_t: np.ndarray  # int32 (n_inst, n_cells): best bid in ticks
    ask_t: np.ndarray  # int32 (n_inst, n_cells): best offer in ticks

    def lookup(self, inst: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n_cells = self.bid_t.shape[1]
        cell = np.clip((ts - self.open_ns) // self.cell_ns, 0, n_cells - 1)
        flat = inst.astype(np.int64) * n_cells + cell
        return self.bid_t.ravel()[flat].astype(np.int64), self.ask_t.ravel()[flat].astype(np.int64)


def intraday_u(cfg: SimConfig, n_cells: int) -> np.ndarray:
    """Activity/volatility multiplier by time of day: high after the open and into the close."""
    cell_s = cfg.grid_ms / 1000
    tod = (cfg.open_ns - cfg.regular_open_ns) / NS + np.arange(n_cells) * cell_s
    return 1 + 1.5 * np.exp(-tod / 1800) + 1.0 * np.exp(-(23_400 - tod) / 1200)


def _stochastic_vol(rng: np.random.Generator, n_inst: int, n_cells: int, cell_s: float) -> np.ndarray:
    steps = int(np.ceil(n_cells * cell_s / SV_STEP_S)) + 1
    x = np.zeros((n_inst, steps))
    x[:, 0] = rng.normal(0, 0.5, n_inst)
    shocks = rng.normal(0, 0.25, (n_inst, steps))
    for k in range(1, steps):  # AR(1), a few hundred steps: cheap
        x[:, k] = 0.95 * x[:, k - 1] + shocks[:, k]
    per = max(1, int(round(SV_STEP_S / cell_s)))
    return np.repeat(np.exp(0.5 * x), per, axis=1)[:, :n_cells]


def _apply_impacts(ret: np.ndarray, spread: np.ndarray, impacts: list[Impact], cfg: SimConfig) -> None:
    cell_ns = cfg.grid_ms * NS // 1000
    n_cells = ret.shape[1]

    def cells(t: int) -> int:
        return int(np.clip((t - cfg.open_ns) // cell_ns, 0, n_cells))

    for imp in impacts:
        c0, c1 = cells(imp.t0), max(cells(imp.t1), cells(imp.t0) + 1)
        c1 = min(c1, n_cells)
        if c0 >= n_cells:
            continue
        ret[imp.inst, c0:c1] += imp.logret / (c1 - c0)
        spread[imp.inst, c0:c1] += imp.spread_add
        if imp.revert:
            r1 = min(n_cells, c1 + max(1, int(imp.revert_s * NS // cell_ns)))
            if r1 > c1:
                ret[imp.inst, c1:r1] -= imp.revert * imp.logret / (r1 - c1)


def base_returns(
    cfg: SimConfig, rng: np.random.Generator, uni: Universe, regime: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Log-mid returns and spreads (ticks) per (instrument, cell), before any episode."""
    n_inst, n_cells = regime.shape
    cell_s = cfg.grid_ms / 1000
    u = intraday_u(cfg, n_cells)
    # In-place arithmetic on the (instrument, cell) grid: this is the biggest array here.
    sigma = REGIME_VOL[regime]
    sigma *= _stochastic_vol(rng, n_inst, n_cells, cell_s)
    sigma *= (uni.daily_vol / np.sqrt(23_400 / cell_s))[:, None] * np.sqrt(u)[None, :]
    market = rng.standard_normal(n_cells)
    ret = rng.standard_normal((n_inst, n_cells))
    # Fat tails: rare jumps (news, sweeps of the lit book) on top of the diffusion.
    jumps = rng.integers(0, ret.size, size=rng.binomial(ret.size, JUMP_P))
    ret.ravel()[jumps] *= JUMP_SCALE
    ret *= 0.8
    ret += (0.6 * uni.beta)[:, None] * market[None, :]
    ret *= sigma

    per = max(1, int(round(SPREAD_BLOCK_S / cell_s)))
    n_blocks = -(-n_cells // per)
    flicker = np.repeat(rng.poisson(0.3, size=(n_inst, n_blocks)), per, axis=1)[:, :n_cells]
    # Regime widening and flicker in steps of a third of the base spread (1 tick for
    # spreads up to 5 ticks), so a 1,000-tick spread flickers as much as a 1-tick one.
    step = np.maximum(1, uni.spread_ticks // 3)[:, None]
    spread = uni.spread_ticks[:, None] + REGIME_SPREAD[regime] * step + flicker * step
    return ret, spread


def close_mid(cfg: SimConfig, nbbo: Nbbo) -> np.ndarray:
    """Each instrument's mid at the close (dollars): where its next session starts."""
    return (nbbo.bid_t[:, -1] + nbbo.ask_t[:, -1]) * (cfg.tick / 2)


def finish_nbbo(cfg: SimConfig, uni: Universe, ret: np.ndarray, spread: np.ndarray, impacts: list[Impact]) -> Nbbo:
    """Add the episodes' impacts, integrate the returns, put bid/ask on the tick grid (in place)."""
    _apply_impacts(ret, spread, impacts, cfg)
    mid_t = np.cumsum(ret, axis=1, out=ret)
    np.exp(mid_t, out=mid_t)
    mid_t *= (uni.price0 / cfg.tick)[:, None]
    mid_t -= spread * 0.5
    bid_t = np.maximum(1, np.rint(mid_t, out=mid_t)).astype(np.int32)
    return Nbbo(cfg.open_ns, cfg.grid_ms * NS // 1000, bid_t, bid_t + spread.astype(np.int32))


def make_nbbo(
    cfg: SimConfig, rng: np.random.Generator, uni: Universe, regime: np.ndarray, impacts: list[Impact]
) -> Nbbo:
    return finish_nbbo(cfg, uni, *base_returns(cfg, rng, uni, regime), impacts)
