"""The simulator end to end: universe -> regimes -> episodes -> NBBO -> normal flow -> tables.

`simulate(cfg)` returns three Arrow tables; `write(result, out_dir)` writes them as
`events.parquet` (LABELED_SCHEMA, sorted by ts), `episodes.parquet` (EPISODE_SCHEMA) and
`regimes.parquet` (REGIME_SCHEMA: the calm/volatile/high_volume spells per instrument,
for evaluation by regime). Same config and seed -> identical tables. Several sessions
(`SimConfig.sessions`) are simulated one after the other and written as one data set.
"""

from __future__ import annotations

import dataclasses
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

from core.schemas import EPISODE_SCHEMA, validate_table
from darkpool.market.config import MAX_EVENTS, SimConfig
from darkpool.market.episodes import make_episodes
from darkpool.market.events import CANCEL, COLUMNS, Block, size, time_order
from darkpool.market.flow import normal_flow
from darkpool.market.nbbo import base_returns, close_mid, finish_nbbo
from darkpool.market.table import (
    CODED_SCHEMA,
    DICT_COLUMNS,
    PRICE_INPUTS,
    decode,
    events_table,
    prices,
)
from darkpool.market.universe import Universe, make_regimes, make_universe, regime_spells

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

    def __init__(self, progress: bool, timings: dict[str, float] | None, total: int = 3) -> None:
        self.bar = tqdm(total=total, desc="generate", disable=not progress, unit="stage")
        self.timings = timings if timings is not None else {}
        self.t = time.perf_counter()

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + now - self.t
        self.t = now
        self.bar.set_postfix_str(name)
        self.bar.update()


def _timed(timings: dict[str, float], name: str, fn: Callable[..., T], *args: object) -> T:
    t = time.perf_counter()
    out = fn(*args)
    timings[name] = time.perf_counter() - t
    return out


def resolve(cfg: SimConfig, uni: Universe) -> SimConfig:
    """`cfg` with `n_events` set: a varied config without one gets what its instruments'
    rates give (normal events/s x session length x sessions, plus the anomalous share)."""
    if cfg.n_events is not None:
        return cfg
    normal = float(uni.activity.sum()) * cfg.duration_s
    per_session = max(100, int(round(normal / (1 - cfg.anomaly_rate))))
    n_events = per_session * cfg.sessions
    if n_events > MAX_EVENTS:
        raise ValueError(f"these rates give {n_events:,} events (> {MAX_EVENTS:,}); lower the rates, the "
                         "instruments, the session length or the sessions")
    return cfg.replace(n_events=n_events)


def _session_sizes(cfg: SimConfig) -> list[int]:
    """Rows of each session: an equal share, the remainder to the first ones."""
    q, r = divmod(cfg.n_events, cfg.sessions)
    return [q + (k < r) for k in range(cfg.sessions)]


@dataclass
class _Session:
    """One simulated session: its time-ordered rows (every block column), prices, tables."""

    rows: Block
    price: tuple[np.ndarray, np.ndarray, np.ndarray]  # price, bid, ask
    episodes: dict[str, list]
    regimes: dict[str, list]
    close_mid: np.ndarray


