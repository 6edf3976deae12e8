"""`recflow bench`: generate a scale, then measure each step in its own process and write
docs/benchmarks.md. The steps run one after another, never two at once, so each figure is its
own: data generation, full `dbt build`, the one-scan lower bound, the pandas and Polars
baselines, the incremental `dbt build` after appending a day, the trainer, and the serving
`dbt build` that follows it as in `recflow run`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from recflow.bench import bigquery_bytes, report
from recflow.bench.baseline_common import DBT_MODELS_MIRRORED
from recflow.bench.dataset import DatasetSummary
from recflow.bench.measure import Measurement, StepFailedError, run_measured
from recflow.bench.scan import ProfileError
from recflow.pipeline.dbt_invocation import dbt_executable
from recflow.pipeline.settings import REPO_ROOT, Settings
from recflow.review.manifest_graph import ManifestError, build_graph, load_manifest
from recflow.review.scans import scan_paths
from recflow.samples import events as sample_events
from trainer.provenance import git_commit

log = logging.getLogger(__name__)

RAW_SOURCE_PREFIX = "source.recflow.app."
VERSIONED_PACKAGES = (
    "python",
    "duckdb",
    "dbt-core",
    "dbt-duckdb",
    "lightgbm",
    "pandas",
    "polars",
    "pyarrow",
)
TOP_K = 20
# Every step run_benchmark runs, in its order, with the name its progress lines give it: each
# step's output goes to its own log file, so these lines are what shows how far along it is.
STEPS = {
    "generate": "generate the data set",
    "dbt_build_full": "full dbt build",
    "scan": "one-scan lower bound",
    "pandas_baseline": "pandas baseline",
    "polars_baseline": "Polars baseline",
    "append_day": "append a day",
    "dbt_build_incremental": "incremental dbt build",
    "trainer": "trainer",
    "dbt_build_serving": "serving dbt build",
}


def step_label(name: str) -> str:
    """`[2/7] full dbt build`: which of the benchmark's steps `name` is, for progress lines."""
    return f"[{list(STEPS).index(name) + 1}/{len(STEPS)}] {STEPS[name]}"


@dataclass(frozen=True)
class BenchConfig:
    scale: str
    bench_dir: Path
    report_path: Path

    @property
    def command(self) -> str:
        """The exact command that reproduces this run."""
        return shlex.join(
            [
                "recflow",
                "bench",
                "--scale",
                self.scale,
                "--bench-dir",
                _display(self.bench_dir),
                "--report",
                _display(self.report_path),
            ]
        )


