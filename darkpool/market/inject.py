"""Manipulation episodes injected into any event history (`darkpool inject`).

The background is any file in the event contract (a venue's own history, converted
public order messages, a generated market with its labels dropped). The simulator's
eight injectors (injectors.py) draw each episode's rows with prices relative to the
NBBO; here they are placed into the background's own trading time, priced against the
background's NBBO, sized like its orders and given its participants. The output has the
layout of `darkpool generate` (events, episodes, regimes; see `simulate.write`), so
training, evaluation and the job's backtest read it as they read a simulated market.

Choices (the README's "Injecting abuse into a history" section says the same):
- Sessions: the background's rows split wherever nothing happens for 3 hours. A
  session's close is its last background event; `marking_the_close` bunches its orders
  into the minutes before it (at most one per instrument and session).
- Episodes start at the time of a randomly chosen background row of their instrument
  (so they fall into its active trading time; instruments drawn by rows^0.75), are
  moved back when they would run past the close, and do not overlap on one instrument
  when that can be avoided. An episode has at most max(20, half its instrument's rows
  in the session) manipulator rows, so a thin name is not drowned.
- The lit market does not react: the injectors' price impacts are not applied, every
  background row stays exactly as it was (only label 0 / "normal" is added).
- Prices: the background's bid/ask as of each injected row (last background row of
  the instrument at or before it), on the instrument's tick inferred from its quotes.
- Sizes: the simulator's sizes times (instrument's median order size / 200, the
  simulator's median), times a per-episode factor; round lots if the background trades
  them.
- Participants: manipulators, colluders and contras are existing background accounts
  (a fresh account trading only in episodes would give them away). Firm = account name
  up to its last "." (else its last "-"). Account types, which some patterns ask for,
  are inferred from behaviour (cancel ratio, order size, activity).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.schemas import (
    EPISODE_SCHEMA,
    EVENT_KINDS,
    EVENT_SCHEMA,
    LABELED_SCHEMA,
    SCENARIOS,
    SIDES,
    ContractError,
    validate_table,
)
from darkpool.market.batch import Batch
from darkpool.market.config import NS
from darkpool.market.events import NEW, PK_COPY, Block, concat, resolve_prices, take, time_order
from darkpool.market.injectors import INJECTORS, RENDITIONS
from darkpool.market.simulate import REGIME_SCHEMA, SimResult
from darkpool.market.universe import TYPES, other_account

DEFAULT_RATE = 0.015  # target share of anomalous rows in the output
MAX_RATE = 0.5
SESSION_GAP_NS = 3 * 3600 * NS  # no event for this long: a new session
CLOSE_MARGIN_NS = NS  # episodes end at least this long before the close (as in generate)
SIM_MEDIAN_ORDER_QTY = 200  # median `new` size of the simulator's normal flow (injector sizes are for it)
TICKS = (1.0, 0.5, 0.25, 0.1, 0.05, 0.01, 0.005, 0.001, 0.0005, 0.0001)
MIN_BUDGET = 6  # rows; as in episodes.py
THIN_BUDGET = 20  # rows an episode may always have, however thin its instrument
PLACEMENT_TRIES = 12
REGIME_WINDOW_NS = 600 * NS
CLOSING = "marking_the_close"


class InjectError(ValueError):
    """Bad input to `inject`: a one-line message saying what is wrong and what to do."""


@dataclass(frozen=True)
class InjectConfig:
    rate: float = DEFAULT_RATE  # target fraction of anomalous rows in the output
    scenarios: tuple[str, ...] = tuple(INJECTORS)  # patterns to inject, each at least once
    seed: int = 0  # same background, options and seed -> identical files
    # which drawing of the patterns (injectors.RENDITIONS): "default", the simulator's, or
    # "alt", the same behaviours with other sizes, distances, timings, counts and orderings
    rendition: str = "default"

    def __post_init__(self) -> None:
        if self.rendition not in RENDITIONS:
            raise InjectError(f"unknown rendition {self.rendition!r}; valid: {', '.join(RENDITIONS)}")
        if not 0 < self.rate < MAX_RATE:
            raise InjectError(f"--rate must be in (0, {MAX_RATE}), got {self.rate}")
        unknown = [s for s in self.scenarios if s not in INJECTORS]
        if unknown or not self.scenarios:
            raise InjectError(f"unknown scenario(s) {', '.join(unknown) or '(none given)'}; "
                              f"valid: {', '.join(INJECTORS)}")


def read_background(path: Path) -> pa.Table:
    """The background events (EVENT_SCHEMA, sorted by ts) or an InjectError saying why not."""
    path = Path(path)
    if path.is_dir():
        path = path / "events.parquet"
    if not path.exists():
        raise InjectError(f"background file {path} does not exist")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise InjectError(f"cannot read {path} as Parquet ({str(exc).splitlines()[0]})") from None
    missing = [n for n in EVENT_SCHEMA.names if n not in table.column_names]
    if missing:
        raise InjectError(f"{path} is not in the event contract: missing column(s) {', '.join(missing)}")
    if table.num_rows == 0:
        raise InjectError(f"{path} has no events")
    if "label" in table.column_names and pc.sum(pc.cast(table.column("label"), pa.int64())).as_py():
        raise InjectError(f"{path} already has anomalous rows (label 1); drop its label/scenario columns first "
                          "or inject into an unlabeled history")
    table = table.select(EVENT_SCHEMA.names)
    try:
        validate_table(table)
        table = table.cast(EVENT_SCHEMA)
    except ContractError as exc:
        raise InjectError(f"{path} is not in the event contract: {exc}") from None
    ts = table.column("ts").to_numpy()
    if (np.diff(ts) < 0).any():  # a stable sort: rows with equal times keep their order
        table = table.take(np.argsort(ts, kind="stable"))
    return table


def _np(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy(zero_copy_only=False)


def _codes(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values sorted, code per row; -1 where null) of a string column, in Arrow
    (a numpy pass over 1M Python strings costs seconds)."""
    enc = pc.dictionary_encode(col.combine_chunks() if col.num_chunks != 1 else col.chunk(0))
    values = np.array(enc.dictionary.to_pylist(), dtype=object)
    order = np.argsort(values.astype(str), kind="stable")
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    idx = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return values[order].astype(str), np.where(idx >= 0, rank[np.maximum(idx, 0)], -1).astype(np.int32)


