"""The pandas notebook baseline: the user, item and co-visitation features of the dbt project
written the way a data scientist would in pandas, on the same files, to time against `dbt build`.

Idiomatic, not deliberately slow: `read_parquet` of the whole events file (pandas' default
dtypes), vectorised `groupby().agg()`, one loop over the handful of cutoffs, and
co-visitation as a self-merge of each user's visits with the visits 1..covisit_max_positions
positions later (an equi-join on user and visit number, then the time limit), which is exactly
`int_item_pairs_covisited`'s definition and stays linear in events, so it needs no per-day
batching even at the bench scale. Parameters come from the dbt vars in `dbt/dbt_project.yml`.

What it mirrors, per cutoff of `int_cutoffs_scheduled`' calendar (`DBT_MODELS_MIRRORED`, like
for like): cleaning as staging does (null ids or timestamps, unknown types, future rows, exact
duplicates, unknown items and users dropped), daily user-item interactions,
`int_users_featurized` (activity, distinct items, favourite category share, ages), the
`item_features` mart (every listed or seen item: popularity windows, all-history users, ranks,
ages) and `int_item_neighbours_ranked` (strongest co-visited neighbours over the lookback). It
does not build candidates or training examples; `polars_baseline` computes the same tables.

Run as `python -m recflow.bench.pandas_baseline --data-dir D --out-dir O`; writes the three
feature tables as Parquet and `summary.json` (rows and seconds per phase) into O.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pandas as pd

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
    events: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame,
    params: BaselineParams,
    as_of: pd.Timestamp,
) -> pd.DataFrame:
    """Staging's rules: drop rows missing an id or timestamp, unknown types, future rows, exact
    duplicates and events of items or users the tables do not list; add weight, positive flag
    and the UTC day."""
    events = events.dropna(subset=["user_id", "item_id", "event_at"])
    events = events[
        events["event_type"].isin(params.event_weights)
        & (events["event_at"] <= as_of)
        & events["item_id"].isin(items["item_id"])
        & events["user_id"].isin(users["user_id"])
    ]
    events = events.drop_duplicates()
    return events.assign(
        event_weight=events["event_type"].map(params.event_weights),
        is_positive=events["event_type"].isin(params.positive_event_types),
        event_date=events["event_at"].dt.floor("D"),
    )


def daily_interactions(events: pd.DataFrame) -> pd.DataFrame:
    return (
        events.groupby(["user_id", "item_id", "event_date"])
        .agg(
            event_count=("event_type", "size"),
            positive_event_count=("is_positive", "sum"),
            interaction_weight=("event_weight", "sum"),
            first_event_at=("event_at", "min"),
            last_event_at=("event_at", "max"),
        )
        .reset_index()
    )


def _days_between(earlier: pd.Series, cutoff: pd.Timestamp) -> pd.Series:
    """Whole days from the UTC day of `earlier` to the cutoff, as dbt.datediff counts them."""
    return (cutoff - earlier.dt.floor("D")).dt.days


def user_features(
    before: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame,
    cutoff: pd.Timestamp,
    params: BaselineParams,
) -> pd.DataFrame:
    """One cutoff's user features from the daily interactions before it (with `days_ago`)."""
    recent = before["days_ago"] <= 28
    activity = (
        before.assign(
            events_7d=before["event_count"].where(before["days_ago"] <= 7, 0),
            events_28d=before["event_count"].where(recent, 0),
            positive_events_28d=before["positive_event_count"].where(recent, 0),
        )
        .groupby("user_id")
        .agg(
            events_7d=("events_7d", "sum"),
            events_28d=("events_28d", "sum"),
            events_total=("event_count", "sum"),
            positive_events_28d=("positive_events_28d", "sum"),
            distinct_items_total=("item_id", "nunique"),
            active_days_total=("event_date", "nunique"),
            first_event_at=("first_event_at", "min"),
            last_event_at=("last_event_at", "max"),
        )
    )
    affinity = (
        before[before["days_ago"] <= params.category_affinity_lookback_days]
        .merge(items[["item_id", "category"]], on="item_id", how="left")
        .fillna({"category": "unknown"})
        .groupby(["user_id", "category"])["interaction_weight"]
        .sum()
        .reset_index()
    )
    affinity["share"] = affinity["interaction_weight"] / affinity.groupby("user_id")[
        "interaction_weight"
    ].transform("sum")
    favourite_share = (
        affinity.sort_values(["user_id", "interaction_weight", "category"], ascending=[1, 0, 1])
        .drop_duplicates("user_id")
        .set_index("user_id")["share"]
        .rename("favourite_category_share")
    )
    joined = (
        activity.join(favourite_share).join(users.set_index("user_id")[["segment", "signup_at"]])
    ).reset_index()
    return pd.DataFrame(
        {
            "user_id": joined["user_id"],
            "segment": joined["segment"].fillna("unknown"),
            "events_7d": joined["events_7d"],
            "events_28d": joined["events_28d"],
            "events_total": joined["events_total"],
            "positive_events_28d": joined["positive_events_28d"],
            "distinct_items_total": joined["distinct_items_total"],
            "active_days_total": joined["active_days_total"],
            "favourite_category_share": joined["favourite_category_share"],
            "days_since_last_event": _days_between(joined["last_event_at"], cutoff),
            "days_since_first_event": _days_between(joined["first_event_at"], cutoff),
            "days_since_signup": _days_between(joined["signup_at"], cutoff),
            "last_event_at": joined["last_event_at"],
        }
    )


