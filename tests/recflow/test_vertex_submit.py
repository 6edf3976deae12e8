"""`recflow submit`: the Vertex AI job request, checked with the SDK's own message types, the
dry run, bad input, staging against a local Cloud Storage emulator, and the job's life (created,
followed, failed, cancelled on SIGINT/SIGTERM) through the real SDK against a local stand-in of
the custom jobs API.

Nothing here talks to Google Cloud: the dry-run job is built with anonymous credentials and never
sent, staging goes to `gcp-storage-emulator` on 127.0.0.1 through the real gcsfs client, and the
jobs that are sent go to tests/recflow/vertex_jobs_standin.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import gcsfs
import pytest
from gcp_storage_emulator.server import create_server
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform
from google.cloud.aiplatform import initializer
from google.cloud.aiplatform_v1.types import CustomJob, WorkerPoolSpec
from google.oauth2.credentials import Credentials
from vertex_jobs_standin import VertexCustomJobs, vertex_custom_jobs

from recflow.gcp import vertex_settings, vertex_submit
from recflow.gcp.trainer_image import image_tag
from recflow.gcp.vertex_settings import (
    DEFAULT_MACHINE_TYPE,
    DEFAULT_TIMEOUT_MINUTES,
    EXIT_BAD_INPUT,
    RunPlan,
    SubmitError,
    VertexSettings,
)

COMMIT = "0123456789ABCDEF0123456789abcdef01234567"
RUN_ID = "20260105t101500000000z"
SETTINGS = VertexSettings(
    project="recflow-prod",
    region="europe-west4",
    bucket="recflow-artifacts",
    bq_dataset="recflow_features",
    prefix="training",
    service_account="trainer@recflow-prod.iam.gserviceaccount.com",
    image="europe-west4-docker.pkg.dev/recflow-prod/recflow/trainer:0123456789abcdef",
    timeout_minutes=90,
)
ENV_SETTINGS = {
    "RECFLOW_GCP_PROJECT": "recflow-prod",
    "RECFLOW_GCP_REGION": "europe-west4",
    "RECFLOW_GCS_BUCKET": "gs://recflow-artifacts/",
    "RECFLOW_BQ_DATASET": "recflow_features",
}
LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    """Any bytes do: the submitter hashes and stages the manifest, the trainer parses it."""
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"metadata": {"dbt_version": "1.11.16"}, "nodes": {}}))
    return path


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An environment where Application Default Credentials cannot be found, quickly: a key
    file that does not exist, no gcloud configuration, no metadata server probe."""
    for option in vertex_settings.OPTIONS:
        monkeypatch.delenv(option.env, raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing-key.json"))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("GIT_COMMIT", COMMIT)  # no test shells out to git
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)


def plan_for(manifest: Path, **overrides: object) -> RunPlan:
    fields = {
        "run_id": RUN_ID,
        "manifest_path": manifest,
        "manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest(),
        "git_commit": COMMIT,
        "display_name": f"recflow-trainer-{RUN_ID}",
        "trainer_args": ("--num-boost-round=500",),
    }
    return RunPlan(**{**fields, **overrides})  # type: ignore[arg-type]


def submit(*argv: str) -> int:
    """`recflow submit ARGV` through `register`, as the project's command line will call it."""
    parser = argparse.ArgumentParser(prog="recflow")
    vertex_submit.register(parser.add_subparsers(required=True))
    args = parser.parse_args(["submit", *argv])
    return int(args.handler(args))


# --- the request -------------------------------------------------------------------------------


def test_job_request_is_the_sdks_custom_job_with_every_setting(manifest: Path) -> None:
    plan = plan_for(manifest)
    job = vertex_submit.build_custom_job(SETTINGS, plan, credentials=AnonymousCredentials())
    request = job._gca_resource
    assert isinstance(request, CustomJob)

    (pool,) = request.job_spec.worker_pool_specs
    assert isinstance(pool, WorkerPoolSpec)
    assert pool.machine_spec.machine_type == DEFAULT_MACHINE_TYPE
    assert pool.replica_count == 1
    assert "python_package_spec" not in pool  # the training container, not a prebuilt one
    container = pool.container_spec
    assert container.image_uri == SETTINGS.image
    assert not container.command  # the image's ENTRYPOINT: python -m trainer.task
    root = f"gs://recflow-artifacts/training/runs/{RUN_ID}"
    assert list(container.args) == [
        "--warehouse-uri",
        "bq://recflow-prod.recflow_features",
        "--features-schema",
        "recflow_features",
        "--manifest",
        f"{root}/inputs/manifest.json",
        "--recommendations-table",
        "",
        "--num-boost-round=500",
    ]
    assert {variable.name: variable.value for variable in container.env} == {
        "GIT_COMMIT": COMMIT,
        "PYTHONUNBUFFERED": "1",
        "RECFLOW_LOG_FORMAT": "json",
    }
    assert request.job_spec.scheduling.timeout.total_seconds() == 90 * 60
    assert request.job_spec.service_account == SETTINGS.service_account
    # Vertex AI sets AIP_MODEL_DIR to <base_output_directory>/model/.
    assert request.job_spec.base_output_directory.output_uri_prefix == root
    assert request.display_name == f"recflow-trainer-{RUN_ID}"
    assert dict(request.labels) == {
        "git_commit": COMMIT.lower(),
        "dbt_manifest_sha": plan.manifest_sha256[:63],
        "recflow_run_id": RUN_ID,
    }
    assert job._parent == "projects/recflow-prod/locations/europe-west4"


