"""Offline BigQuery check: compile the dbt project for BigQuery and check every statement.

Production runs on BigQuery, laptops and CI on DuckDB. This check catches SQL that only DuckDB
accepts without a GCP account and without network, in about twenty seconds:

1. **Compile for BigQuery, offline.** A throwaway profiles directory gets one `bigquery` target:
   the project's own `prod` output from `profiles.yml` (so its env-var plumbing is exercised)
   rendered with fake values for its variables (`RECFLOW_BQ_PROJECT` and friends), with the
   authentication replaced by a freshly generated RSA service-account key file whose token URI
   is a closed local port. dbt opens a connection at start-up even for `dbt compile` (it builds
   the credentials), so a key file is needed; with `oauth` it would look for Application
   Default Credentials and probe the GCE metadata server instead. `dbt compile` then runs with

   - `--no-populate-cache`: no listing of datasets (without it dbt asks BigQuery for every
     schema and hangs retrying a token request);
   - `--no-introspect`: a node that needs the warehouse while compiling (`run_query`,
     `adapter.get_relation`) fails at once with dbt's "connection never acquired" instead of
     waiting on the network;
   - `--select fqn:*`: every model, data test, singular test and analysis, including the
     `serving` nodes the default selector leaves out. `on-run-start` hooks compile too; on
     BigQuery they render empty (`register_*` have no BigQuery work), and dbt skips empty hooks;
   - a hermetic environment (no inherited `DBT_*`, `RECFLOW_*`, `GOOGLE_*` variables;
     `NO_GCE_CHECK`, metadata host on a closed port) and a timeout on the child process.

   dbt stops at the first node it cannot compile (a macro without a BigQuery variant stops it
   while parsing, before it names any node: the check then finds the models calling that
   macro in the source files). dbt compiles unit tests only inside `dbt test`, where their
   fixtures need the column types of the real input tables, so unit tests are not compiled
   here; the models they test are.

2. **Incremental models.** `is_incremental()` looks the relation up in the warehouse before it
   consults `--full-refresh`, so a plain offline compile of an incremental model fails. The
   project overrides `is_incremental()` (`dbt/macros/cross_db/is_incremental.sql`): while the
   dbt var `recflow_offline_compile` is set it answers from the var without a lookup, and
   otherwise defers to dbt's own macro. The check compiles everything with `full_refresh`,
   then, if there are incremental models, compiles those again with `incremental`, so both
   branches of every incremental model are checked.

3. **Parse every compiled statement as BigQuery.** sqlfluff's BigQuery grammar, with three
   rules on its parse tree: nothing unparsable, no `::` casts, and only BigQuery functions.
   sqlglot was evaluated as the parser and rejected: its BigQuery reader accepts nearly every
   DuckDB-only construct we tried (`struct_pack(a := 1)`, list comprehensions,
   `select * exclude (...)`, `from 'file.parquet'`, `cast(x as varchar)`, `x::int`, lambdas,
   `using sample`), turning unknown syntax into anonymous functions or generic nodes, whereas
   sqlfluff rejects all of those but `::` (a rule here). Neither knows which functions exist
   (`try_cast(...)` parses in both), hence the allow-list of BigQuery's functions. Both accept
   all the project's compiled SQL.

4. **Types and table layout, with sqlglot.** sqlglot's optimizer resolves every model's output
   columns and types from the sources' YAML columns up through the DAG, which gives two more
   checks: comparisons BigQuery has no signature for (TIMESTAMP with DATETIME or DATE, as
   `dbt.dateadd` returns DATETIME on BigQuery), and `partition_by`/`cluster_by` configs that
   name a missing column or one of the wrong type. Where sqlglot cannot resolve a statement,
   the node gets a note, not a failure.

Here: the orchestration and the `check-bigquery` subcommand. Step 1 is `offline_compile` (and
`compile_log` for a compile that fails), step 3 `statements` (the function list is
`bigquery_functions.txt`), step 4 `column_types`; `results` holds what is found and its report.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from recflow.checks.column_types import ManifestSchema
from recflow.checks.compile_log import compile_failures
from recflow.checks.offline_compile import (
    DEFAULT_TIMEOUT_S,
    compile_for_bigquery,
    offline_environment,
    read_yaml,
    write_offline_profile,
)
from recflow.checks.results import CheckResult, NodeResult, Problem, format_report
from recflow.checks.statements import StatementChecker
from recflow.pipeline.settings import REPO_ROOT

_COMPILED_TYPES = ("model", "test", "analysis", "operation")


def check_bigquery(
    project_dir: Path, *, work_dir: Path, timeout_s: float = DEFAULT_TIMEOUT_S
) -> CheckResult:
    """Compile the dbt project at `project_dir` for BigQuery, offline, and check every node.

    `work_dir` receives the throwaway profile and key, dbt's target and log directories and
    the compiled SQL the report points at; it is created if missing and never cleaned here.
    Each dbt child process is killed after `timeout_s` seconds.
    """
    started = time.perf_counter()
    project_dir = project_dir.resolve()
    work_dir = work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    project = read_yaml(project_dir / "dbt_project.yml")
    env = offline_environment(write_offline_profile(project_dir, project, work_dir))

    full = compile_for_bigquery(project_dir, work_dir, env, "full_refresh", ("fqn:*",), timeout_s)
    manifest = full.manifest()
    if full.returncode != 0 or manifest is None:
        nodes, errors = compile_failures(full, manifest, project_dir, project, "full_refresh")
        return CheckResult(
            project_dir=project_dir,
            work_dir=work_dir,
            nodes=nodes,
            errors=errors,
            manifest_path=full.target_path / "manifest.json" if manifest else None,
            compile_seconds=full.seconds,
            check_seconds=time.perf_counter() - started,
        )

    checker = StatementChecker()
    schema = ManifestSchema(manifest)
    results = [
        _check_node(node, "full_refresh", checker, schema) for node in _compiled_nodes(manifest)
    ]
    errors: list[str] = []
    compile_seconds = full.seconds
    incremental = sorted(
        node["name"]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["config"].get("materialized") == "incremental"
    )
    if incremental:
        rerun = compile_for_bigquery(
            project_dir, work_dir, env, "incremental", incremental, timeout_s
        )
        compile_seconds += rerun.seconds
        rerun_manifest = rerun.manifest()
        if rerun.returncode != 0 or rerun_manifest is None:
            nodes, rerun_errors = compile_failures(
                rerun, rerun_manifest, project_dir, project, "incremental"
            )
            results.extend(nodes)
            errors.extend(rerun_errors)
        else:
            results.extend(
                _check_node(
                    rerun_manifest["nodes"][f"model.{project['name']}.{name}"],
                    "incremental",
                    checker,
                    schema,
                )
                for name in incremental
            )
    return CheckResult(
        project_dir=project_dir,
        work_dir=work_dir,
        nodes=tuple(results),
        errors=tuple(errors),
        unit_tests_not_compiled=tuple(sorted(manifest.get("unit_tests", {}))),
        manifest_path=full.target_path / "manifest.json",
        compile_seconds=compile_seconds,
        check_seconds=time.perf_counter() - started,
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `check-bigquery` subcommand to a `recflow`-style subparsers object.

    The subcommand's `handler` (set with `set_defaults`) returns the exit code: 0 when every
    node passes, 1 otherwise.
    """
    parser = subparsers.add_parser(
        "check-bigquery",
        help="compile the dbt project for BigQuery offline and check every statement",
        description="Compile every model, test and analysis for BigQuery with fake credentials "
        "and no network, then parse each compiled statement as BigQuery SQL and check its "
        "functions, comparisons and table layout. Prints each failure with its file and line.",
    )
    parser.add_argument(
        "--project-dir", type=Path, default=REPO_ROOT / "dbt", help="the dbt project (default: dbt)"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where the compiled SQL and dbt's logs go (default: a temporary directory, "
        "removed when the check passes)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds each dbt compile may take (default {DEFAULT_TIMEOUT_S:.0f})",
    )
    parser.set_defaults(handler=_run_from_cli)


