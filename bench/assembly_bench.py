"""Per-window cost of the window assembler's pure parts: the keyed-state update of one
instrument (`udfs.assembler.add_pane`: its pane buffer and its normal) and the window
assembly of a shard's batch (`assemble_batch`: window tensors with the z-scores).

    python bench/assembly_bench.py [--root CHECKOUT] [--instruments 20] [--panes 400] [--smoke]

`--root` runs another checkout's code (e.g. a worktree of an older commit) for a
before/after in one session; prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def participants(rng: np.random.Generator, k: int = 5) -> tuple:
    """A pane's top-k participants (of 8 names), their event counts and activity stats,
    as the pane UDAF sends them (the last item only where the code has participant stats)."""
    try:
        from core.participant_account import N_STATS
    except ImportError:  # a checkout before the alert account
        N_STATS = 0  # noqa: N806
    names = [f"P-{i}" for i in rng.choice(8, size=k, replace=False)]
    counts = rng.integers(1, 20, size=k).tolist()
    stats = rng.random((k, N_STATS)).astype(np.float32).tobytes()
    return (names, counts, stats) if N_STATS else (names, counts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    p.add_argument("--instruments", type=int, default=20)
    p.add_argument("--panes", type=int, default=400)
    p.add_argument("--smoke", action="store_true", help="seconds, tiny sizes: checks that the script runs (its figures mean nothing)")
    a = p.parse_args()
    if a.smoke:
        a.instruments, a.panes = 3, 60  # past the 50 warm-up panes
    sys.path.insert(0, str(a.root))
    from core.features import N_PANE_CHANNELS
    from udfs import assembler

    with_normals = hasattr(assembler, "settle")  # the layout with instrument normals
    batched = hasattr(assembler, "add_panes")  # a shard's instruments folded together
    rng = np.random.default_rng(0)
    t, warm = 12, 50
    states: dict[str, object] = {f"I{i}": None if with_normals else {} for i in range(a.instruments)}
    t_state = t_assemble = 0.0
    for pane in range(a.panes):
        buffers, normals, names = [], [], []
        entries = [(rng.random(N_PANE_CHANNELS).astype(np.float32).tobytes(), pane * 5000, *participants(rng))
                   for _ in states]  # fmt: skip
        t0 = time.perf_counter()
        if batched:  # the operator's path since the batch fold
            values, buffers, normals = assembler.add_panes(list(states.values()), pane, entries, t)
            states = dict(zip(states, values, strict=True))
            names = list(states)
        for name, entry in zip(states, entries, strict=True) if not batched else ():
            if with_normals:
                states[name], buffer, normal = assembler.add_pane(states[name], pane, entry, t)
                normals.append(normal)
            else:
                states[name] = buffer = assembler.add_pane(states[name], pane, entry, t)
            buffers.append(buffer)
            names.append(name)
        t1 = time.perf_counter()
        extra = (normals,) if with_normals else ()
        assembler.assemble_batch(0, buffers, pane, t, 5000, names, *extra)
        t2 = time.perf_counter()
        if pane >= warm:
            t_state, t_assemble = t_state + t1 - t0, t_assemble + t2 - t1
    n = a.instruments * (a.panes - warm)
    print(json.dumps({"root": str(a.root), "instrument_normals": with_normals, "batched": batched,
                      "state_update_us_per_window": round(t_state / n * 1e6, 1),
                      "assembly_us_per_window": round(t_assemble / n * 1e6, 1),
                      "load": os.getloadavg()[0]}))  # fmt: skip


if __name__ == "__main__":
    main()
