"""Simulator configuration: one frozen dataclass and the named presets."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

NS = 1_000_000_000


@dataclass(frozen=True)
class SimConfig:
    n_instruments: int = 24  # symbols, spread over three liquidity tiers
    n_events: int = 800_000  # exact number of event rows written (normal + manipulation)
    duration_s: int = 23_400  # session length; the session always *ends* at the close
    seed: int = 7  # everything is a function of this seed
    anomaly_rate: float = 0.05  # target fraction of rows labeled anomalous
    date: str = "2026-03-02"  # trading day (UTC)
    close_utc: str = "21:00"  # closing time; 23,400 s before it is the 14:30 UTC open
    grid_ms: int = 500  # resolution of the simulated lit NBBO path
    venues: tuple[str, ...] = ("DKX", "MPX", "BLX")  # dark venues the orders route to
    tick: float = 0.01  # price increment of limit prices and NBBO

    def __post_init__(self) -> None:
        problems = []
        if self.n_instruments < 1:
            problems.append(f"n_instruments must be >= 1, got {self.n_instruments}")
        if self.n_events < 100:
            problems.append(f"n_events must be >= 100, got {self.n_events}")
        if not 0 <= self.anomaly_rate < 0.5:
            problems.append(f"anomaly_rate must be in [0, 0.5), got {self.anomaly_rate}")
        if not 60 <= self.duration_s <= 23_400:
            problems.append(f"duration_s must be in [60, 23400] (one session), got {self.duration_s}")
        if self.grid_ms < 10 or (self.duration_s * 1000) % self.grid_ms:
            problems.append(f"grid_ms must be >= 10 and divide the session, got {self.grid_ms}")
        if problems:
            raise ValueError("invalid simulator config: " + "; ".join(problems))

    @property
    def close_ns(self) -> int:
        day = dt.datetime.fromisoformat(f"{self.date}T{self.close_utc}:00+00:00")
        return int(day.timestamp()) * NS

    @property
    def open_ns(self) -> int:
        return self.close_ns - self.duration_s * NS

    @property
    def regular_open_ns(self) -> int:
        """09:30 New York (14:30 UTC): where the morning activity peak sits."""
        return self.close_ns - 23_400 * NS

    def replace(self, **changes: object) -> SimConfig:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


PRESETS: dict[str, SimConfig] = {
    # Tests: a few instruments, the last 30 minutes of the session (so marking_the_close fits).
    "tiny": SimConfig(n_instruments=4, n_events=20_000, duration_s=1_800, anomaly_rate=0.08),
    # Demo and training default: one full session.
    "default": SimConfig(),
    # Shaped like the seed paper's Table 5: 2,543,678 records, 5.7% anomalous.
    "seed-table5": SimConfig(n_instruments=40, n_events=2_543_678, anomaly_rate=0.057),
}
