"""What the notebook baselines (pandas_baseline, polars_baseline) share and is not tied to either
library: the dbt vars they read, the dbt models they repeat, the cutoff calendar, the phase
timer and the command line that writes their summary.

Each baseline module supplies one `build_features(data_dir, out_dir, params)` that writes
`user_features`, `item_features` and `item_neighbours` as Parquet into `out_dir` and returns
the summary (rows, cutoffs, phase seconds); `run_cli` turns it into the step's process.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from recflow.pipeline.settings import project_vars

log = logging.getLogger(__name__)

# The dbt models whose work the baselines repeat (the rest of the build, candidates, training
# examples and tests, they leave out), for a like-for-like ratio beside the full build's. The
# staging views and the ephemeral int_interactions_before_cutoffs run inside these.
DBT_MODELS_MIRRORED = frozenset(
    {
        "base_app__events_validated",
        "base_app__items_validated",
        "base_app__users_validated",
        "int_user_item_interactions_daily",
        "int_cutoffs_scheduled",
        "int_event_days_before_cutoffs",
        "int_user_items_aggregated",
        "int_user_category_affinities",
        "int_users_featurized",
        "int_item_popularity_ranked",
        "int_items_featurized",
        "item_features",
        "int_item_pairs_covisited",
        "int_item_neighbours_ranked",
    }
)
# The three feature tables every baseline writes, with their columns in order: dbt's, under
# int_users_featurized's names without the `user_` prefix, the item_features mart's, and
# int_item_neighbours_ranked's (without its rank).
OUTPUT_COLUMNS = {
    "user_features": (
        "user_id",
        "segment",
        "events_7d",
        "events_28d",
        "events_total",
        "positive_events_28d",
        "distinct_items_total",
        "active_days_total",
        "favourite_category_share",
        "days_since_last_event",
        "days_since_first_event",
        "days_since_signup",
        "cutoff_date",
        "last_event_at",
    ),
    "item_features": (
        "item_id",
        "category",
        "users_1d",
        "users_7d",
        "users_28d",
        "users_total",
        "events_28d",
        "positive_events_28d",
        "positive_rate_28d",
        "popularity_rank",
        "popularity_all_rank",
        "category_popularity_rank",
        "days_since_created",
        "days_since_last_event",
        "cutoff_date",
        "last_event_at",
    ),
    "item_neighbours": (
        "cutoff_date",
        "item_id",
        "related_item_id",
        "covisit_count",
        "last_covisit_date",
    ),
}
# Fixed in the dbt project (the popularity_windows_days macro), not a var.
POPULARITY_WINDOWS_DAYS = (1, 7, 28)

BuildFeatures = Callable[[Path, Path, "BaselineParams"], dict[str, Any]]


@dataclass(frozen=True)
class BaselineParams:
    """The dbt vars the features depend on."""

    event_weights: Mapping[str, float]
    positive_event_types: frozenset[str]
    cutoff_calendar_anchor: date
    cutoff_interval_days: int
    label_window_days: int
    train_cutoff_count: int
    validation_cutoff_count: int
    test_cutoff_count: int
    min_history_days: int
    popularity_windows_days: tuple[int, ...]
    popularity_rank_window_days: int
    category_affinity_lookback_days: int
    covisit_max_positions: int
    covisit_max_minutes: int
    covisit_lookback_days: int
    covisit_neighbours_per_item: int

    @classmethod
    def from_dbt_project(cls) -> BaselineParams:
        """The project's own vars, so the baselines follow any change to them."""
        dbt_vars = project_vars()
        event_types = dbt_vars["event_types"]
        return cls(
            event_weights={name: float(c["weight"]) for name, c in event_types.items()},
            positive_event_types=frozenset(n for n, c in event_types.items() if c["is_positive"]),
            cutoff_calendar_anchor=date.fromisoformat(str(dbt_vars["cutoff_calendar_anchor"])),
            popularity_windows_days=POPULARITY_WINDOWS_DAYS,
            **{
                name: int(dbt_vars[name])
                for name in (
                    "cutoff_interval_days",
                    "label_window_days",
                    "train_cutoff_count",
                    "validation_cutoff_count",
                    "test_cutoff_count",
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


def cutoff_dates(first_event: date, last_event: date, params: BaselineParams) -> list[date]:
    """`int_cutoffs_scheduled`' spine: the labelled cutoffs on the calendar back from the latest
    one whose label window has closed, and the scoring date (the day after the last event),
    keeping those with `min_history_days` of history before them; oldest first."""
    scoring = last_event + timedelta(days=1)
    interval = params.cutoff_interval_days
    closed_by = scoring - timedelta(days=params.label_window_days)
    latest_closed = params.cutoff_calendar_anchor + timedelta(
        days=interval * ((closed_by - params.cutoff_calendar_anchor).days // interval)
    )
    labelled = params.train_cutoff_count + params.validation_cutoff_count + params.test_cutoff_count
    spine = {latest_closed - timedelta(days=interval * k) for k in range(labelled)} | {scoring}
    earliest = first_event + timedelta(days=params.min_history_days)
    return sorted(c for c in spine if c >= earliest)


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


def summary(
    events: int, table_rows: Mapping[str, int], cutoffs: list[date], timer: PhaseTimer
) -> dict[str, Any]:
    """What summary.json holds: rows per table, the cutoffs and the seconds per phase."""
    return {
        "rows": {"events": events, **table_rows},
        "cutoffs": [c.isoformat() for c in cutoffs],
        "phase_seconds": timer.seconds,
    }


def run_cli(
    argv: list[str] | None, *, prog: str, description: str | None, build: BuildFeatures
) -> int:
    """`python -m <baseline> --data-dir D --out-dir O`: build the features, write summary.json."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    result = build(args.data_dir, args.out_dir, BaselineParams.from_dbt_project())
    (args.out_dir / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0
