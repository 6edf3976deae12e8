"""Turn the benchmark's measurements into the issue's target checks and `docs/benchmarks.md`.

Pure: dataclasses in, Markdown out; `command` gathers the measurements.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from recflow.bench.bigquery_bytes import BigQueryBytes
from recflow.bench.bigquery_bytes import render_markdown as render_bigquery_bytes
from recflow.bench.dataset import DatasetSummary
from recflow.bench.measure import Measurement

GIB = 1024**3
BEGIN_MARKER = "<!-- recflow bench: generated section, begin -->"
END_MARKER = "<!-- recflow bench: generated section, end -->"
TOP_MODELS = 10

# The targets (issue 17, speed at 10M events). The notebook ratios are like for like:
# a baseline's time over the full build's time in the dbt models it repeats.
PIPELINE_SECONDS_TARGET = 180.0
PIPELINE_PEAK_BYTES_TARGET = 6 * GIB
BUILD_OVER_SCAN_TARGET = 250.0
PANDAS_OVER_MIRRORED_TARGET = 5.0
# "The dbt build should not be slower than it, like for like."
POLARS_OVER_MIRRORED_TARGET = 1.0
INCREMENTAL_OVER_FULL_TARGET = 0.15
RAW_SCANS_TARGET = 1


@dataclass(frozen=True)
class MachineDescription:
    cpu_model: str
    cores: int
    memory_bytes: int
    os: str
    versions: Mapping[str, str]  # package -> version, in display order
    git_commit: str
    date: str
    command: str


@dataclass(frozen=True)
class ModelTiming:
    name: str
    seconds: float


@dataclass(frozen=True)
class DbtBuildFigures:
    """One `dbt build`: the process measured, and what run_results.json says about its nodes."""

    measurement: Measurement
    models: tuple[ModelTiming, ...]  # every model, slowest first
    tests: int
    tests_seconds: float


@dataclass(frozen=True)
class BenchResults:
    machine: MachineDescription
    dataset: DatasetSummary
    generate: Measurement
    full_build: DbtBuildFigures
    scan: Measurement
    scan_query_seconds: float
    scan_settings: Mapping[str, str]
    pandas: Measurement
    pandas_phase_seconds: Mapping[str, float]
    polars: Measurement
    polars_phase_seconds: Mapping[str, float]
    mirrored_models_seconds: float  # the full build's time in the models the baselines repeat
    incremental_build: DbtBuildFigures
    trainer: Measurement
    trainer_timings: Mapping[str, float]
    serving_build: DbtBuildFigures  # `dbt build --selector serving` after the trainer
    raw_source_scans: Mapping[str, int]  # raw source name -> scans per full build
    bigquery_bytes: BigQueryBytes | None = None  # on paper: each model's bytes, full vs daily

    @property
    def pipeline_steps(self) -> tuple[Measurement, ...]:
        """Build, then train, evaluate and recommend (the trainer's batch, then the served
        recommendations and monitoring models): what `recflow run` does on fresh data."""
        return (self.full_build.measurement, self.trainer, self.serving_build.measurement)

    @property
    def pipeline_seconds(self) -> float:
        return sum(m.seconds for m in self.pipeline_steps)

    @property
    def pipeline_peak_rss_bytes(self) -> int:
        return max(m.peak_rss_bytes for m in self.pipeline_steps)

    @property
    def build_over_scan(self) -> float:
        return self.full_build.measurement.seconds / self.scan_query_seconds

    @property
    def pandas_over_build(self) -> float:
        """The whole build against a baseline that does a part of its work: shown, not checked."""
        return self.pandas.seconds / self.full_build.measurement.seconds

    @property
    def pandas_over_mirrored(self) -> float:
        return self.pandas.seconds / (self.mirrored_models_seconds or float("nan"))

    @property
    def polars_over_mirrored(self) -> float:
        return self.polars.seconds / (self.mirrored_models_seconds or float("nan"))

    @property
    def incremental_over_full(self) -> float:
        return self.incremental_build.measurement.seconds / self.full_build.measurement.seconds


@dataclass(frozen=True)
class TargetCheck:
    figure: str
    measured: str
    target: str
    met: bool


def check_targets(results: BenchResults) -> tuple[TargetCheck, ...]:
    """Each of the issue's targets against the measured figure."""
    scans = results.raw_source_scans
    return (
        TargetCheck(
            "full local pipeline time (build + train + evaluate + recommend)",
            f"{results.pipeline_seconds:.1f} s",
            f"< {PIPELINE_SECONDS_TARGET:.0f} s",
            results.pipeline_seconds < PIPELINE_SECONDS_TARGET,
        ),
        TargetCheck(
            "full local pipeline peak memory",
            _gib(results.pipeline_peak_rss_bytes),
            f"< {_gib(PIPELINE_PEAK_BYTES_TARGET)}",
            results.pipeline_peak_rss_bytes < PIPELINE_PEAK_BYTES_TARGET,
        ),
        TargetCheck(
            "full `dbt build` / one aggregate scan of the raw events",
            f"{results.build_over_scan:.1f}x",
            f"<= {BUILD_OVER_SCAN_TARGET:.0f}x",
            results.build_over_scan <= BUILD_OVER_SCAN_TARGET,
        ),
        TargetCheck(
            "pandas notebook / dbt models it repeats, like for like",
            f"{results.pandas_over_mirrored:.2f}x",
            f">= {PANDAS_OVER_MIRRORED_TARGET:.0f}x",
            results.pandas_over_mirrored >= PANDAS_OVER_MIRRORED_TARGET,
        ),
        TargetCheck(
            "Polars notebook / dbt models it repeats, like for like",
            f"{results.polars_over_mirrored:.2f}x",
            f">= {POLARS_OVER_MIRRORED_TARGET:.0f}x",
            results.polars_over_mirrored >= POLARS_OVER_MIRRORED_TARGET,
        ),
        TargetCheck(
            "incremental daily build / full build",
            f"{results.incremental_over_full:.0%}",
            f"<= {INCREMENTAL_OVER_FULL_TARGET:.0%}",
            results.incremental_over_full <= INCREMENTAL_OVER_FULL_TARGET,
        ),
        TargetCheck(
            "scans of each raw source per build",
            ", ".join(f"{name} {count}" for name, count in sorted(scans.items())) or "none",
            f"{RAW_SCANS_TARGET} each",
            bool(scans) and all(count == RAW_SCANS_TARGET for count in scans.values()),
        ),
    )


