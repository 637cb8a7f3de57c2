"""The JVM parser and rules (udfs/jvm EventParser) agree with the Python validator.

One small batch job on the local mini cluster runs the job's own typed view
(udfs/sources.py) over a corpus of good and bad payloads; for every payload, "the job
dead-letters it" must equal "core.schemas.parse_message rejects it", a broken rule must
be named with the words of core.schemas.RULES, and the event time the watermark sees
must be the event's (0 for a rejected one).
"""

from __future__ import annotations

import json
import math

import pytest

from core.schemas import RULES, ContractError, encode_message, parse_message
from tests.samples import GOOD, payload

pytestmark = pytest.mark.integration

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


def _python_verdict(payload: str) -> tuple[bool, str | None, int]:
    """(accepted, the broken rule as the JVM words it or None, event time in ms or 0)."""
    try:
        rec = parse_message(payload)
    except ContractError as e:
        rule = next((r for r in RULES if (r.field, r.reason) == (e.field, e.reason)), None)
        return False, rule and f"{rule.field}: {rule.reason}", 0
    return True, None, rec["ts"] // 1_000_000


def test_jvm_parser_and_rules_agree_with_python_validator() -> None:
    from pyflink.table import EnvironmentSettings, TableEnvironment

    from jobs.detect_anomalies import local_jars
    from udfs import sources

    jars = [j for j in local_jars() if "darkpool-flink-udfs" in j]
    assert jars, "udfs/jvm jar not built: run scripts/bootstrap.sh"
    t_env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    t_env.get_config().set("pipeline.jars", ";".join(jars))
    t_env.get_config().set("parallelism.default", "1")
    sources.register_functions(t_env)
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
            disagreements.append((CORPUS[i], reason, event_ms, rule, python_ms))
    assert not disagreements, disagreements
    assert sum(r is None for r, _ in got.values()) == 10  # the accepted block above
