"""The notebook baseline: the user, item and co-visitation features of the dbt project written the
way a data scientist would in pandas, on the same files, to time against `dbt build`.

Idiomatic, not deliberately slow: `read_parquet` of the whole events file (pandas' default
dtypes), vectorised `groupby().agg()`, one loop over the handful of cutoffs, and
co-visitation as a self-merge of each user's visits with the visits 1..covisit_max_positions
positions later (an equi-join on user and visit number, then the time limit), which is exactly
`int_item_pairs_covisited`'s definition and stays linear in events, so it needs no per-day
batching even at the bench scale. Parameters come from the dbt vars in `dbt/dbt_project.yml`.

What it mirrors, per cutoff (`int_cutoffs_scheduled`): cleaning as staging does
(null ids or timestamps, unknown types, future rows, exact duplicates dropped), daily user-item
interactions, `int_users_featurized`' activity columns and favourite category, `item_features`'
popularity windows and ranks, and `int_item_neighbours_ranked` (strongest co-visited neighbours
over the lookback). It does not build candidates or training examples, so it does less work
than the dbt build it is compared with.

Run as `python -m recflow.bench.pandas_baseline --data-dir D --out-dir O`; writes the three
feature tables as Parquet and `summary.json` (rows and seconds per phase) into O.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from recflow.pipeline.settings import REPO_ROOT

log = logging.getLogger(__name__)

DBT_PROJECT_FILE = REPO_ROOT / "dbt" / "dbt_project.yml"
# The dbt models whose work this baseline repeats (the rest of the build, candidates, training
# examples and tests, it leaves out), for a like-for-like ratio beside the full build's.
DBT_MODELS_MIRRORED = frozenset(
    {
        "base_app__events_validated",
        "base_app__items_validated",
        "base_app__users_validated",
        "int_user_item_interactions_daily",
        "int_cutoffs_scheduled",
        "int_user_category_affinities",
        "int_users_featurized",
        "int_item_popularity_ranked",
        "int_items_featurized",
        "item_features",
        "int_item_pairs_covisited",
        "int_item_neighbours_ranked",
    }
)


@dataclass(frozen=True)
class BaselineParams:
    """The dbt vars the features depend on."""

    event_weights: Mapping[str, float]
    positive_event_types: frozenset[str]
    cutoff_interval_days: int
    train_cutoff_count: int
    min_history_days: int
    popularity_windows_days: tuple[int, ...]
    popularity_rank_window_days: int
    category_affinity_lookback_days: int
    covisit_max_positions: int
    covisit_max_minutes: int
    covisit_lookback_days: int
    covisit_neighbours_per_item: int

    @classmethod
    def from_dbt_project(cls, path: Path = DBT_PROJECT_FILE) -> BaselineParams:
        dbt_vars: dict[str, Any] = yaml.safe_load(path.read_text())["vars"]
        event_types = dbt_vars["event_types"]
        return cls(
            event_weights={name: float(c["weight"]) for name, c in event_types.items()},
            positive_event_types=frozenset(n for n, c in event_types.items() if c["is_positive"]),
            # Fixed in the dbt project (int_item_popularity_ranked).
            popularity_windows_days=(1, 7, 28),
            **{
                name: int(dbt_vars[name])
                for name in (
                    "cutoff_interval_days",
                    "train_cutoff_count",
                    "min_history_days",
                    "popularity_rank_window_days",
                    "category_affinity_lookback_days",
                    "covisit_max_positions",
                    "covisit_max_minutes",
                    "covisit_lookback_days",
                    "covisit_neighbours_per_item",
                )
            },
        )


class PhaseTimer:
    """Seconds per named phase, logged as each ends."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - started, 3)
        log.info("%s: %.1f s", name, self.seconds[name])


def clean_events(events: pd.DataFrame, params: BaselineParams, as_of: pd.Timestamp) -> pd.DataFrame:
    """Staging's rules: drop rows missing an id or timestamp, unknown types, future rows and
    exact duplicates; add weight, positive flag and the UTC day."""
    events = events.dropna(subset=["user_id", "item_id", "event_at"])
    events = events[events["event_type"].isin(params.event_weights) & (events["event_at"] <= as_of)]
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