@dataclass(frozen=True)
class BenchPaths:
    """Everything one run writes under the bench directory (and only that is ever removed)."""

    root: Path

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def held_back_file(self) -> Path:
        return self.root / "held_back" / "events.parquet"

    @property
    def duckdb_path(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def full_target(self) -> Path:
        return self.root / "dbt_target_full"

    @property
    def incremental_target(self) -> Path:
        return self.root / "dbt_target_incremental"

    @property
    def serving_target(self) -> Path:
        return self.root / "dbt_target_serving"

    @property
    def pandas_dir(self) -> Path:
        return self.root / "pandas"

    @property
    def polars_dir(self) -> Path:
        return self.root / "polars"

    @property
    def run_dir(self) -> Path:
        return self.root / "trainer_run"

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    def clear(self) -> None:
        for path in (
            self.data_dir,
            self.held_back_file.parent,
            self.full_target,
            self.incremental_target,
            self.serving_target,
            self.pandas_dir,
            self.polars_dir,
            self.run_dir,
            self.results_dir,
            self.logs_dir,
        ):
            shutil.rmtree(path, ignore_errors=True)
        for path in (self.duckdb_path, self.duckdb_path.with_name(self.duckdb_path.name + ".wal")):
            path.unlink(missing_ok=True)
        self.results_dir.mkdir(parents=True)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `bench` subcommand; its `handler` returns the exit code."""
    parser = commands.add_parser(
        "bench",
        help="measure the pipeline at scale and write docs/benchmarks.md",
        description=__doc__,
    )
    parser.add_argument(
        "--scale",
        choices=sorted(sample_events.SCALES),
        default="bench",
        help="generated data set (default bench: ~10M events, needs several GiB and minutes)",
    )
    parser.add_argument(
        "--bench-dir",
        type=Path,
        default=REPO_ROOT / "data" / "bench",
        help="working directory for data, warehouse and artifacts (its own subpaths are "
        "replaced on each run; default data/bench)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=REPO_ROOT / "docs" / "benchmarks.md",
        help="Markdown file whose generated section is written (default docs/benchmarks.md)",
    )
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    config = BenchConfig(
        scale=args.scale, bench_dir=args.bench_dir.resolve(), report_path=args.report.resolve()
    )
    try:
        results = run_benchmark(config)
    except (ProfileError, ManifestError) as error:
        print(f"recflow bench: {error}", file=sys.stderr)
        return 2
    except StepFailedError as error:
        print(f"recflow bench: {error}", file=sys.stderr)
        return 1
    generated = report.render_markdown(results)
    existing = config.report_path.read_text() if config.report_path.exists() else None
    config.report_path.parent.mkdir(parents=True, exist_ok=True)
    config.report_path.write_text(report.splice_generated(existing, generated))
    print(generated, end="")
    print(f"\nwritten to {config.report_path}")
    return 0


def run_benchmark(config: BenchConfig) -> report.BenchResults:
    """Run every step in order and collect the figures."""
    paths = BenchPaths(config.bench_dir)
    paths.clear()
    settings = dataclasses.replace(
        Settings.from_env(data_dir=paths.data_dir),
        duckdb_path=paths.duckdb_path,
        dbt_target_path=paths.full_target,
        dbt_vars={},
    )
    python = sys.executable

    def step(name: str, command: list[str], env: dict[str, str] | None = None) -> Measurement:
        log_path = paths.logs_dir / f"{name}.log"
        log.info("%s ... (its output: tail -f %s)", step_label(name), log_path)
        measurement = run_measured(
            command, env=env or settings.dbt_environment(), cwd=REPO_ROOT, log_path=log_path
        )
        log.info(
            "%s ... done in %.1f s, peak %.2f GiB",
            step_label(name),
            measurement.seconds,
            measurement.peak_rss_bytes / report.GIB,
        )
        return measurement

    dataset_file = paths.results_dir / "dataset.json"
    generate = step(
        "generate",
        [python, "-m", "recflow.bench.dataset", "generate", "--scale", config.scale,
         *_data_args(paths), "--summary-out", str(dataset_file)],
    )  # fmt: skip
    full = step("dbt_build_full", _dbt_build(settings, "--full-refresh"))
    full_figures = _build_figures(full, paths.full_target)
    scan_file = paths.results_dir / "scan.json"
    scan = step(
        "scan",
        [python, "-m", "recflow.bench.scan", "--data-dir", str(paths.data_dir),
         "--result-out", str(scan_file)],
    )  # fmt: skip
    pandas = step("pandas_baseline", _baseline(python, "pandas", paths.data_dir, paths.pandas_dir))
    polars = step("polars_baseline", _baseline(python, "polars", paths.data_dir, paths.polars_dir))
    step("append_day", [python, "-m", "recflow.bench.dataset", "append", *_data_args(paths)])
    # As `recflow run` builds a stored warehouse whose export only grew: tests of the rebuilt
    # partitions only (recflow/pipeline/dbt_invocation.build_features).
    incremental_settings = dataclasses.replace(
        settings,
        dbt_target_path=paths.incremental_target,
        dbt_vars={"data_test_scope": "recent"},
    )
    incremental = step(
        "dbt_build_incremental",
        _dbt_build(incremental_settings),
        env=incremental_settings.dbt_environment(),
    )
    trainer = step(
        "trainer",
        [python, "-m", "trainer.task", "--warehouse-uri", f"duckdb://{paths.duckdb_path}",
         "--manifest", str(paths.incremental_target / "manifest.json"),
         "--output-dir", str(paths.run_dir), "--top-k", str(TOP_K)],
        env=incremental_settings.dbt_environment(),
    )  # fmt: skip
    # As `recflow run` does after training: the recommendations and monitoring models, with K.
    serving_settings = dataclasses.replace(
        incremental_settings,
        dbt_target_path=paths.serving_target,
        dbt_vars={"recommendations_per_user": TOP_K},
    )
    serving = step(
        "dbt_build_serving",
        _dbt_build(serving_settings, "--selector", "serving"),
        env=serving_settings.dbt_environment(),
    )
    scan_result = _read_json(scan_file)
    # The warehouse is free again: what each model would scan on BigQuery, full vs daily.
    bigquery = bigquery_bytes.estimate(
        paths.incremental_target / "manifest.json", paths.duckdb_path
    )
    return report.BenchResults(
        machine=describe_machine(config),
        dataset=DatasetSummary(**_read_json(dataset_file)),
        generate=generate,
        full_build=full_figures,
        scan=scan,
        scan_query_seconds=float(scan_result["query_seconds"]),
        scan_settings=scan_result["duckdb_settings"],
        pandas=pandas,
        pandas_phase_seconds=_read_json(paths.pandas_dir / "summary.json")["phase_seconds"],
        polars=polars,
        polars_phase_seconds=_read_json(paths.polars_dir / "summary.json")["phase_seconds"],
        mirrored_models_seconds=sum(
            m.seconds for m in full_figures.models if m.name in DBT_MODELS_MIRRORED
        ),
        incremental_build=_build_figures(incremental, paths.incremental_target),
        trainer=trainer,
        trainer_timings=_read_json(paths.run_dir / "run_metadata.json")["timings"],
        serving_build=_build_figures(serving, paths.serving_target),
        raw_source_scans=raw_source_scans(paths.full_target / "manifest.json"),
        bigquery_bytes=bigquery,
    )


def _data_args(paths: BenchPaths) -> list[str]:
    return ["--data-dir", str(paths.data_dir), "--held-back-file", str(paths.held_back_file)]


def _baseline(python: str, library: str, data_dir: Path, out_dir: Path) -> list[str]:
    return [python, "-m", f"recflow.bench.{library}_baseline", "--data-dir", str(data_dir),
            "--out-dir", str(out_dir)]  # fmt: skip


def _dbt_build(settings: Settings, *extra: str) -> list[str]:
    """`dbt build` (default selector unless `extra` names one), as `recflow run` invokes it."""
    return [
        dbt_executable(),
        "build",
        *extra,
        "--project-dir",
        str(settings.dbt_project_dir),
        "--target",
        settings.dbt_target,
        *(("--vars", json.dumps(dict(settings.dbt_vars))) if settings.dbt_vars else ()),
    ]


def _build_figures(measurement: Measurement, target_path: Path) -> report.DbtBuildFigures:
    results = _read_json(target_path / "run_results.json")["results"]
    models = sorted(
        (
            report.ModelTiming(r["unique_id"].split(".")[-1], float(r["execution_time"]))
            for r in results
            if r["unique_id"].startswith("model.")
        ),
        key=lambda m: (-m.seconds, m.name),
    )
    tests = [r for r in results if r["unique_id"].startswith(("test.", "unit_test."))]
    return report.DbtBuildFigures(
        measurement=measurement,
        models=tuple(models),
        tests=len(tests),
        tests_seconds=sum(float(r["execution_time"]) for r in tests),
    )


def raw_source_scans(manifest_path: Path) -> dict[str, int]:
    """Scans of each raw (`app`) source in a full build, by the review's scan counter."""
    graph = build_graph(load_manifest(manifest_path))
    counts = Counter({uid: 0 for uid in graph.nodes if uid.startswith(RAW_SOURCE_PREFIX)})
    for path, multiplicity in scan_paths(graph).items():
        if path[-1].startswith(RAW_SOURCE_PREFIX):
            counts[path[-1]] += multiplicity
    return {graph.nodes[uid].name: count for uid, count in counts.items()}


def describe_machine(config: BenchConfig) -> report.MachineDescription:
    versions = {"python": platform.python_version()}
    versions |= {name: metadata.version(name) for name in VERSIONED_PACKAGES[1:]}
    return report.MachineDescription(
        cpu_model=_cpu_model(),
        cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        memory_bytes=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        os=platform.platform(),
        versions=versions,
        git_commit=git_commit() + (" (uncommitted changes)" if _worktree_dirty() else ""),
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command=config.command,
    )


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _worktree_dirty() -> bool:
    try:
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return False
    return bool(status.strip())


def _display(path: Path) -> str:
    """Paths inside the repository relative to it, so the command reads the same everywhere."""
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())
