"""The job's command-line flags, generated from `JobConfig` (one spelling per field).

Every field of `JobConfig`, and of its nested `KafkaConfig`, `ScorerEndpoint`,
`WindowConfig` and `ThresholdConfig`, gets a flag: `--<field-name>` with dashes (a nested field keeps its own
name: `--bootstrap-servers`, `--scorer-url`, `--max-episode-ms`), typed and defaulted as the field, with the
field's source comment as help. A new field gets its flag for free. `ALIASES` keeps the
flags that users already type under another name.

>>> p = build_parser()
>>> cfg, _ = config_from_args(p.parse_args(["--window-slide", "10", "--async-capacity", "8"]))
>>> cfg.window.slide_s, cfg.async_capacity, cfg.kafka.trades_topic
(10, 8, 'darkpool.trades')

Strict: a flag that is not one of these, or an abbreviation of one, is an error naming
the nearest valid flag (`flink run -py` hands the script exactly the arguments after its
own options, nothing else, so nothing unknown can be legitimate); every number is checked
against its range (`BOUNDS`) as it is parsed; errors name flags, never field names.
`python -m jobs.job_flags FLAGS...` checks a command line without starting anything
(`darkpool submit` does, before the JVM starts).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import inspect
import os
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

from core.cli_types import address_problem, range_problem
from core.config import ConfigError, from_env
from core.job_config import JobConfig

NESTED = ("kafka", "scorer", "window", "thresholds", "time_plausibility")  # JobConfig fields that are configs of their own
# field path -> the flag it has always had (kept as the primary spelling)
ALIASES = {
    "window.size_s": "--window-size",
    "window.slide_s": "--window-slide",
    "source_idle_timeout_ms": "--idle-timeout-ms",
    "transactional_id_prefix": "--tx-prefix",
}
# fields with a fixed set of values
CHOICES = {"start_from": ("committed", "earliest", "latest"), "thresholds.score_scale": ("logit", "raw")}
# a topic-creation setting of the stack, not of the job; the reorder buffer of the
# per-window operator the job does not run; the pane length, which is the job's slide
SKIP = {"kafka.partitions", "thresholds.fallback_pane_ms"}
# (low, high, low open, high open) of each numeric flag; a number not named here must be
# >= 0 (counts, durations, sizes). None = no bound (regime z-scores may be negative).
BOUNDS: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "window.size_s": (1, None, False, False),
    "window.slide_s": (1, None, False, False),
    "thresholds.half_life_windows": (0, None, True, False),
    "thresholds.warmup_windows": (1, None, False, False),
    "thresholds.regime_low": (None, None, False, False),
    "thresholds.regime_high": (None, None, False, False),
    "thresholds.min_sigma_logit": (0, None, True, False),
    "thresholds.ceil_ratio": (0, None, True, False),
    "thresholds.winsor_c": (0, None, True, False),
    "thresholds.max_flag_rate": (0, 1, True, False),
    "thresholds.budget_windows": (1, None, False, False),
    "thresholds.relearn_windows": (1, None, False, False),
    "thresholds.close_after": (1, None, False, False),
    "thresholds.quiet_gap_ms": (1, None, False, False),
    "thresholds.max_episode_ms": (1, None, False, False),
    "thresholds.update_every": (1, None, False, False),
    "thresholds.idle_ttl_ms": (1, None, False, False),
    "thresholds.evidence_fraction": (0, 1, True, False),
    "thresholds.min_scenario_probability": (0, 1, False, False),
    "time_plausibility.max_jump_ms": (1, None, False, False),
    "time_plausibility.reanchor_after": (1, None, False, False),
    "checkpoint_interval_ms": (10, None, False, False),  # Flink's own minimum
    "checkpoint_timeout_ms": (10, None, False, False),
    "async_capacity": (1, None, False, False),
    "scorer_timeout_s": (0, None, True, False),
    "degraded_probe_s": (0, None, True, False),
    "transaction_timeout_ms": (1, 60 * 60 * 1000, False, False),  # the broker's transaction.max.timeout.ms
    "python_bundle_size": (1, None, False, False),
    "python_bundle_time_ms": (1, None, False, False),
    "watermark_interval_ms": (1, None, False, False),  # 0 would switch watermarks off: no window ever closes
    "arrow_batch_size": (1, None, False, False),
    "python_state_cache_size": (1, None, False, False),
    "pane_shards": (1, None, False, False),
}
# flags of the Kafka source, meaningless with --backtest (a file source)
KAFKA_SOURCE_ONLY = ("start_from", "kafka.trades_topic")

_FIELD_LINE = re.compile(r"^    (\w+): [^=]+= .*?(?:#\s*(.*))?$")
_COMMENT_LINE = re.compile(r"^    #\s?(.*)$")


def field_help(cls: type) -> dict[str, str]:
    """Each field's source comment: the one at the end of its line, else the ones above it."""
    out: dict[str, str] = {}
    above: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        if m := _COMMENT_LINE.match(line):
            text = m.group(1).strip()
            if not text.startswith("---"):
                above.append(text)
            continue
        if m := _FIELD_LINE.match(line):
            out[m.group(1)] = (m.group(2) or " ".join(above)).strip()
        above = [] if line.strip() else above
    return out


