"""`recflow bench`: the report from measurements (pure), the held-back day, the measuring
primitive, the scan's engine settings, the pandas baseline against dbt, and one end-to-end run
on the tiny scale."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import os
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import Isolation, TinySample, TinyWarehouse, run_recflow_cli

from recflow.bench import command, report
from recflow.bench.command import raw_source_scans
from recflow.bench.dataset import LATE_DAYS, DatasetSummary, hold_back_last_day
from recflow.bench.measure import Measurement, StepFailedError, run_measured
from recflow.bench.pandas_baseline import BaselineParams, build_features
from recflow.bench.scan import ProfileError, duckdb_profile_settings, scan_events
from recflow.pipeline.settings import REPO_ROOT
from recflow.samples.events import SCALES

GIB = report.GIB
TINY = SCALES["tiny"]


def measured(seconds: float, gib: float = 1.0) -> Measurement:
    return Measurement(seconds=seconds, peak_rss_bytes=int(gib * GIB))


def build(seconds: float, gib: float, *models: tuple[str, float]) -> report.DbtBuildFigures:
    return report.DbtBuildFigures(
        measurement=measured(seconds, gib),
        models=tuple(report.ModelTiming(name, s) for name, s in models),
        tests=12,
        tests_seconds=3.5,
    )


def results(**overrides: object) -> report.BenchResults:
    """Figures that meet every target unless overridden."""
    base = report.BenchResults(
        machine=report.MachineDescription(
            cpu_model="Test CPU",
            cores=2,
            memory_bytes=24 * GIB,
            os="Linux-test",
            versions={"python": "3.11.7", "duckdb": "9.9.9"},
            git_commit="abc123",
            date="2026-11-27 12:00 UTC",
            command="recflow bench --scale bench --bench-dir data/bench --report docs/x.md",
        ),
        dataset=DatasetSummary(
            scale="bench",
            users=100_000,
            items=20_000,
            days=90,
            events_total=9_900_000,
            events_initial=9_790_000,
            events_appended=110_000,
            late_events_appended=4_000,
        ),
        generate=measured(30.0, 3.0),
        full_build=build(
            60.0, 4.0, ("int_item_pairs_covisited", 20.0), ("int_candidates_generated", 10.0)
        ),
        scan=measured(2.5, 0.5),
        scan_query_seconds=7.0,
        scan_settings={"TimeZone": "UTC", "threads": "2"},
        pandas=measured(400.0, 8.0),
        pandas_phase_seconds={"read": 10.0, "covisitation": 200.0},
        mirrored_models_seconds=40.0,
        incremental_build=build(8.0, 2.0, ("training_examples", 2.0)),
        trainer=measured(50.0, 2.5),
        trainer_timings={"train_seconds": 30.0, "load_seconds": 5.0, "evaluate_seconds": 4.0},
        raw_source_scans={"app.events": 1, "app.items": 1, "app.users": 1},
    )
    return dataclasses.replace(base, **overrides)


def met(checks: tuple[report.TargetCheck, ...]) -> dict[str, bool]:
    return {check.figure.split(" (")[0]: check.met for check in checks}


def test_targets_met_and_missed_at_their_boundaries() -> None:
    assert all(met(report.check_targets(results())).values())
    missed = results(
        full_build=build(130.0, 6.5, ("int_item_pairs_covisited", 100.0)),  # +50 s trainer
        scan_query_seconds=12.9,  # 130 / 12.9 > 10
        pandas=measured(640.0),  # < 5 x 130
        incremental_build=build(19.6, 1.0),  # > 15% of 130
        raw_source_scans={"app.events": 1, "app.items": 3, "app.users": 1},
    )
    assert not any(met(report.check_targets(missed)).values())
    at_bounds = results(
        full_build=build(100.0, 1.0),
        scan_query_seconds=10.0,
        pandas=measured(500.0),
        incremental_build=build(15.0, 1.0),
    )
    checks = met(report.check_targets(at_bounds))
    assert checks["full dbt build / one-scan lower bound"]
    assert checks["pandas baseline / full dbt build"]
    assert checks["incremental build / full build"]


def test_pipeline_is_build_plus_trainer_and_peaks_at_the_larger() -> None:
    figures = results()
    assert figures.pipeline_seconds == 110.0
    assert figures.pipeline_peak_rss_bytes == 4 * GIB


def test_markdown_holds_every_figure_and_names_the_dominant_model_when_missed() -> None:
    markdown = report.render_markdown(results())
    for expected in (
        "| full local pipeline time (build + train + evaluate + recommend) | 110.0 s | < 180 s |",
        "| full local pipeline peak memory | 4.00 GiB | < 6.00 GiB | yes |",
        "| full dbt build / one-scan lower bound | 8.6x | <= 10x | yes |",
        "| pandas baseline / full dbt build | 6.67x | >= 5x | yes |",
        "| incremental build / full build | 13% | <= 15% | yes |",
        "| scans of each raw source per build | app.events 1, app.items 1, app.users 1 | 1 each",
        "CPU: Test CPU, 2 cores",
        "Memory: 24.00 GiB",
        "OS: Linux-test",
        "python 3.11.7, duckdb 9.9.9",
        "`recflow bench --scale bench --bench-dir data/bench --report docs/x.md`",
        "commit `abc123`",
        "9,900,000 events",
        "110,000 events",
        "4,000 late events",
        "| full `dbt build` (fresh DuckDB file, --full-refresh) | 60.0 s | 4.00 GiB |",
        "query 7.00 s; settings TimeZone=UTC, threads=2",
        "| pandas baseline (user, item, co-visitation features) | 400.0 s | 8.00 GiB |",
        "| incremental `dbt build` after appending a day | 8.0 s | 2.00 GiB |",
        "load 5.0 s, train 30.0 s, evaluate 4.0 s",
        "| int_item_pairs_covisited | 20.00 |",
        "pandas / the dbt models it repeats (40.0 s in run_results.json): 10.00x",
        "| covisitation | 200.0 |",
        "| app.items | 1 |",
    ):
        assert expected in markdown, expected
    assert "dominant model" not in markdown
    slow = report.render_markdown(results(pandas=measured(100.0)))
    assert "| pandas baseline / full dbt build | 1.67x | >= 5x | **no** |" in slow
    assert "slowest model `int_item_pairs_covisited`, 20.0 s (67% of the summed" in slow


def test_rerun_replaces_only_the_generated_section() -> None:
    first = report.splice_generated(None, report.render_markdown(results()))
    assert first.startswith("# Benchmarks\n")
    annotated = first + "\n## Closing note\n\nHand-written.\n"
    rerun = report.splice_generated(
        annotated, report.render_markdown(results(scan_query_seconds=5.0))
    )
    assert rerun.endswith("## Closing note\n\nHand-written.\n")
    assert "| full dbt build / one-scan lower bound | 12.0x |" in rerun
    assert rerun.count(report.BEGIN_MARKER) == rerun.count(report.END_MARKER) == 1


def test_held_back_day_plus_first_export_is_every_row(tiny_sample: TinySample) -> None:
    events = tiny_sample.data.tables["events"]
    split = hold_back_last_day(events, TINY)
    assert split.initial.num_rows + split.held_back.num_rows == events.num_rows
    both = pa.concat_tables([split.initial, split.held_back])
    con = duckdb.connect()
    con.register("original", events)
    con.register("exports", both)
    assert con.execute(
        "select count(*) from (select * from original except all select * from exports)"
    ).fetchone() == (0,)
    last_day = TINY.end_at - pd.Timedelta(days=1)
    late_from = last_day - pd.Timedelta(days=LATE_DAYS)
    held_at = split.held_back["event_at"]
    assert pc.min(held_at).as_py() >= late_from and pc.max(held_at).as_py() < TINY.end_at
    initial_at = split.initial["event_at"]
    assert pc.sum(pc.greater_equal(initial_at, pa.scalar(last_day))).as_py() == sum(
        1
        for t in initial_at.to_pylist()
        if t is not None and t > TINY.end_at  # future rows
    )
    late = pc.sum(pc.less(held_at, pa.scalar(last_day))).as_py()
    assert late == split.late_rows > 0
    assert initial_at.null_count == events["event_at"].null_count  # no day: stays in the first


def test_run_measured_reports_the_childs_peak_and_names_the_log_on_failure(
    tmp_path: Path,
) -> None:
    # More than the test process itself holds: a child's high-water mark can start from its
    # parent's resident memory at fork, so a smaller allocation would not tell the two apart.
    allocate = "b = bytearray(1536 * 2**20); b[::4096] = b'x' * len(b[::4096])"
    result = run_measured(
        [sys.executable, "-c", allocate], env=os.environ, cwd=tmp_path, log_path=tmp_path / "a.log"
    )
    assert 1536 * 2**20 < result.peak_rss_bytes < 1900 * 2**20
    assert result.seconds > 0
    with pytest.raises(StepFailedError, match=r"(?s)exit 3.*b\.log.*boom"):
        run_measured(
            [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"],
            env=os.environ,
            cwd=tmp_path,
            log_path=tmp_path / "b.log",
        )


def test_scan_uses_the_profiles_duckdb_settings(tmp_path: Path, tiny_sample: TinySample) -> None:
    assert duckdb_profile_settings(REPO_ROOT / "dbt", os.environ) == {"TimeZone": "UTC"}
    (tmp_path / "profiles.yml").write_text(
        "recflow:\n"
        "  target: \"{{ env_var('T', 'local') }}\"\n"
        "  outputs:\n"
        "    local:\n"
        "      type: duckdb\n"
        "      path: x.duckdb\n"
        "      settings:\n"
        "        threads: \"{{ env_var('DUCK_THREADS', '4') | as_number }}\"\n"
        "        memory_limit: 1GB\n"
        "    prod: {type: bigquery, project: p, dataset: d, method: oauth}\n"
    )
    settings = duckdb_profile_settings(tmp_path, {"DUCK_THREADS": "1"})
    assert settings == {"threads": 1, "memory_limit": "1GB"}
    with pytest.raises(ProfileError, match=r"'prod'.*bigquery.*RECFLOW_DBT_TARGET=local"):
        duckdb_profile_settings(tmp_path, {"T": "prod"})
    result = scan_events(tiny_sample.parquet_dir / "events.parquet", settings)
    assert result["events"] == tiny_sample.data.tables["events"].num_rows
    assert result["duckdb_settings"] == {"threads": "1", "memory_limit": "1GB"}
    # One group per distinct user and per distinct item (null ids included).
    events = tiny_sample.data.tables["events"]
    distinct = len(pc.unique(events["user_id"])) + len(pc.unique(events["item_id"]))
    assert result["groups"] == distinct


def test_raw_sources_counted_on_the_build_manifest(tiny_warehouse: TinyWarehouse) -> None:
    scans = raw_source_scans(tiny_warehouse.isolation.target_path / "manifest.json")
    assert set(scans) == {"app.events", "app.items", "app.users"}
    assert scans["app.events"] == 1


def test_pandas_baseline_computes_the_dbt_features(
    tiny_warehouse: TinyWarehouse, tmp_path: Path
) -> None:
    """Same definitions, so the ratio compares equal work: every value matches the dbt build."""
    build_features(tiny_warehouse.data_dir, tmp_path, BaselineParams.from_dbt_project())
    with duckdb.connect(str(tiny_warehouse.duckdb_path), read_only=True) as con:
        con.execute("set TimeZone = 'UTC'")
        dbt_users = con.sql(
            "select user_id, cutoff_date, user_events_total as events_total,"
            " user_events_7d as events_7d, user_positive_events_28d as positive_events_28d,"
            " user_distinct_items_total as distinct_items_total,"
            " user_active_days_total as active_days_total,"
            " user_favourite_category_share as favourite_category_share"
            " from int_users_featurized"
        ).df()
        dbt_items = con.sql(
            "select item_id, cutoff_date, users_1d, users_7d, users_28d, events_28d,"
            " popularity_rank from item_features where events_28d > 0"
        ).df()
        dbt_neighbours = con.sql(
            "select item_id, related_item_id, cutoff_date, covisit_count"
            " from int_item_neighbours_ranked"
        ).df()
    pandas_items = pd.read_parquet(tmp_path / "item_features.parquet").rename(
        columns={"events": "events_28d"}
    )
    for name, dbt_frame, pandas_frame, keys in (
        ("users", dbt_users, pd.read_parquet(tmp_path / "user_features.parquet"), ["user_id"]),
        ("items", dbt_items, pandas_items, ["item_id"]),
        (
            "neighbours",
            dbt_neighbours,
            pd.read_parquet(tmp_path / "item_neighbours.parquet"),
            ["item_id", "related_item_id"],
        ),
    ):
        keys = [*keys, "cutoff_date"]
        columns = list(dbt_frame.columns)
        expected = _normalised(dbt_frame, keys)
        got = _normalised(pandas_frame[columns], keys)
        assert len(expected) > 100, name
        pd.testing.assert_frame_equal(got, expected, check_dtype=False, obj=name)


def _normalised(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    frame = frame.assign(cutoff_date=pd.to_datetime(frame["cutoff_date"]).dt.date)
    return frame.sort_values(keys).reset_index(drop=True)


def test_progress_labels_number_the_steps_run_benchmark_runs_in_its_order() -> None:
    calls = sorted(
        (
            node
            for node in ast.walk(ast.parse(inspect.getsource(command.run_benchmark)))
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "step"
        ),
        key=lambda node: (node.lineno, node.col_offset),
    )
    assert [node.args[0].value for node in calls] == list(command.STEPS)
    assert command.step_label("dbt_build_full") == "[2/7] full dbt build"


@pytest.mark.dbt
@pytest.mark.slow
def test_bench_tiny_end_to_end_writes_every_figure(tmp_path: Path) -> None:
    report_path = tmp_path / "benchmarks.md"
    report_path.write_text("# Benchmarks\n\nnotes\n\n" + report.BEGIN_MARKER + "\nold\n"
                           + report.END_MARKER + "\n\n## Closing note\n")  # fmt: skip
    isolation = Isolation.under(tmp_path / "work", tmp_path / "unused")
    bench_dir = tmp_path / "bench"
    result = run_recflow_cli(
        isolation, "bench", "--scale", "tiny", "--bench-dir", str(bench_dir),
        "--report", str(report_path),
    )  # fmt: skip
    assert result.returncode == 0, result.output
    written = report_path.read_text()
    assert written.startswith("# Benchmarks\n\nnotes\n") and written.endswith("## Closing note\n")
    assert "\nold\n" not in written
    for figure in (
        "full local pipeline time",
        "full local pipeline peak memory",
        "full dbt build / one-scan lower bound",
        "pandas baseline / full dbt build",
        "incremental build / full build",
        "scans of each raw source per build",
        "generate the data",
        "one aggregate scan of the raw events",
        "incremental `dbt build` after appending a day",
        "load ",
        "train ",
        "evaluate ",
        "recommend ",
        "### Slowest models, full build",
        "### Slowest models, incremental build",
        "| app.events | 1 |",
        "dbt models it repeats",
        f"--bench-dir {bench_dir}",
        "CPU: ",
        "dbt-core ",
        "lightgbm ",
    ):
        assert figure in written, figure
    assert "`tiny` scale" in written
    # Progress on stderr: each step's start and end, numbered, with its time.
    for name in command.STEPS:
        assert f"{command.step_label(name)} ... done in " in result.output, name
    assert "[2/7] full dbt build ... (its output: tail -f " in result.output
    assert written.split(report.BEGIN_MARKER)[1].split(report.END_MARKER)[0] in result.output