def item_features(
    before: pd.DataFrame, items: pd.DataFrame, cutoff: pd.Timestamp, params: BaselineParams
) -> pd.DataFrame:
    """One cutoff's item features (the `item_features` mart): every item listed before the cutoff
    or seen before it, its popularity over the windows and all history, and its ranks."""
    windows = params.popularity_windows_days
    seen = before.groupby("item_id").agg(
        users_total=("user_id", "nunique"), last_event_at=("last_event_at", "max")
    )
    longest = before[before["days_ago"] <= max(windows)]
    seen = seen.join(
        longest.groupby("item_id").agg(
            events_28d=("event_count", "sum"),
            positive_events_28d=("positive_event_count", "sum"),
        )
    )
    for window in windows:
        in_window = longest[longest["days_ago"] <= window]
        seen[f"users_{window}d"] = in_window.groupby("item_id")["user_id"].nunique()
    catalogue = items.set_index("item_id")
    seen = seen.fillna(0).join(catalogue[["category"]]).reset_index()
    seen["category"] = seen["category"].fillna("unknown")
    rank_by = [f"users_{params.popularity_rank_window_days}d", "item_id"]
    seen = seen.sort_values(rank_by, ascending=[False, True])
    seen["popularity_rank"] = range(1, len(seen) + 1)
    seen["category_popularity_rank"] = seen.groupby("category").cumcount() + 1
    seen = seen.sort_values(["users_total", "item_id"], ascending=[False, True])
    seen["popularity_all_rank"] = range(1, len(seen) + 1)
    listed = items.loc[items["created_at"].isna() | (items["created_at"] < cutoff), "item_id"]
    every = pd.Index(listed).union(pd.Index(seen["item_id"]))
    features = (
        pd.DataFrame({"item_id": every})
        .merge(seen.drop(columns="category"), on="item_id", how="left")
        .merge(items[["item_id", "category", "created_at"]], on="item_id", how="left")
    )
    counts = ["users_1d", "users_7d", "users_28d", "users_total", "events_28d"]
    features[[*counts, "positive_events_28d"]] = features[[*counts, "positive_events_28d"]].fillna(
        0
    )
    features["category"] = features["category"].fillna("unknown")
    features["positive_rate_28d"] = features["positive_events_28d"] / features["events_28d"].where(
        features["events_28d"] > 0
    )
    features["days_since_created"] = _days_between(features["created_at"], cutoff)
    features["days_since_last_event"] = _days_between(features["last_event_at"], cutoff)
    return features.drop(columns="created_at")


