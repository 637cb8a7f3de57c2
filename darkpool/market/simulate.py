"""The simulator end to end: universe -> regimes -> episodes -> NBBO -> normal flow -> tables.

`simulate(cfg)` returns three Arrow tables; `write(result, out_dir)` writes them as
`events.parquet` (LABELED_SCHEMA, sorted by ts), `episodes.parquet` (EPISODE_SCHEMA) and
`regimes.parquet` (REGIME_SCHEMA: the calm/volatile/high_volume spells per instrument,
for evaluation by regime). Same config and seed -> identical tables.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from darkpool.market.config import SimConfig
from darkpool.market.episodes import make_episodes
from darkpool.market.events import CANCEL, COLUMNS, Block, size, time_order
from darkpool.market.flow import normal_flow
from darkpool.market.nbbo import base_returns, finish_nbbo
from darkpool.market.table import (
    CODED_SCHEMA,
    DICT_COLUMNS,
    PRICE_INPUTS,
    decode,
    events_table,
    prices,
)
from darkpool.market.universe import Universe, make_regimes, make_universe, regime_spells
from udfs.schemas import EPISODE_SCHEMA, validate_table

REGIME_SCHEMA = pa.schema(
    [
        pa.field("instrument", pa.string(), nullable=False),
        pa.field("start_ts", pa.int64(), nullable=False),  # spell [start_ts, end_ts), epoch ns
        pa.field("end_ts", pa.int64(), nullable=False),
        pa.field("regime", pa.string(), nullable=False),  # calm | volatile | high_volume
    ]
)
T = TypeVar("T")
__all__ = ["CODED_SCHEMA", "FILES", "REGIME_SCHEMA", "SimResult", "read_events", "simulate", "write"]
FILES = {"events": "events.parquet", "episodes": "episodes.parquet", "regimes": "regimes.parquet"}


@dataclass(frozen=True)
class SimResult:
    coded: pa.Table  # the events in CODED_SCHEMA (or LABELED_SCHEMA), sorted by ts
    episodes: pa.Table  # EPISODE_SCHEMA
    regimes: pa.Table  # REGIME_SCHEMA
    config: SimConfig

    @functools.cached_property
    def events(self) -> pa.Table:
        """The events in LABELED_SCHEMA, decoded on first use (`write` does not need it)."""
        return decode(self.coded)


def _trim(cfg: SimConfig, rng: np.random.Generator, flow: Block, n_rows: int) -> np.ndarray | None:
    """Mask keeping exactly `n_rows` of the normal flow: what falls after the close goes,
    then random cancels (an order whose cancel is dropped simply rests until the close).
    None when the flow is too small. A mask, not a copy: the caller gathers rows once."""
    keep = flow["ts"] < cfg.close_ns
    excess = int(keep.sum()) - n_rows
    cancels = np.flatnonzero(keep & (flow["ev"] == CANCEL))
    if not 0 <= excess <= len(cancels):
        return None
    keep[rng.choice(cancels, size=excess, replace=False)] = False
    return keep


def _sorted_flow(cfg: SimConfig, rng: np.random.Generator, uni: Universe, regime: np.ndarray,
                 n_events: float) -> tuple[Block, np.ndarray]:
    """About `n_events` normal-flow rows, and their time order (sorted here, in the worker
    thread, while the episodes and the lit market are drawn)."""
    flow = normal_flow(cfg, rng, uni, regime, n_events, 0)
    return flow, time_order(flow["ts"])


def _normal_rows(cfg: SimConfig, rng: np.random.Generator, uni: Universe, regime: np.ndarray, n_rows: int,
                 first: tuple[Block, np.ndarray]) -> tuple[Block, np.ndarray]:
    """Normal flow and the time-ordered rows of exactly `n_rows` of it: `first` was drawn
    ~4% larger; if it still falls short (rare), draw again, larger."""
    factor = 1.04
    flow, order = first
    for _ in range(6):
        keep = _trim(cfg, rng, flow, n_rows)
        if keep is not None:
            return flow, order[keep[order]]
        factor *= 1.05 * n_rows / max(int((flow["ts"] < cfg.close_ns).sum()), 1)
        flow, order = _sorted_flow(cfg, rng, uni, regime, n_rows * factor)
    raise RuntimeError(f"could not size the normal flow to {n_rows} rows; report this config: {cfg}")


def _merged_order(flow_ts: np.ndarray, flow_rows: np.ndarray, ep_ts: np.ndarray) -> np.ndarray:
    """Time order of flow rows `flow_rows` (already time-ordered) and all episode rows, as
    indices into concat([flow, episodes]). Ties: flow first (deterministic either way;
    an order's fill/cancel is always at least 1 us after its new)."""
    ep_order = time_order(ep_ts)
    at = np.searchsorted(flow_ts[flow_rows], ep_ts[ep_order], side="right") + np.arange(len(ep_order))
    out = np.empty(len(flow_rows) + len(ep_order), dtype=np.int64)
    is_ep = np.zeros(len(out), dtype=bool)
    is_ep[at] = True
    out[at] = len(flow_ts) + ep_order
    out[~is_ep] = flow_rows
    return out


def _gather(flow: Block, episodes: Block, rows: np.ndarray, names: tuple[str, ...] | list[str]) -> Block:
    """Columns `names` of concat([flow, episodes]) at `rows` (each thread gathers what it needs)."""
    return {n: np.concatenate([flow[n], episodes[n]])[rows] for n in names}


class _Stages:
    """Progress bar over the stages, and per-stage wall times for the benchmark."""

    def __init__(self, progress: bool, timings: dict[str, float] | None) -> None:
        self.bar = tqdm(total=3, desc="generate", disable=not progress, unit="stage")
        self.timings = timings if timings is not None else {}
        self.t = time.perf_counter()

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = now - self.t
        self.t = now
        self.bar.set_postfix_str(name)
        self.bar.update()


def _timed(timings: dict[str, float], name: str, fn: Callable[..., T], *args: object) -> T:
    t = time.perf_counter()
    out = fn(*args)
    timings[name] = time.perf_counter() - t
    return out


def simulate(cfg: SimConfig, progress: bool = False, timings: dict[str, float] | None = None) -> SimResult:
    """Generate one data set; `timings` (if given) receives the seconds per stage.

    Two cores: the normal flow (and its time order) is drawn in a worker thread while
    this thread draws the episodes and, in another worker, the lit market; then prices
    and the table's columns are built side by side (big numpy and Arrow calls release the
    GIL). Each part has its own random stream spawned from the seed, so the result does
    not depend on thread timing.
    """
    bar = _Stages(progress, timings)
    streams = np.random.SeedSequence(cfg.seed).spawn(5)
    rng_uni, rng_ep, rng_nbbo, rng_flow, rng_trim = (np.random.default_rng(s) for s in streams)
    uni = make_universe(cfg, rng_uni)
    n_cells = cfg.duration_s * 1000 // cfg.grid_ms
    regime = make_regimes(cfg, rng_uni, n_cells, uni.n_inst)
    target = int(round(cfg.anomaly_rate * cfg.n_events))
    n_flow = (cfg.n_events - target) * 1.04
    parallel: dict[str, float] = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        flow_f = pool.submit(_timed, parallel, "normal_flow", _sorted_flow, cfg, rng_flow, uni, regime, n_flow)
        base_f = pool.submit(_timed, parallel, "nbbo_base", base_returns, cfg, rng_nbbo, uni, regime)
        episodes, impacts, ep_rows = _timed(parallel, "episodes", make_episodes, cfg, rng_ep, uni, target, [0])
        nbbo = _timed(parallel, "nbbo_finish", finish_nbbo, cfg, uni, *base_f.result(), impacts)
        first_flow = flow_f.result()
    bar.timings.update({f"{k} (in parallel)": v for k, v in parallel.items()})
    bar.done("parallel_phase")
    if size(episodes) >= cfg.n_events:
        raise ValueError(f"anomaly_rate {cfg.anomaly_rate} leaves no room for normal flow in {cfg.n_events} events")
    flow, flow_rows = _normal_rows(cfg, rng_trim, uni, regime, cfg.n_events - size(episodes), first_flow)
    episodes = dict(episodes, oid=episodes["oid"] + int(flow["oid"].max(initial=-1)) + 1)  # ids after the flow's
    rows = _merged_order(flow["ts"], flow_rows, episodes["ts"])
    bar.done("trim_and_order")

    with ThreadPoolExecutor(max_workers=1) as pool:
        priced = pool.submit(lambda: prices(cfg, nbbo, _gather(flow, episodes, rows, PRICE_INPUTS)))
        b = _gather(flow, episodes, rows, [c for c in COLUMNS if c not in ("pk", "pv", "episode")])
        events = events_table(cfg, uni, b, *priced.result())
    episodes_t = pa.Table.from_pydict(ep_rows, schema=EPISODE_SCHEMA)
    regimes_t = pa.Table.from_pydict(regime_spells(cfg, regime, uni.symbols), schema=REGIME_SCHEMA)
    bar.done("price_and_tables")
    bar.bar.close()
    return SimResult(events, episodes_t, regimes_t, cfg)


def write(result: SimResult, out_dir: Path, validate: bool = True) -> dict[str, Path]:
    """Write the three Parquet files. The events are validated against the contract while
    they are being written (two cores), into a temporary file renamed only when valid."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / v for k, v in FILES.items()}
    tmp = out_dir / f".{FILES['events']}.tmp"
    with ThreadPoolExecutor(max_workers=1) as pool:
        check = pool.submit(validate_table, result.coded) if validate else None
        # Speed over size: snappy, dictionaries only for the low-cardinality strings, delta
        # encoding for the sorted timestamps, statistics only where readers filter.
        # No Arrow schema in the file: readers get plain strings (LABELED_SCHEMA), not
        # the in-memory dictionary encoding. Values go to the column writers 64k at a
        # time (default 1k): less per-batch overhead, ~10% less CPU, same file.
        pq.write_table(result.coded, tmp, compression="snappy", row_group_size=1 << 20,
                       use_dictionary=DICT_COLUMNS, column_encoding={"ts": "DELTA_BINARY_PACKED"},
                       write_statistics=["ts", "instrument"], store_schema=False, write_batch_size=1 << 16)
        try:
            if check is not None:
                check.result()
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    tmp.replace(paths["events"])
    pq.write_table(result.episodes, paths["episodes"])
    pq.write_table(result.regimes, paths["regimes"])
    return paths


def read_events(path: Path) -> pa.Table:
    """Read an events Parquet file (a folder means its events.parquet), with a clear error."""
    path = Path(path)
    if path.is_dir():
        path = path / FILES["events"]
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; create it with `darkpool generate --out {path.parent}`")
    return pq.read_table(path)
