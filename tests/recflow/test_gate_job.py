"""`recflow gate-job`: the gate as a Vertex AI CustomJob built from the training job's request
(real SDK types), and how the runner reads the job's decision back."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.cloud.aiplatform_v1.types import CustomJob

from recflow.cli import main as recflow_main
from recflow.gcp import vertex_settings
from recflow.gcp.trainer_image import image_tag
from recflow.promotion import command
from recflow.promotion.gate_job import GATE_MODULE, read_decision

COMMIT = "0123456789abcdef0123456789abcdef01234567"
RUN_ID = "20260105t101500000000z"
ROOT = f"gs://recflow-artifacts/training/runs/{RUN_ID}"
SETTINGS = [
    "--project=recflow-prod",
    "--region=europe-west4",
    "--bucket=recflow-artifacts",
    "--prefix=training",
    "--bq-dataset=recflow_features",
    "--service-account=trainer@recflow-prod.iam.gserviceaccount.com",
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for option in vertex_settings.OPTIONS:
        monkeypatch.delenv(option.env, raising=False)
    monkeypatch.setenv("GIT_COMMIT", COMMIT)
    monkeypatch.setenv("RECFLOW_VERTEX_EXPERIMENT", "ranker-experiments")
    monkeypatch.delenv("RECFLOW_GATE_TOLERANCE", raising=False)


def test_dry_run_is_the_training_request_running_the_gate(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = recflow_main(
        ["gate-job", "--dry-run", "--run-dir", f"{ROOT}/model", "--tolerance", "0.01", *SETTINGS]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    job = CustomJob.from_json(captured.out)
    (pool,) = job.job_spec.worker_pool_specs
    container = pool.container_spec
    # The gate runs in the training image, as its own entry point.
    assert container.image_uri.endswith(f"/trainer:{image_tag()}")
    assert list(container.command) == ["python", "-m", GATE_MODULE]
    assert list(container.args) == [
        "gate",
        "--run-dir",
        f"{ROOT}/model",
        "--warehouse-uri",
        "bq://recflow-prod.recflow_features",
        "--features-schema",
        "recflow_features",
        "--registry",
        "vertex",
        "--recommendations-table",
        "ml.batch_recommendations",
        "--tolerance",
        "0.01",
    ]
    env = {item.name: item.value for item in container.env}
    assert env["RECFLOW_GCP_PROJECT"] == "recflow-prod"
    assert env["RECFLOW_GCP_REGION"] == "europe-west4"
    assert env["RECFLOW_VERTEX_EXPERIMENT"] == "ranker-experiments"
    assert env["GIT_COMMIT"] == COMMIT
    assert job.job_spec.service_account == "trainer@recflow-prod.iam.gserviceaccount.com"
    assert job.job_spec.base_output_directory.output_uri_prefix == f"{ROOT}/gate"
    assert job.labels["recflow_step"] == "gate"
    assert job.labels["recflow_run_id"] == RUN_ID
    assert job.display_name == f"recflow-gate-{RUN_ID}"


def test_the_entry_point_parses_the_job_arguments() -> None:
    """What the job runs is a command this module's parser accepts, as given."""
    import argparse

    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "gate",
            "--run-dir",
            f"{ROOT}/model",
            "--warehouse-uri",
            "bq://p.d",
            "--registry",
            "vertex",
        ]
    )
    assert (args.handler, args.registry) == (command._gate, "vertex")


@pytest.mark.parametrize(
    "run_dir",
    [
        f"gs://other-bucket/training/runs/{RUN_ID}/model",
        f"{ROOT}",  # the run's folder, not its model directory
        "/local/runs/x",
    ],
)
def test_a_run_dir_recflow_submit_did_not_make_exits_2(
    run_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert recflow_main(["gate-job", "--dry-run", "--run-dir", run_dir, *SETTINGS]) == 2
    assert "--run-dir-out" in capsys.readouterr().err


def test_missing_settings_are_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert recflow_main(["gate-job", "--dry-run", "--run-dir", f"{ROOT}/model"]) == 2
    assert "RECFLOW_GCP_PROJECT" in capsys.readouterr().err


def test_only_a_decision_made_by_this_job_is_read_back(tmp_path: Path) -> None:
    run_dir = tmp_path / "model"
    run_dir.mkdir()
    started = datetime.now(UTC)
    assert read_decision(str(run_dir), since=started) is None
    stale = (started - timedelta(minutes=5)).isoformat(timespec="seconds")
    (run_dir / "decision.json").write_text(json.dumps({"decided_at": stale}))
    assert read_decision(str(run_dir), since=started) is None
    fresh = started.isoformat(timespec="seconds")  # whole seconds, as the gate writes it
    (run_dir / "decision.json").write_text(json.dumps({"decided_at": fresh, "outcome": "x"}))
    assert read_decision(str(run_dir), since=started) == {"decided_at": fresh, "outcome": "x"}
