"""Hostile input on the real job: every bad message is dead-lettered with a reason, every
valid one is processed, the job never fails or restarts, and a bad clock never makes
valid events late.

The valid stream is the simulator's tiny market (20,000 events, 4 instruments, keyed by
instrument); hostile messages of the kinds in `HOSTILE_KINDS` (drawn from a seeded
generator: `FUZZ_SEED` to replay one) sit between valid events of the same partition.
The job runs bounded (`--bounded --start-from earliest`) with no restart allowed, so
any failure ends it: it must finish, and the dead-letter topic must hold exactly the
hostile messages' Kafka coordinates.

The hostile kinds and `mix` are darkpool/market/hostile.py, shared with
bench/fuzz_bench.py (the same at scale).
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.schemas import ContractError, parse_message
from darkpool.market.hostile import (
    DAY_NS,
    HOSTILE_KINDS,
    hostile_message,
    mix,
    produce_recording,
    read_all,
    tiny_market,
)

ROOT = Path(__file__).resolve().parents[2]


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
        assert abs(rec["ts"] - valid["ts"]) > 7 * DAY_NS
        return
    with pytest.raises(ContractError):
        parse_message(message, now_ns=time.time_ns())


@pytest.mark.integration
@pytest.mark.minicluster
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
