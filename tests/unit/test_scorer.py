"""The scorer as a real process on a free port, driven by the real asyncio client.

Also home of the helpers the other scorer tests share: `make_artifact`, `free_port`,
`Scorer` (a `darkpool scorer serve` subprocess) and `InProcessScorer` (the app in a
thread of the test process, for tests that reach into it)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from core.features import N_CHANNELS
from model.artifact import save_artifact
from model.config import preset
from model.scorer import protocol
from model.scorer.client import (
    ScorerClient,
    ScorerOverloaded,
    ScorerRequestError,
    ScorerUnavailable,
)
from model.scorer.server import ScorerApp, ScorerConfig
from model.transformer import ScoringModel

ROOT = Path(__file__).resolve().parents[2]
T = 12


GEOMETRY = {"size_s": 60, "slide_s": 5, "n_buckets": T}  # what `darkpool train` records for 12 panes


def make_artifact(folder: Path, seed: int, window: dict | None = None) -> tuple[str, ScoringModel]:
    torch.manual_seed(seed)
    m = ScoringModel(preset("small")).eval()
    m.std.fill_(2.0)
    extra = {"window": window} if window else None
    return save_artifact(folder, m, threshold=0.5 + seed / 100, target_fpr=0.01, metrics={}, extra_config=extra), m


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Scorer:
    def __init__(self, artifact: Path, **opts: object):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "darkpool.cli", "scorer", "serve", "--artifact", str(artifact),
                "--port", str(self.port), "--device", "cpu", "--threads", "1"]
        for k, v in opts.items():
            args += [f"--{k.replace('_', '-')}", str(v)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"scorer exited: {self.proc.stdout.read().decode()}")
            try:
                with urllib.request.urlopen(self.url + "/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("scorer did not become ready in 60 s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    base = tmp_path_factory.mktemp("artifacts")
    va, ma = make_artifact(base / "a", 0)
    vb, mb = make_artifact(base / "b", 1)
    return {"a": (base / "a", va, ma), "b": (base / "b", vb, mb)}


@pytest.fixture(scope="module")
def scorer(artifacts):
    s = Scorer(artifacts["a"][0], max_batch=64, max_delay_ms=5)
    yield s
    s.stop()


class InProcessScorer:
    """The scorer app on a free port, served by a thread of the test process with its own
    event loop, so a test can reach into it (break its model, mark it not ready)."""

    def __init__(self, artifact: Path, **opts: object):
        opts = {"port": 0, "device": "cpu", "threads": 1, "warmup_batches": 1, "max_batch": 16, **opts}
        self.app = ScorerApp(ScorerConfig(artifact=artifact, **opts))
        self._listening = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        if not self._listening.wait(60):
            raise RuntimeError("in-process scorer did not listen within 60 s")
        if self._error is not None:
            raise self._error
        self.url = f"http://127.0.0.1:{self.app.port}"
        self.hostport = f"127.0.0.1:{self.app.port}"

    def _main(self) -> None:
        async def main() -> None:
            self.loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            await self.app.run(self._stop, lambda line: self._listening.set())

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - handed to the constructor
            self._error = exc
            self._listening.set()

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)


def post(url: str, body: bytes, headers: dict[str, str] | None = None, method: str = "POST"):
    """(status, headers, body) of a raw HTTP request, error answers included."""
    req = urllib.request.Request(url, data=body if method == "POST" else None, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def expected(model: ScoringModel, x: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        return {k: v.numpy() for k, v in model(torch.from_numpy(x)).items()}


def windows(b: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (b, T, N_CHANNELS)).astype(np.float32)


def test_concurrent_clients_get_their_own_results(scorer, artifacts):
    _, version, model = artifacts["a"]

    async def main():
        async with ScorerClient(scorer.url) as client:
            inputs = [windows(1 + i % 7, seed=i) for i in range(40)]
            results = await asyncio.gather(*(client.score(x) for x in inputs))
            return inputs, results

    inputs, results = asyncio.run(main())
    for x, r in zip(inputs, results, strict=True):
        want = expected(model, x)
        assert r.model_version == version
        np.testing.assert_allclose(r.score, want["score"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(r.scenario_probs, want["scenario_probs"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(r.channel_z, want["channel_z"], rtol=1e-3, atol=1e-3)
    metrics = urllib.request.urlopen(scorer.url + "/metrics").read().decode()
    # requests were really batched together: some batch held more than one request
    count_line = next(line for line in metrics.splitlines() if line.startswith("darkpool_scorer_batch_requests_count"))
    one_line = next(line for line in metrics.splitlines() if 'batch_requests_bucket{le="1"}' in line)
    assert float(one_line.split()[-1]) < float(count_line.split()[-1])


def test_bad_requests_fail_alone(scorer):
    async def main():
        async with ScorerClient(scorer.url) as client:
            nan = windows(3, 1)
            nan[1, 4, 2] = np.nan
            jobs = [client.score(windows(2, 5)), client.score(nan), client.score(windows(2, 6)[:, :5]),
                    client.score(windows(4, 7))]
            return await asyncio.gather(*jobs, return_exceptions=True)

    ok1, nan_err, shape_err, ok2 = asyncio.run(main())
    assert ok1.score.shape == (2,) and ok2.score.shape == (4,)
    assert isinstance(nan_err, ScorerRequestError) and "NaN" in str(nan_err) and "[1]" in str(nan_err)
    assert isinstance(shape_err, ScorerRequestError) and f"[B>=1, {T}, {N_CHANNELS}]" in str(shape_err)


def test_json_body_without_binary_extension(scorer, artifacts):
    body, headers = protocol.encode_request(windows(2, 9), "r1", binary=False)
    req = urllib.request.Request(scorer.url + "/v2/models/darkpool/infer", data=body, headers=headers)
    with urllib.request.urlopen(req) as r:
        out, version = protocol.decode_response(r.read(), r.headers.get(protocol.HEADER_LEN))
    np.testing.assert_allclose(out["score"], expected(artifacts["a"][2], windows(2, 9))["score"], rtol=1e-4)


def test_metadata_and_health(scorer, artifacts):
    async def main():
        async with ScorerClient(scorer.url) as client:
            return await client.metadata(), await client.ready()

    meta, ready = asyncio.run(main())
    assert ready and meta.version == artifacts["a"][1] and meta.threshold == pytest.approx(0.5)
    assert len(meta.channels) == N_CHANNELS and meta.n_buckets == T and meta.scenarios[0] == "normal"
    assert meta.window == {"n_buckets": T}  # this artifact records no window geometry


def test_overload_is_a_clear_error(artifacts):
    # queue of 256 windows; the first request waits up to 300 ms for its batch to fill
    s = Scorer(artifacts["a"][0], max_batch=256, max_queue=256, max_delay_ms=300)
    try:
        async def main():
            async with ScorerClient(s.url) as client:
                return await asyncio.gather(*(client.score(windows(200, i)) for i in range(4)),
                                            return_exceptions=True)

        results = asyncio.run(main())
    finally:
        s.stop()
    errors = [r for r in results if isinstance(r, Exception)]
    assert any(not isinstance(r, Exception) for r in results)
    assert errors and all(isinstance(e, ScorerOverloaded) and "overloaded" in str(e) for e in errors)


def test_hot_reload_under_load_drops_nothing(scorer, artifacts):
    (path_a, va, ma), (path_b, vb, mb) = artifacts["a"], artifacts["b"]

    async def main():
        # more connections than workers, so the reload request does not queue behind them
        async with ScorerClient(scorer.url, max_connections=8) as client:
            stop = asyncio.Event()
            seen: list[tuple[str, np.ndarray, np.ndarray]] = []

            async def load_worker(seed: int):
                i = 0
                while not stop.is_set():
                    x = windows(3, seed * 1000 + i)
                    r = await client.score(x)  # any error fails the test
                    seen.append((r.model_version, x, r.score))
                    i += 1

            workers = [asyncio.create_task(load_worker(k)) for k in range(6)]
            await asyncio.sleep(0.5)
            try:
                new_version = await client.load(str(path_b))
                await asyncio.sleep(0.5)
            finally:
                stop.set()
                await asyncio.gather(*workers)
                await client.load(str(path_a))  # leave the shared scorer as the other tests expect
            return new_version, seen

    new_version, seen = asyncio.run(main())
    assert new_version == vb
    versions = [v for v, _, _ in seen]
    assert versions[0] == va and versions[-1] == vb and set(versions) == {va, vb}
    for v, x, score in seen[:: max(1, len(seen) // 50)]:  # each answer matches the model that claims it
        np.testing.assert_allclose(score, expected(ma if v == va else mb, x)["score"], rtol=1e-4, atol=1e-5)


def test_reload_of_a_bad_folder_keeps_serving(scorer, artifacts):
    async def main():
        async with ScorerClient(scorer.url) as client:
            with pytest.raises(ScorerRequestError, match="still serving.*not a model artifact"):
                await client.load(str(artifacts["a"][0].parent / "missing"))
            return await client.score(windows(1, 0))

    assert asyncio.run(main()).model_version == artifacts["a"][1]


def test_sighup_rereads_the_artifact_folder(scorer, artifacts, tmp_path):
    import shutil
    import signal

    (path_a, va, _), (path_b, vb, _) = artifacts["a"], artifacts["b"]
    backup = tmp_path / "a"
    shutil.copytree(path_a, backup)

    def version_after_sighup() -> str:
        scorer.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 30
        while time.time() < deadline:
            with urllib.request.urlopen(scorer.url + "/v2/health/ready") as r:
                v = json.loads(r.read())["version"]
            if v != current[0]:
                return v
            time.sleep(0.2)
        return current[0]

    current = [va]
    try:
        for f in path_b.iterdir():  # a new model is deployed into the served folder
            shutil.copy2(f, path_a / f.name)
        assert version_after_sighup() == vb
    finally:
        for f in backup.iterdir():
            shutil.copy2(f, path_a / f.name)
        current[0] = vb
        assert version_after_sighup() == va


def test_client_names_the_fix_when_scorer_is_down():
    async def main():
        async with ScorerClient(f"http://127.0.0.1:{free_port()}", timeout_s=2) as client:
            await client.score(windows(1, 0))

    with pytest.raises(ScorerUnavailable, match="not reachable.*darkpool scorer serve"):
        asyncio.run(main())
