"""`darkpool explain`: the evidence for one alert of a generated market, in words and a
picture, and every mistake one line that leaves nothing behind."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench._episode_alert import episode_alert
from core.alerts import FIELDS_V1, iso_utc
from core.paths import REPO_ROOT
from darkpool.cli import cli

DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("explain") / "tiny"
    subprocess.run([sys.executable, "-m", "darkpool.cli", "generate", "--preset", "tiny", "--out", str(out)],
                   cwd=REPO_ROOT, check=True, capture_output=True)  # fmt: skip
    return out


@pytest.fixture(scope="module")
def events(market: Path) -> list[dict]:
    """Open and close of an alert on the market's second episode (a spoofing one in tiny)."""
    return episode_alert(market, episode=1)


def _write(path: Path, events: list[dict]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def _explain(cwd: Path, monkeypatch: pytest.MonkeyPatch, *args: str):
    cwd.mkdir(exist_ok=True)
    monkeypatch.chdir(cwd)
    return CliRunner().invoke(cli, ["explain", *args])


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_explain_writes_the_alert_in_words_and_its_evidence_png(market, events, tmp_path, monkeypatch):
    alerts = _write(tmp_path / "alerts.jsonl", events)
    alert = events[-1]
    res = _explain(tmp_path / "cwd", monkeypatch, alert["alert_id"][:10], "--alerts", str(alerts), "--data", str(market))
    assert res.exit_code == 0, res.output
    out = tmp_path / "cwd" / f"explain-{alert['alert_id']}"
    assert res.output.split() == ["summary", str(out.relative_to(tmp_path / "cwd") / "summary.txt"),
                                  "evidence", str(out.relative_to(tmp_path / "cwd") / "evidence.png")]
    text = (out / "summary.txt").read_text()
    assert alert["instrument"] in text and "2 events, newest seq 1 (close" in text
    assert iso_utc(alert["episode_start"]) in text and iso_utc(alert["evidence_start"]) in text
    assert alert["scenario"] in text and alert["severity"] in text and "0.970" in text and "0.800" in text
    assert "cancels vs fills" in text  # the top channel in words, not just its name
    for p in alert["participants"]:
        assert p["participant"] in text
    assert f"account of {alert['participants'][0]['participant']} (evidence span): {alert['account']}" in text
    # the history's own count of the first participant says what the alert's account says
    table = text.split("In the history, inside the evidence span")[1]
    first = next(line for line in table.splitlines() if line.startswith(f"  {alert['participants'][0]['participant']} "))
    assert first.endswith(alert["account"])
    png = (out / "evidence.png").read_bytes()
    width, height = _png_size(png)
    assert width >= 1000 and height >= 500 and 20_000 < len(png) < 5_000_000


def test_an_old_schema_alert_is_explained_too(market, events, tmp_path, monkeypatch):
    old = {f: events[0][f] for f in FIELDS_V1} | {"schema": 1}
    alerts = _write(tmp_path / "old.jsonl", [old])
    res = _explain(tmp_path, monkeypatch, old["alert_id"], "--alerts", str(alerts), "--data",
                   str(market / "events.parquet"), "--out", "here", "--context-s", "0")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "severity     not given (old schema)" in (tmp_path / "here" / "summary.txt").read_text()


def _shifted(events: list[dict], **change) -> list[dict]:
    return [{**e, **{k: (v(e) if callable(v) else v) for k, v in change.items()}} for e in events]


MISTAKES = {  # id -> (argv after the alert id, words of the error line, alert events' changes)
    "unknown-alert": ("nope {alerts} {data}", ("no alert nope in", "alerts.jsonl", "1 alert there"), {}),
    "data-missing": ("ID {alerts} --data missing", ("--data", "missing does not exist"), None),
    "data-not-parquet": ("ID {alerts} --data {alerts_path}", ("--data", "not a Parquet file"), None),
    "data-not-events": ("ID {alerts} --data {episodes}", ("--data", "event-contract columns"), None),
    "history-of-another-day": ("ID {alerts} {data}", ("no events of", "it covers"),
                               {k: (lambda e, k=k: e[k] + DAY_MS)
                                for k in ("episode_start", "episode_end", "evidence_start", "evidence_end")}),
    "history-without-the-instrument": ("ID {alerts} {data}", ("no events of ZZZZ", "(no ZZZZ)"),
                                       {"instrument": "ZZZZ"}),
    "out-is-a-file": ("ID {alerts} {data} --out {alerts_path}", ("--out", "is a file"), None),
}


@pytest.mark.parametrize("name", MISTAKES)
def test_a_mistake_is_one_line_and_leaves_nothing(name, market, events, tmp_path, monkeypatch):
    argv, words, change = MISTAKES[name]
    alerts = _write(tmp_path / "alerts.jsonl", _shifted(events, **(change or {})))
    values = {"alerts": f"--alerts {alerts}", "alerts_path": str(alerts), "data": f"--data {market}",
              "episodes": str(market / "episodes.parquet")}
    argv = argv.replace("ID", events[0]["alert_id"]).format(**values).split()
    cwd = tmp_path / "cwd"
    res = _explain(cwd, monkeypatch, *argv)
    assert res.exit_code != 0 and isinstance(res.exception, SystemExit), res.output
    assert "Traceback" not in res.output
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("Error:") and all(w in line for w in words), res.output
    assert list(cwd.iterdir()) == []
