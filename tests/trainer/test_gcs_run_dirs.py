"""Run directories on Cloud Storage with gcsfs against gcp-storage-emulator (cloud_standins.py):
a staged run is finished only once run_metadata.json is uploaded, a Vertex AI job writes its run
directory to AIP_MODEL_DIR, a failure after training leaves nothing under the prefix, and an
unusable prefix or a missing bucket is refused before training. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import pytest
from cloud_io_support import (
    BUCKET,
    assert_exit_2,
    fixture_storage,  # noqa: F401 -- a fixture, requested by parameter name
    isolated_env,
)
from cloud_standins import PROJECT, EmulatedStorage
from conftest import RUN_ARTIFACTS, TinyWarehouse
from trainer_harness import (
    FAST_ROUNDS,
    TrainerResult,
    copy_warehouse,
    duckdb_uri,
    execute,
    frame,
    manifest_of,
    run_trainer,
)

from trainer import gcs

# --- run directories on Cloud Storage -------------------------------------------------------------


def test_a_gcs_run_is_finished_only_once_run_metadata_is_uploaded(
    storage: EmulatedStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Artifacts first, the marker last; a failure after the artifacts were uploaded deletes
    them, so the prefix is empty again, and a successful run ends with the marker newest."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", storage.url)
    failed, finished = f"gs://{BUCKET}/unit/failed", f"gs://{BUCKET}/unit/finished"

    with pytest.raises(RuntimeError, match="write-back failed"), gcs.staged_run(failed) as staged:
        (staged.path / "model.txt").write_text("tree\n")
        (staged.path / "run_metadata.json").write_text("{}\n")
        staged.publish_artifacts()
        assert storage.objects(f"{BUCKET}/unit/failed") == [f"{BUCKET}/unit/failed/model.txt"]
        raise RuntimeError("write-back failed")
    assert storage.objects(f"{BUCKET}/unit/failed") == []

    with gcs.staged_run(finished) as staged:
        for name in ("model.txt", "metrics.json", "run_metadata.json"):
            (staged.path / name).write_text(f"{name}\n")
    objects = storage.objects(f"{BUCKET}/unit/finished")
    assert [name.rpartition("/")[2] for name in objects] == [
        "metrics.json",
        "model.txt",
        "run_metadata.json",
    ]
    generations = {name: int(storage.fs.info(name)["generation"]) for name in objects}
    assert max(generations, key=generations.__getitem__).endswith("/run_metadata.json")
    assert not staged.path.exists()


def vertex_env(tmp_path: Path, storage: EmulatedStorage, model_dir: str) -> dict[str, str]:
    """What a Vertex AI custom job sets, with Cloud Storage on the emulator."""
    return isolated_env(
        tmp_path,
        STORAGE_EMULATOR_HOST=storage.url,
        AIP_MODEL_DIR=model_dir,
        AIP_CHECKPOINT_DIR=f"gs://{BUCKET}/checkpoints",
        AIP_TENSORBOARD_LOG_DIR=f"gs://{BUCKET}/tensorboard",
        CLOUD_ML_PROJECT_ID=PROJECT,
        CLOUD_ML_JOB_ID="1234567890123456789",
        CLOUD_ML_TRIAL_ID="7",
    )


def logged(result: TrainerResult) -> str:
    """What a run logged, one message a line: on Vertex AI the records are JSON lines on stdout
    (trainer.logs), anything else (an uncaught error, the `trainer:` message) is stderr."""
    messages = [
        json.loads(line)["message"] for line in result.stdout.splitlines() if line.startswith("{")
    ]
    return "\n".join([*messages, result.stderr])


def vertex_args(warehouse: Path, manifest: Path | str) -> list[str]:
    """The trainer's arguments as a Vertex job passes them: no --output-dir."""
    return [
        "--warehouse-uri",
        duckdb_uri(warehouse),
        "--manifest",
        str(manifest),
        "--recommendations-table",
        "ml.batch_recommendations",
        *FAST_ROUNDS,
    ]


