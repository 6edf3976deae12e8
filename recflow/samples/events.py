"""Deterministic generator of realistic recommender interaction logs in the raw data contract.

The data carries learnable structure so a ranking model can beat popularity: users have a
slowly drifting category taste, items have long-tail popularity with per-item trends and
arrival dates, and sessions walk between related items (ring neighbours within a category),
which yields co-visitation signal. A small, counted share of dirty rows exercises quarantine
logic downstream. Generation is pure and vectorised; `write_data_dir` is the only I/O.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

US_PER_S = 1_000_000
US_PER_DAY = 86_400 * US_PER_S
EVENT_TYPES = ("view", "click", "cart", "purchase")
SEGMENTS = ("free", "plus", "pro")
DIRTY_REASONS = (
    "missing_user_id",
    "missing_item_id",
    "missing_event_at",
    "unknown_event_type",
    "future_event_at",
    "duplicate_event",
)
UNKNOWN_EVENT_TYPES = ("wishlist", "share", "impression")
UNPARSEABLE_EVENT_AT = ("not-a-time", "2026-13-45T99:00:00Z", "2026-02-30 25:61:00")
FUTURE_SHIFT_US = 730 * US_PER_DAY  # future rows land >= 2 years after the period end
FUNNEL_MAX_US = (120 + 900 + 1800) * US_PER_S  # upper bound of click+cart+purchase delays
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
SCHEMAS = {
    "events": pa.schema(
        [
            ("user_id", pa.string()),
            ("item_id", pa.string()),
            ("event_type", pa.string()),
            ("event_at", TS),
            ("value", pa.float64()),
        ]
    ),
    "items": pa.schema([("item_id", pa.string()), ("category", pa.string()), ("created_at", TS)]),
    "users": pa.schema([("user_id", pa.string()), ("signup_at", TS), ("segment", pa.string())]),
}


@dataclass(frozen=True)
class SampleSpec:
    """Size, period and behaviour knobs of one synthetic dataset; same spec, same data."""

    n_users: int
    n_items: int
    n_days: int
    n_categories: int = 20
    start_at: datetime = datetime(2026, 1, 5, tzinfo=UTC)
    seed: int = 42
    dirty_share: float = 0.004
    sessions_per_week: float = 1.0  # for a user of average activity
    mean_walk_len: float = 5.0  # views per session (geometric)
    max_walk_len: int = 40
    related_p: float = 0.65  # chance the next view is a ring neighbour of the previous one
    ring_reach: int = 3  # related = ring offsets +-1..+-ring_reach
    taste_alpha: float = 0.3  # Dirichlet concentration of user taste over categories
    zipf_exponent: float = 1.0
    trend_scale: float = 1.0  # sd of the per-item log-popularity change over the period
    new_item_share: float = 0.2
    new_user_share: float = 0.15
    null_category_share: float = 0.01
    click_p: float = 0.25
    top_taste_click_lift: float = 1.6  # click-rate multiplier inside the user's top category
    cart_p: float = 0.3
    purchase_p: float = 0.5

    def __post_init__(self) -> None:
        if min(self.n_users, self.n_items, self.n_days, self.n_categories, self.ring_reach) < 1:
            raise ValueError("counts, days and ring_reach must be >= 1")
        if self.n_items < self.n_categories:
            raise ValueError("need at least one item per category")
        if self.start_at.utcoffset() is None:
            raise ValueError("start_at must be timezone-aware")
        shares = ("dirty_share", "related_p", "new_item_share", "new_user_share")
        shares += ("null_category_share", "click_p", "cart_p", "purchase_p")
        if not all(0.0 <= getattr(self, s) <= 1.0 for s in shares):
            raise ValueError(f"{shares} must lie in [0, 1]")
        if self.mean_walk_len < 1.0 or self.max_walk_len < 1:
            raise ValueError("walk lengths must be >= 1")

    @property
    def end_at(self) -> datetime:
        """Exclusive end of the simulated period."""
        return self.start_at + timedelta(days=self.n_days)


# Session rates are tuned so event counts land near the documented targets.
SCALES: dict[str, SampleSpec] = {
    "tiny": SampleSpec(n_users=400, n_items=300, n_days=70, sessions_per_week=1.1),
    "demo": SampleSpec(n_users=4_000, n_items=2_000, n_days=91, sessions_per_week=1.0),
    "bench": SampleSpec(n_users=100_000, n_items=20_000, n_days=90, sessions_per_week=1.0),
}
DEFAULT_SCALE = "demo"


@dataclass(frozen=True, eq=False)
class SampleData:
    """Generated tables plus the ground truth tests need (dirty rows, item relatedness)."""

    tables: dict[str, pa.Table]
    dirty_counts: dict[str, int]  # reason -> number of injected rows (one problem each)
    dirty_rows: dict[str, np.ndarray] = field(repr=False)  # reason -> row positions in events
    related: np.ndarray = field(repr=False)  # (n_items, 2*ring_reach) item indices; i -> id i


@dataclass(frozen=True)
class WriteResult:
    """Paths written per table, and how many unparseable timestamps a CSV write injected."""

    paths: dict[str, Path]
    unparseable_event_at: int


def _us(dt: datetime) -> int:
    return (dt - _EPOCH) // timedelta(microseconds=1)


def _lognormal_us(
    rng: np.random.Generator, median_s: float, lo_s: float, hi_s: float, n: int
) -> np.ndarray:
    """Human-ish delays: log-normal around a median, clipped to a plausible range."""
    s = np.clip(rng.lognormal(np.log(median_s), 0.8, n), lo_s, hi_s)
    return (s * US_PER_S).astype(np.int64)


@dataclass(frozen=True)
class _Catalog:
    cat: np.ndarray  # item index -> category
    created: np.ndarray  # item index -> created_at (us)
    price: np.ndarray
    appeal: np.ndarray  # per-item click-through multiplier
    order: np.ndarray  # ring position -> item index; items grouped by category, ring order within
    cat_start: np.ndarray
    cat_size: np.ndarray
    weight: np.ndarray  # (n_days, n_items) popularity by ring position, 0 before creation


def _make_catalog(spec: SampleSpec, rng: np.random.Generator, start: int) -> _Catalog:
    n, n_cat, span = spec.n_items, spec.n_categories, spec.n_days * US_PER_DAY
    cat = rng.choice(n_cat, n, p=rng.dirichlet(np.full(n_cat, 5.0)))
    anchors = rng.permutation(n)[:n_cat]
    cat[anchors] = np.arange(n_cat)  # every category non-empty, with an old item to start from
    is_new = rng.random(n) < spec.new_item_share
    is_new[anchors] = False
    created = np.where(
        is_new,
        start + rng.integers(0, span, n),
        start - rng.integers(US_PER_DAY, 730 * US_PER_DAY, n),
    )
    created -= created % US_PER_S
    base = (rng.permutation(n) + 1.0) ** -spec.zipf_exponent
    trend = rng.normal(0.0, spec.trend_scale, n)
    cat_price = np.exp(rng.normal(np.log(30.0), 0.6, n_cat))
    price = np.maximum(np.round(cat_price[cat] * rng.lognormal(0.0, 0.5, n), 2), 0.99)
    appeal = rng.lognormal(0.0, 0.3, n)
    order = np.lexsort((rng.random(n), cat))
    cat_size = np.bincount(cat, minlength=n_cat)
    cat_start = np.concatenate([[0], np.cumsum(cat_size)[:-1]])
    # Daily popularity; an item is eligible only from the first day starting after its creation.
    day_start = start + np.arange(spec.n_days) * US_PER_DAY
    frac = (np.arange(spec.n_days) + 0.5) / spec.n_days
    weight = base[order] * np.exp(np.outer(frac, trend[order]))
    weight *= created[order][None, :] <= day_start[:, None]
    return _Catalog(cat, created, price, appeal, order, cat_start, cat_size, weight)


def _ring_neighbours(cat: _Catalog, pos: np.ndarray, reach: int) -> np.ndarray:
    """Ring positions at offsets -reach..-1, 1..reach from `pos`, wrapping within the category."""
    steps = np.concatenate([np.arange(-reach, 0), np.arange(1, reach + 1)])
    c = cat.cat[cat.order[pos]]
    base = cat.cat_start[c][:, None]
    return base + (pos[:, None] - base + steps) % cat.cat_size[c][:, None]


class _PopularitySampler:
    """Draws ring positions within (day, category) proportional to that day's popularity."""

    def __init__(self, catalog: _Catalog) -> None:
        n_days, n = catalog.weight.shape
        self.n = n
        self.cum = np.cumsum(catalog.weight.ravel())
        self.seg_start = np.arange(n_days)[:, None] * n + catalog.cat_start[None, :]
        self.seg_end = self.seg_start + catalog.cat_size[None, :]
        before = self.seg_start - 1
        self.lo = np.where(before >= 0, self.cum[np.maximum(before, 0)], 0.0)
        self.tot = self.cum[self.seg_end - 1] - self.lo

    def draw(self, day: np.ndarray, cat: np.ndarray, u: np.ndarray) -> np.ndarray:
        # side='right' never lands on a zero-weight (not yet created) item; the factor keeps
        # rounding from reaching the segment end.
        target = self.lo[day, cat] + u * self.tot[day, cat] * (1.0 - 1e-12)
        idx = np.searchsorted(self.cum, target, side="right")
        idx = np.clip(idx, self.seg_start[day, cat], self.seg_end[day, cat] - 1)
        return idx - day * self.n


