"""Shared fixtures: the real local stack, unique Kafka topics, Flink job submission.

- `stack` (session): makes sure a stack serves the configured ports (DARKPOOL_* env,
  default: the shared stack on 9092/8081). It reuses a running one and only stops, at
  the end of the session, the parts it started itself.
- `kafka_topic`: factory creating uniquely named topics (deleted afterwards), so tests
  can share one broker.
- `flink_job`: submits a PyFlink script with `flink run -d -py` and returns its job id;
  jobs still running at the end of the test are cancelled.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from darkpool.stack import core, flink, jobs, smoke
from darkpool.stack.settings import StackConfig


@pytest.fixture(scope="session")
def stack() -> Iterator[StackConfig]:
    cfg = StackConfig.load()
    started: list[str] = []
    if not core.running(cfg):
        if core.serving(cfg):
            # a stack of another clone/run dir already serves these ports: use it, and
            # write only a client config (conf/lib) into our run dir for `flink run`
            flink.prepare(cfg)
        else:
            started = core.up(cfg).started
    yield cfg
    if started:
        core.down(cfg, tuple(started))


@pytest.fixture
def kafka_topic(stack: StackConfig, request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    created: list[str] = []

    def make(label: str = "t", partitions: int = 2) -> str:
        name = f"test.{request.node.name[:40]}.{label}.{uuid.uuid4().hex[:8]}"
        name = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
        smoke.create_topics(stack, [name], partitions)
        created.append(name)
        return name

    yield make
    if created:
        smoke.delete_topics(stack, created)


@pytest.fixture
def flink_job(stack: StackConfig) -> Iterator[Callable[..., str]]:
    submitted: list[str] = []

    def submit(script: Path | str, *args: str) -> str:
        job_id = jobs.submit(stack, Path(script), list(args))
        submitted.append(job_id)
        return job_id

    yield submit
    for job_id in submitted:
        if jobs.job(stack, job_id)["state"] not in jobs.TERMINAL:
            jobs.cancel(stack, job_id)