@pytest.mark.dbt
def test_a_vertex_job_writes_its_run_directory_to_aip_model_dir(
    tiny_warehouse: TinyWarehouse, storage: EmulatedStorage, tmp_path: Path
) -> None:
    """AIP_MODEL_DIR (gs://) is the run directory and the manifest is read from gs://: every
    artifact is in the bucket, model.txt
    loads with LightGBM, run_metadata.json records the Vertex job and was uploaded last, the
    recommendations were written back, and nothing went to the checkpoint or TensorBoard
    directories."""
    warehouse = copy_warehouse(tiny_warehouse, tmp_path / "warehouse")
    model_dir = f"gs://{BUCKET}/models/run1/"
    # As `recflow submit` stages it: the manifest travels to the job through the bucket.
    storage.fs.put(str(manifest_of(tiny_warehouse)), f"{BUCKET}/inputs/manifest.json")

    result = run_trainer(
        *vertex_args(warehouse, f"gs://{BUCKET}/inputs/manifest.json"),
        cwd=tmp_path,
        env=vertex_env(tmp_path, storage, model_dir),
    )

    assert result.returncode == 0, result.stderr
    assert f"gs://{BUCKET}/models/run1" in result.stdout
    # Cloud Logging reads each record's severity from its JSON line; stderr would be ERROR.
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert {record["severity"] for record in records} == {"INFO"}
    assert any("training on" in record["message"] for record in records)
    objects = storage.objects(f"{BUCKET}/models/run1")
    assert {name.rpartition("/")[2] for name in objects} == RUN_ARTIFACTS
    fs = storage.fs
    model = lgb.Booster(model_str=fs.cat(f"{BUCKET}/models/run1/model.txt").decode())
    spec = json.loads(fs.cat(f"{BUCKET}/models/run1/feature_spec.json"))
    assert model.feature_name() == spec["features"]
    metadata = json.loads(fs.cat(f"{BUCKET}/models/run1/run_metadata.json"))
    assert metadata["cloud_ml_project_id"] == PROJECT
    assert metadata["cloud_ml_job_id"] == "1234567890123456789"
    assert metadata["cloud_ml_trial_id"] == "7"
    assert metadata["aip_model_dir"] == model_dir
    generations = {name: int(fs.info(name)["generation"]) for name in objects}
    assert max(generations, key=generations.__getitem__).endswith("/run_metadata.json")
    written = frame(warehouse, "select count(*) as n from ml.batch_recommendations")
    assert written["n"].item() == metadata["rows"]["batch_recommendations"]
    assert storage.objects(f"{BUCKET}/checkpoints") == []
    assert storage.objects(f"{BUCKET}/tensorboard") == []
    assert not (tmp_path / "runs").exists()


@pytest.mark.dbt
def test_a_failure_after_training_leaves_nothing_under_the_gcs_prefix(
    tiny_warehouse: TinyWarehouse, storage: EmulatedStorage, tmp_path: Path
) -> None:
    """The write-back fails after the artifacts were uploaded (a view holds the table's
    place): the uploaded objects are deleted, no run_metadata.json ever appears, and the view
    is untouched."""
    warehouse = copy_warehouse(tiny_warehouse, tmp_path / "warehouse")
    execute(
        warehouse,
        "create schema ml",
        "create view ml.batch_recommendations as select 'someone else''s view' as note",
    )

    result = run_trainer(
        *vertex_args(warehouse, manifest_of(tiny_warehouse)),
        cwd=tmp_path,
        env=vertex_env(tmp_path, storage, f"gs://{BUCKET}/models/failed"),
    )

    assert_exit_2(result, "Cannot write table ml.batch_recommendations")
    assert "training on" in logged(result)
    uploaded = len(RUN_ARTIFACTS) - 1
    assert f"deleted {uploaded} objects of the failed run gs://{BUCKET}/models/failed" in (
        logged(result)
    )
    assert storage.objects(f"{BUCKET}/models/failed") == []
    assert frame(warehouse, "select note from ml.batch_recommendations")["note"].tolist() == [
        "someone else's view"
    ]


@pytest.mark.dbt
@pytest.mark.parametrize(
    ("model_dir", "fragments"),
    [
        pytest.param(
            f"gs://{BUCKET}/models/leftover",
            ["already holds 1 object(s): an unfinished run, no run_metadata.json", "delete"],
            id="unfinished-run-present",
        ),
        pytest.param(
            "gs://no-such-bucket/models/run",
            ["bucket gs://no-such-bucket does not exist"],
            id="bucket-missing",
        ),
    ],
)
def test_an_unusable_gcs_run_directory_is_refused_before_training(
    tiny_warehouse: TinyWarehouse,
    storage: EmulatedStorage,
    tmp_path: Path,
    model_dir: str,
    fragments: list[str],
) -> None:
    """A prefix holding objects (even without run_metadata.json) is never overwritten, and a
    missing bucket is found before the training rather than at the first upload."""
    storage.fs.pipe_file(f"{BUCKET}/models/leftover/model.txt", b"an earlier attempt\n")

    result = run_trainer(
        *vertex_args(tiny_warehouse.duckdb_path, manifest_of(tiny_warehouse)),
        cwd=tmp_path,
        env=vertex_env(tmp_path, storage, model_dir),
    )

    assert_exit_2(result, *fragments)
    assert "training on" not in logged(result)
    assert storage.fs.cat(f"{BUCKET}/models/leftover/model.txt") == b"an earlier attempt\n"
