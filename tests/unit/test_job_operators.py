"""The job's Python operators, each driven by the in-process operator harness
(tests/support/harness.py, no JVM), fed the records the operator before it emits:

    SplitDeadLetters -> Heartbeat(WindowAssembler) -> ScoreWindows (async, against a
    real scorer) -> ShardThresholds (tests/unit/test_process_harness.py)

The pane rows come from the pane UDAF's body (`udfs.pane_udaf.pane_batch`) on seeded
events, in the job's UNION ALL layout (jobs/detect_anomalies.union_query).
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
from pathlib import Path

import aiohttp
import numpy as np
import pandas as pd
import pytest
from aiohttp import web

from core.features import CHANNELS, pane_features, windows_from_panes
from core.records import scored_windows
from model.rules import Rules
from model.scorer import protocol
from model.scorer.client import ScorerRequestError
from tests.samples import GOOD, payload
from tests.support.harness import AsyncHarness, Harness, main_output, side_output
from tests.unit.test_scorer import GEOMETRY, InProcessScorer, expected, free_port, make_artifact
from udfs.assembler import ShardCountChanged, WindowAssembler, window_batch_arrays
from udfs.deadletter import DEAD_LETTERS, SplitDeadLetters
from udfs.heartbeat import Heartbeat
from udfs.pane_udaf import PANE_BATCH, UDAF_COLUMNS, pane_batch
from udfs.scoring import ScorerDown, ScoreWindows
from udfs.shard_thresholds import ShardThresholds

SLIDE_S, T, SHARDS = 5, 12, 2
SLIDE_NS, SLIDE_MS = SLIDE_S * 10**9, SLIDE_S * 1000
T0 = 1_700_000_000 * 10**9
SHARD_OF = {"AB": 0, "CD": 0, "EF": 1}
SIDE_NULLS = (None,) * 6  # reason, payload, src_partition, src_offset, ts, watermark_ms
PANE_COLS = 1 + len(PANE_BATCH.fields)  # the shard and the pane UDAF's fields, after `kind`


def _events(n: int, seed: int, span_panes: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ev = rng.choice(["new", "cancel", "fill"], n)
    ts = T0 + np.sort(rng.integers(0, span_panes * SLIDE_NS, n))
    return pd.DataFrame({
        "ts": ts, "event": ev, "participant": rng.choice(["A-1", "B-2", "C-3"], n), "side": rng.choice(["B", "S"], n),
        "price": 10 + rng.normal(0, 0.01, n), "qty": rng.integers(1, 500, n),
        "contra": np.where(ev == "fill", rng.choice(["A-2", "D-1"], n), None), "bid": np.full(n, 9.99),
        "ask": np.full(n, 10.01), "hidden": rng.random(n) < 0.5, "order_id": [f"o{seed}-{i // 3}" for i in range(n)],
        "read_ms": ts // 10**6 + 40,
    })  # fmt: skip


@functools.cache
def market() -> dict[str, pd.DataFrame]:
    """Three instruments on two shards: CD skips every third pane, EF is silent for
    longer than an instrument normal lives (core/pane_normals.IDLE_PANES) mid-way, while
    AB trades on, now and then, so the watermark moves (and sweeps run) meanwhile."""
    from core.pane_normals import IDLE_PANES

    frames = {name: _events(1500, seed, 120) for seed, name in enumerate(SHARD_OF, 2)}
    cd = frames["CD"]
    frames["CD"] = cd[(cd.ts // SLIDE_NS) % 3 != 0]
    ef = frames["EF"]
    late = ef.ts >= T0 + 60 * SLIDE_NS
    frames["EF"] = ef.assign(ts=np.where(late, ef.ts + (IDLE_PANES + 30) * SLIDE_NS, ef.ts))
    ab = _events(60, 9, IDLE_PANES + 60)  # sparse: about one pane in 13
    frames["AB"] = pd.concat([frames["AB"], ab[ab.ts >= T0 + 120 * SLIDE_NS]], ignore_index=True)
    return {name: df.assign(instrument=name) for name, df in frames.items()}


@functools.cache
def market_rows() -> list[tuple[int, tuple]]:
    return union_rows(market())


def union_rows(frames: dict[str, pd.DataFrame]) -> list[tuple[int, tuple]]:
    """(pane, row) in pane order: one 'pane' row per (shard, pane) with events, as the
    pane UDAF fires them, in the job's UNION ALL layout."""
    df = pd.concat(frames.values()).assign(pane=lambda d: d.ts // SLIDE_NS, shard=lambda d: d.instrument.map(SHARD_OF))
    out = []
    for (pane, shard), group in df.groupby(["pane", "shard"], sort=True):
        batch = pane_batch({c: group[c] for c in UDAF_COLUMNS}, SLIDE_NS)
        out.append((int(pane), ("pane", int(shard), *batch, *SIDE_NULLS)))
    return out


def dead_row(kind: str, reason: str, text: str, partition: int | None, offset: int | None,
             ts: int | None = None, wm: int | None = None) -> tuple:  # fmt: skip
    return (kind, *(None,) * PANE_COLS, reason, text, partition, offset, ts, wm)


def training_windows(frames: dict[str, pd.DataFrame]) -> dict[str, dict[int, np.ndarray]]:
    """Per instrument, end pane -> the window training builds (core.features)."""
    out = {}
    for name, df in frames.items():
        panes = np.sort((df.ts // SLIDE_NS).unique())
        ends, ws = windows_from_panes(panes, pane_features(df.assign(pane=df.ts // SLIDE_NS), SLIDE_NS), T, SLIDE_NS)
        out[name] = dict(zip(ends.tolist(), ws, strict=True))
    return out


def assemble(frames: dict[str, pd.DataFrame]) -> tuple[Harness, Harness, list]:
    """The market through SplitDeadLetters and WindowAssembler, the watermark following
    the panes (as the tumbling pane window fires them); returns both harnesses and the
    window batches in emission order."""
    split, asm = Harness(SplitDeadLetters("trades")), Harness(WindowAssembler(T, SLIDE_S, SHARDS))
    batches = []
    for pane, row in market_rows() if frames is market() else union_rows(frames):
        for rec in main_output(split.process(row)):
            batches += asm.process(rec, key=rec[0])
        batches += asm.advance((pane + 1) * SLIDE_MS - 1)
    return split, asm, batches


# ---- SplitDeadLetters -------------------------------------------------------------------


def test_split_passes_pane_batches_on_and_turns_side_rows_into_counted_dead_letters() -> None:
    h = Harness(SplitDeadLetters("trades"))
    (pane, row), *_ = market_rows()
    (batch,) = h.process(row)
    assert tuple(batch) == (row[1], pane, row[2], *row[4 : 1 + PANE_COLS])  # shard, the pane index, the arrays as they are
    assert h.metrics.count("darkpool.panes") == len(row[2])

    bad = payload(qty=-5)
    out = h.process(dead_row("malformed", "qty: must be positive", bad, 1, 17))
    assert main_output(out) == []
    (letter,) = map(json.loads, side_output(out, DEAD_LETTERS))
    assert letter["id"] == "trades/1/17" and letter["kind"] == "malformed" and letter["payload"] == bad
    assert letter["field"] == "qty" and not letter["validator_disagreement"]  # re-derived by the Python validator

    out = h.process(dead_row("malformed", "ts: must be positive", payload(), 0, 3))  # the JVM rejected a good row
    (letter,) = map(json.loads, side_output(out, DEAD_LETTERS))
    assert letter["validator_disagreement"]
    out = h.process(dead_row("late", "late: behind the watermark", payload(), 0, 4, GOOD["ts"], 99))
    (letter,) = map(json.loads, side_output(out, DEAD_LETTERS))
    assert (letter["kind"], letter["field"], letter["watermark_ms"]) == ("late", "ts", 99)
    m = h.metrics
    assert (m.count("darkpool.dead_letters_malformed"), m.count("darkpool.dead_letters_late")) == (2, 1)
    assert m.count("darkpool.validator_disagreements") == 1
    assert not h.store and not h.timer_set  # stateless


def test_split_names_file_dead_letters_by_content() -> None:
    h = Harness(SplitDeadLetters(None))  # a file source: no Kafka coordinates
    (letter,) = map(json.loads, side_output(h.process(dead_row("malformed", "x: y", "not json", None, None)), DEAD_LETTERS))
    assert letter["id"].startswith("sha1:") and letter["source"] == {"topic": None, "partition": None, "offset": None}


# ---- WindowAssembler --------------------------------------------------------------------


def test_assembler_emits_the_training_windows_of_every_instrument_of_the_shard() -> None:
    frames = market()
    want = training_windows(frames)
    split, asm, batches = assemble(frames)
    n_rows = len(market_rows())
    assert len(batches) == n_rows  # one window batch per pane batch
    seen = 0
    for b in batches:
        shard, end, names = b[0], b[1], list(b[2])
        pane = end // SLIDE_MS - 1
        assert names == sorted(names) and {SHARD_OF[n] for n in names} == {shard}
        windows, features = window_batch_arrays(b, T)
        for i, name in enumerate(names):
            np.testing.assert_allclose(windows[i], want[name][pane], atol=1e-6, err_msg=f"{name} pane {pane}")
            np.testing.assert_allclose(features[i], want[name][pane].mean(axis=0), atol=1e-6)
            seen += 1
    assert seen == sum(len(w) for w in want.values()) == asm.metrics.count("darkpool.windows_assembled")
    # EF's silence outlived its normal: a sweep removed it before it came back
    assert asm.metrics.count("darkpool.instruments_cleared") >= 1


def test_assembler_state_and_timers_drop_to_the_shard_count_when_the_market_goes_quiet() -> None:
    from core.pane_normals import IDLE_PANES

    frames = market()
    _, asm, _ = assemble(frames)
    assert asm.timer_set and len(asm.timer_set) <= 2 * SHARDS  # one sweep timer per shard (and period)
    last_pane = max(int(df.ts.max()) // SLIDE_NS for df in frames.values())
    asm.advance((last_pane + IDLE_PANES + 3 * T) * SLIDE_MS)
    assert not asm.timer_set
    # only the shard count each shard was written with, kept for the life of the state
    assert {name for _, name in asm.store} == {"shard_count"}
    assert asm.metrics.count("darkpool.instruments_cleared") >= len(frames)


def test_the_assembler_as_the_job_runs_it_behind_its_heartbeat_emits_the_same() -> None:
    """jobs/detect_anomalies.py runs Heartbeat(WindowAssembler(...)): the same windows,
    state and event-time sweeps, plus one processing-time beat per shard that re-arms
    itself and emits nothing."""
    frames = market()
    _, alone, want = assemble(frames)
    split, asm = Harness(SplitDeadLetters("trades")), Harness(Heartbeat(WindowAssembler(T, SLIDE_S, SHARDS), 5000))
    got = []
    for pane, row in market_rows():
        for rec in main_output(split.process(row)):
            got += asm.process(rec, key=rec[0])
        got += asm.advance((pane + 1) * SLIDE_MS - 1)
        got += asm.advance_time(asm.now + 1000)  # one second of wall clock per pane
    assert [tuple(b) for b in got] == [tuple(b) for b in want]
    assert asm.store == alone.store and asm.timer_set == alone.timer_set
    assert {key for _, key in asm.proc_timer_set} == set(SHARD_OF.values())  # one pending beat per shard
    assert all(ts % 5000 == 0 and asm.now < ts <= asm.now + 5000 for ts, _ in asm.proc_timer_set)


def test_assembler_refuses_state_written_with_another_shard_count() -> None:
    frames = market()
    _, asm, _ = assemble({"AB": frames["AB"].head(200)})
    restored = Harness(WindowAssembler(T, SLIDE_S, SHARDS * 2))
    restored.store = dict(asm.store)  # a restore from a savepoint, with --pane-shards changed
    (pane, row), *_ = union_rows({"AB": frames["AB"].iloc[200:260]})
    rec = main_output(Harness(SplitDeadLetters(None)).process(row))[0]
    with pytest.raises(ShardCountChanged, match=f"--pane-shards {SHARDS} but the job runs with {SHARDS * 2}"):
        restored.process(rec, key=rec[0])


# ---- ScoreWindows (async I/O), against a real scorer ------------------------------------


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, object]:
    folder = tmp_path_factory.mktemp("operators") / "model"
    version, model = make_artifact(folder, 3, window=GEOMETRY)
    return folder, version, model


@pytest.fixture(scope="module")
def scorer(artifact):  # noqa: ANN001, ANN201
    s = InProcessScorer(artifact[0], max_batch=64)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def shard0_batches() -> list:
    """The window batches of shard 0 (AB, CD)."""
    frames = market()
    return assemble({n: df for n, df in frames.items() if n != "EF"})[2]


@pytest.fixture(scope="module")
def window_batches(shard0_batches) -> list:  # noqa: ANN001
    return shard0_batches[40:52]  # 12 batches, one or two instruments each, normals warm


class FaultyScorer:
    """A tiny aiohttp server in front of the real scorer, in a thread of the test process:
    the first `fail` inference requests get HTTP `status`, each inference request waits
    `delay_s` first; everything else passes through. Counts the inference requests."""

    def __init__(self, upstream: str, fail: int = 0, status: int = 503, delay_s: float = 0.0):
        self.upstream, self.fail, self.status, self.delay_s = upstream, fail, status, delay_s
        self.infer_requests = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the faulty scorer did not listen within 10 s")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.path.endswith("/infer"):
            self.infer_requests += 1
            await asyncio.sleep(self.delay_s)
            if self.fail > 0:
                self.fail -= 1
                return web.json_response({"error": "injected fault"}, status=self.status)
        keep = ("content-type", protocol.HEADER_LEN.lower())
        headers = {k: v for k, v in request.headers.items() if k.lower() in keep}
        async with self._session.request(request.method, self.upstream + request.path_qs, data=body,
                                         headers=headers) as r:  # fmt: skip
            answer = await r.read()
            return web.Response(body=answer, status=r.status,
                                headers={k: v for k, v in r.headers.items() if k.lower() in keep})  # fmt: skip

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._ready.set()
        await self._stop.wait()
        await self._session.close()
        await runner.cleanup()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def scoring(url: str, retries: int = 1, timeout_s: float = 5.0, backoff_s: float = 0.05, **kw) -> AsyncHarness:  # noqa: ANN003
    return AsyncHarness(ScoreWindows(url, "darkpool", T, SLIDE_S, timeout_s, retries, backoff_s, **kw))


def _check_scored(batches: list, out: list, model: object, version: str, threshold: float) -> None:
    """Each output = its input batch scored: same shard, instruments in order, the
    model's own scores, the window's bounds and the model's global threshold."""
    assert len(out) == len(batches)
    for b, r in zip(batches, out, strict=True):
        (row,) = r
        assert row[0] == b[0]
        ws = scored_windows(row)
        windows, features = window_batch_arrays(b, T)
        want = expected(model, windows)
        assert [w.instrument for w in ws] == list(b[2])
        np.testing.assert_allclose([w.score for w in ws], want["score"], rtol=1e-4, atol=1e-5)
        for i, w in enumerate(ws):
            assert (w.window_start, w.window_end) == (b[1] - T * SLIDE_MS, b[1])
            assert w.model_version == version and w.global_threshold == threshold and not w.degraded
            assert w.max_event_ts == b[3][i] and w.features == pytest.approx(tuple(features[i].tolist()))
            assert len(w.channel_z) == len(CHANNELS)


def test_scoring_in_flight_batches_share_one_request_and_keep_their_order(scorer, artifact, window_batches) -> None:
    folder, version, model = artifact
    proxy = FaultyScorer(scorer.url)
    op = scoring(proxy.url)
    try:
        out = op.invoke(window_batches)  # all in flight at once, as ordered_wait allows
        assert proxy.infer_requests == 1  # micro-batched into one call
        _check_scored(window_batches, out, model, version, 0.5 + 3 / 100)
        assert op.metrics.gauges["darkpool.windows_scored"]() == sum(len(b[2]) for b in window_batches)
        assert op.metrics.gauges["darkpool.scorer_in_flight"]() == 0
    finally:
        op.close()
        proxy.stop()


def test_scoring_splits_a_flush_into_requests_of_at_most_max_batch(scorer, artifact, window_batches) -> None:
    folder, version, model = artifact
    proxy = FaultyScorer(scorer.url)
    op = scoring(proxy.url, max_batch=4)
    try:
        out = op.invoke(window_batches)
        n = sum(len(b[2]) for b in window_batches)
        assert proxy.infer_requests >= -(-n // 4)  # ceil(n / 4): no request above 4 windows
        _check_scored(window_batches, out, model, version, 0.5 + 3 / 100)
    finally:
        op.close()
        proxy.stop()


def test_scoring_retries_through_a_short_outage(scorer, artifact, window_batches) -> None:
    folder, version, model = artifact
    proxy = FaultyScorer(scorer.url, fail=2)  # two 503s, then answers
    op = scoring(proxy.url, retries=2)
    try:
        out = op.invoke(window_batches[:3])
        _check_scored(window_batches[:3], out, model, version, 0.5 + 3 / 100)
        assert proxy.infer_requests == 3 and op.metrics.gauges["darkpool.scorer_retries"]() == 2
    finally:
        op.close()
        proxy.stop()


def test_scoring_fails_the_task_when_the_retries_run_out(scorer, window_batches) -> None:
    proxy = FaultyScorer(scorer.url, fail=2)
    op = scoring(proxy.url, retries=1)
    try:
        with pytest.raises(ScorerDown, match=f"scorer at {proxy.url} failed 2 attempts"):
            op.invoke(window_batches[:1])
        assert proxy.infer_requests == 2
    finally:
        op.close()
        proxy.stop()


def test_scoring_bounds_each_attempt_by_the_timeout(scorer, window_batches) -> None:
    proxy = FaultyScorer(scorer.url, delay_s=3.0)  # answers, but far too late
    op = scoring(proxy.url, retries=1, timeout_s=0.3, backoff_s=0.05)
    try:
        t0 = time.monotonic()
        with pytest.raises(ScorerDown, match="failed 2 attempts"):
            op.invoke(window_batches[:2])
        assert time.monotonic() - t0 < 2.0  # 2 x 0.3 s + backoff, not the 3 s the server takes
        assert proxy.infer_requests == 2
    finally:
        op.close()
        proxy.stop()


def test_scoring_does_not_retry_a_rejected_request(scorer, window_batches) -> None:
    proxy = FaultyScorer(scorer.url, fail=1, status=400)
    op = scoring(proxy.url, retries=3)
    try:
        with pytest.raises(ScorerRequestError, match="rejected the request"):
            op.invoke(window_batches[:1])
        assert proxy.infer_requests == 1 and op.metrics.gauges["darkpool.scorer_retries"]() == 0
    finally:
        op.close()
        proxy.stop()


def test_scoring_refuses_a_model_of_another_pane_length(tmp_path, window_batches) -> None:
    make_artifact(tmp_path / "m10", 4, window={"size_s": 120, "slide_s": 10, "n_buckets": T})
    s = InProcessScorer(tmp_path / "m10")
    op = scoring(s.url, retries=3)
    try:
        with pytest.raises(ScorerRequestError, match=r"trained on 120 s sliding every 10 s \(12 panes\) but the window here is 60 s sliding every 5 s"):
            op.invoke(window_batches[:1])
    finally:
        op.close()
        s.stop()


def test_scoring_outage_with_degraded_rules_scores_by_rules_and_probes_again(scorer, window_batches) -> None:
    rules = Rules()
    rules.fit_normal(np.concatenate([window_batch_arrays(b, T)[0] for b in window_batches]))
    proxy = FaultyScorer(scorer.url, fail=10**6)  # down for the whole test
    op = scoring(proxy.url, retries=1, rules=rules.to_dict(), probe_s=0.5)
    try:
        out = op.invoke(window_batches[:2])
        assert proxy.infer_requests == 2  # one batch: 1 + 1 retry, then the rules
        ws = [w for (row,) in out for w in scored_windows(row)]
        assert all(w.degraded and w.model_version == rules.version() and w.global_threshold == 1.0 for w in ws)
        np.testing.assert_allclose([w.score for w in ws], np.concatenate(
            [rules.score(window_batch_arrays(b, T)[0]) for b in window_batches[:2]]), rtol=1e-6)  # fmt: skip
        op.invoke(window_batches[2:3])  # within probe_s: straight to the rules
        assert proxy.infer_requests == 2
        time.sleep(0.6)
        op.invoke(window_batches[3:4])  # the probe: the scorer is tried again
        assert proxy.infer_requests == 4
        assert op.metrics.gauges["darkpool.windows_degraded"]() == sum(len(b[2]) for b in window_batches[:4])
    finally:
        op.close()
        proxy.stop()


def test_scoring_with_no_scorer_listening_fails_with_its_address(window_batches) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    op = scoring(url, retries=1)
    try:
        with pytest.raises(ScorerDown, match=f"scorer at {url} failed 2 attempts.*not reachable"):
            op.invoke(window_batches[:1])
    finally:
        op.close()


# ---- the operators in a row -------------------------------------------------------------


def test_each_operator_takes_what_the_one_before_emits(scorer, shard0_batches) -> None:
    """Union rows -> SplitDeadLetters -> WindowAssembler -> ScoreWindows -> ShardThresholds:
    every window assembled is scored and decided on."""
    batches = shard0_batches
    op = scoring(scorer.url)
    decide = Harness(ShardThresholds())
    try:
        scored = op.invoke(batches)
    finally:
        op.close()
    for (row,) in scored:
        decide.process(row, key=row[0])
    n = sum(len(b[2]) for b in batches)
    assert n == sum(len(scored_windows(r)) for (r,) in scored) == decide.metrics.count("windowsDecided") > 0
