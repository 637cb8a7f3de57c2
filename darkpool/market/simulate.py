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
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from darkpool.market.config import SimConfig
from darkpool.market.episodes import make_episodes
from darkpool.market.events import CANCEL, NEW, PK_COPY, Block, concat, resolve_prices, size, take
from darkpool.market.flow import normal_flow
from darkpool.market.nbbo import base_returns, finish_nbbo
from darkpool.market.universe import Universe, make_regimes, make_universe, regime_spells
from udfs.schemas import (
    EPISODE_SCHEMA,
    EVENT_KINDS,
    LABELED_SCHEMA,
    SCENARIOS,
    SIDES,
    validate_table,
)

REGIME_SCHEMA = pa.schema(
    [
        pa.field("instrument", pa.string(), nullable=False),
        pa.field("start_ts", pa.int64(), nullable=False),  # spell [start_ts, end_ts), epoch ns
        pa.field("end_ts", pa.int64(), nullable=False),
        pa.field("regime", pa.string(), nullable=False),  # calm | volatile | high_volume
    ]
)
DICT_COLUMNS = ["instrument", "venue", "event", "participant", "side", "contra", "scenario"]
T = TypeVar("T")
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


def _normal_rows(cfg: SimConfig, rng: np.random.Generator, uni: Universe, regime: np.ndarray, n_rows: int,
                 first: Block | None) -> tuple[Block, np.ndarray]:
    """Normal flow of exactly `n_rows` rows: `first` was drawn ~4% larger; if it still
    falls short (rare), draw again, larger."""
    factor = 1.04
    flow = first if first is not None else normal_flow(cfg, rng, uni, regime, n_rows * factor, 0)
    for _ in range(6):
        keep = _trim(cfg, rng, flow, n_rows)
        if keep is not None:
            return flow, keep
        factor *= 1.05 * n_rows / max(int((flow["ts"] < cfg.close_ns).sum()), 1)
        flow = normal_flow(cfg, rng, uni, regime, n_rows * factor, 0)
    raise RuntimeError(f"could not size the normal flow to {n_rows} rows; report this config: {cfg}")


# The low-cardinality strings stay dictionary-encoded (codes + a small dictionary) from
# the simulator to the Parquet writer: no 800k-row string columns are built, hashed and
# re-dictionary-encoded by the writer. The file is the same: its columns are strings.
CODED_SCHEMA = pa.schema([
    pa.field(f.name, pa.dictionary(pa.int32(), pa.string()), nullable=f.nullable) if f.name in DICT_COLUMNS else f
    for f in LABELED_SCHEMA
])


def _coded(values: list[str] | tuple[str, ...] | np.ndarray, codes: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    """`values[codes]` as a dictionary array (null where `null`), without copying strings."""
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32, copy=False), mask=null),
                                          pa.array(list(values), pa.string()))


def _order_ids(b: Block) -> pa.Array:
    """`O<n>`, n numbered by the time of the order's `new` (rows are sorted by ts), as a
    venue would assign them, so an id says nothing about who made the order."""
    new_rows = np.flatnonzero(b["ev"] == NEW)
    rank = np.full(int(b["oid"].max()) + 1, -1, dtype=np.int64)
    rank[b["oid"][new_rows]] = np.arange(1, len(new_rows) + 1)
    order_no = rank[b["oid"]]
    assert (order_no > 0).all(), "every order must have a new event"
    return pc.binary_join_element_wise("O", pc.cast(pa.array(order_no), pa.string()), "")


def _to_table(cfg: SimConfig, uni: Universe, b: Block, price: np.ndarray, bid: np.ndarray, ask: np.ndarray) -> pa.Table:
    """The events in CODED_SCHEMA (LABELED_SCHEMA with dictionary-encoded strings)."""
    cols = {
        "instrument": _coded(uni.symbols, b["inst"]),
        "venue": _coded(cfg.venues, b["venue"]),
        "event": _coded(EVENT_KINDS, b["ev"]),
        "order_id": _order_ids(b),
        "participant": _coded(uni.part_names, b["part"]),
        "side": _coded(SIDES, b["side"]),
        "contra": _coded(uni.part_names, np.maximum(b["contra"], 0), null=b["contra"] < 0),
        "scenario": _coded(SCENARIOS, b["scen"]),
        "ts": pa.array(b["ts"], pa.int64()),
        "price": pa.array(price, pa.float64()),
        "qty": pa.array(b["qty"], pa.int64()),
        "bid": pa.array(bid, pa.float64()),
        "ask": pa.array(ask, pa.float64()),
        "hidden": pa.array(b["hidden"], pa.bool_()),
        "label": pa.array(b["label"], pa.int8()),
    }
    return pa.table([cols[name] for name in CODED_SCHEMA.names], schema=CODED_SCHEMA)


