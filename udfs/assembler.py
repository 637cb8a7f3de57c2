"""WindowAssembler: the last T panes of each instrument -> its sliding window, per shard.

Input: one pane batch per (instrument shard, pane) (`PANE_BATCH_TYPE`, from
udfs/deadletter.py), keyed by shard. The tumbling window operator fires panes in
watermark order and key_by keeps per-key order, so each instrument's panes arrive in
order. For every instrument in the batch the assembler emits the window that ends at
this pane and covers panes `p-T+1 .. p` (missing panes = empty panes), built by
`core.features.assemble_raw`: exactly the sliding window of size T * slide evaluated
every slide, restricted, as in training (`core.features.windows_from_panes`), to windows
that end at a pane with events.

Why per shard and not per instrument: each record that crosses between the JVM and
Python costs a fixed amount (serialization, the keyed-state round trip, a timer), which
at one record per (instrument, pane) capped the job at ~3-4 ms per window. One record
per (shard, pane) amortizes it over every instrument of the shard, and the window
tensors of the whole shard are computed in one vectorized call.

State, per shard: MapState instrument -> a pickled {"panes": its panes still inside a
window (<= T, {pane: (float32 bytes, max_ts_ms, participants, counts)}), "normal": its
normal of the level channels (core/pane_normals.PaneNormal bytes, 20 x 24 bytes),
"last": its last active pane}, so only the instruments of a batch are read and written.
A pane that leaves every window is learned by the normal (the window tensors carry the
level channels as deviations from it). An event-time sweep timer every T panes learns
the buffered panes of instruments without a pane in the last T (a quiet instrument then
holds only its normal, ~0.6 kB) and removes instruments silent for
core/pane_normals.IDLE_S (one hour of event time): a quiet shard's map ends empty. Only a stopped
stream, whose watermark never advances again, leaves state behind; the next watermark
clears it. State of the layout before the normals (a bare pane map) restores with a
fresh normal.

Rescaling: the state is keyed by shard, and a shard's key group moves whole between
subtasks when the job restarts from a savepoint at another parallelism, so every
instrument keeps its windows and normal. The shard count itself must not change (an
instrument would hash to another shard, away from its state): each shard also stores
the count it was written with (`shard_count`, one int per shard, kept for the life of
the state), and a restore with another count fails the task with ShardCountChanged.

Output (`WINDOW_BATCH_TYPE`, one record per input batch, instruments in batch order):
    shard, window_end (exclusive end, ms; the same for every instrument of the batch),
    instruments, max_event_ts (latest event per window, ms),
    windows      float32 bytes [n, T, F] (model input, row-major)
    features     float32 bytes [n, F]    mean of each channel over the window
    volatility   [n] window realized mid volatility, bps (regime input)
    volume       [n] window filled shares (regime input)
    participants pickled bytes, per instrument ([(name, weight), ...], accounts): weight =
                 share of the named participants' burst (burst_activity); accounts = what the first
                 ACCOUNT_PARTICIPANTS of them did per buffered pane, [(name, [pane_start_ms,
                 ...], float32 bytes [panes, core.participant_account.STATS]), ...]
                 (`window_participants` decodes it). Bytes, not JSON: the JSON of ~400
                 floats per window cost ~150 us of the per-window path (bench/assembly_bench.py).
    read_ms      [n] when the source read the window's latest-read event (wall clock, ms)
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np
from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from core.features import (
    CHANNELS,
    N_CHANNELS,
    N_PANE_CHANNELS,
    PANE_CHANNELS,
    assemble_raw,
    empty_pane,
)
from core.pane_normals import (
    DEFAULT_SLIDE_S,
    PaneNormal,
    PaneNormals,
    due_to_fold,
    idle_panes,
    is_stale,
)
from core.participant_account import N_STATS, PackedAccount

TOP_PARTICIPANTS = 5  # participants named per window
ACCOUNT_PARTICIPANTS = 2  # of them, those whose per-pane activity travels on (the alert's account)

WINDOW_BATCH_FIELDS = (
    "shard", "window_end", "instruments", "max_event_ts", "windows", "features",
    "volatility", "volume", "participants", "read_ms",
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
        Types.PRIMITIVE_ARRAY(Types.BYTE()),
        Types.PRIMITIVE_ARRAY(Types.LONG()),
    ],
)

_VOL = PANE_CHANNELS.index("mid_vol_bps")
_LOGVOL = PANE_CHANNELS.index("log_volume")

# A pane as kept in state: (float32 vector bytes, max_ts_ms, participant names, counts,
# their float32 [names, N_STATS] activity bytes; entries written before it have 4 items)
PaneEntry = tuple[Any, ...]


def _vector(stored: bytes | np.ndarray) -> np.ndarray:
    """A pane vector as kept in state (float32 bytes: pickles ~10x faster than an ndarray)."""
    if isinstance(stored, bytes):
        return np.frombuffer(stored, dtype=np.float32)
    return np.asarray(stored, dtype=np.float32)


def _layout(stored: dict[Any, Any]) -> tuple[dict[int, PaneEntry], bytes | None, int | None]:
    """An instrument's state value -> (pane buffer, normal bytes or None, last active pane),
    without decoding the normal.

    Layout: {"panes": {pane: PaneEntry}, "normal": PaneNormal bytes, "last": int}. State
    written before the instrument normals (2026-12) is the bare pane buffer; it restores
    with a fresh normal (the instrument warms up again, core/pane_normals.WARMUP_PANES).
    """
    if "panes" not in stored:
        return stored, None, max(stored, default=None)
    return stored["panes"], stored["normal"], stored["last"]


def _unpack(stored: dict[Any, Any] | None, slide_s: int) -> tuple[dict[int, PaneEntry], PaneNormal, int | None]:
    """An instrument's state value -> (a copy of its pane buffer, its normal, last active pane)."""
    if not stored:
        return {}, PaneNormal.fresh(slide_s), None
    buffer, normal, last = _layout(stored)
    return dict(buffer), PaneNormal.from_state(normal, slide_s) if normal else PaneNormal.fresh(slide_s), last


