"""`recflow submit`: train on Vertex AI with the same trainer, entry point and arguments as locally.

What one submission does, in order, so that a mistake costs nothing:

1. settings from flags or the environment (a missing one stops here, exit 2, naming the flag
   and the variable); the dbt manifest must exist; Application Default Credentials must exist;
2. stages the manifest under the run's own GCS prefix, `gs://BUCKET/PREFIX/runs/RUN_ID/inputs/`,
   beside the run's outputs: the job's base_output_dir is `gs://BUCKET/PREFIX/runs/RUN_ID`, so
   Vertex AI sets AIP_MODEL_DIR=`.../RUN_ID/model/` and the trainer writes the run directory there;
3. creates a CustomJob running the training container (`Dockerfile`, named by
   `recflow.trainer_image`: this checkout's lock and trainer) with `--warehouse-uri
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
import hashlib
import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recflow.interrupts import Interrupt, interrupts_recorded
from recflow.settings import Settings
from recflow.trainer_image import training_image
from trainer.provenance import git_commit

if TYPE_CHECKING:  # the SDKs take seconds to import: only the commands that use them do.
    from google.auth.credentials import Credentials
    from google.cloud import aiplatform

log = logging.getLogger(__name__)

# No longer what a job runs (that is the training container); recflow.promotion.registry still
# records it as a model version's container until its own change for issue 14 lands.
DEFAULT_MACHINE_TYPE = "e2-standard-4"
DEFAULT_PREFIX = "recflow"
# The job's running time limit (scheduling.timeout). The continuous-training workflow's `train`
# job allows this plus its other steps and pending time (tests/workflows checks they agree).
DEFAULT_TIMEOUT_MINUTES = 120
MAX_TIMEOUT_MINUTES = 7 * 24 * 60  # Vertex AI's own limit and default
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
EXIT_FAILED, EXIT_BAD_INPUT = 1, 2
# How often a followed job is polled, and how soon an interrupt is acted on.
POLL_SECONDS, TICK_SECONDS = 15.0, 0.2
FINAL_STATES = frozenset(
    {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_PAUSED"}
    | {"JOB_STATE_EXPIRED", "JOB_STATE_PARTIALLY_SUCCEEDED"}
)
# The trainer's option that writes the serving table; a job always sets it to '' (no write).
SERVING_TABLE_OPTION = "--recommendations-table"
CREDENTIALS_HELP = (
    "Vertex AI and Cloud Storage need Application Default Credentials: run "
    "`gcloud auth application-default login` on a workstation; in CI use Workload Identity "
    "Federation (e.g. google-github-actions/auth, which sets GOOGLE_APPLICATION_CREDENTIALS); "
    "or set GOOGLE_APPLICATION_CREDENTIALS to a credential file. --dry-run needs none."
)
# Label values: lowercase letters, digits, '_' and '-', at most 63 characters.
_LABEL_INVALID = re.compile(r"[^a-z0-9_-]")
_LABEL_MAX = 63
_RUN_ID = re.compile(r"[a-z0-9_-]{1,63}")


@dataclass(frozen=True)
class Option:
    """One setting of the command: its flag, its environment variable and its default."""

    dest: str
    flag: str
    env: str
    help: str
    default: str | None = None


OPTIONS = (
    Option("project", "--project", "RECFLOW_GCP_PROJECT", "Google Cloud project of the job"),
    Option("region", "--region", "RECFLOW_GCP_REGION", "Vertex AI region, e.g. europe-west4"),
    Option("bucket", "--bucket", "RECFLOW_GCS_BUCKET", "bucket for the package and outputs"),
    Option(
        "prefix", "--prefix", "RECFLOW_GCS_PREFIX", "folder in the bucket", default=DEFAULT_PREFIX
    ),
    Option(
        "bq_dataset",
        "--bq-dataset",
        "RECFLOW_BQ_DATASET",
        "BigQuery dataset that holds the dbt marts (the trainer's --warehouse-uri)",
    ),
    Option(
        "bq_project",
        "--bq-project",
        "RECFLOW_BQ_PROJECT",
        "project of that dataset (default: --project)",
    ),
    Option(
        "service_account",
        "--service-account",
        "RECFLOW_VERTEX_SERVICE_ACCOUNT",
        "service account the job runs as (default: Vertex AI's Custom Code Service Agent)",
    ),
    Option(
        "image_repository",
        "--image-repository",
        "RECFLOW_IMAGE_REPOSITORY",
        "Artifact Registry Docker repository of the training image "
        "(default REGION-docker.pkg.dev/PROJECT/recflow)",
    ),
    Option(
        "image",
        "--image",
        "RECFLOW_TRAINING_IMAGE",
        "run this image instead of REPOSITORY/trainer:<tag of this checkout>",
    ),
    Option(
        "timeout_minutes",
        "--timeout-minutes",
        "RECFLOW_VERTEX_TIMEOUT_MINUTES",
        "the job's running time limit; Vertex AI stops it after that",
        default=str(DEFAULT_TIMEOUT_MINUTES),
    ),
    Option(
        "machine_type",
        "--machine-type",
        "RECFLOW_MACHINE_TYPE",
        "machine type of the single replica",
        default=DEFAULT_MACHINE_TYPE,
    ),
)
REQUIRED = ("project", "region", "bucket", "bq_dataset")


class SubmitError(Exception):
    """A submission that cannot go on; the message says why and what to do."""

    exit_code = EXIT_FAILED


class BadInputError(SubmitError):
    """Missing or invalid settings, inputs or credentials: nothing was uploaded or created."""

    exit_code = EXIT_BAD_INPUT


@dataclass(frozen=True)
class VertexSettings:
    """Where and on what the job runs; see `OPTIONS` for the flags and variables."""

    project: str
    region: str
    bucket: str
    bq_dataset: str
    prefix: str = DEFAULT_PREFIX
    bq_project: str | None = None
    service_account: str | None = None
    image: str = ""  # settings_from resolves it (recflow.trainer_image.training_image)
    machine_type: str = DEFAULT_MACHINE_TYPE
    timeout_minutes: int = DEFAULT_TIMEOUT_MINUTES

    @property
    def warehouse_uri(self) -> str:
        return f"bq://{self.bq_project or self.project}.{self.bq_dataset}"

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"


@dataclass(frozen=True)
class RunPlan:
    """Everything about one submission, decided before anything is built or uploaded."""

    run_id: str
    manifest_path: Path
    manifest_sha256: str
    git_commit: str
    display_name: str
    trainer_args: tuple[str, ...] = field(default=())

    def root(self, settings: VertexSettings) -> str:
        """The run's GCS folder: its inputs and (as base_output_dir) its outputs."""
        prefix = settings.prefix.strip("/")
        folder = f"{prefix}/runs/{self.run_id}" if prefix else f"runs/{self.run_id}"
        return f"gs://{settings.bucket}/{folder}"

    def run_dir(self, settings: VertexSettings) -> str:
        """Where the trainer writes the run: Vertex AI's AIP_MODEL_DIR, base_output_dir/model."""
        return f"{self.root(settings)}/model"

    def manifest_uri(self, settings: VertexSettings) -> str:
        return f"{self.root(settings)}/inputs/manifest.json"


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


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """The job's settings (OPTIONS) as flags; each defaults to its environment variable."""
    for option in OPTIONS:
        default = f"; default {option.default}" if option.default else ""
        parser.add_argument(
            option.flag,
            dest=option.dest,
            default=None,
            help=f"{option.help} (${option.env}{default})",
        )


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


