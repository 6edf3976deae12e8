"""What a Vertex AI training job runs and where: the settings of `recflow submit` and `recflow
gate-job` (each a flag, an environment variable and a default), and the plan of one run, decided
and checked before anything is built or uploaded."""

from __future__ import annotations

import argparse
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recflow.gcp.trainer_image import training_image
from trainer.provenance import git_commit

# No longer what a job runs (that is the training container); recflow.promotion.registry still
# records it as a model version's container until its own change for issue 14 lands.
DEFAULT_MACHINE_TYPE = "e2-standard-4"
DEFAULT_PREFIX = "recflow"
# The job's running time limit (scheduling.timeout). The continuous-training workflow's `train`
# job allows this plus its other steps and pending time (tests/workflows checks they agree).
DEFAULT_TIMEOUT_MINUTES = 120
MAX_TIMEOUT_MINUTES = 7 * 24 * 60  # Vertex AI's own limit and default
EXIT_FAILED, EXIT_BAD_INPUT = 1, 2
# The trainer's option that writes the serving table; a job always sets it to '' (no write).
SERVING_TABLE_OPTION = "--recommendations-table"
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
    image: str = ""  # settings_from resolves it (recflow.gcp.trainer_image.training_image)
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
