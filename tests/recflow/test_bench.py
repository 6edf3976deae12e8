"""`recflow bench`: the report from measurements (pure), the held-back day, the measuring
primitive, the scan's engine settings, the pandas baseline against dbt, and one end-to-end run
on the tiny scale."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import os
import sys
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import Isolation, TinySample, TinyWarehouse, run_recflow_cli

from recflow.bench import command, pandas_baseline, polars_baseline, report
from recflow.bench.baseline_common import OUTPUT_COLUMNS, BaselineParams, cutoff_dates
from recflow.bench.command import raw_source_scans
from recflow.bench.dataset import LATE_DAYS, DatasetSummary, hold_back_last_day
from recflow.bench.measure import Measurement, StepFailedError, run_measured
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
        polars=measured(60.0, 3.5),
        polars_phase_seconds={"clean_and_daily": 12.0, "covisitation": 30.0},
        mirrored_models_seconds=40.0,
        incremental_build=build(8.0, 2.0, ("training_examples", 2.0)),
        trainer=measured(50.0, 2.5),
        trainer_timings={"train_seconds": 30.0, "load_seconds": 5.0, "evaluate_seconds": 4.0},
        serving_build=build(10.0, 1.5, ("feature_drift", 4.0), ("recommendations", 3.0)),
        raw_source_scans={"app.events": 1, "app.items": 1, "app.users": 1},
    )
    return dataclasses.replace(base, **overrides)


def met(checks: tuple[report.TargetCheck, ...]) -> dict[str, bool]:
    return {check.figure.split(" (")[0]: check.met for check in checks}


def test_targets_met_and_missed_at_their_boundaries() -> None:
    assert all(met(report.check_targets(results())).values())
    missed = results(
        full_build=build(130.0, 6.5, ("int_item_pairs_covisited", 100.0)),  # +60 s after it
        scan_query_seconds=0.5,  # 130 / 0.5 > 250
        pandas=measured(199.0),  # < 5 x the 40 s of the models it repeats
        polars=measured(39.0),  # < 1 x those 40 s
        incremental_build=build(19.6, 1.0),  # > 15% of 130
        raw_source_scans={"app.events": 1, "app.items": 3, "app.users": 1},
    )
    assert not any(met(report.check_targets(missed)).values())
    at_bounds = results(
        full_build=build(125.0, 1.0),
        trainer=measured(44.0),
        serving_build=build(10.9, 5.99),  # 179.9 s, the serving build's peak under 6 GiB
        scan_query_seconds=0.5,
        pandas=measured(200.0),
        polars=measured(40.0),
        incremental_build=build(18.75, 1.0),
    )
    assert all(met(report.check_targets(at_bounds)).values())
    # The serving build counts in the pipeline's time and peak.
    over = met(report.check_targets(results(serving_build=build(70.1, 6.0))))
    assert not over["full local pipeline time"] and not over["full local pipeline peak memory"]
    # No mirrored model timed: the like-for-like ratios cannot be met.
    unknown = met(report.check_targets(results(mirrored_models_seconds=0.0)))
    assert not unknown["pandas notebook / dbt models it repeats, like for like"]
    assert not unknown["Polars notebook / dbt models it repeats, like for like"]


def test_pipeline_is_build_trainer_and_serving_build_and_peaks_at_the_largest() -> None:
    figures = results()
    assert figures.pipeline_seconds == 120.0
    assert figures.pipeline_peak_rss_bytes == 4 * GIB
    assert results(serving_build=build(10.0, 4.5)).pipeline_peak_rss_bytes == int(4.5 * GIB)


def test_markdown_holds_every_figure_and_names_the_dominant_model_when_missed() -> None:
    markdown = report.render_markdown(results())
    for expected in (
        "| full local pipeline time (build + train + evaluate + recommend) | 120.0 s | < 180 s |",
        "| full local pipeline peak memory | 4.00 GiB | < 6.00 GiB | yes |",
        "| full `dbt build` / one aggregate scan of the raw events | 8.6x | <= 250x | yes |",
        "| pandas notebook / dbt models it repeats, like for like | 10.00x | >= 5x | yes |",
        "| Polars notebook / dbt models it repeats, like for like | 1.50x | >= 1x | yes |",
        "| incremental daily build / full build | 13% | <= 15% | yes |",
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
        "| Polars baseline (the same features, lazy API) | 60.0 s | 3.50 GiB |",
        "| incremental `dbt build` after appending a day | 8.0 s | 2.00 GiB |",
        "load 5.0 s, train 30.0 s, evaluate 4.0 s",
        "| serving `dbt build --selector serving` after the trainer | 10.0 s | 1.50 GiB | "
        "2 models, 12 tests |",
        "| int_item_pairs_covisited | 20.00 |",
        "### Slowest models, serving build (tests 3.5 s in all)",
        "| feature_drift | 4.00 |",
        "repeat (40.0 s in run_results.json): pandas 10.00x, Polars 1.50x.",
        "Against the whole full build (info): pandas 6.67x, Polars 1.00x.",
        "(full build + trainer + serving build): 120.0 s, peak 4.00 GiB.",
        "| covisitation | 200.0 |",
        "### Polars baseline by phase",
        "| clean_and_daily | 12.0 |",
        "| app.items | 1 |",
    ):
        assert expected in markdown, expected
    assert "dominant model" not in markdown
    slow = report.render_markdown(results(pandas=measured(100.0)))
    assert (
        "| pandas notebook / dbt models it repeats, like for like | 2.50x | >= 5x | **no** |"
        in slow
    )
    assert "slowest model `int_item_pairs_covisited`, 20.0 s (67% of the summed" in slow
    assert "serving build: slowest model `feature_drift`, 4.0 s (57% of the summed" in slow


def test_rerun_replaces_only_the_generated_section() -> None:
    first = report.splice_generated(None, report.render_markdown(results()))
    assert first.startswith("# Benchmarks\n")
    annotated = first + "\n## Closing note\n\nHand-written.\n"
    rerun = report.splice_generated(
        annotated, report.render_markdown(results(scan_query_seconds=5.0))
    )
    assert rerun.endswith("## Closing note\n\nHand-written.\n")
    assert "| full `dbt build` / one aggregate scan of the raw events | 12.0x |" in rerun
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


BASELINES = {"pandas": pandas_baseline.build_features, "polars": polars_baseline.build_features}
# The baselines' tables as the dbt models hold them, under the baselines' column names.
DBT_FEATURE_QUERIES = {
    "user_features": "select user_id, user_segment as segment, user_events_7d as events_7d,"
    " user_events_28d as events_28d, user_events_total as events_total,"
    " user_positive_events_28d as positive_events_28d,"
    " user_distinct_items_total as distinct_items_total,"
    " user_active_days_total as active_days_total,"
    " user_favourite_category_share as favourite_category_share,"
    " user_days_since_last_event as days_since_last_event,"
    " user_days_since_first_event as days_since_first_event,"
    " user_days_since_signup as days_since_signup, cutoff_date, last_event_at"
    " from int_users_featurized",
    "item_features": "select " + ", ".join(OUTPUT_COLUMNS["item_features"]) + " from item_features",
    "item_neighbours": "select "
    + ", ".join(OUTPUT_COLUMNS["item_neighbours"])
    + " from int_item_neighbours_ranked",
}
FEATURE_KEYS = {
    "user_features": ["user_id", "cutoff_date"],
    "item_features": ["item_id", "cutoff_date"],
    "item_neighbours": ["item_id", "related_item_id", "cutoff_date"],
}


@pytest.fixture(scope="module")
def baseline_outputs(
    tiny_sample: TinySample, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Each baseline's feature tables on the tiny sample, and its summary."""
    params = BaselineParams.from_dbt_project()
    outputs = {}
    for name, build_features in BASELINES.items():
        out_dir = tmp_path_factory.mktemp(f"{name}_baseline")
        summary = build_features(tiny_sample.parquet_dir, out_dir, params)
        assert set(summary) == {"rows", "cutoffs", "phase_seconds"}, name
        assert summary["rows"]["events"] > 0 and summary["phase_seconds"], name
        outputs[name] = out_dir
    return outputs


