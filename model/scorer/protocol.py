"""Open Inference Protocol v2 (KServe / Triton) messages, with the binary tensor extension.

Wire format of `POST /v2/models/darkpool[/versions/V]/infer` (what Triton accepts too):

    body   = JSON header  ||  raw tensor bytes (little-endian, C order), in input order
    header `Inference-Header-Content-Length: <bytes of the JSON part>` when binary
           data follows; without it the body is plain JSON and tensors carry `data`.

    request JSON:  {"id": "...", "inputs": [{"name": "windows", "datatype": "FP32",
                     "shape": [B, T, F], "parameters": {"binary_data_size": 4*B*T*F}}],
                    "outputs": [{"name": "score", "parameters": {"binary_data": true}}, ...],
                    "parameters": {"binary_data_output": true}}
    response JSON: {"model_name": "darkpool", "model_version": "<hash>", "id": "...",
                    "outputs": [{"name": "score", "datatype": "FP32", "shape": [B],
                                 "parameters": {"binary_data_size": 4*B}}, ...]}

Outputs: score [B], scenario_probs [B, 9], recon_error [B], channel_z [B, F], all FP32.
`outputs` picks which come back, in that order (absent or empty: all); each is binary
when its `binary_data` says so, else when the request's `binary_data_output` is true,
else JSON `data`. An error is `{"error": "<message>"}`.

The model's documents (metadata, Triton model configuration) are declared here too, so
the I/O schema lives in one place.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.schemas import SCENARIOS

INPUT_NAME = "windows"
OUTPUT_NAMES = ("score", "scenario_probs", "recon_error", "channel_z")
HEADER_LEN = "Inference-Header-Content-Length"
BINARY_CONTENT_TYPE = "application/octet-stream"
_DTYPES = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"), "FP16": np.dtype("<f2")}
# Triton extensions this server implements (GET /v2 lists them)
EXTENSIONS = ("binary_tensor_data", "model_configuration", "statistics", "model_repository")


class ProtocolError(ValueError):
    """A malformed request or response; the message says which part and why."""


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool  # answer this tensor as raw bytes after the JSON header


@dataclass(frozen=True)
class InferRequest:
    windows: np.ndarray  # float32 [B, T, F]
    id: str | None  # echoed in the response when given
    outputs: tuple[RequestedOutput, ...]  # what to answer, in order


def _json_and_binary(body: bytes, header_len: str | int | None) -> tuple[dict[str, Any], bytes]:
    if header_len is None:
        head, rest = body, b""
    else:
        try:
            n = int(header_len)
        except ValueError:
            raise ProtocolError(f"{HEADER_LEN} must be an integer, got {header_len!r}") from None
        if not 0 < n <= len(body):
            raise ProtocolError(f"{HEADER_LEN}={n} does not fit a body of {len(body)} bytes")
        head, rest = body[:n], body[n:]
    try:
        msg = json.loads(head)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"inference header is not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("inference header must be a JSON object")
    return msg, rest


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _parameters(obj: dict[str, Any], where: str) -> dict[str, Any]:
    params = obj.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ProtocolError(f"{where}: 'parameters' must be a JSON object, got {json.dumps(params)[:40]}")
    return params


def _flag(params: dict[str, Any], key: str, default: bool, where: str) -> bool:
    v = params.get(key, default)
    if not isinstance(v, bool):
        raise ProtocolError(f"{where}: parameter '{key}' must be true or false, got {json.dumps(v)[:40]}")
    return v


def _read_tensors(specs: Any, rest: bytes, what: str) -> dict[str, np.ndarray]:
    if not isinstance(specs, list) or not specs:
        raise ProtocolError(f"'{what}' must be a non-empty list of tensors")
    out: dict[str, np.ndarray] = {}
    offset = 0
    for spec in specs:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise ProtocolError(f"each of '{what}' must be an object with a string 'name'")
        name, dtype, shape = spec["name"], spec.get("datatype"), spec.get("shape")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise ProtocolError(f"tensor '{name}': shape must be a list of non-negative integers, "
                                f"got {json.dumps(shape)[:60]}")
        if dtype not in _DTYPES:
            raise ProtocolError(f"tensor '{name}': datatype {dtype!r} not supported (use FP32)")
        if name in out:
            raise ProtocolError(f"tensor '{name}' appears twice in '{what}'")
        dt, count = _DTYPES[dtype], math.prod(shape)  # exact: no int64 wrap-around
        size = _parameters(spec, f"tensor '{name}'").get("binary_data_size")
        if size is not None:
            if not _is_int(size):
                raise ProtocolError(f"tensor '{name}': binary_data_size must be an integer, got {json.dumps(size)}")
            if size != count * dt.itemsize:
                raise ProtocolError(f"tensor '{name}': binary_data_size {size} does not match shape {shape} "
                                    f"{dtype} ({count * dt.itemsize} bytes)")
            if offset + size > len(rest):
                raise ProtocolError(f"tensor '{name}': {size} bytes of binary data run past the end of the body")
            arr = np.frombuffer(rest, dtype=dt, count=count, offset=offset).reshape(shape)
            offset += size
        elif "data" in spec:
            try:
                arr = np.asarray(spec["data"], dtype=dt)
            except (ValueError, TypeError) as exc:
                raise ProtocolError(f"tensor '{name}': data is not a list of numbers: {exc}") from None
            if arr.size != count:
                raise ProtocolError(f"tensor '{name}': {arr.size} values in data, shape {shape} needs {count}")
            arr = arr.reshape(shape)
        else:
            raise ProtocolError(f"tensor '{name}' has neither data nor parameters.binary_data_size")
        out[name] = arr
    if offset != len(rest):
        raise ProtocolError(f"{len(rest) - offset} bytes of binary data are not claimed by any tensor")
    return out


def _requested_outputs(msg: dict[str, Any], binary_default: bool) -> tuple[RequestedOutput, ...]:
    wanted = msg.get("outputs")
    if not wanted:
        return tuple(RequestedOutput(n, binary_default) for n in OUTPUT_NAMES)
    if not isinstance(wanted, list):
        raise ProtocolError("'outputs' must be a list of {\"name\": ...} objects")
    picked: list[RequestedOutput] = []
    for o in wanted:
        name = o.get("name") if isinstance(o, dict) else None
        if name not in OUTPUT_NAMES:
            raise ProtocolError(f"unknown output {json.dumps(name)[:60]}: the model's outputs are "
                                f"{', '.join(OUTPUT_NAMES)}")
        params = _parameters(o, f"output '{name}'")
        if "classification" in params:
            raise ProtocolError(f"output '{name}': the classification extension is not supported")
        if any(p.name == name for p in picked):
            raise ProtocolError(f"output '{name}' is requested twice")
        picked.append(RequestedOutput(name, _flag(params, "binary_data", binary_default, f"output '{name}'")))
    return tuple(picked)


def decode_request(body: bytes, header_len: str | None) -> InferRequest:
    """Server side: the request body -> what to score and what to answer."""
    msg, rest = _json_and_binary(body, header_len)
    rid = msg.get("id")
    if rid is not None and not isinstance(rid, str):
        raise ProtocolError(f"request 'id' must be a string, got {json.dumps(rid)[:40]}")
    binary_default = _flag(_parameters(msg, "request"), "binary_data_output", False, "request")
    tensors = _read_tensors(msg.get("inputs"), rest, "inputs")
    unknown = sorted(set(tensors) - {INPUT_NAME})
    if unknown or INPUT_NAME not in tensors:
        raise ProtocolError(f"the model takes exactly one input '{INPUT_NAME}' (got {', '.join(sorted(tensors))})")
    windows = tensors[INPUT_NAME].astype(np.float32, copy=False)
    return InferRequest(windows, rid, _requested_outputs(msg, binary_default))


def encode_request(windows: np.ndarray, request_id: str = "", binary: bool = True) -> tuple[bytes, dict[str, str]]:
    """Client side: windows [B, T, F] -> (body, headers)."""
    x = np.ascontiguousarray(windows, dtype="<f4")
    spec: dict[str, Any] = {"name": INPUT_NAME, "datatype": "FP32", "shape": list(x.shape)}
    outputs = [{"name": n, "parameters": {"binary_data": binary}} for n in OUTPUT_NAMES]
    if not binary:
        spec["data"] = x.ravel().tolist()
        return json.dumps({"id": request_id, "inputs": [spec], "outputs": outputs}).encode(), {
            "Content-Type": "application/json"}
    spec["parameters"] = {"binary_data_size": x.nbytes}
    head = json.dumps({"id": request_id, "inputs": [spec], "outputs": outputs}).encode()
    return head + x.tobytes(), {HEADER_LEN: str(len(head)), "Content-Type": BINARY_CONTENT_TYPE}


def encode_response(outputs: dict[str, np.ndarray], model_name: str, version: str, request_id: str | None,
                    requested: tuple[RequestedOutput, ...]) -> tuple[bytes, dict[str, str]]:
    """Server side: named output arrays -> (body, headers), only the requested ones."""
    specs, blobs = [], []
    for want in requested:
        arr = np.ascontiguousarray(outputs[want.name], dtype="<f4")
        spec: dict[str, Any] = {"name": want.name, "datatype": "FP32", "shape": list(arr.shape)}
        if want.binary:
            spec["parameters"] = {"binary_data_size": arr.nbytes}
            blobs.append(arr.tobytes())
        else:
            spec["data"] = arr.ravel().tolist()
        specs.append(spec)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": version, "outputs": specs}
    if request_id is not None:
        doc["id"] = request_id
    head = json.dumps(doc).encode()
    if not blobs:
        return head, {"Content-Type": "application/json"}
    return head + b"".join(blobs), {HEADER_LEN: str(len(head)), "Content-Type": BINARY_CONTENT_TYPE}


def decode_response(body: bytes, header_len: str | None) -> tuple[dict[str, np.ndarray], str]:
    """Client side: -> (outputs by name, model version)."""
    msg, rest = _json_and_binary(body, header_len)
    if "error" in msg:
        raise ProtocolError(str(msg["error"]))
    return _read_tensors(msg.get("outputs"), rest, "outputs"), str(msg.get("model_version", ""))


# ---- the model's documents ------------------------------------------------------------

def _output_dims(n_channels: int) -> dict[str, list[int]]:
    """Per-window dims of each output (the batch dimension comes first on the wire)."""
    return {"score": [], "scenario_probs": [len(SCENARIOS)], "recon_error": [], "channel_z": [n_channels]}


def model_metadata(name: str, version: str, n_buckets: int, n_channels: int) -> dict[str, Any]:
    """`GET /v2/models/{name}`: the standard document, nothing else (what the job needs
    beyond it is in the model configuration's parameters)."""
    dims = _output_dims(n_channels)
    return {
        "name": name, "versions": [version], "platform": "pytorch",
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, n_buckets, n_channels]}],
        "outputs": [{"name": n, "datatype": "FP32", "shape": [-1, *dims[n]]} for n in OUTPUT_NAMES],
    }