def test_bigquery_project_and_image_and_machine_are_configurable(manifest: Path) -> None:
    settings = VertexSettings(
        project="compute-project",
        region="us-central1",
        bucket="b",
        bq_dataset="marts",
        bq_project="data-project",
        image="europe-docker.pkg.dev/my/images/trainer:py311",
        machine_type="n2-highmem-8",
        prefix="",
    )
    job = vertex_submit.build_custom_job(
        settings, plan_for(manifest, trainer_args=()), credentials=AnonymousCredentials()
    )
    (pool,) = job._gca_resource.job_spec.worker_pool_specs
    assert pool.machine_spec.machine_type == "n2-highmem-8"
    assert pool.container_spec.image_uri == settings.image
    assert list(pool.container_spec.args)[:2] == ["--warehouse-uri", "bq://data-project.marts"]
    assert f"gs://b/runs/{RUN_ID}/inputs/manifest.json" in pool.container_spec.args
    assert job._gca_resource.job_spec.service_account == ""
    timeout = job._gca_resource.job_spec.scheduling.timeout
    assert timeout.total_seconds() == DEFAULT_TIMEOUT_MINUTES * 60


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0123456789ABCDEF", "0123456789abcdef"),
        ("v1.2/feature branch+dirty", "v1_2_feature_branch_dirty"),
        ("a" * 64, "a" * 63),
        ("", ""),
    ],
)
def test_label_values_are_sanitised(raw: str, expected: str) -> None:
    assert vertex_submit.label_value(raw) == expected
    assert LABEL_VALUE.fullmatch(vertex_submit.label_value(raw))


