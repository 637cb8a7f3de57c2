"""Open Inference Protocol v2 (KServe / Triton) messages, with the binary tensor extension.

Wire format of `POST /v2/models/darkpool/infer` (what Triton accepts too):

    body   = JSON header  ||  raw tensor bytes (little-endian, C order), in input order
    header `Inference-Header-Content-Length: <bytes of the JSON part>` when binary
           data follows; without it the body is plain JSON and tensors carry `data`.

    request JSON:  {"id": "...", "inputs": [{"name": "windows", "datatype": "FP32",
                     "shape": [B, T, F], "parameters": {"binary_data_size": 4*B*T*F}}],
                    "outputs": [{"name": "score", "parameters": {"binary_data": true}}, ...]}
    response JSON: {"model_name": "darkpool", "model_version": "<hash>", "id": "...",
                    "outputs": [{"name": "score", "datatype": "FP32", "shape": [B],
                                 "parameters": {"binary_data_size": 4*B}}, ...]}

Outputs: score [B], scenario_probs [B, 9], recon_error [B], channel_z [B, F], all FP32.
An error is `{"error": "<message>"}` with HTTP 400 (bad request), 503 (overloaded /
not ready) or 500.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

INPUT_NAME = "windows"
OUTPUT_NAMES = ("score", "scenario_probs", "recon_error", "channel_z")
HEADER_LEN = "Inference-Header-Content-Length"
BINARY_CONTENT_TYPE = "application/octet-stream"
_DTYPES = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"), "FP16": np.dtype("<f2")}


class ProtocolError(ValueError):
    """A malformed request or response; the message says which part and why."""


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


def _read_tensors(specs: Any, rest: bytes, what: str) -> dict[str, np.ndarray]:
    if not isinstance(specs, list):
        raise ProtocolError(f"'{what}' must be a list of tensors")
    out: dict[str, np.ndarray] = {}
    offset = 0
    for spec in specs:
        try:
            name, dtype, shape = spec["name"], spec["datatype"], [int(d) for d in spec["shape"]]
        except (KeyError, TypeError, ValueError):
            raise ProtocolError(f"each of '{what}' needs name, datatype and an integer shape") from None
        if dtype not in _DTYPES:
            raise ProtocolError(f"tensor '{name}': datatype {dtype} not supported (use FP32)")
        if any(d < 0 for d in shape):
            raise ProtocolError(f"tensor '{name}': negative dimension in shape {shape}")
        dt = _DTYPES[dtype]
        size = (spec.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            nbytes = int(np.prod(shape)) * dt.itemsize
            if size != nbytes or offset + size > len(rest):
                raise ProtocolError(f"tensor '{name}': binary_data_size {size} != {nbytes} bytes for shape "
                                    f"{shape} {dtype}, or past the end of the body")
            arr = np.frombuffer(rest, dtype=dt, count=int(np.prod(shape)), offset=offset).reshape(shape)
            offset += size
        elif "data" in spec:
            try:
                arr = np.asarray(spec["data"], dtype=dt).reshape(shape)
            except (ValueError, TypeError) as exc:
                raise ProtocolError(f"tensor '{name}': data does not match shape {shape}: {exc}") from None
        else:
            raise ProtocolError(f"tensor '{name}' has neither data nor parameters.binary_data_size")
        out[name] = arr
    if offset != len(rest):
        raise ProtocolError(f"{len(rest) - offset} bytes of binary data are not claimed by any tensor")
    return out


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


def decode_request(body: bytes, header_len: str | None) -> tuple[np.ndarray, str, bool]:
    """Server side: -> (windows [B, T, F] float32, request id, binary outputs wanted)."""
    msg, rest = _json_and_binary(body, header_len)
    tensors = _read_tensors(msg.get("inputs"), rest, "inputs")
    if INPUT_NAME not in tensors:
        raise ProtocolError(f"missing input tensor '{INPUT_NAME}' (got {sorted(tensors)})")
    wanted = msg.get("outputs") or []
    binary = header_len is not None if not wanted else any(
        (o.get("parameters") or {}).get("binary_data", False) for o in wanted if isinstance(o, dict))
    return tensors[INPUT_NAME].astype(np.float32, copy=False), str(msg.get("id", "")), binary


def encode_response(outputs: dict[str, np.ndarray], model_name: str, version: str, request_id: str,
                    binary: bool) -> tuple[bytes, dict[str, str]]:
    """Server side: named output arrays -> (body, headers)."""
    specs, blobs = [], []
    for name in OUTPUT_NAMES:
        arr = np.ascontiguousarray(outputs[name], dtype="<f4")
        spec: dict[str, Any] = {"name": name, "datatype": "FP32", "shape": list(arr.shape)}
        if binary:
            spec["parameters"] = {"binary_data_size": arr.nbytes}
            blobs.append(arr.tobytes())
        else:
            spec["data"] = arr.ravel().tolist()
        specs.append(spec)
    head = json.dumps({"model_name": model_name, "model_version": version, "id": request_id,
                       "outputs": specs}).encode()
    if not binary:
        return head, {"Content-Type": "application/json"}
    return head + b"".join(blobs), {HEADER_LEN: str(len(head)), "Content-Type": BINARY_CONTENT_TYPE}


def decode_response(body: bytes, header_len: str | None) -> tuple[dict[str, np.ndarray], str]:
    """Client side: -> (outputs by name, model version)."""
    msg, rest = _json_and_binary(body, header_len)
    if "error" in msg:
        raise ProtocolError(str(msg["error"]))
    return _read_tensors(msg.get("outputs"), rest, "outputs"), str(msg.get("model_version", ""))
