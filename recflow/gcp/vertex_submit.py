"""`recflow submit`: train on Vertex AI with the same trainer, entry point and arguments as locally.

What one submission does, in order, so that a mistake costs nothing:

1. settings from flags or the environment (a missing one stops here, exit 2, naming the flag
   and the variable); the dbt manifest must exist; Application Default Credentials must exist;
2. stages the manifest under the run's own GCS prefix, `gs://BUCKET/PREFIX/runs/RUN_ID/inputs/`,
   beside the run's outputs: the job's base_output_dir is `gs://BUCKET/PREFIX/runs/RUN_ID`, so
   Vertex AI sets AIP_MODEL_DIR=`.../RUN_ID/model/` and the trainer writes the run directory there;
3. creates a CustomJob running the training container (`Dockerfile`, named by
   `recflow.gcp.trainer_image`: this checkout's lock and trainer) with `--warehouse-uri
   bq://PROJECT.DATASET --manifest gs://.../manifest.json --recommendations-table ''` (the job
   never writes the serving table: only `recflow gate` does, after deciding), bounded by
   `scheduling.timeout`, labelled with the git commit and the manifest's SHA-256;
4. follows it to the end and exits 1 if it failed, naming the job and its console page. SIGINT
   or SIGTERM while following (a cancelled or timed-out workflow) cancels the job.

`--dry-run` prints the CustomJob the SDK would send, as JSON, and touches nothing: no upload, no
credentials. Exit codes: 0 done, 1 the job or a cloud call failed, 2 bad input, 128 + the signal
when interrupted (the job is cancelled).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recflow.gcp.interrupts import Interrupt, interrupts_recorded
from recflow.gcp.vertex_settings import (
    SERVING_TABLE_OPTION,
    BadInputError,
    RunPlan,
    SubmitError,
    VertexSettings,
    add_settings_arguments,
    plan_run,
    settings_from,
)
from recflow.pipeline.settings import Settings
from trainer import gcp_credentials
from trainer.errors import TrainerInputError

if TYPE_CHECKING:  # the SDKs take seconds to import: only the commands that use them do.
    from google.auth.credentials import Credentials
    from google.cloud import aiplatform

log = logging.getLogger(__name__)

SCOPES = gcp_credentials.SCOPES
# How often a followed job is polled, and how soon an interrupt is acted on.
POLL_SECONDS, TICK_SECONDS = 15.0, 0.2
FINAL_STATES = frozenset(
    {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_PAUSED"}
    | {"JOB_STATE_EXPIRED", "JOB_STATE_PARTIALLY_SUCCEEDED"}
)
# Label values: lowercase letters, digits, '_' and '-', at most 63 characters.
_LABEL_INVALID = re.compile(r"[^a-z0-9_-]")
_LABEL_MAX = 63


# --- the command -------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[Any]) -> argparse.ArgumentParser:
    """Add `submit` to a command line's subparsers; its handler is `args.handler(args)`."""
    parser = subparsers.add_parser(
        "submit",
        help="train on Vertex AI (BigQuery features, the training container)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_settings_arguments(parser)
    parser.add_argument(
        "--manifest",
        type=Path,
        default=None,
        help="dbt manifest.json of the BigQuery build (default: $DBT_TARGET_PATH/manifest.json)",
    )
    parser.add_argument(
        "--run-id", default=None, help="names the run's GCS folder (default: a UTC timestamp)"
    )
    parser.add_argument("--display-name", default=None, help="default: recflow-trainer-RUN_ID")
    parser.add_argument(
        "--git-commit", default=None, help="recorded and labelled (default: $GIT_COMMIT, else git)"
    )
    parser.add_argument(
        "--trainer-arg",
        dest="trainer_args",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for python -m trainer.task, repeatable; write options with '=' "
        "(--trainer-arg=--num-boost-round=500)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the CustomJob request as JSON; upload and submit nothing",
    )
    parser.add_argument(
        "--no-wait", action="store_true", help="return once the job is created; do not follow it"
    )
    parser.add_argument(
        "--run-dir-out",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the job's run directory URI (gs://.../model) to FILE, for `recflow gate`",
    )
    parser.set_defaults(handler=submit_command)
    return parser


def submit_command(args: argparse.Namespace) -> int:
    """The `submit` subcommand: an exit code, with every expected failure as one message."""
    try:
        return _submit(args)
    except SubmitError as error:
        print(f"recflow submit: {error}", file=sys.stderr)
        return error.exit_code


def _submit(args: argparse.Namespace) -> int:
    settings = settings_from(vars(args), os.environ)
    manifest = args.manifest or Settings.from_env().dbt_target_path / "manifest.json"
    plan = plan_run(args, manifest)
    credentials = _anonymous_credentials() if args.dry_run else default_credentials()
    job = build_custom_job(settings, plan, credentials=credentials)
    _describe(settings, plan, dry_run=args.dry_run)
    if args.dry_run:
        print(request_json(job))
        return 0
    stage_inputs(settings, plan, token=_storage_token(credentials))
    exit_code = run_job(job, settings, wait=not args.no_wait)
    if exit_code == 0 and args.run_dir_out:
        write_run_dir(args.run_dir_out, settings, plan)
    return exit_code


def write_run_dir(path: Path, settings: VertexSettings, plan: RunPlan) -> None:
    """Hand the run directory to the next step (`recflow gate --run-dir "$(cat FILE)"`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(plan.run_dir(settings) + "\n")


# --- the job request ---------------------------------------------------------------------------


def trainer_arguments(settings: VertexSettings, plan: RunPlan) -> list[str]:
    """`python -m trainer.task` arguments: BigQuery marts, the staged manifest, no serving table
    (the gate writes it after deciding), extras last (argparse keeps the last value, so an extra
    overrides; plan_run refuses one that names the serving table)."""
    return [
        "--warehouse-uri",
        settings.warehouse_uri,
        "--features-schema",
        settings.bq_dataset,
        "--manifest",
        plan.manifest_uri(settings),
        SERVING_TABLE_OPTION,
        "",
        *plan.trainer_args,
    ]


def container_env(plan: RunPlan) -> list[dict[str, str]]:
    """Environment of the trainer process: the commit it records (no git in the container),
    logs as Cloud Logging's JSON lines (trainer.logs)."""
    return [
        {"name": "GIT_COMMIT", "value": plan.git_commit},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "RECFLOW_LOG_FORMAT", "value": "json"},
    ]