def _specs() -> list[tuple[str, dataclasses.Field, Any, str]]:
    """(path, field, default, help) of every flag, in JobConfig's field order."""
    top = JobConfig()
    helps = field_help(JobConfig)
    out = []
    for f in dataclasses.fields(JobConfig):
        if f.name in NESTED:
            sub = getattr(top, f.name)
            sub_cls = type(sub)
            resolved = from_env(sub_cls)  # what DARKPOOL_<FIELD> makes of the default
            sub_helps = field_help(sub_cls)
            for g in dataclasses.fields(sub_cls):
                path = f"{f.name}.{g.name}"
                if path not in SKIP:
                    out.append((path, g, getattr(resolved, g.name), sub_helps.get(g.name, "")))
        else:
            out.append((f.name, f, getattr(top, f.name), helps.get(f.name, "")))
    return out


def flag_of(path: str) -> str:
    return ALIASES.get(path, "--" + path.rsplit(".", 1)[-1].replace("_", "-"))


def add_config_flags(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("job configuration (JobConfig; nested configs also read DARKPOOL_<FIELD>)")
    for path, _, default, text in _specs():
        kw: dict[str, Any] = {"dest": path.replace(".", "__"), "default": None}
        shown = f"{text} [default: {default!r}]" if text else f"[default: {default!r}]"
        if isinstance(default, bool):
            kw.update(action=argparse.BooleanOptionalAction, help=text)
        else:
            if isinstance(default, (int, float)):
                kind = _bounded(type(default), path)
            elif path.endswith("_url") or path.endswith("bootstrap_servers"):
                kind = _address(path.rsplit(".", 1)[-1])
            else:
                kind = type(default)
            kw.update(type=kind, metavar=type(default).__name__.upper(), help=shown.replace("%", "%%"))
            if path in CHOICES:
                kw.update(choices=CHOICES[path], metavar=None)
        group.add_argument(flag_of(path), **kw)


def _bounded(kind: type, path: str) -> Any:
    """argparse type of a numeric flag: the number, or an error argparse prints after the
    flag's name (`argument --pane-shards: must be >= 1, got 0`)."""
    lo, hi, lo_open, hi_open = BOUNDS.get(path, (0, None, False, False))

    def convert(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        problem = range_problem(value, lo, hi, lo_open, hi_open)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    convert.__name__ = kind.__name__  # argparse names the type in its own messages
    return convert


def _address(name: str) -> Any:
    """argparse type of a URL / HOST:PORT flag (core.cli_types.address_problem)."""

    def convert(text: str) -> str:
        problem = address_problem(name, text)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return text

    convert.__name__ = "address"
    return convert


class StrictParser(argparse.ArgumentParser):
    """No abbreviations, no unknown arguments: either is an error naming the nearest flag.

    >>> p = StrictParser(prog="job"); _ = p.add_argument("--k-sigma", type=float)
    >>> p.suggestion("--k-sig"), p.suggestion("--ksigma"), p.suggestion("--zzz")
    ('--k-sigma', '--k-sigma', None)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def suggestion(self, token: str) -> str | None:
        name = token.split("=", 1)[0]
        flags = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
        prefixed = [f for f in flags if f.startswith(name)]
        if len(prefixed) == 1:  # an abbreviation
            return prefixed[0]
        close = difflib.get_close_matches(name, prefixed or flags, n=1, cutoff=0.6)
        return close[0] if close else None

    def nearest(self, token: str) -> str:
        """The most similar flag, however far (a hint even for a badly mistyped flag)."""
        name = token.split("=", 1)[0]
        flags = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
        return max(flags, key=lambda f: difflib.SequenceMatcher(None, name, f).ratio())

    def error(self, message: str) -> NoReturn:
        # one short usage line, not the ~70 flags of the full one; the error itself last
        self.exit(2, f"usage: {self.prog} [FLAGS] (`{self.prog} --help` lists them)\n{self.prog}: error: {message}\n")

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            flag = next((t for t in extra if t.startswith("-")), None)
            if flag is None:
                self.error(f"unexpected argument {extra[0]!r} (every value follows its flag: --flag VALUE)")
            near = self.suggestion(flag)
            hint = f"; did you mean {near}?" if near else f" (none is like it; the nearest is {self.nearest(flag)})"
            self.error(f"unknown flag {flag.split('=', 1)[0]}{hint}")
        return parsed


def build_parser(description: str = "") -> argparse.ArgumentParser:
    p = StrictParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(p)
    run = p.add_argument_group("run mode")
    run.add_argument("--backtest", metavar="PATH", help="read a contract Parquet (or .jsonl) file instead of Kafka")
    run.add_argument("--to-kafka", action="store_true", help="with --backtest: write alerts / dead letters to Kafka too")
    run.add_argument("--bounded", action="store_true",
                     help="the Kafka source stops at the latest offsets of job start (a topic as a backtest)")
    return p


def config_from_args(a: argparse.Namespace) -> tuple[JobConfig, bool]:
    """(JobConfig, whether the window geometry was set explicitly) from parsed flags.

    Nested configs: defaults, then DARKPOOL_<FIELD>, then flags (core.config.from_env);
    the job's own fields: defaults, then flags.
    """
    given = {k: v for k, v in vars(a).items() if v is not None}
    nested: dict[str, dict[str, Any]] = {name: {} for name in NESTED}
    top: dict[str, Any] = {}
    for path, *_ in _specs():
        key = path.replace(".", "__")
        if key not in given:
            continue
        if "." in path:
            head, name = path.split(".")
            nested[head][name] = given[key]
        else:
            top[path] = given[key]
    d = JobConfig()
    try:
        cfg = JobConfig(**{name: from_env(type(getattr(d, name)), **nested[name]) for name in NESTED}, **top)
    except ConfigError:
        raise  # names the DARKPOOL_ variable already
    except ValueError as exc:  # checks across fields (JobConfig, WindowConfig, ...): said with the flags
        text = flag_words(str(exc))
        if text.startswith("window size"):  # WindowConfig speaks of size and slide
            text += f" ({flag_of('window.size_s')} / {flag_of('window.slide_s')}, or DARKPOOL_SIZE_S / _SLIDE_S)"
        raise ValueError(text) from None
    explicit = bool(nested["window"]) or any(f"DARKPOOL_{n}" in os.environ for n in ("SIZE_S", "SLIDE_S"))
    return cfg, explicit


def flag_words(message: str) -> str:
    """A config check's message with each field name replaced by its flag.

    >>> flag_words("parallelism 40 exceeds pane_shards 32: lower --parallelism")
    '--parallelism 40 exceeds --pane-shards 32: lower --parallelism'
    """
    for path, *_ in _specs():
        name = path.rsplit(".", 1)[-1]
        message = re.sub(rf"(?<![\w.-]){re.escape(name)}\b", flag_of(path), message)
    return message


def check_run_mode(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Refuse run-mode flags that contradict each other, and a --backtest file that cannot
    give a result, before the JVM starts (exits through `p.error`, naming the flags)."""
    if a.backtest is None:
        if a.to_kafka:
            p.error("--to-kafka goes with --backtest FILE (without --backtest the job reads and writes Kafka anyway)")
        return
    if a.bounded:
        p.error("--bounded stops a Kafka source; --backtest FILE is bounded already: give one of them")
    for path in KAFKA_SOURCE_ONLY:
        if getattr(a, path.replace(".", "__")) is not None:
            p.error(f"{flag_of(path)} sets the Kafka source; --backtest FILE reads the file instead: drop one")
    path = Path(a.backtest)
    if path.is_dir():
        hint = f" give {path / 'events.parquet'}" if (path / "events.parquet").is_file() else ""
        p.error(f"--backtest {path} is a folder:{hint or ' give a contract Parquet (or .jsonl) file'}")
    if not path.is_file():
        p.error(f"--backtest {path} does not exist (write one with `darkpool generate --out DIR`: DIR/events.parquet)")
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            rows = pq.ParquetFile(path).metadata.num_rows
        except (pa.ArrowException, OSError) as exc:
            p.error(f"--backtest {path} is not a readable Parquet file ({exc})")
    else:
        rows = path.stat().st_size
    if rows == 0:
        p.error(f"--backtest {path} holds no events: the job would print nothing")


def check_paths(p: argparse.ArgumentParser, cfg: JobConfig) -> None:
    """Files the driver reads itself must be there before anything starts."""
    if cfg.alert_budget:
        from core.alert_budget import AlertBudget, BudgetFileError

        try:
            AlertBudget.load(cfg.alert_budget)
        except BudgetFileError as exc:
            p.error(f"--alert-budget {exc}")
    rules = cfg.degraded_rules
    if rules and not (Path(rules).is_file() or (Path(rules) / "rules.json").is_file()):
        p.error(f"--degraded-rules {rules}: no rules.json there (give a `darkpool train` artifact folder "
                "or its rules.json)")


def parse_job_args(argv: list[str] | None = None, description: str = "",
                   prog: str | None = None) -> tuple[JobConfig, argparse.Namespace]:  # fmt: skip
    """The job's command line -> (JobConfig, the parsed flags, with `explicit_window`).

    Every mistake exits (status 2) with argparse's usage line and one line naming the flag.
    """
    try:
        p = build_parser(description)  # the defaults shown are DARKPOOL_* resolved: a bad one stops here
    except ConfigError as exc:
        raise SystemExit(f"{prog or 'detect_anomalies.py'}: error: {exc}") from None
    if prog:
        p.prog = prog
    a = p.parse_args(argv)
    check_run_mode(p, a)
    try:
        cfg, a.explicit_window = config_from_args(a)
    except ValueError as exc:  # JobConfig / WindowConfig checks across flags; ConfigError: DARKPOOL_*
        p.error(str(exc))
    check_paths(p, cfg)
    return cfg, a


def main(argv: list[str] | None = None) -> NoReturn:
    """`python -m jobs.job_flags FLAGS...`: check the job's flags, start nothing."""
    parse_job_args(argv, prog="detect_anomalies.py")
    print("job flags ok")
    raise SystemExit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
