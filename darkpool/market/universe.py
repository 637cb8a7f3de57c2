"""Instruments, participants (firms and accounts) and market regimes.

Two characters (SimConfig.character): `classic` puts the instruments in three liquidity
tiers that share one participant pool and one (dark, midpoint) flow style, and sizes
the data by its row count. `varied` draws every instrument's own character from wide
ranges (domain randomization): its mean event rate in events/s, dark midpoint or lit
cancel-heavy flow, opening price, quoted spread, volatility, regime mix and the accounts
that trade it, so a model trained on it meets many kinds of "normal".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from darkpool.market.config import NS, ZIPF_EXPONENT, SimConfig

# Participant types. Shares are of *new orders*; the rest of their behaviour is in flow.py.
TYPES = ("MM", "HFT", "ALGO", "INST")  # market maker, fast trader, broker algo, institution
ORDER_TYPE_SHARE = np.array([0.30, 0.30, 0.30, 0.10])  # share of (immigrant) orders by type
FIRMS_PER_TYPE = (8, 10, 22, 40)

REGIMES = ("calm", "volatile", "high_volume")
REGIME_P = np.array([0.6, 0.2, 0.2])
REGIME_MEAN_S = 40 * 60  # mean regime spell
REGIME_VOL = np.array([1.0, 2.5, 1.3])  # volatility multiplier
REGIME_ACTIVITY = np.array([1.0, 1.5, 2.5])  # order-arrival multiplier
REGIME_SPREAD = np.array([0, 1, 0])  # extra ticks of spread

TIER_ACTIVITY = np.array([3.0, 1.0, 0.3])  # liquid, mid, thin names
TIER_SPREAD = np.array([1, 2, 4])  # base spread in ticks
TIER_DAILY_VOL = np.array([0.012, 0.018, 0.028])

# Varied character: ranges not set by SimConfig.
VARIED_DAILY_VOL = (0.008, 0.05)
VARIED_REGIME_MEAN_S = (600.0, 7_200.0)
VARIED_REGIME_CONCENTRATION = 8.0  # Dirichlet around REGIME_P: lower = more varied regime mixes
MAX_SPREAD_OF_PRICE = 0.01  # default widest spread: 1% of the price
CLASSIC_ACCOUNTS = 160  # about what FIRMS_PER_TYPE gives (1-4 accounts per firm)


@dataclass(frozen=True)
class Universe:
    symbols: np.ndarray  # str, per instrument
    tier: np.ndarray  # int, 0 liquid .. 2 thin
    price0: np.ndarray  # opening mid price
    beta: np.ndarray  # loading on the common market factor
    part_names: np.ndarray  # str "F123.A2": firm F123, account 2
    part_firm: np.ndarray  # firm index per participant
    part_type: np.ndarray  # index into TYPES per participant
    part_weight: np.ndarray  # relative activity of each participant within its type
    type_members: tuple[np.ndarray, ...]  # participant indices of each type
    type_cdf: tuple[np.ndarray, ...]  # cumulative activity weights within each type
    firm_first: np.ndarray  # first participant index of each firm (accounts are contiguous)
    firm_size: np.ndarray  # number of accounts of each firm
    order_cdf: np.ndarray  # who sends an order: ORDER_TYPE_SHARE mix (see mix_cdf)
    contra_cdf: np.ndarray  # who is on the other side of a fill: CONTRA_TYPE_SHARE mix
    # Per-instrument character (classic: from the tier; varied: drawn by `_varied_character`).
    activity: np.ndarray  # classic: relative order-arrival weight; varied: mean normal events/s
    lit: np.ndarray  # bool: lit-style flow (cancel-heavy, at the touch), else dark midpoint flow
    spread_ticks: np.ndarray  # int: base quoted spread
    daily_vol: np.ndarray  # daily volatility of the mid
    regime_mean_s: np.ndarray  # mean regime spell
    regime_p: np.ndarray  # (n_inst, 3) long-run share of each regime
    episode_weight: np.ndarray  # relative chance that an episode lands on the instrument
    population: np.ndarray  # accounts that trade the instrument (classic: all of them)
    absolute_rates: bool = False  # `activity` is in events/s (varied), not a relative weight
    # Stacked per-instrument draws (None: every account trades every instrument): the
    # members of instrument i are pop_members[pop_first[i]:pop_last[i] + 1], and the
    # cdfs are (i + cdf within i) / n_inst, so one inverse-CDF call draws for all rows.
    pop_members: np.ndarray | None = None
    pop_first: np.ndarray | None = None
    pop_last: np.ndarray | None = None
    pop_order_cdf: np.ndarray | None = None
    pop_contra_cdf: np.ndarray | None = None

    @property
    def n_inst(self) -> int:
        return len(self.symbols)


def _symbols(rng: np.random.Generator, n: int) -> np.ndarray:
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        s = "".join(rng.choice(letters, size=int(rng.integers(3, 5))))
        if s not in seen:
            seen.add(s)
            out.append(s)
    return np.array(out)


def spaced(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    """n values spread log-uniformly over [lo, hi], in random order: one per stratum
    (evenly spaced with a jitter of a quarter step), so even a few instruments span the
    range; a single value is plain log-uniform.

    >>> v = spaced(np.random.default_rng(0), 12, 0.05, 100.0)
    >>> bool(v.min() < 0.1 and v.max() > 50 and len(v) == 12)
    True
    """
    return np.exp(np.log(lo) + _strata(rng, n) * (np.log(hi) - np.log(lo)))


def _strata(rng: np.random.Generator, n: int) -> np.ndarray:
    """n positions in [0, 1], one per stratum, in random order (see `spaced`)."""
    q = rng.random(n) if n == 1 else np.clip((np.arange(n) + rng.uniform(-0.25, 0.25, n)) / (n - 1), 0, 1)
    return rng.permutation(q)


def _firms(cfg: SimConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Firm type, firm number and number of accounts of each firm. Varied: enough firms
    for the largest population asked for."""
    per_type = np.array(FIRMS_PER_TYPE)
    if cfg.character == "varied":
        per_type = np.ceil(per_type * max(1.0, cfg.population_range[1] / CLASSIC_ACCOUNTS)).astype(int)
    firm_type = np.repeat(np.arange(len(TYPES)), per_type)
    n_firms = len(firm_type)
    # Firm numbers are shuffled so a participant id says nothing about the firm's type.
    firm_no = rng.permutation(np.arange(100, 100 + n_firms * 5, 5))[:n_firms]
    accounts = 1 + np.minimum(rng.poisson(1.0, size=n_firms), 3)
    return firm_type, firm_no, accounts


