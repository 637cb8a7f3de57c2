"""Long soak: the detection job at a steady paced rate. Do state, checkpoints and memory stay flat?

    .venv/bin/python bench/soak.py [--minutes 60] [--instruments 500] [--rate 500]
        [--sample-s 30] [--warmup-minutes M/6] [--quiet-share 0.2] [--quiet-minutes 20]
        [--parallelism 1] [--artifact DIR] [--keep] [--plot PNG] [--port-offset 0]
        [--profile production] [--shared-stack]
    .venv/bin/python bench/soak.py --smoke [--shared-stack]   # about two minutes: checks the script
    .venv/bin/python bench/soak.py --replot SAMPLES [--warmup-minutes M] [--plot PNG]

Runs on a stack of its own (own run dir and ports, as bench/stack_bench.py), in the
production memory profile (fixed, pre-touched heaps: the profile made for long runs), so
no other job's state or Python workers are counted: Kafka, a JobManager, a TaskManager, a scorer,
and jobs/detect_anomalies.py submitted with `flink run` (RocksDB state, a checkpoint
every 5 s), reading the trades topic a paced producer fills at --rate events/s with
event time = wall time. The events are a simulated market of --instruments instruments
(`darkpool generate`, --loop-minutes long, sent again and again with shifted times).
A --quiet-share of the instruments goes quiet for --quiet-minutes out of every
2 x --quiet-minutes, staggered, and comes back: their state is swept and rebuilt, so a
leak in either path shows as growth.

Every --sample-s seconds it records: the latest completed checkpoint (its full state
size, the size it uploaded, its duration), checkpoint and restart counts, and the RSS of
every process: JobManager, TaskManager JVM, the TaskManager's Python workers (its process
group), scorer, Kafka; the TaskManager JVM's heap (used, committed), non-heap, metaspace,
direct and managed memory and its GC counts, and how much of its RSS is the Java heap's
resident pages (a heap being touched for the first time grows the RSS until the whole
-Xmx range is resident; a leak outside the heap grows `rss_taskmanager_outside_heap_mb`);
the JVM's native memory tracking per category (`nmt_*`, from `jcmd PID VM.native_memory`:
the TaskManager of this stack runs with -XX:NativeMemoryTracking=summary) and what is
left of the RSS outside it (`rss_taskmanager_untracked_mb`: RocksDB, Arrow, malloc);
each operator's state in the latest checkpoint (`state_kb_*`);
how far the job's watermark is behind the wall clock (is it
keeping up?); and the producer's pace (events sent, seconds behind schedule).

Prints one JSON object: the settings, the samples, and per series its first, last, min,
max and mean and, over the samples after the warm-up, the least-squares slope per hour,
its standard error, and `flat`: the slope is within 2 standard errors of zero (noise), or
under 1% of the series' mean per hour. Counts (checkpoints, restarts, events) give their
rate per hour after the warm-up instead. --plot also draws the series (warm-up shaded);
--replot summarizes and plots the sample lines an earlier run printed to stderr.

--shared-stack runs on the stack `darkpool stack` runs (DARKPOOL_* settings) instead of one
of its own, on topics of its own (deleted after): no stack start, so a smoke run costs a job,
not a stack; its memory series then count the other jobs' too (and no NMT: that stack's
TaskManager runs without it), so it is for checking the script, not for a soak.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from core.config import KafkaConfig  # noqa: E402
from core.paths import artifacts_dir  # noqa: E402
from darkpool.stack import core, flink, jobs  # noqa: E402
from darkpool.stack import kafka as kafka_stack  # noqa: E402
from darkpool.stack.procs import PidFiles, group_members, rss_bytes  # noqa: E402
from darkpool.stack.scorer import ScorerProcess, free_port  # noqa: E402
from darkpool.stack.settings import PROFILES, StackConfig  # noqa: E402

# An isolated stack, on ports apart from the shared one (9092/8081) and stack_bench's.
PORTS = {"kafka_port": 49092, "controller_port": 49093, "rest_port": 48081, "jm_rpc_port": 46123, "prom_port": 49349}


def load_market(instruments: int, rate: float, loop_s: int, out: Path) -> tuple[list[int], list[str], list[str]]:
    """(time offsets ns, instruments, messages) of a simulated market of `loop_s` seconds
    at `rate` events/s, in event-time order; each message starts with its `"ts":`."""
    import pyarrow.parquet as pq

    from core.schemas import FIELD_NAMES, encode_batch

    subprocess.run([sys.executable, "-m", "darkpool.cli", "generate", "--preset", "default", "--instruments",
                    str(instruments), "--events", str(int(rate * loop_s)), "--duration", str(loop_s), "--seed", "1",
                    "--out", str(out)], cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    table = pq.read_table(out / "events.parquet").sort_by("ts")
    ts = table.column("ts").to_pylist()
    names, messages = [], []
    for name, text in encode_batch(table.select(list(FIELD_NAMES))):
        if not text.startswith('{"ts":'):
            raise SystemExit("soak: the contract's JSON no longer starts with ts; update bench/soak.py's producer")
        names.append(name)
        messages.append(text.split(",", 1)[1])  # what follows the ts
    return [t - ts[0] for t in ts], names, messages


class PacedProducer(threading.Thread):
    """Sends the market in a loop at its own pace, event time = wall time, leaving out
    the quiet instruments while they are quiet."""

    def __init__(self, bootstrap: str, topic: str, market: tuple[list[int], list[str], list[str]],
                 loop_s: int, quiet: list[str], quiet_s: float) -> None:  # fmt: skip
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.loop_s = bootstrap, topic, loop_s
        self.offsets, self.names, self.messages = market
        # instrument -> phase: quiet while (t + phase) mod 2 quiet_s < quiet_s
        self.phase = {name: i * 2 * quiet_s / max(len(quiet), 1) for i, name in enumerate(quiet)}
        self.quiet_s = quiet_s
        self.sent = 0
        self.behind_s = 0.0  # how far the last send was behind its schedule
        self.error: str | None = None
        self._stop = threading.Event()

    def quiet_now(self, name: str, t: float) -> bool:
        phase = self.phase.get(name)
        return phase is not None and (t + phase) % (2 * self.quiet_s) < self.quiet_s

    def run(self) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks=1, linger_ms=20)
        start_wall_ns, start = time.time_ns(), time.monotonic()
        loop = 0
        try:
            while not self._stop.is_set():
                base = loop * self.loop_s * 10**9
                for offset, name, rest in zip(self.offsets, self.names, self.messages, strict=True):
                    at = (base + offset) / 1e9
                    ahead = at - (time.monotonic() - start)
                    if ahead > 0.005 and self._stop.wait(ahead):  # (waits; True = stopped)
                        return
                    self.behind_s = max(0.0, -ahead)
                    if self.quiet_now(name, at):
                        continue
                    value = f'{{"ts":{start_wall_ns + base + offset},{rest}'
                    producer.send(self.topic, value.encode(), key=name.encode())
                    self.sent += 1
                loop += 1
        except Exception as exc:  # noqa: BLE001 (reported in the result, not a traceback mid-run)
            self.error = repr(exc)
        finally:
            producer.close(timeout=10)

    def stop(self) -> None:
        self._stop.set()


def sample(cfg: StackConfig, job_id: str, scorer: ScorerProcess, producer: PacedProducer) -> dict:
    """One row of the series (sizes in MB, durations in ms)."""
    row: dict[str, float | str | None] = {}
    cps = flink.rest_get(cfg, f"/jobs/{job_id}/checkpoints", timeout=10)
    done = (cps.get("latest") or {}).get("completed") or {}
    row["checkpoint_state_mb"] = done.get("state_size", 0) / 2**20 if done else None
    row["checkpoint_uploaded_mb"] = done.get("checkpointed_size", 0) / 2**20 if done else None
    row["checkpoint_duration_ms"] = done.get("end_to_end_duration") if done else None
    row["checkpoints_completed"] = cps["counts"]["completed"]
    row["checkpoints_failed"] = cps["counts"]["failed"]
    row["restarts"] = jobs.num_restarts(cfg, job_id)
    info = jobs.job(cfg, job_id)
    row.update(operator_state(cfg, job_id, done["id"], info) if done else {})
    row["job_state"] = info["state"]
    row["job_lag_s"] = watermark_lag_s(cfg, job_id, info)
    pids = PidFiles(cfg.pid_dir)
    for name, key in ((flink.JM, "rss_jobmanager_mb"), (kafka_stack.NAME, "rss_kafka_mb")):
        proc = pids.live(name)
        row[key] = rss_bytes(group_members(proc.pid)) / 2**20 if proc else None
    tm = pids.live(flink.TM)
    workers = [p for p in group_members(tm.pid) if p != tm.pid] if tm else []
    tm_rss = rss_bytes([tm.pid]) if tm else None
    heap = heap_resident_bytes(tm.pid) if tm else None
    row["rss_taskmanager_jvm_mb"] = tm_rss / 2**20 if tm_rss is not None else None
    row["rss_taskmanager_heap_mb"] = heap / 2**20 if heap is not None else None
    row["rss_taskmanager_outside_heap_mb"] = (tm_rss - heap) / 2**20 if heap is not None and tm_rss is not None else None
    row["rss_python_workers_mb"] = rss_bytes(workers) / 2**20
    row["python_workers"] = len(workers)
    row.update(taskmanager_memory(cfg))
    nmt = native_memory(tm.pid) if tm else {}
    row.update(nmt)
    if nmt and heap is not None and tm_rss is not None:
        # what the JVM does not account for: native libraries (RocksDB, Arrow) and the
        # allocator's own overhead (NMT's committed pages are taken as resident)
        jvm_native = nmt["nmt_total_mb"] - nmt["nmt_java_heap_mb"]
        row["rss_taskmanager_untracked_mb"] = (tm_rss - heap) / 2**20 - jvm_native
    row["rss_scorer_mb"] = rss_bytes([scorer.pid]) / 2**20
    row["events_sent"] = producer.sent
    row["producer_behind_s"] = producer.behind_s
    return row


# The TaskManager JVM's own view of its memory, to tell a filling heap (RSS follows the
# committed heap up to -Xmx, then levels) from native growth (RocksDB, direct buffers).
TM_MEMORY_METRICS = {
    "Status.JVM.Memory.Heap.Used": "tm_heap_used_mb",
    "Status.JVM.Memory.Heap.Committed": "tm_heap_committed_mb",
    "Status.JVM.Memory.NonHeap.Used": "tm_nonheap_used_mb",
    "Status.JVM.Memory.Metaspace.Used": "tm_metaspace_used_mb",
    "Status.JVM.Memory.Direct.MemoryUsed": "tm_direct_used_mb",
    "Status.Flink.Memory.Managed.Used": "tm_managed_used_mb",
}
TM_GC_METRICS = {
    "Status.JVM.GarbageCollector.G1_Young_Generation.Count": "tm_gc_young",
    "Status.JVM.GarbageCollector.G1_Old_Generation.Count": "tm_gc_old",
}


def taskmanager_memory(cfg: StackConfig) -> dict[str, float | None]:
    """The TaskManager's heap, non-heap, metaspace, direct and managed memory (MB) and GC counts."""
    row: dict[str, float | None] = dict.fromkeys([*TM_MEMORY_METRICS.values(), *TM_GC_METRICS.values()])
    tms = flink.rest_get(cfg, "/taskmanagers", timeout=10).get("taskmanagers", [])
    if not tms:
        return row
    names = ",".join([*TM_MEMORY_METRICS, *TM_GC_METRICS])
    for m in flink.rest_get(cfg, f"/taskmanagers/{tms[0]['id']}/metrics?get={names}", timeout=10):
        if m["id"] in TM_MEMORY_METRICS:
            row[TM_MEMORY_METRICS[m["id"]]] = float(m["value"]) / 2**20
        else:
            row[TM_GC_METRICS[m["id"]]] = float(m["value"])
    return row


