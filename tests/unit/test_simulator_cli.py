"""`darkpool generate` / `darkpool replay` CLIs, replay pacing and bad-message injection
(with a recording producer: a unit test of the replay loop), and the dead-broker error."""

from __future__ import annotations

import socket
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from kafka.partitioner.default import murmur2

from core.config import KafkaConfig
from core.schemas import FIELD_NAMES, ContractError, encode_message, parse_message
from darkpool.cli import cli
from darkpool.market.config import PRESETS
from darkpool.market.replay import BAD_KINDS, _keyed_lines, replay
from darkpool.market.simulate import simulate


class RecordingProducer:
    """Stands in for KafkaProducer in the unit test of the replay loop only."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, str, bytes, bytes, int]] = []

    def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2, 3}

    def send(self, topic: str, key: bytes, value: bytes, partition: int) -> object:
        self.sent.append((time.monotonic(), topic, key, value, partition))

        class Future:
            def add_errback(self, fn: object) -> object:
                return self

        return Future()

    def flush(self, timeout: float | None = None) -> None:
        pass


@pytest.fixture(scope="module")
def small():
    return simulate(PRESETS["tiny"].replace(n_events=1_000)).events


def test_replay_keys_values_and_bad_injection(small) -> None:
    prod = RecordingProducer()
    stats = replay(small, KafkaConfig(), topic="t", inject_bad=len(BAD_KINDS), seed=1, producer=prod)
    assert (stats.sent, stats.bad) == (1_000, len(BAD_KINDS))
    good, bad = [], 0
    for _, topic, key, value, partition in prod.sent:
        assert topic == "t"
        assert partition == (murmur2(key) & 0x7FFFFFFF) % 4  # where Java's default partitioner puts it
        try:
            rec = parse_message(value)
            assert key.decode() == rec["instrument"]
            good.append(rec)
        except ContractError:
            bad += 1
    assert bad == len(BAD_KINDS)
    assert good == small.drop_columns(["label", "scenario"]).to_pylist()  # order kept, no labels


def test_replay_paces_at_speed(small) -> None:
    rows = small.slice(0, 200)
    ts = rows.column("ts").to_numpy()
    span_s = (ts[-1] - ts[0]) / 1e9
    speed = span_s / 1.0  # the 200 events should take ~1 s of wall time
    prod = RecordingProducer()
    replay(rows, KafkaConfig(), topic="t", speed=speed, producer=prod)
    wall = prod.sent[-1][0] - prod.sent[0][0]
    assert 0.9 < wall < 3.0  # generous upper bound: the machine may be busy
    with pytest.raises(ValueError, match="speed"):
        replay(rows, KafkaConfig(), speed=-1, producer=prod)


def test_generate_cli_writes_files_and_plot(tmp_path) -> None:
    res = CliRunner().invoke(cli, ["generate", "--preset", "tiny", "--events", "5000", "--seed", "3",
                                   "--out", str(tmp_path), "--plot", "--check"])
    assert res.exit_code == 0, res.output
    assert "5,000 events" in res.output and "all invariants hold" in res.output
    assert pq.read_metadata(tmp_path / "events.parquet").num_rows == 5_000
    assert (tmp_path / "instrument.png").stat().st_size > 10_000


def test_generate_cli_bad_option_says_why(tmp_path) -> None:
    res = CliRunner().invoke(cli, ["generate", "--preset", "tiny", "--anomaly-rate", "0.9", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "--anomaly-rate" in res.output  # the flag, not the config field
    res = CliRunner().invoke(cli, ["generate", "--preset", "tiny", "--duration", "ten minutes"])
    assert res.exit_code != 0 and "duration" in res.output


def test_replay_missing_input_says_how_to_make_it(tmp_path) -> None:
    res = CliRunner().invoke(cli, ["replay", "--input", str(tmp_path / "nope")])
    assert res.exit_code != 0 and "darkpool generate" in res.output


def test_replay_dead_broker_fails_fast_with_advice(tmp_path) -> None:
    CliRunner().invoke(cli, ["generate", "--preset", "tiny", "--events", "500", "--out", str(tmp_path)])
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    res = CliRunner().invoke(cli, ["replay", "--input", str(tmp_path), "--bootstrap-servers", f"127.0.0.1:{port}"])
    assert res.exit_code != 0
    assert f"127.0.0.1:{port}" in res.output and "darkpool stack up" in res.output
    assert time.monotonic() - start < 15


def test_console_producer_lines_are_key_tab_the_same_message() -> None:
    events = simulate(PRESETS["tiny"].replace(n_events=300)).events.select(list(FIELD_NAMES))
    lines = _keyed_lines(events.to_batches()[0]).split(b"\n")
    assert lines[-1] == b"" and len(lines) == events.to_batches()[0].num_rows + 1
    for line, rec in zip(lines, events.to_pylist(), strict=False):
        key, value = line.split(b"\t", 1)
        assert key == rec["instrument"].encode() and value == encode_message(rec)
    bad = events.slice(0, 1).to_pylist()[0] | {"instrument": "A\tB"}
    with pytest.raises(ValueError, match="--engine python"):
        _keyed_lines(pa.RecordBatch.from_pylist([bad], schema=events.schema))


def test_replay_engine_kafka_refuses_what_it_cannot_do(tmp_path) -> None:
    res = CliRunner().invoke(cli, ["replay", "--input", str(tmp_path), "--engine", "kafka", "--speed", "2"])
    assert res.exit_code != 0 and "--engine python" in res.output
