"""The scorer against the Open Inference Protocol v2 as the official Triton HTTP client
speaks it (tritonclient.http), plus the answers that client never provokes: every
outcome gets its status code, a JSON {"error": ...} body, and a matching metrics label."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import numpy as np
import pytest
import torch
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from core.config import WindowConfig
from core.features import CHANNELS, N_CHANNELS
from core.job_config import GeometryMismatch, geometry_from_model_config, window_from_model
from model.scorer import protocol
from model.scorer.client import ScorerClient
from tests.unit.test_scorer import (
    GEOMETRY,
    InProcessScorer,
    T,
    expected,
    make_artifact,
    post,
    windows,
)

MAX_BYTES = 256 * 1024  # small, so a 413 is cheap to provoke


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("conformance") / "model"
    version, model = make_artifact(folder, 3, window=GEOMETRY)
    s = InProcessScorer(folder, max_request_bytes=MAX_BYTES, max_delay_ms=1)
    yield s, version, model
    s.stop()


@pytest.fixture()
def client(served):
    c = httpclient.InferenceServerClient(served[0].hostport)
    yield c
    c.close()


def _input(x: np.ndarray, binary: bool = True) -> httpclient.InferInput:
    i = httpclient.InferInput("windows", list(x.shape), "FP32")
    i.set_data_from_numpy(x, binary_data=binary)
    return i


def _infer_json(x: np.ndarray, **extra: object) -> bytes:
    spec = {"name": "windows", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}
    return json.dumps({"inputs": [spec], **extra}).encode()


def test_server_health_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "darkpool-scorer"
    assert {"binary_tensor_data", "model_configuration", "statistics"} <= set(meta["extensions"])


def test_model_metadata_and_ready_with_and_without_version(client, served):
    _, version, _ = served
    plain, pinned = client.get_model_metadata("darkpool"), client.get_model_metadata("darkpool", version)
    assert plain == pinned and set(plain) == {"name", "versions", "platform", "inputs", "outputs"}
    assert plain["versions"] == [version] and plain["inputs"][0]["shape"] == [-1, T, N_CHANNELS]
    assert [o["name"] for o in plain["outputs"]] == list(protocol.OUTPUT_NAMES)
    assert client.is_model_ready("darkpool") and client.is_model_ready("darkpool", version)
    assert not client.is_model_ready("darkpool", "0000") and not client.is_model_ready("other")
    with pytest.raises(InferenceServerException, match="no version '0000'") as err:
        client.get_model_metadata("darkpool", "0000")
    assert err.value.status() == "404"


def test_model_config_carries_what_the_job_needs(client, served):
    _, version, _ = served
    config = client.get_model_config("darkpool")
    assert config == client.get_model_config("darkpool", version)
    assert config["input"] == [{"name": "windows", "data_type": "TYPE_FP32", "dims": [T, N_CHANNELS]}]
    params = {k: v["string_value"] for k, v in config["parameters"].items()}
    assert params["version"] == version and float(params["threshold"]) == pytest.approx(0.53)
    # the job's reader: the geometry comes from the standard config path, nowhere else
    window, channels = geometry_from_model_config(config)
    assert window_from_model(WindowConfig(120, 10), False, window, channels) == WindowConfig(60, 5)
    with pytest.raises(GeometryMismatch, match="sliding every 5 s"):
        window_from_model(WindowConfig(60, 10), True, window, channels)

    async def job_side():
        async with ScorerClient(served[0].url) as c:
            return await c.metadata()

    meta = asyncio.run(job_side())
    assert meta.window == GEOMETRY and meta.channels == tuple(CHANNELS) and meta.version == version
    assert meta.threshold == pytest.approx(0.53) and meta.raw["parameters"]["window"]["slide_s"] == 5


def test_infer_returns_the_requested_outputs_in_binary_or_json(client, served):
    _, version, model = served
    x = windows(3, 11)
    want = expected(model, x)
    outs = [httpclient.InferRequestedOutput("channel_z", binary_data=True),
            httpclient.InferRequestedOutput("score", binary_data=False)]
    r = client.infer("darkpool", [_input(x)], model_version=version, outputs=outs, request_id="q1")
    doc = r.get_response()
    assert [o["name"] for o in doc["outputs"]] == ["channel_z", "score"] and doc["id"] == "q1"
    assert "binary_data_size" in r.get_output("channel_z")["parameters"] and "data" in r.get_output("score")
    assert r.as_numpy("recon_error") is None
    np.testing.assert_allclose(r.as_numpy("score"), want["score"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(r.as_numpy("channel_z"), want["channel_z"], rtol=1e-3, atol=1e-3)
    # no outputs named: the client asks for binary_data_output, all four come back in binary
    r = client.infer("darkpool", [_input(x, binary=False)])
    assert all("binary_data_size" in o["parameters"] for o in r.get_response()["outputs"])
    np.testing.assert_allclose(r.as_numpy("scenario_probs"), want["scenario_probs"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("binary", [True, False])
def test_request_level_binary_data_output(served, binary):
    url = served[0].url + "/v2/models/darkpool/infer"
    status, headers, body = post(url, _infer_json(windows(2, 4), parameters={"binary_data_output": binary}))
    assert status == 200 and (headers.get(protocol.HEADER_LEN) is not None) == binary
    out, _ = protocol.decode_response(body, headers.get(protocol.HEADER_LEN))
    assert set(out) == set(protocol.OUTPUT_NAMES) and out["score"].shape == (2,)


def test_statistics_count_requests_and_windows(client, served):
    before = client.get_inference_statistics("darkpool")["model_stats"][0]
    client.infer("darkpool", [_input(windows(5, 2))])
    after = client.get_inference_statistics("darkpool", served[1])["model_stats"][0]
    assert after["name"] == "darkpool" and after["version"] == served[1]
    assert after["inference_count"] == before["inference_count"] + 5
    assert after["inference_stats"]["success"]["count"] == before["inference_stats"]["success"]["count"] + 1
    assert after["execution_count"] > before["execution_count"] and after["batch_stats"]
    assert client.get_inference_statistics("")["model_stats"][0]["name"] == "darkpool"


def test_errors_come_back_as_client_exceptions_with_the_message(client):
    x = windows(1, 0)
    with pytest.raises(InferenceServerException, match="unknown output \"nope\"") as err:
        client.infer("darkpool", [_input(x)], outputs=[httpclient.InferRequestedOutput("nope")])
    assert err.value.status() == "400"
    with pytest.raises(InferenceServerException, match="unknown model 'other'") as err:
        client.infer("other", [_input(x)])
    assert err.value.status() == "404"
    with pytest.raises(InferenceServerException, match=rf"\[B>=1, 12, {N_CHANNELS}\]") as err:
        client.infer("darkpool", [_input(windows(1, 0)[:, :5])])
    assert err.value.status() == "400"


BAD_BODIES = {
    "parameters not an object": (_infer_json(windows(1, 0), parameters=5), "'parameters' must be a JSON object"),
    "fractional shape": (json.dumps({"inputs": [{"name": "windows", "datatype": "FP32", "shape": [1.5, T, N_CHANNELS],
                                                 "data": [0.0] * T * N_CHANNELS}]}).encode(), "non-negative integers"),
    "tensor parameters not an object": (json.dumps({"inputs": [{"name": "windows", "datatype": "FP32",
                                                                "shape": [1, T, N_CHANNELS], "parameters": 5}]}).encode(),
                                        "'parameters' must be a JSON object"),
    "binary_data_output not a flag": (_infer_json(windows(1, 0), parameters={"binary_data_output": "yes"}),
                                      "must be true or false"),
    "extra input": (json.dumps({"inputs": [{"name": "windows", "datatype": "FP32", "shape": [1, T, N_CHANNELS],
                                            "data": [0.0] * T * N_CHANNELS},
                                           {"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}).encode(),
                    "exactly one input"),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_malformed_requests_are_400_with_a_reason(served, case):
    body, reason = BAD_BODIES[case]
    status, _, answer = post(served[0].url + "/v2/models/darkpool/infer", body)
    assert status == 400 and reason in json.loads(answer)["error"]


def test_binary_size_given_as_a_string_is_named(served):
    x = windows(1, 0)
    head = json.dumps({"inputs": [{"name": "windows", "datatype": "FP32", "shape": list(x.shape),
                                   "parameters": {"binary_data_size": str(x.nbytes)}}]}).encode()
    status, _, answer = post(served[0].url + "/v2/models/darkpool/infer", head + x.tobytes(),
                              {protocol.HEADER_LEN: str(len(head))})
    assert status == 400 and json.loads(answer)["error"].endswith(f'binary_data_size must be an integer, got "{x.nbytes}"')


# ---- every outcome: status code, JSON error, metrics label ------------------------------

def _ok(s):
    return post(s.url + "/v2/models/darkpool/infer", _infer_json(windows(1, 0)))


def _bad(s):
    return post(s.url + "/v2/models/darkpool/infer", _infer_json(windows(1, 0), parameters=5))


def _unknown_model(s):
    return post(s.url + "/v2/models/other/infer", _infer_json(windows(1, 0)))


def _unknown_version(s):
    return post(s.url + "/v2/models/darkpool/versions/0000/infer", _infer_json(windows(1, 0)))


def _wrong_method(s):
    return post(s.url + "/v2/models/darkpool/infer", b"", method="GET")


def _too_large(s):
    x = windows(MAX_BYTES // (4 * T * N_CHANNELS) + 1, 0)
    body, headers = protocol.encode_request(x)
    return post(s.url + "/v2/models/darkpool/infer", body, headers)


def _model_fails(s):
    model = s.app.runner.current.model
    keep = model.keep
    model.keep = torch.ones(3)  # a model broken in memory: its forward pass raises
    try:
        return _ok(s)
    finally:
        model.keep = keep


def _not_ready(s):
    s.app.ready = False
    try:
        return _ok(s)
    finally:
        s.app.ready = True


OUTCOMES = {"ok": (_ok, 200), "bad request": (_bad, 400), "unknown model": (_unknown_model, 404),
            "unknown version": (_unknown_version, 404), "wrong method": (_wrong_method, 405),
            "too large": (_too_large, 413), "model fails": (_model_fails, 500), "not ready": (_not_ready, 503)}


def _requests_counted(s, code: int) -> float:
    text = urllib.request.urlopen(s.url + "/metrics", timeout=10).read().decode()
    line = f'darkpool_scorer_requests_total{{code="{code}"}}'
    return sum(float(x.split()[-1]) for x in text.splitlines() if x.startswith(line))


@pytest.mark.parametrize("outcome", list(OUTCOMES))
def test_each_outcome_has_its_code_a_json_error_and_its_metrics_label(served, outcome):
    s = served[0]
    send, code = OUTCOMES[outcome]
    before = _requests_counted(s, code)
    status, headers, body = send(s)
    assert status == code
    if code != 200:
        assert headers.get("Content-Type", "").startswith("application/json")
        assert json.loads(body)["error"]
    assert _requests_counted(s, code) == before + 1


def test_unknown_paths_are_json_404(served):
    status, _, body = post(served[0].url + "/v2/nothing", b"", method="GET")
    assert status == 404 and "no endpoint GET /v2/nothing" in json.loads(body)["error"]
