"""The pane aggregation: TUMBLE(rowtime, slide) per instrument shard, one pandas UDAF.

Each event crosses into Python exactly once, in the Arrow batch of its (shard, pane)
group, where `core.features.pane_features_by_key` computes the raw pane vector of every
instrument in the group in one vectorized pass (the same kernel training uses). The
sliding window of size T * slide is assembled afterwards, keyed by instrument, from the
last T panes (`udfs.assembler`), instead of a HOP window that would ship every event T
times.

Why shards and not one group per instrument: each group is one pandas call with a fixed
cost (measured ~5 ms per call on the loaded 2-core box, whatever its size), which capped
the job at a few hundred panes per second. A shard = `stable_hash(instrument, shards)`
(udfs/jvm StableHash: String.hashCode mod shards, the same on every JVM and run), so an
instrument always lands in the same group and a pane is never split. The shard count
(JobConfig.pane_shards) is fixed for the life of the job's state, whatever the
parallelism: the shards are the units the keyed state moves in when the job is rescaled.
Fewer shards would amortize the per-call cost over more instruments, but cap the
parallelism at the count.

The UDAF returns `PANE_BATCH`, one entry per instrument of the group, as parallel arrays:
  instruments  ARRAY<STRING>   sorted
  panes        ARRAY<BIGINT>   pane index = ts // slide_ns (same definition as training)
  max_ts_ms    ARRAY<BIGINT>   latest event time in the pane (ms)
  read_ms      ARRAY<BIGINT>   when the source read the pane's latest-read event (wall
                               clock, ms): the alert latency is measured from it
  feats        ARRAY<FLOAT>    len(instruments) x core.features.PANE_CHANNELS, row-major
  parts        ARRAY<STRING>   each instrument's most involved participants, concatenated
  part_n       ARRAY<BIGINT>   their event counts (order owner or fill contra)
  part_k       ARRAY<INT>      how many of `parts` belong to each instrument
  part_stats   ARRAY<FLOAT>    len(parts) x core.participant_account.STATS, row-major: what
                               each named participant did in the pane (the alert's account)
The window assembler (udfs/assembler.py) takes the batch as it is, keyed by shard.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyflink.common import Row
from pyflink.table import DataTypes
from pyflink.table.udf import udaf

from core.features import REQUIRED_COLUMNS, pane_features_by_key
from core.participant_account import pair_stats
from udfs.sources import READ_TIME_COLUMN

TOP_PARTICIPANTS = 5  # per pane; the window keeps the top of their sums

PANE_BATCH = DataTypes.ROW(
    [
        DataTypes.FIELD("instruments", DataTypes.ARRAY(DataTypes.STRING())),
        DataTypes.FIELD("panes", DataTypes.ARRAY(DataTypes.BIGINT())),
        DataTypes.FIELD("max_ts_ms", DataTypes.ARRAY(DataTypes.BIGINT())),
        DataTypes.FIELD("read_ms", DataTypes.ARRAY(DataTypes.BIGINT())),
        DataTypes.FIELD("feats", DataTypes.ARRAY(DataTypes.FLOAT())),
        DataTypes.FIELD("parts", DataTypes.ARRAY(DataTypes.STRING())),
        DataTypes.FIELD("part_n", DataTypes.ARRAY(DataTypes.BIGINT())),
        DataTypes.FIELD("part_k", DataTypes.ARRAY(DataTypes.INT())),
        DataTypes.FIELD("part_stats", DataTypes.ARRAY(DataTypes.FLOAT())),
    ]
)

# UDAF arguments, in order: the instrument, the columns pane_features reads (ts first),
# the order id (cancel times of the participants' accounts), then the source's read time.
UDAF_COLUMNS: tuple[str, ...] = ("instrument", *REQUIRED_COLUMNS, "order_id", READ_TIME_COLUMN)


def top_participants_by_key(
    key: np.ndarray, participant: np.ndarray, contra: np.ndarray, k: int = TOP_PARTICIPANTS
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per key, the k participants with most events (as order owner or fill contra).

    Returns (keys, names, counts, per_key): the rows grouped by key in ascending key order,
    each key's rows by descending count with ties broken by name, and how many rows each
    of the sorted distinct keys got. Plain numpy on factorized codes: a pandas groupby here
    cost ~28 ms per call, more than the pane features themselves.
    """
    has = pd.notna(contra)
    key_codes, key_names = pd.factorize(np.concatenate([key, key[has]]), sort=True)
    name_codes, names = pd.factorize(np.concatenate([participant, contra[has]]), sort=True)
    pair, counts = np.unique(key_codes.astype(np.int64) * len(names) + name_codes, return_counts=True)
    k_of, n_of = pair // len(names), pair % len(names)
    order = np.lexsort((n_of, -counts, k_of))  # key, then count descending, then name
    k_of, n_of, counts = k_of[order], n_of[order], counts[order]
    first = np.searchsorted(k_of, k_of)  # index of each key's first row
    keep = np.arange(len(k_of)) - first < k
    per_key = np.bincount(k_of[keep], minlength=len(key_names))
    return key_names[k_of[keep]], names[n_of[keep]], counts[keep], per_key


