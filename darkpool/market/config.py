"""Simulator configuration: one frozen dataclass and the named presets."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

NS = 1_000_000_000
DAY_NS = 86_400 * NS
CHARACTERS = ("classic", "varied")
FLOWS = ("dark", "lit", "mixed")
ACTIVITIES = ("tiers", "zipf")  # classic: how activity is shared among instruments
ZIPF_EXPONENT = 1.1
MAX_EVENTS = 100_000_000  # a varied data set sized by its rates must stay below this


def _range_problem(name: str, value: tuple[float, float], lo: float, hi: float) -> str | None:
    """'what is wrong' for a (low, high) range that must lie within [lo, hi], else None."""
    if len(value) != 2 or not lo <= value[0] <= value[1] <= hi:
        return f"{name} must be LOW,HIGH with {lo:g} <= LOW <= HIGH <= {hi:g}, got {value}"
    return None


@dataclass(frozen=True)
class SimConfig:
    n_instruments: int = 24  # symbols (classic: spread over three liquidity tiers)
    # exact number of event rows written (normal + manipulation); None with the varied
    # character: the instruments' event rates decide it (see `simulate.resolve`)
    n_events: int | None = 800_000
    duration_s: int = 23_400  # length of each session; a session always *ends* at the close
    seed: int = 7  # everything is a function of this seed
    anomaly_rate: float = 0.05  # target fraction of rows labeled anomalous
    date: str = "2026-03-02"  # first trading day (UTC)
    close_utc: str = "21:00"  # closing time; 23,400 s before it is the 14:30 UTC open
    grid_ms: int = 500  # resolution of the simulated lit NBBO path
    venues: tuple[str, ...] = ("DKX", "MPX", "BLX")  # dark venues the orders route to
    tick: float = 0.01  # price increment of limit prices and NBBO (US equities priced >= $1)
    sessions: int = 1  # trading days, consecutive, each ending at the close
    skip_weekends: bool = False  # sessions on weekdays only (calendar gaps: see the README)
    # classic: three liquidity tiers, one participant pool, midpoint dark flow (sized by
    # n_events). varied: every instrument's character drawn from the ranges below.
    character: str = "classic"
    # classic: the instruments' relative activity. tiers: by liquidity tier (3 : 1 : 0.3);
    # zipf: the i-th busiest gets 1 / i^1.1 (a few hot names, a long quiet tail: a venue
    # with thousands of symbols)
    activity: str = "tiers"
    rate_range: tuple[float, float] = (0.05, 100.0)  # varied: mean normal events/s per instrument
    rate_scale: float = 1.0  # varied: multiplies every instrument's event rate (out-of-distribution tests)
    flow: str = "mixed"  # varied: dark (midpoint) | lit (cancel-heavy, at the touch) | mixed (half each)
    price_range: tuple[float, float] = (2.0, 2_000.0)  # varied: opening price, dollars
    spread_bps: tuple[float, float] | None = None  # varied: quoted spread; None = 1 tick .. 100 bps
    population_range: tuple[int, int] = (20, 3_000)  # varied: accounts trading each instrument
    # most instruments whose close is marked per session, as a share (1 = all may be; below
    # 1 leaves ordinary closes to learn from)
    marked_close_share: float = 1.0

    def __post_init__(self) -> None:
        problems = []
        if self.n_instruments < 1:
            problems.append(f"n_instruments must be >= 1, got {self.n_instruments}")
        if self.character not in CHARACTERS:
            problems.append(f"character must be one of {', '.join(CHARACTERS)}, got {self.character!r}")
        if self.n_events is None and self.character != "varied":
            problems.append("n_events is required unless character is 'varied'")
        if self.n_events is not None and self.n_events < 100 * self.sessions:
            problems.append(f"n_events must be >= 100 per session, got {self.n_events} for {self.sessions}")
        if not 0 <= self.anomaly_rate < 0.5:
            problems.append(f"anomaly_rate must be in [0, 0.5), got {self.anomaly_rate}")
        if not 60 <= self.duration_s <= 23_400:
            problems.append(f"duration_s must be in [60, 23400] (one session), got {self.duration_s}")
        if self.grid_ms < 10 or (self.duration_s * 1000) % self.grid_ms:
            problems.append(f"grid_ms must be >= 10 and divide the session, got {self.grid_ms}")
        if not 1 <= self.sessions <= 250:
            problems.append(f"sessions must be in [1, 250], got {self.sessions}")
        if self.activity not in ACTIVITIES:
            problems.append(f"activity must be one of {', '.join(ACTIVITIES)}, got {self.activity!r}")
        if self.activity != "tiers" and self.character == "varied":
            problems.append("activity applies to the classic character (varied draws its own rates)")
        if self.flow not in FLOWS:
            problems.append(f"flow must be one of {', '.join(FLOWS)}, got {self.flow!r}")
        if not 0 < self.marked_close_share <= 1:
            problems.append(f"marked_close_share must be in (0, 1], got {self.marked_close_share}")
        if not 0.001 <= self.rate_scale <= 1_000:
            problems.append(f"rate_scale must be in [0.001, 1000], got {self.rate_scale}")
        # Prices from $1 up: the $0.01 tick is the US rule there (sub-dollar names trade in $0.0001).
        for problem in (_range_problem("rate_range (events/s)", self.rate_range, 0.001, 10_000),
                        _range_problem("price_range (dollars; the 0.01 tick needs >= 1)", self.price_range, 1, 100_000),
                        _range_problem("spread_bps", self.spread_bps, 0.01, 1_000) if self.spread_bps else None,
                        _range_problem("population_range (accounts)", self.population_range, 2, 20_000)):
            if problem:
                problems.append(problem)
        if problems:
            raise ValueError("invalid simulator config: " + "; ".join(problems))

    def session_dates(self) -> list[str]:
        """The trading days, from `date` on (weekdays only with `skip_weekends`)."""
        day, out = dt.date.fromisoformat(self.date), []
        while len(out) < self.sessions:
            if not (self.skip_weekends and day.weekday() >= 5):
                out.append(day.isoformat())
            day += dt.timedelta(days=1)
        return out

    def session(self, k: int, n_events: int) -> SimConfig:
        """Session k as a one-session config of `n_events` rows (what the stages simulate)."""
        return dataclasses.replace(self, date=self.session_dates()[k], sessions=1, n_events=n_events)

    def session_bounds(self) -> list[tuple[int, int]]:
        """[open_ns, close_ns) of every session, in time order."""
        return [(c - self.duration_s * NS, c) for c in (_close_ns(d, self.close_utc) for d in self.session_dates())]

    @property
    def close_ns(self) -> int:
        """The last session's close."""
        return _close_ns(self.session_dates()[-1], self.close_utc)

    @property
    def open_ns(self) -> int:
        """The first session's open."""
        return _close_ns(self.session_dates()[0], self.close_utc) - self.duration_s * NS

    @property
    def regular_open_ns(self) -> int:
        """09:30 New York (14:30 UTC) of the first session: where the morning activity peak sits."""
        return _close_ns(self.session_dates()[0], self.close_utc) - 23_400 * NS

    def replace(self, **changes: object) -> SimConfig:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def _close_ns(date: str, close_utc: str) -> int:
    day = dt.datetime.fromisoformat(f"{date}T{close_utc}:00+00:00")
    return int(day.timestamp()) * NS


PRESETS: dict[str, SimConfig] = {
    # Tests: a few instruments, the last 30 minutes of the session (so marking_the_close fits).
    "tiny": SimConfig(n_instruments=4, n_events=20_000, duration_s=1_800, anomaly_rate=0.08),
    # Demo and the classic training set: one full session.
    "default": SimConfig(),
    # Shaped like the seed paper's Table 5: 2,543,678 records, 5.7% anomalous.
    "seed-table5": SimConfig(n_instruments=40, n_events=2_543_678, anomaly_rate=0.057),
    # Training for unseen venues: every instrument its own character (rates 0.05-100
    # events/s, dark and lit flow, $2-$2,000, spreads 1 tick-1%, 20-3,000 accounts,
    # regimes), six days of the last 25 minutes before the close (~2M events), so a
    # time split has every scenario, the close included, in each part; half the closes
    # stay ordinary.
    "varied": SimConfig(n_instruments=12, n_events=None, duration_s=1_500, sessions=6, anomaly_rate=0.04,
                        character="varied", marked_close_share=0.5),
}
