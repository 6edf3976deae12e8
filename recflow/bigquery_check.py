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
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from recflow.dbt_invocation import dbt_executable
from recflow.settings import REPO_ROOT

if TYPE_CHECKING:
    from sqlfluff.core import Linter
    from sqlglot import exp
    from sqlglot.schema import MappingSchema

FAKE_PROJECT = "recflow-offline-check"
FAKE_DATASET = "recflow_offline_check"
FAKE_RAW_PROJECT = "recflow-offline-raw"
FAKE_LOCATION = "EU"
TARGET_NAME = "bigquery"
OFFLINE_COMPILE_VAR = "recflow_offline_compile"
DEFAULT_TIMEOUT_S = 300.0
# Nothing listens on the discard port: any request that slips through fails at once, locally.
_CLOSED_LOCAL_ENDPOINT = "127.0.0.1:9"
# Inherited variables that could point dbt or Google's libraries at something real.
_SCRUBBED_ENV_PREFIXES = ("DBT_", "RECFLOW_", "GOOGLE_", "GCE_", "CLOUDSDK_")
_AUTH_KEYS = (
    "method",
    "keyfile",
    "keyfile_json",
    "impersonate_service_account",
    "token",
    "refresh_token",
    "client_id",
    "client_secret",
    "token_uri",
    "token_endpoint",
    "workload_pool_provider_path",
    "service_account_impersonation_url",
)
_COMPILED_TYPES = ("model", "test", "analysis", "operation")

# GoogleSQL's built-in functions (BigQuery reference, 2025). Qualified names (`safe.x` is
# checked as `x`; `net.host`, `ml.predict`, a UDF `dataset.fn`) and `st_*` geography functions
# are accepted. A BigQuery function missing here fails the check: add it.
BIGQUERY_FUNCTIONS = frozenset(
    re.findall(
        r"\w+",
        """
    any_value approx_count_distinct approx_quantiles approx_top_count approx_top_sum array_agg
    array_concat_agg avg bit_and bit_or bit_xor corr count countif covar_pop covar_samp grouping
    logical_and logical_or max max_by min min_by stddev stddev_pop stddev_samp string_agg sum
    var_pop var_samp variance
    cume_dist dense_rank first_value lag last_value lead nth_value ntile percent_rank
    percentile_cont percentile_disc rank row_number
    cast safe_cast parse_bignumeric parse_numeric
    coalesce if ifnull nullif nullifzero zeroifnull iferror iserror
    abs acos acosh asin asinh atan atan2 atanh bit_count cbrt ceil ceiling cos cosh
    cosine_distance cot coth csc csch div euclidean_distance exp floor greatest ieee_divide
    is_inf is_nan least ln log log10 mod pow power rand range_bucket round safe_add safe_divide
    safe_multiply safe_negate safe_subtract sec sech sign sin sinh sqrt tan tanh trunc
    ascii byte_length char_length character_length chr code_points_to_bytes
    code_points_to_string collate concat contains_substr edit_distance ends_with format
    from_base32 from_base64 from_hex initcap instr left length lower lpad ltrim normalize
    normalize_and_casefold octet_length regexp_contains regexp_extract regexp_extract_all
    regexp_instr regexp_replace regexp_substr repeat replace reverse right rpad rtrim
    safe_convert_bytes_to_string soundex split starts_with strpos substr substring to_base32
    to_base64 to_code_points to_hex translate trim unicode upper
    farm_fingerprint md5 sha1 sha256 sha512
    current_date current_datetime current_time current_timestamp date date_add date_bucket
    date_diff date_from_unix_date date_sub date_trunc datetime datetime_add datetime_bucket
    datetime_diff datetime_sub datetime_trunc extract format_date format_datetime format_time
    format_timestamp generate_date_array generate_timestamp_array last_day parse_date
    parse_datetime parse_time parse_timestamp time time_add time_diff time_sub time_trunc
    timestamp timestamp_add timestamp_bucket timestamp_diff timestamp_micros timestamp_millis
    timestamp_seconds timestamp_sub timestamp_trunc unix_date unix_micros unix_millis
    unix_seconds
    justify_days justify_hours justify_interval make_interval
    array array_avg array_concat array_filter array_first array_includes array_includes_all
    array_includes_any array_is_distinct array_last array_length array_max array_min
    array_reverse array_slice array_sum array_to_string array_transform generate_array offset
    ordinal safe_offset safe_ordinal unnest
    bool float64 int64 json_array json_array_append json_array_insert json_extract
    json_extract_array json_extract_scalar json_extract_string_array json_flatten json_keys
    json_object json_query json_query_array json_remove json_set json_strip_nulls json_type
    json_value json_value_array lax_bool lax_float64 lax_int64 lax_string parse_json string
    to_json to_json_string
    exists generate_range_array generate_uuid error range range_contains range_end
    range_intersect range_overlaps range_sessionize range_start session_user struct
    deterministic_decrypt_bytes deterministic_decrypt_string deterministic_encrypt
    bag_of_words external_query search text_analyze tf_idf vector_search
    """,
    )
)
# What a DuckDB (or Postgres) habit is spelled as in BigQuery, for the failure message.
_BIGQUERY_SPELLING = {
    "try_cast": "safe_cast(x as type)",
    "struct_pack": "struct(x as name, ...)",
    "list_value": "[a, b, ...]",
    "list": "array_agg(x)",
    "strftime": "format_timestamp(format, ts)",
    "strptime": "parse_timestamp(format, string)",
    "regexp_matches": "regexp_contains(s, r)",
    "string_split": "split(s, delimiter)",
    "len": "length(s) or array_length(a)",
    "epoch": "unix_seconds(ts)",
    "epoch_ms": "unix_millis(ts) or timestamp_millis(n)",
    "datediff": "date_diff(end, start, part) (note the argument order)",
    "dateadd": "date_add(d, interval n part)",
    "now": "current_timestamp()",
    "today": "current_date()",
    "nvl": "ifnull(a, b)",
    "iff": "if(condition, a, b)",
    "group_concat": "string_agg(x, delimiter)",
    "median": "percentile_cont(x, 0.5) over ()",
    "hash": "farm_fingerprint(s)",
    "json_extract_string": "json_value(j, path)",
    "read_parquet": "a table in a dataset (source())",
    "read_csv": "a table in a dataset (source())",
}