def covisited_pairs(events: pd.DataFrame, params: BaselineParams) -> pd.DataFrame:
    """Co-visit counts per item, related item and day of the later visit (both directions)."""
    limit = pd.Timedelta(minutes=params.covisit_max_minutes)
    visits = events[["user_id", "item_id", "event_at"]].sort_values(
        ["user_id", "event_at", "item_id"]
    )
    by_user = visits.groupby("user_id")
    previous_item, previous_at = by_user["item_id"].shift(), by_user["event_at"].shift()
    # A view then a click on the same item is one visit; the same item after a pause is a new one.
    is_new_visit = (
        previous_item.isna()
        | (previous_item != visits["item_id"])
        | (visits["event_at"] > previous_at + limit)
    )
    visits = visits[is_new_visit].copy()
    visits["visit_number"] = visits.groupby("user_id").cumcount()
    forward = []
    for offset in range(1, params.covisit_max_positions + 1):
        later = visits.assign(visit_number=visits["visit_number"] - offset)
        pairs = visits.merge(later, on=["user_id", "visit_number"], suffixes=("", "_later"))
        pairs = pairs[
            (pairs["event_at_later"] <= pairs["event_at"] + limit)
            & (pairs["item_id"] != pairs["item_id_later"])
        ]
        forward.append(
            pd.DataFrame(
                {
                    "item_id": pairs["item_id"],
                    "related_item_id": pairs["item_id_later"],
                    "covisit_date": pairs["event_at_later"].dt.floor("D"),
                }
            )
        )
    forward_pairs = pd.concat(forward, ignore_index=True)
    backward_pairs = forward_pairs.rename(
        columns={"item_id": "related_item_id", "related_item_id": "item_id"}
    )
    return (
        pd.concat([forward_pairs, backward_pairs], ignore_index=True)
        .groupby(["item_id", "related_item_id", "covisit_date"])
        .size()
        .rename("covisit_count")
        .reset_index()
    )


def item_neighbours(
    covisits: pd.DataFrame, cutoff: pd.Timestamp, params: BaselineParams
) -> pd.DataFrame:
    """Each item's strongest co-visited neighbours over the lookback before `cutoff`."""
    start = cutoff - pd.Timedelta(days=params.covisit_lookback_days)
    window = covisits[(covisits["covisit_date"] < cutoff) & (covisits["covisit_date"] >= start)]
    totals = (
        window.groupby(["item_id", "related_item_id"])
        .agg(covisit_count=("covisit_count", "sum"), last_covisit_date=("covisit_date", "max"))
        .reset_index()
        .sort_values(["item_id", "covisit_count", "related_item_id"], ascending=[1, 0, 1])
    )
    return totals.groupby("item_id").head(params.covisit_neighbours_per_item)


def build_features(data_dir: Path, out_dir: Path, params: BaselineParams) -> dict[str, Any]:
    """Read the data directory, compute the features at every cutoff, write them to `out_dir`."""
    timer = PhaseTimer()
    with timer.phase("read"):
        events = pd.read_parquet(data_dir / "events.parquet")
        items = pd.read_parquet(data_dir / "items.parquet")
        users = pd.read_parquet(data_dir / "users.parquet")
    with timer.phase("clean_and_daily"):
        events = clean_events(events, items, users, params, pd.Timestamp.now(tz="UTC"))
        daily = daily_interactions(events)
        cutoffs = cutoff_dates(
            daily["event_date"].min().date(), daily["event_date"].max().date(), params
        )
    user_frames, item_frames = [], []
    with timer.phase("user_and_item_features"):
        for cutoff in cutoffs:
            at = pd.Timestamp(cutoff, tz="UTC")
            before = daily[daily["event_date"] < at]
            before = before.assign(days_ago=(at - before["event_date"]).dt.days)
            user_frames.append(
                user_features(before, items, users, at, params).assign(cutoff_date=cutoff)
            )
            item_frames.append(item_features(before, items, at, params).assign(cutoff_date=cutoff))
    with timer.phase("covisitation"):
        covisits = covisited_pairs(events, params)
        neighbours = pd.concat(
            [
                item_neighbours(covisits, pd.Timestamp(c, tz="UTC"), params).assign(cutoff_date=c)
                for c in cutoffs
            ],
            ignore_index=True,
        )
        neighbours["last_covisit_date"] = neighbours["last_covisit_date"].dt.date
    outputs = {
        "user_features": pd.concat(user_frames, ignore_index=True),
        "item_features": pd.concat(item_frames, ignore_index=True),
        "item_neighbours": neighbours,
    }
    with timer.phase("write"):
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, frame in outputs.items():
            frame[list(OUTPUT_COLUMNS[name])].to_parquet(out_dir / f"{name}.parquet", index=False)
    return summary(len(events), {name: len(f) for name, f in outputs.items()}, cutoffs, timer)


def main(argv: list[str] | None = None) -> int:
    return run_cli(
        argv,
        prog="python -m recflow.bench.pandas_baseline",
        description=__doc__,
        build=build_features,
    )


if __name__ == "__main__":
    sys.exit(main())
