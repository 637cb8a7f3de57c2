"""The JVM parser and rules (udfs/jvm EventParser) agree with the Python validator.

One small batch job on the local mini cluster runs the job's own typed view
(udfs/sources.py) over a corpus of good and bad payloads; for every payload, "the job
dead-letters it" must equal "core.schemas.parse_message rejects it", a broken rule must
be named with the words of core.schemas.RULES, and the event time the watermark sees
must be the event's (0 for a rejected one). The bounds on hostile input (size, depth,
string lengths) are tested at and just past each bound. The JVM-only time rule (the jump
from a partition's recent events) gets its own sequence, and a replay of valid data
(the simulator's tiny market, the LOBSTER sample) must never trip it.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.schemas import (
    MAX_MESSAGE_BYTES,
    MAX_NESTING_DEPTH,
    RULES,
    STRING_MAX_CHARS,
    TOO_DEEP,
    TOO_LARGE,
    ContractError,
    TimePlausibility,
    encode_message,
    parse_message,
)
from tests.samples import GOOD, payload

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.minicluster  # a collection / file source: no Kafka

def _without(name: str, **change: object) -> str:
    return json.dumps({k: v for k, v in {**GOOD, **change}.items() if k != name})


CORPUS = [
    # accepted
    encode_message(GOOD).decode(),
    encode_message({**GOOD, "event": "new", "contra": None}).decode(),
    json.dumps(GOOD, indent=1),
    payload(price=1e-3, bid=5e-4, ask=2e-3),
    payload(price=10, bid=9, ask=11),  # integers in number fields
    payload(price=1e301, bid=1e300, ask=1e302),  # finite, however large
    _without("contra", event="new"),  # contra absent = null (a fill needs one)
    payload(extra={"qty": "nested keys are not contract fields"}),
    payload().replace('"qty"', '"q\\u0074y"'),  # escaped key: JSON says it is "qty"
    '{"qty":"5",' + payload()[1:],  # repeated key: the last value wins, as in Python
    # wrong JSON types
    *(payload(**c) for c in (
        {"qty": "5"}, {"qty": 5.5}, {"qty": 5e2}, {"ts": "1"}, {"ts": 1.5}, {"price": "10.5"},
        {"price": None}, {"price": True}, {"bid": [1]}, {"hidden": "false"}, {"hidden": 0},
        {"hidden": None}, {"instrument": 123}, {"side": None}, {"venue": {"x": 1}},
        {"contra": 7}, {"qty": 2**64},
    )),  # fmt: skip
    # broken rules
    *(payload(**c) for c in (
        {"qty": 0}, {"qty": -3}, {"price": 0.0}, {"price": -1.0}, {"price": math.nan},
        {"bid": 10.6}, {"event": "modify"}, {"side": "X"}, {"instrument": ""}, {"ts": 0},
        {"ask": math.inf},
    )),  # fmt: skip
    *(_without(n) for n in ("ts", "qty", "instrument", "hidden")),
    # not a JSON object
    "not json", "", "[1, 2]", "42", payload() + " trailing", payload()[:-5], "{}",
]


def _nested(levels: int) -> str:
    """GOOD with an unknown key holding `levels` - 1 nested arrays (the event is level 1)."""
    return payload()[:-1] + ',"x":' + "[" * (levels - 1) + "]" * (levels - 1) + "}"


_YEAR_NS = 365 * 86_400 * 10**9
BOUNDS_ACCEPTED = [
    *(payload(**{f: "\U0001f600" * n}) for f, n in STRING_MAX_CHARS.items()),  # code points, not UTF-16 units
    _nested(MAX_NESTING_DEPTH),
    payload(extra="y" * (MAX_MESSAGE_BYTES - len(payload(extra="")))),  # exactly the size bound
    payload()[:-1] + ',"x":' + "9" * 5000 + "}",  # any number in an unknown key
    payload(extra="[[[[" * 50),  # brackets inside a string are text
]
BOUNDS_REJECTED = [
    *(payload(**{f: "x" * (n + 1)}) for f, n in STRING_MAX_CHARS.items()),
    payload(instrument="A" * 100_000),
    payload(extra="y" * (MAX_MESSAGE_BYTES + 1 - len(payload(extra="")))),
    _nested(MAX_NESTING_DEPTH + 1),
    "[" * 5000 + "]" * 5000,
    '{"a":' * 3000 + "1" + "}" * 3000,
    payload(venue="\ud800"), payload(contra="a\udc00b"),  # unpaired surrogates
    payload(price=10**400), payload(ask=-math.inf), payload(qty=10**30),
    payload(ts=time.time_ns() + _YEAR_NS),  # a year ahead of the wall clock
]
CORPUS += BOUNDS_ACCEPTED + BOUNDS_REJECTED


def _python_verdict(payload: str) -> tuple[bool, str | None, int]:
    """(accepted, the broken rule as the JVM words it or None, event time in ms or 0)."""
    try:
        rec = parse_message(payload, now_ns=time.time_ns())
    except ContractError as e:
        rule = next((r for r in RULES if (r.field, r.reason) == (e.field, e.reason)), None)
        return False, rule and f"{rule.field}: {rule.reason}", 0
    return True, None, rec["ts"] // 1_000_000


def _batch_env():
    from pyflink.table import EnvironmentSettings, TableEnvironment

    from jobs.detect_anomalies import local_jars
    from udfs import sources

    jars = [j for j in local_jars() if "darkpool-flink-udfs" in j]
    assert jars, "udfs/jvm jar not built: run scripts/bootstrap.sh"
    t_env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    t_env.get_config().set("pipeline.jars", ";".join(jars))
    t_env.get_config().set("parallelism.default", "1")
    sources.register_functions(t_env)
    return t_env


def test_jvm_parser_and_rules_agree_with_python_validator() -> None:
    from udfs import sources

    t_env = _batch_env()
    rows = [(i, p) for i, p in enumerate(CORPUS)]
    t_env.create_temporary_view("corpus", t_env.from_elements(rows, ["i", "payload"]))
    t_env.execute_sql("CREATE TEMPORARY VIEW src AS SELECT i, payload, CURRENT_TIMESTAMP AS rowtime FROM corpus")
    typed = sources._typed_select("src", has_metadata=False).replace("SELECT\n", "SELECT\n  i,", 1)
    typed = typed.replace(", payload,", ", i, payload,", 1)
    t_env.execute_sql(f"CREATE TEMPORARY VIEW typed AS {typed}")
    query = f"SELECT i, reason, {sources.EVENT_TIME_FUNCTION}(payload) FROM typed"
    with t_env.execute_sql(query).collect() as results:
        got = {int(r[0]): (r[1], int(r[2])) for r in results}
    assert sorted(got) == list(range(len(CORPUS)))
    disagreements = []
    for i, (reason, event_ms) in got.items():
        accepted, rule, python_ms = _python_verdict(CORPUS[i])
        if (reason is None) != accepted or (rule and reason != rule) or event_ms != python_ms:
            disagreements.append((CORPUS[i][:200], reason, event_ms, rule, python_ms))
    assert not disagreements, disagreements
    accepted = {CORPUS[i] for i, (r, _) in got.items() if r is None}
    assert len(accepted) == 10 + len(BOUNDS_ACCEPTED)  # the accepted blocks above
    assert not accepted & set(BOUNDS_REJECTED)
    reasons = {CORPUS[i]: r for i, (r, _) in got.items()}
    assert reasons["[" * 5000 + "]" * 5000] == f"<payload>: {TOO_DEEP}"
    assert reasons[payload(instrument="A" * 100_000)] == f"<payload>: {TOO_LARGE}"
    assert reasons[BOUNDS_REJECTED[-1]] == "ts: " + TimePlausibility().future_reason()


def _reasons_in_order(payloads: list[str], partition: int, rule: TimePlausibility) -> list[tuple[str | None, int]]:
    """(reason, event_time_ms) of each payload, read in order from one partition."""
    t_env = _batch_env()
    t_env.create_temporary_view("seq", t_env.from_elements(list(enumerate(payloads)), ["i", "payload"]))
    args = f"{partition}, CAST({rule.max_future_ms} AS BIGINT), CAST({rule.max_jump_ms} AS BIGINT), {rule.reanchor_after}"
    query = f"""SELECT i, e.reason, t FROM (SELECT i, parse_event(payload, {args}) AS e,
      event_time_ms(payload, {args}) AS t FROM seq)"""
    with t_env.execute_sql(query).collect() as results:
        got = {int(r[0]): (r[1], int(r[2])) for r in results}
    return [got[i] for i in range(len(payloads))]


def test_a_time_far_from_its_partitions_recent_events_is_implausible_and_never_the_watermark() -> None:
    rule = TimePlausibility(max_jump_ms=3_600_000, reanchor_after=3)
    hour, t0 = 3_600 * 10**9, GOOD["ts"]
    at = [t0, t0 + hour // 2, t0 + 30 * hour, t0 + hour // 2 + 1, t0 - 30 * hour, t0 + hour,
          # a real jump: three consecutive events that agree re-anchor the partition
          t0 + 100 * hour, t0 + 100 * hour + 1, t0 + 100 * hour + 2, t0 + 100 * hour + 3]  # fmt: skip
    got = _reasons_in_order([payload(ts=ts, order_id=f"o{k}") for k, ts in enumerate(at)], 41, rule)
    implausible = "ts: " + rule.jump_reason()
    want_bad = {2, 4, 6, 7}
    for k, (reason, event_ms) in enumerate(got):
        if k in want_bad:
            assert (reason, event_ms) == (implausible, 0), (k, reason, event_ms)
        else:
            assert (reason, event_ms) == (None, at[k] // 1_000_000), (k, reason, event_ms)


def _jsonl(parquet: Path, out: Path) -> Path:
    from udfs.sources import parquet_to_ndjson

    parquet_to_ndjson(str(parquet), str(out))
    return out


@pytest.mark.parametrize("data", ["tiny", "lobster"])
def test_a_replay_of_valid_data_never_trips_the_time_rules(data: str, tmp_path: Path) -> None:
    from core.job_config import JobConfig
    from udfs import sources

    if data == "tiny":
        subprocess.run([sys.executable, "-m", "darkpool.cli", "generate", "--preset", "tiny", "--seed", "7",
                        "--out", str(tmp_path / "m")], cwd=ROOT, check=True, capture_output=True)  # fmt: skip
        parquet = tmp_path / "m" / "events.parquet"
    else:
        parquet = ROOT / "data-samples" / "lobster" / "GOOG_2012-06-21_events.parquet"
    path = _jsonl(parquet, tmp_path / "events.jsonl")
    n = sum(1 for _ in path.open())
    t_env = _batch_env()
    t_env.execute_sql(sources.file_raw_ddl("replay_raw", str(path), JobConfig()))
    t_env.execute_sql(f"CREATE TEMPORARY VIEW typed AS {sources._typed_select('replay_raw', has_metadata=False)}")
    query = "SELECT COALESCE(reason, 'valid'), COUNT(*) FROM typed GROUP BY COALESCE(reason, 'valid')"
    with t_env.execute_sql(query).collect() as results:
        counts = {r[0]: int(r[1]) for r in results}
    assert counts == {"valid": n}, counts
