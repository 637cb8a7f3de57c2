"""The decision stage's settings, swept offline on one labeled data set.

    python bench/decision_sweep.py --artifact DIR --data DIR [--set max_flag_rate=0.2,0.35,0.5 ...]
    python bench/decision_sweep.py --smoke

Scores every window of DATA once with the artifact (the job's own window functions,
model.windows), then runs the job's pure decision stage (core/coalesce.step, the code
ShardThresholds runs per window) over them in event-time order, once per setting, and
grades the alerts as `darkpool evaluate --alerts` does. Minutes instead of a backtest per
setting; the one difference from the job: each window's regime inputs (volatility,
volume) are not rebuilt, so every window is in the "normal" regime.

Choose settings on a simulated validation set, never on the data you report.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from core.coalesce import InstrumentState, step  # noqa: E402
from core.config import WindowConfig  # noqa: E402
from core.features import window_pane_surprise  # noqa: E402
from core.records import ScoredWindow  # noqa: E402
from core.thresholds import ThresholdConfig  # noqa: E402
from darkpool.evaluate.alerts_grading import grade_alerts  # noqa: E402
from model.artifact import load_artifact  # noqa: E402
from model.train import predict  # noqa: E402
from model.windows import load_windows  # noqa: E402


def scored_windows(artifact: Path, data: Path, window: WindowConfig) -> list[ScoredWindow]:
    art = load_artifact(artifact)
    ws = load_windows(data, window.n_buckets, window.slide_ns)
    out = predict(art.model, ws.x)
    surprise = window_pane_surprise(ws.x)
    size_ms, slide_ms = window.size_s * 1000, window.slide_s * 1000
    windows = []
    for i in np.argsort(ws.end_pane, kind="stable"):
        end = (int(ws.end_pane[i]) + 1) * slide_ms
        windows.append(ScoredWindow(
            instrument=str(ws.instrument[i]), window_start=end - size_ms, window_end=end,
            score=float(out["score"][i]), scenario_probs=tuple(out["scenario_probs"][i].tolist()),
            recon_error=float(out["recon_error"][i]), channel_z=tuple(out["channel_z"][i].tolist()),
            volatility=1.0, volume=1.0, model_version=art.version, global_threshold=art.threshold,
            max_event_ts=end - 1, features=tuple(ws.x[i].mean(axis=0).tolist()),
            pane_surprise=tuple(surprise[i].tolist()),
        ))  # fmt: skip
    return windows


def decide(windows: list[ScoredWindow], cfg: ThresholdConfig) -> tuple[list[dict], dict[str, int]]:
    states: dict[str, InstrumentState] = {}
    events: list[dict] = []
    sources: dict[str, int] = {}
    for w in windows:
        st = states.setdefault(w.instrument, InstrumentState())
        events += step(st, w, cfg, now_ms=w.window_end)
        sources[st.last_thr[1]] = sources.get(st.last_thr[1], 0) + 1
    return events, sources


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--artifact", type=Path)
    p.add_argument("--data", type=Path, help="labeled folder (events + episodes)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=V1,V2",
                   help="a ThresholdConfig field and the values to try (several --set: every combination)")
    p.add_argument("--smoke", action="store_true",
                   help="seconds: a 4,000-event market, an untrained model, two settings (checks the script)")
    a = p.parse_args()
    if a.smoke:
        import tempfile

        from _smoke import tiny_market, untrained_artifact

        tmp = Path(tempfile.mkdtemp(prefix="sweep-smoke-"))
        a.artifact, a.data = untrained_artifact(tmp / "model"), tiny_market(tmp / "market")
        a.set = a.set or ["max_flag_rate=0.2,0.5"]
    elif a.artifact is None or a.data is None:
        p.error("--artifact and --data are required (or --smoke)")
    grid = {}
    for item in a.set:
        field, _, values = item.partition("=")
        kind = type(getattr(ThresholdConfig(), field))
        grid[field] = [kind(v) for v in values.split(",")]
    windows = scored_windows(a.artifact, a.data, WindowConfig())
    print(f"{len(windows)} windows scored (load {os.getloadavg()[0]:.2f})")
    for combo in itertools.product(*grid.values()) if grid else [()]:
        setting = dict(zip(grid, combo, strict=True))
        events, sources = decide(windows, ThresholdConfig(**setting))
        r = grade_alerts(events, a.data)
        row = {
            "setting": setting, "recall": r["recall"], "type_right": r["type_accuracy"],
            "false_per_h": r["false_alerts_per_instrument_hour"], "clean_bins": r["clean_bin_alerted_share"],
            "sources": sources,
        }  # fmt: skip
        print(json.dumps(row, default=float))


if __name__ == "__main__":
    main()