def labels(plan: RunPlan) -> dict[str, str]:
    """Job labels that tie a job to its code and its feature definitions."""
    return {
        "git_commit": label_value(plan.git_commit),
        "dbt_manifest_sha": label_value(plan.manifest_sha256),
        "recflow_run_id": label_value(plan.run_id),
    }


def label_value(value: str) -> str:
    """A valid label value: lowercase, [a-z0-9_-] only, at most 63 characters (a SHA-256's
    64 hex digits lose the last one)."""
    return _LABEL_INVALID.sub("_", value.lower())[:_LABEL_MAX]


def worker_pool_specs(settings: VertexSettings, plan: RunPlan) -> list[dict[str, Any]]:
    """One replica running the training container; its ENTRYPOINT is `python -m trainer.task`,
    so the container's args are the trainer's."""
    return [
        {
            "machine_spec": {"machine_type": settings.machine_type},
            "replica_count": 1,
            "container_spec": {
                "image_uri": settings.image,
                "args": trainer_arguments(settings, plan),
                "env": container_env(plan),
            },
        }
    ]


def build_custom_job(
    settings: VertexSettings, plan: RunPlan, *, credentials: Credentials
) -> aiplatform.CustomJob:
    """The SDK's CustomJob for this run, service account and timeout included: what `submit`
    sends (CustomJob.submit leaves both as set here when given neither)."""
    from google.cloud import aiplatform
    from google.cloud.aiplatform_v1.types import Scheduling
    from google.protobuf import duration_pb2

    try:
        job = aiplatform.CustomJob(
            display_name=plan.display_name,
            worker_pool_specs=worker_pool_specs(settings, plan),
            base_output_dir=plan.root(settings),
            project=settings.project,
            location=settings.region,
            credentials=credentials,
            labels=labels(plan),
            staging_bucket=f"gs://{settings.bucket}",
        )
    except ValueError as error:  # the SDK checks the region (--region / $RECFLOW_GCP_REGION)
        raise BadInputError(f"Vertex AI does not accept these settings: {error}") from error
    if settings.service_account:
        job._gca_resource.job_spec.service_account = settings.service_account
    job._gca_resource.job_spec.scheduling = Scheduling(
        timeout=duration_pb2.Duration(seconds=settings.timeout_minutes * 60)
    )
    return job


def request_json(job: aiplatform.CustomJob) -> str:
    """The job's CustomJob message as JSON (enum names, default values omitted)."""
    resource = job._gca_resource
    return type(resource).to_json(
        resource, use_integers_for_enums=False, always_print_fields_with_no_presence=False
    )


def _describe(settings: VertexSettings, plan: RunPlan, *, dry_run: bool) -> None:
    verb = "would" if dry_run else "will"
    print(
        f"{'dry run: ' if dry_run else ''}job {plan.display_name} in {settings.parent}\n"
        f"  image: {settings.image} (timeout {settings.timeout_minutes} min)\n"
        f"  {verb} stage {plan.manifest_path} -> {plan.manifest_uri(settings)}\n"
        f"  outputs: {plan.root(settings)}/model/ (AIP_MODEL_DIR)"
        + ("\n  nothing was staged or submitted" if dry_run else ""),
        file=sys.stderr,
    )


# --- staging ----------------------------------------------------------------------


def stage_inputs(settings: VertexSettings, plan: RunPlan, *, token: Any) -> list[str]:
    """Upload the manifest to where the job spec points; returns the URIs staged."""
    uploads = ((plan.manifest_path, plan.manifest_uri(settings)),)
    for local, uri in uploads:
        upload(local, uri, project=settings.project, token=token)
    return [uri for _, uri in uploads]


