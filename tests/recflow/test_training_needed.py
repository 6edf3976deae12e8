"""`recflow training-needed`: the decision on its own, and real `dbt ls --select state:modified+`
runs on a copy of the project against the tiny build's manifest as the production state."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from conftest import REPO_ROOT, Isolation, TinySample, TinyWarehouse, run_recflow_cli

from recflow.pipeline.settings import Settings
from recflow.promotion.training_needed import TRAINER_MODELS, needs_training, training_needed


def test_decision_logic() -> None:
    assert needs_training([], state_has_manifest=False)  # nothing proves the model current
    assert not needs_training([], state_has_manifest=True)
    assert not needs_training(
        ["recommendations", "stg_ml__batch_recommendations"], state_has_manifest=True
    )
    assert needs_training(
        ["int_item_pairs_covisited", "int_candidates_generated", "training_examples"],
        state_has_manifest=True,
    )
    assert {
        "training_examples",
        "scoring_candidates",
        "label_window_positives",
        "item_features",
        "known_users",
        "user_item_history",
    } == TRAINER_MODELS


def test_no_production_manifest_prints_true(tiny_sample: TinySample, tmp_path: Path) -> None:
    isolation = Isolation.under(tmp_path / "work", tiny_sample.parquet_dir)
    result = run_recflow_cli(isolation, "training-needed", "--state", str(tmp_path / "empty"))
    assert result.returncode == 0, result.output
    assert result.output.strip().splitlines()[-1] == "true"


@pytest.mark.dbt
def test_dbt_ls_against_the_production_manifest(
    tiny_warehouse: TinyWarehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "prod_state"
    state.mkdir()
    shutil.copy(tiny_warehouse.isolation.target_path / "manifest.json", state / "manifest.json")
    project = tmp_path / "checkout"
    shutil.copytree(
        REPO_ROOT / "dbt", project / "dbt", ignore=shutil.ignore_patterns("target", "logs")
    )
    shutil.copytree(REPO_ROOT / "analyses", project / "analyses")
    for name, value in tiny_warehouse.isolation.env_vars().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DBT_PROFILES_DIR", str(project / "dbt"))
    settings = dataclasses.replace(
        Settings.from_env(data_dir=tiny_warehouse.data_dir),
        dbt_project_dir=project / "dbt",
        dbt_target_path=tmp_path / "target",
    )
    assert not training_needed(settings, state)  # the same project: nothing changed

    # A change only the serving models see does not call for training...
    serving = project / "dbt" / "models" / "marts" / "serving" / "recommendations.sql"
    serving.write_text(serving.read_text() + "\n-- a comment is a change of the model's SQL\n")
    assert not training_needed(settings, state)

    # ...a change upstream of the training tables does.
    upstream = project / "dbt" / "models" / "intermediate" / "interactions"
    covisited = upstream / "int_item_pairs_covisited.sql"
    covisited.write_text(covisited.read_text() + "\n-- changed\n")
    assert training_needed(settings, state)
