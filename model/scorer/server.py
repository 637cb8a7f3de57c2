"""The scorer service: one artifact resident on the GPU (or CPU), OIP v2 over aiohttp.

Lifecycle (Triton-like): load the artifact once, warm up, bind, then answer requests
through the dynamic batcher; one response per request, errors per request as JSON
`{"error": ...}`: 400 bad request, 401 missing or wrong token, 403 artifact outside the
root, 404 unknown endpoint, model or version, 405 wrong method, 413 body too large, 503
overloaded or not ready, 500 only for a failure of the server itself.

Hot reload (`POST /v2/repository/models/darkpool/load` with `{"parameters": {"path":
DIR}}`, or SIGHUP to re-read the current folder) loads and warms the new model beside
the old one and swaps it between two batches: nothing in flight is dropped, each
response names the version that scored it. A reload only loads folders under the
artifact root, and needs `Authorization: Bearer <token>` when a token is configured;
the scorer refuses to listen beyond loopback without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from aiohttp import web

from model.artifact import Artifact, load_artifact
from model.scorer import protocol
from model.scorer.backends import Forward, make_forward, warmup_sizes
from model.scorer.batching import DynamicBatcher, Overloaded
from model.scorer.metrics import Metrics
from model.transformer import resolve_device, resolve_dtype

log = logging.getLogger("darkpool.scorer")
access_log = logging.getLogger("darkpool.scorer.access")
MODEL_NAME = "darkpool"
TOKEN_ENV = "DARKPOOL_SCORER_TOKEN"
ROOT_ENV = "DARKPOOL_SCORER_ARTIFACT_ROOT"
ACCESS_LOG_ENV = "DARKPOOL_SCORER_ACCESS_LOG"
ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tfs'  # client, request line, status, bytes, seconds


@dataclass(frozen=True)
class ScorerConfig:
    artifact: Path  # artifact folder written by `darkpool train`
    host: str = "127.0.0.1"  # bind address; beyond loopback a token is required
    port: int = 8500  # HTTP port (0: any free port)
    max_batch: int = 256  # most windows per model call
    max_delay_ms: float = 2.0  # longest a request waits for its batch to fill
    max_queue: int = 8192  # most windows queued (and in one request); beyond it requests get 503 "overloaded"
    device: str = "auto"  # torch device: auto = cuda when present, else cpu
    dtype: str = "auto"  # compute dtype: auto = bfloat16 on cuda, float32 on cpu
    # torch CPU threads (0 = torch default). 1: the event loop needs the other core of a
    # 2-core box, and two spinning OpenMP threads on a busy machine were measured far slower.
    threads: int = 1
    backend: str = "torch"  # how the model runs: torch (eager) | jax (XLA-jitted, CPU float32): model/scorer/backends.py
    warmup_batches: int = 3  # forward passes at max_batch before reporting ready
    # largest request body; 413 beyond. 64 MiB holds a full queue of 8192 windows in
    # binary (12.6 MB at 12 x 32) but only ~8,000 in JSON (~20 bytes a number)
    max_request_bytes: int = 64 * 1024 * 1024
    # reloads load only folders under this one; None: $DARKPOOL_SCORER_ARTIFACT_ROOT,
    # else the folder that holds `artifact` (artifacts/ for artifacts/small)
    artifact_root: Path | None = None
    token: str | None = None  # bearer token for reloads; None: $DARKPOOL_SCORER_TOKEN ("" = none)
    access_log: bool | None = None  # one INFO line per request; None: $DARKPOOL_SCORER_ACCESS_LOG=1


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name, or "" (all interfaces)
        return False


class ApiError(Exception):
    """An answer other than 200; the middleware turns it into `{"error": message}`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


