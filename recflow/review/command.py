"""`recflow review`: compare the pull request's dbt manifest with the base branch's.

The I/O edge of the review: reads the two manifests and dbt/review.yml, times the pure
`build_review`, writes review.md and review.json. Optionally (`--lint`) runs sqlfluff on the
changed models' SQL files (`lint.py`), given both builds' run_results.json (and DuckDB
files) measures each changed model's cost on both builds (`cost.py`), and with `--bigquery`
dry-runs each changed model's production SQL on BigQuery (`bigquery_cost.py`) and decides the
cost gate on them (`dry_run_gate.py`). With `--base-ref` it first builds the base ref and the
working tree side by side (`builds.py`) and reviews those, which is all `make review` runs.
Exit 0 whatever the flags say (they are information for the reviewer); 1 when the BigQuery cost
gate fails (the report is written first) or a --base-ref build fails; 2 when an input is missing
or malformed, the base ref is not a commit, sqlfluff cannot run, or BigQuery settings,
credentials or gate limits are unusable.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from recflow.pipeline.settings import Settings
from recflow.review.bigquery_cost import (
    BigQueryDryRunError,
    BigQuerySettings,
    dry_run_changed,
    make_client,
    require_bigquery_manifest,
)
from recflow.review.builds import (
    PROD_TARGET,
    ReviewBuildError,
    build_against_ref,
    ensure_sample_data,
)
from recflow.review.cost import compare_costs, load_run_results, measure
from recflow.review.dry_run_gate import (
    BUILDS_PER_MONTH_ENV,
    MAX_BYTES_ENV,
    MAX_MONTHLY_USD_ENV,
    DryRunGateError,
    DryRunLimits,
    evaluate_gate,
)
from recflow.review.findings import Finding, ReviewConfigError, load_config
from recflow.review.lint import LintError, lint_findings
from recflow.review.manifest_graph import ManifestError, build_graph, load_manifest
from recflow.review.report import (
    ChangedModel,
    Review,
    build_review,
    changed_models,
    render_markdown,
    to_json,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MANIFEST = REPO_ROOT / "dbt" / "target" / "manifest.json"
DEFAULT_CONFIG = REPO_ROOT / "dbt" / "review.yml"
DEFAULT_PROJECT_DIR = REPO_ROOT / "dbt"
DEFAULT_SQLFLUFF_CONFIG = REPO_ROOT / ".sqlfluff"
EXIT_BAD_INPUT = 2
EXIT_GATE_FAILED = 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `review` subcommand; its `handler` returns the exit code."""
    parser = subparsers.add_parser(
        "review",
        help="compare the dbt project with the base branch's and write a review report",
        description="Compare two dbt manifests (the pull request's and the base branch's) and "
        "write review.md (a pull-request comment) and review.json: changed models, full-build "
        "scans per relation, duplicated logic and DAG structure rules.",
    )
    base = parser.add_mutually_exclusive_group(required=True)
    base.add_argument("--base-manifest", type=Path, help="the base branch's manifest.json")
    base.add_argument(
        "--state", type=Path, help="a directory holding the base branch's manifest.json"
    )
    base.add_argument(
        "--base-ref",
        help="build this git ref's dbt project and the working tree's (--project-dir) on the "
        "DuckDB `ci` target from the same data ($RECFLOW_DATA_DIR, generated if missing), each "
        "in OUT_DIR/work, and review them with their measured cost (what `make review` runs); "
        "with --bigquery also compile both with `--target prod` for the dry run",
    )
    parser.add_argument(
        "--manifest",
        type=Path,
        default=DEFAULT_MANIFEST,
        help="the pull request's manifest.json, with compiled_code (default: dbt/target)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help="thresholds and ignores (default: dbt/review.yml)",
    )
    parser.add_argument("--out-dir", type=Path, default=Path(), help="where review.* go")
    parser.add_argument(
        "--base-label", help="how the report names the base (default: its manifest's path)"
    )
    parser.add_argument(
        "--label", help="how the report names the pull request (default: its manifest's path)"
    )
    cost = parser.add_argument_group(
        "measured cost (shown only when both run results are given)",
        "artifacts of the base and pull-request DuckDB builds",
    )
    cost.add_argument("--run-results", type=Path, help="the pull request build's run_results.json")
    cost.add_argument("--base-run-results", type=Path, help="the base build's run_results.json")
    cost.add_argument(
        "--warehouse", type=Path, help="the pull request build's DuckDB file (rows, scans)"
    )
    cost.add_argument("--base-warehouse", type=Path, help="the base build's DuckDB file")
    lint = parser.add_argument_group("sqlfluff on the changed models' SQL files")
    lint.add_argument("--lint", action="store_true", help="run sqlfluff on changed SQL files")
    lint.add_argument(
        "--project-dir",
        type=Path,
        default=DEFAULT_PROJECT_DIR,
        help="the pull request's dbt project directory (default: dbt)",
    )
    lint.add_argument(
        "--sqlfluff-config",
        type=Path,
        default=DEFAULT_SQLFLUFF_CONFIG,
        help="sqlfluff configuration (default: the repository's .sqlfluff)",
    )
    bigquery = parser.add_argument_group(
        "BigQuery dry run of the changed models (needs credentials)",
        "Both sides' manifests compiled for production (`dbt compile --target prod`); project, "
        "location and credentials from the prod target's variables: RECFLOW_BQ_PROJECT, "
        "RECFLOW_BQ_LOCATION, RECFLOW_BQ_AUTH_METHOD (oauth: Application Default Credentials; "
        "service-account: RECFLOW_BQ_KEYFILE).",
    )
    bigquery.add_argument(
        "--bigquery", action="store_true", help="dry-run each changed model on BigQuery"
    )
    bigquery.add_argument(
        "--bigquery-manifest", type=Path, help="the pull request's manifest compiled for prod"
    )
    bigquery.add_argument(
        "--base-bigquery-manifest", type=Path, help="the base branch's manifest compiled for prod"
    )
    bigquery.add_argument(
        "--max-bytes-increase",
        type=int,
        help="fail (exit 1) when the changed models process more than this many bytes more per "
        f"production build (default: {MAX_BYTES_ENV}, else no limit)",
    )
    bigquery.add_argument(
        "--max-monthly-usd-increase",
        type=float,
        help="fail (exit 1) when that increase costs more than this many USD per month "
        f"(default: {MAX_MONTHLY_USD_ENV}, else no limit)",
    )
    bigquery.add_argument(
        "--builds-per-month",
        type=float,
        help=f"production builds per month, for the monthly cost (default: {BUILDS_PER_MONTH_ENV}, "
        "else 30)",
    )
    parser.set_defaults(handler=run_review)