def model_config(name: str, n_buckets: int, n_channels: int, max_request_windows: int, max_batch: int,
                 max_delay_ms: float, max_queue: int, gpu: bool, parameters: dict[str, str]) -> dict[str, Any]:
    """`GET /v2/models/{name}/config`: Triton's model configuration as JSON (what a
    config.pbtxt holds), so tools that read it (perf_analyzer) and a Triton server
    standing in agree. `parameters` carry what the job needs: threshold and geometry."""
    dims = _output_dims(n_channels)
    return {
        "name": name, "platform": "pytorch", "backend": "python",
        "version_policy": {"latest": {"num_versions": 1}},
        "max_batch_size": max_request_windows,  # most windows in one request
        "input": [{"name": INPUT_NAME, "data_type": "TYPE_FP32", "dims": [n_buckets, n_channels]}],
        # Triton spells a per-window scalar as dims [1] reshaped to []
        "output": [{"name": n, "data_type": "TYPE_FP32", "dims": dims[n] or [1],
                    **({} if dims[n] else {"reshape": {"shape": []}})} for n in OUTPUT_NAMES],
        "dynamic_batching": {"preferred_batch_size": [max_batch],
                             "max_queue_delay_microseconds": int(max_delay_ms * 1000),
                             "default_queue_policy": {"max_queue_size": max_queue}},
        "instance_group": [{"kind": "KIND_GPU" if gpu else "KIND_CPU", "count": 1}],
        "parameters": {k: {"string_value": v} for k, v in parameters.items()},
    }


def server_metadata(version: str) -> dict[str, Any]:
    """`GET /v2`."""
    return {"name": "darkpool-scorer", "version": version, "extensions": list(EXTENSIONS)}
