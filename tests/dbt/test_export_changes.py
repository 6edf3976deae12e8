"""The warehouse knows which export it was built from (dbt/macros/provenance).

An incremental build recomputes only its last days; an export that changed before them (another
export, a backfilled day, a deleted user) must never be merged silently: a plain `dbt build`
stops naming the change and the command, `recflow run` rebuilds fully and says why.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import (
    DBT_PROJECT_DIR,
    Isolation,
    TinyWarehouse,
    run_dbt_command,
    run_recflow_cli,
    scalar,
)

from recflow.samples.events import SCALES, generate, write_data_dir

pytestmark = pytest.mark.dbt

# Vars a build reads that do not shape the rows of stored tables.
RUN_TIME_VARS = {
    "as_of",
    "incremental_lookback_days",
    "recommendations_per_user",
    # Which partitions the data tests read (dbt/macros/testing): judges rows, never shapes them.
    "data_test_scope",
    # Thresholds of the monitoring tests: they judge stored rows, never shape them.
    "monitoring_trailing_days",
    "monitoring_quality_warn_drop",
    "monitoring_quality_error_drop",
    "monitoring_psi_warn",
    "monitoring_psi_error",
}


def _copy_of(warehouse: TinyWarehouse, work_dir: Path, data_dir: Path) -> Isolation:
    """A private copy of the built tiny warehouse, reading `data_dir` from now on."""
    isolation = Isolation.under(work_dir, data_dir)
    shutil.copy(warehouse.duckdb_path, isolation.duckdb_path)
    return isolation


def _raw_events(data_dir: Path) -> int:
    return pq.read_metadata(data_dir / "events.parquet").num_rows


def _staged_plus_quarantined_events(duckdb_path: Path) -> int:
    return scalar(
        duckdb_path,
        "select (select count(*) from stg_app__events) + (select count(*) "
        "from stg_app__quarantined_rows where source_table = 'events')",
    )


def _export_changes(isolation: Isolation) -> list[str]:
    result = run_dbt_command(isolation, "--quiet", "run-operation", "export_changes")
    assert result.returncode == 0, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith('{"export_')]
    return json.loads(line)["export_changes"]


def test_another_export_stops_a_plain_build_and_recflow_run_rebuilds_from_it(
    tiny_warehouse: TinyWarehouse, tmp_path: Path
) -> None:
    other_export = tmp_path / "export_b"
    write_data_dir(
        generate(dataclasses.replace(SCALES["tiny"], seed=99)).tables,
        other_export,
        file_format="parquet",
    )
    isolation = _copy_of(tiny_warehouse, tmp_path / "work", other_export)

    plain = run_dbt_command(isolation, "build")
    assert plain.returncode != 0
    assert "The export changed where an incremental build would keep the stored rows" in (
        plain.output
    )
    assert f"this build reads '{other_export}'" in plain.output
    assert "stored day(s) of events changed" in plain.output
    assert "recflow run --full-refresh" in plain.output

    run = run_recflow_cli(isolation, "run", "--data-dir", str(other_export), "--skip-training")
    assert run.returncode == 0, run.output
    assert "the export changed since the last build" in run.output
    assert "rebuilding every table from this export" in run.output
    assert _staged_plus_quarantined_events(isolation.duckdb_path) == _raw_events(other_export)
    # Recorded: the next build of the same export is incremental again.
    assert _export_changes(isolation) == []


def test_a_backfilled_day_and_a_deleted_user_are_named_and_reach_every_table(
    tiny_warehouse: TinyWarehouse, tmp_path: Path
) -> None:
    tables = {
        name: pq.read_table(tiny_warehouse.data_dir / f"{name}.parquet")
        for name in ("events", "items", "users")
    }
    events = tables["events"]
    valid_times = pc.drop_null(events["event_at"])
    deleted_user = events["user_id"][0].as_py()
    kept = events.filter(pc.not_equal(events["user_id"], deleted_user))
    backfilled = pa.table(
        {
            "user_id": ["backfilled_user"],
            "item_id": [tables["items"]["item_id"][0].as_py()],
            "event_type": ["purchase"],
            "event_at": [pc.min(valid_times).as_py() - timedelta(days=10)],
            "value": [None],
        },
        schema=events.schema,
    )
    tables["events"] = pa.concat_tables([kept, backfilled])
    users = tables["users"].filter(pc.not_equal(tables["users"]["user_id"], deleted_user))
    # The backfilled user is listed: events of unlisted users are quarantined (unknown_user).
    listed = pa.table(
        {"user_id": ["backfilled_user"], "signup_at": [None], "segment": [None]},
        schema=users.schema,
    )
    tables["users"] = pa.concat_tables([users, listed])
    changed_export = tmp_path / "export_changed"
    changed_export.mkdir()
    for name, table in tables.items():
        pq.write_table(table, changed_export / f"{name}.parquet")
    isolation = _copy_of(tiny_warehouse, tmp_path / "work", changed_export)

    changes = _export_changes(isolation)
    assert any(re.search(r"1 stored day\(s\) of events added \(a backfill\)", c) for c in changes)
    assert any("stored day(s) of events changed" in change for change in changes), changes

    run = run_recflow_cli(isolation, "run", "--data-dir", str(changed_export), "--skip-training")
    assert run.returncode == 0, run.output
    assert _staged_plus_quarantined_events(isolation.duckdb_path) == tables["events"].num_rows
    for table in (
        "stg_app__events",
        "known_users",
        "user_item_history",
        "int_candidates_generated",
    ):
        sql = f"select count(*) from {table} where user_id = '{deleted_user}'"
        assert scalar(isolation.duckdb_path, sql) == 0, table
    assert (
        scalar(
            isolation.duckdb_path,
            "select count(*) from stg_app__events where user_id = 'backfilled_user'",
        )
        == 1
    )


def test_a_changed_var_that_shapes_stored_tables_stops_a_plain_build(
    tiny_warehouse: TinyWarehouse, tmp_path: Path
) -> None:
    isolation = _copy_of(tiny_warehouse, tmp_path / "work", tiny_warehouse.data_dir)
    assert _export_changes(isolation) == []

    result = run_dbt_command(isolation, "build", "--vars", '{"covisit_max_positions": 3}')

    assert result.returncode != 0
    assert "var covisit_max_positions was 5 when the stored tables were built, now 3" in (
        result.output
    )


def test_every_project_var_is_either_recorded_or_run_time_only() -> None:
    project_vars = set(yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())["vars"])
    macro = (DBT_PROJECT_DIR / "macros" / "provenance" / "export_fingerprint.sql").read_text()
    listed = macro.split("set names = [", 1)[1].split("]", 1)[0]
    recorded = set(re.findall(r"'([a-z_]+)'", listed))

    assert recorded | RUN_TIME_VARS == project_vars
    assert not recorded & RUN_TIME_VARS


def test_an_item_leaving_then_rejoining_the_catalogue_rebuilds_its_stored_events(
    tiny_warehouse: TinyWarehouse, tmp_path: Path
) -> None:
    """Staging checks events against the current catalogue; the stored days before the window
    were staged by the old one, so an item that left (or joined) the catalogue and has events
    there needs a full refresh, or a removed item would still be recommended from them."""
    items = pq.read_table(tiny_warehouse.data_dir / "items.parquet")
    first_events = pq.read_table(tiny_warehouse.data_dir / "events.parquet").sort_by("event_at")
    removed_item = next(
        item
        for item in first_events["item_id"].to_pylist()
        if item in set(items["item_id"].to_pylist())
    )
    without_item = tmp_path / "export_without_item"
    shutil.copytree(tiny_warehouse.data_dir, without_item)
    pq.write_table(
        items.filter(pc.not_equal(items["item_id"], removed_item)), without_item / "items.parquet"
    )
    isolation = _copy_of(tiny_warehouse, tmp_path / "work", without_item)

    assert _export_changes(isolation)[1:] == [
        "1 items removed from the items table have events stored before the incremental window"
    ]
    run = run_recflow_cli(isolation, "run", "--data-dir", str(without_item), "--skip-training")
    assert run.returncode == 0, run.output
    for table in (
        "stg_app__events",
        "user_item_history",
        "int_candidates_generated",
        "scoring_candidates",
    ):
        sql = f"select count(*) from {table} where item_id = '{removed_item}'"
        assert scalar(isolation.duckdb_path, sql) == 0, table
    quarantined = scalar(
        isolation.duckdb_path,
        "select count(*) from stg_app__quarantined_rows where quarantine_reason = 'unknown_item'",
    )
    assert quarantined > 0

    # Listed again: its stored events were quarantined by the old catalogue.
    back = Isolation.under(tmp_path / "work", tiny_warehouse.data_dir)
    assert _export_changes(back)[1:] == [
        "1 items added to the items table have events stored before the incremental window"
    ]
