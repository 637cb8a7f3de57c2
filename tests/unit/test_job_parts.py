"""Pure parts of the detection job: type regex, dead letters, panes, window assembly, config."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.features import (
    CHANNELS,
    REQUIRED_COLUMNS,
    pane_features,
    windows_from_panes,
)
from core.job_config import JobConfig
from core.pane_normals import IDLE_PANES, RELATIVE_CHANNELS
from tests.samples import GOOD, payload
from udfs import sources
from udfs.assembler import (
    add_pane,
    add_panes,
    assemble_batch,
    pane_entries,
    settle,
    window_batch_arrays,
    window_participants,
)
from udfs.deadletter import format_dead_letter
from udfs.pane_udaf import UDAF_COLUMNS, pane_batch, top_participants_by_key

SLIDE_NS = 5_000_000_000
# The JSON type checks run in the JVM (udfs/jvm ParseEvent); their agreement with the
# Python validator is tested on a real mini cluster: tests/integration/test_parse_event.py


def test_dead_letter_reason_comes_from_the_strict_validator() -> None:
    text, rec = format_dead_letter(
        "malformed", "qty: wrong JSON type (VALUE_STRING)", payload(qty="5"), "t", 1, 42, None, 7
    )
    assert json.loads(text) == rec
    assert rec["id"] == "t/1/42" and rec["field"] == "qty" and "integer" in rec["reason"]
    assert not rec["validator_disagreement"]
    _, rec = format_dead_letter("malformed", "x", "not json", None, None, None)
    assert rec["field"] == "<payload>" and rec["id"].startswith("sha1:")


def test_dead_letter_marks_disagreement_instead_of_dropping() -> None:
    _, rec = format_dead_letter("malformed", "ts: must be positive", payload(), "t", 0, 1)
    assert rec["validator_disagreement"] and "Python validator accepts" in rec["reason"]


def test_late_dead_letter() -> None:
    _, rec = format_dead_letter("late", "late: ...", payload(), "t", 0, 5, GOOD["ts"], 1)
    assert rec["kind"] == "late" and rec["field"] == "ts" and rec["event_ts_ns"] == GOOD["ts"]
    with pytest.raises(ValueError):
        format_dead_letter("other", "r", "")


def _events(n: int, seed: int, t0: int, span_panes: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ev = rng.choice(["new", "cancel", "fill"], n)
    return pd.DataFrame(
        {
            "ts": t0 + np.sort(rng.integers(0, span_panes * SLIDE_NS, n)),
            "event": ev,
            "participant": rng.choice(["A-1", "B-2", "C-3"], n),
            "side": rng.choice(["B", "S"], n),
            "price": 10 + rng.normal(0, 0.01, n),
            "qty": rng.integers(1, 500, n),
            "contra": np.where(ev == "fill", rng.choice(["A-2", "D-1"], n), None),
            "bid": np.full(n, 9.99),
            "ask": np.full(n, 10.01),
            "hidden": rng.random(n) < 0.5,
            "order_id": rng.choice([f"o{i}" for i in range(max(n // 3, 1))], n),
        }
    )


def test_pane_batch_equals_pane_features_per_instrument_in_any_order() -> None:
    """One (shard, pane) group of three instruments, rows shuffled: each exploded pane row
    equals pane_features of that instrument's rows alone (the training kernel)."""
    t0 = 1_700_000_000 * 10**9
    frames = {name: _events(40, seed, t0).head(5 + 4 * seed) for seed, name in enumerate(["ZZ", "AA", "MM"], 1)}
    df = pd.concat([f.assign(instrument=name) for name, f in frames.items()])
    df["read_ms"] = np.arange(len(df)) + 1_900_000_000_000  # when the source read each event
    shuffled = df.sample(frac=1, random_state=3)
    instruments, panes, max_ts, read_ms, *rest = pane_batch({c: shuffled[c] for c in UDAF_COLUMNS}, SLIDE_NS)
    assert read_ms == [int(df.read_ms[df.instrument == name].max()) for name in instruments]  # latest read
    rows = pane_entries(instruments, max_ts, *rest)  # what the window assembler keeps per instrument
    assert [r[0] for r in rows] == ["AA", "MM", "ZZ"]
    for pane, (name, (feats, max_ts_ms, parts, part_n, _activity)) in zip(panes, rows, strict=True):
        own = frames[name]
        assert np.array_equal(np.frombuffer(feats, dtype=np.float32), pane_features(own, SLIDE_NS)[0])
        assert pane == int(own.ts.min()) // SLIDE_NS and max_ts_ms == int(own.ts.max()) // 10**6
        legs = pd.concat([own.participant, own.contra.dropna()]).value_counts()
        assert len(parts) == min(5, len(legs)) and part_n == sorted(part_n, reverse=True)
        assert all(legs[p] == n for p, n in zip(parts, part_n, strict=True))


