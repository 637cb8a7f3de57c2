"""A corpus of mistakes: every command of the project, fed what a new user gets wrong.

Each case runs the real command in a subprocess, in an empty folder of its own, and
checks: a non-zero exit (or exit 0 with a one-line `warning:` where the input is odd but
gradable), no traceback, a last line that names the flag or the file, and the folder (and
the shared inputs) exactly as they were: a refused command leaves nothing behind. No
case needs Kafka, Flink or a scorer: each is refused before it would reach one.

The cases run in parallel (a thread pool, each a subprocess); the corpus grows with every
new command and every mistake found.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from core.paths import REPO_ROOT

_SCRIPT = Path(sys.executable).with_name("darkpool")  # the command a user types, where installed
DARKPOOL = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "darkpool.cli"]
JOB = [sys.executable, str(REPO_ROOT / "jobs" / "detect_anomalies.py")]
RATES = [sys.executable, "-m", "darkpool.venue.rates"]
LOBSTER = next((REPO_ROOT / "data-samples" / "lobster" / "raw").glob("*_message_*.csv"))


@dataclass(frozen=True)
class Case:
    id: str
    argv: list[str]  # {placeholders} name the shared inputs (`inputs` below)
    words: tuple[str, ...]  # each must be in the last line (error) or the warning line
    warn: bool = False  # exit 0 with one `warning:` line instead of an error
    env: dict[str, str] = field(default_factory=dict)
    absent: tuple[str, ...] = ()  # must not be in the output (a hint that points the wrong way)

    @property
    def family(self) -> str:
        if self.argv[0] == "JOB":
            return "job (detect_anomalies.py)"
        if self.argv[0] == "RATES":
            return "python -m darkpool.venue.rates"
        return "darkpool " + " ".join(self.argv[1:3] if self.argv[1] in ("stack", "scorer", "import") else
                                      self.argv[1:2])


def _c(id: str, argv: str, *words: str, **kw) -> Case:  # noqa: A002
    return Case(id, argv.split(), tuple(words), **kw)


CASES = [
    # ---- the job: flags, run modes, inputs (all refused before the JVM or the scorer) ----
    _c("job-alert-budget-missing", "JOB --alert-budget missing.json --backtest {events}", "--alert-budget",
       "missing.json"),
    _c("job-alert-budget-not-a-budget", "JOB --alert-budget {corrupt_alerts} --backtest {events}", "--alert-budget",
       "not an alert budget"),
    _c("job-misspelled-flag", "JOB --treshold-foo 3 --backtest {events}", "--treshold-foo", "unknown flag"),
    _c("job-abbreviated-flag", "JOB --k-sig 7 --backtest {events}", "--k-sig", "did you mean --k-sigma"),
    _c("job-abbreviated-flag-equals", "JOB --k-sig=7 --backtest {events}", "--k-sig", "--k-sigma"),
    _c("job-stray-value", "JOB 7 --backtest {events}", "'7'"),
    _c("job-nan-threshold", "JOB --k-sigma nan --backtest {events}", "--k-sigma", "finite"),
    _c("job-zero-pane-shards", "JOB --pane-shards 0 --backtest {events}", "--pane-shards", ">= 1"),
    _c("job-parallelism-over-shards", "JOB --parallelism 40 --backtest {events}", "--parallelism 40",
       "--pane-shards 32", absent=("pane_shards",)),
    _c("job-flag-rate-above-1", "JOB --max-flag-rate 2 --backtest {events}", "--max-flag-rate"),
    _c("job-negative-async-capacity", "JOB --async-capacity -1 --backtest {events}", "--async-capacity"),
    _c("job-window-not-a-multiple", "JOB --window-size 61 --backtest {events}", "--window-size", "61"),
    _c("job-transaction-shorter-than-checkpoint", "JOB --checkpoint-interval-ms 900000 --backtest {events}",
       "--transaction-timeout-ms", absent=("transaction_timeout_ms",)),
    _c("job-scorer-url-not-a-url", "JOB --scorer-url notaurl --backtest {events}", "--scorer-url", "notaurl"),
    _c("job-backtest-missing-file", "JOB --backtest missing.parquet", "--backtest", "missing.parquet"),
    _c("job-backtest-a-folder", "JOB --backtest {data}", "--backtest", "events.parquet"),
    _c("job-backtest-not-parquet", "JOB --backtest {corrupt}", "--backtest", "Parquet"),
    _c("job-backtest-empty", "JOB --backtest {empty_events}", "--backtest", "no events"),
    _c("job-backtest-and-bounded", "JOB --backtest {events} --bounded", "--bounded", "--backtest"),
    _c("job-backtest-and-start-from", "JOB --backtest {events} --start-from latest", "--start-from"),
    _c("job-to-kafka-without-backtest", "JOB --to-kafka", "--to-kafka", "--backtest"),
    _c("job-degraded-rules-not-an-artifact", "JOB --degraded-rules {data} --backtest {events}",
       "--degraded-rules", "rules.json"),
    _c("job-env-window-not-a-number", "JOB --backtest {events}", "DARKPOOL_SIZE_S", env={"DARKPOOL_SIZE_S": "abc"}),
    # ---- darkpool train ----
    _c("train-zero-epochs", "darkpool train --data {data} --out art --epochs 0", "--epochs"),
    _c("train-negative-batch", "darkpool train --data {data} --out art --batch-size -4", "--batch-size"),
    _c("train-nan-lr", "darkpool train --data {data} --out art --lr nan", "--lr", "finite"),
    _c("train-fpr-above-1", "darkpool train --data {data} --out art --target-fpr 2", "--target-fpr"),
    _c("train-negative-threads", "darkpool train --data {data} --out art --threads -1", "--threads"),
    _c("train-unknown-channel", "darkpool train --data {data} --out art --ignore-channels foo",
       "--ignore-channels", "foo", absent=("ignored_channels",)),
    _c("train-out-is-a-file", "darkpool train --data {data} --out {afile}", "--out", "is a file"),
    _c("train-out-is-the-data", "darkpool train --data {data} --out {data}", "--out", "data folder"),
    _c("train-data-without-events", "darkpool train --data {artifact} --out art", "--data", "events.parquet"),
    _c("train-fine-tune-with-preset", "darkpool train --data {data} --out art --from-artifact {artifact} "
       "--preset enhanced", "--preset", "--from-artifact"),
    _c("train-fine-tune-with-channels", "darkpool train --data {data} --out art --from-artifact {artifact} "
       "--ignore-channels tod_sin", "--ignore-channels", "--from-artifact"),
    _c("train-fine-tune-into-itself", "darkpool train --data {data} --out {artifact} --from-artifact {artifact}",
       "--out", "--from-artifact"),
    _c("train-fine-tune-a-data-folder", "darkpool train --data {data} --out art --from-artifact {data}",
       "--from-artifact", "data folder", "artifacts/NAME", absent=("--out {data}",)),
    _c("train-device-gpu", "darkpool train --data {data} --out art --device gpu", "--device", "gpu"),
    # ---- darkpool evaluate ----
    _c("evaluate-out-is-a-file", "darkpool evaluate --data {data} --out {afile} --models rules", "--out", "is a file"),
    _c("evaluate-unknown-model", "darkpool evaluate --data {data} --out rep --models foo", "--models", "foo"),
    _c("evaluate-negative-minutes", "darkpool evaluate --data {data} --out rep --transformer-minutes -1",
       "--transformer-minutes"),
    _c("evaluate-zero-seq-seconds", "darkpool evaluate --data {data} --out rep --seq-seconds 0", "--seq-seconds"),
    _c("evaluate-zero-loso-epochs", "darkpool evaluate --data {data} --out rep --loso --loso-epochs 0",
       "--loso-epochs"),
    _c("evaluate-loso-epochs-without-loso", "darkpool evaluate --data {data} --out rep --loso-epochs 2",
       "--loso-epochs", "--loso"),
    _c("evaluate-bins-without-alerts", "darkpool evaluate --data {data} --out rep --bin-seconds 5",
       "--bin-seconds", "--alerts"),
    _c("evaluate-fpr-above-1", "darkpool evaluate --data {data} --out rep --max-fpr 1.5", "--max-fpr"),
    _c("evaluate-artifact-is-data", "darkpool evaluate --artifact {data} --test-data {data} --out rep",
       "--artifact", "data folder", "artifacts/NAME", absent=("--out {data}",)),
    _c("evaluate-artifact-with-preset", "darkpool evaluate --artifact {artifact} --test-data {data} --out rep "
       "--preset enhanced", "--preset", "--artifact"),
    _c("evaluate-artifact-other-models", "darkpool evaluate --artifact {artifact} --test-data {data} --out rep "
       "--models rules", "--models"),
    _c("evaluate-train-on-the-test-set", "darkpool evaluate --train-data {data} --test-data {data} --out rep",
       "--train-data", "--test-data"),
    _c("evaluate-test-data-alone", "darkpool evaluate --test-data {data} --out rep", "--test-data"),
    _c("evaluate-episodes-of-another-market", "darkpool evaluate --data {mixed} --out rep --models rules",
       "episodes.parquet", "events.parquet"),
    _c("evaluate-alerts-missing-file", "darkpool evaluate --alerts missing.jsonl --test-data {data} --out rep",
       "missing.jsonl"),
    _c("evaluate-alerts-not-json", "darkpool evaluate --alerts {corrupt_alerts} --test-data {data} --out rep",
       "bad.jsonl"),
    _c("evaluate-alerts-of-another-market", "darkpool evaluate --alerts {foreign_alerts} --test-data {data} "
       "--out rep", "--alerts", "NOPE"),
    _c("evaluate-alerts-empty-file", "darkpool evaluate --alerts {empty_alerts} --test-data {data} --out rep",
       "--alerts", "no alert events", warn=True),
    # ---- darkpool explain ----
    _c("explain-unknown-alert", "darkpool explain nope --alerts {foreign_alerts} --data {data}", "nope",
       "foreign.jsonl", "a1"),
    _c("explain-data-missing", "darkpool explain a1 --alerts {foreign_alerts} --data missing", "--data", "missing"),
    _c("explain-data-not-parquet", "darkpool explain a1 --alerts {foreign_alerts} --data {corrupt}", "--data",
       "Parquet"),
    _c("explain-data-not-events", "darkpool explain a1 --alerts {foreign_alerts} --data {episodes}", "--data",
       "columns"),
    _c("explain-history-without-the-instrument", "darkpool explain a1 --alerts {foreign_alerts} --data {data}",
       "NOPE", "covers"),
    _c("explain-out-is-a-file", "darkpool explain a1 --alerts {foreign_alerts} --data {data} --out {afile}", "--out",
       "is a file"),
    _c("explain-alerts-missing-file", "darkpool explain a1 --alerts missing.jsonl --data {data}", "--alerts",
       "missing.jsonl"),
    _c("explain-alerts-not-json", "darkpool explain a1 --alerts {corrupt_alerts} --data {data}", "bad.jsonl"),
    _c("explain-negative-context", "darkpool explain a1 --alerts {foreign_alerts} --data {data} --context-s -1",
       "--context-s"),
    # ---- darkpool budget ----
    _c("budget-alerts-missing-file", "darkpool budget --alerts missing.jsonl --data {data} --per-hour 0.5 --out b.json",
       "missing.jsonl"),
    _c("budget-zero-per-hour", "darkpool budget --alerts {foreign_alerts} --data {data} --per-hour 0 --out b.json",
       "--per-hour"),
    _c("budget-out-exists", "darkpool budget --alerts {foreign_alerts} --data {data} --per-hour 0.5 --out {afile}",
       "--out", "exists"),
    _c("budget-alerts-of-another-stretch", "darkpool budget --alerts {foreign_alerts} --data {data} --per-hour 0.5 "
       "--out b.json", "NOPE", "another stretch"),
    _c("budget-alerts-empty", "darkpool budget --alerts {empty_alerts} --data {data} --per-hour 0.5 --out b.json",
       "no alert events"),
    _c("budget-data-not-parquet", "darkpool budget --alerts {foreign_alerts} --data {corrupt} --per-hour 0.5 "
       "--out b.json", "--data"),
    _c("budget-data-missing", "darkpool budget --alerts {foreign_alerts} --data missing --per-hour 0.5 --out b.json",
       "--data", "missing"),
    _c("budget-alerts-of-a-budgeted-run", "darkpool budget --alerts {budget_alerts} --data {data} --per-hour 0.5 "
       "--out b.json", "--alert-budget"),
    # ---- darkpool generate / inject / replay ----
    _c("generate-zero-instruments", "darkpool generate --preset tiny --out d --instruments 0", "--instruments"),
    _c("generate-too-few-events", "darkpool generate --preset tiny --out d --events 50", "--events",
       absent=("n_events",)),
    _c("generate-too-short", "darkpool generate --preset tiny --out d --duration 10", "--duration",
       absent=("duration_s",)),
    _c("generate-anomaly-rate-too-high", "darkpool generate --preset tiny --out d --anomaly-rate 0.7",
       "--anomaly-rate"),
    _c("generate-out-is-a-file", "darkpool generate --preset tiny --out {afile}", "--out", "is a file"),
    _c("generate-plot-instrument-without-plot", "darkpool generate --preset tiny --out d --plot-instrument X",
       "--plot-instrument", "--plot"),
    _c("generate-participants-zero", "darkpool generate --preset varied --out d --participants 0",
       "--participants", absent=("population_range",)),
    _c("inject-zero-rate", "darkpool inject --background {data} --out d --rate 0", "--rate"),
    _c("inject-unknown-scenario", "darkpool inject --background {data} --out d --scenarios foo",
       "--scenarios", "foo"),
    _c("inject-missing-background", "darkpool inject --background missing.parquet --out d",
       "--background", "missing.parquet"),
    _c("inject-over-its-background", "darkpool inject --background {data} --out {data}", "--out", "--background"),
    _c("replay-missing-input", "darkpool replay --input missing", "--input", "missing"),
    _c("replay-negative-limit", "darkpool replay --input {data} --limit -5", "--limit"),
    _c("replay-negative-speed", "darkpool replay --input {data} --speed -1", "--speed"),
    _c("replay-seed-without-bad-messages", "darkpool replay --input {data} --seed 3", "--seed", "--inject-bad"),
    _c("replay-brokers-not-host-port", "darkpool replay --input {data} --bootstrap-servers nonsense",
       "--bootstrap-servers", "nonsense"),
    _c("replay-both-broker-spellings", "darkpool replay --input {data} --bootstrap a:1 --bootstrap-servers b:2",
       "--bootstrap", "--bootstrap-servers"),
    # ---- darkpool import lobster, python -m darkpool.venue.rates ----
    _c("lobster-start-after-end", "darkpool import lobster --message {lobster} --out e.parquet --start 11:00 "
       "--end 10:00", "--start", "--end"),
    _c("lobster-window-outside-the-file", "darkpool import lobster --message {lobster} --out e.parquet "
       "--start 05:00 --end 06:00", "--start/--end", "09:30"),
    _c("lobster-not-a-time", "darkpool import lobster --message {lobster} --out e.parquet --start 25:00",
       "--start", "25:00"),
    _c("lobster-zero-accounts", "darkpool import lobster --message {lobster} --out e.parquet --accounts 0",
       "--accounts"),
    _c("lobster-more-firms-than-accounts", "darkpool import lobster --message {lobster} --out e.parquet "
       "--firms 300", "--firms", "--accounts"),
    _c("lobster-file-not-named-lobster", "darkpool import lobster --message {corrupt_alerts} --out e.parquet",
       "--ticker", "--date"),
    _c("rates-no-argument", "RATES", "EVENTS"),
    _c("rates-missing-file", "RATES missing.parquet", "missing.parquet"),
    _c("rates-not-parquet", "RATES {corrupt}", "events.parquet", "Parquet"),
    _c("rates-not-events", "RATES {episodes}", "episodes.parquet", "columns"),
    # ---- darkpool scorer serve / alerts / submit / stack ----
    _c("scorer-artifact-is-data", "darkpool scorer serve --artifact {data} --port 0", "--artifact", "data folder",
       "artifacts/NAME", absent=("--out {data}",)),
    _c("scorer-artifact-missing", "darkpool scorer serve --artifact missing --port 0", "--artifact", "missing"),
    _c("scorer-zero-batch", "darkpool scorer serve --artifact {artifact} --max-batch 0", "--max-batch",
       absent=("max_batch",)),
    _c("scorer-queue-below-batch", "darkpool scorer serve --artifact {artifact} --max-queue 10", "--max-queue",
       "--max-batch", absent=("max_batch",)),
    _c("scorer-unknown-backend", "darkpool scorer serve --artifact {artifact} --backend onnx", "--backend", "onnx"),
    _c("scorer-negative-delay", "darkpool scorer serve --artifact {artifact} --max-delay-ms -1", "--max-delay-ms"),
    _c("scorer-negative-threads", "darkpool scorer serve --artifact {artifact} --threads -1", "--threads"),
    _c("scorer-artifact-root-missing", "darkpool scorer serve --artifact {artifact} --artifact-root nowhere",
       "--artifact-root"),
    _c("alerts-zero-max", "darkpool alerts --max 0", "--max"),
    _c("alerts-negative-timeout", "darkpool alerts --timeout -1", "--timeout"),
    _c("alerts-brokers-not-host-port", "darkpool alerts --bootstrap-servers nonsense", "--bootstrap-servers"),
    _c("submit-misspelled-job-flag", "darkpool submit -- --treshold-foo 3", "--treshold-foo"),
    _c("submit-abbreviated-job-flag", "darkpool submit -- --k-sig 7", "--k-sig", "--k-sigma"),
    _c("submit-job-flag-out-of-range", "darkpool submit -- --pane-shards 0", "--pane-shards"),
    _c("submit-python-missing", "darkpool submit --python /nonexistent/python", "--python"),
    _c("submit-jobmanager-not-host-port", "darkpool submit --jobmanager nohost", "--jobmanager"),
    _c("stack-up-negative-timeout", "darkpool stack up --timeout -1", "--timeout"),
    _c("stack-smoke-zero-messages", "darkpool stack smoke -n 0", "--messages"),
]


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Shared inputs, read-only for the cases: a tiny market, look-alikes of an artifact,
    broken files, and a market whose episodes name instruments its events never have."""
    root = tmp_path_factory.mktemp("mistake-inputs")
    data = root / "tiny"
    subprocess.run([*DARKPOOL, "generate", "--preset", "tiny", "--out", str(data)], check=True,
                   capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    mixed = root / "mixed"
    mixed.mkdir()
    (mixed / "events.parquet").write_bytes((data / "events.parquet").read_bytes())
    episodes = pq.read_table(data / "episodes.parquet")
    i = episodes.schema.get_field_index("instrument")
    pq.write_table(episodes.set_column(i, "instrument", pc.binary_join_element_wise(
        episodes["instrument"], pa.scalar("X"), ""))  # every name changed: a different market
        , mixed / "episodes.parquet")
    artifact = root / "artifact"  # what the pre-checks look at: a refused command never loads the weights
    artifact.mkdir()
    (artifact / "VERSION").write_text("0\n")
    (artifact / "config.json").write_text(json.dumps({"train": {"preset": "small"}, "model": {}}))
    empty_events = root / "empty.parquet"
    pq.write_table(pq.read_table(data / "events.parquet").slice(0, 0), empty_events)
    corrupt = root / "events.parquet"
    corrupt.write_bytes(b"not a parquet file")
    (root / "bad.jsonl").write_text("not json\n")
    (root / "empty.jsonl").write_text("")
    alert = {"schema": 1, "alert_id": "a1", "seq": 0, "status": "open", "instrument": "NOPE", "episode_start": 0,
             "episode_end": 0, "window_end": 0, "n_windows": 1, "score": 0.9, "peak_score": 0.9,
             "peak_window_end": 0, "threshold": 0.5, "threshold_source": "global", "regime": "normal",
             "global_threshold": 0.5, "scenario": "wash_trade", "scenario_probability": 0.5, "top_features": [],
             "participants": [], "close_reason": None, "model_version": "x", "degraded": False, "emitted_at": 0,
             "latency_ms": 0}
    (root / "foreign.jsonl").write_text(json.dumps(alert) + "\n")
    first = pq.read_table(data / "events.parquet", columns=["instrument"]).column(0)[0].as_py()
    (root / "budgeted.jsonl").write_text(json.dumps({**alert, "instrument": first, "threshold_source": "budget"}) + "\n")
    (root / "a-file").write_text("")
    return {"data": data, "events": data / "events.parquet", "episodes": data / "episodes.parquet",
            "mixed": mixed, "artifact": artifact, "empty_events": empty_events, "corrupt": corrupt,
            "corrupt_alerts": root / "bad.jsonl", "empty_alerts": root / "empty.jsonl",
            "foreign_alerts": root / "foreign.jsonl", "budget_alerts": root / "budgeted.jsonl", "afile": root / "a-file", "lobster": LOBSTER, "root": root}


def _run(case: Case, inputs: dict[str, Path], cwd: Path) -> dict:
    values = {k: str(v) for k, v in inputs.items()}
    argv = [a.format(**values) for a in case.argv]
    head = {"darkpool": DARKPOOL, "JOB": JOB, "RATES": RATES}[argv[0]]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "DARKPOOL_RUN_DIR": str(cwd / "run"),
           "DARKPOOL_DATA_DIR": str(cwd / "data"), "DARKPOOL_ARTIFACTS_DIR": str(cwd / "artifacts"),
           # nothing may be reached: a case that got that far is a failed refusal, not a hang
           "DARKPOOL_BOOTSTRAP_SERVERS": "127.0.0.1:9", "DARKPOOL_SCORER_URL": "http://127.0.0.1:9",
           **case.env}
    for var in ("DARKPOOL_SIZE_S", "DARKPOOL_SLIDE_S"):
        if var not in case.env:
            env.pop(var, None)
    done = subprocess.run([*head, *argv[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    return {"rc": done.returncode, "out": done.stdout + done.stderr, "argv": argv}


@pytest.fixture(scope="module")
def results(inputs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Every case, run in parallel, each in an empty folder; with the folders' listings after."""
    before = _listing(inputs["root"])
    folders = {c.id: tmp_path_factory.mktemp(c.id) for c in CASES}
    # each case is a Python start-up (~1 s of CPU); more workers than cores only queue
    with ThreadPoolExecutor(max_workers=max(2, min(8, (os.cpu_count() or 2) * 2))) as pool:
        runs = dict(zip(folders, pool.map(lambda c: _run(c, inputs, folders[c.id]), CASES), strict=True))
    for cid, run in runs.items():
        run["left"] = _listing(folders[cid])
    assert _listing(inputs["root"]) == before, "a case wrote into the shared inputs"
    return runs


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_mistake_is_one_line_naming_the_flag_and_leaves_nothing(case: Case, results, inputs) -> None:
    run = results[case.id]
    out = run["out"]
    shown = f"{' '.join(run['argv'])}\n{out}"
    assert "Traceback" not in out, shown
    lines = [line for line in out.strip().splitlines() if line.strip()]
    assert lines, shown
    if case.warn:
        assert run["rc"] == 0, shown
        said = [line for line in lines if line.startswith("warning:")]
        assert len(said) == 1, shown
        line = said[0]
    else:
        assert run["rc"] != 0, shown
        line = lines[-1]
        assert len(line) < 500, shown
        assert run["left"] == [], f"{shown}\nleft behind: {run['left']}"
    for word in case.words:
        assert word.format(**{k: str(v) for k, v in inputs.items()}) in line, shown
    for word in case.absent:
        assert word.format(**{k: str(v) for k, v in inputs.items()}) not in out, shown


def test_the_corpus_covers_every_command_family() -> None:
    """≥ 45 cases, and each command family has its own (the count per family is what the
    closing note of a change lists)."""
    families = Counter(c.family for c in CASES)
    assert len(CASES) >= 45
    assert len({c.id for c in CASES}) == len(CASES)
    wanted = {"job (detect_anomalies.py)", "darkpool train", "darkpool evaluate", "darkpool generate",
              "darkpool inject", "darkpool replay", "darkpool import lobster", "python -m darkpool.venue.rates",
              "darkpool scorer serve", "darkpool alerts", "darkpool submit", "darkpool stack up", "darkpool explain",
              "darkpool budget"}
    assert wanted <= set(families), sorted(families)
