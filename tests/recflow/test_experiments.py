"""Experiment logs: the local JSON-lines file and Vertex AI Experiments through the real
aiplatform SDK (REST) against the stand-in in vertex_standin.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.oauth2.credentials import Credentials
from vertex_standin import VertexModelRegistry, vertex_model_registry

from recflow.promotion.experiments import (
    LocalExperimentLog,
    RunRecord,
    VertexExperimentLog,
    VertexExperimentSettings,
    compare_table,
    experiment_run_name,
    open_experiment_log,
)
from recflow.promotion.registry import RegistrySettingError

RUN_ID = "20261201T233920096397Z"  # what the trainer names a run: upper case, not an id


def record(run_id: str = RUN_ID, outcome: str = "kept_champion", ndcg: float = 0.2) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        run_dir=f"gs://recflow-artifacts/training/runs/{run_id.lower()}/model",
        git_commit="0123456789abcdef0123456789abcdef01234567",
        dbt_manifest_sha256="f" * 64,
        outcome=outcome,
        registered_version="2",
        params={"lightgbm/learning_rate": 0.05, "git_commit": "0123456", "top_k": 20},
        metrics={
            "warm_users/model/ndcg@10": ndcg,
            "warm_users/model/ndcg@10/low": ndcg - 0.01,
            "warm_users/model/ndcg@10/high": ndcg + 0.01,
            "gate/paired_difference/high": -0.02,
        },
    )


@pytest.fixture
def standin() -> Iterator[VertexModelRegistry]:
    with vertex_model_registry() as state:
        yield state


def vertex_log(standin: VertexModelRegistry) -> VertexExperimentLog:
    return VertexExperimentLog(
        VertexExperimentSettings(project="recflow-prod", region="europe-west4"),
        credentials=Credentials(token="standin-token"),
        api_endpoint=standin.url,
        api_transport="rest",
    )


def test_vertex_experiments_get_one_run_per_gated_run(standin: VertexModelRegistry) -> None:
    experiments = vertex_log(standin)
    where = experiments.log_run(record())
    experiments.log_run(record("20261208T000000000000Z", "promoted", 0.25))

    name = experiment_run_name("recflow-ranker", RUN_ID)
    assert name == "20261201t233920096397z"
    assert where.endswith(f"/experiments/recflow-ranker/runs/{name}")
    runs = standin.experiment_runs("recflow-ranker")
    assert sorted(runs) == [name, "20261208t000000000000z"]
    logged = runs[name]
    assert logged["_state"] == "COMPLETE"
    assert logged["_params"]["git_commit"] == "0123456"
    assert logged["_params"]["lightgbm/learning_rate"] == 0.05
    assert logged["_metrics"]["warm_users/model/ndcg@10/high"] == pytest.approx(0.21)
    # The experiment is a metadata context of its schema; each run, a child context.
    assert standin.contexts["recflow-ranker"].resource["schemaTitle"] == "system.Experiment"
    assert standin.contexts[f"recflow-ranker-{name}"].resource["schemaTitle"] == (
        "system.ExperimentRun"
    )


def test_gating_a_run_again_updates_its_experiment_run(standin: VertexModelRegistry) -> None:
    experiments = vertex_log(standin)
    experiments.log_run(record(ndcg=0.2))
    experiments.log_run(record(ndcg=0.3))
    (logged,) = standin.experiment_runs("recflow-ranker").values()
    assert logged["_metrics"]["warm_users/model/ndcg@10"] == 0.3


def test_run_names_fit_the_context_id_rules() -> None:
    long = experiment_run_name("e" * 100, "Run_ID.with spaces" * 5)
    assert len("e" * 100) + 1 + len(long) <= 128
    assert long == long.lower() and set(long) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    assert not long.endswith("-")


def test_local_log_appends_one_line_per_run_and_compares(tmp_path: Path) -> None:
    log = LocalExperimentLog(tmp_path / "runs" / "experiments.jsonl")
    log.log_run(record("run-1", "promoted", 0.2))
    log.log_run(record("run-2", "kept_champion", 0.1))
    with log.path.open("a") as handle:
        handle.write('{"run_id": "cut sho')  # a crash mid-line
    runs = log.runs()
    assert [(r["run_id"], r["outcome"]) for r in runs] == [
        ("run-1", "promoted"),
        ("run-2", "kept_champion"),
    ]
    assert all("logged_at" in run for run in runs)
    assert json.loads(log.path.read_text().splitlines()[0])["params"]["top_k"] == 20
    table = compare_table(runs, ["warm_users/model/ndcg@10"])
    assert table.splitlines()[1].split()[:4] == ["run-1", "promoted", "2", "01234567"]
    assert "0.2000 [0.1900, 0.2100]" in table


def test_the_log_follows_the_registry_setting(tmp_path: Path) -> None:
    local = open_experiment_log(f"local:{tmp_path}/registry.json", {})
    assert isinstance(local, LocalExperimentLog)
    assert local.path == tmp_path / "experiments.jsonl"
    env = {"RECFLOW_GCP_PROJECT": "p", "RECFLOW_GCP_REGION": "europe-west4"}
    vertex = open_experiment_log("vertex", {**env, "RECFLOW_VERTEX_MODEL_ID": "ranker"})
    assert isinstance(vertex, VertexExperimentLog) and vertex.settings.experiment == "ranker"
    with pytest.raises(RegistrySettingError, match="RECFLOW_VERTEX_EXPERIMENT"):
        open_experiment_log("vertex", {**env, "RECFLOW_VERTEX_EXPERIMENT": "Bad_Name"})
