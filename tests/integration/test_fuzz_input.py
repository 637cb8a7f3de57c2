"""Hostile input on the real job: every bad message is dead-lettered with a reason, every
valid one is processed, the job never fails or restarts, and a bad clock never makes
valid events late.

The valid stream is the simulator's tiny market (20,000 events, 4 instruments, keyed by
instrument); hostile messages of the kinds in `HOSTILE_KINDS` (drawn from a seeded
generator: `FUZZ_SEED` to replay one) sit between valid events of the same partition.
The job runs bounded (`--bounded --start-from earliest`) with no restart allowed, so
any failure ends it: it must finish, and the dead-letter topic must hold exactly the
hostile messages' Kafka coordinates.

`hostile_message` is shared with bench/fuzz_bench.py (the same at scale).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.schemas import (
    FIELD_NAMES,
    MAX_MESSAGE_BYTES,
    MAX_NESTING_DEPTH,
    STRING_MAX_CHARS,
    ContractError,
    encode_batch,
    parse_message,
)

ROOT = Path(__file__).resolve().parents[2]
_DAY_NS = 86_400 * 10**9
_TEXT_FIELDS = tuple(STRING_MAX_CHARS)
_NUMBER_FIELDS = ("price", "bid", "ask")
_WRONG_VALUES: dict[str, tuple] = {  # a value of another JSON type, per field type
    "int": ("5", 5.5, 1e3, True, None, [1], {"v": 1}),
    "number": ("10.5", True, None, [10.5], {"v": 1}),
    "text": (7, 1.5, False, None, ["A"], {"s": "A"}),
    "hidden": ("true", 0, 1, None, [True]),
}


def _kind_of(field: str) -> str:
    return {"ts": "int", "qty": "int", "hidden": "hidden"}.get(field, "number" if field in _NUMBER_FIELDS else "text")


def _dumps(rec: dict, **kw: object) -> bytes:
    return json.dumps(rec, **kw).encode()


def _wrong_type(g: dict, rng: random.Random) -> bytes:
    field = rng.choice([f for f in FIELD_NAMES if f != "contra"])
    return _dumps({**g, field: rng.choice(_WRONG_VALUES[_kind_of(field)])})


def _missing_field(g: dict, rng: random.Random) -> bytes:
    gone = rng.sample([f for f in FIELD_NAMES if f != "contra"], rng.randint(1, 3))
    return _dumps({k: v for k, v in g.items() if k not in gone})


def _extra_fields(g: dict, rng: random.Random) -> bytes:
    # unknown keys are allowed; so many that the message passes the size bound are not
    extra = {f"x{i}": "v" * rng.randint(100, 400) for i in range(MAX_MESSAGE_BYTES // 100 + 1)}
    return _dumps({**g, **extra})


def _huge_string(g: dict, rng: random.Random) -> bytes:
    field = rng.choice(_TEXT_FIELDS if g["event"] == "fill" else _TEXT_FIELDS[:-1])
    n = rng.choice([STRING_MAX_CHARS[field] + 1, rng.randint(100, 5_000), 100_000])
    return _dumps({**g, field: rng.choice("AZé") * n})


def _deep_nesting(g: dict, rng: random.Random) -> bytes:
    depth = rng.choice([MAX_NESTING_DEPTH + 1, rng.randint(40, 1_000), 5_000])
    if rng.random() < 0.5:  # the whole payload, or under an unknown key of a valid event
        return b"[" * depth + b"]" * depth
    return _dumps(g)[:-1] + b', "x": ' + b"[" * depth + b"]" * depth + b"}"


def _invalid_utf8(g: dict, rng: random.Random) -> bytes:
    bad = rng.choice([b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82"])
    return _dumps(g).replace(b'"' + g["instrument"].encode() + b'"', b'"' + g["instrument"].encode() + bad + b'"', 1)


def _nan_infinity(g: dict, rng: random.Random) -> bytes:
    return _dumps({**g, rng.choice(_NUMBER_FIELDS): rng.choice([float("nan"), float("inf"), float("-inf")])})


def _ts_far_future(g: dict, rng: random.Random) -> bytes:
    ahead = time.time_ns() + rng.randint(_DAY_NS, 100 * 365 * _DAY_NS)
    return _dumps({**g, "ts": min(ahead, 2**63 - 1)})


def _ts_far_past(g: dict, rng: random.Random) -> bytes:
    return _dumps({**g, "ts": max(1, g["ts"] - rng.randint(8 * _DAY_NS, 50 * 365 * _DAY_NS))})


def _duplicated_keys(g: dict, rng: random.Random) -> bytes:
    field, bad = rng.choice([("qty", -5), ("side", "X"), ("price", "1"), ("event", "modify")])
    return _dumps(g)[:-1] + f', "{field}": {json.dumps(bad)}}}'.encode()  # the last value wins


def _not_json(g: dict, rng: random.Random) -> bytes:
    return rng.choice([b"not json", b"{ts: 1}", b"'single'", "\u00e9t\u00e9".encode(), b"{,}", b"NaN", b"tru"])


def _truncated(g: dict, rng: random.Random) -> bytes:
    text = _dumps(g)
    return text[: rng.randint(0, len(text) - 1)]


def _crossed_nbbo(g: dict, rng: random.Random) -> bytes:
    return _dumps({**g, "bid": g["ask"] + rng.choice([0.01, 1.0, 100.0])})


def _unknown_event(g: dict, rng: random.Random) -> bytes:
    return _dumps({**g, "event": rng.choice(["modify", "NEW", "", "fill ", "replace"])})


def _lone_surrogate(g: dict, rng: random.Random) -> bytes:
    field = rng.choice(_TEXT_FIELDS[:-1])
    return _dumps({**g, field: g[field] + rng.choice(["\ud800", "\udfff"])})  # escaped: valid JSON, no text


def _out_of_range(g: dict, rng: random.Random) -> bytes:
    return _dumps({**g, **rng.choice([{"qty": 0}, {"qty": -100}, {"ts": 0}, {"ts": 2**63}, {"price": 10**400},
                                      {"price": -1.0}, {"side": "X"}, {"instrument": ""}])})  # fmt: skip


# kind -> (generator of one hostile message from a valid event, dead-letter kind it must get)
HOSTILE_KINDS: dict[str, tuple[Callable[[dict, random.Random], bytes], str]] = {
    "wrong_type": (_wrong_type, "malformed"),
    "missing_field": (_missing_field, "malformed"),
    "extra_fields": (_extra_fields, "malformed"),
    "huge_string": (_huge_string, "malformed"),
    "deep_nesting": (_deep_nesting, "malformed"),
    "invalid_utf8": (_invalid_utf8, "malformed"),
    "nan_infinity": (_nan_infinity, "malformed"),
    "ts_far_future": (_ts_far_future, "implausible_time"),
    "ts_far_past": (_ts_far_past, "implausible_time"),
    "duplicated_keys": (_duplicated_keys, "malformed"),
    "empty": (lambda g, rng: b"", "malformed"),
    "json_null": (lambda g, rng: b"null", "malformed"),
    "json_array": (lambda g, rng: _dumps([g]), "malformed"),
    "not_json": (_not_json, "malformed"),
    "truncated": (_truncated, "malformed"),
    "crossed_nbbo": (_crossed_nbbo, "malformed"),
    "unknown_event": (_unknown_event, "malformed"),
    "lone_surrogate": (_lone_surrogate, "malformed"),
    "out_of_range": (_out_of_range, "malformed"),
}


def hostile_message(kind: str, valid: dict, rng: random.Random) -> bytes:
    return HOSTILE_KINDS[kind][0](valid, rng)


def tiny_market(out: Path, seed: int = 7) -> list[tuple[bytes, bytes, dict]]:
    """(key, value, record) of each event of the tiny market, in replay order."""
    import pyarrow.parquet as pq

    subprocess.run([sys.executable, "-m", "darkpool.cli", "generate", "--preset", "tiny", "--seed", str(seed),
                    "--out", str(out)], cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    table = pq.read_table(out / "events.parquet").sort_by("ts")
    return [(k.encode(), v.encode(), json.loads(v)) for k, v in encode_batch(table)]


def mix(valid: list[tuple[bytes, bytes, dict]], n_hostile: int, seed: int, skip: int = 200) -> list[tuple[bytes | None, bytes, str | None]]:
    """(key, value, hostile kind or None) in send order: each hostile message follows a
    valid event and takes its key (same partition). None before the first `skip` valid
    events: the first event of a partition sets its time reference (a hostile first
    event costs a re-anchoring, see udfs/sources.py; not what this test measures)."""
    rng = random.Random(seed)
    kinds = list(HOSTILE_KINDS)
    after = sorted(rng.randrange(skip, len(valid)) for _ in range(n_hostile))
    out: list[tuple[bytes | None, bytes, str | None]] = []
    h = 0
    for i, (key, value, rec) in enumerate(valid):
        out.append((key, value, None))
        while h < len(after) and after[h] == i:
            kind = kinds[h % len(kinds)]  # every kind, evenly
            out.append((key, hostile_message(kind, rec, rng), kind))
            h += 1
    return out


def produce_recording(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes, str | None]]) -> dict[tuple[int, int], str]:
    """Send all messages in order; returns {(partition, offset): kind} of the hostile ones."""
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_request_size=4 * 2**20,
                      max_in_flight_requests_per_connection=1)  # fmt: skip
    futures = [(p.send(topic, value, key=key), kind) for key, value, kind in messages]
    p.flush()
    coords = {}
    for future, kind in futures:
        meta = future.get(timeout=60)
        if kind is not None:
            coords[(meta.partition, meta.offset)] = kind
    p.close()
    return coords


def read_all(bootstrap: str, topic: str, idle_s: float = 5.0) -> list[dict]:
    """Every JSON record of `topic` (the job has finished: read until it stays quiet)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=int(idle_s * 1000),
                             fetch_max_bytes=64 * 2**20, max_partition_fetch_bytes=16 * 2**20)  # fmt: skip
    try:
        return [json.loads(m.value) for m in consumer]
    finally:
        consumer.close()