def cutoff_dates(daily: pd.DataFrame, params: BaselineParams) -> list[pd.Timestamp]:
    """Weekly cutoffs back from the day after the last event, with enough history before."""
    scoring = daily["event_date"].max() + pd.Timedelta(days=1)
    earliest = daily["event_date"].min() + pd.Timedelta(days=params.min_history_days)
    cutoffs = (
        scoring - pd.Timedelta(days=params.cutoff_interval_days * k)
        for k in range(params.train_cutoff_count + 3)
    )
    return sorted(c for c in cutoffs if c >= earliest)


def user_features(
    before: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame, params: BaselineParams
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
            positive_events_total=("positive_event_count", "sum"),
            interaction_weight_total=("interaction_weight", "sum"),
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
    favourite = (
        affinity.sort_values(["user_id", "interaction_weight", "category"], ascending=[1, 0, 1])
        .drop_duplicates("user_id")
        .set_index("user_id")[["category", "share"]]
        .rename(columns={"category": "favourite_category", "share": "favourite_category_share"})
    )
    # As int_users_featurized: a user with no event in the affinity lookback has category 'unknown'.
    joined = activity.join(favourite).join(users.set_index("user_id"))
    return joined.fillna({"favourite_category": "unknown"}).reset_index()


def item_features(
    before: pd.DataFrame, items: pd.DataFrame, params: BaselineParams
) -> pd.DataFrame:
    """One cutoff's item popularity over the windows, with overall and category ranks."""
    windows = params.popularity_windows_days
    longest = before[before["days_ago"] <= max(windows)]
    features = longest.groupby("item_id").agg(
        events=("event_count", "sum"),
        positive_events=("positive_event_count", "sum"),
        last_event_at=("last_event_at", "max"),
    )
    for window in windows:
        in_window = longest[longest["days_ago"] <= window]
        features[f"users_{window}d"] = in_window.groupby("item_id")["user_id"].nunique()
    features = features.fillna(0).join(items.set_index("item_id")[["category"]]).reset_index()
    features["category"] = features["category"].fillna("unknown")
    features["positive_rate"] = features["positive_events"] / features["events"]
    by_popularity = features.sort_values(
        [f"users_{params.popularity_rank_window_days}d", "item_id"], ascending=[False, True]
    )
    by_popularity["popularity_rank"] = range(1, len(by_popularity) + 1)
    by_popularity["category_popularity_rank"] = by_popularity.groupby("category").cumcount() + 1
    return by_popularity


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
        events = clean_events(events, params, pd.Timestamp.now(tz="UTC"))
        daily = daily_interactions(events)
        cutoffs = cutoff_dates(daily, params)
    user_frames, item_frames = [], []
    with timer.phase("user_and_item_features"):
        for cutoff in cutoffs:
            before = daily[daily["event_date"] < cutoff]
            before = before.assign(days_ago=(cutoff - before["event_date"]).dt.days)
            user_frames.append(
                user_features(before, items, users, params).assign(cutoff_date=cutoff)
            )
            item_frames.append(item_features(before, items, params).assign(cutoff_date=cutoff))
    with timer.phase("covisitation"):
        covisits = covisited_pairs(events, params)
        neighbours = pd.concat(
            [item_neighbours(covisits, s, params).assign(cutoff_date=s) for s in cutoffs],
            ignore_index=True,
        )
    outputs = {
        "user_features": pd.concat(user_frames, ignore_index=True),
        "item_features": pd.concat(item_frames, ignore_index=True),
        "item_neighbours": neighbours,
    }
    with timer.phase("write"):
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, frame in outputs.items():
            frame.to_parquet(out_dir / f"{name}.parquet", index=False)
    return {
        "rows": {"events": len(events), **{name: len(f) for name, f in outputs.items()}},
        "cutoffs": [s.date().isoformat() for s in cutoffs],
        "phase_seconds": timer.seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m recflow.bench.pandas_baseline", description=__doc__
    )
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    summary = build_features(args.data_dir, args.out_dir, BaselineParams.from_dbt_project())
    (args.out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