class ModelRunner:
    """Holds the current artifact; `run_batch` runs in the batcher's model thread."""

    def __init__(self, cfg: ScorerConfig):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        if cfg.backend != "torch" and (self.device.type != "cpu" or self.dtype != torch.float32):
            raise ValueError(f"--backend {cfg.backend} runs float32 on the CPU here: give --device cpu "
                             "(and no --dtype), or --backend torch")
        # version -> the artifact's forward pass on cfg.backend (the current one and the one before)
        self._forwards: dict[str, Forward] = {}
        self.current: Artifact = self.load(cfg.artifact)

    def load(self, path: Path) -> Artifact:
        art = load_artifact(path, self.device, self.dtype)
        forward = make_forward(self.cfg.backend, art)
        for size in warmup_sizes(self.cfg.backend, self.cfg.max_batch):
            x = np.zeros((size, art.cfg.n_buckets, art.cfg.n_channels), np.float32)
            for _ in range(self.cfg.warmup_batches):
                forward(x)
        self._forwards = {**{k: v for k, v in list(self._forwards.items())[-1:]}, art.version: forward}
        return art

    def run_batch(self, x: np.ndarray) -> tuple[dict[str, np.ndarray], str]:
        art = self.current  # one reference read: a concurrent swap cannot split a batch
        return self._forwards[art.version](x), art.version

    def config_parameters(self) -> dict[str, str]:
        """What the job reads from `GET /v2/models/darkpool/config` (core/job_config.py
        `geometry_from_model_config`); a config.pbtxt for Triton carries the same."""
        art = self.current
        window = art.config.get("window") or {}
        params = {
            "version": art.version,
            "threshold": repr(float(art.threshold)),
            "channels": ",".join(art.config["channels"]),
            "scenarios": ",".join(art.config["scenarios"]),
            "n_buckets": str(art.cfg.n_buckets),
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
        }
        for key in ("size_s", "slide_s"):
            if window.get(key):
                params[f"window_{key}"] = str(int(window[key]))
        return params