def _pack(buffer: dict[int, PaneEntry], normal: PaneNormal, last: int | None) -> dict[str, Any]:
    return {"panes": buffer, "normal": normal.to_state(), "last": last}


def add_pane(stored: dict[Any, Any] | None, pane: int, entry: PaneEntry, n_buckets: int,
             slide_s: int = DEFAULT_SLIDE_S) -> tuple[dict[str, Any], dict[int, PaneEntry], PaneNormal]:  # fmt: skip
    """Pane `pane` of an instrument arrives: returns (new state value, pane buffer, normal).

    In this order, the order `core.pane_normals.normals_for_windows` replays in training:
    after `IDLE_S` of silence the normal starts afresh (buffered panes dropped
    unlearned); panes that no window ending at or after `pane` contains are learned by
    the normal, oldest first, and leave the buffer; the pane is added. One instrument at
    a time: the reference the operator's `add_panes` is tested against.
    """
    buffer, normal, last = _unpack(stored, slide_s)
    if is_stale(last, pane, slide_s):
        buffer, normal = {}, PaneNormal.fresh(slide_s)
    for p in due_to_fold(list(buffer), pane, n_buckets):
        normal.fold(_vector(buffer.pop(p)[0]))
    buffer[pane] = entry
    return _pack(buffer, normal, pane), buffer, normal


def add_panes(stored: Sequence[dict[Any, Any] | None], pane: int, entries: Sequence[PaneEntry], n_buckets: int,
              slide_s: int = DEFAULT_SLIDE_S) -> tuple[list[dict[str, Any]], list[dict[int, PaneEntry]], PaneNormals]:  # fmt: skip
    """`add_pane` for a shard's whole batch: the instruments' normals are folded together,
    one numpy pass per fold round (`PaneNormals`), the same floats as one by one
    (tests/unit/test_job_parts.py). Returns (new state values, pane buffers, normals)."""
    buffers, normals, due = [], [], []
    for value in stored:
        buffer, normal, last = _layout(value) if value else ({}, None, None)
        buffer = dict(buffer)
        if is_stale(last, pane, slide_s):
            buffer, normal = {}, None
        due.append([_vector(buffer.pop(p)[0]) for p in due_to_fold(list(buffer), pane, n_buckets)])
        buffers.append(buffer)
        normals.append(normal)
    batch = PaneNormals.from_states(normals, slide_s)
    for r in range(max(map(len, due), default=0)):  # oldest first: round r = each one's r-th fold
        rows = [i for i, d in enumerate(due) if len(d) > r]
        batch.fold(rows, np.stack([due[i][r] for i in rows]).astype(np.float64))
    for buffer, entry in zip(buffers, entries, strict=True):
        buffer[pane] = entry
    values = [{"panes": b, "normal": n, "last": pane} for b, n in zip(buffers, batch.states(), strict=True)]
    return values, buffers, batch