def _firm(name: str) -> str:
    for sep in (".", "-"):
        if sep in name.strip(sep):
            return name.rsplit(sep, 1)[0]
    return name


@dataclass(frozen=True)
class Participants:
    """The background's accounts in the shape the injectors use (see universe.Universe)."""

    part_names: np.ndarray
    part_firm: np.ndarray  # firm index per account; a firm's accounts are contiguous
    firm_first: np.ndarray
    firm_size: np.ndarray
    part_type: np.ndarray  # index into universe.TYPES, inferred from behaviour
    type_members: tuple[np.ndarray, ...]
    type_cdf: tuple[np.ndarray, ...]  # by activity within the type
    contra_cdf: np.ndarray  # who meets an injected fill: as often as in the background's fills
    price0: np.ndarray  # per instrument: median mid (off_market_print sizes its prints by it)


def _participants(table: pa.Table, price0: np.ndarray) -> Participants:
    part_values, part_code = _codes(table.column("participant"))
    contra_values, contra_code = _codes(table.column("contra"))
    names = np.array(sorted(set(part_values) | set(contra_values), key=lambda n: (_firm(n), n)))
    if len(names) < 2:
        raise InjectError(f"the background has {len(names)} participant(s); injecting needs at least 2 "
                          "(manipulators and their contras)")
    where = {n: k for k, n in enumerate(names)}
    p = np.array([where[v] for v in part_values], dtype=np.int64)[part_code]
    met_codes = contra_code[contra_code >= 0]
    contra_p = np.array([where[v] for v in contra_values], dtype=np.int64)[met_codes]
    firms, part_firm = np.unique([_firm(n) for n in names], return_inverse=True)
    firm_size = np.bincount(part_firm, minlength=len(firms))
    n = len(names)
    kind = _np(table, "event")
    rows = np.bincount(p, minlength=n).astype(float)
    new = np.bincount(p[kind == "new"], minlength=n)
    cancel_ratio = np.bincount(p[kind == "cancel"], minlength=n) / np.maximum(new, 1)
    qty = pd.Series(_np(table, "qty")[kind == "new"]).groupby(p[kind == "new"]).median()
    size = np.zeros(n)
    size[qty.index.to_numpy()] = qty.to_numpy()

    def top(x: np.ndarray) -> np.ndarray:  # in the top quarter of the active accounts
        active = rows > 0
        return active & (x >= np.quantile(x[active], 0.75)) & (x > 0)

    # HFT: cancels most; INST: largest orders; MM: most active; ALGO: the rest.
    ptype = np.full(n, TYPES.index("ALGO"))
    ptype[top(rows)] = TYPES.index("MM")
    ptype[top(size) & ~top(cancel_ratio)] = TYPES.index("INST")
    ptype[top(cancel_ratio)] = TYPES.index("HFT")
    weight = rows + 1e-9  # accounts seen only as contras are (almost) never manipulators
    members, cdfs = [], []
    for t in range(len(TYPES)):
        m = np.flatnonzero(ptype == t)
        if not len(m) or rows[m].sum() == 0:  # no such account: any account will do
            m = np.arange(n)
        members.append(m)
        cdfs.append(np.cumsum(weight[m]) / weight[m].sum())
    met = np.bincount(contra_p, minlength=n).astype(float)
    if met.sum() == 0:
        met = rows
    return Participants(names, part_firm, np.cumsum(firm_size) - firm_size, firm_size, ptype, tuple(members),
                        tuple(cdfs), np.cumsum(met) / met.sum(), price0)


