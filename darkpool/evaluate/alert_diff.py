"""Compare the committed alert events of two runs: same decisions, none lost, none repeated.

Used by the recovery tests and the chaos benchmark: a run disturbed by faults must commit
exactly the alert events of an undisturbed run of the same data and model, apart from
the processing-time fields (core.alerts.PROCESSING_TIME_FIELDS) and float noise.
"""

from __future__ import annotations

import math
from collections import Counter
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


def close(x: object, y: object) -> bool:
    """Equal, numbers to 1e-4 relative: the model's float results depend on the batch a
    window was scored in (torch CPU kernels; the scorer batches dynamically), measured
    as a last-digit difference of a rounded score (0.091231 vs 0.091232) between runs.

    >>> close(0.091231, 0.091232), close([1, {"a": 2.0}], [1, {"a": 2.1}])
    (True, False)
    """
    if isinstance(x, float) or isinstance(y, float):
        return isinstance(x, int | float) and isinstance(y, int | float) and math.isclose(x, y, rel_tol=1e-4, abs_tol=1e-6)
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(close(a, b) for a, b in zip(x, y, strict=True))
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(close(x[k], y[k]) for k in x)
    return x == y


def differences(a: dict[Key, dict], b: dict[Key, dict]) -> dict[Key, Any]:
    """Alert events (`comparable` of two runs) that differ beyond float noise, by field."""
    out: dict[Key, Any] = {}
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b:
            out[key] = "missing in the second run" if key not in b else "extra in the second run"
            continue
        fields = {f: (a[key].get(f), b[key].get(f)) for f in a[key].keys() | b[key].keys()
                  if not close(a[key].get(f), b[key].get(f))}  # fmt: skip
        if fields:
            out[key] = fields
    return out
