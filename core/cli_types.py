"""Numeric bounds of command-line values, checked when the command line is parsed.

One rule for every CLI of the project (the `darkpool` click commands and the job's
argparse flags): a number outside its range, or not finite, is refused before any work
starts, in one line that names the flag. click's own FloatRange lets NaN through (every
comparison with NaN is false), hence `Bounded`.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import click

from core.config import ConfigError, _check_address


def range_problem(value: float, lo: float | None = None, hi: float | None = None,
                  lo_open: bool = False, hi_open: bool = False) -> str | None:  # fmt: skip
    """Why `value` is outside [lo, hi] (open ends as asked), or None when it is inside.

    >>> range_problem(0, lo=1) is None, range_problem(1, lo=1)
    (False, None)
    >>> range_problem(0, lo=1)
    'must be >= 1, got 0'
    >>> range_problem(0.0, lo=0, lo_open=True, hi=1)
    'must be > 0 and <= 1, got 0.0'
    >>> range_problem(float("nan"))
    'must be a finite number, got nan'
    """
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {value}"
    low = lo is not None and (value <= lo if lo_open else value < lo)
    high = hi is not None and (value >= hi if hi_open else value > hi)
    if not (low or high):
        return None
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi:g}")
    return f"must be {' and '.join(parts)}, got {value}"


class Bounded(click.ParamType):
    """An int or float option with bounds; the message names the option (click adds it).

    >>> Bounded(int, lo=1).convert("3", None, None)
    3
    >>> Bounded(float, lo=0, lo_open=True).convert("0", None, None)
    Traceback (most recent call last):
    ...
    click.exceptions.BadParameter: must be > 0, got 0.0
    """

    def __init__(self, kind: type = float, lo: float | None = None, hi: float | None = None,
                 lo_open: bool = False, hi_open: bool = False) -> None:  # fmt: skip
        self.kind, self.lo, self.hi, self.lo_open, self.hi_open = kind, lo, hi, lo_open, hi_open
        self.name = "integer" if kind is int else "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, self.kind) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = self.kind(value)
            except (TypeError, ValueError):
                self.fail(f"{value!r} is not {'an integer' if self.kind is int else 'a number'}", param, ctx)
        problem = range_problem(number, self.lo, self.hi, self.lo_open, self.hi_open)
        if problem:
            self.fail(problem, param, ctx)
        return number

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return self.name.upper()


POSITIVE_INT = Bounded(int, lo=1)
COUNT = Bounded(int, lo=0)  # 0 allowed (a count, a seed, threads where 0 = default)
POSITIVE = Bounded(float, lo=0, lo_open=True)
NON_NEGATIVE = Bounded(float, lo=0)
FRACTION = Bounded(float, lo=0, hi=1, lo_open=True, hi_open=True)  # a rate strictly between 0 and 1


def out_folder_problem(out: Path) -> str | None:
    """Why the output folder `out` cannot be written, or None; leaves nothing behind.

    The folder (and missing parents) is created to try a write, then removed again: a
    command refused later must not leave an empty folder, and a real write is the only
    test that holds for root, read-only mounts and /proc alike.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> out_folder_problem(root / "a" / "b"), (root / "a").exists()
    (None, False)
    >>> (root / "f").write_text("")
    0
    >>> out_folder_problem(root / "f")
    'is a file, not a folder'
    """
    if out.exists() and not out.is_dir():
        return "is a file, not a folder"
    created: list[Path] = []
    probe = out / ".darkpool-write-test"
    try:
        for folder in reversed([out, *out.parents]):
            if not folder.exists():
                folder.mkdir()
                created.append(folder)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return f"cannot be created or is not writable ({exc.strerror or exc})"
    finally:
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
    return None


def address_problem(name: str, value: str) -> str | None:
    """Why `value` is not a valid address for the field `name` (a `*_url` or
    `bootstrap_servers`), or None; the same rule as for DARKPOOL_* variables.

    >>> address_problem("scorer_url", "notaurl")
    "'notaurl' is not an http(s) URL; use e.g. http://localhost:8500"
    >>> address_problem("bootstrap_servers", "localhost:9092") is None
    True
    """
    try:
        _check_address("", name, value)
    except ConfigError as exc:
        return str(exc).removeprefix("=").removeprefix(f"{value!r}: ")
    return None


class Address(click.ParamType):
    """A URL or a HOST:PORT list option, checked when parsed (`address_problem`)."""

    name = "address"

    def __init__(self, field: str) -> None:
        self.field = field

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        problem = address_problem(self.field, str(value))
        if problem:
            self.fail(problem, param, ctx)
        return str(value)


BOOTSTRAP_SERVERS = Address("bootstrap_servers")