def run_job(bootstrap: str, topics: dict[str, str], scorer_url: str, log: Path, timeout_s: float) -> int:
    """The real job (tests/integration/detect_harness.py), bounded, no restart allowed;
    returns its exit status (0: the job finished)."""
    from tests.integration.job_support import JobProcess

    job = JobProcess(
        ["--bootstrap-servers", bootstrap, "--trades-topic", topics["trades"], "--dead-letter-topic", topics["dlq"],
         "--alerts-topic", topics["alerts"], "--scored-topic", topics["scored"], "--scorer-url", scorer_url,
         "--start-from", "earliest", "--bounded", "--parallelism", "1", "--checkpoint-interval-ms", "2000",
         "--job-name", f"fuzz-{topics['trades'][-8:]}", "--restart-attempts", "0"],
        log,
    )  # fmt: skip
    try:
        return job.proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the job did not finish in {timeout_s:.0f} s:\n{job.tail()}") from None
    finally:
        job.stop()


def check_dead_letters(letters: list[dict], hostile: dict[tuple[int, int], str], trades: str) -> Counter:
    """The dead letters are exactly the hostile messages, each with a reason and the
    kind its hostile kind must get; returns the dead letters per dead-letter kind."""
    by_coord: dict[tuple[int, int], dict] = {}
    for d in letters:
        assert d["source"]["topic"] == trades, d
        by_coord[(d["source"]["partition"], d["source"]["offset"])] = d
    missing = sorted(set(hostile) - set(by_coord))
    assert not missing, f"{len(missing)} hostile messages not dead-lettered, e.g. {[hostile[c] for c in missing[:10]]}"
    valid_lost = {c: (d["kind"], d["reason"], d["payload"][:200]) for c, d in by_coord.items() if c not in hostile}
    assert not valid_lost, f"{len(valid_lost)} valid events dead-lettered, e.g. {list(valid_lost.values())[:5]}"
    wrong = [(hostile[c], d["kind"], d["field"], d["reason"], d["payload"][:120]) for c, d in by_coord.items()
             if d["kind"] != HOSTILE_KINDS[hostile[c]][1] or not d["reason"] or d["validator_disagreement"]]  # fmt: skip
    assert not wrong, f"{len(wrong)} dead letters of the wrong kind / without a reason, e.g. {wrong[:5]}"
    return Counter(d["kind"] for d in by_coord.values())


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(sorted(HOSTILE_KINDS)), seed=st.integers(0, 2**32 - 1), event=st.sampled_from(["new", "cancel", "fill"]))
def test_every_hostile_kind_breaks_the_contract(kind: str, seed: int, event: str) -> None:
    """Each generator makes a message the contract refuses (the job then must too); the
    time kinds keep the contract but are no plausible clock."""
    from tests.samples import GOOD

    valid = {**GOOD, "event": event, "contra": GOOD["contra"] if event == "fill" else None}
    message = hostile_message(kind, valid, random.Random(seed))
    if HOSTILE_KINDS[kind][1] == "implausible_time":
        rec = parse_message(message)  # the contract holds; the jump / wall-clock rule does not
        assert abs(rec["ts"] - valid["ts"]) > 7 * _DAY_NS
        return
    with pytest.raises(ContractError):
        parse_message(message, now_ns=time.time_ns())