@dataclass(frozen=True)
class Problem:
    """One reason a node would fail on BigQuery, located in a file when that is known."""

    check: str
    """`compile`, `grammar`, `cast-operator`, `function`, `types` or `physical-design`."""
    message: str
    path: Path | None = None
    """The file `line` counts in: the compiled SQL, or the source file for configs."""
    line: int | None = None
    column: int | None = None
    snippet: str = ""


@dataclass(frozen=True)
class NodeResult:
    """The outcome for one dbt node, compiled in one mode (`full_refresh` or `incremental`)."""

    unique_id: str
    resource_type: str
    name: str
    source_path: str
    """As dbt reports it: relative to the dbt project directory."""
    compiled_path: Path | None
    mode: str = "full_refresh"
    problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()
    """Checks that could not run on this node, and why; notes never fail the check."""

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class CheckResult:
    """Every node's result, plus failures dbt reported without naming a node."""

    project_dir: Path
    work_dir: Path
    nodes: tuple[NodeResult, ...]
    errors: tuple[str, ...] = ()
    unit_tests_not_compiled: tuple[str, ...] = ()
    manifest_path: Path | None = None
    """dbt's manifest of the BigQuery compile (full-refresh pass), when dbt got that far."""
    compile_seconds: float = 0.0
    check_seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.errors and all(node.passed for node in self.nodes)

    @property
    def failures(self) -> tuple[NodeResult, ...]:
        return tuple(node for node in self.nodes if not node.passed)

    def node(self, name: str, mode: str = "full_refresh") -> NodeResult:
        """The result of the node called `name` (a model, test or analysis name)."""
        for result in self.nodes:
            if result.name == name and result.mode == mode:
                return result
        raise KeyError(name)


@dataclass(frozen=True)
class _DbtCompile:
    returncode: int
    output: str
    seconds: float
    target_path: Path
    timed_out: bool = False

    def manifest(self) -> dict[str, Any] | None:
        path = self.target_path / "manifest.json"
        return json.loads(path.read_text()) if path.exists() else None