def _sessions_and_views(
    spec: SampleSpec, rng: np.random.Generator, start: int, cat: _Catalog
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, ...], int]:
    """Users, their sessions and the viewed items of each session (as flat view arrays)."""
    n_u, span, end = spec.n_users, spec.n_days * US_PER_DAY, start + spec.n_days * US_PER_DAY
    segment = rng.choice(len(SEGMENTS), n_u, p=[0.7, 0.2, 0.1])
    activity = rng.lognormal(-0.5 * 0.9**2, 0.9, n_u) * np.array([1.0, 1.3, 1.7])[segment]
    is_new = rng.random(n_u) < spec.new_user_share
    signup = np.where(
        is_new,
        start + rng.integers(0, int(0.8 * span), n_u),
        start - rng.integers(US_PER_DAY, 1000 * US_PER_DAY, n_u),
    )
    signup -= signup % US_PER_S
    taste = [rng.dirichlet(np.full(spec.n_categories, spec.taste_alpha), n_u) for _ in range(2)]
    active_from = np.maximum(signup, start)
    n_sess = rng.poisson(spec.sessions_per_week * activity * (end - active_from) / (7 * US_PER_DAY))
    s_user = np.repeat(np.arange(n_u), n_sess)
    n_s = s_user.size

    walk_len = np.minimum(rng.geometric(1.0 / spec.mean_walk_len, n_s), spec.max_walk_len)
    first = np.cumsum(walk_len) - walk_len
    view_sess = np.repeat(np.arange(n_s), walk_len)
    gaps = _lognormal_us(rng, 40.0, 3.0, 300.0, view_sess.size)
    gaps[first] = 0
    offset = np.cumsum(gaps)
    offset -= offset[first][view_sess]
    # Start early enough for the whole session (walk + funnel tail) to end inside the period.
    latest = end - offset[first + walk_len - 1] - FUNNEL_MAX_US
    lo = active_from[s_user]
    t_raw = lo + (rng.random(n_s) * np.maximum(latest - lo, 0)).astype(np.int64)
    hour_w = 1.0 + 0.6 * np.cos(2 * np.pi * (np.arange(24) - 20) / 24)  # peak 20:00 UTC
    tod = rng.choice(24, n_s, p=hour_w / hour_w.sum()) * 3600 * US_PER_S
    t_cyc = t_raw - t_raw % US_PER_DAY + tod + rng.integers(0, 3600 * US_PER_S, n_s)
    s_time = np.where((t_cyc >= lo) & (t_cyc <= latest), t_cyc, t_raw)

    # Taste drifts linearly from taste[0] to taste[1]: sampling from the endpoint chosen with
    # probability = elapsed fraction is exactly sampling from the interpolated taste.
    frac = (s_time - start) / span
    late = rng.random(n_s) < frac
    u = rng.random(n_s)
    s_cat = np.zeros(n_s, np.int64)
    cum0, cum1 = np.cumsum(taste[0], axis=1), np.cumsum(taste[1], axis=1)
    for c in range(spec.n_categories - 1):
        s_cat += u > np.where(late, cum1[s_user, c], cum0[s_user, c])
    top = np.where(frac < 0.5, taste[0].argmax(1)[s_user], taste[1].argmax(1)[s_user])
    day = (s_time - start) // US_PER_DAY

    # Walk: anchor by popularity, then ring neighbours or popular same-category items.
    sampler = _PopularitySampler(cat)
    pos = np.empty(view_sess.size, np.int64)
    pos[first] = sampler.draw(day, s_cat, rng.random(n_s))
    for k in range(1, int(walk_len.max(initial=0))):
        act = np.flatnonzero(walk_len > k)
        c, d, prev = s_cat[act], day[act], pos[first[act] + k - 1]
        # Related step: a ring neighbour chosen by its popularity (0 if not created yet).
        ring = _ring_neighbours(cat, prev, spec.ring_reach)
        w = np.cumsum(cat.weight[d[:, None], ring], axis=1)
        pick = (w <= rng.random(act.size)[:, None] * w[:, -1:] * (1.0 - 1e-12)).sum(axis=1)
        nxt = ring[np.arange(act.size), np.minimum(pick, ring.shape[1] - 1)]
        redo = (rng.random(act.size) >= spec.related_p) | (w[:, -1] <= 0)
        nxt[redo] = sampler.draw(d[redo], c[redo], rng.random(int(redo.sum())))
        pos[first[act] + k] = nxt
    users = (segment, signup)
    views = (
        s_user[view_sess],
        cat.order[pos],
        s_time[view_sess] + offset,
        (s_cat == top)[view_sess],
    )
    return users, views, n_s


