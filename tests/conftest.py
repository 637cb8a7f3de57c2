"""Shared fixtures: the real local stack, unique Kafka topics, Flink job submission.

- `stack` (session): makes sure a stack serves the configured ports (DARKPOOL_* env,
  default: the shared stack on 9092/8081). It reuses a running one and only stops, at
  the end of the session, the parts it started itself.
- `kafka_topic`: factory creating uniquely named topics (deleted afterwards), so tests
  can share one broker; it returns once every partition has a leader in the broker's
  metadata, so the next client to ask sees the whole topic.
- `flink_job`: submits a PyFlink script with `flink run -d -py` and returns its job id;
  jobs still running at the end of the test are cancelled.
- `no_pyflink_worker_env` (autouse): a test that runs a PyFlink job inside pytest's own
  process leaves its Python worker's variables in os.environ; they are taken out again.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from darkpool.stack import core, flink, jobs, smoke
from darkpool.stack.settings import StackConfig

# Set in os.environ by PyFlink's loopback Python worker when a job runs in this process.
# A child inheriting them refuses to start its own gateway ("launching the
# PythonGatewayServer during Python UDF execution") or talks to a dead loopback server.
PYFLINK_WORKER_VARS = ("PYFLINK_GATEWAY_DISABLED", "PYTHON_LOOPBACK_SERVER_ADDRESS")


@pytest.fixture(autouse=True)
def no_pyflink_worker_env() -> Iterator[None]:
    before = {k: os.environ.get(k) for k in PYFLINK_WORKER_VARS}
    yield
    for k, v in before.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def stack() -> Iterator[StackConfig]:
    cfg = StackConfig.load()
    started: list[str] = []
    if not core.running(cfg):
        ours = [s.name for s in core.status(cfg) if s.running]
        if ours:
            # half of our stack runs (e.g. its TaskManager died): start the rest alone, as
            # `darkpool stack up` does, and leave it running (others' jobs live on it)
            core.up(cfg)
        elif core.serving(cfg):
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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture
def own_flink(stack: StackConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackConfig]:
    """A second Flink cluster (JM + TM) a test may break; Kafka stays the shared broker."""
    cfg = StackConfig.load(
        run_dir=tmp_path_factory.mktemp("recovery-stack"), rest_port=_free_port(), jm_rpc_port=_free_port(),
        prom_port=19400, kafka_port=stack.kafka_port,
    )  # fmt: skip
    core.up(cfg, ("flink",))
    yield cfg
    core.down(cfg, (flink.TM, flink.JM))


# ---- a trained small model for the end-to-end tests -------------------------------------

# What a trained model depends on: if none of these change, a model trained by an earlier
# run (or CI run on this machine) is reused from the cache instead of trained again.
_MODEL_INPUTS = ("model", "core/features.py", "core/channels.py", "core/pane_normals.py", "core/schemas.py",
                 "darkpool/market")


def _model_inputs_hash() -> str:
    import hashlib

    from core.paths import REPO_ROOT

    h = hashlib.sha256()
    for top in _MODEL_INPUTS:
        base = REPO_ROOT / top
        files = [base] if base.is_file() else sorted(base.rglob("*.py"))
        for f in files:
            h.update(str(f.relative_to(REPO_ROOT)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


@pytest.fixture(scope="session")
def trained_model() -> Path:
    """A small-preset artifact trained on the default simulated market.

    Uses `artifacts/small` when the developer has one; otherwise trains one (the same
    `darkpool generate` + `darkpool train` a user runs, with a 6-minute budget) into the
    install cache, keyed by the hash of the code it depends on, so CI trains it once per
    machine and code version rather than on every run.
    """
    import json
    import subprocess
    import sys

    from core.features import CHANNELS
    from core.paths import REPO_ROOT, artifacts_dir, cache_dir

    local = artifacts_dir() / "small"
    if (local / "rules.json").exists() and json.loads((local / "config.json").read_text()).get("channels") == list(CHANNELS):
        return local  # (without rules.json it predates the degraded mode; other channels, older code: not used)
    cached = cache_dir() / "test-models" / f"small-{_model_inputs_hash()}"
    if (cached / "model.safetensors").exists():
        return cached
    data = cached.parent / f"data-{_model_inputs_hash()}"

    def cli(*args: str) -> None:
        subprocess.run([sys.executable, "-m", "darkpool.cli", *args], cwd=REPO_ROOT, check=True)

    if not (data / "events.parquet").exists():
        cli("generate", "--preset", "default", "--out", str(data))
    tmp = cached.with_name(cached.name + ".tmp")
    cli("train", "--data", str(data), "--out", str(tmp), "--preset", "small", "--max-minutes", "6")
    tmp.rename(cached)  # complete artifacts only: an interrupted run leaves .tmp behind
    return cached