def make_universe(cfg: SimConfig, rng: np.random.Generator) -> Universe:
    n = cfg.n_instruments
    tier = np.sort(rng.choice(3, size=n, p=[0.3, 0.4, 0.3]))
    price0 = np.clip(np.exp(rng.normal(np.log(60), 0.8, size=n)), 5, 800)
    beta = rng.uniform(0.5, 1.5, size=n)

    firm_type, firm_no, accounts = _firms(cfg, rng)
    part_firm = np.repeat(np.arange(len(firm_type)), accounts)
    acct = np.arange(len(part_firm)) - np.repeat(np.cumsum(accounts) - accounts, accounts) + 1
    names = np.array([f"F{firm_no[f]}.A{a}" for f, a in zip(part_firm, acct, strict=True)])
    weight = rng.pareto(1.5, size=len(part_firm)) + 0.2  # a few very active accounts
    ptype = firm_type[part_firm]
    members = tuple(np.flatnonzero(ptype == t) for t in range(len(TYPES)))
    cdf = tuple(np.cumsum(weight[m]) / weight[m].sum() for m in members)
    uni = Universe(
        symbols=_symbols(rng, n),
        tier=tier,
        price0=price0,
        beta=beta,
        part_names=names,
        part_firm=part_firm,
        part_type=ptype,
        part_weight=weight,
        type_members=members,
        type_cdf=cdf,
        firm_first=np.cumsum(accounts) - accounts,
        firm_size=accounts,
        order_cdf=np.empty(0),
        contra_cdf=np.empty(0),
        activity=TIER_ACTIVITY[tier],
        lit=np.zeros(n, dtype=bool),
        spread_ticks=TIER_SPREAD[tier],
        daily_vol=TIER_DAILY_VOL[tier],
        regime_mean_s=np.full(n, float(REGIME_MEAN_S)),
        regime_p=np.tile(REGIME_P, (n, 1)),
        episode_weight=TIER_ACTIVITY[tier] ** 0.75,  # thin names: somewhat more than their share of volume
        population=np.full(n, len(names)),
    )
    uni = dataclasses.replace(uni, order_cdf=mix_cdf(uni, ORDER_TYPE_SHARE), contra_cdf=mix_cdf(uni, CONTRA_TYPE_SHARE))
    if cfg.activity == "zipf":  # ranks drawn at random: the busiest names are anywhere in the list
        weight = 1.0 / (1.0 + rng.permutation(n)) ** ZIPF_EXPONENT
        weight = weight / weight.mean()
        uni = dataclasses.replace(uni, activity=weight, episode_weight=weight**0.75)
    return _varied_character(cfg, rng, uni) if cfg.character == "varied" else uni


