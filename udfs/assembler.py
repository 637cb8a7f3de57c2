"""WindowAssembler: the last T panes of each instrument -> its sliding window, per shard.

Input: one pane batch per (instrument shard, pane) (`PANE_BATCH_TYPE`, from
udfs/deadletter.py), keyed by shard. The tumbling window operator fires panes in
watermark order and key_by keeps per-key order, so each instrument's panes arrive in
order. For every instrument in the batch the assembler emits the window that ends at
this pane and covers panes `p-T+1 .. p` (missing panes = empty panes), built by
`udfs.features.window_tensors`: exactly the sliding window of size T * slide evaluated
every slide, restricted, as in training (`udfs.features.windows_from_panes`), to windows
that end at a pane with events.

Why per shard and not per instrument: each record that crosses between the JVM and
Python costs a fixed amount (serialization, the keyed-state round trip, a timer), which
at one record per (instrument, pane) capped the job at ~3-4 ms per window. One record
per (shard, pane) amortizes it over every instrument of the shard, and the window
tensors of the whole shard are computed in one vectorized call.

State, per shard: MapState instrument -> its panes still inside a window (<= T, a pickled
{pane: (float32 bytes, max_ts_ms, participants, counts)}), so only the instruments of a
batch are read and written. An event-time sweep timer every T panes removes the
instruments without a pane in the last T (a quiet instrument holds no state; a quiet
shard's map ends empty). Only a stopped stream, whose watermark never advances again,
leaves state behind; the next watermark clears it.

Output (`WINDOW_BATCH_TYPE`, one record per input batch, instruments in batch order):
    shard, window_end (exclusive end, ms; the same for every instrument of the batch),
    instruments, max_event_ts (latest event per window, ms),
    windows      float32 bytes [n, T, F] (model input, row-major)
    features     float32 bytes [n, F]    mean of each channel over the window
    volatility   [n] window realized mid volatility, bps (regime input)
    volume       [n] window filled shares (regime input)
    participants JSON [[[name, weight], ...] per instrument], weight = share of the top
                 names' events
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from udfs.features import (
    CHANNELS,
    N_CHANNELS,
    N_PANE_CHANNELS,
    PANE_CHANNELS,
    assemble_raw,
    empty_pane,
)

TOP_PARTICIPANTS = 5  # participants named per window

WINDOW_BATCH_FIELDS = (
    "shard", "window_end", "instruments", "max_event_ts", "windows", "features",
    "volatility", "volume", "participants",
)  # fmt: skip
WINDOW_BATCH_TYPE = Types.ROW_NAMED(
    list(WINDOW_BATCH_FIELDS),
    [
        Types.INT(),
        Types.LONG(),
        Types.OBJECT_ARRAY(Types.STRING()),
        Types.PRIMITIVE_ARRAY(Types.LONG()),
        Types.PRIMITIVE_ARRAY(Types.BYTE()),  # bytes in Python: no per-float encoding
        Types.PRIMITIVE_ARRAY(Types.BYTE()),
        Types.PRIMITIVE_ARRAY(Types.DOUBLE()),
        Types.PRIMITIVE_ARRAY(Types.DOUBLE()),
        Types.STRING(),
    ],
)

_VOL = PANE_CHANNELS.index("mid_vol_bps")
_LOGVOL = PANE_CHANNELS.index("log_volume")

# A pane as kept in state: (float32 vector bytes, max_ts_ms, participant names, counts)
PaneEntry = tuple[bytes, int, list[str], list[int]]


def _vector(stored: bytes | np.ndarray) -> np.ndarray:
    """A pane vector as kept in state (float32 bytes: pickles ~10x faster than an ndarray)."""
    if isinstance(stored, bytes):
        return np.frombuffer(stored, dtype=np.float32)
    return np.asarray(stored, dtype=np.float32)


def add_pane(buffer: dict[int, PaneEntry], pane: int, entry: PaneEntry, n_buckets: int) -> dict[int, PaneEntry]:
    """Insert pane `pane` and drop panes that no window ending at or after it contains."""
    buffer = {p: e for p, e in buffer.items() if p > pane - n_buckets}
    buffer[pane] = entry
    return buffer


def _top_participants(buffer: dict[int, PaneEntry]) -> list[list[Any]]:
    counts: dict[str, int] = {}
    for _, _, names, ns in buffer.values():
        for name, n in zip(names, ns, strict=True):
            counts[name] = counts.get(name, 0) + n
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_PARTICIPANTS]
    total = sum(n for _, n in top) or 1
    return [[n, round(c / total, 4)] for n, c in top]


def assemble_batch(
    shard: int, buffers: Sequence[dict[int, PaneEntry]], end_pane: int, n_buckets: int, slide_ms: int,
    instruments: Sequence[str],
) -> Row:  # fmt: skip
    """The WINDOW_BATCH_TYPE row of the windows ending at `end_pane` (pure; unit-tested).

    `buffers[i]` is instrument i's pane buffer after `add_pane` of this pane (so it holds
    only panes inside the window). Empty panes are `empty_pane`, whose volatility and
    volume channels are 0, so the regime sums may run over all T slots.
    """
    slide_ns = slide_ms * 1_000_000
    first = end_pane - n_buckets + 1
    raw = np.tile(empty_pane(slide_ns), (len(buffers), n_buckets, 1))
    for b, buf in enumerate(buffers):
        for p, entry in buf.items():
            if p <= end_pane:  # (a newer pane cannot be there: panes arrive in order per shard)
                raw[b, p - first] = _vector(entry[0])
    tensors = assemble_raw(raw, np.full(len(buffers), end_pane, dtype=np.int64), slide_ns)
    vol = np.sqrt(np.square(raw[:, :, _VOL].astype(np.float64)).sum(1))
    volume = np.expm1(raw[:, :, _LOGVOL].astype(np.float64)).sum(1)
    return Row(
        int(shard),
        (end_pane + 1) * slide_ms,
        list(instruments),
        [max(e[1] for e in buf.values()) for buf in buffers],
        tensors.tobytes(),
        tensors.mean(axis=1).astype(np.float32).tobytes(),
        vol.tolist(),
        volume.tolist(),
        json.dumps([_top_participants(buf) for buf in buffers], separators=(",", ":")),
    )


def window_batch_arrays(value: Any, n_buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """(windows [n, T, F], features [n, F]) of a WINDOW_BATCH_TYPE row."""
    n = len(value[2])
    windows = np.frombuffer(bytes(value[4]), dtype=np.float32).reshape(n, n_buckets, N_CHANNELS)
    features = np.frombuffer(bytes(value[5]), dtype=np.float32).reshape(n, N_CHANNELS)
    return windows, features


def pane_entries(instruments, max_ts_ms, feats, parts, part_n, part_k) -> list[tuple[str, PaneEntry]]:  # noqa: ANN001
    """A pane batch's parallel arrays -> (instrument, state entry) per instrument."""
    vecs = np.asarray(feats, dtype=np.float32)
    if vecs.size != len(instruments) * N_PANE_CHANNELS:
        # A feature/UDAF version mismatch is a deployment bug, not bad input: fail loudly.
        raise ValueError(
            f"pane batch of {len(instruments)} instruments has {vecs.size} floats, expected "
            f"{len(instruments)} x {N_PANE_CHANNELS} (udfs.features.PANE_CHANNELS)"
        )
    vecs = vecs.reshape(len(instruments), N_PANE_CHANNELS)
    out, j = [], 0
    for i, name in enumerate(instruments):
        k = int(part_k[i])
        entry = (vecs[i].tobytes(), int(max_ts_ms[i]), list(parts[j : j + k]), [int(n) for n in part_n[j : j + k]])
        out.append((name, entry))
        j += k
    return out


