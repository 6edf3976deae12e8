"""`recflow`: the project's command line. Parses arguments, calls one function, prints."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import sys
import time
from pathlib import Path

from recflow.bench import command as bench_command
from recflow.checks import bigquery as bigquery_check
from recflow.gcp import trainer_image, vertex_submit
from recflow.pipeline import run_lock
from recflow.pipeline.dbt_invocation import (
    DbtFailedError,
    build_features,
    compiled_analysis_sql,
    run_dbt,
)
from recflow.pipeline.settings import (
    RunSettings,
    Settings,
    SettingsError,
    add_run_setting_arguments,
    default_data_dir,
    run_settings_from_args,
)
from recflow.pipeline.warehouse_report import BuildSummary, summarise_build
from recflow.promotion import command as promotion_command
from recflow.report import command as report_command
from recflow.report.build import write_report
from recflow.review import command as review_command
from recflow.review import comment as review_comment
from recflow.samples import events as sample_events
from recflow.samples import ratings as sample_ratings
from trainer import data_problems
from trainer import task as trainer_task
from trainer.config import TrainerConfig
from trainer.errors import TrainerInputError

log = logging.getLogger("recflow")
# Shapes of generated data; each module has SCALES, DEFAULT_SCALE and generate(spec).
SAMPLE_PROFILES = {"events": sample_events, "ratings": sample_ratings}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if check := getattr(args, "check_sample_arguments", None):
        check(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # sqlfluff (check-bigquery) narrates every parse at INFO.
    logging.getLogger("sqlfluff").setLevel(logging.WARNING)
    try:
        return args.handler(args)
    except (SettingsError, TrainerInputError, run_lock.WarehouseBusyError) as error:
        print(f"recflow: {error}", file=sys.stderr)
        return 2
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
        "`dbt build` (features), train and evaluate the ranker, write batch recommendations back "
        "to DuckDB and build the models over them (`dbt build --selector serving`).",
    )
    run.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="a data directory in the raw data contract (default: $RECFLOW_DATA_DIR, else "
        "data/sample, generated on first use)",
    )
    run.add_argument(
        "--holdout-days",
        type=int,
        default=None,
        help="length of the label window and of the spacing between cutoffs, so of the "
        "validation and test hold-outs: shorthand for --var label_window_days=N --var "
        "cutoff_interval_days=N (default: the dbt vars, 7)",
    )
    add_run_setting_arguments(run)
    run.add_argument(
        "--full-refresh",
        action="store_true",
        help="rebuild every table from the export (done anyway, with the reason, when the export "
        "changed where an incremental build would keep stored rows)",
    )
    run.add_argument(
        "--skip-training", action="store_true", help="stop after the feature build and report"
    )
    _add_sample_arguments(run)
    run.set_defaults(handler=_run)

    bigquery_check.register(commands)
    vertex_submit.register(commands)
    trainer_image.register(commands)
    review_command.register(commands)
    review_comment.register(commands)
    bench_command.register(commands)
    promotion_command.register(commands)
    report_command.register(commands)
    return parser


def _add_sample_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        choices=sorted(SAMPLE_PROFILES),
        default="events",
        help="shape of the generated data: session logs (events) or MovieLens-like ratings",
    )
    per_profile = "; ".join(
        f"{name}: {', '.join(sorted(module.SCALES))}" for name, module in SAMPLE_PROFILES.items()
    )
    parser.add_argument(
        "--scale",
        choices=sorted({scale for module in SAMPLE_PROFILES.values() for scale in module.SCALES}),
        default=None,
        help=f"size of the generated data, per profile ({per_profile}; default demo)",
    )
    parser.add_argument("--seed", type=int, default=None, help="override the scale's seed")
    parser.set_defaults(check_sample_arguments=functools.partial(_check_scale, parser))


def _check_scale(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Default the scale to the profile's, and reject a scale the profile does not have."""
    scales = SAMPLE_PROFILES[args.profile].SCALES
    if args.scale is None:
        args.scale = SAMPLE_PROFILES[args.profile].DEFAULT_SCALE
    elif args.scale not in scales:
        parser.error(
            f"argument --scale: the {args.profile} profile has no scale {args.scale!r} "
            f"(choose from {', '.join(sorted(scales))})"
        )


