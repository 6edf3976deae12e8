"""The Polars notebook baseline: the same user, item and co-visitation features as
`pandas_baseline` (and the dbt models both mirror, `DBT_MODELS_MIRRORED`), written the way a
data scientist would today in Polars, on the same files, to time against `dbt build`.

Idiomatic Polars: a lazy query from `scan_parquet` cleans the events and sums them per user,
item and day, collected once because every cutoff reads it; each cutoff's features are lazy
`group_by().agg()` and joins over that table, all collected together so Polars runs them in
parallel; co-visitation pairs each visit with the `covisit_max_positions` visits before it by
`shift()` on the events sorted by user (what `int_item_pairs_covisited` does with `lag()`).
Parameters come from the dbt vars in `dbt/dbt_project.yml`.

Run as `python -m recflow.bench.polars_baseline --data-dir D --out-dir O`; writes the three
feature tables as Parquet and `summary.json` (rows and seconds per phase) into O.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from recflow.bench.baseline_common import (
    OUTPUT_COLUMNS,
    BaselineParams,
    PhaseTimer,
    cutoff_dates,
    run_cli,
    summary,
)

log = logging.getLogger(__name__)


def clean_events(
    events: pl.LazyFrame,
    items: pl.LazyFrame,
    users: pl.LazyFrame,
    params: BaselineParams,
    as_of: datetime,
) -> pl.LazyFrame:
    """Staging's rules: drop rows missing an id or timestamp, unknown types, future rows, exact
    duplicates and events of items or users the tables do not list; add weight, positive flag
    and the UTC day."""
    return (
        events.drop_nulls(["user_id", "item_id", "event_at"])
        .filter(
            pl.col("event_type").is_in(list(params.event_weights)),
            pl.col("event_at") <= as_of,
        )
        .join(items.select("item_id"), on="item_id", how="semi")
        .join(users.select("user_id"), on="user_id", how="semi")
        .unique()
        .with_columns(
            event_weight=pl.col("event_type").replace_strict(params.event_weights),
            is_positive=pl.col("event_type").is_in(list(params.positive_event_types)),
            event_date=pl.col("event_at").dt.date(),
        )
    )


def daily_interactions(events: pl.LazyFrame) -> pl.LazyFrame:
    return events.group_by("user_id", "item_id", "event_date").agg(
        event_count=pl.len(),
        positive_event_count=pl.col("is_positive").sum(),
        interaction_weight=pl.col("event_weight").sum(),
        first_event_at=pl.col("event_at").min(),
        last_event_at=pl.col("event_at").max(),
    )


def _days_since(column: str, cutoff: date) -> pl.Expr:
    """Whole days from the UTC day of `column` to the cutoff, as dbt.datediff counts them."""
    return (pl.lit(cutoff) - pl.col(column).dt.date()).dt.total_days()


def user_features(
    before: pl.LazyFrame,
    items: pl.LazyFrame,
    users: pl.LazyFrame,
    cutoff: date,
    params: BaselineParams,
) -> pl.LazyFrame:
    """One cutoff's user features from the daily interactions before it (with `days_ago`)."""
    recent = pl.col("days_ago") <= 28
    activity = before.group_by("user_id").agg(
        events_7d=pl.col("event_count").filter(pl.col("days_ago") <= 7).sum(),
        events_28d=pl.col("event_count").filter(recent).sum(),
        events_total=pl.col("event_count").sum(),
        positive_events_28d=pl.col("positive_event_count").filter(recent).sum(),
        distinct_items_total=pl.col("item_id").n_unique(),
        active_days_total=pl.col("event_date").n_unique(),
        first_event_at=pl.col("first_event_at").min(),
        last_event_at=pl.col("last_event_at").max(),
    )
    favourite = (
        before.filter(pl.col("days_ago") <= params.category_affinity_lookback_days)
        .join(items.select("item_id", "category"), on="item_id", how="left")
        .with_columns(pl.col("category").fill_null("unknown"))
        .group_by("user_id", "category")
        .agg(pl.col("interaction_weight").sum())
        .group_by("user_id")
        .agg(
            favourite_category_share=(
                pl.col("interaction_weight").sort_by(
                    "interaction_weight", "category", descending=[True, False]
                )
                / pl.col("interaction_weight").sum()
            ).first()
        )
    )
    return (
        activity.join(favourite, on="user_id", how="left")
        .join(users.select("user_id", "segment", "signup_at"), on="user_id", how="left")
        .with_columns(
            pl.col("segment").fill_null("unknown"),
            days_since_last_event=_days_since("last_event_at", cutoff),
            days_since_first_event=_days_since("first_event_at", cutoff),
            days_since_signup=_days_since("signup_at", cutoff),
            cutoff_date=pl.lit(cutoff),
        )
        .select(OUTPUT_COLUMNS["user_features"])
    )


