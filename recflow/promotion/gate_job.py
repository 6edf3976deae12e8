"""`recflow gate-job`: the gate as a Vertex AI CustomJob, where the data is.

`recflow gate` scores the challenger and the champion on the feature marts; against BigQuery
that reads whole tables, which must not leave the cloud project for a CI runner. This command
builds the training job's request (recflow.gcp.vertex_submit.build_custom_job: same container,
machine, service account, package and job settings) and swaps its entry point for
`python -m recflow.promotion.command gate` on the training run's directory, with the Vertex AI
registry and Experiments. The runner only submits, follows the job and prints decision.json.

Exit codes as `recflow gate`: 0 decided, 1 the job failed (a challenger rejected by the output
checks included: its gate exits 1), 2 bad input. `--dry-run` prints the request and touches
nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recflow.gcp import vertex_settings, vertex_submit
from trainer.provenance import git_commit

if TYPE_CHECKING:
    from google.auth.credentials import Credentials
    from google.cloud import aiplatform

GATE_MODULE = "recflow.promotion.command"
# What the job's gate needs to find the registry and the experiment, passed through when set.
PASSED_VARIABLES = (
    "RECFLOW_VERTEX_MODEL_ID",
    "RECFLOW_VERTEX_EXPERIMENT",
    "RECFLOW_VERTEX_SERVING_IMAGE",
    "RECFLOW_GATE_TOLERANCE",
)


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add `gate-job` to a command line's subparsers."""
    parser = commands.add_parser(
        "gate-job",
        help="run `recflow gate` on a Vertex AI run as a Vertex AI job beside the data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    vertex_settings.add_settings_arguments(parser)
    parser.add_argument(
        "--run-dir",
        required=True,
        help="the challenger, as `recflow submit --run-dir-out` wrote it (gs://.../runs/ID/model)",
    )
    parser.add_argument(
        "--recommendations-table",
        default="ml.batch_recommendations",
        help="replaced by the job's gate on promotion ('' to skip)",
    )
    parser.add_argument("--tolerance", default=None, help="as `recflow gate --tolerance`")
    parser.add_argument(
        "--git-commit", default=None, help="labelled (default: $GIT_COMMIT, else git)"
    )
    parser.add_argument("--decision-out", type=Path, default=None, metavar="FILE")
    parser.add_argument("--dry-run", action="store_true", help="print the CustomJob request")
    parser.set_defaults(handler=gate_job_command)


def gate_job_command(args: argparse.Namespace) -> int:
    """The `gate-job` subcommand: an exit code, every expected failure as one message."""
    try:
        return _gate_job(args)
    except vertex_settings.SubmitError as error:
        print(f"recflow gate-job: {error}", file=sys.stderr)
        return error.exit_code


def _gate_job(args: argparse.Namespace) -> int:
    settings = vertex_settings.settings_from(vars(args), os.environ)
    plan = gate_plan(
        settings,
        args.run_dir,
        git_commit=args.git_commit or git_commit(),
    )
    arguments = gate_arguments(
        settings,
        args.run_dir,
        recommendations_table=args.recommendations_table,
        tolerance=args.tolerance,
    )
    credentials = _anonymous() if args.dry_run else vertex_submit.default_credentials()
    job = build_gate_job(settings, plan, arguments, os.environ, credentials=credentials)
    if args.dry_run:
        print(f"dry run: gate job {plan.display_name} in {settings.parent}", file=sys.stderr)
        print(vertex_submit.request_json(job))
        return 0
    started = datetime.now(UTC)
    try:
        exit_code = vertex_submit.run_job(job, settings, wait=True)
    except vertex_settings.SubmitError:
        _print_decision(args.run_dir, started, credentials, args.decision_out)
        raise
    if exit_code == 0 and not _print_decision(
        args.run_dir, started, credentials, args.decision_out
    ):
        raise vertex_settings.SubmitError(
            f"the gate job succeeded but {args.run_dir}/decision.json is missing or older than it"
        )
    return exit_code


def gate_plan(
    settings: vertex_settings.VertexSettings, run_dir: str, *, git_commit: str
) -> vertex_settings.RunPlan:
    """The training run's plan, seen from its run directory: the job runs in its GCS folder.
    The run directory must be one `recflow submit` made with these settings
    (gs://BUCKET/PREFIX/runs/RUN_ID/model)."""
    probe = vertex_settings.RunPlan(
        run_id="RUN_ID",
        manifest_path=Path(),
        manifest_sha256="",
        git_commit=git_commit,
        display_name="",
    )
    pattern = re.escape(probe.run_dir(settings).rstrip("/")).replace("RUN_ID", "([a-z0-9_-]{1,63})")
    match = re.fullmatch(pattern, run_dir.rstrip("/"))
    if not match:
        raise vertex_settings.BadInputError(
            f"--run-dir {run_dir!r} is not a run directory of `recflow submit` with these "
            f"settings ({probe.run_dir(settings)}, RUN_ID the run's id): pass the URI "
            "--run-dir-out wrote"
        )
    run_id = match.group(1)
    return vertex_settings.RunPlan(
        run_id=run_id,
        manifest_path=Path(),
        manifest_sha256="",
        git_commit=git_commit,
        display_name=f"recflow-gate-{run_id}",
    )


def gate_arguments(
    settings: vertex_settings.VertexSettings,
    run_dir: str,
    *,
    recommendations_table: str,
    tolerance: str | None,
) -> list[str]:
    """`recflow gate` inside the job: BigQuery marts, the Vertex AI registry (and so Vertex AI
    Experiments); the job's gate is the one writer of the served table."""
    arguments = [
        "gate",
        "--run-dir",
        run_dir,
        "--warehouse-uri",
        settings.warehouse_uri,
        "--features-schema",
        settings.bq_dataset,
        "--registry",
        "vertex",
        "--recommendations-table",
        recommendations_table,
    ]
    return [*arguments, "--tolerance", tolerance] if tolerance else arguments


def gate_env(
    settings: vertex_settings.VertexSettings,
    plan: vertex_settings.RunPlan,
    environ: Mapping[str, str],
) -> list[dict[str, str]]:
    """The training job's environment plus what the job's registry and Experiments read."""
    passed = {name: environ[name] for name in PASSED_VARIABLES if environ.get(name)}
    return [
        *vertex_submit.container_env(plan),
        {"name": "RECFLOW_GCP_PROJECT", "value": settings.project},
        {"name": "RECFLOW_GCP_REGION", "value": settings.region},
        *({"name": name, "value": value} for name, value in sorted(passed.items())),
    ]


def build_gate_job(
    settings: vertex_settings.VertexSettings,
    plan: vertex_settings.RunPlan,
    arguments: Sequence[str],
    environ: Mapping[str, str],
    *,
    credentials: Credentials,
) -> aiplatform.CustomJob:
    """The training job's request with the gate as its entry point: the same image (the
    Dockerfile holds the gate's package and dependencies), machine and service settings."""
    from google.cloud.aiplatform_v1.types import EnvVar

    job = vertex_submit.build_custom_job(settings, plan, credentials=credentials)
    resource = job._gca_resource
    env = [
        EnvVar(name=item["name"], value=item["value"]) for item in gate_env(settings, plan, environ)
    ]
    for pool in resource.job_spec.worker_pool_specs:
        if pool.container_spec.image_uri:
            container = pool.container_spec
            container.command = ["python", "-m", GATE_MODULE]
            container.args = list(arguments)
            container.env = env
        else:
            raise vertex_settings.SubmitError(
                "the training job has a worker pool the gate cannot run in"
            )
    # Vertex AI's own outputs of the gate job go beside the run, not into its model folder.
    resource.job_spec.base_output_directory.output_uri_prefix = f"{plan.root(settings)}/gate"
    resource.labels = {
        **{key: value for key, value in resource.labels.items() if value},
        "recflow_step": "gate",
    }
    return job


def read_decision(run_dir: str, *, since: datetime, token: Any = None) -> dict[str, Any] | None:
    """decision.json of `run_dir` if a gate decided at or after `since` (a second's slack: the
    decision's time has whole seconds); None otherwise."""
    import fsspec

    path = f"{run_dir.rstrip('/')}/decision.json"
    options = {"token": token} if path.startswith("gs://") else {}
    filesystem, target = fsspec.core.url_to_fs(path, **options)
    try:
        decision = json.loads(filesystem.cat_file(target))
    except FileNotFoundError:
        return None
    decided_at = datetime.fromisoformat(
        str(decision.get("decided_at", "1970-01-01T00:00:00+00:00"))
    )
    return decision if decided_at >= since - timedelta(seconds=1) else None


def _print_decision(
    run_dir: str, since: datetime, credentials: Credentials, decision_out: Path | None
) -> bool:
    from recflow.promotion.command import describe

    token = "anon" if os.environ.get("STORAGE_EMULATOR_HOST") else credentials
    decision = read_decision(run_dir, since=since, token=token)
    if decision is None:
        return False
    print(describe(decision))
    if decision_out:
        decision_out.parent.mkdir(parents=True, exist_ok=True)
        decision_out.write_text(json.dumps(decision, indent=2, sort_keys=True) + "\n")
    return True


def _anonymous() -> Credentials:
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()