def _funnel(
    spec: SampleSpec, rng: np.random.Generator, cat: _Catalog, views: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, ...]:
    """Expand views into view/click/cart/purchase rows, each stage after the previous one."""
    user, item, t, top = views
    p_click = spec.click_p * cat.appeal[item] * np.where(top, spec.top_taste_click_lift, 1.0)
    clicked = np.flatnonzero(rng.random(item.size) < np.minimum(p_click, 0.95))
    t_click = t[clicked] + _lognormal_us(rng, 6.0, 1.0, 120.0, clicked.size)
    carted_m = rng.random(clicked.size) < spec.cart_p
    carted, t_cart = (
        clicked[carted_m],
        t_click[carted_m] + _lognormal_us(rng, 40.0, 2.0, 900.0, int(carted_m.sum())),
    )
    bought_m = rng.random(carted.size) < spec.purchase_p
    bought, t_buy = (
        carted[bought_m],
        t_cart[bought_m] + _lognormal_us(rng, 90.0, 5.0, 1800.0, int(bought_m.sum())),
    )
    src = np.concatenate([np.arange(item.size), clicked, carted, bought])
    etype = np.repeat(
        np.arange(4, dtype=np.int8), [item.size, clicked.size, carted.size, bought.size]
    )
    value = np.where(etype >= 2, cat.price[item[src]], np.nan)
    return user[src], item[src], etype, np.concatenate([t, t_click, t_cart, t_buy]), value