def item_features(
    before: pl.LazyFrame, items: pl.LazyFrame, cutoff: date, params: BaselineParams
) -> pl.LazyFrame:
    """One cutoff's item features (the `item_features` mart): every item listed before the cutoff
    or seen before it, its popularity over the windows and all history, and its ranks."""
    windows = params.popularity_windows_days
    in_window = pl.col("days_ago") <= max(windows)
    seen = (
        before.group_by("item_id")
        .agg(
            *(
                pl.col("user_id").filter(pl.col("days_ago") <= w).n_unique().alias(f"users_{w}d")
                for w in windows
            ),
            users_total=pl.col("user_id").n_unique(),
            events_28d=pl.col("event_count").filter(in_window).sum(),
            positive_events_28d=pl.col("positive_event_count").filter(in_window).sum(),
            last_event_at=pl.col("last_event_at").max(),
        )
        .join(items.select("item_id", "category"), on="item_id", how="left")
        .with_columns(pl.col("category").fill_null("unknown"))
    )
    rank_users = f"users_{params.popularity_rank_window_days}d"
    position = pl.int_range(1, pl.len() + 1)
    ranked = (
        seen.sort(rank_users, "item_id", descending=[True, False])
        .with_columns(popularity_rank=position, category_popularity_rank=position.over("category"))
        .sort("users_total", "item_id", descending=[True, False])
        .with_columns(popularity_all_rank=position)
        .drop("category")
    )
    listed = items.filter(
        pl.col("created_at").is_null() | (pl.col("created_at").dt.date() < cutoff)
    ).select("item_id")
    counts = ["users_1d", "users_7d", "users_28d", "users_total", "events_28d"]
    return (
        pl.concat([listed, seen.select("item_id")])
        .unique()
        .join(ranked, on="item_id", how="left")
        .join(items.select("item_id", "category", "created_at"), on="item_id", how="left")
        .with_columns(
            pl.col([*counts, "positive_events_28d"]).fill_null(0),
            pl.col("category").fill_null("unknown"),
        )
        .with_columns(
            positive_rate_28d=pl.when(pl.col("events_28d") > 0).then(
                pl.col("positive_events_28d") / pl.col("events_28d")
            ),
            days_since_created=_days_since("created_at", cutoff),
            days_since_last_event=_days_since("last_event_at", cutoff),
            cutoff_date=pl.lit(cutoff),
        )
        .drop("created_at")
    )