def _varied_character(cfg: SimConfig, rng: np.random.Generator, uni: Universe) -> Universe:
    """Every instrument's own character, drawn from the config's ranges (see the module doc)."""
    n = uni.n_inst
    rate = spaced(rng, n, *cfg.rate_range) * cfg.rate_scale
    price0 = spaced(rng, n, *cfg.price_range)
    if cfg.flow == "mixed":  # half of each (a coin decides the odd one)
        lit = rng.permutation(n) < n // 2 + (n % 2 and rng.random() < 0.5)
    else:
        lit = np.full(n, cfg.flow == "lit")
    if cfg.spread_bps is None:  # 1 tick .. 1% of the price
        widest = np.maximum(1.0, MAX_SPREAD_OF_PRICE * price0 / cfg.tick)
        spread = np.exp(_strata(rng, n) * np.log(widest))
    else:
        spread = spaced(rng, n, *cfg.spread_bps) * 1e-4 * price0 / cfg.tick
    population = np.minimum(np.rint(spaced(rng, n, *cfg.population_range)).astype(np.int64), len(uni.part_names))
    uni = dataclasses.replace(
        uni,
        tier=np.where(rate >= 10, 0, np.where(rate >= 1, 1, 2)),
        price0=price0,
        activity=rate,
        lit=lit,
        spread_ticks=np.maximum(1, np.rint(spread)).astype(np.int64),
        daily_vol=spaced(rng, n, *VARIED_DAILY_VOL),
        regime_mean_s=spaced(rng, n, *VARIED_REGIME_MEAN_S),
        regime_p=rng.dirichlet(VARIED_REGIME_CONCENTRATION * REGIME_P, size=n),
        # Episodes on every kind of instrument, busy ones more often (not in proportion).
        episode_weight=rate**0.75,
        population=population,
        absolute_rates=True,
    )
    return _populations(rng, uni)


def _populations(rng: np.random.Generator, uni: Universe) -> Universe:
    """Who trades what: accounts ranked by reach (broad, busy accounts first, with noise);
    instrument i is traded by the `population[i]` accounts of widest reach, so a thin name
    sees a few tens of regulars and a busy one thousands."""
    reach = np.argsort(np.argsort(-uni.part_weight * rng.lognormal(0.0, 1.0, len(uni.part_names))))
    members, order_cdf, contra_cdf = [], [], []
    for i, size in enumerate(uni.population):
        m = np.flatnonzero(reach < size)
        members.append(m)
        for out, share in ((order_cdf, ORDER_TYPE_SHARE), (contra_cdf, CONTRA_TYPE_SHARE)):
            w = np.zeros(len(m))
            for t in range(len(TYPES)):
                of_type = uni.part_type[m] == t
                if of_type.any():
                    w[of_type] = share[t] * uni.part_weight[m[of_type]] / uni.part_weight[m[of_type]].sum()
            c = np.cumsum(w) / w.sum()
            c[-1] = 1.0
            out.append((i + c) / uni.n_inst)
    last = np.cumsum([len(m) for m in members]) - 1
    return dataclasses.replace(
        uni, pop_members=np.concatenate(members).astype(np.int32), pop_first=last - uni.population + 1,
        pop_last=last, pop_order_cdf=np.concatenate(order_cdf), pop_contra_cdf=np.concatenate(contra_cdf),
    )


def mix_cdf(uni: Universe, type_share: np.ndarray) -> np.ndarray:
    """CDF over all participants: type drawn by `type_share`, then a member by activity."""
    w = np.zeros(len(uni.part_names))
    for t, members in enumerate(uni.type_members):
        w[members] = type_share[t] * uni.part_weight[members] / uni.part_weight[members].sum()
    return np.cumsum(w) / w.sum()


GUIDE_BUCKETS = 8192


