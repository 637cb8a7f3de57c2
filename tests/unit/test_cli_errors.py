"""Common mistakes on the `darkpool` command line end in one line that says what is wrong.

Each case runs the real command in a subprocess (as an operator would) and checks: a
non-zero exit, no traceback, and a last line `Error: ...` that names the problem. The
demo case fails before it touches the stack, so none is needed here.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from darkpool.cli import cli
from darkpool.stack.alerts_topic import BrokerUnavailable, TopicMissing, _wait_for_topic

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: --device cuda is valid")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A corrupt events file, a file to put paths under, and an artifact whose weights are cut short."""
    from model.artifact import _version, save_artifact
    from model.config import preset
    from model.transformer import ScoringModel

    root = tmp_path_factory.mktemp("cli-errors")
    bad = root / "bad"
    bad.mkdir()
    (bad / "events.parquet").write_bytes(b"not a parquet file")
    (bad / "episodes.parquet").write_bytes(b"not a parquet file")
    blocker = root / "a-file"
    blocker.write_text("")
    art = root / "truncated-artifact"
    save_artifact(art, ScoringModel(preset("small", n_buckets=12)), 0.5, 0.01, {})
    weights = art / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    (art / "VERSION").write_text(_version(art) + "\n")  # the hash matches the damaged file
    return {"bad": bad, "blocker": blocker, "artifact": art, "tmp": root}


# (id, argv with {placeholders}, extra environment, words the last line must hold)
CASES = [
    pytest.param(["scorer", "serve", "--artifact", "{artifact}", "--device", "cuda", "--port", "{port}"], {},
                 ["cuda", "--device cpu"], id="scorer-cuda-without-gpu", marks=NO_GPU),
    pytest.param(["scorer", "serve", "--artifact", "{artifact}", "--device", "tpu"], {}, ["--device", "tpu"],
                 id="scorer-device-tpu"),
    pytest.param(["scorer", "serve", "--artifact", "{artifact}", "--dtype", "int8"], {}, ["--dtype", "int8"],
                 id="scorer-dtype-int8"),
    pytest.param(["scorer", "serve", "--artifact", "{artifact}", "--port", "99999"], {}, ["--port", "99999"],
                 id="scorer-port-out-of-range"),
    pytest.param(["train", "--device", "gpu", "--data", "{bad}"], {}, ["--device", "gpu"], id="train-device-gpu"),
    pytest.param(["train", "--data", "/nonexistent"], {}, ["--out /nonexistent"], id="train-missing-data"),
    pytest.param(["replay", "--input", "{bad}"], {}, ["cannot read events", "Parquet"], id="replay-corrupt-parquet"),
    pytest.param(["generate", "--preset", "tiny", "--out", "/proc/nope"], {}, ["/proc/nope", "--out"],
                 id="generate-out-in-proc"),
    pytest.param(["generate", "--preset", "tiny", "--out", "{blocker}/sub"], {}, ["is not writable"],
                 id="generate-out-under-a-file"),
    pytest.param(["generate", "--preset", "tiny", "--out", "{tmp}/plot", "--plot", "--plot-instrument", "NOPE"],
                 {}, ["NOPE", "choose one of"], id="generate-plot-unknown-instrument"),
    pytest.param(["alerts", "--timeout", "1"], {"DARKPOOL_PARTITIONS": "four"}, ["DARKPOOL_PARTITIONS", "four"],
                 id="env-partitions-not-a-number"),
    pytest.param(["scorer", "serve", "--artifact", "{artifact}"], {"DARKPOOL_SCORER_URL": "http://localhost:notaport"},
                 ["DARKPOOL_SCORER_URL", "notaport"], id="env-scorer-url-bad-port"),
    pytest.param(["scorer", "serve", "--artifact", "{artifact}", "--port", "{port}", "--device", "cpu"], {},
                 ["model.safetensors", "retrain"], id="artifact-truncated-weights"),
    pytest.param(["demo", "--preset", "foo"], {}, ["--preset", "foo"], id="demo-unknown-preset"),
    pytest.param(["demo"], {"DARKPOOL_KAFKA_PORT": "x"}, ["DARKPOOL_KAFKA_PORT"], id="demo-bad-env-before-stack"),
]


@pytest.mark.parametrize(("argv", "env", "words"), CASES)
def test_a_common_mistake_is_one_line_and_a_nonzero_exit(files, tmp_path, monkeypatch, argv, env, words):
    values = {k: str(v) for k, v in files.items()} | {"port": str(_free_port())}
    argv = [a.format(**values) for a in argv]
    # a run dir of its own: whatever a case does, it cannot reach the shared stack's pid files
    env = {**env, "DARKPOOL_RUN_DIR": str(tmp_path / "run"), "DARKPOOL_DATA_DIR": str(tmp_path / "data")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    done = subprocess.run([sys.executable, "-m", "darkpool.cli", *argv], capture_output=True, text=True,
                          timeout=120)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "Traceback" not in out, out
    last = out.strip().splitlines()[-1]
    assert last.startswith("Error: ") and len(last) < 400, out
    for word in words:
        assert word in last, out
    assert not (tmp_path / "run").exists(), "the command touched the stack's run dir"
    if "--plot-instrument" in argv:  # refused before any data was written
        assert not list((files["tmp"] / "plot").glob("*.parquet"))


def test_stack_status_names_a_port_that_answers_for_another_clone(tmp_path, monkeypatch):
    """Another clone's broker on our port: not 'stopped' alone, but who answers."""
    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", 0))
        foreign.listen()
        port = foreign.getsockname()[1]
        ports = {"KAFKA_PORT": port, "CONTROLLER_PORT": _free_port(), "REST_PORT": _free_port(),
                 "JM_RPC_PORT": _free_port()}
        for key, value in ports.items():
            monkeypatch.setenv(f"DARKPOOL_{key}", str(value))
        monkeypatch.setenv("DARKPOOL_RUN_DIR", str(tmp_path / "run"))
        res = CliRunner().invoke(cli, ["stack", "status"])
    assert res.exit_code == 1  # this clone's stack is not running
    assert f"port {port} answers but this clone did not start it" in res.output
    assert f"port {ports['REST_PORT']} answers" not in res.output


class _Consumer:
    """Stands in for a KafkaConsumer's metadata: topics() per call."""

    def __init__(self, *answers: set[str]) -> None:
        self.answers = list(answers)

    def topics(self) -> set[str]:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def test_reading_a_missing_topic_fails_as_a_broker_error_naming_the_topic():
    with pytest.raises(TopicMissing, match="'no.such.topic' does not exist.*darkpool.alerts") as info:
        _wait_for_topic(_Consumer({"darkpool.alerts", "__consumer_offsets"}), "no.such.topic", "b:9092", wait_s=0.2)
    assert isinstance(info.value, BrokerUnavailable)  # what `darkpool alerts` reports as one line
    assert "__consumer_offsets" not in str(info.value)
    _wait_for_topic(_Consumer(set(), {"t"}), "t", "b:9092", wait_s=5)  # a topic that shows up late is found