def slug(name: str) -> str:
    """A series name from free text.

    >>> slug("PythonGroupWindowAggregate[6] -> Calc[7]"), slug("Java Heap")
    ('pythongroupwindowaggregate_6_calc_7', 'java_heap')
    """
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def operator_state(cfg: StackConfig, job_id: str, checkpoint_id: int, info: dict) -> dict[str, float]:
    """The state each operator (of the job `info` describes) wrote into one checkpoint
    (KB): which one grows, if any."""
    details = flink.rest_get(cfg, f"/jobs/{job_id}/checkpoints/details/{checkpoint_id}", timeout=10)
    names = {v["id"]: v["name"] for v in info["vertices"]}
    return {f"state_kb_{slug(names.get(vertex, vertex))[:40]}": task.get("state_size", 0) / 1024
            for vertex, task in (details.get("tasks") or {}).items()}  # fmt: skip


# The soak starts its TaskManager with the JVM's native memory tracking (summary level,
# a few % of allocation cost), so the RSS outside the heap can be split into what the
# JVM itself holds (code cache, metaspace, threads, GC, direct buffers) and the rest.
NMT_OPTS = "-XX:NativeMemoryTracking=summary"
NMT_LINE = re.compile(r"^-\s+(.+?) \(reserved=(\d+)KB, committed=(\d+)KB\)")
NMT_TOTAL = re.compile(r"^Total: reserved=(\d+)KB, committed=(\d+)KB")


