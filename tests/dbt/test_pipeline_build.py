"""The dbt pipeline end to end on the tiny generated sample: it builds, loses no row, splits by
time, and its features only ever look at events before their cutoff."""

from __future__ import annotations

import json
import shutil
from bisect import bisect_left
from collections import Counter, defaultdict
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conftest import (
    MARTS,
    STAGING_BUILD,
    Isolation,
    TinySample,
    TinyWarehouse,
    query,
    run_dbt_command,
    scalar,
)

from recflow.samples.events import write_data_dir

pytestmark = pytest.mark.dbt

POINT_IN_TIME_TEST = "assert_features_use_only_events_before_their_cutoff"
STAGED_EVENT_COLUMNS = "user_id, item_id, event_type, event_at, event_value"


def quarantined_by_reason(duckdb_path: Path, source_table: str) -> dict[str, int]:
    rows = query(
        duckdb_path,
        "select quarantine_reason, count(*) from stg_app__quarantined_rows "
        f"where source_table = '{source_table}' group by all",
    )
    return dict(rows)


def test_build_passes_every_model_data_test_unit_test_and_the_point_in_time_test(
    tiny_warehouse: TinyWarehouse,
) -> None:
    """`dbt build` on the tiny Parquet sample succeeds, and it really ran models, unit tests and
    the singular point-in-time test (a build that silently skipped them would also exit 0)."""
    # Exposures (the trainer, the app) are in the build's graph but run nothing: no-op.
    statuses = {
        node.unique_id: node.status
        for node in tiny_warehouse.build.nodes
        if not node.unique_id.startswith("exposure.")
    }
    not_ok = {uid: status for uid, status in statuses.items() if status not in ("success", "pass")}
    # The only tolerated non-pass is a warn-severity data test (quarantine and relationships).
    assert all(status == "warn" for status in not_ok.values()), not_ok
    assert all(uid.startswith("test.") for uid in not_ok), not_ok

    built_models = {uid.split(".")[-1] for uid in statuses if uid.startswith("model.")}
    assert set(MARTS) <= built_models
    assert "stg_app__quarantined_rows" in built_models
    unit_tests = [uid for uid in statuses if uid.startswith("unit_test.")]
    assert unit_tests, "no dbt unit test ran"
    assert all(statuses[uid] == "pass" for uid in unit_tests)
    assert statuses[f"test.recflow.{POINT_IN_TIME_TEST}"] == "pass"


def test_quarantine_counts_match_the_injected_dirty_rows_and_nothing_is_lost(
    tiny_warehouse: TinyWarehouse,
) -> None:
    """Each injected problem row lands in quarantine under its own reason, with the exact count
    the generator reports; every raw row is either staged or quarantined."""
    path, tables = tiny_warehouse.duckdb_path, tiny_warehouse.sample.tables

    quarantined_events = quarantined_by_reason(path, "events")
    assert quarantined_events == tiny_warehouse.sample.dirty_counts
    # The generator's catalogue and user tables are clean.
    assert quarantined_by_reason(path, "items") == {}
    assert quarantined_by_reason(path, "users") == {}

    staged_events = scalar(path, "select count(*) from stg_app__events")
    assert staged_events + sum(quarantined_events.values()) == tables["events"].num_rows
    assert scalar(path, "select count(*) from stg_app__items") == tables["items"].num_rows
    assert scalar(path, "select count(*) from stg_app__users") == tables["users"].num_rows


def test_marts_are_populated_and_split_by_time(tiny_warehouse: TinyWarehouse) -> None:
    """Every mart has rows; train, validation and test each have rows and positive labels and
    follow each other in time; scoring is one cutoff after all labelled ones."""
    path = tiny_warehouse.duckdb_path
    empty = [mart for mart in MARTS if scalar(path, f"select count(*) from {mart}") == 0]
    assert not empty

    splits = {
        split: (rows, positives, first, last)
        for split, rows, positives, first, last in query(
            path,
            "select split, count(*), sum(label), min(cutoff_date), max(cutoff_date) "
            "from training_examples group by split",
        )
    }
    assert set(splits) == {"train", "validation", "test"}
    for split, (rows, positives, _, _) in splits.items():
        assert rows > 0 and positives > 0, split
    assert splits["train"][3] < splits["validation"][2]
    assert splits["validation"][3] < splits["test"][2]

    scoring_dates = query(path, "select distinct cutoff_date from scoring_candidates")
    assert len(scoring_dates) == 1
    assert scoring_dates[0][0] > splits["test"][3]


def test_user_features_equal_a_recount_of_earlier_staged_events(
    tiny_warehouse: TinyWarehouse,
) -> None:
    """Recomputed in Python from `stg_app__events`, every int_users_featurized row has the
    same user_events_total (events before the cutoff), user_events_7d (events on the 7 days
    before it) and last_event_at, and every user with an earlier event has a row at that
    cutoff."""
    path = tiny_warehouse.duckdb_path
    event_times: dict[str, list[datetime]] = defaultdict(list)
    for user_id, event_at in query(path, "select user_id, event_at from stg_app__events"):
        event_times[user_id].append(event_at)
    for times in event_times.values():
        times.sort()

    features = query(
        path,
        "select user_id, cutoff_date, user_events_total, user_events_7d, last_event_at"
        " from int_users_featurized",
    )
    assert features
    cutoffs: set[date] = set()
    mismatches = []
    for user_id, cutoff_date, events_total, events_7d, last_event_at in features:
        cutoffs.add(cutoff_date)
        times = event_times.get(user_id, [])
        cutoff = datetime.combine(cutoff_date, time())
        before = bisect_left(times, cutoff)
        week_start = bisect_left(times, cutoff - timedelta(days=7))
        expected = (before, before - week_start, times[before - 1] if before else None)
        if (events_total, events_7d, last_event_at) != expected:
            mismatches.append((user_id, cutoff_date, (events_total, events_7d), expected))
    assert not mismatches, mismatches[:5]

    keys = {(user_id, cutoff_date) for user_id, cutoff_date, *_ in features}
    expected_keys = {
        (user_id, cutoff)
        for user_id, times in event_times.items()
        for cutoff in cutoffs
        if times[0] < datetime.combine(cutoff, time())
    }
    assert keys == expected_keys


