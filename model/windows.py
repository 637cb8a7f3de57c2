"""Labeled Parquet -> model windows + labels, and the time split used for training.

Uses exactly the serving path's feature functions (`core.features`): pane rows by
(instrument, pane), then every window that ends at a pane with events, as the
streaming job emits them.

Labels: a window is anomalous if any event inside it is; its scenario is the most
frequent anomalous scenario among its events (ties -> the earlier one in SCENARIOS).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

import core.features
from core.features import pane_features_by_key, windows_from_panes
from core.paths import cache_dir
from core.schemas import LABELED_SCHEMA, SCENARIOS

N_SCENARIOS = len(SCENARIOS)


@dataclass
class WindowSet:
    x: np.ndarray  # float32 [N, T, F] raw window tensors (not normalized)
    y: np.ndarray  # int8 [N] 1 = anomalous window
    scenario: np.ndarray  # int64 [N] index into SCENARIOS (0 = normal)
    instrument: np.ndarray  # object [N] instrument of each window
    end_pane: np.ndarray  # int64 [N] last pane of each window

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: np.ndarray) -> WindowSet:
        return WindowSet(self.x[idx], self.y[idx], self.scenario[idx], self.instrument[idx], self.end_pane[idx])

    def summary(self) -> dict[str, object]:
        counts = np.bincount(self.scenario, minlength=N_SCENARIOS)
        return {
            "windows": len(self),
            "anomalous": int(self.y.sum()),
            "by_scenario": {s: int(c) for s, c in zip(SCENARIOS, counts, strict=True) if c},
        }


def read_events(data: Path) -> pd.DataFrame:
    """Read `events.parquet` (a file, or a folder holding it) in the labeled contract."""
    path = data / "events.parquet" if data.is_dir() else data
    if not path.exists():
        folder = data if data.suffix != ".parquet" else data.parent  # the folder the user meant
        raise FileNotFoundError(
            f"no labeled events at {path}: generate them with `darkpool generate --out {folder}`"
        )
    table = pq.read_table(path)
    missing = [n for n in LABELED_SCHEMA.names if n not in table.column_names]
    if missing:
        raise ValueError(f"{path} lacks the labeled-contract columns {missing} (core/schemas.py LABELED_SCHEMA)")
    return table.to_pandas()


def _pane_scenario_counts(df: pd.DataFrame, slide_ns: int) -> pd.DataFrame:
    """Anomalous event counts per (instrument, pane) and scenario index (columns 0..S-1)."""
    idx = pd.Series(range(N_SCENARIOS), index=SCENARIOS)
    unknown = set(df.loc[df["label"] == 1, "scenario"].unique()) - set(SCENARIOS)
    if unknown:
        raise ValueError(f"events have scenarios {sorted(unknown)} not in core.schemas.SCENARIOS")
    anom = df.loc[df["label"] == 1, ["instrument", "ts", "scenario"]]
    counts = (
        pd.DataFrame({"instrument": anom["instrument"], "pane": anom["ts"] // slide_ns,
                      "s": anom["scenario"].map(idx)})
        .groupby(["instrument", "pane", "s"]).size().unstack("s", fill_value=0)
    )
    return counts.reindex(columns=range(N_SCENARIOS), fill_value=0)


def build_windows(df: pd.DataFrame, n_buckets: int, slide_ns: int) -> WindowSet:
    """All windows of all instruments (ending at panes with events) with their labels."""
    df = df.assign(pane=df["ts"].to_numpy() // slide_ns)
    keys, X = pane_features_by_key(df, keys=("instrument", "pane"), slide_ns=slide_ns)
    counts = _pane_scenario_counts(df, slide_ns)
    parts: list[WindowSet] = []
    for inst, rows in keys.groupby("instrument", sort=True).indices.items():
        panes = keys["pane"].to_numpy()[rows]
        end, xw = windows_from_panes(panes, X[rows], n_buckets, slide_ns)
        # window scenario counts = sum of the pane counts over its T panes (cumsum trick)
        c = np.zeros((len(end), N_SCENARIOS), dtype=np.int64)
        if inst in counts.index.get_level_values(0):
            ci = counts.loc[inst]
            first = int(end[0]) - n_buckets + 1
            grid = np.zeros((int(end[-1]) - first + 1, N_SCENARIOS), dtype=np.int64)
            grid[ci.index.to_numpy() - first] = ci.to_numpy()
            cum = np.vstack([np.zeros((1, N_SCENARIOS), np.int64), np.cumsum(grid, axis=0)])
            hi = end - first + 1
            c = cum[hi] - cum[hi - n_buckets]
        anomalous = c[:, 1:].sum(axis=1) > 0
        scen = np.where(anomalous, 1 + np.argmax(c[:, 1:], axis=1), 0)
        parts.append(WindowSet(xw, anomalous.astype(np.int8), scen.astype(np.int64),
                               np.full(len(end), inst, dtype=object), end))
    if not parts:
        raise ValueError("no events: cannot build any window")
    return WindowSet(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                       ("x", "y", "scenario", "instrument", "end_pane")))


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # indices of training windows (earliest part of the timeline)
    val: np.ndarray  # validation windows (after train + gap)
    test: np.ndarray  # test windows (latest, after val + gap)


def time_split(end_pane: np.ndarray, n_buckets: int, val_frac: float, test_frac: float) -> Split:
    """Split windows by end time; a gap of one window between parts, so none overlap.

    A window ending at pane e covers e-T+1..e. Train windows end before t1; validation
    windows end at >= t1 + T - 1, so they start at >= t1 and share no pane with training.
    """
    lo, hi = int(end_pane.min()), int(end_pane.max())
    span = hi - lo + 1
    t1 = lo + int(round(span * (1 - val_frac - test_frac)))
    t2 = lo + int(round(span * (1 - test_frac)))
    train = np.flatnonzero(end_pane < t1)
    val = np.flatnonzero((end_pane >= t1 + n_buckets - 1) & (end_pane < t2))
    test = np.flatnonzero(end_pane >= t2 + n_buckets - 1)
    if min(len(train), len(val), len(test)) == 0:
        raise ValueError(
            f"time split left an empty part (train {len(train)}, val {len(val)}, test {len(test)} "
            f"windows over {span} panes): generate a longer timeline"
        )
    return Split(train, val, test)


def fit_normalization(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over all windows and buckets of x [N, T, F] (training only)."""
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
    mean, std = flat.mean(axis=0), flat.std(axis=0)
    # constant channels (e.g. a feature absent from this data) must not blow up to inf
    return mean.astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)