def settings_from(values: Mapping[str, Any], environ: Mapping[str, str]) -> VertexSettings:
    """Flags first, then environment variables, then defaults; every missing one is named."""
    resolved = {
        option.dest: values.get(option.dest) or environ.get(option.env) or option.default
        for option in OPTIONS
    }
    missing = [
        option for option in OPTIONS if option.dest in REQUIRED and not resolved[option.dest]
    ]
    if missing:
        names = "; ".join(f"{option.flag} or ${option.env} ({option.help})" for option in missing)
        raise BadInputError(
            f"missing setting{'s' if len(missing) > 1 else ''}: {names}. Pass the flag or export "
            "the variable, e.g. RECFLOW_GCP_PROJECT=my-project RECFLOW_GCP_REGION=europe-west4 "
            "RECFLOW_GCS_BUCKET=my-bucket RECFLOW_BQ_DATASET=recflow recflow submit"
        )
    bucket = str(resolved["bucket"]).removeprefix("gs://").strip("/")
    if not bucket or "/" in bucket:
        raise BadInputError(
            f"--bucket / $RECFLOW_GCS_BUCKET must be a bucket name (got {resolved['bucket']!r}); "
            "put a folder in --prefix / $RECFLOW_GCS_PREFIX"
        )
    timeout = str(resolved.pop("timeout_minutes"))
    if not timeout.isdigit() or not 1 <= int(timeout) <= MAX_TIMEOUT_MINUTES:
        raise BadInputError(
            f"--timeout-minutes / $RECFLOW_VERTEX_TIMEOUT_MINUTES must be a whole number of "
            f"minutes from 1 to {MAX_TIMEOUT_MINUTES} (7 days), got {timeout!r}"
        )
    image = training_image(
        project=resolved["project"],
        region=resolved["region"],
        repository=resolved.pop("image_repository"),
        image=resolved.pop("image"),
    )
    return VertexSettings(
        **{**resolved, "bucket": bucket, "image": image, "timeout_minutes": int(timeout)}
    )


