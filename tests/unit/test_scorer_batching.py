"""The dynamic batcher in-process: batch formation, result routing, bounded queue."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from model.scorer.batching import DynamicBatcher, Overloaded
from model.scorer.metrics import Metrics


def row_sums(x: np.ndarray) -> tuple[dict[str, np.ndarray], str]:
    """A real batch function whose output identifies each input row."""
    row_sums.batches.append(len(x))
    return {"score": x.sum(axis=(1, 2))}, "v1"


row_sums.batches = []


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_batches_and_get_their_rows():
    row_sums.batches.clear()

    async def main():
        b = DynamicBatcher(row_sums, max_batch=64, max_delay_s=0.05, max_queue=1024, metrics=Metrics())
        b.start()
        xs = [np.full((1 + i % 5, 2, 3), float(i), np.float32) for i in range(30)]
        outs = await asyncio.gather(*(b.submit(x) for x in xs))
        assert b._queued_windows == 0 and b.in_flight == 0
        await b.stop()
        return xs, outs

    xs, outs = run(main())
    for x, (out, version) in zip(xs, outs, strict=True):
        assert version == "v1"
        np.testing.assert_array_equal(out["score"], x.sum(axis=(1, 2)))
    assert sum(row_sums.batches) == sum(len(x) for x in xs)
    assert len(row_sums.batches) < len(xs)  # requests were merged
    assert max(row_sums.batches) <= 64


def test_oversized_request_runs_alone_and_full_queue_rejects():
    row_sums.batches.clear()

    async def main():
        b = DynamicBatcher(row_sums, max_batch=8, max_delay_s=0.2, max_queue=16, metrics=Metrics())
        # queue first, start the batching task afterwards: the queue state is then exact
        big = asyncio.ensure_future(b.submit(np.ones((12, 1, 1), np.float32)))  # > max_batch: alone
        small = asyncio.ensure_future(b.submit(np.ones((4, 1, 1), np.float32)))
        await asyncio.sleep(0)  # both queued now: 16 windows = the queue bound
        with pytest.raises(Overloaded, match="overloaded"):
            await b.submit(np.ones((1, 1, 1), np.float32))
        b.start()
        r_big, r_small = await asyncio.gather(big, small)
        await b.stop()
        return r_big, r_small

    r_big, r_small = run(main())
    assert r_big[0]["score"].shape == (12,) and r_small[0]["score"].shape == (4,)
    assert 12 in row_sums.batches


def test_failing_batch_fails_only_its_requests():
    calls = {"n": 0}

    def flaky(x):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return {"score": x.sum(axis=(1, 2))}, "v1"

    async def main():
        b = DynamicBatcher(flaky, max_batch=4, max_delay_s=0.0, max_queue=64, metrics=Metrics())
        b.start()
        first = await asyncio.gather(b.submit(np.ones((4, 1, 1), np.float32)), return_exceptions=True)
        second = await b.submit(np.ones((2, 1, 1), np.float32))
        await b.stop()
        return first[0], second

    err, ok = run(main())
    assert isinstance(err, RuntimeError) and ok[0]["score"].tolist() == [1.0, 1.0]
