"""The offline BigQuery check (`recflow.checks`): the real project compiles for BigQuery
without credentials or network and every statement is BigQuery SQL; DuckDB-only SQL, a macro
without a BigQuery variant and a wrong table layout fail the check, naming the model and line.

Each check is a real `dbt compile` for BigQuery (about 15 s), so the broken constructs share one
copy of the project and one check.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import DBT_PROJECT_DIR, REPO_ROOT

from recflow.checks.bigquery import check_bigquery, register
from recflow.checks.offline_compile import FAKE_DATASET, FAKE_PROJECT, FAKE_RAW_PROJECT
from recflow.checks.results import CheckResult, format_report
from recflow.pipeline.dbt_invocation import dbt_executable

pytestmark = pytest.mark.dbt


def copy_project(destination: Path) -> Path:
    """Copy `dbt/` and `analyses/` side by side (the project reads `../analyses`); return the
    copy's dbt project directory."""
    ignore = shutil.ignore_patterns("target", "logs", "*.duckdb", ".user.yml")
    shutil.copytree(DBT_PROJECT_DIR, destination / "dbt", ignore=ignore)
    shutil.copytree(REPO_ROOT / "analyses", destination / "analyses", ignore=ignore)
    return destination / "dbt"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


@pytest.fixture(scope="module")
def project_check(tmp_path_factory: pytest.TempPathFactory) -> CheckResult:
    return check_bigquery(DBT_PROJECT_DIR, work_dir=tmp_path_factory.mktemp("bigquery_check"))


def test_the_project_compiles_offline_for_bigquery_and_every_statement_parses(
    project_check: CheckResult,
) -> None:
    """Every model, data test, singular test and analysis (including the `serving` ones the
    default selector skips) compiles for BigQuery and passes every rule."""
    assert project_check.passed, format_report(project_check)
    assert project_check.manifest_path is not None
    manifest = json.loads(project_check.manifest_path.read_text())
    expected = {
        unique_id
        for unique_id, node in manifest["nodes"].items()
        if node["resource_type"] in ("model", "test", "analysis")
    }
    assert {node.unique_id for node in project_check.nodes} == expected
    model_files = {path.stem for path in (DBT_PROJECT_DIR / "models").rglob("*.sql")}
    checked = {node.name for node in project_check.nodes}
    assert model_files <= checked
    assert {"candidate_recall_by_source", "popularity_concentration"} <= checked
    assert {"assert_features_use_only_events_before_their_cutoff", "recommendations"} <= checked
    # Every node's types were resolved, so the type and layout rules really ran everywhere.
    assert not {node.name: node.notes for node in project_check.nodes if node.notes}
    assert len(project_check.unit_tests_not_compiled) == len(manifest["unit_tests"]) > 0


def test_sources_and_models_resolve_to_the_projects_and_datasets_from_the_environment(
    project_check: CheckResult,
) -> None:
    """The raw tables come from RECFLOW_RAW_PROJECT (else the target project) and
    RECFLOW_RAW_SCHEMA (default `raw`); the trainer's table from the target project's `ml`."""
    events = project_check.node("base_app__events_validated")
    assert events.compiled_path is not None
    assert f"`{FAKE_RAW_PROJECT}`.`raw`.`events`" in events.compiled_path.read_text()
    batch = project_check.node("stg_ml__batch_recommendations")
    assert batch.compiled_path is not None
    assert f"`{FAKE_PROJECT}`.`ml`.`batch_recommendations`" in batch.compiled_path.read_text()
    features = project_check.node("int_users_featurized")
    assert features.compiled_path is not None
    assert f"`{FAKE_PROJECT}`.`{FAKE_DATASET}`." in features.compiled_path.read_text()


@pytest.mark.parametrize(
    ("model", "materialized", "partition_field", "cluster_by"),
    [
        ("base_app__events_validated", "incremental", "event_date", ["user_id", "item_id"]),
        ("int_user_item_interactions_daily", "incremental", "event_date", ["user_id", "item_id"]),
        (
            "int_item_pairs_covisited",
            "incremental",
            "covisit_date",
            ["item_id", "related_item_id"],
        ),
        ("int_user_items_aggregated", "incremental", "cutoff_date", ["user_id", "item_id"]),
        ("int_candidates_labelled", "incremental", "cutoff_date", ["user_id", "item_id"]),
        ("int_candidates_generated", "incremental", "cutoff_date", ["user_id", "item_id"]),
        ("int_users_featurized", "incremental", "cutoff_date", ["user_id"]),
        ("int_items_featurized", "incremental", "cutoff_date", ["item_id"]),
        ("item_features", "table", "cutoff_date", ["item_id"]),
        ("training_examples", "incremental", "cutoff_date", ["user_id", "item_id"]),
        ("scoring_candidates", "table", "cutoff_date", ["user_id", "item_id"]),
    ],
)
def test_event_and_cutoff_tables_are_partitioned_by_day_and_clustered_on_bigquery(
    project_check: CheckResult,
    model: str,
    materialized: str,
    partition_field: str,
    cluster_by: list[str],
) -> None:
    """Event-driven and per-cutoff models replace whole day partitions (insert_overwrite);
    scoring_candidates, rebuilt from the day's cutoff, is a table; all are partitioned by day
    and clustered on their keys."""
    assert project_check.manifest_path is not None
    node = json.loads(project_check.manifest_path.read_text())["nodes"][f"model.recflow.{model}"]
    assert node["config"]["materialized"] == materialized
    if materialized == "incremental":
        assert node["config"]["incremental_strategy"] == "insert_overwrite"
    assert node["config"]["partition_by"] == {
        "field": partition_field,
        "data_type": "date",
        "granularity": "day",
    }
    assert node["config"]["cluster_by"] == cluster_by