def _simulate_session(day: SimConfig, streams: list[np.random.SeedSequence], uni: Universe,
                      regime: np.ndarray | None, bar: _Stages) -> _Session:
    """One session (`day` has sessions=1): the normal flow (and its time order) is drawn in
    a worker thread while this thread draws the episodes and, in another worker, the lit
    market; then prices and the gathered columns are built side by side (big numpy calls
    release the GIL). `regime` None: drawn here from the universe stream."""
    rng_uni, rng_ep, rng_nbbo, rng_flow, rng_trim = (np.random.default_rng(s) for s in streams)
    if regime is None:
        regime = make_regimes(day, rng_uni, day.duration_s * 1000 // day.grid_ms, uni)
    target = int(round(day.anomaly_rate * day.n_events))
    n_flow = (day.n_events - target) * 1.04
    parallel: dict[str, float] = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        flow_f = pool.submit(_timed, parallel, "normal_flow", _sorted_flow, day, rng_flow, uni, regime, n_flow)
        base_f = pool.submit(_timed, parallel, "nbbo_base", base_returns, day, rng_nbbo, uni, regime)
        episodes, impacts, ep_rows = _timed(parallel, "episodes", make_episodes, day, rng_ep, uni, target, [0])
        nbbo = _timed(parallel, "nbbo_finish", finish_nbbo, day, uni, *base_f.result(), impacts)
        first_flow = flow_f.result()
    for k, v in parallel.items():
        bar.timings[f"{k} (in parallel)"] = bar.timings.get(f"{k} (in parallel)", 0.0) + v
    bar.done("parallel_phase")
    if size(episodes) >= day.n_events:
        raise ValueError(f"anomaly_rate {day.anomaly_rate} leaves no room for normal flow in {day.n_events} events")
    flow, flow_rows = _normal_rows(day, rng_trim, uni, regime, day.n_events - size(episodes), first_flow)
    episodes = dict(episodes, oid=episodes["oid"] + int(flow["oid"].max(initial=-1)) + 1)  # ids after the flow's
    rows = _merged_order(flow["ts"], flow_rows, episodes["ts"])
    bar.done("trim_and_order")

    with ThreadPoolExecutor(max_workers=1) as pool:
        priced = pool.submit(lambda: prices(day, nbbo, _gather(flow, episodes, rows, PRICE_INPUTS)))
        b = _gather(flow, episodes, rows, [c for c in COLUMNS if c not in ("pk", "pv", "episode")])
        price = priced.result()
    return _Session(b, price, ep_rows, regime_spells(day, regime, uni.symbols), close_mid(day, nbbo))


def _joined(parts: list[_Session]) -> tuple[Block, tuple[np.ndarray, ...], dict[str, list], dict[str, list]]:
    """Sessions one after the other: order ids and episode ids made unique across them."""
    if len(parts) == 1:
        p = parts[0]
        return p.rows, p.price, p.episodes, p.regimes
    oid_at, ep_at = 0, 0
    rows, episodes = [], {k: [] for k in parts[0].episodes}
    for p in parts:
        rows.append(dict(p.rows, oid=p.rows["oid"] + oid_at))
        oid_at += int(p.rows["oid"].max(initial=-1)) + 1
        for k, v in p.episodes.items():
            episodes[k] += [e + ep_at for e in v] if k == "episode_id" else v
        ep_at += len(p.episodes["episode_id"])
    b = {c: np.concatenate([r[c] for r in rows]) for c in rows[0]}
    price = tuple(np.concatenate([p.price[i] for p in parts]) for i in range(3))
    regimes = {k: [x for p in parts for x in p.regimes[k]] for k in parts[0].regimes}
    return b, price, episodes, regimes


OVERNIGHT_VOL = 0.5  # overnight move, in daily volatilities


def simulate(cfg: SimConfig, progress: bool = False, timings: dict[str, float] | None = None) -> SimResult:
    """Generate one data set of `cfg.sessions` sessions; `timings` (if given) receives the
    seconds per stage, summed over the sessions.

    The instruments and participants are drawn once; each session has its own regimes,
    episodes, lit market and flow, from its own random streams spawned from the seed (so
    the result depends neither on thread timing nor, for the first session, on how many
    follow), and opens where the last one closed plus an overnight move.
    """
    root = np.random.SeedSequence(cfg.seed)
    streams = root.spawn(5)  # the first session's: universe, episodes, nbbo, flow, trim
    rng_uni = np.random.default_rng(streams[0])
    uni = make_universe(cfg, rng_uni)
    cfg = resolve(cfg, uni)
    bar = _Stages(progress, timings, 3 * cfg.sessions)
    regime = make_regimes(cfg, rng_uni, cfg.duration_s * 1000 // cfg.grid_ms, uni)
    parts = []
    for k, n_rows in enumerate(_session_sizes(cfg)):
        day_streams = streams if k == 0 else root.spawn(5)
        if k:
            overnight = np.random.default_rng(day_streams[2]).normal(0.0, OVERNIGHT_VOL * uni.daily_vol)
            uni = dataclasses.replace(uni, price0=np.maximum(parts[-1].close_mid * np.exp(overnight), cfg.tick))
        day = cfg.session(k, n_rows)
        parts.append(_simulate_session(day, day_streams, uni, regime if k == 0 else None, bar))
    b, (price, bid, ask), ep_rows, regime_rows = _joined(parts)
    events = events_table(cfg, uni, b, price, bid, ask)
    episodes_t = pa.Table.from_pydict(ep_rows, schema=EPISODE_SCHEMA)
    regimes_t = pa.Table.from_pydict(regime_rows, schema=REGIME_SCHEMA)
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