class _Frame(dict):
    """Columns by name, the only part of a DataFrame that `pane_features_by_key` reads.

    Building a real DataFrame per group cost more than the features themselves (measured
    ~6 ms of ~12 ms per group on the loaded 2-core box).
    """

    @property
    def columns(self) -> list[str]:
        return list(self.keys())

    def __len__(self) -> int:  # rows, as for a DataFrame
        return len(self["ts"])


def pane_batch(columns: dict[str, pd.Series], slide_ns: int) -> Row:
    """The UDAF body, pure: contract columns of one (shard, pane) group -> PANE_BATCH."""
    keys, X = pane_features_by_key(_Frame(columns), keys=("instrument",), slide_ns=slide_ns)
    instruments = keys["instrument"].to_numpy()
    codes, uniq = pd.factorize(columns["instrument"].to_numpy(), sort=True)  # = instruments
    ts = columns["ts"].to_numpy().astype(np.int64)
    t_min = np.full(len(uniq), np.iinfo(np.int64).max)
    t_max = np.full(len(uniq), np.iinfo(np.int64).min)
    np.minimum.at(t_min, codes, ts)
    np.maximum.at(t_max, codes, ts)
    read = np.zeros(len(uniq), dtype=np.int64)  # 0: not known (a caller without read times)
    if READ_TIME_COLUMN in columns:
        np.maximum.at(read, codes, columns[READ_TIME_COLUMN].to_numpy().astype(np.int64))
    col = {c: columns[c].to_numpy() for c in ("instrument", "participant", "contra", "event", "side", "price",
                                               "qty", "bid", "ask")}  # fmt: skip
    part_keys, names, counts, per_key = top_participants_by_key(col["instrument"], col["participant"], col["contra"])
    stats = pair_stats(
        col["instrument"], col["participant"], col["contra"], col["event"], col["side"], col["price"], col["qty"],
        col["bid"], col["ask"], ts, columns["order_id"].to_numpy() if "order_id" in columns else None,
        want_key=part_keys, want_name=names,
    )  # fmt: skip
    return Row(
        [str(i) for i in instruments],
        (t_min // slide_ns).tolist(),
        (t_max // 1_000_000).tolist(),
        read.tolist(),
        X.reshape(-1).tolist(),
        names.tolist(),
        counts.tolist(),
        per_key.tolist(),
        stats.astype(np.float32).reshape(-1).tolist(),
    )


def make_pane_udaf(slide_ns: int):
    """The pandas UDAF for panes of `slide_ns` (register it, then call it in the SQL)."""

    @udaf(result_type=PANE_BATCH, func_type="pandas")
    def pane_agg(instrument, ts, event, participant, side, price, qty, contra, bid, ask, hidden, order_id,  # noqa: PLR0913
                 read_ms):
        # Argument order = UDAF_COLUMNS.
        cols = (instrument, ts, event, participant, side, price, qty, contra, bid, ask, hidden, order_id, read_ms)
        return pane_batch(dict(zip(UDAF_COLUMNS, cols, strict=True)), slide_ns)

    return pane_agg


SHARD_FUNCTION = "stable_hash"  # udfs/jvm StableHash, registered by udfs.sources.register_functions


def pane_query(main_view: str, slide_s: int, shards: int, udaf_name: str = "pane_agg") -> str:
    """SQL of the pane stream: one row per (instrument shard, pane) that had events."""
    args = ", ".join(UDAF_COLUMNS)
    return f"""SELECT shard, {udaf_name}({args}) AS p
FROM (SELECT *, {SHARD_FUNCTION}(instrument, {int(shards)}) AS shard FROM {main_view})
GROUP BY shard, TUMBLE(rowtime, INTERVAL '{slide_s}' SECOND)"""
