"""Bad input on the real job: each malformed event is dead-lettered with its reason, a late
event is dead-lettered as late, and the good events around them are still scored.

Kafka (real broker) -> jobs/detect_anomalies.build_pipeline on the mini cluster -> the
dead-letter topic + a tap on the scored windows; the scorer is a real service with an
untrained model (the scores do not matter here, only that windows were scored).
"""

from __future__ import annotations

import json
import math
import time

import pytest

from core.features import N_CHANNELS
from tests.integration.job_support import JobProcess, produce, read_until
from tests.unit.test_scorer import Scorer, make_artifact

pytestmark = [pytest.mark.integration, pytest.mark.minicluster]

SLIDE_MS = 5_000
T0_NS = 1_772_483_400_000_000_000  # aligned to a pane start (5 s)
GOOD_S = 60  # seconds of good events -> 12 panes, 12 windows


def good(i: int, instrument: str = "GOOD", ts_ns: int | None = None) -> dict:
    kind = ("new", "fill", "cancel")[i % 3]
    return {
        "ts": ts_ns if ts_ns is not None else T0_NS + i * 200_000_000, "instrument": instrument,
        "venue": "DP1", "event": kind, "order_id": f"o{i}", "participant": f"F{i % 4}-d",
        "side": "B" if i % 2 else "S", "price": 10.0 + (i % 5) * 0.001, "qty": 100 + i,
        "contra": "F9-x" if kind == "fill" else None, "bid": 9.99, "ask": 10.01, "hidden": i % 7 == 0,
    }  # fmt: skip


def dumps(rec: dict) -> str:
    return json.dumps(rec, separators=(",", ":"))


def bad_events(i: int) -> list[tuple[str, str]]:
    """(payload, field the dead letter must name), one per kind of contract break."""
    g = good(i)
    no_qty = {k: v for k, v in g.items() if k != "qty"}
    return [
        ("{not json", "<payload>"),
        ("[1, 2, 3]", "<record>"),
        (dumps(no_qty), "qty"),
        (dumps({**g, "qty": "5"}), "qty"),
        (dumps({**g, "qty": 5.5}), "qty"),
        (dumps({**g, "qty": 0}), "qty"),
        (dumps({**g, "ts": "abc"}), "ts"),
        (dumps({**g, "price": -1.0}), "price"),
        (json.dumps({**g, "price": math.nan}), "price"),
        (dumps({**g, "bid": 10.02, "ask": 10.01}), "ask"),
        (dumps({**g, "event": "modify"}), "event"),
        (dumps({**g, "side": "X"}), "side"),
        (dumps({**g, "instrument": 123}), "instrument"),
        (dumps({**g, "hidden": "yes"}), "hidden"),
        (dumps({**g, "event": "new", "contra": "F1-d"}), "contra"),
    ]


def test_bad_and_late_events_are_dead_lettered_and_good_ones_scored(stack, kafka_topic, tmp_path) -> None:
    bootstrap = f"localhost:{stack.kafka_port}"
    trades, dlq, alerts, scored = (kafka_topic(n, partitions=1) for n in ("trades", "dlq", "alerts", "scored"))
    make_artifact(tmp_path / "model", 0)
    scorer = Scorer(tmp_path / "model")
    job = JobProcess(
        ["--bootstrap-servers", bootstrap, "--trades-topic", trades, "--dead-letter-topic", dlq,
         "--alerts-topic", alerts, "--scored-topic", scored, "--scorer-url", scorer.url,
         "--start-from", "earliest", "--parallelism", "1", "--checkpoint-interval-ms", "2000",
         "--job-name", f"bad-input-{trades[-8:]}", "--restart-attempts", "0"],
        tmp_path / "job.log",
    )  # fmt: skip
    try:
        n_good = GOOD_S * 5
        bad = bad_events(7)
        payloads: list[str] = []
        expected: dict[str, str] = {}
        for i in range(n_good):
            payloads.append(dumps(good(i)))
            if i % 20 == 10 and bad:  # bad events sit between good ones
                payload, field = bad.pop()
                payloads.append(payload)
                expected[payload] = field
        assert not bad
        produce(bootstrap, trades, payloads)
        # The late event must be read after the watermark moved past it: wait for the
        # job to have dead-lettered the first batch (so it is running and caught up).
        first = read_until(bootstrap, dlq, lambda r: len(r) >= len(expected), 420, job)
        assert len(first) >= len(expected), f"dead letters: {first}\n{job.tail()}"
        time.sleep(2)  # > the source's periodic watermark interval (200 ms)
        late = dumps(good(9999, ts_ns=T0_NS + 1_000_000_000))
        tail = dumps(good(10_000, instrument="TAIL", ts_ns=T0_NS + 180 * 10**9))  # closes GOOD's panes
        produce(bootstrap, trades, [late, tail])

        letters = read_until(bootstrap, dlq, lambda r: len({d["id"] for d in r}) >= len(expected) + 1, 180, job)
        by_payload = {d["payload"]: d for d in letters}  # at-least-once: repeats collapse
        for payload, field in expected.items():
            d = by_payload.get(payload)
            assert d is not None, f"not dead-lettered: {payload}"
            assert (d["kind"], d["field"]) == ("malformed", field), d
            assert d["reason"] and not d["validator_disagreement"], d
            assert d["source"]["topic"] == trades and d["source"]["offset"] is not None
        assert by_payload[late]["kind"] == "late", by_payload.get(late)
        assert set(by_payload) == {*expected, late}, "a good event was dead-lettered"

        want = {T0_NS // 10**6 + (k + 1) * SLIDE_MS for k in range(GOOD_S * 1000 // SLIDE_MS)}
        windows = read_until(
            bootstrap, scored,
            lambda r: want <= {w["window_end"] for w in r if w["instrument"] == "GOOD"}, 180, job,
        )  # fmt: skip
        got = {w["window_end"] for w in windows if w["instrument"] == "GOOD"}
        assert want <= got, f"missing scored windows {sorted(want - got)}\n{job.tail()}"
        assert all(math.isfinite(w["score"]) and len(w["channel_z"]) == N_CHANNELS for w in windows)
    finally:
        job.stop()
        scorer.stop()