# --------------------------------------------------------------------------- entry points


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
    project = _read_yaml(project_dir / "dbt_project.yml")
    env = _offline_environment(_write_offline_profile(project_dir, project, work_dir))

    full = _compile(project_dir, work_dir, env, "full_refresh", ("fqn:*",), timeout_s)
    manifest = full.manifest()
    if full.returncode != 0 or manifest is None:
        nodes, errors = _compile_failures(full, manifest, project_dir, project, "full_refresh")
        return CheckResult(
            project_dir=project_dir,
            work_dir=work_dir,
            nodes=nodes,
            errors=errors,
            manifest_path=full.target_path / "manifest.json" if manifest else None,
            compile_seconds=full.seconds,
            check_seconds=time.perf_counter() - started,
        )

    checker = _StatementChecker()
    schema = _ManifestSchema(manifest)
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
        rerun = _compile(project_dir, work_dir, env, "incremental", incremental, timeout_s)
        compile_seconds += rerun.seconds
        rerun_manifest = rerun.manifest()
        if rerun.returncode != 0 or rerun_manifest is None:
            nodes, rerun_errors = _compile_failures(
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


def format_report(result: CheckResult) -> str:
    """A short human report: a summary line, then each failure with file, line and snippet."""
    checked = len({node.unique_id for node in result.nodes})
    verdict = "passed" if result.passed else "FAILED"
    lines = [
        f"BigQuery check {verdict}: {checked} nodes compiled and parsed, "
        f"{len(result.failures)} failing, {len(result.errors)} other errors "
        f"(dbt compile {result.compile_seconds:.1f} s, total {result.check_seconds:.1f} s)."
    ]
    if result.unit_tests_not_compiled:
        lines.append(
            f"Not compiled: {len(result.unit_tests_not_compiled)} unit tests (dbt builds their "
            "fixtures only in `dbt test`, from the warehouse); their models are checked."
        )
    for error in result.errors:
        lines.append("")
        lines.append(error)
    for node in result.failures:
        lines.append("")
        mode = " (incremental run)" if node.mode == "incremental" else ""
        lines.append(f"{node.resource_type} {node.name}{mode}: {node.source_path}")
        for problem in node.problems:
            where = ""
            if problem.path is not None:
                where = f"{problem.path}"
                if problem.line is not None:
                    where += f":{problem.line}"
                    if problem.column is not None:
                        where += f":{problem.column}"
                where += ": "
            lines.append(f"  [{problem.check}] {where}{problem.message}")
            if problem.snippet:
                lines.append(f"      {problem.snippet}")
    if not result.passed:
        lines.append("")
        lines.append(f"Compiled SQL and dbt's log: {result.work_dir}")
    return "\n".join(lines)


def _run_from_cli(args: argparse.Namespace) -> int:
    work_dir: Path = args.work_dir or Path(tempfile.mkdtemp(prefix="recflow-bigquery-check-"))
    result = check_bigquery(args.project_dir, work_dir=work_dir, timeout_s=args.timeout)
    print(format_report(result))
    if result.passed and args.work_dir is None:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0 if result.passed else 1


# --------------------------------------------------------------------------- offline compile


def _write_offline_profile(project_dir: Path, project: Mapping[str, Any], work_dir: Path) -> Path:
    """Write profiles.yml with one BigQuery target and a fake service-account key; return the
    key file's path (the environment points at it)."""
    profiles_dir = work_dir / "profiles"
    profiles_dir.mkdir(parents=True, exist_ok=True)
    keyfile = profiles_dir / "fake-service-account.json"
    _write_fake_service_account_key(keyfile)

    profile_name = project["profile"]
    outputs: Mapping[str, Any] = {}
    profiles_path = project_dir / "profiles.yml"
    if profiles_path.exists():
        outputs = (_read_yaml(profiles_path).get(profile_name) or {}).get("outputs") or {}
    prod_first = sorted(outputs.items(), key=lambda item: item[0] != "prod")
    bigquery_outputs = [
        dict(output)
        for _name, output in prod_first
        if isinstance(output, Mapping) and output.get("type") == "bigquery"
    ]
    target: dict[str, Any] = (
        bigquery_outputs[0]
        if bigquery_outputs
        else {
            "type": "bigquery",
            "project": "{{ env_var('RECFLOW_BQ_PROJECT') }}",
            "dataset": "{{ env_var('RECFLOW_BQ_DATASET') }}",
            "location": "{{ env_var('RECFLOW_BQ_LOCATION') }}",
        }
    )
    for key in _AUTH_KEYS:
        target.pop(key, None)
    target.update(
        method="service-account",
        keyfile=str(keyfile),
        threads=4,
        job_retries=0,
        job_creation_timeout_seconds=10,
        job_execution_timeout_seconds=10,
    )
    profile = {profile_name: {"target": TARGET_NAME, "outputs": {TARGET_NAME: target}}}
    (profiles_dir / "profiles.yml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return keyfile


def _write_fake_service_account_key(path: Path) -> None:
    """A well-formed service-account key file for a project that does not exist, whose token URI
    is a closed local port, so even a token request would fail locally, at once."""
    write_service_account_key(
        path,
        project=FAKE_PROJECT,
        account="offline-check",
        token_uri=f"http://{_CLOSED_LOCAL_ENDPOINT}/token",
    )


def write_service_account_key(path: Path, *, project: str, account: str, token_uri: str) -> Path:
    """A service-account key file with an RSA key generated here (it never leaves `path`): the
    auth library signs a JWT with it and exchanges it at `token_uri`. Readable by the owner only.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    keyfile = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": f"{account}@{project}.iam.gserviceaccount.com",
        "client_id": "0",
        "auth_uri": f"{token_uri.rsplit('/', 1)[0]}/auth",
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(keyfile))
    path.chmod(0o600)
    return path


def _offline_environment(keyfile: Path) -> dict[str, str]:
    """The child's environment: inherited settings scrubbed, fake production values set."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_SCRUBBED_ENV_PREFIXES)
    }
    env.update(
        DO_NOT_TRACK="1",
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        # google-auth: never probe the GCE metadata server; if asked, it is a closed port.
        NO_GCE_CHECK="true",
        GCE_METADATA_HOST=_CLOSED_LOCAL_ENDPOINT,
        GCE_METADATA_IP=_CLOSED_LOCAL_ENDPOINT,
        GOOGLE_CLOUD_PROJECT=FAKE_PROJECT,
        # The variables the `prod` target and the sources read (dbt/profiles.yml).
        RECFLOW_BQ_AUTH_METHOD="service-account",
        RECFLOW_BQ_KEYFILE=str(keyfile),
        RECFLOW_BQ_PROJECT=FAKE_PROJECT,
        RECFLOW_BQ_DATASET=FAKE_DATASET,
        RECFLOW_BQ_LOCATION=FAKE_LOCATION,
        RECFLOW_RAW_PROJECT=FAKE_RAW_PROJECT,
    )
    return env


def _compile(
    project_dir: Path,
    work_dir: Path,
    env: Mapping[str, str],
    mode: str,
    select: Sequence[str],
    timeout_s: float,
) -> _DbtCompile:
    """`dbt compile` for the offline BigQuery target, in its own target and log directories."""
    target_path = work_dir / f"target_{mode}"
    command = [
        dbt_executable(),
        "compile",
        "--project-dir",
        str(project_dir),
        "--profiles-dir",
        str(work_dir / "profiles"),
        "--target",
        TARGET_NAME,
        "--target-path",
        str(target_path),
        "--log-path",
        str(target_path / "logs"),
        "--select",
        *select,
        "--vars",
        json.dumps({OFFLINE_COMPILE_VAR: mode}),
        "--full-refresh",
        "--no-populate-cache",
        "--no-introspect",
        "--no-partial-parse",
        "--no-use-colors",
        "--quiet",
    ]
    started = time.perf_counter()
    returncode, output, timed_out = _run_with_timeout(command, env, project_dir, timeout_s)
    return _DbtCompile(
        returncode=returncode,
        output=output,
        seconds=time.perf_counter() - started,
        target_path=target_path,
        timed_out=timed_out,
    )


def _run_with_timeout(
    command: Sequence[str], env: Mapping[str, str], cwd: Path, timeout_s: float
) -> tuple[int, str, bool]:
    """Run `command` in its own process group; kill that group if it outlives the timeout."""
    with subprocess.Popen(
        list(command),
        env=dict(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            output, _ = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            return -1, output, True
        return process.returncode, output, False


# --------------------------------------------------------------------------- compile failures

_NODE_ERROR = re.compile(
    r"(?:Compilation|Runtime|Database|Parsing) Error in (?P<type>model|test|analysis|snapshot|"
    r"seed|operation|unit_test) (?P<name>\S+) \((?P<path>[^)]+)\)\n(?P<message>(?:[ \t]+.*\n?)*)"
)
_MISSING_MACRO = re.compile(r"No macro named '(?P<macro>\w+)' found")


def _compile_failures(
    compiled: _DbtCompile,
    manifest: Mapping[str, Any] | None,
    project_dir: Path,
    project: Mapping[str, Any],
    mode: str,
) -> tuple[tuple[NodeResult, ...], tuple[str, ...]]:
    """Turn a failed `dbt compile` into node results where dbt's output allows it."""
    log = compiled.target_path / "logs" / "dbt.log"
    if compiled.timed_out:
        return (), (
            "dbt compile did not finish within the timeout (--timeout). An offline compile "
            "never waits on the network, so either something tried to reach BigQuery or the "
            f"timeout is too short for this machine. dbt's log: {log}\n{_tail(compiled.output)}",
        )
    nodes_by_name = {
        (node["resource_type"], node["name"]): node
        for node in (manifest or {}).get("nodes", {}).values()
    }
    results: list[NodeResult] = []
    for match in _NODE_ERROR.finditer(compiled.output):
        message = " ".join(match["message"].split())
        if "connection never acquired" in message:
            message = (
                "needs a warehouse connection while compiling (run_query, adapter.get_relation "
                "or similar); guard it with `if execute` and the offline var "
                f"`{OFFLINE_COMPILE_VAR}`, as dbt/macros/cross_db/is_incremental.sql does "
                f"(dbt: {message})"
            )
        node = nodes_by_name.get((match["type"], match["name"]))
        results.append(
            NodeResult(
                unique_id=node["unique_id"] if node else f"{match['type']}.{match['name']}",
                resource_type=match["type"],
                name=match["name"],
                source_path=match["path"],
                compiled_path=None,
                mode=mode,
                problems=(Problem("compile", message),),
            )
        )
    missing_macro = _MISSING_MACRO.search(compiled.output)
    if not results and missing_macro:
        macro = missing_macro["macro"]
        results.extend(_macro_users(project_dir, project, macro, mode, _tail(compiled.output)))
    if results:
        return tuple(results), ()
    return (), (f"dbt compile failed (exit {compiled.returncode}):\n{_tail(compiled.output)}",)


def _macro_users(
    project_dir: Path, project: Mapping[str, Any], macro: str, mode: str, dbt_error: str
) -> Iterator[NodeResult]:
    """Models, tests and analyses that call `macro`, directly or through other macros.

    dbt raises a dispatch error while parsing, before it knows which node it was rendering,
    so the users are found in the source files: calls of `macro`, then of each project macro
    whose body calls it, until nothing new turns up.
    """
    macro_paths = [project_dir / p for p in project.get("macro-paths", ["macros"])]
    node_paths = {
        "model": project.get("model-paths", ["models"]),
        "test": project.get("test-paths", ["tests"]),
        "analysis": project.get("analysis-paths", ["analyses"]),
    }
    definition = re.compile(r"{%-?\s*macro\s+(\w+)\s*\((.*?){%-?\s*endmacro", re.DOTALL)
    callers, frontier = {macro}, {macro}
    while frontier:
        called = re.compile(r"\b(?:\w+\.)?(" + "|".join(map(re.escape, frontier)) + r")\s*\(")
        frontier = set()
        for path in _sql_files(macro_paths):
            for name, body in definition.findall(path.read_text()):
                if name not in callers and called.search(body):
                    frontier.add(name)
        callers |= frontier
    called = re.compile(r"\b(?:\w+\.)?(" + "|".join(map(re.escape, callers)) + r")\s*\(")
    message = (
        f"calls macro `{macro}`, which has no BigQuery variant (`bigquery__{macro}` or "
        f"`default__{macro}`): dbt cannot compile it for BigQuery. dbt: "
        + " ".join(dbt_error.split())[-300:]
    )
    for resource_type, relative_dirs in node_paths.items():
        for path in _sql_files(project_dir / d for d in relative_dirs):
            lines = path.read_text().splitlines()
            hit = next((i for i, line in enumerate(lines) if called.search(line)), None)
            if hit is None:
                continue
            source_path = os.path.relpath(path, project_dir)
            yield NodeResult(
                unique_id=f"{resource_type}.{project['name']}.{path.stem}",
                resource_type=resource_type,
                name=path.stem,
                source_path=source_path,
                compiled_path=None,
                mode=mode,
                problems=(Problem("compile", message, path, hit + 1, None, lines[hit].strip()),),
            )


def _sql_files(directories: Iterable[Path]) -> Iterator[Path]:
    for directory in directories:
        if directory.is_dir():
            yield from sorted(directory.rglob("*.sql"))


def _tail(output: str, lines: int = 25) -> str:
    return "\n".join(output.strip().splitlines()[-lines:])


# --------------------------------------------------------------------------- node checks


def _compiled_nodes(manifest: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every compiled model, test, analysis and hook; hooks only when they emit SQL."""
    for node in manifest["nodes"].values():
        if node["resource_type"] not in _COMPILED_TYPES:
            continue
        if node["resource_type"] == "operation" and not (node.get("compiled_code") or "").strip():
            continue
        yield node


def _check_node(
    node: Mapping[str, Any], mode: str, checker: _StatementChecker, schema: _ManifestSchema
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


class _StatementChecker:
    """Parses SQL with sqlfluff's BigQuery grammar and applies the tree rules."""

    def __init__(self) -> None:
        try:
            from sqlfluff.core import FluffConfig, Linter
        except ImportError as error:  # pragma: no cover - dev extras missing
            raise RuntimeError(
                "check-bigquery needs sqlfluff and sqlglot: pip install -e '.[dev]'"
            ) from error
        config = FluffConfig(
            # The raw templater: compiled SQL must not be templated a second time.
            overrides={"dialect": "bigquery", "templater": "raw", "large_file_skip_byte_limit": 0},
            ignore_local_config=True,
        )
        self._linter: Linter = Linter(config=config)

    def check(self, sql: str, path: Path | None) -> list[Problem]:
        lines = sql.splitlines()

        def snippet(line: int | None) -> str:
            return lines[line - 1].strip() if line and 0 < line <= len(lines) else ""

        parsed = self._linter.parse_string(sql)
        problems = [
            Problem(
                "grammar",
                "not BigQuery SQL: " + re.sub(r"^Line \d+, Position \d+: ", "", violation.desc()),
                path,
                violation.line_no,
                violation.line_pos,
                snippet(violation.line_no),
            )
            for violation in parsed.violations
        ]
        if parsed.tree is None:
            return problems
        for segment in parsed.tree.recursive_crawl("casting_operator"):
            line = segment.pos_marker.line_no
            problems.append(
                Problem(
                    "cast-operator",
                    "`::` casts are DuckDB/Postgres syntax; BigQuery needs cast(x as type)",
                    path,
                    line,
                    segment.pos_marker.line_pos,
                    snippet(line),
                )
            )
        for segment in parsed.tree.recursive_crawl("function_name"):
            name = segment.raw.strip("`").lower()
            if name.startswith("safe."):
                name = name.removeprefix("safe.")
            if "." in name or name.startswith("st_") or name in BIGQUERY_FUNCTIONS:
                continue
            spelling = _BIGQUERY_SPELLING.get(name)
            hint = f"; in BigQuery: {spelling}" if spelling else ""
            line = segment.pos_marker.line_no
            problems.append(
                Problem(
                    "function",
                    f"`{name}` is not a BigQuery function{hint} (if it is one, add it to "
                    "BIGQUERY_FUNCTIONS in recflow/bigquery_check.py)",
                    path,
                    line,
                    segment.pos_marker.line_pos,
                    snippet(line),
                )
            )
        return problems


# --------------------------------------------------------------------------- types and layout


@dataclass
class _ManifestSchema:
    """Output columns and types of every relation, resolved with sqlglot in DAG order."""

    manifest: Mapping[str, Any]
    _schema: MappingSchema = field(init=False)

    def __post_init__(self) -> None:
        from sqlglot.schema import MappingSchema

        self._schema = MappingSchema(dialect="bigquery")
        for source in self.manifest["sources"].values():
            columns = {
                name: column.get("data_type") or "UNKNOWN"
                for name, column in source["columns"].items()
            }
            if columns:
                self._add(source, source["identifier"], columns)
        models = {
            unique_id: node
            for unique_id, node in self.manifest["nodes"].items()
            if node["resource_type"] == "model"
            and node["config"].get("materialized") != "ephemeral"
            and node.get("compiled_code") is not None
        }
        for unique_id in _topological(models, self.manifest["nodes"]):
            node = models[unique_id]
            try:
                columns = _output_columns(node, self._annotated(node["compiled_code"]))
            except Exception:  # sqlglot cannot resolve it; check() notes it on the node
                continue
            self._add(node, node["alias"], columns)

    def _add(self, relation: Mapping[str, Any], table: str, columns: Mapping[str, Any]) -> None:
        from sqlglot import exp

        self._schema.add_table(
            exp.table_(table, db=relation["schema"], catalog=relation["database"], quoted=True),
            dict(columns),
            dialect="bigquery",
        )

    def _annotated(self, sql: str) -> exp.Expression:
        import sqlglot
        from sqlglot.optimizer.annotate_types import annotate_types
        from sqlglot.optimizer.qualify import qualify

        expression = sqlglot.parse_one(sql, read="bigquery")
        qualified = qualify(expression, schema=self._schema, dialect="bigquery")
        return annotate_types(qualified, schema=self._schema, dialect="bigquery")

    def check(
        self, node: Mapping[str, Any], sql: str, path: Path | None
    ) -> tuple[list[Problem], list[str]]:
        """Temporal comparisons BigQuery rejects, and partition/cluster columns of models."""
        try:
            annotated = self._annotated(sql)
        except Exception as error:  # sqlglot cannot resolve it: note, not failure
            return [], [f"types not checked (sqlglot: {type(error).__name__}: {error})"]
        problems = list(_incompatible_comparisons(annotated, path, sql.splitlines()))
        if node["resource_type"] == "model":
            problems.extend(_layout_problems(node, _output_columns(node, annotated)))
        return problems, []


def _output_columns(node: Mapping[str, Any], annotated: exp.Expression) -> dict[str, exp.DataType]:
    """A model's output columns (lower-case) and types: sqlglot's, or, where sqlglot cannot
    tell, the `data_type` the model's YAML declares (its contract)."""
    from sqlglot import exp

    declared = {
        name.lower(): column["data_type"]
        for name, column in node.get("columns", {}).items()
        if column.get("data_type")
    }
    columns: dict[str, exp.DataType] = {}
    for select in annotated.selects:
        name = select.alias_or_name.lower()
        data_type = select.type or exp.DataType.build("UNKNOWN")
        if data_type.this == exp.DataType.Type.UNKNOWN and name in declared:
            data_type = exp.DataType.build(declared[name], dialect="bigquery")
        columns[name] = data_type
    return columns


def _topological(
    nodes: Mapping[str, Mapping[str, Any]], graph: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """`nodes` parents first, following dependencies through `graph` (every manifest node), so
    the tables an ephemeral parent reads come before the model that inlines it."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(unique_id: str) -> None:
        if unique_id in seen or unique_id not in graph:
            return
        seen.add(unique_id)
        for parent in graph[unique_id].get("depends_on", {}).get("nodes", []):
            visit(parent)
        if unique_id in nodes:
            order.append(unique_id)

    for unique_id in nodes:
        visit(unique_id)
    return order


def _bigquery_type_name(data_type: exp.DataType | None) -> str | None:
    """BigQuery's name for a sqlglot type, for the temporal types BigQuery keeps apart."""
    from sqlglot import exp

    if data_type is None:
        return None
    kind = data_type.this
    if kind in (exp.DataType.Type.TIMESTAMPTZ, exp.DataType.Type.TIMESTAMPLTZ):
        return "TIMESTAMP"
    if kind in (exp.DataType.Type.TIMESTAMP, exp.DataType.Type.DATETIME):
        return "DATETIME"
    if kind == exp.DataType.Type.DATE:
        return "DATE"
    return None


def _incompatible_comparisons(
    annotated: exp.Expression, path: Path | None, lines: Sequence[str]
) -> Iterator[Problem]:
    """Comparisons of a TIMESTAMP with a DATETIME or a DATE: BigQuery coerces DATE only to
    DATETIME, so these fail with "No matching signature for operator"."""
    from sqlglot import exp

    comparisons = (exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE, exp.NullSafeEQ)
    for comparison in annotated.find_all(*comparisons, exp.Between):
        if isinstance(comparison, exp.Between):
            pairs = [
                (comparison.this, comparison.args.get("low")),
                (comparison.this, comparison.args.get("high")),
            ]
        else:
            pairs = [(comparison.left, comparison.right)]
        for left, right in pairs:
            if left is None or right is None:
                continue
            types = {_bigquery_type_name(left.type), _bigquery_type_name(right.type)}
            if "TIMESTAMP" in types and types & {"DATETIME", "DATE"}:
                other = (types - {"TIMESTAMP"}).pop()
                line, column = _position(comparison)
                why = " (dbt.dateadd returns a DATETIME on BigQuery)" if other == "DATETIME" else ""
                yield Problem(
                    "types",
                    f"compares a TIMESTAMP with a {other}, which BigQuery rejects{why}; cast "
                    f"one side, e.g. cast(... as timestamp): {comparison.sql('bigquery')}",
                    path,
                    line,
                    column,
                    lines[line - 1].strip() if line and 0 < line <= len(lines) else "",
                )
                break


def _position(expression: exp.Expression) -> tuple[int | None, int | None]:
    for identifier in expression.walk():
        meta = identifier.meta if hasattr(identifier, "meta") else {}
        if "line" in meta:
            return meta["line"], meta.get("col")
    return None, None


def _layout_problems(
    node: Mapping[str, Any], columns: Mapping[str, exp.DataType | None]
) -> Iterator[Problem]:
    """`partition_by` and `cluster_by` must name output columns of a type BigQuery accepts."""
    config = node["config"]
    source = Path(node["original_file_path"])
    raw_lines = node.get("raw_code", "").splitlines()

    def problem(column: str, message: str) -> Problem:
        hit = next((i for i, line in enumerate(raw_lines) if f"'{column}'" in line), None)
        return Problem(
            "physical-design",
            message,
            source,
            hit + 1 if hit is not None else None,
            None,
            raw_lines[hit].strip() if hit is not None else "",
        )

    partition = config.get("partition_by")
    if partition:
        from dbt.adapters.bigquery.relation_configs import PartitionConfig

        try:
            parsed = PartitionConfig.parse(partition)
        except Exception as error:
            yield problem("partition_by", f"invalid partition_by {partition}: {error}")
            return
        # Ingestion-time partitioning uses the _PARTITIONTIME pseudo-column, not a column.
        if parsed is not None and not parsed.time_ingestion_partitioning:
            field_name = parsed.field.lower()
            if field_name not in columns:
                yield problem(
                    parsed.field,
                    f"partition_by field `{parsed.field}` is not a column of the model "
                    f"(columns: {', '.join(columns)})",
                )
            else:
                actual = _bigquery_type_name(columns[field_name])
                expected = {"date": "DATE", "timestamp": "TIMESTAMP", "datetime": "DATETIME"}.get(
                    parsed.data_type.lower()
                )
                if actual and expected and actual != expected:
                    yield problem(
                        parsed.field,
                        f"partition_by declares `{parsed.field}` as {expected} but the model "
                        f"returns a {actual}",
                    )
    cluster_by = config.get("cluster_by") or []
    if isinstance(cluster_by, str):
        cluster_by = [cluster_by]
    if len(cluster_by) > 4:
        yield problem(cluster_by[4], "BigQuery clusters on at most four columns")
    from sqlglot import exp

    unclusterable = {
        exp.DataType.Type.FLOAT,
        exp.DataType.Type.DOUBLE,
        exp.DataType.Type.ARRAY,
        exp.DataType.Type.STRUCT,
        exp.DataType.Type.JSON,
    }
    for column in cluster_by:
        if column.lower() not in columns:
            yield problem(column, f"cluster_by column `{column}` is not a column of the model")
        elif (data_type := columns[column.lower()]) is not None and data_type.this in unclusterable:
            yield problem(
                column,
                f"cluster_by column `{column}` is a {data_type.sql('bigquery')}, which BigQuery "
                "cannot cluster on",
            )


def _read_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m recflow.bigquery_check [options]`, until `recflow check-bigquery` is wired."""
    parser = argparse.ArgumentParser(prog="recflow", description=__doc__.splitlines()[0])
    register(parser.add_subparsers(required=True, metavar="COMMAND"))
    args = parser.parse_args(["check-bigquery", *(argv if argv is not None else sys.argv[1:])])
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
