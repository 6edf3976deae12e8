"""`recflow review` on real manifests of changed copies of the project, plus pure unit tests.

Each scenario copies `dbt/` and `analyses/` (keeping the `../analyses` layout), changes the
copy, and runs `dbt compile` (offline, an isolated DuckDB file; the on-run-start hook reads the
tiny sample) to get a manifest with `compiled_code`. The base is compiled once per module.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import DBT_PROJECT_DIR, REPO_ROOT, Isolation, TinySample, run_command
from review_checks import assert_markdown_matches_json

from recflow.cli import main as recflow_main
from recflow.pipeline.dbt_invocation import dbt_executable
from recflow.review.findings import Location, ReviewConfig, parse_config
from recflow.review.manifest_graph import build_graph
from recflow.review.report import build_review, render_markdown, to_json
from recflow.review.scans import scan_paths

NEW_MODEL_RE_READING_RAW_EVENTS = """\
-- Events per user, straight from the raw log (re-types the columns itself).
with

raw_events as (

    select * from {{ source('app', 'events') }}

),

events_typed as (

    select
        nullif(trim(cast(user_id as {{ dbt.type_string() }})), '') as user_id,
        nullif(trim(cast(item_id as {{ dbt.type_string() }})), '') as item_id,
        nullif(lower(trim(cast(event_type as {{ dbt.type_string() }}))), '') as event_type,
        cast(event_at as {{ dbt.type_string() }}) as event_at_raw,
        cast(value as {{ dbt.type_string() }}) as event_value_raw,
        {{ dbt.safe_cast('value', type_float64()) }} as event_value,
        {{ to_utc_timestamp('event_at') }} as event_at

    from raw_events

),

counted as (

    select user_id, count(*) as raw_event_count
    from events_typed
    group by user_id

)

