"""The JVM parser (udfs/jvm ParseEvent) + the SQL rules agree with the Python validator.

One small batch job on the local mini cluster runs the job's own typed view and reason
expression (udfs/sources.py) over a corpus of good and bad payloads; for every payload,
"the job dead-letters it" must equal "udfs.schemas.parse_message rejects it".
"""

from __future__ import annotations

import json
import math

import pytest

from tests.samples import GOOD, payload
from udfs.schemas import ContractError, encode_message, parse_message, sql_reason_expression

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


def _python_accepts(payload: str) -> bool:
    try:
        parse_message(payload)
    except ContractError:
        return False
    return True


def test_jvm_parser_and_sql_rules_agree_with_python_validator() -> None:
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
    reason = f"CASE WHEN type_error IS NOT NULL THEN type_error ELSE {sql_reason_expression()} END"
    with t_env.execute_sql(f"SELECT i, {reason} AS reason FROM typed").collect() as results:
        got = {int(r[0]): r[1] for r in results}
    assert sorted(got) == list(range(len(CORPUS)))
    disagreements = [
        (CORPUS[i], got[i]) for i in got if (got[i] is None) != _python_accepts(CORPUS[i])
    ]
    assert not disagreements, disagreements
    assert sum(r is None for r in got.values()) == 9  # the accepted block above
