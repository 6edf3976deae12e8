"""Incremental builds give exactly the tables a full refresh gives.

The raw log grows by a day; some events of the two days before arrive only now (late), and one
already stored event arrives again (a duplicate). An incremental build of the grown log must
leave every model equal, row for row, to a full refresh of the same log.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import Isolation, TinySample, query, run_dbt_command

from recflow.samples.events import write_data_dir

pytestmark = pytest.mark.dbt

INCREMENTAL_MODELS = (
    "base_app__events_validated",
    "int_user_item_interactions_daily",
    "int_item_pairs_covisited",
    # Per cutoff: closed cutoffs stay as stored, open ones are recomputed.
    "int_user_items_aggregated",
    "int_item_neighbours_ranked",
    "int_item_neighbours_cosine",
    "int_item_popularity_ranked",
    "int_user_category_affinities",
    "int_user_item_labels",
    "int_candidates_labelled",
    "int_users_featurized",
    "int_items_featurized",
    "int_candidates_generated",
    # Also rebuilds the cutoffs whose split moved (sampling follows the split).
    "training_examples",
)
COMPARED_MODELS = (
    *INCREMENTAL_MODELS,
    "stg_app__quarantined_rows",
    "int_cutoffs_scheduled",
    "int_event_days_before_cutoffs",
    "scoring_candidates",
    "item_features",
    "label_window_positives",
    "known_users",
    "user_item_history",
    "int_labelled_users_sampled",
    "event_log_summary",
)


def split_events(events: pa.Table, days_cut: int) -> tuple[pa.Table, pa.Table]:
    """The log as stored yesterday, and what arrives today: the last day, a tenth of the two
    days before it (late events), and a copy of one event stored yesterday.

    The log first loses its last `days_cut` days of events, which moves where its end falls on
    the weekly cutoff calendar. Events stamped in the future (quarantined) stay in yesterday's
    log: the last day is the last one before now.
    """
    event_at = events["event_at"]
    now = pa.scalar(datetime.now(UTC), event_at.type)
    is_past = pc.fill_null(pc.less_equal(event_at, now), False)
    last_logged_day = pc.floor_temporal(pc.max(pc.filter(event_at, is_past)), unit="day").as_py()
    last_day = last_logged_day - timedelta(days=days_cut)
    after_last_day = pc.fill_null(
        pc.and_(is_past, pc.greater_equal(event_at, pa.scalar(last_day + timedelta(days=1)))),
        False,
    )
    events = events.filter(pc.invert(after_last_day))
    event_at = events["event_at"]
    is_past = pc.fill_null(pc.less_equal(event_at, now), False)
    is_today = pc.fill_null(
        pc.and_(is_past, pc.greater_equal(event_at, pa.scalar(last_day, event_at.type))), False
    )
    in_late_window = pc.fill_null(
        pc.and_(
            pc.greater_equal(event_at, pa.scalar(last_day - timedelta(days=2), event_at.type)),
            pc.and_(is_past, pc.invert(is_today)),
        ),
        False,
    )
    every_tenth = pa.array([index % 10 == 0 for index in range(events.num_rows)])
    arrives_late = pc.and_(in_late_window, every_tenth)
    arrives_today = pc.or_(is_today, arrives_late)
    stored = events.filter(pc.invert(arrives_today))
    stored_recently = stored.filter(
        pc.fill_null(in_late_window, False).filter(pc.invert(arrives_today))
    )
    duplicate = stored_recently.slice(0, 1)
    assert pc.sum(arrives_late).as_py() > 0 and duplicate.num_rows == 1
    return stored, pa.concat_tables([stored, events.filter(arrives_today), duplicate])


def write_log(sample: TinySample, events: pa.Table, data_dir: Path) -> Path:
    write_data_dir({**sample.data.tables, "events": events}, data_dir, file_format="parquet")
    return data_dir


def differing_rows(left: Path, right: Path, model: str) -> int:
    """Rows of `model` in one warehouse and not the other, either way (duplicates counted)."""
    sql = f"""
        attach '{right}' as other (read_only);
        select
            (select count(*) from (
                select * from main.{model} except all select * from other.main.{model}))
            + (select count(*) from (
                select * from other.main.{model} except all select * from main.{model}))
    """
    *_, (count,) = query(left, sql)
    return count


# The tiny log's last day is a Sunday, so appending it closes a label window (a new test
# cutoff; validation and train shift and the oldest train cutoff leaves the spine); cut
# three days earlier, appending a day only moves the scoring cutoff.
@pytest.mark.parametrize("days_cut", [0, 3], ids=["closes_a_label_window", "moves_scoring_only"])
def test_an_incremental_day_equals_a_full_refresh(
    tiny_sample: TinySample, tmp_path: Path, days_cut: int
) -> None:
    stored, grown = split_events(tiny_sample.data.tables["events"], days_cut)
    yesterday = write_log(tiny_sample, stored, tmp_path / "log_yesterday")
    today = write_log(tiny_sample, grown, tmp_path / "log_today")

    incremental = Isolation.under(tmp_path / "incremental", yesterday)
    first = run_dbt_command(incremental, "build")
    assert first.returncode == 0, first.output
    test_cutoff_sql = "select cutoff_date from int_cutoffs_scheduled where split = 'test'"
    test_cutoff_before = query(incremental.duckdb_path, test_cutoff_sql)
    incremental = Isolation(today, incremental.duckdb_path, incremental.target_path)
    second = run_dbt_command(incremental, "build")
    assert second.returncode == 0, second.output
    closed_a_window = query(incremental.duckdb_path, test_cutoff_sql) != test_cutoff_before
    assert closed_a_window == (days_cut == 0)
    for model in INCREMENTAL_MODELS:
        assert f"incremental model main.{model}" in second.output

    full = Isolation.under(tmp_path / "full", today)
    refreshed = run_dbt_command(full, "build", "--full-refresh")
    assert refreshed.returncode == 0, refreshed.output

    assert query(
        incremental.duckdb_path,
        "select count(*) from stg_app__quarantined_rows where quarantine_reason = "
        "'duplicate_event'",
    ) == query(
        full.duckdb_path,
        "select count(*) from stg_app__quarantined_rows where quarantine_reason = "
        "'duplicate_event'",
    )
    differences = {
        model: differing_rows(incremental.duckdb_path, full.duckdb_path, model)
        for model in COMPARED_MODELS
    }
    assert differences == dict.fromkeys(COMPARED_MODELS, 0)