select * from counted
"""

ChangeFn = Callable[[Path], None]


def _compile_copy(work: Path, sample: TinySample, change: ChangeFn | None) -> dict[str, Any]:
    """Copy the project under `work`, apply `change` to the copied dbt dir, compile it."""
    project = work / "project"
    shutil.copytree(
        DBT_PROJECT_DIR, project / "dbt", ignore=shutil.ignore_patterns("target", "logs")
    )
    shutil.copytree(REPO_ROOT / "analyses", project / "analyses")
    if change is not None:
        change(project / "dbt")
    isolation = Isolation.under(work / "build", sample.parquet_dir)
    command = [
        dbt_executable(),
        "compile",
        "--select",
        "fqn:*",
        "--project-dir",
        str(project / "dbt"),
    ]
    result = run_command(command, isolation)
    assert result.returncode == 0, result.output
    return json.loads((isolation.target_path / "manifest.json").read_text())


@pytest.fixture(scope="module")
def base_manifest(
    tiny_sample: TinySample, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    return _compile_copy(tmp_path_factory.mktemp("review_base"), tiny_sample, None)


def _review(
    base: dict[str, Any], change: ChangeFn, sample: TinySample, work: Path
) -> tuple[dict[str, Any], str]:
    head = _compile_copy(work, sample, change)
    review = build_review(base, head, parse_config({}))
    report, markdown = to_json(review, 0.0), render_markdown(review, 0.0)
    assert_markdown_matches_json(report, markdown)
    return report, markdown


def _flags(report: dict[str, Any], rule: str) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["status"] == "flagged" and f["rule"] == rule]


def _scans(report: dict[str, Any], name: str) -> tuple[int, int]:
    (row,) = [r for r in report["scans"] if r["name"] == name]
    return row["before"], row["after"]


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


@pytest.mark.dbt
def test_new_model_re_reading_raw_events_is_flagged(
    base_manifest: dict[str, Any], tiny_sample: TinySample, tmp_path: Path
) -> None:
    def add_model(dbt_dir: Path) -> None:
        target = dbt_dir / "models" / "intermediate" / "interactions" / "int_user_raw_events.sql"
        target.write_text(NEW_MODEL_RE_READING_RAW_EVENTS)

    report, _ = _review(base_manifest, add_model, tiny_sample, tmp_path)

    assert [(m["name"], m["change"]) for m in report["changed_models"]] == [
        ("int_user_raw_events", "new")
    ]
    assert _scans(report, "app.events") == (1, 2)
    (raw_scan,) = _flags(report, "raw_scan_added")
    assert "app.events" in raw_scan["message"]
    (duplicate,) = _flags(report, "duplicated_logic")
    new_lines = NEW_MODEL_RE_READING_RAW_EVENTS.splitlines()
    new_line = new_lines.index("events_typed as (") + 1
    base_file = DBT_PROJECT_DIR / "models" / "staging" / "app" / "base_app__events_validated.sql"
    assert {(loc["path"], loc["line"]) for loc in duplicate["locations"]} == {
        ("models/staging/app/base_app__events_validated.sql", _line_of(base_file, "typed as (")),
        ("models/intermediate/interactions/int_user_raw_events.sql", new_line),
    }
    assert _flags(report, "source_read_by_many_models")


@pytest.mark.dbt
def test_heavily_reused_table_turned_view_raises_scans(
    base_manifest: dict[str, Any], tiny_sample: TinySample, tmp_path: Path
) -> None:
    def make_view(dbt_dir: Path) -> None:
        model = dbt_dir / "models" / "intermediate" / "cutoffs" / "int_cutoffs_scheduled.sql"
        model.write_text("{{ config(materialized='view') }}\n" + model.read_text())

    report, markdown = _review(base_manifest, make_view, tiny_sample, tmp_path)

    (changed,) = report["changed_models"]
    assert changed["materialized"] == {"before": "table", "after": "view"}
    assert "table → view" in markdown
    before, after = _scans(report, "base_app__events_validated")
    assert after - before >= 5
    # The events, and the catalogue tables the events view joins, are each read more often.
    (increase,) = [
        flag
        for flag in _flags(report, "table_scans_increased")
        if "base_app__events_validated" in flag["message"]
    ]
    assert "int_cutoffs_scheduled (view)" in increase["message"]
    assert _flags(report, "view_with_many_children")
    assert not _flags(report, "raw_scan_added")


@pytest.mark.dbt
def test_description_edit_has_no_flags(
    base_manifest: dict[str, Any], tiny_sample: TinySample, tmp_path: Path
) -> None:
    def edit_description(dbt_dir: Path) -> None:
        yml = dbt_dir / "models" / "intermediate" / "interactions" / "_interactions__models.yml"
        old = "One row per user, item and day, with event counts and the weighted score."
        yml.write_text(yml.read_text().replace(old, "Daily user-item interactions."))

    report, markdown = _review(base_manifest, edit_description, tiny_sample, tmp_path)

    assert [(m["name"], m["aspects"]) for m in report["changed_models"]] == [
        ("int_user_item_interactions_daily", ["docs"])
    ]
    assert report["summary"]["flagged"] == 0
    assert all(row["before"] == row["after"] for row in report["scans"])
    assert "None." in markdown


@pytest.mark.dbt
def test_command_writes_both_reports_and_rejects_bad_input(
    base_manifest: dict[str, Any], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "manifest.json").write_text(json.dumps(base_manifest))
    out = tmp_path / "out"
    head = str(state / "manifest.json")
    assert (
        recflow_main(["review", "--state", str(state), "--manifest", head, "--out-dir", str(out)])
        == 0
    )
    report = json.loads((out / "review.json").read_text())
    assert report["schema_version"] == 1
    # Recorded, not timed: a shared machine makes any bound on it flaky (speed is the bench's).
    assert report["runtime_seconds"] > 0
    assert "Review computed in" in (out / "review.md").read_text()
    missing = ["review", "--base-manifest", str(tmp_path / "nope.json"), "--manifest", head]
    assert recflow_main(missing) == 2


# Pure unit tests on hand-written manifests: no dbt.


def _model(
    name: str, materialized: str, parents: list[str], meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "resource_type": "model",
        "unique_id": f"model.p.{name}",
        "name": name,
        "package_name": "p",
        "original_file_path": f"models/{name}.sql",
        "config": {"materialized": materialized, "meta": meta or {}},
        "depends_on": {"nodes": parents},
        "checksum": {"checksum": name},
        "relation_name": f'"db"."main"."{name}"',
        "raw_code": "",
    }


def _manifest(models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    source = {
        "resource_type": "source",
        "unique_id": "source.p.app.events",
        "package_name": "p",
        "source_name": "app",
        "name": "events",
        "relation_name": '"db"."raw"."events"',
        "original_file_path": "models/sources.yml",
    }
    return {
        # What dbt-bouncer (the structure rules) reads of the metadata.
        "metadata": {"dbt_version": "1.11.0", "project_name": "p"},
        "nodes": {f"model.p.{name}": model for name, model in models.items()},
        "sources": {"source.p.app.events": source},
    }


def test_a_view_read_by_three_tables_is_three_scans_of_what_it_reads() -> None:
    models = {
        "stg": _model("stg", "view", ["source.p.app.events"]),
        **{t: _model(t, "table", ["model.p.stg"]) for t in ("a", "b", "c")},
        "direct": _model("direct", "incremental", ["source.p.app.events", "source.p.app.events"]),
    }
    paths = scan_paths(build_graph(_manifest(models)))
    assert sum(paths.values()) == 4
    assert paths[("model.p.a", "model.p.stg", "source.p.app.events")] == 1


def test_acknowledged_flag_shows_the_reason_instead() -> None:
    base = _manifest({"stg": _model("stg", "table", ["source.p.app.events"])})
    acknowledged = {"review_acknowledged": {"raw_scan_added": "backfill needs raw timestamps"}}
    head = _manifest(
        {
            "stg": _model("stg", "table", ["source.p.app.events"]),
            "raw": _model("raw", "table", ["source.p.app.events"], meta=acknowledged),
        }
    )
    review = build_review(base, head, ReviewConfig())
    (scan,) = [f for f in review.findings if f.rule == "raw_scan_added"]
    assert scan.status == "acknowledged"
    assert scan.reason == "raw: backfill needs raw timestamps"
    assert "backfill needs raw timestamps" in render_markdown(review, 0.0)


def test_structure_rules_are_dbt_bouncer_findings_with_the_review_thresholds() -> None:
    base = _manifest({"stg": _model("stg", "view", ["source.p.app.events"])})
    readers = {t: _model(t, "table", ["model.p.stg"]) for t in ("a", "b")}
    head = _manifest(
        {
            "stg": _model("stg", "view", ["source.p.app.events"]),
            **readers,
            "raw": _model("raw", "table", ["source.p.app.events", "model.p.a"]),
        }
    )
    review = build_review(base, head, ReviewConfig(max_view_children=1))
    flags = {(f.rule, f.subjects) for f in review.flags if f.rule != "raw_scan_added"}
    assert flags == {
        ("source_read_by_many_models", ("model.p.raw", "model.p.stg")),
        ("source_joined_with_models", ("model.p.raw",)),
        ("view_with_many_children", ("model.p.stg",)),
    }
    (joined,) = [f for f in review.flags if f.rule == "source_joined_with_models"]
    assert "check_model_does_not_directly_join_to_source" in joined.message
    assert joined.locations == (Location("models/raw.sql"),)
    # Two children are within a threshold of two.
    relaxed = build_review(base, head, ReviewConfig(max_view_children=2))
    assert not [f for f in relaxed.flags if f.rule == "view_with_many_children"]


def test_an_intermediate_model_reading_a_mart_is_flagged() -> None:
    """The DAG runs forwards: a pull request that makes an intermediate model read a mart gets
    a structure finding on that model."""

    def at(path: str, model: dict[str, Any]) -> dict[str, Any]:
        return {**model, "original_file_path": path}

    stg = at("models/staging/stg.sql", _model("stg", "view", ["source.p.app.events"]))
    mart = at("models/marts/ml/mart.sql", _model("mart", "table", ["model.p.stg"]))
    base = _manifest({"stg": stg, "mart": mart})
    backwards = at("models/intermediate/int_x.sql", _model("int_x", "table", ["model.p.mart"]))
    forwards = at("models/intermediate/int_y.sql", _model("int_y", "table", ["model.p.stg"]))
    head = _manifest({"stg": stg, "mart": mart, "int_x": backwards, "int_y": forwards})
    review = build_review(base, head, ReviewConfig())
    flagged = [f for f in review.flags if f.rule == "intermediate_reads_mart"]
    assert [f.subjects for f in flagged] == [("model.p.int_x",)]
    assert flagged[0].locations == (Location("models/intermediate/int_x.sql"),)


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown"):
        parse_config({"thresholds": {"max_view_depth": 2}})
    assert parse_config({"ignore": {"rules": ["duplicated_logic"]}}).ignored_rules == {
        "duplicated_logic"
    }