def render_markdown(results: BenchResults) -> str:
    """The generated section of docs/benchmarks.md (between the markers)."""
    machine, data = results.machine, results.dataset
    full, incremental, serving = (
        results.full_build,
        results.incremental_build,
        results.serving_build,
    )
    lines = [
        BEGIN_MARKER,
        f"## `{data.scale}` scale, {machine.date}",
        "",
        f"Command: `{machine.command}` at commit `{machine.git_commit}`.",
        "",
        "### Targets",
        "",
        *_table(
            ("figure", "measured", "target", "met"),
            [
                (c.figure, c.measured, c.target, "yes" if c.met else "**no**")
                for c in check_targets(results)
            ],
        ),
        "",
        *_dominant_models(results),
        "### Machine",
        "",
        f"- CPU: {machine.cpu_model}, {machine.cores} cores available",
        f"- Memory: {_gib(machine.memory_bytes)}",
        f"- OS: {machine.os}",
        "- Versions: " + ", ".join(f"{name} {v}" for name, v in machine.versions.items()),
        "",
        "### Data",
        "",
        f"Generated `{data.scale}` scale: {data.users:,} users, {data.items:,} items, "
        f"{data.days} days, {data.events_total:,} events (dirty rows included). The full build "
        f"reads the first export ({data.events_initial:,} events, all but the last day); the "
        f"incremental build follows the append of {data.events_appended:,} events (the last "
        f"day, plus {data.late_events_appended:,} late events of the two days before it).",
        "",
        "### Steps",
        "",
        "Each step is its own process; peak memory is its resident-set high-water mark.",
        "",
        *_table(
            ("step", "wall time", "peak memory", "notes"),
            [
                _step("generate the data", results.generate, data.scale),
                _step(
                    "full `dbt build` (fresh DuckDB file, --full-refresh)",
                    full.measurement,
                    f"{len(full.models)} models, {full.tests} tests",
                ),
                _step(
                    "one aggregate scan of the raw events (DuckDB)",
                    results.scan,
                    f"query {results.scan_query_seconds:.2f} s; settings "
                    + (", ".join(f"{k}={v}" for k, v in results.scan_settings.items()) or "none"),
                ),
                _step(
                    "pandas baseline (user, item, co-visitation features)",
                    results.pandas,
                    "recflow/bench/pandas_baseline.py",
                ),
                _step(
                    "Polars baseline (the same features, lazy API)",
                    results.polars,
                    "recflow/bench/polars_baseline.py",
                ),
                _step(
                    "incremental `dbt build` after appending a day",
                    incremental.measurement,
                    f"{len(incremental.models)} models, {incremental.tests} tests",
                ),
                _step(
                    "trainer (`python -m trainer.task`)",
                    results.trainer,
                    _trainer_phases(results.trainer_timings),
                ),
                _step(
                    "serving `dbt build --selector serving` after the trainer",
                    serving.measurement,
                    f"{len(serving.models)} models, {serving.tests} tests",
                ),
            ],
        ),
        "",
        "Ratios: build / scan query "
        f"{results.build_over_scan:.1f}x; incremental / full "
        f"{results.incremental_over_full:.0%}. Like for like, against the dbt models the "
        f"baselines repeat ({results.mirrored_models_seconds:.1f} s in run_results.json): pandas "
        f"{results.pandas_over_mirrored:.2f}x, Polars {results.polars_over_mirrored:.2f}x. "
        f"Against the whole full build (info): pandas {results.pandas_over_build:.2f}x, Polars "
        f"{results.polars.seconds / full.measurement.seconds:.2f}x. Full local pipeline (full "
        f"build + trainer + serving build): {results.pipeline_seconds:.1f} s, peak "
        f"{_gib(results.pipeline_peak_rss_bytes)}.",
        "",
        f"### Slowest models, full build (of {len(full.models)}; tests "
        f"{full.tests_seconds:.1f} s in all)",
        "",
        *_model_table(full.models),
        "",
        f"### Slowest models, incremental build (tests {incremental.tests_seconds:.1f} s in all)",
        "",
        *_model_table(incremental.models),
        "",
        f"### Slowest models, serving build (tests {serving.tests_seconds:.1f} s in all)",
        "",
        *_model_table(serving.models),
        "",
        "### Pandas baseline by phase",
        "",
        *_phase_table(results.pandas_phase_seconds),
        "",
        "### Polars baseline by phase",
        "",
        *_phase_table(results.polars_phase_seconds),
        "",
        "### Scans per raw source in a full build",
        "",
        "Counted by the review's scan counter (recflow/review/scans.py) on the build's manifest.",
        "",
        *_table(
            ("source", "scans"),
            [(name, str(count)) for name, count in sorted(results.raw_source_scans.items())],
        ),
        *(["", *render_bigquery_bytes(results.bigquery_bytes)] if results.bigquery_bytes else []),
        END_MARKER,
    ]
    return "\n".join(lines) + "\n"