def test_top_participants_counts_both_legs_and_breaks_ties_by_name() -> None:
    keys, names, counts, per_key = top_participants_by_key(
        np.array(["k", "k", "k", "j"], dtype=object), np.array(["B", "A", "B", "Z"], dtype=object),
        np.array([None, "A", "C", None], dtype=object), k=2,
    )  # fmt: skip
    assert list(zip(keys, names, counts, strict=True)) == [("j", "Z", 1), ("k", "A", 2), ("k", "B", 2)]
    assert per_key.tolist() == [1, 2]


def test_assembled_windows_equal_training_windows() -> None:
    """Streaming assembly (shard batches pane by pane, state pruned, quiet instruments
    settled at sweeps) = training's windows_from_panes, for every instrument of the
    shard, whichever panes it skips, with its instrument normal warm and after an
    idle gap that restarts the normal."""
    t, slide_ms = 12, SLIDE_NS // 10**6
    t0 = 1_700_000_000 * 10**9
    frames = {name: _events(2400, seed, t0, span_panes=160) for seed, name in enumerate(["AB", "CD"], 2)}
    cd = frames["CD"][(frames["CD"].ts // SLIDE_NS) % 3 != 0]  # CD skips every third pane
    late = cd.ts >= t0 + 100 * SLIDE_NS  # ... and is silent for IDLE_PANES + 40 panes after pane 100
    frames["CD"] = cd.assign(ts=np.where(late, cd.ts + (IDLE_PANES + 40) * SLIDE_NS, cd.ts))
    expected, stored = {}, {name: None for name in frames}
    for name, df in frames.items():
        panes = np.sort((df.ts // SLIDE_NS).unique())
        ends, windows = windows_from_panes(panes, pane_features(df.assign(pane=df.ts // SLIDE_NS), SLIDE_NS), t, SLIDE_NS)
        expected[name] = dict(zip(ends.tolist(), windows, strict=True))
    rel = [CHANNELS.index(c) for c in RELATIVE_CHANNELS]
    warm = 0
    for k, p in enumerate(sorted(set().union(*(e.keys() for e in expected.values())))):
        names = [n for n in frames if p in expected[n]]  # instruments with events in pane p
        buffers, normals, entries = [], [], []
        for n in names:
            df = frames[n][frames[n].ts // SLIDE_NS == p]
            entries.append((pane_features(df, SLIDE_NS)[0].tobytes(), int(df.ts.max()) // 10**6, ["A-1"], [1]))
        # the operator's batch path and the one-instrument path: the same bytes
        batch_values, batch_buffers, batch_normals = add_panes([stored[n] for n in names], int(p), entries, t)
        for n, entry, value in zip(names, entries, batch_values, strict=True):
            stored[n], buffer, normal = add_pane(stored[n], int(p), entry, t)
            assert value == stored[n], f"{n}: add_panes and add_pane differ at pane {p}"
            assert len(buffer) <= t and min(buffer) > p - t
            buffers.append(buffer)
            normals.append(normal)
        if k % 7 == 3:  # a sweep: quiet instruments learn their buffered panes early
            for n in frames:
                if n not in names and stored[n] is not None and max(stored[n]["panes"], default=p) < p - t + 1:
                    stored[n] = settle(stored[n], p - t + 1)
        row = assemble_batch(7, buffers, int(p), t, slide_ms, names, normals)
        assert assemble_batch(7, batch_buffers, int(p), t, slide_ms, names, batch_normals) == row
        windows, features = window_batch_arrays(row, t)
        assert row[0] == 7 and row[1] == (p + 1) * slide_ms and list(row[2]) == names
        for i, n in enumerate(names):
            assert np.allclose(windows[i], expected[n][p], atol=1e-6), f"{n}: window ending at pane {p}"
            assert np.allclose(features[i], expected[n][p].mean(axis=0), atol=1e-6)
            assert row[3][i] == int(frames[n].ts[frames[n].ts // SLIDE_NS == p].max()) // 10**6
            warm += bool(np.any(windows[i][:, rel] != 0))
        assert window_participants(row) == [([("A-1", 1.0)], [])] * len(names)
    assert warm > 100  # the relative channels were in use, not all warm-up zeros


def test_job_config_checks_and_stable_tx_prefix() -> None:
    cfg = JobConfig()
    assert cfg.tx_prefix == JobConfig().tx_prefix  # stable across restarts of the same job
    assert "darkpool.alerts" in cfg.tx_prefix
    with pytest.raises(ValueError):
        JobConfig(transaction_timeout_ms=2 * 3600 * 1000)  # above the broker's 1 h maximum
    with pytest.raises(ValueError):
        JobConfig(start_from="yesterday")


def test_generated_sql_mentions_every_contract_field() -> None:
    cfg = JobConfig()
    ddl = sources.kafka_raw_ddl("raw_t", cfg)
    assert "WATERMARK FOR rowtime AS rowtime - INTERVAL '2.000' SECOND" in ddl
    assert "'scan.watermark.idle-timeout' = '10000 ms'" in ddl
    typed = sources._typed_select("raw_t", True)
    for name in REQUIRED_COLUMNS:
        assert f"e.{name} AS {name}" in typed


def test_scored_window_json_round_trips_any_instrument_name() -> None:
    from core.records import ScoredWindow

    w = ScoredWindow('A"B\\é', 0, 5, 0.1, (0.1,) * 9, 0.0, (), 1.0, 1.0, "v", 0.5, 4,
                     participants=(("F1-a", 0.5),))  # fmt: skip
    assert ScoredWindow.from_json(w.to_json()) == w


def test_every_job_config_field_has_a_documented_flag_that_sets_it() -> None:
    """Flags are generated from JobConfig: each field (nested ones too) has one, with help
    text and its default, and the flag's value lands in that field."""
    import dataclasses

    from jobs.job_flags import _specs, build_parser, config_from_args, flag_of

    parser = build_parser()
    help_text = parser.format_help()
    specs = _specs()
    assert len(specs) >= 30
    for path, _, default, text in specs:
        assert text, f"{path} has no comment to make its help from"
        assert flag_of(path) in help_text
        if isinstance(default, bool):
            argv = [flag_of(path)] if not default else [flag_of(path).replace("--", "--no-", 1)]
            want = not default
        else:  # another valid value of the field
            special = {"start_from": "latest", "window.size_s": 120, "window.slide_s": 10,
                       "thresholds.score_scale": "raw", "kafka.bootstrap_servers": "x-y:9092",
                       "scorer.scorer_url": "http://x-y:8500"}
            if path in special:
                want = special[path]
            elif isinstance(default, str):
                want = "x-y"
            else:
                want = default + 1 if isinstance(default, int) else (default / 2 if default else 0.5)
            argv = [flag_of(path), str(want)]
        cfg, _ = config_from_args(parser.parse_args(argv))
        obj = cfg
        for part in path.split("."):
            obj = getattr(obj, part) if dataclasses.is_dataclass(obj) else obj
        assert obj == want, path