def decode(coded: pa.Table) -> pa.Table:
    """CODED_SCHEMA -> LABELED_SCHEMA (plain string columns)."""
    return coded.cast(LABELED_SCHEMA)


class _Stages:
    """Progress bar over the stages, and per-stage wall times for the benchmark."""

    def __init__(self, progress: bool, timings: dict[str, float] | None) -> None:
        self.bar = tqdm(total=4, desc="generate", disable=not progress, unit="stage")
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

    The episodes (Python-heavy) run in this thread while the normal flow and the base NBBO
    path (big numpy arrays, which release the GIL) run in worker threads: the two cores
    overlap. Each part has its own random stream spawned from the seed, so the result
    does not depend on thread timing.
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
        flow_f = pool.submit(_timed, parallel, "normal_flow", normal_flow, cfg, rng_flow, uni, regime, n_flow, 0)
        base_f = pool.submit(_timed, parallel, "nbbo_base", base_returns, cfg, rng_nbbo, uni, regime)
        next_oid = [0]
        episodes, impacts, ep_rows = _timed(parallel, "episodes", make_episodes, cfg, rng_ep, uni, target, next_oid)
        first_flow, (ret, spread) = flow_f.result(), base_f.result()
    bar.timings.update({f"{k} (in parallel)": v for k, v in parallel.items()})
    bar.done("parallel_phase")
    nbbo = finish_nbbo(cfg, uni, ret, spread, impacts)
    if size(episodes) >= cfg.n_events:
        raise ValueError(f"anomaly_rate {cfg.anomaly_rate} leaves no room for normal flow in {cfg.n_events} events")
    flow, keep = _normal_rows(cfg, rng_trim, uni, regime, cfg.n_events - size(episodes), first_flow)
    episodes = dict(episodes, oid=episodes["oid"] + int(flow["oid"].max(initial=-1)) + 1)  # ids after the flow's
    bar.done("nbbo_and_trim")

    b = concat([flow, episodes])
    rows = np.flatnonzero(np.concatenate([keep, np.ones(size(episodes), dtype=bool)]))
    # One gather for trim + time order. Ties in ts are broken deterministically by the
    # sort; an order's fill/cancel is always at least 1 us after its new.
    b = take(b, rows[np.argsort(b["ts"][rows])])
    bid_t, ask_t = nbbo.lookup(b["inst"], b["ts"])
    price = resolve_prices(b, bid_t, ask_t, cfg.tick)
    new_row = np.zeros(int(b["oid"].max()) + 1, dtype=np.int64)
    is_new = b["ev"] == NEW
    new_row[b["oid"][is_new]] = np.flatnonzero(is_new)
    copy = b["pk"] == PK_COPY
    price[copy] = price[new_row[b["oid"][copy]]]
    bar.done("sort_and_price")

    events = _to_table(cfg, uni, b, price, np.round(bid_t * cfg.tick, 6), np.round(ask_t * cfg.tick, 6))
    episodes_t = pa.Table.from_pydict(ep_rows, schema=EPISODE_SCHEMA)
    regimes_t = pa.Table.from_pydict(regime_spells(cfg, regime, uni.symbols), schema=REGIME_SCHEMA)
    bar.done("arrow_tables")
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
        # the in-memory dictionary encoding.
        pq.write_table(result.coded, tmp, compression="snappy", row_group_size=1 << 20,
                       use_dictionary=DICT_COLUMNS, column_encoding={"ts": "DELTA_BINARY_PACKED"},
                       write_statistics=["ts", "instrument"], store_schema=False)
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