def parse_native_memory(text: str) -> dict[str, float]:
    """Committed MB per category of `jcmd PID VM.native_memory summary`, and the total.

    >>> parse_native_memory('''Total: reserved=4096KB, committed=2048KB
    ... -                 Java Heap (reserved=1024KB, committed=1024KB)
    ... -                     Class (reserved=2048KB, committed=512KB)''')
    {'nmt_total_mb': 2.0, 'nmt_java_heap_mb': 1.0, 'nmt_class_mb': 0.5}
    """
    row = {}
    for line in text.splitlines():
        line = line.strip()
        if m := NMT_TOTAL.match(line):
            row["nmt_total_mb"] = int(m.group(2)) / 1024
        elif m := NMT_LINE.match(line):
            row[f"nmt_{slug(m.group(1))}_mb"] = int(m.group(3)) / 1024
    return row


def native_memory(pid: int) -> dict[str, float]:
    """The TaskManager JVM's own native memory accounting ({} when NMT is not on)."""
    java = shutil.which(kafka_stack.java_binary())  # the stack's JVMs: JAVA_HOME's, else PATH's
    jcmd = Path(java).resolve().with_name("jcmd") if java else None
    if jcmd is None or not jcmd.exists():
        return {}
    try:
        out = subprocess.run([jcmd, str(pid), "VM.native_memory", "summary"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    row = parse_native_memory(out.stdout)
    return row if "nmt_total_mb" in row and "nmt_java_heap_mb" in row else {}


def heap_resident_bytes(pid: int) -> int | None:
    """Resident bytes of the JVM's Java heap: its largest mapping (the reserved -Xmx range).
    The heap's pages become resident as allocation first touches them and stay so; the
    rest of the RSS (metaspace, code, thread stacks, direct buffers, RocksDB) is what a
    leak outside the heap would grow."""
    largest, rss, size = -1, None, 0
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split(maxsplit=1)[0]
                if "-" in head and not head.endswith(":"):
                    lo, hi = (int(x, 16) for x in head.split("-"))
                    size = hi - lo
                elif head == "Rss:" and size > largest:
                    largest, rss = size, int(line.split()[1]) * 1024
    except OSError:
        return None
    return rss


def watermark_lag_s(cfg: StackConfig, job_id: str, info: dict) -> float | None:
    """Wall clock minus the decision stage's input watermark (event time = wall time
    here): how far behind the job is; None before its first watermark."""
    vertex = next((v for v in info["vertices"] if "adaptive-threshold" in v["name"]), None)
    if vertex is None:
        return None
    marks = flink.rest_get(cfg, f"/jobs/{job_id}/vertices/{vertex['id']}/watermarks", timeout=10)
    values = [int(m["value"]) for m in marks if m["id"].endswith("currentInputWatermark")]
    if not values or min(values) <= 0:
        return None
    return time.time() - min(values) / 1000


# Cumulative counts: their slope is a rate (per hour), not a trend to judge as flat.
COUNTERS = ("checkpoints_completed", "checkpoints_failed", "restarts", "events_sent", *TM_GC_METRICS.values())


def trend(ts_h: list[float], ys: list[float]) -> dict:
    """Least-squares slope per hour, its standard error, and whether it is flat.

    >>> trend([0, 1, 2, 3], [5, 5, 5, 5])["flat"]
    True
    >>> round(trend([0, 1, 2, 3], [1, 2, 3, 4.1])["slope_per_h"], 2)
    1.03
    """
    n = len(ys)
    if n < 3:
        return {"slope_per_h": None, "stderr_per_h": None, "flat": None}
    mx, my = sum(ts_h) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in ts_h)
    slope = sum((x - mx) * (y - my) for x, y in zip(ts_h, ys, strict=True)) / sxx
    resid = [y - my - slope * (x - mx) for x, y in zip(ts_h, ys, strict=True)]
    stderr = math.sqrt(sum(r * r for r in resid) / (n - 2) / sxx)
    flat = abs(slope) <= 2 * stderr or abs(slope) <= 0.01 * abs(my)
    return {"slope_per_h": round(slope, 4), "stderr_per_h": round(stderr, 4), "flat": flat}


def summarize(samples: list[dict], warmup_s: float) -> dict:
    series = {}
    keys = dict.fromkeys(k for s in samples for k in s)  # some appear later (first checkpoint)
    for key in keys:
        if key in ("t_s", "job_state"):
            continue
        points = [(s["t_s"], s[key]) for s in samples if isinstance(s.get(key), int | float)]
        if not points:
            continue
        ys = [y for _, y in points]
        after = [(t / 3600, y) for t, y in points if t >= warmup_s]
        fit = trend([t for t, _ in after], [y for _, y in after])
        if key in COUNTERS:  # after the warm-up: how many per hour
            series[key] = {"last": ys[-1], "per_h_after_warmup": fit["slope_per_h"]}
            continue
        series[key] = {"first": round(ys[0], 2), "last": round(ys[-1], 2), "min": round(min(ys), 2),
                       "max": round(max(ys), 2), "mean": round(sum(ys) / len(ys), 2), **fit}  # fmt: skip
    return series


# what the plot shows, panel by panel: (title, [(series, label)])
PLOT_PANELS = (
    ("RSS per process (MB)", [("rss_taskmanager_jvm_mb", "TaskManager JVM"), ("rss_jobmanager_mb", "JobManager"),
                              ("rss_kafka_mb", "Kafka"), ("rss_scorer_mb", "scorer"),
                              ("rss_python_workers_mb", "Python workers")]),
    ("TaskManager RSS, split (MB)", [("rss_taskmanager_heap_mb", "Java heap, resident"),
                                     ("rss_taskmanager_outside_heap_mb", "outside the heap"),
                                     ("rss_taskmanager_untracked_mb", "outside the JVM's own tracking"),
                                     ("nmt_code_mb", "JIT code"), ("nmt_metaspace_mb", "metaspace")]),
    ("Checkpointed state (MB)", [("checkpoint_state_mb", "full state"), ("checkpoint_uploaded_mb", "uploaded")]),
)  # fmt: skip


def plot(samples: list[dict], warmup_s: float, path: Path) -> Path:
    """PNG of the memory and state series over the run, the warm-up shaded."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    operators = sorted({k for s in samples for k in s if k.startswith("state_kb_")})
    panels = [*PLOT_PANELS, ("Checkpointed state per operator (KB)", [(k, k[len("state_kb_"):]) for k in operators])]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.2 * len(panels)), sharex=True)
    for ax, (title, series) in zip(axes, panels, strict=True):
        for key, label in series:
            pts = [(s["t_s"] / 60, s[key]) for s in samples if isinstance(s.get(key), int | float)]
            if pts:
                ax.plot(*zip(*pts, strict=True), label=label, lw=1.2)
        ax.axvspan(0, warmup_s / 60, color="0.9", zorder=0)
        ax.set_title(title, fontsize=10, loc="left")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="upper left", ncol=2)
        else:  # an older run's samples lack these series
            ax.text(0.5, 0.5, "not sampled in this run", transform=ax.transAxes, ha="center", color="0.5")
    axes[0].text(warmup_s / 120, 0.02, "warm-up (left out of the slopes)", transform=axes[0].get_xaxis_transform(),
                 ha="center", fontsize=8, color="0.4")  # fmt: skip
    axes[-1].set_xlabel("minutes")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def replot(samples_file: Path, warmup_minutes: float, plot_path: Path | None) -> None:
    """Summary (and plot) of the sample lines an earlier run wrote to stderr."""
    samples = [json.loads(line) for line in samples_file.read_text().splitlines() if line.startswith('{"t_s"')]
    if not samples:
        raise SystemExit(f"soak: no sample lines in {samples_file} (lines starting with {{\"t_s\")")
    result = {"samples": len(samples), "warmup_s": 60 * warmup_minutes, "series": summarize(samples, 60 * warmup_minutes)}
    if plot_path:
        result["plot"] = str(plot(samples, 60 * warmup_minutes, plot_path))
    print(json.dumps(result))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=60.0, help="wall time of the paced run [60]")
    p.add_argument("--instruments", type=int, default=500)
    p.add_argument("--rate", type=float, default=500.0, help="events/s the producer sends (before quiet ones) [500]")
    p.add_argument("--sample-s", type=float, default=30.0, help="seconds between samples [30]")
    p.add_argument("--warmup-minutes", type=float, help="samples before this are left out of the slopes [minutes/6]")
    p.add_argument("--quiet-share", type=float, default=0.2, help="share of the instruments that go quiet [0.2]")
    p.add_argument("--quiet-minutes", type=float, default=20.0, help="how long they stay quiet each time [20]")
    p.add_argument("--loop-minutes", type=int, default=10, help="length of the market sent in a loop [10]")
    p.add_argument("--parallelism", type=int, default=1)
    p.add_argument("--profile", default="production", choices=sorted(PROFILES),
                   help="the soak stack's memory profile (darkpool/stack/settings.py) [production]")
    p.add_argument("--port-offset", type=int, default=0, help="added to each of the soak stack's ports (two soaks at once) [0]")
    p.add_argument("--artifact", type=Path, default=artifacts_dir() / "small", help="model the scorer serves")
    p.add_argument("--shared-stack", action="store_true",
                   help="run on the running `darkpool stack` (own topics), not a stack of its own: checks the script")
    p.add_argument("--keep", action="store_true", help="leave the stack's run dir (logs, checkpoints) behind")
    p.add_argument("--plot", type=Path, help="also write the series as a PNG here")
    p.add_argument("--replot", type=Path, metavar="SAMPLES",
                   help="run nothing: summarize (and --plot) the sample lines of an earlier run's stderr")  # fmt: skip
    p.add_argument("--smoke", action="store_true",
                   help="about two minutes: 30 s of 4 instruments at 20 events/s, an untrained model, the default "
                        "profile (less memory); checks the script, its slopes mean nothing")  # fmt: skip
    a = p.parse_args()
    if a.smoke:
        from _smoke import untrained_artifact

        a.minutes, a.sample_s, a.instruments, a.rate, a.loop_minutes, a.quiet_minutes = 0.5, 10.0, 4, 20.0, 1, 0.25
        a.profile = "default" if "--profile" not in sys.argv else a.profile
        a.artifact = untrained_artifact(Path(tempfile.mkdtemp(prefix="soak-smoke-")) / "model")
    if a.replot:
        if not a.replot.is_file():
            p.error(f"--replot {a.replot}: no such file (pass the stderr an earlier soak wrote)")
        return a
    if a.minutes <= 0 or a.rate <= 0 or a.sample_s <= 0 or a.instruments < 1 or not 0 <= a.quiet_share <= 1:
        p.error("--minutes, --rate, --sample-s must be > 0, --instruments >= 1, --quiet-share in [0, 1]")
    if not (a.artifact / "config.json").exists():
        p.error(f"no model artifact at {a.artifact}: train one (`darkpool train`) or pass --artifact DIR")
    return a


def main() -> None:
    a = parse_args()
    warmup_s = 60 * (a.warmup_minutes if a.warmup_minutes is not None else a.minutes / 6)
    if a.replot:
        return replot(a.replot, warmup_s / 60, a.plot)
    run_dir = Path(tempfile.mkdtemp(prefix="darkpool-soak-"))
    if a.shared_stack:
        cfg = StackConfig.load()
        if not core.running(cfg) and not core.serving(cfg):
            raise SystemExit(f"soak --shared-stack: no stack serves {cfg.bootstrap_servers}; start one (`darkpool stack up`)")
        suffix = os.urandom(4).hex()  # topics of its own: the shared stack's topics are others'
        topics = {"trades": f"soak.{suffix}.trades", "alerts": f"soak.{suffix}.alerts", "dead_letter": f"soak.{suffix}.dead"}
    else:
        cfg = StackConfig(run_dir=run_dir, profile=a.profile, **{k: v + a.port_offset for k, v in PORTS.items()})
        topics = {}
    loop_s = int(60 * a.loop_minutes)
    market = load_market(a.instruments, a.rate, loop_s, run_dir / "market")
    quiet = sorted(set(market[1]))[: round(a.quiet_share * a.instruments)]
    result: dict = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()},
                    "warmup_s": warmup_s, "cores": os.cpu_count(), "run_dir": str(run_dir)}  # fmt: skip
    scorer = producer = None
    job_id = None
    samples: list[dict] = []
    # the TaskManager's JVM options for this stack only: bin/config.sh takes this variable
    # instead of env.java.opts.taskmanager (the profile's), so it carries those too
    os.environ["FLINK_ENV_JAVA_OPTS_TM"] = f"{cfg.memory.flink_jvm_opts} {NMT_OPTS}".strip()
    try:
        if a.shared_stack:
            from darkpool.stack import smoke

            smoke.create_topics(cfg, list(topics.values()), 2)
        else:
            core.up(cfg)
        scorer = ScorerProcess(a.artifact, free_port(), run_dir / "scorer.log")
        kafka = KafkaConfig(bootstrap_servers=cfg.bootstrap_servers)
        topic_args = [x for role, name in topics.items() for x in (f"--{role.replace('_', '-')}-topic", name)]
        job_id = jobs.submit(cfg, args=["--bootstrap-servers", cfg.bootstrap_servers, "--scorer-url", scorer.url,
                                        "--parallelism", str(a.parallelism), "--start-from", "latest", *topic_args,
                                        "--job-name", "soak", "--restart-attempts", "3"])  # fmt: skip
        jobs.wait_for_state(cfg, job_id, {"RUNNING"}, timeout_s=300)
        producer = PacedProducer(cfg.bootstrap_servers, topics.get("trades", kafka.trades_topic), market, loop_s, quiet,
                                 60 * a.quiet_minutes)  # fmt: skip
        producer.start()
        start = time.monotonic()
        while (t := time.monotonic() - start) < 60 * a.minutes:
            samples.append({"t_s": round(t, 1), **sample(cfg, job_id, scorer, producer)})
            print(json.dumps(samples[-1]), file=sys.stderr, flush=True)
            if samples[-1]["job_state"] != "RUNNING" or producer.error:
                result["stopped_early"] = producer.error or f"job {samples[-1]['job_state']}: {jobs.exceptions(cfg, job_id)}"
                break
            time.sleep(max(0.0, a.sample_s - (time.monotonic() - start - t)))
        result["events_per_s_sent"] = round(producer.sent / max(time.monotonic() - start, 1e-9), 1)
    finally:
        if producer:
            producer.stop()
        if job_id and jobs.job(cfg, job_id)["state"] not in jobs.TERMINAL:
            jobs.cancel(cfg, job_id)
        if scorer:
            scorer.kill()
        if a.shared_stack:  # others' stack: only what this run made goes
            from darkpool.stack import smoke

            smoke.delete_topics(cfg, list(topics.values()))
        else:
            core.down(cfg)
        if not a.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    result["samples"] = len(samples)
    result["series"] = summarize(samples, warmup_s) if samples else {}
    result["load_average"] = os.getloadavg()
    if a.plot and samples:
        result["plot"] = str(plot(samples, warmup_s, a.plot))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