def run_review(args: argparse.Namespace) -> int:
    """Read the inputs (with --base-ref: build them first), build the review, write review.md
    and review.json."""
    if args.base_ref is not None:
        return _review_against_ref(args)
    return _review(args)


def _review_against_ref(args: argparse.Namespace) -> int:
    """Build the base ref and the working tree side by side, then review them as `make review`
    did: measured cost on both builds, the dry run's manifests when --bigquery is given."""
    built_here = ("run_results", "base_run_results", "warehouse", "base_warehouse")
    built_here += ("bigquery_manifest", "base_bigquery_manifest")
    if given := [name for name in built_here if getattr(args, name) is not None]:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        print(f"recflow review: --base-ref builds both sides itself; drop {flags}", file=sys.stderr)
        return EXIT_BAD_INPUT
    data_dir = Settings.from_env().data_dir
    ensure_sample_data(data_dir)
    try:
        builds = build_against_ref(
            args.project_dir,
            args.base_ref,
            args.out_dir.resolve() / "work",
            data_dir,
            bigquery=args.bigquery,
        )
    except ReviewBuildError as error:
        print(f"recflow review: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    base, head = builds.base, builds.head
    inputs = {
        "base_manifest": None,
        "state": base.target_path(),
        "manifest": head.manifest(),
        "base_run_results": base.run_results,
        "run_results": head.run_results,
        "base_warehouse": base.warehouse,
        "warehouse": head.warehouse,
        "base_label": args.base_label or builds.base_label,
        "label": args.label or builds.head_label,
    }
    if args.bigquery:
        inputs["bigquery_manifest"] = head.manifest(PROD_TARGET)
        inputs["base_bigquery_manifest"] = base.manifest(PROD_TARGET)
    return _review(argparse.Namespace(**{**vars(args), **inputs}), builds.lint_environment)


def _review(args: argparse.Namespace, lint_environment: Mapping[str, str] | None = None) -> int:
    base_path = args.base_manifest or args.state / "manifest.json"
    try:
        base_manifest = load_manifest(base_path)
        head_manifest = load_manifest(args.manifest)
        config = load_config(args.config)
    except (ManifestError, ReviewConfigError) as error:
        print(f"recflow review: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if (args.run_results is None) != (args.base_run_results is None):
        print("recflow review: give both --run-results and --base-run-results", file=sys.stderr)
        return EXIT_BAD_INPUT
    bigquery_manifests = (args.bigquery_manifest, args.base_bigquery_manifest)
    if args.bigquery != all(path is not None for path in bigquery_manifests):
        print(
            "recflow review: --bigquery goes with --bigquery-manifest and "
            "--base-bigquery-manifest (both compiled with `dbt compile --target prod`)",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    started = time.perf_counter()
    try:
        extra = _lint(args, base_manifest, head_manifest, lint_environment) if args.lint else ()
        review = build_review(
            base_manifest,
            head_manifest,
            config,
            base_label=args.base_label or str(base_path),
            head_label=args.label or str(args.manifest),
            extra_findings=extra,
        )
        if args.lint:
            linted = tuple(path for _, path in _sql_changed(review.changed_models))
            review = replace(review, linted_files=linted)
        if args.run_results is not None:
            review = _with_costs(review, args)
        if args.bigquery:
            review = _with_dry_runs(review, args, config.usd_per_tib)
    except (ManifestError, LintError, BigQueryDryRunError, DryRunGateError) as error:
        print(f"recflow review: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    seconds = time.perf_counter() - started
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "review.md").write_text(render_markdown(review, seconds))
    (args.out_dir / "review.json").write_text(json.dumps(to_json(review, seconds), indent=2) + "\n")
    print(
        f"recflow review: {len(review.flags)} flag(s), {len(review.changed_models)} changed "
        f"model(s), {seconds:.2f} s; wrote {args.out_dir / 'review.md'} and review.json"
    )
    gate = review.bigquery_gate
    if gate is not None and not gate.passed:
        for failure in gate.failures:
            print(f"recflow review: BigQuery cost gate failed: {failure}", file=sys.stderr)
        return EXIT_GATE_FAILED
    return 0


def _limits(args: argparse.Namespace) -> DryRunLimits:
    """The gate's limits: the environment's, each replaced by its flag when given."""
    limits = DryRunLimits.from_env()
    overrides = {
        "max_bytes_increase": args.max_bytes_increase,
        "max_monthly_usd_increase": args.max_monthly_usd_increase,
        "builds_per_month": args.builds_per_month,
    }
    given = {k: v for k, v in overrides.items() if v is not None}
    if any(v < 0 for v in given.values()) or given.get("builds_per_month") == 0:
        raise DryRunGateError(f"gate limits must be >= 0 and builds per month > 0: {given}")
    return replace(limits, **given)


def _sql_changed(models: tuple[ChangedModel, ...]) -> list[tuple[str, str]]:
    """(unique id, path) of the pull request's models whose SQL is new or changed."""
    return [
        (m.unique_id, m.path)
        for m in models
        if m.change == "new" or (m.change == "modified" and "sql" in m.aspects)
    ]


def _lint(
    args: argparse.Namespace,
    base: dict[str, Any],
    head: dict[str, Any],
    environment: Mapping[str, str] | None,
) -> tuple[Finding, ...]:
    files = _sql_changed(changed_models(build_graph(base), build_graph(head)))
    return lint_findings(args.project_dir, files, args.sqlfluff_config, environment)


def _with_costs(review: Review, args: argparse.Namespace) -> Review:
    """The review with the measured cost of its changed models on both builds."""
    uids = [m.unique_id for m in review.changed_models]
    base_costs = measure(
        review.base_graph, uids, load_run_results(args.base_run_results), args.base_warehouse
    )
    head_costs = measure(
        review.head_graph, uids, load_run_results(args.run_results), args.warehouse
    )
    rows = compare_costs(review.base_graph, review.head_graph, uids, base_costs, head_costs)
    return replace(review, costs=rows)


def _with_dry_runs(review: Review, args: argparse.Namespace, usd_per_tib: float) -> Review:
    """The review with BigQuery dry-run bytes of its changed models on both sides."""
    head = load_manifest(args.bigquery_manifest)
    base = load_manifest(args.base_bigquery_manifest)
    require_bigquery_manifest(head, str(args.bigquery_manifest))
    require_bigquery_manifest(base, str(args.base_bigquery_manifest))
    limits = _limits(args)  # before any request: a bad limit is bad input
    settings = BigQuerySettings.from_env()
    uids = [m.unique_id for m in review.changed_models]
    cost = dry_run_changed(make_client(settings), settings, uids, base, head, usd_per_tib)
    return replace(review, bigquery=cost, bigquery_gate=evaluate_gate(cost, limits))