@pytest.fixture(scope="module")
def broken_check(tmp_path_factory: pytest.TempPathFactory) -> CheckResult:
    """One copy of the project, broken in several independent ways; each test below looks for
    its own breakage."""
    project_dir = copy_project(tmp_path_factory.mktemp("broken_project"))
    models = project_dir / "models"
    # DuckDB's struct_pack with := is no BigQuery grammar.
    edit(
        models / "staging/app/stg_app__users.sql",
        "        signup_at\n",
        "        signup_at,\n        struct_pack(segment := segment) as segment_struct\n",
    )
    # A DuckDB function that parses everywhere but does not exist on BigQuery.
    edit(
        models / "staging/app/stg_app__items.sql",
        "        created_at\n",
        "        created_at,\n        try_cast(item_id as int64) as item_number\n",
    )
    # DuckDB's `::` cast.
    edit(
        models / "intermediate/labels/int_user_item_labels.sql",
        "count(*) as positive_event_count",
        "count(*)::int64 as positive_event_count",
    )
    # A TIMESTAMP compared with a DATE: fine on DuckDB, "no matching signature" on BigQuery.
    edit(
        models / "intermediate/features/int_items_featurized.sql",
        "items.created_at < cast(cutoffs.cutoff_date as timestamp)",
        "items.created_at < cutoffs.cutoff_date",
    )
    # A partition column the model does not have.
    edit(
        models / "marts/ml/label_window_positives.sql",
        "partition_date='cutoff_date'",
        "partition_date='cutoff_day'",
    )
    # An incremental model whose incremental branch only (compiled only when the table
    # exists) uses DuckDB's `select * exclude`.
    (models / "intermediate/interactions/int_events_appended.sql").write_text(
        "{{ config(materialized='incremental') }}\n"
        "select user_id, item_id, event_at from {{ ref('stg_app__events') }}\n"
        "{% if is_incremental() %}\n"
        "where event_at > (\n"
        "    select max(event_at) from (select * exclude (user_id) from {{ this }})\n"
        ")\n"
        "{% endif %}\n"
    )
    return check_bigquery(project_dir, work_dir=tmp_path_factory.mktemp("broken_check"))


@pytest.mark.parametrize(
    ("model", "check", "snippet"),
    [
        ("stg_app__users", "grammar", "struct_pack(segment := segment)"),
        ("stg_app__items", "function", "try_cast(item_id as int64)"),
        ("int_user_item_labels", "cast-operator", "count(*)::int64"),
        ("int_items_featurized", "types", "items.created_at < cutoffs.cutoff_date"),
    ],
)
def test_duckdb_only_sql_fails_the_check_naming_the_model_line_and_snippet(
    broken_check: CheckResult, model: str, check: str, snippet: str
) -> None:
    result = broken_check.node(model)
    assert [problem.check for problem in result.problems] == [check], result.problems
    (problem,) = result.problems
    assert problem.path == result.compiled_path
    assert problem.line is not None
    assert result.compiled_path is not None
    compiled_line = result.compiled_path.read_text().splitlines()[problem.line - 1]
    assert snippet in compiled_line
    assert snippet in problem.snippet
    report = format_report(broken_check)
    assert f"model {model}: {result.source_path}" in report
    assert f"{result.compiled_path}:{problem.line}" in report


def test_a_partition_column_the_model_lacks_fails_the_check(broken_check: CheckResult) -> None:
    (problem,) = broken_check.node("label_window_positives").problems
    assert problem.check == "physical-design"
    assert "`cutoff_day` is not a column of the model" in problem.message
    assert problem.path == Path("models/marts/ml/label_window_positives.sql")
    assert problem.snippet == "partition_date='cutoff_day', cluster_by=['user_id', 'item_id']"


