"""One valid trade event of the contract (core/schemas.py), and payloads derived from it."""

from __future__ import annotations

import json

GOOD = {
    "ts": 1_772_483_400_369_432_782, "instrument": "ABC", "venue": "DP1", "event": "fill",
    "order_id": "o1", "participant": "F1-a", "side": "B", "price": 10.5, "qty": 100,
    "contra": "F2-b", "bid": 10.49, "ask": 10.51, "hidden": False,
}  # fmt: skip


def payload(**change: object) -> str:
    """GOOD with some fields changed, as compact JSON (the Kafka wire format)."""
    return json.dumps({**GOOD, **change}, separators=(",", ":"))
