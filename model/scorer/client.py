"""Asyncio client of the scorer (what the Flink async function calls).

    client = ScorerClient("http://localhost:8500")
    result = await client.score(windows)        # windows float32 [B, T, F]
    meta = await client.metadata()              # version, threshold, channels, window, ...
    await client.close()

One aiohttp session per event loop, created lazily on first use: the Flink async
operator runs its own loop in a thread, so the session must be born inside that loop.
Connections are pooled and kept alive (`max_connections`). Every call has a total
timeout. Errors are typed: `ScorerUnavailable` (down), `ScorerOverloaded` (503, retry
later), `ScorerRequestError` (400, the request is wrong), `ScorerTimeout`.

`metadata()` reads the model configuration (`GET /v2/models/{name}/config`, Triton's
model-configuration extension): its `parameters` carry the threshold and the window
geometry, so a Triton server with the same config.pbtxt parameters can stand in.
A `token` (default: $DARKPOOL_SCORER_TOKEN) is sent as a bearer token on every call;
the scorer needs it for reloads when it listens beyond loopback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np

from core.job_config import geometry_from_model_config, model_config_parameters
from model.scorer import protocol


class ScorerError(RuntimeError):
    """Base class of scorer client errors."""


class ScorerUnavailable(ScorerError):
    pass


class ScorerOverloaded(ScorerError):
    pass


class ScorerRequestError(ScorerError):
    pass


class ScorerTimeout(ScorerError):
    pass


@dataclass(frozen=True)
class ScoreResult:
    score: np.ndarray  # float32 [B], high = anomalous (compare with the threshold)
    scenario_probs: np.ndarray  # float32 [B, 9], order of core.schemas.SCENARIOS
    recon_error: np.ndarray  # float32 [B], reconstruction error (normalized units)
    channel_z: np.ndarray  # float32 [B, F], per-channel error z vs normal windows (top features)
    model_version: str  # version of the artifact that scored this request


@dataclass(frozen=True)
class ModelMetadata:
    version: str  # artifact content hash
    threshold: float  # global score threshold (calibrated on validation for a target FPR)
    channels: tuple[str, ...]  # channel order the model expects (core.features.CHANNELS)
    scenarios: tuple[str, ...]  # scenario order of scenario_probs
    n_buckets: int  # T
    window: dict[str, int]  # n_buckets, and size_s / slide_s when the artifact records them
    # the model configuration document, its parameters decoded to plain values (the
    # window as a dict, as `window`)
    raw: dict[str, Any]


class ScorerClient:
    def __init__(self, url: str = "http://localhost:8500", model: str = "darkpool", timeout_s: float = 5.0,
                 max_connections: int = 16, binary: bool = True, token: str | None = None):
        self.url = url.rstrip("/")
        self.model = model
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.max_connections = max_connections
        self.binary = binary
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_id = 0
        token = os.environ.get("DARKPOOL_SCORER_TOKEN", "") if token is None else token
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}

    def _down(self, exc: Exception) -> ScorerUnavailable:
        return ScorerUnavailable(
            f"scorer at {self.url} is not reachable ({exc.__class__.__name__}: {exc}): start it with "
            f"`darkpool scorer serve --artifact DIR --port {self.url.rsplit(':', 1)[-1]}`")

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            # A session is bound to the loop that made it; a new loop needs a new session.
            self._session = aiohttp.ClientSession(
                timeout=self.timeout, connector=aiohttp.TCPConnector(limit=self.max_connections))
            self._loop = loop
        return self._session

    async def _request(self, method: str, path: str, **kw: Any) -> tuple[int, bytes, Any]:
        try:
            headers = {**self._auth, **kw.pop("headers", {})}
            async with self._get_session().request(method, self.url + path, headers=headers, **kw) as resp:
                return resp.status, await resp.read(), resp.headers
        except TimeoutError as exc:
            raise ScorerTimeout(f"scorer at {self.url} did not answer {path} within {self.timeout.total}s") from exc
        except aiohttp.ClientConnectionError as exc:
            raise self._down(exc) from exc

    async def score(self, windows: np.ndarray) -> ScoreResult:
        """Score raw windows [B, T, F] (one window [T, F] is accepted as B = 1)."""
        x = np.asarray(windows, dtype=np.float32)
        if x.ndim == 2:
            x = x[None]
        self._next_id += 1
        body, headers = protocol.encode_request(x, str(self._next_id), self.binary)
        status, payload, resp_headers = await self._request(
            "POST", f"/v2/models/{self.model}/infer", data=body, headers=headers)
        if status != 200:
            self._raise_for(status, payload)
        try:
            out, version = protocol.decode_response(payload, resp_headers.get(protocol.HEADER_LEN))
        except protocol.ProtocolError as exc:
            raise ScorerError(f"scorer at {self.url} sent a malformed response: {exc}") from exc
        return ScoreResult(out["score"], out["scenario_probs"], out["recon_error"], out["channel_z"], version)

    def _raise_for(self, status: int, payload: bytes) -> None:
        try:
            message = protocol.json.loads(payload).get("error", payload[:200].decode(errors="replace"))
        except ValueError:
            message = payload[:200].decode(errors="replace")
        if status == 503:
            raise ScorerOverloaded(f"scorer at {self.url}: {message}")
        if 400 <= status < 500:
            raise ScorerRequestError(f"scorer at {self.url} rejected the request: {message}")
        raise ScorerError(f"scorer at {self.url} answered HTTP {status}: {message}")

    async def metadata(self) -> ModelMetadata:
        status, payload, _ = await self._request("GET", f"/v2/models/{self.model}/config")
        if status != 200:
            self._raise_for(status, payload)
        doc = protocol.json.loads(payload)
        try:
            window, channels = geometry_from_model_config(doc)
            p = model_config_parameters(doc)
            meta = ModelMetadata(p["version"], float(p["threshold"]), tuple(channels),
                                 tuple(p.get("scenarios", "").split(",")), window["n_buckets"], window, {})
        except (KeyError, ValueError) as exc:
            raise ScorerError(f"scorer at {self.url}: the model configuration lacks what the job needs "
                              f"({exc.__class__.__name__}: {exc})") from exc
        plain: dict[str, Any] = {**p, "window": window, "channels": list(channels), "threshold": meta.threshold,
                                 "scenarios": list(meta.scenarios), "n_buckets": meta.n_buckets}
        return dataclasses.replace(meta, raw={**doc, "parameters": plain})

    async def ready(self) -> bool:
        try:
            status, _, _ = await self._request("GET", "/v2/health/ready")
        except ScorerError:
            return False
        return status == 200

    async def load(self, artifact_path: str) -> str:
        """Ask the scorer to hot-reload another artifact folder; returns the new version."""
        status, payload, _ = await self._request(
            "POST", f"/v2/repository/models/{self.model}/load", json={"parameters": {"path": str(artifact_path)}})
        if status != 200:
            self._raise_for(status, payload)
        return str(protocol.json.loads(payload)["version"])

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> ScorerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
