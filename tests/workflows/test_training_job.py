"""The continuous-training workflow's Vertex AI job, read from the YAML and run as its steps
would: the training image is built only when its tag is new and is the one the job runs, the job
writes nothing served (only the gate does), and its timeout fits inside the workflow's."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from google.cloud.aiplatform_v1.types import CustomJob
from workflow_files import CONTINUOUS_TRAINING, REPO_ROOT, Step, load, steps

from recflow import cli
from recflow.gcp.trainer_image import image_tag

# What the workflow does besides the Vertex AI job: install, the image build when new, the job
# queueing for a machine (not part of its scheduling.timeout), the gate and the serving build.
MARGIN_MINUTES = 60
EXAMPLE_VARS = {
    "RECFLOW_BQ_PROJECT": "my-project",
    "RECFLOW_BQ_DATASET": "recflow",
    "RECFLOW_GCS_BUCKET": "my-bucket",
    "RECFLOW_GCP_REGION": "europe-west4",
}
_VARS = re.compile(r"\$\{\{\s*(.+?)\s*\}\}")


def train_steps() -> list[Step]:
    return [step for step in steps(CONTINUOUS_TRAINING) if step.job == "train"]


def train_job() -> dict[str, Any]:
    return load(CONTINUOUS_TRAINING)["jobs"]["train"]


def step_running(fragment: str) -> Step:
    return next(step for step in train_steps() if fragment in " ".join(step.commands()))


def resolved_env() -> dict[str, str]:
    """The train job's environment with repository variables set to EXAMPLE_VARS (others
    unset, i.e. empty, as on GitHub) and `a || b` taking the first non-empty value."""
    workflow = load(CONTINUOUS_TRAINING)
    env: dict[str, str] = {}
    for name, value in {**workflow["env"], **train_job()["env"]}.items():
        env[name] = _VARS.sub(lambda match: _evaluate(match.group(1)), str(value))
    return env


def _evaluate(expression: str) -> str:
    for term in expression.split("||"):
        term = term.strip()
        value = term.strip("'") if term.startswith("'") else EXAMPLE_VARS.get(term[5:], "")
        if value:
            return value
    return ""


def test_the_job_timeout_is_a_literal_that_fits_inside_the_workflow_timeout():
    job_timeout = train_job()["env"]["RECFLOW_VERTEX_TIMEOUT_MINUTES"]
    assert isinstance(job_timeout, str) and job_timeout.isdigit(), (
        "a literal: the workflow's timeout-minutes cannot follow a repository variable"
    )
    assert train_job()["timeout-minutes"] >= int(job_timeout) + MARGIN_MINUTES
    submit = step_running("recflow submit")
    assert "--timeout-minutes" not in " ".join(submit.commands()), "one place sets it"


def test_the_image_is_built_and_pushed_only_when_its_tag_is_new_before_the_job():
    image_step = step_running("recflow trainer-image")
    script = " ".join(image_step.commands())
    assert 'image="$(.venv/bin/recflow trainer-image)"' in script
    assert 'gcloud artifacts docker images describe "$image"' in script
    assert '|| make trainer-image-push TRAINER_IMAGE="$image"' in script
    names = [step.uses or "" for step in train_steps()]
    setup_gcloud = next(i for i, uses in enumerate(names) if "setup-gcloud@" in uses)
    auth = next(i for i, uses in enumerate(names) if "google-github-actions/auth@" in uses)
    assert auth < setup_gcloud < image_step.index < step_running("recflow submit").index
    assert "RECFLOW_TRAINING_IMAGE" not in train_job()["env"], "the locked image, not a variable"


def test_the_submitted_job_runs_the_locked_image_writes_nothing_served_and_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """The workflow's own `recflow submit` command with its environment, as a dry run."""
    for name, value in resolved_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GIT_COMMIT", "0" * 40)
    manifest = tmp_path / "manifest.json"
    manifest.write_text("{}")
    (command,) = [c for c in step_running("recflow submit").commands() if "recflow submit" in c]
    argv = shlex.split(command)[1:]  # drop .venv/bin/recflow
    args = cli._parser().parse_args([*argv, "--manifest", str(manifest), "--dry-run"])
    assert args.handler(args) == 0
    request = CustomJob.from_json(capsys.readouterr().out)

    (pool,) = request.job_spec.worker_pool_specs
    assert pool.container_spec.image_uri == (
        f"europe-west4-docker.pkg.dev/my-project/recflow/trainer:{image_tag(REPO_ROOT)}"
    )
    trainer_args = list(pool.container_spec.args)
    assert trainer_args[trainer_args.index("--recommendations-table") + 1] == ""
    timeout_minutes = int(resolved_env()["RECFLOW_VERTEX_TIMEOUT_MINUTES"])
    assert request.job_spec.scheduling.timeout.total_seconds() == timeout_minutes * 60


def test_only_the_gate_names_the_serving_table():
    naming = [
        step.spec.get("name")
        for step in train_steps()
        if "--recommendations-table" in " ".join(step.commands())
        or "trainer-arg" in " ".join(step.commands())
    ]
    assert naming == [step_running("recflow gate").spec.get("name")]