def upload(local: Path, uri: str, *, project: str, token: Any) -> None:
    """Copy one local file to a gs:// URI with gcsfs (honours STORAGE_EMULATOR_HOST)."""
    import gcsfs
    from gcsfs.retry import HttpError

    filesystem = gcsfs.GCSFileSystem(project=project, token=token, skip_instance_cache=True)
    try:
        filesystem.put_file(str(local), uri)
    except FileNotFoundError as error:
        raise SubmitError(
            f"cannot stage {local.name} to {uri}: the bucket does not exist; create it "
            f"(`gcloud storage buckets create gs://{uri.split('/')[2]} --location REGION`) "
            "or point --bucket / $RECFLOW_GCS_BUCKET at an existing one"
        ) from error
    except (OSError, ValueError, HttpError) as error:  # 403 is an OSError in gcsfs
        raise SubmitError(
            f"cannot stage {local.name} to {uri}: {error}. The credentials need Storage Object "
            "Creator (roles/storage.objectCreator) on the bucket."
        ) from error
    log.info("staged %s -> %s", local, uri)


# --- credentials and the job's life ------------------------------------------------------------


def default_credentials() -> Credentials:
    """Application Default Credentials, or a BadInputError saying how to get them."""
    try:
        return gcp_credentials.default_credentials("Vertex AI and Cloud Storage")
    except TrainerInputError as error:
        raise BadInputError(f"{error} --dry-run needs none.") from error


def _anonymous_credentials() -> Credentials:
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()


def _storage_token(credentials: Credentials) -> Any:
    """gcsfs's token: the ADC, or anonymous against a local emulator (as the official client)."""
    return "anon" if os.environ.get("STORAGE_EMULATOR_HOST") else credentials


def run_job(job: aiplatform.CustomJob, settings: VertexSettings, *, wait: bool) -> int:
    """Create the job; unless told not to, follow it to its end: 0 only if it succeeded. A
    SIGINT or SIGTERM meanwhile cancels the job and returns 128 + the signal's number."""
    from google.api_core import exceptions as api_exceptions

    with interrupts_recorded() as interrupt:
        try:
            job.submit(service_account=settings.service_account)
        except api_exceptions.GoogleAPICallError as error:
            raise SubmitError(
                f"Vertex AI refused to create the job in {settings.parent}: {error.message}"
            ) from error
        where = f"{job.resource_name}\n  console: {job._dashboard_uri()}"
        print(f"created {where}", file=sys.stderr)
        if interrupt.signum is None and not wait:
            return 0
        try:
            state = _follow(job, interrupt)
        except api_exceptions.GoogleAPICallError as error:
            raise SubmitError(
                f"lost track of the job ({error.message}); it may go on: {where}"
            ) from error
        if interrupt.signum is not None:
            return _cancel(job, settings, interrupt)
    if state in ("JOB_STATE_FAILED", "JOB_STATE_CANCELLED"):
        raise SubmitError(f"job {state}: {where}\n{job._gca_resource.error.message}")
    if state != "JOB_STATE_SUCCEEDED":  # e.g. paused or expired: done, but no model
        raise SubmitError(f"job ended {state}: {where}")
    print(f"job succeeded: {where}", file=sys.stderr)
    return 0


def _follow(job: aiplatform.CustomJob, interrupt: Interrupt) -> str:
    """Poll the job every POLL_SECONDS until it ends (its final state) or an interrupt is
    recorded (the state last seen), checking for one every TICK_SECONDS."""
    seen = ""
    while True:
        state = job.state.name  # one customJobs.get
        if state != seen:
            log.info("job %s", state)
            seen = state
        if state in FINAL_STATES:
            return state
        deadline = time.monotonic() + POLL_SECONDS
        while time.monotonic() < deadline:
            if interrupt.signum is not None:
                return state
            time.sleep(TICK_SECONDS)


def _cancel(job: aiplatform.CustomJob, settings: VertexSettings, interrupt: Interrupt) -> int:
    """Ask Vertex AI to cancel the job; 128 + the signal's number either way."""
    from google.api_core import exceptions as api_exceptions

    exit_code = 128 + (interrupt.signum or 0)
    try:
        job.cancel()
    except api_exceptions.GoogleAPICallError as error:
        job_id = job.resource_name.rsplit("/", 1)[-1]
        print(
            f"{interrupt.name}: cancelling {job.resource_name} failed ({error.message}); it goes "
            f"on until its {settings.timeout_minutes}-minute timeout unless you run `gcloud ai "
            f"custom-jobs cancel {job_id} --project {settings.project} --region "
            f"{settings.region}`",
            file=sys.stderr,
        )
        return exit_code
    print(f"{interrupt.name}: asked Vertex AI to cancel {job.resource_name}", file=sys.stderr)
    return exit_code