def settle(stored: dict[Any, Any], oldest_needed: int, slide_s: int = DEFAULT_SLIDE_S) -> dict[str, Any] | None:
    """A quiet instrument at a sweep: its buffered panes learned, or None when stale.

    Learning them now instead of at the next pane is the same sequence of updates (they
    are due by then), unless the instrument comes back after IDLE_S, when the
    normal starts afresh anyway; so the outcome does not depend on when sweeps run.
    """
    buffer, normal, last = _unpack(stored, slide_s)
    if last is None or is_stale(last, oldest_needed, slide_s):
        return None
    for p in sorted(buffer):
        normal.fold(_vector(buffer[p][0]))
    return _pack({}, normal, last)


_ROW_BYTES = N_STATS * 4  # one participant's stats in a pane entry's float32 bytes


def _top_participants(buffer: dict[int, PaneEntry], slide_ms: int) -> tuple[list[tuple[str, float]], list[PackedAccount]]:
    """The window's named participants, ranked by `burst_activity`, with their shares of it."""
    per: dict[str, list[int]] = {}  # name -> its event counts in the panes that name it
    for _, _, names, ns, *_ in buffer.values():
        for name, n in zip(names, ns, strict=True):
            per.setdefault(name, []).append(n)
    top = burst_activity(per, len(buffer))[:TOP_PARTICIPANTS]
    total = sum(b for _, b in top) or 1
    return [(n, round(b / total, 4)) for n, b in top], _activity(buffer, [n for n, _ in top[:ACCOUNT_PARTICIPANTS]], slide_ms)


def burst_activity(per_pane: dict[str, list[int]], panes: int) -> list[tuple[str, float]]:
    """Participants ranked by their events above their own typical pane in the window:
    sum over panes of max(0, events - the participant's median pane), the median taken
    over all `panes` buffered panes (0 where it was not among a pane's named; `per_pane`
    lists only its counts in the panes that name it). A market maker busy in every pane
    scores ~0 however large its volume; one participant's burst of orders, probes or
    fills scores its size: the analyst's "who did it" is the one whose activity changed,
    not the busiest. Ties (all steady): by events, then name. Returns (name, score) with
    score = that excess, or the events when nobody bursts.

    >>> burst_activity({"MM": [40, 42, 38, 41], "X": [30, 2], "Y": [1]}, panes=4)
    [('X', 28.0), ('MM', 1.0), ('Y', 1.0)]
    """
    def excess(c: list[int]) -> float:
        zeros = panes - len(c)
        if zeros > panes // 2:  # named in under half the panes: its median pane is 0
            return float(sum(c))
        m = sorted(c)[panes // 2 - zeros]
        return float(sum(v - m for v in c if v > m))

    scored = [(name, excess(c), sum(c)) for name, c in per_pane.items()]
    if not any(e for _, e, _ in scored):
        return [(n, float(t)) for n, _, t in sorted(scored, key=lambda r: (-r[2], r[0]))]
    return [(n, e) for n, e, _ in sorted(scored, key=lambda r: (-r[1], -r[2], r[0]))]


def _activity(buffer: dict[int, PaneEntry], names: list[str], slide_ms: int) -> list[PackedAccount]:
    """Per wanted participant (in `names` order) with activity: the start of each buffered
    pane naming it and its stats there, as bytes sliced from the pane entries (no float
    is touched on this per-window path; core.participant_account.unpack_accounts decodes
    them for the windows an alert keeps)."""
    found: dict[str, tuple[list[int], list[bytes]]] = {n: ([], []) for n in names}
    for p in sorted(buffer):
        entry = buffer[p]
        if len(entry) < 5 or not entry[4]:
            continue
        for j, name in enumerate(entry[2]):
            if name in found:
                found[name][0].append(p * slide_ms)
                found[name][1].append(entry[4][j * _ROW_BYTES : (j + 1) * _ROW_BYTES])
    return [(n, ms, b"".join(rows)) for n, (ms, rows) in found.items() if ms]


def window_participants(value: Any) -> list[tuple[list[tuple[str, float]], list[PackedAccount]]]:
    """Per instrument of a WINDOW_BATCH_TYPE row, (its top participants with weights, the
    accounts of the leading ones): the `participants` field decoded."""
    return pickle.loads(bytes(value[8]))


def assemble_batch(
    shard: int, buffers: Sequence[dict[int, PaneEntry]], end_pane: int, n_buckets: int, slide_ms: int,
    instruments: Sequence[str], normals: Sequence[PaneNormal] | PaneNormals | None = None,
    read_ms: Sequence[int] | None = None,
) -> Row:  # fmt: skip
    """The WINDOW_BATCH_TYPE row of the windows ending at `end_pane` (pure; unit-tested).

    `buffers[i]` is instrument i's pane buffer after `add_pane` of this pane (so it holds
    only panes inside the window), `normals[i]` its normal then (None: none learned).
    `read_ms[i]`: when the source read the latest-read event of instrument i's last pane
    (a window ends at a pane with events, so that is the window's last read; 0: unknown).
    Empty panes are `empty_pane`, whose volatility and volume channels are 0, so the
    regime sums may run over all T slots.
    """
    slide_ns = slide_ms * 1_000_000
    first = end_pane - n_buckets + 1
    raw = np.tile(empty_pane(slide_ns), (len(buffers), n_buckets, 1))
    for b, buf in enumerate(buffers):
        for p, entry in buf.items():
            if p <= end_pane:  # (a newer pane cannot be there: panes arrive in order per shard)
                raw[b, p - first] = _vector(entry[0])
    snap = None
    if isinstance(normals, PaneNormals):
        snap = normals.snapshot()
    elif normals is not None:
        parts = [n.snapshot() for n in normals]
        snap = (np.array([m for m, _, _ in parts]).reshape(len(parts), -1),
                np.array([s for _, s, _ in parts]).reshape(len(parts), -1),
                np.array([r for _, _, r in parts], dtype=bool))  # fmt: skip
    tensors = assemble_raw(raw, np.full(len(buffers), end_pane, dtype=np.int64), slide_ns, snap)
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
        pickle.dumps([_top_participants(buf, slide_ms) for buf in buffers], protocol=pickle.HIGHEST_PROTOCOL),
        [int(r) for r in read_ms] if read_ms is not None else [0] * len(buffers),
    )