def inverse_cdf(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """min(searchsorted(cdf, u), len(cdf) - 1), exactly, for u in [0, 1): a guide table
    (the answer at the bottom of u's bucket, a hair low to be safe from rounding) plus a
    pass or two of "step while cdf < u", instead of a binary search per draw (~3x faster).
    Long cdfs (stacked per-instrument populations) get more buckets, so the passes stay few."""
    buckets = max(GUIDE_BUCKETS, 1 << (2 * len(cdf)).bit_length())
    guide = np.searchsorted(cdf, np.arange(buckets) / buckets * (1 - 1e-9))
    idx = guide[np.minimum((u * buckets).astype(np.int64), buckets - 1)]
    stop = np.append(cdf, np.inf)
    while True:
        step = stop[idx] < u
        if not step.any():
            return np.minimum(idx, len(cdf) - 1)
        idx += step


def draw(rng: np.random.Generator, cdf: np.ndarray, n: int) -> np.ndarray:
    """n participant indices from a `mix_cdf` (one inverse-CDF lookup, no per-type loop)."""
    return inverse_cdf(cdf, rng.random(n)).astype(np.int32)


def draw_senders(uni: Universe, rng: np.random.Generator, inst: np.ndarray, contra: bool = False) -> np.ndarray:
    """Who sends each order (or, `contra`, meets each fill) on instruments `inst`: from the
    instrument's own population where the universe has them, else from everyone."""
    if uni.pop_members is None:
        return draw(rng, uni.contra_cdf if contra else uni.order_cdf, len(inst))
    cdf = uni.pop_contra_cdf if contra else uni.pop_order_cdf
    idx = inverse_cdf(cdf, (inst + rng.random(len(inst))) / uni.n_inst)
    return uni.pop_members[np.clip(idx, uni.pop_first[inst], uni.pop_last[inst])]


def make_regimes(cfg: SimConfig, rng: np.random.Generator, n_cells: int, uni: Universe) -> np.ndarray:
    """Regime index per (instrument, grid cell): spells of random length, Markov switching."""
    cell_s = cfg.grid_ms / 1000
    regime = np.empty((uni.n_inst, n_cells), dtype=np.int8)
    for i in range(uni.n_inst):
        pos = 0
        share = uni.regime_p[i]
        current = rng.choice(3, p=share)
        while pos < n_cells:
            spell = max(1, int(rng.exponential(uni.regime_mean_s[i]) / cell_s))
            regime[i, pos : pos + spell] = current
            pos += spell
            others = [r for r in range(3) if r != current]
            p = share[others] / share[others].sum()
            current = rng.choice(others, p=p)
    return regime


def regime_spells(cfg: SimConfig, regime: np.ndarray, symbols: np.ndarray) -> dict[str, list]:
    """Regime matrix -> rows (instrument, start_ts, end_ts, regime) of regimes.parquet."""
    cell_ns = cfg.grid_ms * NS // 1000
    rows: dict[str, list] = {"instrument": [], "start_ts": [], "end_ts": [], "regime": []}
    for i, sym in enumerate(symbols):
        r = regime[i]
        change = np.flatnonzero(np.diff(r)) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [len(r)]])
        rows["instrument"] += [str(sym)] * len(starts)
        rows["start_ts"] += list(cfg.open_ns + starts * cell_ns)
        rows["end_ts"] += list(cfg.open_ns + ends * cell_ns)
        rows["regime"] += [REGIMES[k] for k in r[starts]]
    return rows


# Contra side of fills. Crosses between two accounts of one firm (a broker crossing two
# client accounts, two desks of one fund) happen in normal flow too, and now and then an
# account meets itself (two uncoordinated algos with self-match prevention off), so a
# same-firm contra alone does not mean a wash trade.
CONTRA_TYPE_SHARE = np.array([0.35, 0.2, 0.25, 0.2])
P_SAME_FIRM_CONTRA = 0.03
P_SAME_ACCOUNT_CONTRA = 0.002


def other_account(uni: Universe, rng: np.random.Generator, part: np.ndarray) -> np.ndarray:
    """Another account of the same firm (the account itself for single-account firms)."""
    first, counts = uni.firm_first, uni.firm_size
    f = uni.part_firm[part]
    k = counts[f]
    own = part - first[f]
    shift = 1 + rng.integers(0, np.maximum(k - 1, 1))
    return np.where(k > 1, first[f] + (own + shift) % k, part).astype(np.int32)


def pick_contra(uni: Universe, rng: np.random.Generator, part: np.ndarray,
                inst: np.ndarray | None = None) -> np.ndarray:
    """Contra of each fill by `part` (on instruments `inst`: from their populations)."""
    n = len(part)
    contra = draw(rng, uni.contra_cdf, n) if inst is None else draw_senders(uni, rng, inst, contra=True)
    collide = contra == part
    contra[collide] = (contra[collide] + 1) % len(uni.part_names)
    u = rng.random(n)
    same_firm = u < P_SAME_FIRM_CONTRA
    if same_firm.any():
        contra[same_firm] = other_account(uni, rng, part[same_firm])
    contra[u > 1 - P_SAME_ACCOUNT_CONTRA] = part[u > 1 - P_SAME_ACCOUNT_CONTRA]
    return contra