def splice_generated(existing: str | None, generated: str) -> str:
    """Replace the generated section of an existing docs/benchmarks.md, keeping the prose around
    it; a file without the markers (or none) gets a short header and the section."""
    if existing and BEGIN_MARKER in existing and END_MARKER in existing:
        before, _, rest = existing.partition(BEGIN_MARKER)
        _, _, after = rest.partition(END_MARKER)
        return before + generated.rstrip("\n") + after
    header = (
        "# Benchmarks\n\n"
        "Measured by `make bench` (`recflow bench`, see README). The section between the markers "
        "is generated; notes outside it are kept when the benchmark is rerun.\n\n"
    )
    return header + generated


def _dominant_models(results: BenchResults) -> list[str]:
    """Where a time target is missed, the model that dominates each build (the issue asks)."""
    missed = [c for c in check_targets(results) if not c.met and not c.figure.startswith("scans")]
    if not missed:
        return []
    lines = []
    for label, build in (
        ("full", results.full_build),
        ("incremental", results.incremental_build),
        ("serving", results.serving_build),
    ):
        if build.models:
            top = build.models[0]
            share = top.seconds / (sum(m.seconds for m in build.models) or 1.0)
            lines.append(
                f"- {label} build: slowest model `{top.name}`, {top.seconds:.1f} s "
                f"({share:.0%} of the summed model time)"
            )
    return ["Where a time target is missed, the build's dominant model:", "", *lines, ""]


def _trainer_phases(timings: Mapping[str, float]) -> str:
    """`load 1.2 s, train 3.4 s, ...` in the trainer's order, without the `_seconds` suffix."""
    known = ("load", "train", "evaluate", "recommend", "write_artifacts")
    ordered = sorted(
        timings.items(),
        key=lambda kv: (
            known.index(kv[0].removesuffix("_seconds"))
            if kv[0].removesuffix("_seconds") in known
            else len(known)
        ),
    )
    return ", ".join(f"{k.removesuffix('_seconds')} {v:.1f} s" for k, v in ordered)


def _step(name: str, measurement: Measurement, notes: str) -> tuple[str, str, str, str]:
    return (name, f"{measurement.seconds:.1f} s", _gib(measurement.peak_rss_bytes), notes)


def _phase_table(phase_seconds: Mapping[str, float]) -> list[str]:
    return _table(("phase", "seconds"), [(name, f"{s:.1f}") for name, s in phase_seconds.items()])


def _model_table(models: tuple[ModelTiming, ...]) -> list[str]:
    return _table(("model", "seconds"), [(m.name, f"{m.seconds:.2f}") for m in models[:TOP_MODELS]])


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def _gib(size: int) -> str:
    return f"{size / GIB:.2f} GiB"