def test_the_incremental_branch_of_an_incremental_model_is_checked_too(
    broken_check: CheckResult,
) -> None:
    """Compiled offline as a full refresh it passes; its incremental SQL fails."""
    assert broken_check.node("int_events_appended").passed
    incremental = broken_check.node("int_events_appended", mode="incremental")
    assert [problem.check for problem in incremental.problems] == ["grammar"]
    assert "exclude (user_id)" in incremental.problems[0].snippet
    assert "(incremental run)" in format_report(broken_check)


def test_only_the_broken_nodes_fail(broken_check: CheckResult) -> None:
    assert not broken_check.passed
    assert not broken_check.errors
    failing = {(node.name, node.mode) for node in broken_check.failures}
    assert failing == {
        ("stg_app__users", "full_refresh"),
        ("stg_app__items", "full_refresh"),
        ("int_user_item_labels", "full_refresh"),
        # Incremental models are compiled both ways, and these break both.
        ("int_user_item_labels", "incremental"),
        ("int_items_featurized", "full_refresh"),
        ("int_items_featurized", "incremental"),
        ("label_window_positives", "full_refresh"),
        ("int_events_appended", "incremental"),
    }


def test_a_macro_with_only_a_duckdb_variant_fails_naming_the_model_that_uses_it(
    tmp_path: Path,
) -> None:
    """dbt stops parsing on the missing dispatch candidate without naming a node; the check
    names the model that calls the macro, through another macro."""
    project_dir = copy_project(tmp_path / "project")
    (project_dir / "macros/epoch_seconds.sql").write_text(
        "{% macro epoch_seconds(column) %}\n"
        "    {{ return(adapter.dispatch('epoch_seconds', 'recflow')(column)) }}\n"
        "{% endmacro %}\n"
        "{% macro duckdb__epoch_seconds(column) %}epoch({{ column }}){% endmacro %}\n"
        "{% macro event_epoch() %}{{ epoch_seconds('event_at') }}{% endmacro %}\n"
    )
    edit(
        project_dir / "models/intermediate/interactions/int_user_item_interactions_daily.sql",
        "        max(event_at) as last_event_at\n",
        "        max(event_at) as last_event_at,\n        max({{ event_epoch() }}) as last_epoch\n",
    )
    result = check_bigquery(project_dir, work_dir=tmp_path / "work")

    assert not result.passed
    (failure,) = result.failures
    assert failure.name == "int_user_item_interactions_daily"
    assert failure.source_path == (
        "models/intermediate/interactions/int_user_item_interactions_daily.sql"
    )
    (problem,) = failure.problems
    assert problem.check == "compile"
    assert "`epoch_seconds`, which has no BigQuery variant" in problem.message
    assert problem.snippet == "max({{ event_epoch() }}) as last_epoch"


def test_check_bigquery_subcommand_reports_and_exits_non_zero_on_failure(
    broken_check: CheckResult, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`register` adds `check-bigquery`; its handler prints the report and returns 1 when the
    check fails (the check itself is the broken fixture's, not run again)."""
    parser = argparse.ArgumentParser(prog="recflow")
    register(parser.add_subparsers(required=True))
    args = parser.parse_args(["check-bigquery", "--work-dir", str(broken_check.work_dir)])
    monkeypatch.setattr(
        "recflow.checks.bigquery.check_bigquery", lambda *_args, **_kwargs: broken_check
    )

    assert args.handler(args) == 1
    output = capsys.readouterr().out
    assert output.startswith("BigQuery check FAILED")
    assert "[cast-operator]" in output and "count(*)::int64" in output


def test_the_prod_target_names_a_missing_environment_variable(tmp_path: Path) -> None:
    """`--target prod` without its settings stops with dbt's own message naming the variable;
    the DuckDB targets never need them."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("RECFLOW_", "DBT_"))
    }
    completed = subprocess.run(
        [
            dbt_executable(),
            "parse",
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
            "--target",
            "prod",
            "--target-path",
            str(tmp_path / "target"),
            "--log-path",
            str(tmp_path / "logs"),
        ],
        env={**env, "DO_NOT_TRACK": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode != 0
    assert "Env var required but not provided: 'RECFLOW_BQ_PROJECT'" in completed.stdout


def test_a_compile_that_outlives_its_timeout_is_killed_and_reported(tmp_path: Path) -> None:
    """A hang (for example dbt waiting on the network) never blocks the check: the dbt process
    group is killed at the timeout and the check fails saying so."""
    started = time.perf_counter()
    result = check_bigquery(DBT_PROJECT_DIR, work_dir=tmp_path, timeout_s=0.5)

    assert time.perf_counter() - started < 10
    assert not result.passed
    (error,) = result.errors
    assert "did not finish within the timeout" in error