@pytest.mark.integration
def test_hostile_messages_are_dead_lettered_and_the_job_survives(stack, kafka_topic, tmp_path) -> None:
    from tests.unit.test_scorer import Scorer, make_artifact

    seed = int(os.environ.get("FUZZ_SEED", "1"))
    n_hostile = int(os.environ.get("FUZZ_HOSTILE", "1200"))
    bootstrap = f"localhost:{stack.kafka_port}"
    topics = {n: kafka_topic(n, partitions=2) for n in ("trades", "dlq", "alerts", "scored")}
    valid = tiny_market(tmp_path / "market")
    messages = mix(valid, n_hostile, seed)
    hostile = produce_recording(bootstrap, topics["trades"], messages)
    assert len(hostile) == n_hostile and len(set(hostile.values())) >= 15
    make_artifact(tmp_path / "model", 0)
    scorer = Scorer(tmp_path / "model")
    try:
        status = run_job(bootstrap, topics, scorer.url, tmp_path / "job.log", 240)
    finally:
        scorer.stop()
    log = (tmp_path / "job.log").read_text(errors="replace")
    assert status == 0, f"the job failed (seed {seed}):\n{log[-4000:]}"  # no restart allowed: a failure ends it
    letters = read_all(bootstrap, topics["dlq"])
    ids = Counter(d["id"] for d in letters)
    assert max(ids.values()) == 1, "a dead letter was written twice: the job restarted"
    per_kind = check_dead_letters(letters, hostile, topics["trades"])
    assert per_kind["late"] == 0, per_kind  # no valid event late because of a bad clock
    # valid in = accepted: all other messages took the main path; each instrument was scored
    assert len(messages) - len(letters) == len(valid)
    scored = read_all(bootstrap, topics["scored"])
    assert {w["instrument"] for w in scored} == {rec["instrument"] for _, _, rec in valid}