def plan_run(args: argparse.Namespace, manifest: Path) -> RunPlan:
    """The run's id, names and the sources of its labels; the manifest must exist (it is
    hashed here and staged later)."""
    if not manifest.is_file():
        raise BadInputError(
            f"dbt manifest {manifest} does not exist: build the marts with dbt against the "
            "BigQuery target first (it writes target/manifest.json), or pass --manifest PATH"
        )
    run_id = args.run_id or new_run_id()
    if not _RUN_ID.fullmatch(run_id):
        raise BadInputError(
            f"--run-id {run_id!r} must be 1-63 lowercase letters, digits, '_' or '-' (it names "
            "the run's GCS folder and is a job label)"
        )
    trainer_args = tuple(args.trainer_args or ())
    if writes := [arg for arg in trainer_args if _names_serving_table(arg)]:
        raise BadInputError(
            f"--trainer-arg {writes[0]!r}: a training job never writes the serving table; "
            "`recflow gate` writes it once it has accepted the model"
        )
    return RunPlan(
        run_id=run_id,
        manifest_path=manifest.resolve(),
        manifest_sha256=hashlib.sha256(manifest.read_bytes()).hexdigest(),
        git_commit=args.git_commit or git_commit(),
        display_name=args.display_name or f"recflow-trainer-{run_id}",
        trainer_args=trainer_args,
    )


def _names_serving_table(arg: str) -> bool:
    """Whether a trainer argument is SERVING_TABLE_OPTION, whole or abbreviated as argparse
    accepts it (a unique prefix, with or without `=value`)."""
    flag = arg.split("=", 1)[0]
    return len(flag) > 2 and SERVING_TABLE_OPTION.startswith(flag)


def new_run_id() -> str:
    """A UTC timestamp usable in a GCS path and as a label value (lowercase)."""
    return datetime.now(UTC).strftime("%Y%m%dt%H%M%S%fz")


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
    import google.auth
    from google.auth import exceptions as auth_exceptions

    try:
        credentials, _ = google.auth.default(scopes=SCOPES)
    except auth_exceptions.DefaultCredentialsError as error:
        raise BadInputError(f"no Google Cloud credentials. {CREDENTIALS_HELP} ({error})") from error
    return credentials


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