def test_no_feature_row_uses_an_event_at_or_after_its_cutoff(
    tiny_warehouse: TinyWarehouse,
) -> None:
    """int_users_featurized and int_items_featurized never carry a last_event_at on or after
    cutoff_date (and do carry some, so the check is not vacuous)."""
    for mart in ("int_users_featurized", "int_items_featurized"):
        late, dated = query(
            tiny_warehouse.duckdb_path,
            "select count(*) filter (where last_event_at >= cast(cutoff_date as timestamp)), "
            f"count(last_event_at) from {mart}",
        )[0]
        assert late == 0, mart
        assert dated > 0, mart


def test_csv_sample_stages_the_same_events_and_quarantines_unparseable_timestamps(
    tiny_sample: TinySample, tiny_warehouse: TinyWarehouse, tmp_path: Path
) -> None:
    """The same tiny sample written as CSV (text timestamps, plus injected unparseable ones)
    stages exactly the events the Parquet build staged, and quarantines each injected row as
    unparseable_event_at next to the usual dirty rows. Staging only: the marts read nothing
    format-specific, so a second full build would add time, not coverage."""
    csv_dir = tmp_path / "csv_data"
    written = write_data_dir(tiny_sample.data.tables, csv_dir, file_format="csv")
    assert written.unparseable_event_at > 0
    isolation = Isolation.under(tmp_path / "work", csv_dir)

    result = run_dbt_command(isolation, *STAGING_BUILD)
    assert result.returncode == 0, result.output

    expected = {
        **tiny_sample.data.dirty_counts,
        "unparseable_event_at": written.unparseable_event_at,
    }
    assert quarantined_by_reason(isolation.duckdb_path, "events") == expected

    staged_sql = f"select {STAGED_EVENT_COLUMNS} from stg_app__events"
    from_csv = Counter(query(isolation.duckdb_path, staged_sql))
    from_parquet = Counter(query(tiny_warehouse.duckdb_path, staged_sql))
    assert from_csv.total() == from_parquet.total()
    assert from_csv == from_parquet


def test_point_in_time_test_fails_when_a_feature_row_leaks_its_cutoff(
    tiny_warehouse: TinyWarehouse, tmp_path: Path
) -> None:
    """The singular point-in-time test is not vacuous: on a copy of the built warehouse where one
    int_users_featurized row claims an event at its cutoff instant, it fails and dbt exits
    non-zero."""
    # Same file name: dbt-duckdb names the catalog after the file, and staged views refer to it.
    mutant = tmp_path / "mutant" / tiny_warehouse.duckdb_path.name
    mutant.parent.mkdir()
    shutil.copyfile(tiny_warehouse.duckdb_path, mutant)
    with duckdb.connect(str(mutant)) as connection:
        user_id, cutoff_date = connection.execute(
            "select user_id, cutoff_date from int_users_featurized order by all limit 1"
        ).fetchall()[0]
        connection.execute(
            "update int_users_featurized set last_event_at = cast(cutoff_date as timestamp) "
            "where user_id = ? and cutoff_date = ?",
            [user_id, cutoff_date],
        )
    isolation = Isolation(
        data_dir=tiny_warehouse.data_dir,
        duckdb_path=mutant,
        target_path=tmp_path / "mutant" / "dbt_target",
    )

    result = run_dbt_command(isolation, "test", "--select", POINT_IN_TIME_TEST)

    assert result.returncode != 0, result.output
    assert f"FAIL 1 {POINT_IN_TIME_TEST}" in result.output, result.output


def test_every_column_of_every_stored_model_is_documented(tiny_warehouse: TinyWarehouse) -> None:
    """dbt-bouncer checks the columns the YAML declares; this checks the YAML declares every
    column the built tables have. A feature column is documented once, in training_examples (its
    one declaration), and counts as documented wherever it flows through."""
    manifest = json.loads((tiny_warehouse.isolation.target_path / "manifest.json").read_text())
    models = {
        node["name"]: node
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["package_name"] == "recflow"
    }

    def described(node: dict[str, Any]) -> set[str]:
        return {name for name, column in node["columns"].items() if column["description"].strip()}

    features = described(models["training_examples"])
    undocumented = {}
    for name, node in models.items():
        if node["config"]["materialized"] == "ephemeral" or "serving" in node["tags"]:
            continue  # no relation to compare (serving needs the trainer's output)
        assert node["description"].strip(), f"{name} has no description"
        built = {
            row[0]
            for row in query(
                tiny_warehouse.duckdb_path,
                "select column_name from information_schema.columns "
                f"where table_name = '{node['alias']}'",
            )
        }
        assert built, f"{name} was not built"
        if missing := built - described(node) - features:
            undocumented[name] = sorted(missing)
    assert not undocumented, json.dumps(undocumented)