def _tick(quotes: np.ndarray) -> float:
    """The coarsest tick that 99% of the quotes lie on."""
    for tick in TICKS:
        ratio = quotes / tick
        if np.mean(np.abs(ratio - np.rint(ratio)) < 1e-4) >= 0.99:
            return tick
    return TICKS[-1]


@dataclass(frozen=True)
class _Session:
    """What an injector reads from its config: the close and the tick."""

    close_ns: int
    tick: float


@dataclass
class Background:
    """The history, coded for the injectors: per-instrument rows, sessions, ticks, sizes, accounts."""

    table: pa.Table  # EVENT_SCHEMA, sorted by ts
    ts: np.ndarray
    symbols: np.ndarray
    inst: np.ndarray  # code per row
    inst_rows: list[np.ndarray]  # rows of each instrument, in time order
    venues: np.ndarray
    venue: np.ndarray  # code per row
    bid: np.ndarray
    ask: np.ndarray
    session: np.ndarray  # per row
    open_ns: np.ndarray  # per session: first event
    close_ns: np.ndarray  # per session: last event + 1 ns
    tick: np.ndarray  # per instrument
    size_factor: np.ndarray  # per instrument: median order size / the simulator's
    round_lots: np.ndarray  # per instrument: orders mostly in multiples of 100
    uni: Participants
    oid_prefix: str
    oid_max: int


def analyse(table: pa.Table) -> Background:
    ts = _np(table, "ts")
    symbols, inst = _codes(table.column("instrument"))
    venues, venue = _codes(table.column("venue"))
    bid, ask, qty = _np(table, "bid"), _np(table, "ask"), _np(table, "qty")
    session = np.concatenate([[0], np.cumsum(np.diff(ts) > SESSION_GAP_NS)])
    starts = np.flatnonzero(np.diff(session, prepend=-1))
    open_ns = ts[starts]
    close_ns = ts[np.append(starts[1:], len(ts)) - 1] + 1
    order = np.argsort(inst, kind="stable")
    inst_rows = np.split(order, np.cumsum(np.bincount(inst, minlength=len(symbols)))[:-1])
    is_new = _np(table, "event") == "new"
    tick, factor, lots, price0 = (np.zeros(len(symbols)) for _ in range(4))
    for k, rows in enumerate(inst_rows):
        tick[k] = _tick(np.concatenate([bid[rows], ask[rows]]))
        sized = rows[is_new[rows]] if is_new[rows].any() else rows
        factor[k] = np.median(qty[sized]) / SIM_MEDIAN_ORDER_QTY
        lots[k] = np.mean(qty[sized] % 100 == 0) >= 0.8
        price0[k] = np.median((bid[rows] + ask[rows]) / 2)
    prefix, oid_max = _order_numbering(table.column("order_id"))
    return Background(table, ts, symbols, inst, inst_rows, venues, venue, bid, ask, session, open_ns, close_ns,
                      tick, factor, lots.astype(bool), _participants(table, price0), prefix, oid_max)