def _order_dedupe(
    rng: np.random.Generator,
    n_users: int,
    user: np.ndarray,
    item: np.ndarray,
    etype: np.ndarray,
    t: np.ndarray,
) -> np.ndarray:
    """Row order: users in random blocks, chronological within a user; exact duplicates dropped."""
    rank = rng.permutation(n_users)[user]
    rel = t - (t.min() if t.size else 0)
    sec = item.astype(np.int64) * 8 + etype
    span = int(rel.max(initial=0)) + 1
    if n_users * span < 2**62:
        key = rank * span + rel  # one int64 argsort: much faster than lexsort
        o = np.argsort(key)
        ks = key[o]
        tie = np.flatnonzero(ks[1:] == ks[:-1])
        if tie.size:  # rare; order ties deterministically so duplicates become adjacent
            at = np.unique(np.concatenate([tie, tie + 1]))
            sub = o[at]
            o[at] = sub[np.lexsort((sub, sec[sub], ks[at]))]
    else:
        o = np.lexsort((sec, rel, rank))
    u_o, r_o, s_o = user[o], rel[o], sec[o]
    dup = np.zeros(o.size, bool)
    dup[1:] = (u_o[1:] == u_o[:-1]) & (r_o[1:] == r_o[:-1]) & (s_o[1:] == s_o[:-1])
    return o[~dup]


