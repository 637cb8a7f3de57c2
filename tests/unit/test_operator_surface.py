"""Episode matching for the demo summary, the alerts CLI against a dead broker, submit's zip."""

from __future__ import annotations

import socket
import time
import zipfile

from click.testing import CliRunner

from darkpool.episodes import latest_per_alert, match
from darkpool.stack.jobs import project_zip
from darkpool.submit_cli import alerts

S = 1_000_000_000  # ns


def ep(inst: str, start_s: int, end_s: int, scenario: str = "spoofing_layering") -> dict:
    return {"instrument": inst, "scenario": scenario, "start_ts": start_s * S, "end_ts": end_s * S}


def al(aid: str, inst: str, start_s: int, end_s: int, seq: int = 0) -> dict:
    return {
        "alert_id": aid,
        "seq": seq,
        "instrument": inst,
        "episode_start": start_s * 1000,
        "episode_end": end_s * 1000,
    }


def test_match_counts_detections_false_alerts_and_uses_the_latest_event():
    eps = [ep("A", 100, 130), ep("A", 1000, 1010, "wash_trade"), ep("B", 50, 60)]
    events = [
        al("a1", "A", 60, 70),  # open: ends 30 s before the episode starts ...
        al("a1", "A", 60, 140, seq=2),  # ... the close overlaps it
        al("a2", "A", 5000, 5100),  # nothing injected there
        al("b1", "C", 50, 60),  # wrong instrument
    ]
    assert len(latest_per_alert(events)) == 3
    s = match(eps, events, slack_ms=0)
    assert (s.injected, s.detected, s.alerts, s.false_alerts) == (3, 1, 3, 2)
    assert s.by_scenario == {"spoofing_layering": (2, 1), "wash_trade": (1, 0)}
    # slack widens the episodes: the alert ending 30 s early now matches with the *open* only
    assert match(eps, events[:1], slack_ms=31_000).detected == 1
    assert match(eps, events[:1], slack_ms=29_000).detected == 0
    assert "1/2" in "\n".join(s.lines())
    assert (s.named, s.named_right) == (0, 0)  # no alert named a scenario
    named = [{**events[1], "scenario": "wash_trade"}, {**al("a3", "A", 995, 1020), "scenario": "wash_trade"}]
    s = match(eps, named, slack_ms=0)
    assert (s.detected, s.named, s.named_right) == (2, 2, 1)  # the spoofing episode is named wash_trade: wrong
    assert "scenario named on 2 of 2 alerted episodes, the right one on 1" in s.lines()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_alerts_cli_reports_a_dead_broker_and_exits_nonzero():
    t0 = time.monotonic()
    res = CliRunner().invoke(
        alerts, ["--bootstrap-servers", f"127.0.0.1:{_free_port()}", "--timeout", "1"]
    )
    assert res.exit_code != 0
    assert "no Kafka broker answers" in res.output
    assert time.monotonic() - t0 < 30


def test_project_zip_ships_the_packages_and_nothing_else(tmp_path):
    z = project_zip(tmp_path)
    names = zipfile.ZipFile(z).namelist()
    assert "udfs/shard_thresholds.py" in names and "jobs/detect_anomalies.py" in names and "core/config.py" in names
    assert not any(n.startswith("darkpool/") for n in names)  # operations stay home
    assert all(n.endswith(".py") for n in names)
    assert not any(n.startswith((".run", "data", ".venv")) for n in names)