class WindowAssembler(KeyedProcessFunction):
    """Keyed by shard; input = pane batches (udfs/deadletter.PANE_BATCH_TYPE)."""

    def __init__(self, n_buckets: int, slide_s: int):
        self._t = n_buckets
        self._slide_ms = slide_s * 1000

    def open(self, runtime_context: RuntimeContext) -> None:
        self._panes = runtime_context.get_map_state(
            MapStateDescriptor("panes_by_instrument", Types.STRING(), Types.PICKLED_BYTE_ARRAY())
        )
        self._sweep = runtime_context.get_state(ValueStateDescriptor("sweep_at", Types.LONG()))
        group = runtime_context.get_metrics_group().add_group("darkpool")
        self._windows = group.counter("windows_assembled")
        self._cleared = group.counter("instruments_cleared")

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context):
        shard, pane, instruments, max_ts_ms, feats, parts, part_n, part_k = value
        pane = int(pane)
        names, buffers = [], []
        for name, entry in pane_entries(instruments, max_ts_ms, feats, parts, part_n, part_k):
            buffer = add_pane(self._panes.get(name) or {}, pane, entry, self._t)
            self._panes.put(name, buffer)
            names.append(name)
            buffers.append(buffer)
        # One sweep timer per shard, every T panes: after it, an instrument without a
        # pane in the last T panes can no longer be part of any window.
        sweep_at = (pane // self._t + 2) * self._t * self._slide_ms - 1
        if self._sweep.value() != sweep_at:
            ctx.timer_service().register_event_time_timer(sweep_at)  # same ts: Flink dedups
            self._sweep.update(sweep_at)
        self._windows.inc(len(names))
        yield assemble_batch(shard, buffers, pane, self._t, self._slide_ms, names)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        # Windows ending after `timestamp` start after pane `oldest_needed` - 1.
        oldest_needed = (timestamp + 1) // self._slide_ms - self._t + 1
        quiet = [name for name, buf in self._panes.items() if max(buf) < oldest_needed]
        for name in quiet:
            self._panes.remove(name)
        self._cleared.inc(len(quiet))
        if self._sweep.value() == timestamp:
            self._sweep.clear()
        return iter(())


__all__ = [
    "CHANNELS", "WINDOW_BATCH_FIELDS", "WINDOW_BATCH_TYPE", "WindowAssembler", "add_pane",
    "assemble_batch", "pane_entries", "window_batch_arrays",
]  # fmt: skip