def _order_numbering(ids: pa.ChunkedArray) -> tuple[str, int]:
    """(most common prefix of ids "<prefix><number>", largest number with it): new ids
    continue the background's numbering, so they neither clash nor stand out."""
    parts = pc.extract_regex(ids, r"^(?P<prefix>\D*)(?P<number>\d{1,18})$")
    prefix_col = pc.struct_field(parts, "prefix")
    counts = pc.value_counts(prefix_col.drop_null())
    if len(counts) == 0:
        return "O", 0
    top = counts[int(np.argmax(counts.field("counts").to_numpy()))]["values"].as_py()
    numbers = pc.filter(pc.struct_field(parts, "number"), pc.equal(prefix_col, top))
    return top, int(pc.max(pc.cast(numbers, pa.int64())).as_py())


@dataclass
class _Episode:
    name: str
    inst: int
    intensity: float
    rows: Block  # shifted, sized, accounts assigned; `episode` = its id on manipulator rows
    accounts: list[int]  # manipulators
    start: int  # first / last manipulator row
    end: int
    n: int  # manipulator rows


class _Scheduler:
    """Draws episodes one by one (each as if alone) and places them in the background."""

    def __init__(self, bg: Background, cfg: InjectConfig) -> None:
        self.bg, self.cfg = bg, cfg
        self.rng = np.random.default_rng(cfg.seed)
        w = np.array([len(r) for r in bg.inst_rows], dtype=float) ** 0.75
        self.inst_cdf = np.cumsum(w) / w.sum()
        self.taken: dict[int, list[tuple[int, int]]] = {}
        self.closed: set[tuple[int, int]] = set()  # (instrument, session) whose close is marked
        self.next_oid = [0]
        self.episodes: list[_Episode] = []

    def _where(self, closing: bool) -> tuple[int, int, int] | None:
        """(instrument, background row giving the start time, session)."""
        bg, rng = self.bg, self.rng
        for _ in range(PLACEMENT_TRIES):
            inst = int(min(np.searchsorted(self.inst_cdf, rng.random()), len(self.inst_cdf) - 1))
            rows = bg.inst_rows[inst]
            row = int(rows[rng.integers(len(rows))])
            if not closing or (inst, int(bg.session[row])) not in self.closed:
                return inst, row, int(bg.session[row])
        return None

    def _fit(self, b: Block, s: int) -> Block | None:
        """Move an episode that runs past its session's close back; drop whole orders
        that start before the open. None if no manipulator row is left."""
        bg = self.bg
        shift = min(0, int(bg.close_ns[s]) - CLOSE_MARGIN_NS - int(b["ts"].max()))
        b = dict(b, ts=b["ts"] + shift)
        early = b["ts"] < bg.open_ns[s]
        if early.any():
            b = take(b, ~np.isin(b["oid"], b["oid"][early & (b["ev"] == NEW)]) & ~early)
        return b if (b["label"] == 1).any() else None

    def _overlaps(self, inst: int, t0: int, t1: int) -> bool:
        return any(t0 <= e and s <= t1 for s, e in self.taken.get(inst, ()))

    def draw(self, name: str, budget: int) -> _Episode | None:
        bg, rng = self.bg, self.rng
        closing = name == CLOSING
        intensity = float(rng.uniform(0.05, 1.0))
        stretch = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))  # duration, independent of intensity
        size = float(np.exp(rng.normal(0, 0.4)))
        n_accounts = int(rng.choice([1, 2, 3], p=[0.7, 0.2, 0.1]))
        colluding = bool(rng.random() < 0.3)
        fit = None
        for attempt in range(PLACEMENT_TRIES):
            where = self._where(closing)
            if where is None:
                return None
            inst, row, s = where
            t0 = int(bg.ts[row])
            if attempt == 0:  # drawn once, then moved on a clash (prices are relative to the NBBO)
                # a thin name is not drowned: at most half its background rows in the session
                own = int(np.count_nonzero(bg.session[bg.inst_rows[inst]] == s))
                budget = min(budget, max(THIN_BUDGET, own // 2))
                c = Batch(_Session(int(bg.close_ns[s]), float(bg.tick[inst])), rng, bg.uni, np.array([inst]),
                          np.array([t0]), np.array([intensity]), np.array([bg.venue[row]]), budget,
                          SCENARIOS.index(name), self.next_oid)
                # impacts: the lit market does not react
                rows, _impacts, manip = RENDITIONS[self.cfg.rendition][name](c)
                if not closing:
                    rows = dict(rows, ts=t0 + np.rint((rows["ts"] - t0) * stretch).astype(np.int64))
                drawn_t0 = t0
                drawn_s = s
            # later tries move the drawn rows: to the new start, or the close of the new session
            move = int(bg.close_ns[s]) - int(bg.close_ns[drawn_s]) if closing else t0 - drawn_t0
            shifted = dict(rows, ts=rows["ts"] + move)
            shifted = dict(shifted, inst=np.full(len(shifted["ts"]), inst, dtype=np.int32),
                           venue=np.full(len(shifted["ts"]), bg.venue[row], dtype=np.int8))
            placed = self._fit(shifted, s)
            if placed is None:
                continue
            lab = placed["ts"][placed["label"] == 1]
            fit = (inst, s, placed, int(lab.min()), int(lab.max()))
            if not self._overlaps(inst, fit[3], fit[4]):
                break
        if fit is None:
            return None
        inst, s, placed, start, end = fit
        accounts = [int(x) for x in manip[0] if x >= 0]
        placed = self._size(placed, inst, size)
        if manip[0, 1] < 0 and n_accounts > 1:  # one manipulator spreading its orders over accounts
            placed, accounts = self._spread(placed, accounts[0], n_accounts, colluding)
        self.taken.setdefault(inst, []).append((start, end))
        if closing:
            self.closed.add((inst, s))
        e = len(self.episodes)
        placed = dict(placed, episode=np.where(placed["label"] == 1, e, -1).astype(np.int32))
        ep = _Episode(name, inst, intensity, placed, sorted(set(accounts)), start, end, int((placed["label"] == 1).sum()))
        self.episodes.append(ep)
        return ep

    def _size(self, b: Block, inst: int, episode_factor: float) -> Block:
        f = self.bg.size_factor[inst] * episode_factor
        q = b["qty"] * f
        if self.bg.round_lots[inst]:
            lot = b["qty"] % 100 == 0
            q = np.where(lot, np.maximum(100, np.rint(q / 100) * 100), q)
        return dict(b, qty=np.maximum(1, np.rint(q)).astype(np.int64))

    def _spread(self, b: Block, account: int, k: int, colluding: bool) -> tuple[Block, list[int]]:
        """Orders of the manipulator spread over k accounts: its firm's, or a colluding firm's."""
        uni, rng = self.bg.uni, self.rng
        others = []
        for _ in range(k - 1):
            if colluding:
                pick = np.flatnonzero(uni.part_firm != uni.part_firm[account])
                others.append(int(pick[rng.integers(len(pick))]) if len(pick) else account)
            else:
                others.append(int(other_account(uni, rng, np.array([account]))[0]))
        accounts = sorted({account, *others})
        mine = (b["label"] == 1) & (b["part"] == account)
        oids = np.unique(b["oid"][mine])
        chosen = np.array(accounts)[rng.integers(len(accounts), size=len(oids))]
        part = b["part"].copy()
        part[mine] = chosen[np.searchsorted(oids, b["oid"][mine])]
        return dict(b, part=part.astype(np.int32)), sorted({int(x) for x in part[mine]})


def _schedule(bg: Background, cfg: InjectConfig) -> list[_Episode]:
    n_bg = len(bg.ts)
    target = int(round(cfg.rate * n_bg / (1 - cfg.rate)))  # anomalous rows / all rows = rate
    cap = max(20, target // len(INJECTORS))
    sched = _Scheduler(bg, cfg)
    total, failures, seen = 0, 0, set()
    while target - total >= MIN_BUDGET or len(seen) < len(cfg.scenarios):
        for name in sched.rng.permutation(list(cfg.scenarios)):
            if target - total < MIN_BUDGET and name in seen:
                continue
            ep = sched.draw(str(name), max(MIN_BUDGET, min(cap, target - total)))
            if ep is None:
                failures += 1
                if failures > 4 * len(INJECTORS):
                    raise InjectError(f"cannot place {name} episodes in this background; lower --rate or "
                                      "leave the scenario out with --scenarios")
                continue
            failures = 0
            seen.add(str(name))
            total += ep.n
    return sched.episodes


def _priced(bg: Background, b: Block) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """price, bid, ask of time-ordered injected rows, against the background's NBBO as of each row."""
    bid, ask = np.empty(len(b["ts"])), np.empty(len(b["ts"]))
    for k in np.unique(b["inst"]):
        mine = b["inst"] == k
        rows = bg.inst_rows[k]
        at = np.maximum(np.searchsorted(bg.ts[rows], b["ts"][mine], side="right") - 1, 0)
        bid[mine], ask[mine] = bg.bid[rows[at]], bg.ask[rows[at]]
    tick = bg.tick[b["inst"]]
    price = resolve_prices(b, np.rint(bid / tick), np.rint(ask / tick), tick)
    new_rows = np.flatnonzero(b["ev"] == NEW)
    new_of = dict(zip(b["oid"][new_rows].tolist(), new_rows.tolist(), strict=True))
    copy = np.flatnonzero(b["pk"] == PK_COPY)  # cancels repeat their order's limit
    price[copy] = price[[new_of[o] for o in b["oid"][copy].tolist()]]
    return price, bid, ask


def _table(bg: Background, b: Block) -> pa.Table:
    """Time-ordered injected rows in LABELED_SCHEMA; order ids continue the background's."""
    price, bid, ask = _priced(bg, b)
    is_new = b["ev"] == NEW
    number = np.zeros(int(b["oid"].max()) + 1, dtype=np.int64)
    number[b["oid"][is_new]] = bg.oid_max + np.arange(1, int(is_new.sum()) + 1)
    names = bg.uni.part_names
    contra = np.where(b["contra"] >= 0, names[np.maximum(b["contra"], 0)], None)
    cols = {
        "ts": b["ts"], "instrument": bg.symbols[b["inst"]], "venue": bg.venues[b["venue"]],
        "event": np.array(EVENT_KINDS)[b["ev"]], "order_id": [f"{bg.oid_prefix}{n}" for n in number[b["oid"]]],
        "participant": names[b["part"]], "side": np.array(SIDES)[b["side"]], "price": price, "qty": b["qty"],
        "contra": contra, "bid": bid, "ask": ask, "hidden": b["hidden"], "label": b["label"],
        "scenario": np.array(SCENARIOS)[b["scen"]],
    }
    return pa.table({f.name: pa.array(cols[f.name], f.type) for f in LABELED_SCHEMA}, schema=LABELED_SCHEMA)


def _regimes(bg: Background) -> pa.Table:
    """calm | volatile | high_volume spells per instrument, from the background's own activity
    in 10-minute windows of each session (volatile: mid range over 2x the instrument's
    median window; high_volume: events over 2x its median). Spells tile every session."""
    out: dict[str, list] = {k: [] for k in REGIME_SCHEMA.names}
    mid = (bg.bid + bg.ask) / 2
    for k, sym in enumerate(bg.symbols):
        rows = bg.inst_rows[k]
        for s in range(len(bg.open_ns)):
            o, c = int(bg.open_ns[s]), int(bg.close_ns[s])
            n_w = max(1, -(-(c - o) // REGIME_WINDOW_NS))
            r = rows[bg.session[rows] == s]
            w = (bg.ts[r] - o) // REGIME_WINDOW_NS
            count = np.bincount(w, minlength=n_w)
            by_window = pd.Series(mid[r]).groupby(w)
            hi, lo = (x.reindex(range(n_w)).to_numpy() for x in (by_window.max(), by_window.min()))
            swing = np.nan_to_num(np.log(hi / lo))
            busy = count > 0
            med_n = np.median(count[busy]) if busy.any() else 0
            med_r = np.median(swing[busy]) if busy.any() else 0
            reg = np.where(swing > 2 * med_r + 1e-12, "volatile", np.where(count > 2 * med_n, "high_volume", "calm"))
            change = np.flatnonzero(np.append(True, reg[1:] != reg[:-1]))
            ends = np.append(o + change[1:] * REGIME_WINDOW_NS, c)
            for i, end in zip(change, ends, strict=True):
                for key, v in (("instrument", str(sym)), ("start_ts", o + int(i) * REGIME_WINDOW_NS),
                               ("end_ts", int(end)), ("regime", str(reg[i]))):
                    out[key].append(v)
    return pa.table(out, schema=REGIME_SCHEMA)


@dataclass(frozen=True)
class Span:
    """What the invariants read from a config (see invariants.py): rows and sessions."""

    n_events: int
    opens: tuple[int, ...]
    closes: tuple[int, ...]

    @property
    def open_ns(self) -> int:
        return self.opens[0]

    @property
    def close_ns(self) -> int:
        return self.closes[-1]

    def session_bounds(self) -> list[tuple[int, int]]:
        """[open_ns, close_ns) of every session, in time order."""
        return list(zip(self.opens, self.closes, strict=True))


def inject(background: pa.Table, cfg: InjectConfig) -> SimResult:
    """Labeled events (background + injected rows, sorted by ts), episodes and regimes.

    >>> from darkpool.market.config import PRESETS
    >>> from darkpool.market.simulate import simulate
    >>> market = simulate(PRESETS["tiny"].replace(n_events=5_000)).events
    >>> history = market.filter(pc.equal(market.column("label"), 0)).select(EVENT_SCHEMA.names)
    >>> out = inject(history, InjectConfig(rate=0.05, scenarios=("wash_trade", "pinging"), seed=1))
    >>> sorted(set(out.episodes.column("scenario").to_pylist()))
    ['pinging', 'wash_trade']
    """
    bg = analyse(background)
    episodes = _schedule(bg, cfg)
    rows = concat([e.rows for e in episodes])
    rows = take(rows, time_order(rows["ts"]))
    injected = _table(bg, rows)
    base = bg.table.append_column(LABELED_SCHEMA.field("label"), pa.array(np.zeros(len(bg.ts), np.int8)))
    base = base.append_column(LABELED_SCHEMA.field("scenario"), pa.array(["normal"] * len(bg.ts), pa.string()))
    both = pa.concat_tables([base.cast(LABELED_SCHEMA), injected])
    events = both.take(np.argsort(_np(both, "ts"), kind="stable"))  # ties: background row first
    names = bg.uni.part_names
    ep_rows = {
        "episode_id": list(range(len(episodes))), "scenario": [e.name for e in episodes],
        "instrument": [str(bg.symbols[e.inst]) for e in episodes],
        "participants": [[str(names[a]) for a in e.accounts] for e in episodes],
        "start_ts": [e.start for e in episodes], "end_ts": [e.end for e in episodes],
        "n_events": [e.n for e in episodes], "intensity": [e.intensity for e in episodes],
    }
    span = Span(events.num_rows, tuple(int(x) for x in bg.open_ns), tuple(int(x) for x in bg.close_ns))
    return SimResult(events, pa.Table.from_pydict(ep_rows, schema=EPISODE_SCHEMA), _regimes(bg), span)