def window_batch_arrays(value: Any, n_buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """(windows [n, T, F], features [n, F]) of a WINDOW_BATCH_TYPE row."""
    n = len(value[2])
    windows = np.frombuffer(bytes(value[4]), dtype=np.float32).reshape(n, n_buckets, N_CHANNELS)
    features = np.frombuffer(bytes(value[5]), dtype=np.float32).reshape(n, N_CHANNELS)
    return windows, features


def pane_entries(instruments, max_ts_ms, feats, parts, part_n, part_k, part_stats=None) -> list[tuple[str, PaneEntry]]:  # noqa: ANN001
    """A pane batch's parallel arrays -> (instrument, state entry) per instrument
    (`part_stats` None: a producer without participant activity; no accounts)."""
    vecs = np.asarray(feats, dtype=np.float32)
    if vecs.size != len(instruments) * N_PANE_CHANNELS:
        # A feature/UDAF version mismatch is a deployment bug, not bad input: fail loudly.
        raise ValueError(
            f"pane batch of {len(instruments)} instruments has {vecs.size} floats, expected "
            f"{len(instruments)} x {N_PANE_CHANNELS} (core.features.PANE_CHANNELS)"
        )
    vecs = vecs.reshape(len(instruments), N_PANE_CHANNELS)
    stats = None if part_stats is None else np.asarray(part_stats, dtype=np.float32).reshape(-1, N_STATS)
    out, j = [], 0
    for i, name in enumerate(instruments):
        k = int(part_k[i])
        entry = (vecs[i].tobytes(), int(max_ts_ms[i]), list(parts[j : j + k]), [int(n) for n in part_n[j : j + k]],
                 b"" if stats is None else stats[j : j + k].tobytes())  # fmt: skip
        out.append((name, entry))
        j += k
    return out


class ShardCountChanged(RuntimeError):
    """The job restored state written with another instrument shard count."""


def check_shard_count(stored: int | None, shards: int) -> None:
    """Refuse state written with another shard count (None: a new shard, or older state).

    >>> check_shard_count(None, 128); check_shard_count(128, 128)
    >>> check_shard_count(4, 128)
    Traceback (most recent call last):
    ...
    udfs.assembler.ShardCountChanged: the job's state was written with --pane-shards 4 but the job runs with 128: restart it with --pane-shards 4 (the count is fixed for the life of the state; a new count needs a fresh start without the savepoint)
    """
    if stored is not None and stored != shards:
        raise ShardCountChanged(
            f"the job's state was written with --pane-shards {stored} but the job runs with {shards}: restart it "
            f"with --pane-shards {stored} (the count is fixed for the life of the state; a new count needs a fresh "
            "start without the savepoint)"
        )


class WindowAssembler(KeyedProcessFunction):
    """Keyed by shard; input = pane batches (udfs/deadletter.PANE_BATCH_TYPE)."""

    def __init__(self, n_buckets: int, slide_s: int, shards: int):
        self._t = n_buckets
        self._slide_s, self._slide_ms = slide_s, slide_s * 1000
        self._shards = shards  # JobConfig.pane_shards, checked against the state's

    def open(self, runtime_context: RuntimeContext) -> None:
        self._panes = runtime_context.get_map_state(
            MapStateDescriptor("panes_by_instrument", Types.STRING(), Types.PICKLED_BYTE_ARRAY())
        )
        self._sweep = runtime_context.get_state(ValueStateDescriptor("sweep_at", Types.LONG()))
        self._shard_count = runtime_context.get_state(ValueStateDescriptor("shard_count", Types.INT()))
        self._checked: set[int] = set()  # shards whose stored count this worker has checked
        group = runtime_context.get_metrics_group().add_group("darkpool")
        self._windows = group.counter("windows_assembled")
        self._cleared = group.counter("instruments_cleared")

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context):
        shard, pane, instruments, max_ts_ms, read_ms, feats, parts, part_n, part_k, part_stats = value
        if shard not in self._checked:  # once per shard and worker: a restore starts new workers
            check_shard_count(self._shard_count.value(), self._shards)
            self._shard_count.update(self._shards)
            self._checked.add(shard)
        pane = int(pane)
        batch = pane_entries(instruments, max_ts_ms, feats, parts, part_n, part_k, part_stats)
        names = [name for name, _ in batch]  # (pane_entries keeps the batch's instrument order)
        values, buffers, normals = add_panes([self._panes.get(n) for n in names], pane, [e for _, e in batch],
                                             self._t, self._slide_s)  # fmt: skip
        for name, value in zip(names, values, strict=True):
            self._panes.put(name, value)
        # One sweep timer per shard, every T panes: after it, an instrument without a
        # pane in the last T panes can no longer be part of any window.
        sweep_at = (pane // self._t + 2) * self._t * self._slide_ms - 1
        if self._sweep.value() != sweep_at:
            ctx.timer_service().register_event_time_timer(sweep_at)  # same ts: Flink dedups
            self._sweep.update(sweep_at)
        self._windows.inc(len(names))
        yield assemble_batch(shard, buffers, pane, self._t, self._slide_ms, names, normals, read_ms)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        # Windows ending after `timestamp` start after pane `oldest_needed` - 1.
        oldest_needed = (timestamp + 1) // self._slide_ms - self._t + 1
        due = []
        for name, stored in self._panes.items():
            buffer, _, last = _layout(stored)
            if (buffer and max(buffer) < oldest_needed) or (not buffer and is_stale(last, oldest_needed, self._slide_s)):
                due.append((name, stored))
        cleared = 0
        for name, stored in due:  # (state is changed after the iteration, not during it)
            settled = settle(stored, oldest_needed, self._slide_s)
            if settled is None:
                self._panes.remove(name)
                cleared += 1
            else:
                self._panes.put(name, settled)
        self._cleared.inc(cleared)
        if self._sweep.value() == timestamp:
            self._sweep.clear()
            # Instruments left hold only their normal, and a shard without new panes
            # registers no sweep: sweep again when the first of them goes stale, so a
            # shard that stays quiet ends empty.
            lasts = [last for _, stored in self._panes.items() if (last := _layout(stored)[2]) is not None]
            if lasts:
                at = (min(lasts) + idle_panes(self._slide_s) + self._t) * self._slide_ms - 1
                ctx.timer_service().register_event_time_timer(at)
                self._sweep.update(at)
        return iter(())


__all__ = [
    "CHANNELS", "WINDOW_BATCH_FIELDS", "WINDOW_BATCH_TYPE", "ShardCountChanged", "WindowAssembler",
    "add_pane", "add_panes", "assemble_batch", "check_shard_count", "pane_entries", "window_batch_arrays", "window_participants",
]  # fmt: skip
