"""Shared by the scorer benchmarks: start a scorer process, drive it with concurrent clients."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from darkpool.stack.scorer import ScorerProcess  # noqa: E402
from model.scorer.client import ScorerClient, ScorerOverloaded  # noqa: E402


def start_scorer(artifact: Path, extra: list[str], timeout_s: float = 180) -> tuple[ScorerProcess, str]:
    """A scorer on a free port with the given `scorer serve` flags; (process, url)."""
    proc = ScorerProcess(artifact, options=extra, ready_timeout_s=timeout_s)
    return proc, proc.url


def cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_scorer(proc: ScorerProcess) -> None:
    proc.stop()


async def _drive(url: str, batch: int, clients: int, seconds: float, shape: tuple[int, int]) -> dict:
    x = np.random.default_rng(0).normal(0, 1, (batch, *shape)).astype(np.float32)
    lat: list[float] = []
    overloaded = 0
    async with ScorerClient(url, timeout_s=30, max_connections=clients) as client:
        await client.score(x)  # connections + first batch out of the timing
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal overloaded
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                try:
                    await client.score(x)
                except ScorerOverloaded:
                    overloaded += 1
                    await asyncio.sleep(0.001)
                    continue
                lat.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - t0
    lat_ms = np.array(lat) * 1e3
    return {
        "windows_per_request": batch, "clients": clients, "requests": len(lat), "overloaded": overloaded,
        "windows_per_s": round(len(lat) * batch / wall, 1),
        "p50_ms": round(float(np.percentile(lat_ms, 50)), 3) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat_ms, 99)), 3) if len(lat) else None,
    }


def drive(url: str, batch: int, clients: int, seconds: float, shape: tuple[int, int],
          server_pid: int | None = None) -> dict:
    """Drive the scorer; with server_pid also CPU seconds used (server + these clients).

    On a shared machine wall-clock throughput depends on everyone else's load;
    windows per CPU-second (server and client together) does not, and x cores gives
    the throughput the same work would reach with the cores to itself.
    """
    c0 = time.process_time()
    s0 = cpu_seconds(server_pid) if server_pid else 0.0
    out = asyncio.run(_drive(url, batch, clients, seconds, shape))
    if server_pid:
        server_cpu = cpu_seconds(server_pid) - s0
        client_cpu = time.process_time() - c0
        windows = (out["requests"] + 1) * batch  # + the untimed first request
        out["server_cpu_s"] = round(server_cpu, 2)
        out["client_cpu_s"] = round(client_cpu, 2)
        out["windows_per_cpu_s"] = round(windows / max(server_cpu + client_cpu, 1e-9), 1)
        out["server_windows_per_cpu_s"] = round(windows / max(server_cpu, 1e-9), 1)
    return out
