"""`recflow`: the project's command line. Parses arguments, calls one function, prints."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

from recflow import sample_data
from recflow.dbt_invocation import DbtFailedError, compiled_analysis_sql, run_dbt
from recflow.settings import Settings, default_data_dir
from recflow.warehouse_report import BuildSummary, summarise_build

log = logging.getLogger("recflow")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        return args.handler(args)
    except DbtFailedError as error:
        print(f"recflow: {error}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recflow", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    sample = commands.add_parser("sample", help="write a generated sample data directory")
    _add_sample_arguments(sample)
    sample.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    sample.add_argument("--data-dir", type=Path, default=default_data_dir())
    sample.set_defaults(handler=_sample)

    run = commands.add_parser(
        "run",
        help="build the feature pipeline on the embedded default (DuckDB, local files)",
        description="Generate the sample data if the default data directory is empty, run "
        "`dbt build`, and print rows per model, quarantined rows and candidate recall.",
    )
    run.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="a data directory in the raw data contract (default: $RECFLOW_DATA_DIR, else "
        "data/sample, generated on first use)",
    )
    _add_sample_arguments(run)
    run.set_defaults(handler=_run)
    return parser


def _add_sample_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", choices=sorted(sample_data.SCALES), default="demo")
    parser.add_argument("--seed", type=int, default=None, help="override the scale's seed")


def _sample(args: argparse.Namespace) -> int:
    written = _write_sample(args.data_dir, args.scale, args.seed, args.format)
    print(f"wrote {written} ({args.scale}, {args.format})")
    return 0


def _write_sample(data_dir: Path, scale: str, seed: int | None, file_format: str) -> Path:
    spec = sample_data.SCALES[scale]
    if seed is not None:
        spec = dataclasses.replace(spec, seed=seed)
    generated = sample_data.generate(spec)
    sample_data.write_data_dir(generated.tables, data_dir, file_format=file_format)
    return data_dir


def _run(args: argparse.Namespace) -> int:
    settings = Settings.from_env(data_dir=args.data_dir)
    if settings.is_default_data_dir and not settings.data_dir.exists():
        log.info("no data in %s yet: generating the %s sample", settings.data_dir, args.scale)
        _write_sample(settings.data_dir, args.scale, args.seed, "parquet")
    settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    build = run_dbt(settings, "build")
    build_seconds = time.perf_counter() - started
    models = sorted(
        node.unique_id.split(".")[-1] for node in build.nodes if node.unique_id.startswith("model.")
    )
    summary = summarise_build(
        settings,
        model_names=models,
        recall_sql=compiled_analysis_sql(settings, "candidate_recall_by_source"),
    )
    _print_summary(settings, summary, build_seconds)
    return 0


def _print_summary(settings: Settings, summary: BuildSummary, build_seconds: float) -> None:
    print(f"\ndbt build on {settings.duckdb_path} from {settings.data_dir}: {build_seconds:.1f} s")
    print("\nrows per model")
    for name, rows in summary.rows_per_model.items():
        print(f"  {name:<34} {rows:>12,}")
    print(f"\nquarantined rows: {sum(summary.quarantined.values()):,}")
    for (source_table, reason), count in summary.quarantined.items():
        print(f"  {source_table + '.' + reason:<34} {count:>12,}")
    recall = dict(summary.candidate_recall)
    positives = recall.pop("test_positives")
    print(f"\ncandidate recall on the test window ({positives:,} positive interactions)")
    for source, share in recall.items():
        print(f"  {source:<34} {share:>12.1%}")


if __name__ == "__main__":
    sys.exit(main())