def covisited_pairs(events: pl.LazyFrame, params: BaselineParams) -> pl.LazyFrame:
    """Co-visit counts per item, related item and day of the later visit (both directions)."""
    limit = pl.duration(minutes=params.covisit_max_minutes)

    # Sorted by user, so the row `offset` back is the user's own when its user_id matches: one
    # plain shift instead of a window per user.
    def earlier(column: str, offset: int) -> pl.Expr:
        same_user = pl.col("user_id").shift(offset) == pl.col("user_id")
        return pl.when(same_user).then(pl.col(column).shift(offset))

    visits = (
        events.select("user_id", "item_id", "event_at")
        .sort("user_id", "event_at", "item_id")
        # A view then a click on the same item is one visit; the same item after a pause is a
        # new one.
        .filter(
            earlier("item_id", 1).is_null()
            | (earlier("item_id", 1) != pl.col("item_id"))
            | (pl.col("event_at") > earlier("event_at", 1) + limit)
        )
    )
    forward = pl.concat(
        [
            visits.select(
                item_id=earlier("item_id", offset),
                earlier_at=earlier("event_at", offset),
                related_item_id="item_id",
                event_at="event_at",
            ).filter(
                pl.col("item_id").is_not_null(),
                pl.col("item_id") != pl.col("related_item_id"),
                pl.col("event_at") <= pl.col("earlier_at") + limit,
            )
            for offset in range(1, params.covisit_max_positions + 1)
        ]
    ).select("item_id", "related_item_id", covisit_date=pl.col("event_at").dt.date())
    backward = forward.select(
        item_id="related_item_id", related_item_id="item_id", covisit_date="covisit_date"
    )
    return (
        pl.concat([forward, backward])
        .group_by("item_id", "related_item_id", "covisit_date")
        .agg(covisit_count=pl.len())
    )


def item_neighbours(covisits: pl.LazyFrame, cutoff: date, params: BaselineParams) -> pl.LazyFrame:
    """Each item's strongest co-visited neighbours over the lookback before `cutoff`."""
    days_ago = (pl.lit(cutoff) - pl.col("covisit_date")).dt.total_days()
    return (
        covisits.filter(pl.col("covisit_date") < cutoff, days_ago <= params.covisit_lookback_days)
        .group_by("item_id", "related_item_id")
        .agg(
            covisit_count=pl.col("covisit_count").sum(),
            last_covisit_date=pl.col("covisit_date").max(),
        )
        .sort("item_id", "covisit_count", "related_item_id", descending=[False, True, False])
        .group_by("item_id", maintain_order=True)
        .head(params.covisit_neighbours_per_item)
        .with_columns(cutoff_date=pl.lit(cutoff))
    )


def build_features(data_dir: Path, out_dir: Path, params: BaselineParams) -> dict[str, Any]:
    """Read the data directory, compute the features at every cutoff, write them to `out_dir`."""
    timer = PhaseTimer()
    items = pl.scan_parquet(data_dir / "items.parquet")
    users = pl.scan_parquet(data_dir / "users.parquet")
    with timer.phase("clean_and_daily"):
        # Every cutoff and the co-visitation read these, so they are collected once.
        events = clean_events(
            pl.scan_parquet(data_dir / "events.parquet"), items, users, params, datetime.now(UTC)
        ).collect()
        daily = daily_interactions(events.lazy()).collect()
        first, last = daily.select(
            pl.col("event_date").min().alias("first"), pl.col("event_date").max().alias("last")
        ).row(0)
        cutoffs = cutoff_dates(first, last, params)
    with timer.phase("user_and_item_features"):
        per_cutoff = []
        for cutoff in cutoffs:
            before = (
                daily.lazy()
                .filter(pl.col("event_date") < cutoff)
                .with_columns(days_ago=(pl.lit(cutoff) - pl.col("event_date")).dt.total_days())
            )
            per_cutoff += [
                user_features(before, items, users, cutoff, params),
                item_features(before, items, cutoff, params),
            ]
        frames = pl.collect_all(per_cutoff)
        user_frame = pl.concat(frames[0::2])
        item_frame = pl.concat(frames[1::2])
    with timer.phase("covisitation"):
        covisits = covisited_pairs(events.lazy(), params).collect().lazy()
        neighbours = pl.concat([item_neighbours(covisits, c, params) for c in cutoffs]).collect()
    outputs = {
        "user_features": user_frame,
        "item_features": item_frame,
        "item_neighbours": neighbours,
    }
    with timer.phase("write"):
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, frame in outputs.items():
            frame.select(OUTPUT_COLUMNS[name]).write_parquet(out_dir / f"{name}.parquet")
    return summary(events.height, {n: f.height for n, f in outputs.items()}, cutoffs, timer)


def main(argv: list[str] | None = None) -> int:
    return run_cli(
        argv,
        prog="python -m recflow.bench.polars_baseline",
        description=__doc__,
        build=build_features,
    )


if __name__ == "__main__":
    sys.exit(main())
