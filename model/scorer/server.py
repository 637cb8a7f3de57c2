"""The scorer service: one artifact resident on the GPU (or CPU), OIP v2 over aiohttp.

Lifecycle (Triton-like): load the artifact once, warm up, then answer requests through
the dynamic batcher; one response per request, errors per request (400 for that
request only, 503 when overloaded or not ready). Hot reload (`POST
/v2/repository/models/darkpool/load` with `{"parameters": {"path": DIR}}`, or SIGHUP to
re-read the current folder) loads and warms the new model beside the old one and swaps
it between two batches: nothing in flight is dropped, each response names the version
that scored it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from aiohttp import web

from core.schemas import SCENARIOS
from model.artifact import Artifact, load_artifact
from model.scorer import protocol
from model.scorer.batching import DynamicBatcher, Overloaded
from model.scorer.metrics import Metrics
from model.transformer import resolve_device, resolve_dtype

log = logging.getLogger("darkpool.scorer")
MODEL_NAME = "darkpool"


@dataclass(frozen=True)
class ScorerConfig:
    artifact: Path  # artifact folder written by `darkpool train`
    host: str = "127.0.0.1"  # bind address
    port: int = 8500  # HTTP port
    max_batch: int = 256  # most windows per model call
    max_delay_ms: float = 2.0  # longest a request waits for its batch to fill
    max_queue: int = 8192  # most windows queued; beyond it requests get 503 "overloaded"
    device: str = "auto"  # torch device: auto = cuda when present, else cpu
    dtype: str = "auto"  # compute dtype: auto = bfloat16 on cuda, float32 on cpu
    # torch CPU threads (0 = torch default). 1: the event loop needs the other core of a
    # 2-core box, and two spinning OpenMP threads on a busy machine were measured far slower.
    threads: int = 1
    warmup_batches: int = 3  # forward passes at max_batch before reporting ready


class ModelRunner:
    """Holds the current artifact; `run_batch` runs in the batcher's model thread."""

    def __init__(self, cfg: ScorerConfig):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        self.current: Artifact = self.load(cfg.artifact)

    def load(self, path: Path) -> Artifact:
        art = load_artifact(path, self.device, self.dtype)
        x = np.zeros((self.cfg.max_batch, art.cfg.n_buckets, art.cfg.n_channels), np.float32)
        for _ in range(self.cfg.warmup_batches):
            self._forward(art, x)
        return art

    @staticmethod
    @torch.inference_mode()
    def _forward(art: Artifact, x: np.ndarray) -> dict[str, np.ndarray]:
        out = art.model(torch.from_numpy(x).to(art.model.mean.device))
        return {k: out[k].float().cpu().numpy() for k in protocol.OUTPUT_NAMES}

    def run_batch(self, x: np.ndarray) -> tuple[dict[str, np.ndarray], str]:
        art = self.current  # one reference read: a concurrent swap cannot split a batch
        return self._forward(art, x), art.version

    def metadata(self) -> dict[str, Any]:
        art = self.current
        T, F = art.cfg.n_buckets, art.cfg.n_channels
        return {
            "name": MODEL_NAME,
            "versions": [art.version],
            "platform": "pytorch",
            "inputs": [{"name": protocol.INPUT_NAME, "datatype": "FP32", "shape": [-1, T, F]}],
            "outputs": [
                {"name": "score", "datatype": "FP32", "shape": [-1]},
                {"name": "scenario_probs", "datatype": "FP32", "shape": [-1, len(SCENARIOS)]},
                {"name": "recon_error", "datatype": "FP32", "shape": [-1]},
                {"name": "channel_z", "datatype": "FP32", "shape": [-1, F]},
            ],
            "parameters": {
                "version": art.version,
                "threshold": art.threshold,
                "channels": art.config["channels"],
                "scenarios": art.config["scenarios"],
                "n_buckets": T,
                "window": art.config.get("window", {}),
                "device": str(self.device),
                "dtype": str(self.dtype).removeprefix("torch."),
                "artifact": str(art.path),
            },
        }


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class ScorerApp:
    def __init__(self, cfg: ScorerConfig):
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.cfg = cfg
        self.metrics = Metrics()
        self.runner = ModelRunner(cfg)
        self.batcher: DynamicBatcher | None = None
        self.ready = False
        self._reload_lock = asyncio.Lock()

    def build(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        base = f"/v2/models/{MODEL_NAME}"
        app.router.add_get("/v2/health/live", lambda r: web.json_response({"live": True}))
        app.router.add_get("/v2/health/ready", self.health_ready)
        app.router.add_get(base, lambda r: web.json_response(self.runner.metadata()))
        app.router.add_get(f"{base}/ready", self.health_ready)
        app.router.add_post(f"{base}/infer", self.infer)
        app.router.add_post(f"/v2/repository/models/{MODEL_NAME}/load", self.load)
        app.router.add_get("/metrics", self.prometheus)
        app.on_startup.append(self._startup)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _startup(self, app: web.Application) -> None:
        self.batcher = DynamicBatcher(self.runner.run_batch, self.cfg.max_batch, self.cfg.max_delay_ms / 1e3,
                                      self.cfg.max_queue, self.metrics)
        self.batcher.start()
        # not possible outside the main thread (in-process tests) or off POSIX
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)
        self.ready = True

    async def _cleanup(self, app: web.Application) -> None:
        self.ready = False
        if self.batcher:
            await self.batcher.stop()

    async def health_ready(self, request: web.Request) -> web.Response:
        if not self.ready:
            return _error(503, "not ready")
        return web.json_response({"ready": True, "version": self.runner.current.version})

    def _validate(self, x: np.ndarray) -> None:
        cfg = self.runner.current.cfg
        want = (cfg.n_buckets, cfg.n_channels)
        if x.ndim != 3 or tuple(x.shape[1:]) != want or x.shape[0] < 1:
            raise protocol.ProtocolError(
                f"input 'windows' must have shape [B>=1, {want[0]}, {want[1]}] (T buckets x F channels of "
                f"core.features.CHANNELS), got {list(x.shape)}")
        if x.shape[0] > self.cfg.max_queue:
            raise protocol.ProtocolError(f"{x.shape[0]} windows in one request exceed the queue size "
                                         f"{self.cfg.max_queue}; split the request")
        finite = np.isfinite(x).all(axis=(1, 2))
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise protocol.ProtocolError(f"windows {bad[:5].tolist()} contain NaN or infinity; "
                                         "the job must send finite raw features")

    async def infer(self, request: web.Request) -> web.Response:
        t0 = time.perf_counter()
        status, resp = 200, None
        try:
            if not self.ready or self.batcher is None:
                status, resp = 503, _error(503, "scorer not ready (warming up)")
                return resp
            body = await request.read()
            try:
                x, rid, binary = protocol.decode_request(body, request.headers.get(protocol.HEADER_LEN))
                self._validate(x)
            except protocol.ProtocolError as exc:
                status, resp = 400, _error(400, str(exc))
                return resp
            try:
                outputs, version = await self.batcher.submit(x)
            except Overloaded as exc:
                status, resp = 503, _error(503, str(exc))
                return resp
            except Exception as exc:  # model failure: report it on this request
                log.exception("batch failed")
                status, resp = 500, _error(500, f"inference failed: {exc}")
                return resp
            self.metrics.inc("windows_total", len(x))
            payload, headers = protocol.encode_response(outputs, MODEL_NAME, version, rid, binary)
            resp = web.Response(body=payload, headers=headers)
            return resp
        finally:
            self.metrics.inc("requests_total", labels=f'code="{status}"')
            self.metrics.observe("request_seconds", time.perf_counter() - t0)

    async def reload(self, path: Path) -> str:
        """Load + warm the new artifact off the event loop, then swap it in."""
        async with self._reload_lock:
            art = await asyncio.get_running_loop().run_in_executor(None, self.runner.load, path)
            old = self.runner.current.version
            self.runner.current = art
            self.metrics.inc("reloads_total")
            log.info("reloaded %s: version %s -> %s", path, old, art.version)
            return art.version

    def _on_sighup(self) -> None:
        path = self.runner.current.path
        task = asyncio.get_running_loop().create_task(self.reload(path))
        task.add_done_callback(lambda t: t.exception() and log.error("SIGHUP reload failed: %s", t.exception()))

    async def load(self, request: web.Request) -> web.Response:
        try:
            msg = await request.json()
            path = Path(msg["parameters"]["path"])
        except Exception:
            return _error(400, 'body must be {"parameters": {"path": "<artifact folder>"}}')
        try:
            version = await self.reload(path)
        except (FileNotFoundError, ValueError, RuntimeError) as exc:
            return _error(400, f"reload failed, still serving {self.runner.current.version}: {exc}")
        return web.json_response({"loaded": True, "version": version})

    async def prometheus(self, request: web.Request) -> web.Response:
        art = self.runner.current
        info = {"version": art.version, "device": str(self.runner.device), "preset_layers": str(art.cfg.n_layer)}
        return web.Response(text=self.metrics.render(info), content_type="text/plain")


def serve(cfg: ScorerConfig) -> None:
    """Run until SIGINT/SIGTERM (blocking)."""
    scorer = ScorerApp(cfg)
    art = scorer.runner.current
    print(f"scorer: model {art.version} ({art.cfg.n_layer} layers, {art.cfg.n_embd} dims) on "
          f"{scorer.runner.device} {scorer.runner.dtype}; listening on http://{cfg.host}:{cfg.port}", flush=True)
    web.run_app(scorer.build(), host=cfg.host, port=cfg.port, print=None, access_log=None)