def _feature_table(out_dir: Path, table: str) -> pd.DataFrame:
    frame = pd.read_parquet(out_dir / f"{table}.parquet")
    assert list(frame.columns) == list(OUTPUT_COLUMNS[table]), (out_dir, table)
    return _normalised(frame, FEATURE_KEYS[table])


@pytest.mark.parametrize("table", OUTPUT_COLUMNS)
def test_pandas_and_polars_baselines_compute_the_same_features(
    baseline_outputs: dict[str, Path], table: str
) -> None:
    """Two libraries, one definition: the Polars ratio is as like for like as the pandas one."""
    pandas_frame = _feature_table(baseline_outputs["pandas"], table)
    polars_frame = _feature_table(baseline_outputs["polars"], table)
    assert len(pandas_frame) > 100
    pd.testing.assert_frame_equal(polars_frame, pandas_frame, check_dtype=False, obj=table)


@pytest.mark.parametrize("baseline", BASELINES)
def test_baselines_compute_the_dbt_features(
    tiny_warehouse: TinyWarehouse, baseline_outputs: dict[str, Path], baseline: str
) -> None:
    """Same definitions, so the ratio compares equal work: every value and every row (the same
    cutoffs, users and items) matches the dbt build on the same files."""
    with duckdb.connect(str(tiny_warehouse.duckdb_path), read_only=True) as con:
        con.execute("set TimeZone = 'UTC'")
        dbt_tables = {table: con.sql(sql).df() for table, sql in DBT_FEATURE_QUERIES.items()}
        (spine,) = con.execute(
            "select list(cutoff_date order by cutoff_date) from int_cutoffs_scheduled"
        ).fetchone()
    for table, dbt_frame in dbt_tables.items():
        expected = _normalised(dbt_frame, FEATURE_KEYS[table])
        got = _feature_table(baseline_outputs[baseline], table)
        assert len(expected) > 100, table
        pd.testing.assert_frame_equal(got, expected, check_dtype=False, obj=table)
    assert sorted(set(got["cutoff_date"])) == list(spine)


