"""What the scorer refuses: reloads from outside its artifact root, reloads without the
token when it listens beyond loopback, starting beyond loopback without a token, and a
broken artifact (the old model keeps serving). Also: no "listening" before the bind."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.features import N_CHANNELS
from model.artifact import _version
from model.scorer.server import ScorerApp, ScorerConfig
from tests.unit.test_scorer import ROOT, InProcessScorer, free_port, make_artifact, post, windows

TOKEN = "correct-horse-battery-staple"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("lockdown")
    make_artifact(base / "models" / "a", 0)
    make_artifact(base / "models" / "b", 1)
    make_artifact(base / "elsewhere", 2)
    return base


def _load(s: InProcessScorer, path: str, token: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    status, _, body = post(s.url + "/v2/repository/models/darkpool/load",
                           json.dumps({"parameters": {"path": path}}).encode(), headers)
    return status, json.loads(body)


def _serving(s: InProcessScorer) -> str:
    status, _, body = post(s.url + "/v2/health/ready", b"", method="GET")
    return json.loads(body)["version"]


def test_reloads_only_load_under_the_artifact_root(root):
    s = InProcessScorer(root / "models" / "a", token="")  # default root: the folder holding a/
    try:
        start = _serving(s)
        (root / "models" / "link").symlink_to(root / "elsewhere")
        for path in (str(root / "elsewhere"), "../elsewhere", "link"):
            status, answer = _load(s, path)
            assert status == 403 and "outside the artifact root" in answer["error"], path
        assert _serving(s) == start
        status, answer = _load(s, "b")  # a relative name is taken under the root
        assert status == 200 and _serving(s) == answer["version"] != start
    finally:
        s.stop()


def test_reloads_need_the_token_when_listening_beyond_loopback(root):
    s = InProcessScorer(root / "models" / "a", host="0.0.0.0", token=TOKEN)
    try:
        start = _serving(s)
        status, answer = _load(s, "b")
        assert status == 401 and "Authorization: Bearer" in answer["error"]
        status, answer = _load(s, "b", token="guess")
        assert status == 401 and "wrong bearer token" in answer["error"]
        assert _serving(s) == start
        status, answer = _load(s, "b", token=TOKEN)
        assert status == 200 and _serving(s) == answer["version"] != start
    finally:
        s.stop()


def test_refuses_to_start_on_all_interfaces_without_a_token(root):
    env = {k: v for k, v in os.environ.items() if k != "DARKPOOL_SCORER_TOKEN"}
    r = subprocess.run([sys.executable, "-m", "darkpool.cli", "scorer", "serve", "--artifact",
                        str(root / "models" / "a"), "--host", "0.0.0.0", "--port", str(free_port())],
                       cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "refusing to listen on 0.0.0.0 without a token" in lines[0] and "DARKPOOL_SCORER_TOKEN" in lines[0]
    assert "listening" not in r.stdout


def test_a_truncated_weights_file_is_refused_and_the_old_model_keeps_serving(root, tmp_path):
    broken = root / "models" / "truncated"
    shutil.copytree(root / "models" / "b", broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    (broken / "VERSION").write_text(_version(broken) + "\n")  # the hash agrees: the loader meets the cut
    s = InProcessScorer(root / "models" / "a", token="")
    try:
        start = _serving(s)
        status, answer = _load(s, "truncated")
        assert status == 400 and f"still serving {start}" in answer["error"] and "does not load" in answer["error"]
        body = json.dumps({"inputs": [{"name": "windows", "datatype": "FP32", "shape": [1, 12, N_CHANNELS],
                                       "data": windows(1, 0).ravel().tolist()}]}).encode()
        status, _, scored = post(s.url + "/v2/models/darkpool/infer", body)
        assert status == 200 and json.loads(scored)["model_version"] == start
    finally:
        s.stop()


def test_nothing_claims_to_listen_when_the_port_is_taken(root):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        app = ScorerApp(ScorerConfig(root / "models" / "a", port=taken.getsockname()[1], device="cpu",
                                     warmup_batches=0, token=""))
        said: list[str] = []
        with pytest.raises(OSError):
            asyncio.run(app.run(asyncio.Event(), said.append))
    assert said == []


def test_access_log_has_one_line_per_request(root, caplog):
    s = InProcessScorer(root / "models" / "a", token="", access_log=True)
    try:
        with caplog.at_level(logging.INFO, logger="darkpool.scorer.access"):
            post(s.url + "/v2/health/ready", b"", method="GET")
            post(s.url + "/v2/models/nope", b"", method="GET")
            deadline = time.monotonic() + 10  # the line is written just after the answer
            while len(lines := [r.getMessage() for r in caplog.records if r.name == "darkpool.scorer.access"]) < 2:
                assert time.monotonic() < deadline, lines
                time.sleep(0.01)
    finally:
        s.stop()
    assert len(lines) == 2 and '"GET /v2/health/ready HTTP/1.1" 200' in lines[0] and '" 404 ' in lines[1]