def _cache_key(path: Path, n_buckets: int, slide_ns: int) -> str:
    """Data file content + feature code + window geometry: any change gives a new key."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    h.update(Path(core.features.__file__).read_bytes())
    h.update(Path(__file__).read_bytes())
    h.update(f"{n_buckets}/{slide_ns}".encode())
    return h.hexdigest()[:16]


def load_windows(data: Path, n_buckets: int, slide_ns: int, use_cache: bool = True) -> WindowSet:
    """`build_windows(read_events(data))`, cached under the install cache (no pickle)."""
    path = data / "events.parquet" if data.is_dir() else data
    if not path.exists():
        return build_windows(read_events(data), n_buckets, slide_ns)  # raises the helpful error
    folder = cache_dir() / "windows" / _cache_key(path, n_buckets, slide_ns)
    if use_cache and (folder / "done").exists():
        z = np.load(folder / "windows.npz")
        names = json.loads((folder / "instruments.json").read_text())
        return WindowSet(z["x"], z["y"], z["scenario"], np.array(names, dtype=object)[z["inst"]], z["end_pane"])
    ws = build_windows(read_events(data), n_buckets, slide_ns)
    if use_cache:
        folder.mkdir(parents=True, exist_ok=True)
        names, codes = np.unique(ws.instrument.astype(str), return_inverse=True)
        np.savez(folder / "windows.npz", x=ws.x, y=ws.y, scenario=ws.scenario, inst=codes, end_pane=ws.end_pane)
        (folder / "instruments.json").write_text(json.dumps(names.tolist()))
        (folder / "done").touch()
    return ws