def test_cutoff_calendar_follows_the_dbt_spine() -> None:
    params = dataclasses.replace(
        BaselineParams.from_dbt_project(),
        train_cutoff_count=2,
        validation_cutoff_count=1,
        test_cutoff_count=1,
        min_history_days=10,
    )
    # Anchor 2000-01-03 (a Monday), weekly; the last event on Wednesday 2026-03-18 gives scoring
    # on Thursday the 19th, and the latest Monday whose 7-day window closed by then is the 9th.
    got = cutoff_dates(date(2026, 1, 28), date(2026, 3, 18), params)
    assert got == [date(2026, 2, 16), date(2026, 2, 23), date(2026, 3, 2), date(2026, 3, 9),
                   date(2026, 3, 19)]  # fmt: skip
    # Too little history before the oldest ones drops them; the scoring date stays.
    assert cutoff_dates(date(2026, 2, 25), date(2026, 3, 18), params)[0] == date(2026, 3, 9)


def _normalised(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    dates = [c for c in ("cutoff_date", "last_covisit_date") if c in frame.columns]
    frame = frame.assign(**{c: pd.to_datetime(frame[c]).dt.date for c in dates})
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
    assert command.step_label("dbt_build_full") == "[2/9] full dbt build"
    assert list(command.STEPS)[3:5] == ["pandas_baseline", "polars_baseline"]
    assert list(command.STEPS)[-2:] == ["trainer", "dbt_build_serving"]


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
        "full `dbt build` / one aggregate scan of the raw events",
        "pandas notebook / dbt models it repeats, like for like",
        "Polars notebook / dbt models it repeats, like for like",
        "incremental daily build / full build",
        "Polars baseline (the same features, lazy API)",
        "serving `dbt build --selector serving` after the trainer",
        "### Slowest models, serving build",
        "| recommendations |",
        "### Polars baseline by phase",
        "polars ",
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
    assert "[2/9] full dbt build ... (its output: tail -f " in result.output
    assert written.split(report.BEGIN_MARKER)[1].split(report.END_MARKER)[0] in result.output
