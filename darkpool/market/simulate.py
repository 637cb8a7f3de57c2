"""The simulator end to end: universe -> regimes -> episodes -> NBBO -> normal flow -> tables.

`simulate(cfg)` returns three Arrow tables; `write(result, out_dir)` writes them as
`events.parquet` (LABELED_SCHEMA, sorted by ts), `episodes.parquet` (EPISODE_SCHEMA) and
`regimes.parquet` (REGIME_SCHEMA: the calm/volatile/high_volume spells per instrument,
for evaluation by regime). Same config and seed -> identical tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from darkpool.market.config import SimConfig
from darkpool.market.episodes import make_episodes
from darkpool.market.events import CANCEL, NEW, PK_COPY, Block, concat, resolve_prices, size, take
from darkpool.market.flow import normal_flow
from darkpool.market.nbbo import make_nbbo
from darkpool.market.universe import make_regimes, make_universe, regime_spells
from udfs.schemas import EPISODE_SCHEMA, EVENT_KINDS, LABELED_SCHEMA, SCENARIOS, SIDES, validate_table

REGIME_SCHEMA = pa.schema(
    [
        pa.field("instrument", pa.string(), nullable=False),
        pa.field("start_ts", pa.int64(), nullable=False),  # spell [start_ts, end_ts), epoch ns
        pa.field("end_ts", pa.int64(), nullable=False),
        pa.field("regime", pa.string(), nullable=False),  # calm | volatile | high_volume
    ]
)
FILES = {"events": "events.parquet", "episodes": "episodes.parquet", "regimes": "regimes.parquet"}


@dataclass(frozen=True)
class SimResult:
    events: pa.Table  # LABELED_SCHEMA, sorted by ts
    episodes: pa.Table  # EPISODE_SCHEMA
    regimes: pa.Table  # REGIME_SCHEMA
    config: SimConfig


def _normal_rows(cfg: SimConfig, rng: np.random.Generator, uni, regime, n_rows: int, oid0: int) -> Block:  # noqa: ANN001
    """Exactly `n_rows` normal rows: draw a few percent more, then drop random cancels
    (an order whose cancel is dropped simply rests until the close)."""
    factor = 1.04
    for _ in range(6):
        flow = normal_flow(cfg, rng, uni, regime, n_rows * factor, oid0)
        flow = take(flow, flow["ts"] < cfg.close_ns)
        excess = size(flow) - n_rows
        cancels = np.flatnonzero(flow["ev"] == CANCEL)
        if 0 <= excess <= len(cancels):
            keep = np.ones(size(flow), dtype=bool)
            keep[rng.choice(cancels, size=excess, replace=False)] = False
            return take(flow, keep)
        factor *= 1.05 * n_rows / max(size(flow), 1)
    raise RuntimeError(f"could not size the normal flow to {n_rows} rows; report this config: {cfg}")


def _strings(values: list[str] | np.ndarray, idx: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    """Dictionary decode: `values[idx]` as an Arrow string array (null where `null`)."""
    return pa.array(list(values), pa.string()).take(pa.array(idx, mask=null))


def _to_table(cfg: SimConfig, uni, b: Block, price: np.ndarray, bid: np.ndarray, ask: np.ndarray) -> pa.Table:  # noqa: ANN001
    # Order ids are numbered by the time of the order's `new` (rows are sorted by ts), as a
    # venue would assign them, so an id says nothing about who made the order.
    new_rows = np.flatnonzero(b["ev"] == NEW)
    rank = np.full(int(b["oid"].max()) + 1, -1, dtype=np.int64)
    rank[b["oid"][new_rows]] = np.arange(len(new_rows))
    order_no = rank[b["oid"]]
    assert (order_no >= 0).all(), "every order must have a new event"
    order_id = pc.utf8_lpad(pc.cast(pa.array(order_no + 1), pa.string()), width=9, padding="0")
    cols = {
        "ts": pa.array(b["ts"], pa.int64()),
        "instrument": _strings(uni.symbols, b["inst"]),
        "venue": _strings(cfg.venues, b["venue"]),
        "event": _strings(EVENT_KINDS, b["ev"]),
        "order_id": pc.binary_join_element_wise("O", order_id, ""),
        "participant": _strings(uni.part_names, b["part"]),
        "side": _strings(SIDES, b["side"]),
        "price": pa.array(price, pa.float64()),
        "qty": pa.array(b["qty"], pa.int64()),
        "contra": _strings(uni.part_names, np.maximum(b["contra"], 0), null=b["contra"] < 0),
        "bid": pa.array(bid, pa.float64()),
        "ask": pa.array(ask, pa.float64()),
        "hidden": pa.array(b["hidden"], pa.bool_()),
        "label": pa.array(b["label"], pa.int8()),
        "scenario": _strings(SCENARIOS, b["scen"]),
    }
    return pa.table(cols, schema=LABELED_SCHEMA)


def simulate(cfg: SimConfig, progress: bool = False) -> SimResult:
    from tqdm import tqdm

    bar = tqdm(total=5, desc="generate", disable=not progress, unit="stage")
    rng = np.random.default_rng(cfg.seed)
    uni = make_universe(cfg, rng)
    n_cells = cfg.duration_s * 1000 // cfg.grid_ms
    regime = make_regimes(cfg, rng, n_cells, uni.n_inst)
    next_oid = [0]
    target = int(round(cfg.anomaly_rate * cfg.n_events))
    episodes, impacts, ep_rows = make_episodes(cfg, rng, uni, target, next_oid)
    bar.update()
    nbbo = make_nbbo(cfg, rng, uni, regime, impacts)
    bar.update()
    if size(episodes) >= cfg.n_events:
        raise ValueError(f"anomaly_rate {cfg.anomaly_rate} leaves no room for normal flow in {cfg.n_events} events")
    flow = _normal_rows(cfg, rng, uni, regime, cfg.n_events - size(episodes), next_oid[0])
    bar.update()

    b = concat([flow, episodes])
    b = take(b, np.argsort(b["ts"], kind="stable"))
    bid_t, ask_t = nbbo.lookup(b["inst"], b["ts"])
    price = resolve_prices(b, bid_t, ask_t, cfg.tick)
    new_row = np.zeros(int(b["oid"].max()) + 1, dtype=np.int64)
    is_new = b["ev"] == NEW
    new_row[b["oid"][is_new]] = np.flatnonzero(is_new)
    copy = b["pk"] == PK_COPY
    price[copy] = price[new_row[b["oid"][copy]]]
    bar.update()

    events = _to_table(cfg, uni, b, price, np.round(bid_t * cfg.tick, 6), np.round(ask_t * cfg.tick, 6))
    episodes_t = pa.Table.from_pydict(ep_rows, schema=EPISODE_SCHEMA)
    regimes_t = pa.Table.from_pydict(regime_spells(cfg, regime, uni.symbols), schema=REGIME_SCHEMA)
    bar.update()
    bar.close()
    return SimResult(events, episodes_t, regimes_t, cfg)


def write(result: SimResult, out_dir: Path, validate: bool = True) -> dict[str, Path]:
    """Write the three Parquet files; validates the events against the contract first."""
    if validate:
        validate_table(result.events)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / v for k, v in FILES.items()}
    pq.write_table(result.events, paths["events"], compression="zstd", row_group_size=1 << 20)
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