class ScorerApp:
    def __init__(self, cfg: ScorerConfig):
        self.token = cfg.token if cfg.token is not None else os.environ.get(TOKEN_ENV, "")
        if not is_loopback(cfg.host) and not self.token:
            raise ValueError(f"refusing to listen on {cfg.host or 'all interfaces'} without a token: set "
                             f"{TOKEN_ENV} (model reloads must then send it as a bearer token), or bind 127.0.0.1")
        root = cfg.artifact_root or os.environ.get(ROOT_ENV) or Path(cfg.artifact).resolve().parent
        self.artifact_root = Path(root).resolve()
        self.access_log = cfg.access_log if cfg.access_log is not None else os.environ.get(ACCESS_LOG_ENV) == "1"
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
            if cfg.backend == "jax":  # XLA's CPU thread pool, before jax starts (the same reason as torch's)
                os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                                                   f"intra_op_parallelism_threads={cfg.threads}")
        self.cfg = cfg
        self.metrics = Metrics()
        self.runner = ModelRunner(cfg)
        self.batcher: DynamicBatcher | None = None
        self.ready = False
        self.port: int | None = None  # the bound port, once listening
        self._reload_lock = asyncio.Lock()

    # ---- routing, errors, the request counter ------------------------------------------
    def build(self) -> web.Application:
        app = web.Application(client_max_size=self.cfg.max_request_bytes, middlewares=[self._answer])
        get, post = app.router.add_get, app.router.add_post
        get("/v2", self.server_metadata)
        get("/v2/health/live", self.health_live)
        get("/v2/health/ready", self.health_ready)
        get("/v2/models/stats", self.stats)  # before /v2/models/{model}, which it would match
        for base in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
            get(base, self.model_metadata)
            get(f"{base}/ready", self.model_ready)
            get(f"{base}/config", self.model_config)
            get(f"{base}/stats", self.stats)
            post(f"{base}/infer", self.infer)
        post("/v2/repository/index", self.repository_index)
        post("/v2/repository/models/{model}/load", self.load)
        get("/metrics", self.prometheus)
        app.on_startup.append(self._startup)
        app.on_cleanup.append(self._cleanup)
        return app

    @web.middleware
    async def _answer(self, request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        t0 = time.perf_counter()
        try:
            resp = await handler(request)
        except ApiError as exc:
            resp = _error(exc.status, exc.message, exc.headers)
        except web.HTTPException as exc:  # the router's 404 / 405, the body reader's 413
            resp = _error(exc.status, self._http_message(request, exc), _allow_header(exc))
        except Exception as exc:  # a bug or a failing server: the one place 500 comes from
            log.exception("%s %s failed", request.method, request.path)
            resp = _error(500, f"internal error: {exc.__class__.__name__}: {exc}")
        if request.path.endswith("/infer"):
            self.metrics.inc("requests_total", labels=f'code="{resp.status}"')
            self.metrics.observe("request_seconds", time.perf_counter() - t0)
        return resp

    def _http_message(self, request: web.Request, exc: web.HTTPException) -> str:
        if isinstance(exc, web.HTTPMethodNotAllowed):
            return f"{request.method} is not allowed on {request.path}; use {', '.join(sorted(exc.allowed_methods))}"
        if isinstance(exc, web.HTTPRequestEntityTooLarge):
            return (f"request body over {self.cfg.max_request_bytes} bytes: send fewer windows per request "
                    "(binary tensors take 4 bytes a value, JSON about 20)")
        if isinstance(exc, web.HTTPNotFound):
            return f"no endpoint {request.method} {request.path}; see GET /v2 and GET /v2/models/{MODEL_NAME}"
        return exc.text or exc.reason

    def _artifact(self, request: web.Request) -> Artifact:
        """The artifact a /v2/models/{model}[/versions/{version}] path names, or 404."""
        art, model = self.runner.current, request.match_info["model"]
        if model != MODEL_NAME:
            raise ApiError(404, f"unknown model '{model}': this scorer serves '{MODEL_NAME}'")
        version = request.match_info.get("version")
        if version is not None and version != art.version:
            raise ApiError(404, f"model '{MODEL_NAME}' has no version '{version}' loaded (serving {art.version})")
        return art

    # ---- lifecycle ---------------------------------------------------------------------
    async def _startup(self, app: web.Application) -> None:
        self.batcher = DynamicBatcher(self.runner.run_batch, self.cfg.max_batch, self.cfg.max_delay_ms / 1e3,
                                      self.cfg.max_queue, self.metrics)
        self.batcher.start()
        # not possible outside the main thread (in-process tests) or off POSIX
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)
        self.ready = True

    async def _cleanup(self, app: web.Application) -> None:
        self.ready = False
        if self.batcher:
            await self.batcher.stop()

    async def run(self, stop: asyncio.Event, announce: Callable[[str], None] = print) -> None:
        """Bind, announce, serve until `stop` is set; a failed bind raises OSError before
        anything claims to be listening."""
        runner = web.AppRunner(self.build(), handle_signals=False,
                               access_log=access_log if self.access_log else None,
                               access_log_format=ACCESS_LOG_FORMAT)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.cfg.host, self.cfg.port)
            await site.start()
            self.port = runner.addresses[0][1]
            art = self.runner.current
            announce(f"scorer: model {art.version} ({art.cfg.n_layer} layers, {art.cfg.n_embd} dims) on "
                     f"{self.runner.device} {self.runner.dtype}; listening on http://{self.cfg.host}:{self.port}")
            await stop.wait()
        finally:
            await runner.cleanup()

    # ---- health and documents ----------------------------------------------------------
    async def server_metadata(self, request: web.Request) -> web.Response:
        return web.json_response(protocol.server_metadata(_package_version()))

    async def health_live(self, request: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def health_ready(self, request: web.Request) -> web.Response:
        if not self.ready:
            raise ApiError(503, "scorer not ready (warming up or stopping)")
        return web.json_response({"ready": True, "version": self.runner.current.version})

    async def model_ready(self, request: web.Request) -> web.Response:
        self._artifact(request)
        return await self.health_ready(request)

    async def model_metadata(self, request: web.Request) -> web.Response:
        art = self._artifact(request)
        return web.json_response(protocol.model_metadata(MODEL_NAME, art.version, art.cfg.n_buckets,
                                                         art.cfg.n_channels))

    async def model_config(self, request: web.Request) -> web.Response:
        art, c = self._artifact(request), self.cfg
        return web.json_response(protocol.model_config(
            MODEL_NAME, art.cfg.n_buckets, art.cfg.n_channels, c.max_queue, c.max_batch, c.max_delay_ms, c.max_queue,
            self.runner.device.type == "cuda", self.runner.config_parameters()))

    async def stats(self, request: web.Request) -> web.Response:
        if "model" in request.match_info:
            self._artifact(request)
        versions = [request.match_info.get("version") or self.runner.current.version]
        if "version" not in request.match_info:  # all versions served so far, current first
            versions += [v for v in self.metrics.models if v != versions[0]]
        return web.json_response({"model_stats": [self.metrics.model(v).document(MODEL_NAME, v) for v in versions]})

    async def repository_index(self, request: web.Request) -> web.Response:
        return web.json_response([{"name": MODEL_NAME, "version": self.runner.current.version,
                                   "state": "READY" if self.ready else "UNAVAILABLE"}])

    async def prometheus(self, request: web.Request) -> web.Response:
        art = self.runner.current
        info = {"version": art.version, "device": str(self.runner.device), "preset_layers": str(art.cfg.n_layer)}
        return web.Response(text=self.metrics.render(info), content_type="text/plain")

    # ---- inference ---------------------------------------------------------------------
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
        t0, ok = time.perf_counter(), False
        version = self._artifact(request).version
        try:
            if not self.ready or self.batcher is None:
                raise ApiError(503, "scorer not ready (warming up or stopping)")
            body = await request.read()
            try:
                req = protocol.decode_request(body, request.headers.get(protocol.HEADER_LEN))
                self._validate(req.windows)
            except protocol.ProtocolError as exc:
                raise ApiError(400, str(exc)) from None
            try:
                outputs, version = await self.batcher.submit(req.windows)
            except Overloaded as exc:
                raise ApiError(503, str(exc)) from None
            except Exception as exc:  # model failure: report it on this request
                log.exception("batch failed")
                raise ApiError(500, f"inference failed: {exc.__class__.__name__}: {exc}") from None
            pinned = request.match_info.get("version")
            if pinned is not None and version != pinned:
                raise ApiError(404, f"version '{pinned}' was unloaded while this request waited (now {version})")
            self.metrics.inc("windows_total", len(req.windows))
            payload, headers = protocol.encode_response(outputs, MODEL_NAME, version, req.id, req.outputs)
            ok = True
            return web.Response(body=payload, headers=headers)
        finally:
            self.metrics.model(version).request(ok, time.perf_counter() - t0)

    # ---- reload ------------------------------------------------------------------------
    def _authorize(self, request: web.Request) -> None:
        if not self.token:
            return  # loopback only (checked at start)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="darkpool-scorer"'}
        if scheme.lower() != "bearer" or not given:
            raise ApiError(401, f"model reloads need 'Authorization: Bearer <token>' (the scorer's {TOKEN_ENV})",
                           challenge)
        if not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            raise ApiError(401, f"wrong bearer token: send the scorer's {TOKEN_ENV}", challenge)

    def _under_root(self, raw: str) -> Path:
        path = Path(raw) if Path(raw).is_absolute() else self.artifact_root / raw
        resolved = path.resolve()  # symlinks and .. resolved before the check
        if not resolved.is_relative_to(self.artifact_root):
            raise ApiError(403, f"{raw} is outside the artifact root {self.artifact_root}: copy the artifact under "
                                f"it, or start the scorer with {ROOT_ENV} set to a folder that holds it")
        return resolved

    async def reload(self, path: Path) -> str:
        """Load + warm the new artifact off the event loop, then swap it in."""
        async with self._reload_lock:
            old = self.runner.current.version
            try:
                art = await asyncio.get_running_loop().run_in_executor(None, self.runner.load, path)
            except torch.cuda.OutOfMemoryError:
                raise ApiError(503, f"not enough device memory to load {path} beside {old}; still serving {old}") \
                    from None
            except Exception as exc:  # noqa: BLE001 (a bad artifact in any way is the caller's to fix)
                raise ApiError(400, f"reload failed, still serving {old}: {path} does not load "
                                    f"({exc.__class__.__name__}: {exc})") from None
            self.runner.current = art
            self.metrics.inc("reloads_total")
            log.info("reloaded %s: version %s -> %s", path, old, art.version)
            return art.version

    def _on_sighup(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload(self.runner.current.path))
        task.add_done_callback(lambda t: t.exception() and log.error("SIGHUP reload failed: %s", t.exception()))

    async def load(self, request: web.Request) -> web.Response:
        model = request.match_info["model"]
        if model != MODEL_NAME:
            raise ApiError(404, f"unknown model '{model}': this scorer serves '{MODEL_NAME}'")
        self._authorize(request)
        try:
            path = (await request.json())["parameters"]["path"]
            if not isinstance(path, str) or not path:
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise ApiError(400, 'body must be {"parameters": {"path": "<artifact folder>"}}') from None
        version = await self.reload(self._under_root(path))
        return web.json_response({"loaded": True, "version": version})


def _allow_header(exc: web.HTTPException) -> dict[str, str] | None:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else None


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("darkpool-surveillance")
    except PackageNotFoundError:
        return "0"


def serve(cfg: ScorerConfig) -> None:
    """Run until SIGINT/SIGTERM (blocking). ValueError: refused configuration; OSError:
    the address cannot be bound."""
    scorer = ScorerApp(cfg)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await scorer.run(stop, lambda line: print(line, flush=True))

    asyncio.run(main())

