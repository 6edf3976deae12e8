"""Run directories as the gate reads them: a local path is recorded absolute, so the registry's
entries resolve from any working directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recflow.promotion.run_dirs import read_run
from trainer.feature_spec import FeatureSpec

SPEC = FeatureSpec(
    keys=("user_id", "item_id", "snapshot_date"),
    group=("user_id", "snapshot_date"),
    label="label",
    split="split",
    features=("f",),
    categorical=(),
    source_ranks={},
    popularity_rank="popularity_rank",
)


def finished_run(directory: Path) -> Path:
    directory.mkdir(parents=True)
    (directory / "run_metadata.json").write_text(json.dumps({"run_id": directory.name}))
    (directory / "metrics.json").write_text(json.dumps({"metrics": {}}))
    (directory / "feature_spec.json").write_text(json.dumps(SPEC.to_json()))
    (directory / "model.txt").write_text("tree\n")
    return directory


def test_a_relative_run_directory_is_read_as_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = finished_run(tmp_path / "runs" / "run-1")
    monkeypatch.chdir(tmp_path)

    assert read_run("runs/run-1").uri == str(run.resolve())
    assert read_run("runs/run-1/").uri == str(run.resolve())
    assert read_run(f"file://{run}").uri == str(run.resolve())
    assert read_run("runs/run-1").metadata == {"run_id": "run-1"}