def _run_from_cli(args: argparse.Namespace) -> int:
    work_dir: Path = args.work_dir or Path(tempfile.mkdtemp(prefix="recflow-bigquery-check-"))
    result = check_bigquery(args.project_dir, work_dir=work_dir, timeout_s=args.timeout)
    print(format_report(result))
    if result.passed and args.work_dir is None:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0 if result.passed else 1


def _compiled_nodes(manifest: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every compiled model, test, analysis and hook; hooks only when they emit SQL."""
    for node in manifest["nodes"].values():
        if node["resource_type"] not in _COMPILED_TYPES:
            continue
        if node["resource_type"] == "operation" and not (node.get("compiled_code") or "").strip():
            continue
        yield node


def _check_node(
    node: Mapping[str, Any], mode: str, checker: StatementChecker, schema: ManifestSchema
) -> NodeResult:
    compiled_path = (
        Path(os.path.normpath(node["compiled_path"])) if node.get("compiled_path") else None
    )
    sql = node.get("compiled_code")
    problems: list[Problem] = []
    notes: list[str] = []
    if sql is None or not node.get("compiled"):
        problems.append(Problem("compile", "dbt did not compile this node"))
    else:
        problems.extend(checker.check(sql, compiled_path))
        semantic_problems, semantic_notes = schema.check(node, sql, compiled_path)
        problems.extend(semantic_problems)
        notes.extend(semantic_notes)
    return NodeResult(
        unique_id=node["unique_id"],
        resource_type=node["resource_type"],
        name=node["name"],
        source_path=node["original_file_path"],
        compiled_path=compiled_path,
        mode=mode,
        problems=tuple(problems),
        notes=tuple(notes),
    )
