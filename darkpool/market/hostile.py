"""Hostile messages: one generator per way a Kafka message can break the event contract.

Each kind turns a valid event (a dict of the contract's fields) into bytes the job must
dead-letter, with the dead-letter kind it must get: `malformed` (the contract refuses
it) or `implausible_time` (the contract holds, but no plausible clock made it). `mix`
puts them between the valid events of a stream, each after a valid event of the same
key (partition). Used by the fuzz test of the job (tests/integration/test_fuzz_input.py)
and by bench/fuzz_bench.py (the same at scale).

>>> import json, random
>>> from core.schemas import ContractError, parse_message
>>> good = {"ts": 1_772_483_400_369_432_782, "instrument": "ABC", "venue": "DP1", "event": "new",
...         "order_id": "o1", "participant": "F1-a", "side": "B", "price": 10.5, "qty": 100,
...         "contra": None, "bid": 10.49, "ask": 10.51, "hidden": False}
>>> parse_message(json.dumps(good).encode())["instrument"]
'ABC'
>>> sorted(kind for kind, (_, dead) in HOSTILE_KINDS.items() if dead == "implausible_time")
['ts_far_future', 'ts_far_past']
>>> try:
...     parse_message(hostile_message("crossed_nbbo", good, random.Random(0)))
... except ContractError as exc:
...     print("refused")
refused
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from core.paths import REPO_ROOT
from core.schemas import FIELD_NAMES, MAX_MESSAGE_BYTES, MAX_NESTING_DEPTH, STRING_MAX_CHARS

DAY_NS = 86_400 * 10**9
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
    ahead = time.time_ns() + rng.randint(DAY_NS, 100 * 365 * DAY_NS)
    return _dumps({**g, "ts": min(ahead, 2**63 - 1)})


def _ts_far_past(g: dict, rng: random.Random) -> bytes:
    return _dumps({**g, "ts": max(1, g["ts"] - rng.randint(8 * DAY_NS, 50 * 365 * DAY_NS))})


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


# The plumbing of a fuzz run (tests/integration/test_fuzz_input.py, bench/fuzz_bench.py):
# the valid stream, the hostile messages produced with their Kafka coordinates, and the
# job's outputs read back.

def tiny_market(out: Path, limit: int | None = None, seed: int = 7) -> list[tuple[bytes, bytes, dict]]:
    """(key, value, record) of the first `limit` events (all: None) of the tiny market, in
    replay order."""
    import pyarrow.parquet as pq

    from core.schemas import encode_batch

    subprocess.run([sys.executable, "-m", "darkpool.cli", "generate", "--preset", "tiny", "--seed", str(seed),
                    "--out", str(out)], cwd=REPO_ROOT, check=True, capture_output=True)  # fmt: skip
    table = pq.read_table(out / "events.parquet").sort_by("ts")
    table = table.slice(0, limit) if limit else table
    return [(k.encode(), v.encode(), json.loads(v)) for k, v in encode_batch(table)]


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
