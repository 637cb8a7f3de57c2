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
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import re
from typing import Any

from core.config import from_env
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
            kw.update(type=type(default), metavar=type(default).__name__.upper(), help=shown.replace("%", "%%"))
            if path in CHOICES:
                kw.update(choices=CHOICES[path], metavar=None)
        group.add_argument(flag_of(path), **kw)


def build_parser(description: str = "") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    cfg = JobConfig(**{name: from_env(type(getattr(d, name)), **nested[name]) for name in NESTED}, **top)
    explicit = bool(nested["window"]) or any(f"DARKPOOL_{n}" in os.environ for n in ("SIZE_S", "SLIDE_S"))
    return cfg, explicit
