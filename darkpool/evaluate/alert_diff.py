"""Compare the committed alert events of two runs: same decisions, none lost, none repeated.

Used by the recovery tests and the chaos benchmark: a run disturbed by faults must commit
exactly the alert events of an undisturbed run of the same data and model, apart from
the processing-time fields (core.alerts.PROCESSING_TIME_FIELDS) and float noise.
"""

from __future__ import annotations

import math
from collections import Counter
from decimal import Decimal
from typing import Any

from core.alerts import PROCESSING_TIME_FIELDS

Key = tuple[str, int]  # (alert_id, seq): one alert event


def decisions(event: dict[str, Any]) -> dict[str, Any]:
    """An alert event without its processing-time fields."""
    return {k: v for k, v in event.items() if k not in PROCESSING_TIME_FIELDS}


def duplicated(events: list[dict[str, Any]]) -> dict[Key, int]:
    """(alert_id, seq) keys committed more than once, with their counts."""
    counts = Counter((e["alert_id"], e["seq"]) for e in events)
    return {k: n for k, n in counts.items() if n > 1}


def comparable(events: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    """Alert events by (alert_id, seq) without their processing-time fields; a repeated
    event is an error (the exactly-once contract): check `duplicated` first to count them."""
    dup = duplicated(events)
    assert not dup, f"duplicate alert events {sorted(dup)[:5]}"
    return {(e["alert_id"], e["seq"]): decisions(e) for e in events}


# The coarsest rounding the job applies to an alert number (core/coalesce.py, core/alerts.py
# round to 4 or 6 decimals).
COARSEST_ROUNDING_DECIMALS = 4


def decimals(x: float) -> int:
    """Digits after the decimal point in x's shortest repr (what a round(x, n) left).

    >>> decimals(0.1234), decimals(2.0), decimals(1.5e-06), decimals(0.091231)
    (4, 0, 7, 6)
    """
    exponent = Decimal(repr(float(x))).normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def rounding_steps(*runs: dict[Key, dict[str, Any]]) -> dict[str, float]:
    """Per field path ("score", "top_features.z"), the finest step its numbers were seen
    on over all the events of the runs: 10**-n for a field the job rounds to n decimals
    (a float left unrounded shows ~17 digits, a step of no consequence). Only steps of
    the job's own roundings count (at least COARSEST_ROUNDING_DECIMALS decimals): a float field whose
    values all happen to be whole (60.0, 61.0) must not make 60 and 61 "one step apart".

    >>> rounding_steps({("a", 0): {"p": 0.12, "d": 60.0, "xs": [{"w": 0.5}, {"w": 0.1235}]}},
    ...                {("a", 0): {"p": 0.1, "d": 61.0}})
    {'xs.w': 0.0001}
    """
    digits: dict[str, int] = {}

    def walk(path: str, v: object) -> None:
        if isinstance(v, float):
            digits[path] = max(digits.get(path, 0), decimals(v))
        elif isinstance(v, list):
            for item in v:
                walk(path, item)
        elif isinstance(v, dict):
            for k, item in v.items():
                walk(f"{path}.{k}" if path else k, item)

    for run in runs:
        for event in run.values():
            walk("", event)
    return {path: 10.0**-n for path, n in digits.items() if n >= COARSEST_ROUNDING_DECIMALS}


def close(x: object, y: object, steps: dict[str, float] | None = None, path: str = "") -> bool:
    """Equal, numbers to 1e-4 relative, or one rounding step apart (`steps`, by field path).

    Why a tolerance at all: the model's float results depend on the batch a window was
    scored in (torch CPU kernels; the scorer and the job's async stage batch by timing),
    by about one float32 ulp: scoring the same 512 windows in batches of 1 to 512 moved
    `score` by at most 2.1e-7 relative (bench/chaos.py's differences file keeps what a
    run found). Why a rounding step: the job rounds most alert numbers (core/coalesce.py,
    core/alerts.py, to 4 or 6 decimals), and a value within that noise of a rounding
    midpoint rounds one step up in one run and down in the other: 0.1234 vs 0.1235 is
    float noise, 8e-4 relative. Two steps apart is not.

    >>> close(0.091231, 0.091232), close([1, {"a": 2.0}], [1, {"a": 2.1}])
    (True, False)
    >>> steps = {"p": 1e-4}
    >>> close(0.1234, 0.1235, steps, "p"), close(0.1234, 0.1236, steps, "p"), close(0.1234, 0.1235)
    (True, False, False)
    """
    if isinstance(x, float) or isinstance(y, float):
        if not (isinstance(x, int | float) and isinstance(y, int | float)):
            return False
        step = (steps or {}).get(path, 0.0)
        return math.isclose(x, y, rel_tol=1e-4, abs_tol=1e-6) or abs(x - y) <= step * (1 + 1e-9)
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(close(a, b, steps, path) for a, b in zip(x, y, strict=True))
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(close(x[k], y[k], steps, f"{path}.{k}" if path else k) for k in x)
    return x == y


def differences(a: dict[Key, dict], b: dict[Key, dict]) -> dict[Key, Any]:
    """Alert events (`comparable` of two runs) that differ beyond float noise (`close`,
    with the rounding steps seen in the two runs), by field."""
    out: dict[Key, Any] = {}
    steps = rounding_steps(a, b)
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b:
            out[key] = "missing in the second run" if key not in b else "extra in the second run"
            continue
        fields = {f: (a[key].get(f), b[key].get(f)) for f in a[key].keys() | b[key].keys()
                  if not close(a[key].get(f), b[key].get(f), steps, f)}  # fmt: skip
        if fields:
            out[key] = fields
    return out