def _ids(prefix: str, n: int) -> pa.Array:
    width = len(str(n))
    return pa.array([f"{prefix}{i:0{width}d}" for i in range(n)], pa.string())


def generate(spec: SampleSpec) -> SampleData:
    """Generate events, items and users for `spec` (pure and deterministic, no I/O)."""
    t0 = time.perf_counter()
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(spec.seed).spawn(5)]
    start = _us(spec.start_at)
    catalog = _make_catalog(spec, rngs[0], start)
    (segment, signup), views, n_sess = _sessions_and_views(spec, rngs[1], start, catalog)
    user, item, etype, t, value = _funnel(spec, rngs[2], catalog, views)
    del views
    keep = _order_dedupe(rngs[3], spec.n_users, user, item, etype, t)
    log.info(
        "generated %d clean events (%d dropped as duplicates, %d sessions) in %.2fs",
        keep.size,
        user.size - keep.size,
        n_sess,
        time.perf_counter() - t0,
    )
    user, item, etype, t, value = (a[keep] for a in (user, item, etype, t, value))

    # Dirty rows: copies of distinct clean rows, each with exactly one problem.
    rng, n = rngs[4], keep.size
    n_dirty = min(round(spec.dirty_share * n), n)
    per = [n_dirty // 6 + (i < n_dirty % 6) for i in range(6)]
    reason = rng.permutation(np.repeat(np.arange(6), per))
    src = rng.choice(n, n_dirty, replace=False)
    d_user, d_item, d_type, d_t = user[src], item[src], etype[src], t[src]
    d_user[reason == 0] = -1
    d_item[reason == 1] = -1
    d_type[reason == 3] = 4 + rng.integers(0, len(UNKNOWN_EVENT_TYPES), per[3])
    d_t[reason == 4] += spec.n_days * US_PER_DAY + FUTURE_SHIFT_US
    at = np.sort(rng.integers(0, n + 1, n_dirty))
    take = np.insert(np.arange(n), at, n + np.arange(n_dirty))
    user, item, etype, t, value = (
        np.concatenate([a, b])[take]
        for a, b in ((user, d_user), (item, d_item), (etype, d_type), (t, d_t), (value, value[src]))
    )
    t_null = np.concatenate([np.zeros(n, bool), reason == 2])[take]
    dirty_pos = np.flatnonzero(take >= n)  # dirty rows appear in insertion order
    dirty_rows = {r: dirty_pos[reason == i] for i, r in enumerate(DIRTY_REASONS)}

    events = pa.table(
        [
            _ids("u", spec.n_users).take(pa.array(user, mask=user < 0)),
            _ids("i", spec.n_items).take(pa.array(item, mask=item < 0)),
            pa.array(EVENT_TYPES + UNKNOWN_EVENT_TYPES).take(pa.array(etype)),
            pa.array(t, TS, mask=t_null),
            pa.array(value, pa.float64(), mask=np.isnan(value)),
        ],
        schema=SCHEMAS["events"],
    )
    cats = pa.array(
        [f"c{c + 1:0{max(2, len(str(spec.n_categories)))}d}" for c in range(spec.n_categories)]
    )
    null_cat = np.zeros(spec.n_items, bool)
    null_cat[
        rng.choice(spec.n_items, round(spec.null_category_share * spec.n_items), replace=False)
    ] = True
    items = pa.table(
        [
            _ids("i", spec.n_items),
            cats.take(pa.array(catalog.cat, mask=null_cat)),
            pa.array(catalog.created, TS),
        ],
        schema=SCHEMAS["items"],
    )
    users = pa.table(
        [_ids("u", spec.n_users), pa.array(signup, TS), pa.array(SEGMENTS).take(pa.array(segment))],
        schema=SCHEMAS["users"],
    )
    related = np.empty((spec.n_items, 2 * spec.ring_reach), np.int64)
    related[catalog.order] = catalog.order[
        _ring_neighbours(catalog, np.arange(spec.n_items), spec.ring_reach)
    ]
    log.info(
        "generated %d events incl. %d dirty rows in %.2fs",
        events.num_rows,
        n_dirty,
        time.perf_counter() - t0,
    )
    return SampleData(
        tables={"events": events, "items": items, "users": users},
        dirty_counts=dict(zip(DIRTY_REASONS, per, strict=True)),
        dirty_rows=dirty_rows,
        related=related,
    )


def _iso_utc(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """ISO-8601 with 'T' and trailing 'Z'; casting via naive timestamps is much faster."""
    s = col.cast(pa.timestamp("us")).cast(pa.string())
    return pc.binary_join_element_wise(pc.utf8_replace_slice(s, 10, 11, "T"), "Z", "")


def _inject_unparseable(events: pa.Table, share: float, seed: int) -> tuple[pa.Table, int]:
    """Insert copies of valid rows whose event_at is an unparseable string (CSV only)."""
    rng = np.random.default_rng(seed)
    valid = pc.and_(
        pc.and_(pc.is_valid(events["user_id"]), pc.is_valid(events["item_id"])),
        pc.and_(
            pc.is_valid(events["event_at"]), pc.is_in(events["event_type"], pa.array(EVENT_TYPES))
        ),
    )
    cand = np.flatnonzero(valid.to_numpy(zero_copy_only=False))
    want = min(cand.size, max(2, round(share * events.num_rows)))
    rows = events.take(np.sort(rng.choice(cand, want, replace=False)))
    # A row and its duplicate share (user, item, type): keep one so injected rows stay unique.
    seen: set[tuple[str, str, str]] = set()
    keep: list[int] = []
    for i, key in enumerate(
        zip(*(rows[c].to_pylist() for c in ("user_id", "item_id", "event_type")), strict=True)
    ):
        if key not in seen:
            seen.add(key)
            keep.append(i)
    rows = rows.take(np.array(keep, np.int64))
    bad = [UNPARSEABLE_EVENT_AT[i % len(UNPARSEABLE_EVENT_AT)] for i in range(len(keep))]
    rows = rows.set_column(
        rows.schema.get_field_index("event_at"), "event_at", pa.array(bad, pa.string())
    )
    n = events.num_rows
    take = np.insert(
        np.arange(n), np.sort(rng.integers(0, n + 1, len(keep))), n + np.arange(len(keep))
    )
    return pa.concat_tables([events, rows]).take(take), len(keep)


def write_data_dir(
    tables: dict[str, pa.Table],
    data_dir: Path,
    *,
    file_format: Literal["parquet", "csv"],
    unparseable_share: float = 0.0002,
    seed: int = 0,
) -> WriteResult:
    """Write each table atomically as `<name>.parquet` (zstd) or `<name>.csv` into `data_dir`.

    A stale file of the other format for the same table is removed so readers never see both.
    CSV timestamps are ISO-8601 UTC strings ending in 'Z'; CSV `events` additionally gets
    unparseable event_at rows (count returned), which a typed Parquet column cannot hold.
    """
    if file_format not in ("parquet", "csv"):
        raise ValueError(f"unsupported file_format: {file_format!r}")
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    other = "csv" if file_format == "parquet" else "parquet"
    paths: dict[str, Path] = {}
    injected = 0
    for name, table in tables.items():
        if file_format == "csv":
            for i, f in enumerate(table.schema):
                if pa.types.is_timestamp(f.type):
                    table = table.set_column(i, f.name, _iso_utc(table[f.name]))
            if name == "events":
                table, injected = _inject_unparseable(table, unparseable_share, seed)
        final = data_dir / f"{name}.{file_format}"
        fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=f".{name}.", suffix=".tmp")
        os.close(fd)
        try:
            if file_format == "parquet":
                pq.write_table(table, tmp, compression="zstd")
            else:
                pacsv.write_csv(table, tmp, pacsv.WriteOptions(quoting_style="needed"))
            Path(tmp).replace(final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        (data_dir / f"{name}.{other}").unlink(missing_ok=True)
        paths[name] = final
        log.info("wrote %s (%d rows) to %s", name, table.num_rows, final)
    return WriteResult(paths=paths, unparseable_event_at=injected)