def _sample(args: argparse.Namespace) -> int:
    written = _write_sample(args.data_dir, args.scale, args.seed, args.format, args.profile)
    print(f"wrote {written} ({args.profile} {args.scale}, {args.format})")
    return 0


def _write_sample(
    data_dir: Path, scale: str, seed: int | None, file_format: str, profile: str = "events"
) -> Path:
    module = SAMPLE_PROFILES[profile]
    spec = module.SCALES[scale]
    if seed is not None:
        spec = dataclasses.replace(spec, seed=seed)
    log.info("generating the %s sample at scale %s", profile, scale)
    generated = module.generate(spec)
    sample_events.write_data_dir(generated.tables, data_dir, file_format=file_format)
    return data_dir


def _run(args: argparse.Namespace) -> int:
    # Checked before the sample, the warehouse directory or dbt touch anything.
    run_settings = run_settings_from_args(args)
    print(run_settings.describe())
    settings = Settings.from_env(data_dir=args.data_dir, dbt_vars=run_settings.dbt_vars)
    with run_lock.warehouse_lock(settings.duckdb_path):
        return _run_locked(args, run_settings, settings)


def _run_locked(args: argparse.Namespace, run_settings: RunSettings, settings: Settings) -> int:
    if settings.is_default_data_dir and not settings.data_dir.exists():
        log.info("no data in %s yet: generating the %s sample", settings.data_dir, args.scale)
        _write_sample(settings.data_dir, args.scale, args.seed, "parquet", args.profile)
    settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    build = build_features(settings, full_refresh=args.full_refresh)
    build_seconds = time.perf_counter() - started
    # Before the summary and training, which would fail on such data for reasons not its cause.
    data_problems.check_warehouse(f"duckdb://{settings.duckdb_path}", schema="main")
    models = sorted(
        node.unique_id.split(".")[-1] for node in build.nodes if node.unique_id.startswith("model.")
    )
    summary = summarise_build(
        settings,
        model_names=models,
        recall_sql=compiled_analysis_sql(settings, "candidate_recall_by_source"),
    )
    _print_summary(settings, summary, build_seconds)
    if args.skip_training:
        return 0

    print("\ntraining the ranker on the feature tables")
    config = TrainerConfig.for_run(
        warehouse_uri=f"duckdb://{settings.duckdb_path}",
        manifest_path=settings.dbt_target_path / "manifest.json",
        top_k=run_settings.top_k,
        dbt_vars=run_settings.dbt_vars,
    )
    trained = trainer_task.run_and_report(config)
    if trained != 0:
        return trained
    print("\nrun report:", write_report(Path(config.run_dir), warehouse_uri=config.warehouse_uri))
    # settings.dbt_vars already holds recommendations_per_user = K for the serving tests.
    run_dbt(settings, "build", "--selector", "serving")
    print("\nrecommendations built and tested: table main.recommendations in", settings.duckdb_path)
    return 0


def _print_summary(settings: Settings, summary: BuildSummary, build_seconds: float) -> None:
    print(f"\ndbt build on {settings.duckdb_path} from {settings.data_dir}: {build_seconds:.1f} s")
    print("\nrows per model")
    for name, rows in summary.rows_per_model.items():
        print(f"  {name:<34} {rows:>12,}")
    print(f"\nquarantined rows: {sum(summary.quarantined.values()):,}")
    for (source_table, reason), count in summary.quarantined.items():
        print(f"  {source_table + '.' + reason:<34} {count:>12,}")
    print(f"nulled values (unparseable, staged as null): {sum(summary.nulled_values.values()):,}")
    for (source_table, column_name), count in summary.nulled_values.items():
        print(f"  {source_table + '.' + column_name:<34} {count:>12,}")
    recall = dict(summary.candidate_recall)
    positives = recall.pop("test_positives")
    print(f"\ncandidate recall on the test window ({positives:,} positive interactions)")
    for source, share in recall.items():
        # No test positives (too little data for a test window): no share to show.
        print(f"  {source:<34} {'n/a' if share is None else f'{share:.1%}':>12}")


if __name__ == "__main__":
    sys.exit(main())
