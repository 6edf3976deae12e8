"""Deterministic generator of a ratings data set shaped like MovieLens, in the raw data contract.

A second shape beside the session logs of `events`, so recommendation quality is measured on
both: users sign up over the period (with burst days), rate most of what they will ever rate in
their first days and then return occasionally or never; each user rates an item at most once;
items are released over time and their popularity peaks soon after release and decays on top of
a long-tailed base, so "popular recent items" is a strong baseline. Users' taste over genres and
latent item factors give item-item structure that neighbours, factor models and genre affinity
can learn. Every rating is one `click` event whose `value` is the rating 1..5. Generation is pure
and vectorised; `events.write_data_dir` does the I/O.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from recflow.samples.events import SCHEMAS, SEGMENTS, TS, US_PER_DAY, US_PER_S, SampleData

log = logging.getLogger(__name__)

GENRES = (
    "action",
    "adventure",
    "animation",
    "children",
    "comedy",
    "crime",
    "documentary",
    "drama",
    "fantasy",
    "film-noir",
    "horror",
    "musical",
    "mystery",
    "romance",
    "sci-fi",
    "thriller",
    "war",
    "western",
)
RATING_SHARES = (0.06, 0.11, 0.26, 0.35, 0.22)  # share of ratings 1..5, as on MovieLens
EVENT_TYPE = "click"  # a positive event type in the default dbt config
BURST_DAYS = 3  # a user's first days, when most of their rating happens
N_RELATED = 6  # ground-truth neighbours kept per item
_CHUNK_CELLS = 4_000_000  # user x item weights drawn at once (bounds memory)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class RatingsSpec:
    """Size, period and behaviour knobs of one ratings data set; same spec, same data."""

    n_users: int
    n_items: int
    n_days: int
    start_at: datetime = datetime(2026, 1, 5, tzinfo=UTC)
    seed: int = 42
    signup_burst_day_share: float = 0.06  # days with a sign-up burst (press, campaigns)
    signup_burst_lift: float = 5.0  # sign-up rate on a burst day, relative to a normal day
    burst_ratings_median: float = 30.0  # ratings in a user's first days (log-normal)
    burst_ratings_sigma: float = 0.9
    min_burst_ratings: int = 5
    burst_day_shares: tuple[float, ...] = (0.75, 0.17, 0.08)  # over the first BURST_DAYS days
    return_p: float = 0.6  # share of users who ever come back after their first days
    return_sessions_mean: float = 6.0  # visits of a returning user (geometric)
    return_gap_days_mean: float = 14.0  # days between visits (geometric)
    return_session_share: float = 0.2  # ratings per later visit, as a share of the burst
    max_rated_share: float = 0.5  # of the catalogue, so every user keeps unseen items to rank
    back_catalogue_share: float = 0.6  # items released before the period starts
    back_catalogue_days: int = 3 * 365
    zipf_exponent: float = 0.9
    release_boost: float = 12.0  # popularity multiplier at the peak after release, minus 1
    release_ramp_days: float = 3.0  # days from release to the peak
    half_life_days: float = 21.0  # decay of the release boost after the peak
    taste_alpha: float = 0.3  # Dirichlet concentration of user taste over genres
    n_factors: int = 8
    factor_strength: float = 5.0  # weight of the latent user-item match in the choice

    def __post_init__(self) -> None:
        if min(self.n_users, self.n_items, self.n_days, self.n_factors) < 1:
            raise ValueError("counts, days and n_factors must be >= 1")
        if self.n_items < 2 * len(GENRES):
            raise ValueError(f"need at least {2 * len(GENRES)} items (two per genre)")
        if self.start_at.utcoffset() is None:
            raise ValueError("start_at must be timezone-aware")
        shares = ("signup_burst_day_share", "return_p", "back_catalogue_share", "max_rated_share")
        if not all(0.0 <= getattr(self, s) <= 1.0 for s in shares):
            raise ValueError(f"{shares} must lie in [0, 1]")
        if len(self.burst_day_shares) != BURST_DAYS or abs(sum(self.burst_day_shares) - 1) > 1e-9:
            raise ValueError(f"burst_day_shares must be {BURST_DAYS} shares summing to 1")
        if min(self.return_sessions_mean, self.return_gap_days_mean, self.half_life_days) < 1:
            raise ValueError("return and half-life means must be >= 1")

    @property
    def end_at(self) -> datetime:
        """Exclusive end of the simulated period."""
        return self.start_at + timedelta(days=self.n_days)


SCALES: dict[str, RatingsSpec] = {
    "tiny": RatingsSpec(n_users=400, n_items=300, n_days=120, burst_ratings_median=20.0),
    "demo": RatingsSpec(n_users=6_000, n_items=3_000, n_days=180),
}
DEFAULT_SCALE = "demo"


@dataclass(frozen=True)
class _Catalogue:
    genre: np.ndarray  # item -> genre index
    release_day: np.ndarray  # item -> day of created_at relative to the start (may be < 0)
    created: np.ndarray  # item -> created_at (us)
    factors: np.ndarray  # (n_items, n_factors) unit vectors
    quality: np.ndarray  # item rating bias
    popularity: np.ndarray  # (n_days, n_items) choice weight, 0 until the day after release


def _make_catalogue(spec: RatingsSpec, rng: np.random.Generator, start: int) -> _Catalogue:
    n, n_g = spec.n_items, len(GENRES)
    genre = rng.choice(n_g, n, p=rng.dirichlet(np.full(n_g, 3.0)))
    genre[rng.permutation(n)[: 2 * n_g]] = np.repeat(np.arange(n_g), 2)  # every genre twice
    is_new = rng.random(n) >= spec.back_catalogue_share
    is_new[0] = False  # something to rate on the first day
    # New titles come out on Fridays, as films do.
    fridays = np.arange(spec.n_days)[(np.arange(spec.n_days) + spec.start_at.weekday()) % 7 == 4]
    new_day = rng.choice(fridays if fridays.size else np.arange(spec.n_days), n)
    release_day = np.where(is_new, new_day, -rng.integers(1, spec.back_catalogue_days + 1, n))
    created = start + release_day * US_PER_DAY + rng.integers(0, 12 * 3600, n) * US_PER_S
    base = (rng.permutation(n) + 1.0) ** -spec.zipf_exponent
    factors = _unit(rng.normal(size=(n, spec.n_factors))).astype(np.float32)
    log_base = np.log(base)
    # Popular titles are rated a little higher on average.
    quality = 0.4 * (log_base - log_base.mean()) / log_base.std() + rng.normal(0.0, 0.4, n)
    # Day d sees items released before day d; the release boost ramps up, peaks, then halves
    # every half-life.
    age = np.arange(spec.n_days)[:, None] - release_day[None, :]
    ramp = np.minimum(age / spec.release_ramp_days, 1.0)
    decay = 0.5 ** (np.maximum(age - spec.release_ramp_days, 0) / spec.half_life_days)
    boost = 1.0 + spec.release_boost * ramp * decay
    popularity = np.where(age >= 1, base * boost, 0.0).astype(np.float32)
    return _Catalogue(genre, release_day, created, factors, quality, popularity)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _signup_days(spec: RatingsSpec, rng: np.random.Generator) -> np.ndarray:
    """Sign-up day per user: steady with a weekend lift, plus a few burst days."""
    days = np.arange(spec.n_days)
    rate = np.where((days + spec.start_at.weekday()) % 7 >= 5, 1.3, 1.0)
    rate[rng.random(spec.n_days) < spec.signup_burst_day_share] *= spec.signup_burst_lift
    return rng.choice(spec.n_days, spec.n_users, p=rate / rate.sum())


@dataclass(frozen=True)
class _Visits:
    """Planned visits, by user then ordinal; a first-days burst is one draw over BURST_DAYS days."""

    user: np.ndarray
    day: np.ndarray  # day of the draw (the sign-up day for a burst)
    n: np.ndarray  # ratings wanted
    ordinal: np.ndarray  # 0 for the burst, k for the k-th later visit


def _plan_visits(
    spec: RatingsSpec, rng: np.random.Generator, signup_day: np.ndarray, activity: np.ndarray
) -> _Visits:
    """A burst per user on the sign-up day; returning users come back after geometric gaps."""
    n_u = spec.n_users
    burst = np.maximum(
        np.round(
            activity
            * rng.lognormal(np.log(spec.burst_ratings_median), spec.burst_ratings_sigma, n_u)
        ),
        spec.min_burst_ratings,
    ).astype(np.int64)
    returns = np.where(
        rng.random(n_u) < spec.return_p, rng.geometric(1.0 / spec.return_sessions_mean, n_u), 0
    )
    r_user = np.repeat(np.arange(n_u), returns)
    first = np.cumsum(returns) - returns
    gap = rng.geometric(1.0 / spec.return_gap_days_mean, r_user.size)
    ordinal = np.arange(r_user.size) - first[r_user] + 1
    since = np.cumsum(gap)
    since -= (since - gap)[first[r_user]]  # days since the last burst day, per user
    r_day = signup_day[r_user] + BURST_DAYS - 1 + since
    r_n = 1 + rng.poisson(spec.return_session_share * burst[r_user])
    inside = r_day < spec.n_days
    user = np.concatenate([np.arange(n_u), r_user[inside]])
    ordinal = np.concatenate([np.zeros(n_u, np.int64), ordinal[inside]])
    by_user = np.lexsort((ordinal, user))
    return _Visits(
        user=user[by_user],
        day=np.concatenate([signup_day, r_day[inside]])[by_user],
        n=np.concatenate([burst, r_n[inside]])[by_user],
        ordinal=ordinal[by_user],
    )


def _draw_items(
    spec: RatingsSpec,
    rng: np.random.Generator,
    cat: _Catalogue,
    visits: _Visits,
    taste: np.ndarray,
    user_factors: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items rated in each visit (visit index, item, draw rank), never twice by one user.

    Users go in chunks and a chunk's visits in order of their ordinal, so earlier visits exclude
    their items from later ones. Within a visit, the top n of weight / Exp(1) keys is a draw
    without replacement proportional to the weights, and the key order is the draw order.
    """
    n_i = spec.n_items
    rows = max(1, _CHUNK_CELLS // n_i)
    bounds = np.searchsorted(visits.user, np.arange(0, spec.n_users + rows, rows))
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for lo in range(0, spec.n_users, rows):
        users = np.arange(lo, min(lo + rows, spec.n_users))
        match = np.exp(spec.factor_strength * (user_factors[users] @ cat.factors.T))
        static = taste[users][:, cat.genre] * match
        rated = np.zeros(static.shape, bool)
        room = np.full(users.size, int(spec.max_rated_share * n_i))
        chunk = np.arange(bounds[lo // rows], bounds[lo // rows + 1])
        for k in range(int(visits.ordinal[chunk].max(initial=-1)) + 1):
            v = chunk[visits.ordinal[chunk] == k]
            r = visits.user[v] - lo
            w = static[r] * cat.popularity[visits.day[v]]
            w[rated[r]] = 0.0
            n = np.minimum(np.minimum(visits.n[v], room[r]), np.count_nonzero(w, axis=1))
            room[r] -= n
            top = int(n.max(initial=0))
            if top == 0:
                continue
            key = rng.standard_exponential(w.shape, dtype=np.float32)
            np.divide(w, np.maximum(key, np.float32(1e-30), out=key), out=key)
            # Each row's n-th largest key, from the `top` largest (np.partition beats argpartition);
            # it is > 0 as n never exceeds the row's items of positive weight.
            best = -np.sort(-np.partition(key, n_i - top, axis=1)[:, n_i - top :], axis=1)
            cut = np.where(n > 0, best[np.arange(v.size), np.maximum(n - 1, 0)], np.inf)
            row, item = np.nonzero(key >= cut[:, None])
            order = np.lexsort((-key[row, item], row))
            row, item = row[order], item[order]
            rank = np.arange(row.size) - np.searchsorted(row, row)
            keep = rank < n[row]  # float ties at the cut could add an extra item
            row, item, rank = row[keep], item[keep], rank[keep]
            rated[r[row], item] = True
            out.append((v[row], item, rank))
    if not out:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    visit, item, rank = (np.concatenate(a) for a in zip(*out, strict=True))
    return visit, item, rank


def _timestamps(
    spec: RatingsSpec,
    rng: np.random.Generator,
    start: int,
    user: np.ndarray,
    day: np.ndarray,
    rank: np.ndarray,
) -> np.ndarray:
    """A session per (user, day): an evening-peaked start, then one rating every few seconds."""
    order = np.lexsort((rank, day, user))
    user_o, day_o = user[order], day[order]
    new = np.ones(order.size, bool)
    new[1:] = (user_o[1:] != user_o[:-1]) | (day_o[1:] != day_o[:-1])
    session = np.cumsum(new) - 1
    n_s = int(new.sum())
    gap = np.clip(rng.lognormal(np.log(25.0), 0.7, order.size), 3.0, 600.0)
    gap = np.round(gap).astype(np.int64) * US_PER_S
    gap[new] = 0
    offset = np.cumsum(gap)
    offset -= offset[new][session]
    duration = np.zeros(n_s, np.int64)
    np.maximum.at(duration, session, offset)
    # Sessions start from 01:00 (so a sign-up just before stays on the same day), peaking at 20:00.
    hour_w = 1.0 + 0.6 * np.cos(2 * np.pi * (np.arange(1, 24) - 20) / 24)
    tod = (1 + rng.choice(23, n_s, p=hour_w / hour_w.sum())) * 3600 + rng.integers(0, 3600, n_s)
    s_start = start + day_o[new] * US_PER_DAY + tod * US_PER_S
    end = start + spec.n_days * US_PER_DAY
    s_start = np.minimum(s_start, end - US_PER_S - duration)  # the last day's sessions end in time
    t = np.empty(order.size, np.int64)
    t[order] = s_start[session] + offset
    return t


def _ratings(
    rng: np.random.Generator,
    user_bias: np.ndarray,
    quality: np.ndarray,
    match: np.ndarray,
) -> np.ndarray:
    """Ratings 1..5 with MovieLens' marginal shares, higher for better user-item matches."""
    score = user_bias + quality + 1.2 * match + rng.normal(0.0, 0.8, match.size)
    if score.size == 0:
        return np.zeros(0)
    cuts = np.quantile(score, np.cumsum(RATING_SHARES)[:-1])
    return (1 + np.searchsorted(cuts, score, side="right")).astype(np.float64)


def _related(cat: _Catalogue) -> np.ndarray:
    """Per item, the N_RELATED items of its genre with the closest latent factors."""
    related = np.empty((cat.genre.size, N_RELATED), np.int64)
    for g in range(len(GENRES)):
        members = np.flatnonzero(cat.genre == g)
        sim = cat.factors[members] @ cat.factors[members].T
        np.fill_diagonal(sim, -np.inf)
        # A genre smaller than N_RELATED + 1 repeats its closest items.
        near = np.argsort(-sim, axis=1, kind="stable")[:, : members.size - 1]
        related[members] = members[near[:, np.arange(N_RELATED) % near.shape[1]]]
    return related


def _ids(prefix: str, n: int) -> pa.Array:
    width = len(str(n))
    return pa.array([f"{prefix}{i:0{width}d}" for i in range(n)], pa.string())


def generate(spec: RatingsSpec) -> SampleData:
    """Generate ratings (as `click` events), items and users for `spec` (pure, no I/O).

    No dirty rows: `dirty_counts` is empty; `related` holds each item's closest same-genre items.
    """
    t0 = time.perf_counter()
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(spec.seed).spawn(6)]
    start = (spec.start_at - _EPOCH) // timedelta(microseconds=1)
    cat = _make_catalogue(spec, rngs[0], start)

    rng = rngs[1]
    n_u = spec.n_users
    segment = rng.choice(len(SEGMENTS), n_u, p=[0.7, 0.2, 0.1])
    activity = np.array([1.0, 1.2, 1.5])[segment]
    taste = rng.dirichlet(np.full(len(GENRES), spec.taste_alpha), n_u).astype(np.float32)
    user_factors = _unit(rng.normal(size=(n_u, spec.n_factors))).astype(np.float32)
    user_bias = rng.normal(0.0, 0.5, n_u)
    signup_day = _signup_days(spec, rng)
    visits = _plan_visits(spec, rngs[2], signup_day, activity)

    visit, item, rank = _draw_items(spec, rngs[3], cat, visits, taste, user_factors)
    user = visits.user[visit]
    # The burst draw is split over the first days in draw order; days past the end are dropped.
    day = visits.day[visit].copy()
    is_burst = visits.ordinal[visit] == 0
    n_burst = visits.n[visit]
    cut = np.cumsum(spec.burst_day_shares)[:-1]
    day[is_burst] += (rank[is_burst, None] >= cut * n_burst[is_burst, None]).sum(axis=1)
    keep = day < spec.n_days
    user, item, day, rank = user[keep], item[keep], day[keep], rank[keep]
    t = _timestamps(spec, rngs[4], start, user, day, rank)
    match = np.einsum("ij,ij->i", user_factors[user], cat.factors[item])
    value = _ratings(rngs[5], user_bias[user], cat.quality[item], match)

    # Users in random blocks, chronological within a user (as the events profile writes them).
    o = np.lexsort((t, rng.permutation(n_u)[user]))
    user, item, t, value = user[o], item[o], t[o], value[o]
    first = np.full(n_u, np.iinfo(np.int64).max)
    np.minimum.at(first, user, t)
    delay = np.clip(rng.lognormal(np.log(180.0), 0.8, n_u), 20.0, 2400.0).astype(np.int64)
    signup = first - delay * US_PER_S

    user_ids, item_ids = _ids("u", n_u), _ids("i", spec.n_items)
    events = pa.table(
        [
            user_ids.take(pa.array(user)),
            item_ids.take(pa.array(item)),
            pa.array(np.full(user.size, EVENT_TYPE, object), pa.string()),
            pa.array(t, TS),
            pa.array(value, pa.float64()),
        ],
        schema=SCHEMAS["events"],
    )
    items = pa.table(
        [item_ids, pa.array(GENRES).take(pa.array(cat.genre)), pa.array(cat.created, TS)],
        schema=SCHEMAS["items"],
    )
    users = pa.table(
        [user_ids, pa.array(signup, TS), pa.array(SEGMENTS).take(pa.array(segment))],
        schema=SCHEMAS["users"],
    )
    log.info(
        "generated %d ratings of %d items by %d users in %.2fs",
        events.num_rows,
        spec.n_items,
        n_u,
        time.perf_counter() - t0,
    )
    return SampleData(
        tables={"events": events, "items": items, "users": users},
        dirty_counts={},
        dirty_rows={},
        related=_related(cat),
    )
