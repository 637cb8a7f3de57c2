"""WindowAssembler: the last T panes of an instrument -> one sliding window per pane.

Pane rows (`udfs.pane_udaf`) arrive per instrument in pane order (the tumbling window
operator fires panes in watermark order and key_by keeps per-key order). For a pane
`p` the assembler emits the window that ends at `p` and covers panes `p-T+1 .. p`,
built by `udfs.features.window_tensor` (missing panes = empty panes). That is exactly
the sliding window of size T * slide evaluated every slide, restricted, as in
training (`udfs.features.windows_from_panes`), to windows that end at a pane with events.

State per instrument: one ValueState holding the panes still inside a window (at most
T, older ones are pruned on every update) and one ValueState with the pending timer.
An event-time timer at the end of the last window that can still contain the newest
pane clears both, so a quiet instrument holds no state (the only state left behind is
that of an instrument whose panes stop *and* whose watermark never advances again,
i.e. a stopped stream; it is cleared by the next watermark).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from udfs.features import CHANNELS, N_PANE_CHANNELS, PANE_CHANNELS, window_tensor

TOP_PARTICIPANTS = 5  # participants named per window

# Output of the assembler = input of the scoring function.
WINDOW_FIELDS = (
    "instrument",  # key
    "window_start",  # first ms of the window (event time)
    "window_end",  # exclusive end, ms (= end of its last pane)
    "max_event_ts",  # latest event in the window, ms
    "window",  # model input float32 [T, F], flattened row-major
    "features",  # mean of each channel over the window's T panes ("value vs normal")
    "volatility",  # window realized mid volatility, bps (regime input)
    "volume",  # window filled shares (regime input)
    "participants",  # JSON [[name, weight], ...], weight = share of the top names' events
)
WINDOW_TYPE = Types.ROW_NAMED(
    list(WINDOW_FIELDS),
    [
        Types.STRING(),
        Types.LONG(),
        Types.LONG(),
        Types.LONG(),
        Types.PRIMITIVE_ARRAY(Types.FLOAT()),
        Types.PRIMITIVE_ARRAY(Types.FLOAT()),
        Types.DOUBLE(),
        Types.DOUBLE(),
        Types.STRING(),
    ],
)

_VOL = PANE_CHANNELS.index("mid_vol_bps")
_LOGVOL = PANE_CHANNELS.index("log_volume")


def _vector(stored: bytes | np.ndarray) -> np.ndarray:
    """A pane vector as kept in state (float32 bytes: pickles ~10x faster than an ndarray)."""
    if isinstance(stored, bytes):
        return np.frombuffer(stored, dtype=np.float32)
    return np.asarray(stored, dtype=np.float32)


def add_pane(buffer: dict[int, tuple], pane: int, entry: tuple, n_buckets: int) -> dict[int, tuple]:
    """Insert pane `pane` and drop panes that no window ending at or after it contains."""
    buffer = {p: e for p, e in buffer.items() if p > pane - n_buckets}
    buffer[pane] = entry
    return buffer


def assemble(
    instrument: str, buffer: dict[int, tuple], end_pane: int, n_buckets: int, slide_ms: int
) -> Row:
    """The WINDOW_TYPE row of the window ending at `end_pane` (pure; unit-tested)."""
    raw = {p: _vector(e[0]) for p, e in buffer.items()}
    tensor = window_tensor(raw, end_pane, n_buckets, slide_ns=slide_ms * 1_000_000)
    inside = [p for p in sorted(buffer) if end_pane - n_buckets < p <= end_pane]
    vol = float(np.sqrt(sum(float(raw[p][_VOL]) ** 2 for p in inside)))
    volume = float(sum(np.expm1(float(raw[p][_LOGVOL])) for p in inside))
    inside = [buffer[p] for p in inside]
    counts: dict[str, int] = {}
    for e in inside:
        for name, n in zip(e[2], e[3], strict=True):
            counts[name] = counts.get(name, 0) + int(n)
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_PARTICIPANTS]
    total = sum(n for _, n in top) or 1
    window_end = (end_pane + 1) * slide_ms
    return Row(
        instrument,
        window_end - n_buckets * slide_ms,
        window_end,
        max(int(e[1]) for e in inside),
        tensor.reshape(-1).tolist(),
        tensor.mean(axis=0).tolist(),
        vol,
        volume,
        json.dumps([[n, round(c / total, 4)] for n, c in top]),
    )


class WindowAssembler(KeyedProcessFunction):
    """Keyed by instrument; input = pane rows (instrument, pane, max_ts_ms, feats, parts, part_n)."""

    def __init__(self, n_buckets: int, slide_s: int):
        self._t = n_buckets
        self._slide_ms = slide_s * 1000

    def open(self, runtime_context: RuntimeContext) -> None:
        self._panes = runtime_context.get_state(
            ValueStateDescriptor("panes", Types.PICKLED_BYTE_ARRAY())
        )
        self._timer = runtime_context.get_state(ValueStateDescriptor("clear_at", Types.LONG()))
        group = runtime_context.get_metrics_group().add_group("darkpool")
        self._windows = group.counter("windows_assembled")
        self._cleared = group.counter("instruments_cleared")

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context):
        instrument, pane, max_ts_ms, feats, parts, part_n = value
        vec = np.asarray(feats, dtype=np.float32)
        if vec.shape != (N_PANE_CHANNELS,):
            # A feature/UDAF version mismatch is a deployment bug, not bad input: fail loudly.
            raise ValueError(
                f"{instrument} pane {pane}: {vec.shape[0]} channels, expected {N_PANE_CHANNELS}"
            )
        buffer = add_pane(
            self._panes.value() or {},
            int(pane),
            (vec.tobytes(), int(max_ts_ms), list(parts), list(part_n)),
            self._t,
        )
        self._panes.update(buffer)
        # One pending timer per instrument: at the end of the last window containing this pane.
        clear_at = (int(pane) + self._t) * self._slide_ms - 1
        old = self._timer.value()
        if old is not None and old != clear_at:
            ctx.timer_service().delete_event_time_timer(old)
        ctx.timer_service().register_event_time_timer(clear_at)
        self._timer.update(clear_at)
        self._windows.inc()
        yield assemble(instrument, buffer, int(pane), self._t, self._slide_ms)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        if self._timer.value() == timestamp:
            self._panes.clear()
            self._timer.clear()
            self._cleared.inc()
        return iter(())


__all__ = ["CHANNELS", "WINDOW_FIELDS", "WINDOW_TYPE", "WindowAssembler", "add_pane", "assemble"]