# --- the command -------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_credentials")
def test_dry_run_prints_the_request_as_json_without_credentials(
    manifest: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in ENV_SETTINGS.items():
        monkeypatch.setenv(name, value)
    code = submit(
        "--manifest",
        str(manifest),
        "--git-commit",
        "v1.2/Feature",
        "--run-id",
        RUN_ID,
        "--dry-run",
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err

    request = CustomJob.from_json(captured.out)
    (pool,) = request.job_spec.worker_pool_specs
    root = f"gs://recflow-artifacts/recflow/runs/{RUN_ID}"  # default prefix, gs:// stripped
    # The locked training image of this checkout, in the default repository.
    assert pool.container_spec.image_uri == (
        f"europe-west4-docker.pkg.dev/recflow-prod/recflow/trainer:{image_tag()}"
    )
    # The job writes nothing served: the trainer's serving table is '' (no write-back).
    args = list(pool.container_spec.args)
    assert args[args.index("--recommendations-table") + 1] == ""
    assert f"{root}/inputs/manifest.json" in args
    assert request.job_spec.scheduling.timeout.total_seconds() == DEFAULT_TIMEOUT_MINUTES * 60
    assert request.job_spec.base_output_directory.output_uri_prefix == root
    assert request.labels["git_commit"] == "v1_2_feature"
    manifest_sha = hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert request.labels["dbt_manifest_sha"] == manifest_sha[:63]
    # The same message the SDK builds, field for field.
    expected = vertex_submit.build_custom_job(
        vertex_settings.settings_from({}, ENV_SETTINGS),
        plan_for(manifest, git_commit="v1.2/Feature", trainer_args=()),
        credentials=AnonymousCredentials(),
    )._gca_resource
    assert request == expected
    assert "nothing was staged or submitted" in captured.err


@pytest.mark.usefixtures("no_credentials")
def test_flags_override_the_environment(
    manifest: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in ENV_SETTINGS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RECFLOW_MACHINE_TYPE", "n2-standard-8")
    code = submit(
        "--manifest",
        str(manifest),
        "--project",
        "other-project",
        "--service-account",
        "sa@other-project.iam.gserviceaccount.com",
        "--dry-run",
    )
    request = CustomJob.from_json(capsys.readouterr().out)
    assert code == 0
    (pool,) = request.job_spec.worker_pool_specs
    assert pool.machine_spec.machine_type == "n2-standard-8"
    assert "bq://other-project.recflow_features" in pool.container_spec.args
    assert request.job_spec.service_account == "sa@other-project.iam.gserviceaccount.com"


@pytest.mark.usefixtures("no_credentials")
@pytest.mark.parametrize(
    ("flags", "environ", "image", "timeout_minutes"),
    [
        (
            ("--image-repository", "us-docker.pkg.dev/shared/images", "--timeout-minutes", "45"),
            {},
            "us-docker.pkg.dev/shared/images/trainer:{tag}",
            45,
        ),
        (
            (),
            {"RECFLOW_IMAGE_REPOSITORY": "eu.gcr.io/x", "RECFLOW_VERTEX_TIMEOUT_MINUTES": "30"},
            "eu.gcr.io/x/trainer:{tag}",
            30,
        ),
        (("--image", "example.com/hand-built:1"), {}, "example.com/hand-built:1", 120),
    ],
)
def test_image_and_timeout_are_settings(
    manifest: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flags: tuple[str, ...],
    environ: dict[str, str],
    image: str,
    timeout_minutes: int,
) -> None:
    for name, value in {**ENV_SETTINGS, **environ}.items():
        monkeypatch.setenv(name, value)
    assert submit("--manifest", str(manifest), *flags, "--dry-run") == 0
    request = CustomJob.from_json(capsys.readouterr().out)
    (pool,) = request.job_spec.worker_pool_specs
    assert pool.container_spec.image_uri == image.format(tag=image_tag())
    assert request.job_spec.scheduling.timeout.total_seconds() == timeout_minutes * 60


@pytest.mark.usefixtures("no_credentials")
@pytest.mark.parametrize(
    "argument",
    ["--recommendations-table=ml.batch_recommendations", "--recommendations-table", "--recom=x"],
)
def test_a_trainer_argument_that_would_write_the_serving_table_is_refused(
    manifest: Path, capsys: pytest.CaptureFixture[str], argument: str
) -> None:
    code = submit(
        *("--project", "p", "--region", "europe-west4", "--bucket", "b", "--bq-dataset", "d"),
        *("--manifest", str(manifest), f"--trainer-arg={argument}", "--dry-run"),
    )
    assert code == EXIT_BAD_INPUT
    message = capsys.readouterr().err
    assert "never writes the serving table" in message
    assert argument in message


@pytest.mark.usefixtures("no_credentials")
def test_missing_settings_are_named_with_flag_and_variable(
    manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = submit("--manifest", str(manifest), "--region", "europe-west4", "--dry-run")
    message = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert message.startswith("recflow submit: missing settings:")
    for named in ("--project", "$RECFLOW_GCP_PROJECT", "--bucket", "$RECFLOW_GCS_BUCKET"):
        assert named in message
    assert "--bq-dataset or $RECFLOW_BQ_DATASET" in message
    assert "RECFLOW_GCP_REGION (" not in message  # given, so not listed as missing
    assert "Traceback" not in message


@pytest.mark.usefixtures("no_credentials")
@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (("--bucket", "gs://bucket/with/folder"), "must be a bucket name"),
        (("--run-id", "Not A Label"), "--run-id 'Not A Label' must be"),
        (("--region", "moon-central1"), "Unsupported region"),
        (("--timeout-minutes", "0"), "--timeout-minutes / $RECFLOW_VERTEX_TIMEOUT_MINUTES must"),
        (("--timeout-minutes", "10081"), "from 1 to 10080 (7 days), got '10081'"),
        (("--timeout-minutes", "1.5"), "a whole number of minutes"),
    ],
)
def test_invalid_settings_exit_2(
    manifest: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], fragment: str
) -> None:
    base = {"--project": "p", "--region": "europe-west4", "--bucket": "b", "--bq-dataset": "d"}
    base.update(dict(zip(extra[::2], extra[1::2], strict=True)))
    argv = [item for pair in base.items() for item in pair]
    code = submit(*argv, "--manifest", str(manifest), "--dry-run")
    assert code == EXIT_BAD_INPUT
    assert fragment in capsys.readouterr().err


@pytest.mark.usefixtures("no_credentials")
def test_missing_manifest_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "target" / "manifest.json"
    code = submit(
        *("--project", "p", "--region", "europe-west4", "--bucket", "b", "--bq-dataset", "d"),
        *("--manifest", str(missing), "--dry-run"),
    )
    assert code == EXIT_BAD_INPUT
    message = capsys.readouterr().err
    assert str(missing) in message
    assert "--manifest" in message


@pytest.mark.usefixtures("no_credentials")
def test_real_submit_without_credentials_explains_adc_and_stages_nothing(
    manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = submit(
        *("--project", "p", "--region", "europe-west4", "--bucket", "b", "--bq-dataset", "d"),
        *("--manifest", str(manifest)),
    )
    assert code == EXIT_BAD_INPUT
    message = capsys.readouterr().err
    assert "No Google Cloud credentials for Vertex AI" in message
    assert "gcloud auth application-default login" in message
    assert "Workload Identity Federation" in message


# --- the job's end ------------------------------------------------------------------------------


# --- the job's life through the SDK, against the custom jobs stand-in --------------------------

JOBS_PATH = "/v1/projects/recflow-prod/locations/europe-west4/customJobs"
# After creation the SDK names the job as the service does, by project number.
JOB_PATH = "/v1/projects/123456789012/locations/europe-west4/customJobs/{job_id}"
# The SDK polls a job every 5 s; a signal is sent once the first poll was answered.
SIGNAL_WAIT_S = 30


@pytest.fixture
def jobs_standin() -> Iterator[VertexCustomJobs]:
    """The stand-in, with the SDK's global endpoint pointed at it for the test only."""
    config = initializer.global_config
    saved = (config._api_endpoint, config._api_transport)
    with vertex_custom_jobs() as state:
        aiplatform.init(api_endpoint=state.url, api_transport="rest")
        try:
            yield state
        finally:
            config._api_endpoint, config._api_transport = saved


def sent_job(manifest: Path) -> aiplatform.CustomJob:
    """The job `submit` builds, with credentials the stand-in accepts."""
    return vertex_submit.build_custom_job(
        SETTINGS, plan_for(manifest), credentials=Credentials(token="standin-token")
    )


def test_the_created_job_is_the_dry_run_request_and_its_success_exits_0(
    jobs_standin: VertexCustomJobs, manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs_standin.states = ["JOB_STATE_SUCCEEDED"]
    job = sent_job(manifest)
    dry_run = json.loads(vertex_submit.request_json(job))
    assert vertex_submit.run_job(job, SETTINGS, wait=True) == 0
    (create,) = jobs_standin.sent("POST", JOBS_PATH)
    assert create.json() == dry_run
    assert create.json()["jobSpec"]["scheduling"]["timeout"] == "5400s"
    assert jobs_standin.sent("GET", JOB_PATH.format(job_id="[0-9]+"))
    assert not jobs_standin.sent("POST", ".*:cancel")
    assert "job succeeded: projects/123456789012/locations/europe-west4/customJobs/" in (
        capsys.readouterr().err
    )


def test_a_failed_job_through_the_sdk_names_the_error(
    jobs_standin: VertexCustomJobs, manifest: Path
) -> None:
    jobs_standin.states = ["JOB_STATE_FAILED"]
    with pytest.raises(
        SubmitError, match=r"(?s)job JOB_STATE_FAILED: .*non-zero status of 2"
    ) as raised:
        vertex_submit.run_job(sent_job(manifest), SETTINGS, wait=True)
    assert raised.value.exit_code == 1


def test_a_job_that_ends_without_success_is_a_failure(
    jobs_standin: VertexCustomJobs, manifest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vertex_submit, "POLL_SECONDS", 0.1)  # polled until it ends
    jobs_standin.states = ["JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_PAUSED"]
    with pytest.raises(SubmitError, match="job ended JOB_STATE_PAUSED"):
        vertex_submit.run_job(sent_job(manifest), SETTINGS, wait=True)
    assert len(jobs_standin.sent("GET", JOB_PATH.format(job_id="[0-9]+"))) == 3


def test_no_wait_returns_once_created(jobs_standin: VertexCustomJobs, manifest: Path) -> None:
    assert vertex_submit.run_job(sent_job(manifest), SETTINGS, wait=False) == 0
    assert len(jobs_standin.sent("POST", JOBS_PATH)) == 1
    assert not jobs_standin.sent("GET", JOB_PATH.format(job_id="[0-9]+"))


def _signal_once_followed(
    state: VertexCustomJobs, signum: int, *, errors: list[BaseException]
) -> threading.Thread:
    def send() -> None:
        if state.first_get.wait(SIGNAL_WAIT_S):
            os.kill(os.getpid(), signum)
        else:
            errors.append(TimeoutError("the job was never polled"))

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_an_interrupt_while_following_cancels_the_job(
    jobs_standin: VertexCustomJobs,
    manifest: Path,
    capsys: pytest.CaptureFixture[str],
    signum: signal.Signals,
) -> None:
    """What a cancelled or timed-out workflow does to `recflow submit`: a real signal to this
    process while the SDK waits between polls."""
    errors: list[BaseException] = []
    sender = _signal_once_followed(jobs_standin, signum, errors=errors)
    before = signal.getsignal(signum)
    code = vertex_submit.run_job(sent_job(manifest), SETTINGS, wait=True)
    sender.join(SIGNAL_WAIT_S)
    assert not errors
    assert code == 128 + signum
    (job_id,) = jobs_standin.jobs
    (cancel,) = jobs_standin.sent("POST", JOB_PATH.format(job_id=job_id) + ":cancel")
    assert cancel.body in (b"", b"{}")
    assert jobs_standin.jobs[job_id].state == "JOB_STATE_CANCELLING"
    err = capsys.readouterr().err
    assert f"{signum.name}: asked Vertex AI to cancel projects/123456789012/" in err
    assert signal.getsignal(signum) is before  # the handlers are put back


def test_sigterm_after_sigint_does_not_stop_the_cancellation(
    jobs_standin: VertexCustomJobs, manifest: Path
) -> None:
    """GitHub Actions follows SIGINT with SIGTERM: the second must not cut the cancel short."""
    sent_sigterm = threading.Event()

    def sigterm_while_cancelling() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        sent_sigterm.set()
        time.sleep(0.5)  # the cancel request stays open while the signal is handled

    jobs_standin.on_cancel = sigterm_while_cancelling
    errors: list[BaseException] = []
    _signal_once_followed(jobs_standin, signal.SIGINT, errors=errors)
    code = vertex_submit.run_job(sent_job(manifest), SETTINGS, wait=True)
    assert not errors
    assert sent_sigterm.is_set()
    assert code == 128 + signal.SIGINT
    (job_id,) = jobs_standin.jobs
    assert jobs_standin.jobs[job_id].state == "JOB_STATE_CANCELLING"


# --- staging ------------------------------------------------------------------------------------


@pytest.fixture
def storage_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """gcp-storage-emulator on a free 127.0.0.1 port, in memory, with one bucket; gcsfs is
    pointed at it through STORAGE_EMULATOR_HOST. Yields the bucket name."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="recflow-artifacts")
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    try:
        yield "recflow-artifacts"
    finally:
        server.stop()


def test_staging_uploads_the_manifest_where_the_job_points(
    storage_emulator: str, manifest: Path
) -> None:
    settings = VertexSettings(
        project="p", region="europe-west4", bucket=storage_emulator, bq_dataset="d", image="i"
    )
    plan = plan_for(manifest)
    staged = vertex_submit.stage_inputs(settings, plan, token="anon")

    job = vertex_submit.build_custom_job(settings, plan, credentials=AnonymousCredentials())
    (pool,) = job._gca_resource.job_spec.worker_pool_specs
    args = list(pool.container_spec.args)
    manifest_uri = args[args.index("--manifest") + 1]
    assert staged == [manifest_uri]
    storage = gcsfs.GCSFileSystem(token="anon", skip_instance_cache=True)
    assert storage.cat_file(manifest_uri) == manifest.read_bytes()


def test_staging_to_a_missing_bucket_says_so(storage_emulator: str, manifest: Path) -> None:
    settings = VertexSettings(project="p", region="europe-west4", bucket="no-such", bq_dataset="d")
    with pytest.raises(SubmitError, match=r"gs://no-such/.*the bucket does not exist"):
        vertex_submit.stage_inputs(settings, plan_for(manifest), token="anon")


def test_run_dir_out_names_the_directory_the_trainer_writes(manifest: Path, tmp_path: Path) -> None:
    """Vertex AI sets AIP_MODEL_DIR to <base_output_dir>/model/; the trainer drops the slash."""
    plan = plan_for(manifest)
    job = vertex_submit.build_custom_job(SETTINGS, plan, credentials=AnonymousCredentials())
    base = job._gca_resource.job_spec.base_output_directory.output_uri_prefix
    out = tmp_path / "ci" / "run_dir.txt"
    vertex_submit.write_run_dir(out, SETTINGS, plan)
    assert out.read_text() == f"{base}/model\n"
    parser = argparse.ArgumentParser(prog="recflow")
    vertex_submit.register(parser.add_subparsers(required=True))
    assert parser.parse_args(["submit", "--run-dir-out", str(out)]).run_dir_out == out
