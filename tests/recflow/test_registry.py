"""The registry's two implementations behave alike: versions, a `champion` alias that moves, a
rollback. The local one on a JSON file; the Vertex AI one through the real aiplatform SDK (REST
transport) against the stand-in in vertex_standin.py."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.oauth2.credentials import Credentials
from vertex_standin import VertexModelRegistry, vertex_model_registry

from recflow.promotion.registry import (
    CHAMPION,
    LocalRegistry,
    ModelRegistry,
    Registration,
    RegistryError,
    RegistrySettingError,
    VertexRegistry,
    VertexRegistrySettings,
    open_registry,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"
MANIFEST_SHA = "f" * 64
TOKEN = "standin-access-token"
SETTINGS = VertexRegistrySettings(
    project="recflow-prod",
    region="europe-west4",
    model_id="recflow-ranker",
)


INTERVALS = {"warm_users": {"model": {"ndcg@10": [0.05, 0.15]}}}


def refused_registration(run_dir: str, ndcg: float, run_id: str) -> Registration:
    """A challenger the gate kept out: worse than champion version 1 beyond the noise."""
    return dataclasses.replace(
        registration(run_dir, ndcg, run_id),
        decision={
            "outcome": "kept_champion",
            "champion": {"version": "1", "primary_metric_value": 0.3, "scoring": "rescored"},
            "challenger": {"metrics": {"warm_users": {"model": {"ndcg@10": ndcg}}}},
            "paired_difference": {"mean": -0.2, "low": -0.3, "high": -0.1, "users": 400},
        },
        intervals=INTERVALS,
    )


def registration(run_dir: str, ndcg: float, run_id: str = "run-1") -> Registration:
    return Registration(
        run_dir=run_dir,
        run_id=run_id,
        git_commit=COMMIT,
        dbt_manifest_sha256=MANIFEST_SHA,
        primary_metric="warm_users/model/ndcg@10",
        primary_metric_value=ndcg,
        decision={"outcome": "promoted", "champion": None},
    )


@pytest.fixture
def standin() -> Iterator[VertexModelRegistry]:
    with vertex_model_registry() as state:
        yield state


@pytest.fixture
def vertex(standin: VertexModelRegistry) -> VertexRegistry:
    return VertexRegistry(
        SETTINGS,
        credentials=Credentials(token=TOKEN),
        api_endpoint=standin.url,
        api_transport="rest",
    )


def exercise(registry: ModelRegistry, run_root: str) -> None:
    """The same story on either registry: empty, first champion, second champion, rollback."""
    assert registry.champion() is None
    first = registry.register_champion(registration(f"{run_root}/run-1", 0.1234))
    assert first.version == "1"
    assert CHAMPION in first.aliases
    assert first.run_dir == f"{run_root}/run-1"
    assert first.labels == {
        "git_commit": COMMIT,
        "dbt_manifest_sha": MANIFEST_SHA[:63],
        "recflow_run_id": "run-1",
        "gate_outcome": "promoted",
        "ndcg_at_10": "0_1234",
    }
    second = registry.register_champion(registration(f"{run_root}/run-2", 0.2, "run-2"))
    assert second.version == "2"
    champion = registry.champion()
    assert champion is not None and champion.version == "2" and champion.run_dir.endswith("run-2")
    rolled_back = registry.set_champion("1")
    assert rolled_back.version == "1" and CHAMPION in rolled_back.aliases
    assert registry.champion().version == "1"  # type: ignore[union-attr]


def test_local_registry_versions_alias_and_history(tmp_path: Path) -> None:
    path = tmp_path / "registry" / "registry.json"
    registry = LocalRegistry(path)
    exercise(registry, str(tmp_path))
    registry.record_decision({"outcome": "kept_champion"})

    state = json.loads(path.read_text())
    assert state["aliases"] == {CHAMPION: "1"}
    assert [version["version"] for version in state["versions"]] == ["1", "2"]
    moves = [(e["from"], e["to"]) for e in state["history"] if e["event"] == "alias_moved"]
    assert moves == [(None, "1"), ("1", "2"), ("2", "1")]
    assert state["history"][-1]["decision"] == {"outcome": "kept_champion"}
    # Written by rename: no temporary file is left beside it.
    assert sorted(p.name for p in path.parent.iterdir()) == [".registry.json.lock", "registry.json"]
    with pytest.raises(RegistrySettingError, match="no version '7'"):
        registry.set_champion("7")


def _register_many(path: str, worker: int) -> None:
    registry = LocalRegistry(Path(path))
    for index in range(10):
        registry.register_champion(registration(f"/runs/w{worker}-{index}", 0.1, f"w{worker}"))


def test_local_registry_is_never_half_written_under_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_register_many, args=(str(path), n)) for n in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    state = json.loads(path.read_text())
    assert [v["version"] for v in state["versions"]] == [str(n) for n in range(1, 31)]
    assert len([e for e in state["history"] if e["event"] == "alias_moved"]) == 30


def test_a_corrupt_registry_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    path.write_text('{"versions": [')
    with pytest.raises(RegistryError, match=str(path)):
        LocalRegistry(path).champion()


def test_open_registry_parses_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = open_registry(f"local:{tmp_path}/r.json")
    assert isinstance(local, LocalRegistry) and local.path == tmp_path / "r.json"
    for bad in ("s3://bucket", "vertex:extra", "local-ish"):
        with pytest.raises(RegistrySettingError, match="local:PATH"):
            open_registry(bad)
    monkeypatch.delenv("RECFLOW_GCP_PROJECT", raising=False)
    monkeypatch.setenv("RECFLOW_GCP_REGION", "europe-west4")
    with pytest.raises(RegistrySettingError, match="RECFLOW_GCP_PROJECT"):
        open_registry("vertex")


def test_no_training_image_is_recorded_as_a_serving_container() -> None:
    env = {"RECFLOW_GCP_PROJECT": "p", "RECFLOW_GCP_REGION": "europe-west4"}
    training = {**env, "RECFLOW_TRAINING_IMAGE": "img:1"}
    assert VertexRegistrySettings.from_env(training).serving_image == ""
    served = {**training, "RECFLOW_VERTEX_SERVING_IMAGE": "serve:2", "RECFLOW_VERTEX_MODEL_ID": "m"}
    settings = VertexRegistrySettings.from_env(served)
    assert (settings.serving_image, settings.model_id) == ("serve:2", "m")


def test_local_registry_keeps_a_refused_challenger_with_its_evaluation(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path / "registry.json")
    registry.register_champion(registration(f"{tmp_path}/run-1", 0.3))
    refused = registry.register_challenger(refused_registration(f"{tmp_path}/run-2", 0.1, "run-2"))
    assert refused.version == "2" and refused.aliases == ()
    assert refused.labels["gate_outcome"] == "kept_champion"
    assert registry.champion().version == "1"  # type: ignore[union-attr]
    evaluation = registry.evaluation("2")
    assert evaluation["outcome"] == "kept_champion"
    assert evaluation["paired_difference"]["high"] == -0.1
    assert evaluation["intervals"] == INTERVALS
    assert evaluation["metrics"]["warm_users"]["model"]["ndcg@10"] == 0.1
    events = [e["event"] for e in json.loads((tmp_path / "registry.json").read_text())["history"]]
    assert events == ["registered", "alias_moved", "registered"]


# --- Vertex AI Model Registry through the SDK ------------------------------------------------


def test_vertex_registry_through_the_sdk(
    vertex: VertexRegistry, standin: VertexModelRegistry
) -> None:
    exercise(vertex, "gs://recflow-artifacts/training/runs")
    base = "/v1/projects/recflow-prod/locations/europe-west4"

    uploads = standin.sent("POST", f"{base}/models:upload")
    assert len(uploads) == 2
    first, second = (request.json() for request in uploads)
    # The first upload creates models/recflow-ranker, the second adds a version to it.
    assert first["modelId"] == "recflow-ranker" and "parentModel" not in first
    assert (
        second["parentModel"]
        == "projects/recflow-prod/locations/europe-west4/models/recflow-ranker"
    )
    assert "modelId" not in second
    model = second["model"]
    # Not the default version: only the `champion` alias says which version serves.
    assert model["versionAliases"] == ["champion"]
    # Served from the warehouse: no serving container, no training image posing as one, and
    # so (as the SDK requires) no artifactUri; the run directory is in the evaluation.
    assert "containerSpec" not in model and "artifactUri" not in model
    assert model["labels"]["ndcg_at_10"] == "0_2000"
    assert model["versionDescription"].startswith("promoted: warm_users/model/ndcg@10 0.2000")
    # Every version got its evaluation, metrics as numbers, the run directory in metadata.
    (imported,) = standin.evaluations[("recflow-ranker", "2")]
    assert imported["metrics"]["gate/primary_metric_value"] == 0.2
    assert imported["metadata"]["run_dir"] == "gs://recflow-artifacts/training/runs/run-2"

    # The champion is found through the alias; the rollback went through mergeVersionAliases.
    assert standin.sent("GET", f"{base}/models/recflow-ranker@champion")
    (merge,) = standin.sent("POST", f"{base}/models/recflow-ranker@1:mergeVersionAliases")
    assert merge.json() == {"versionAliases": ["champion"]}
    # The service makes a model's first version its default; no later upload asks to be one.
    aliases = standin.aliases("recflow-ranker")
    assert (sorted(aliases["1"]), aliases["2"]) == (["champion", "default"], [])
    # Every call carried the credentials' token.
    assert {r.headers.get("authorization") for r in standin.requests} == {f"Bearer {TOKEN}"}


def test_vertex_registry_keeps_a_refused_challenger_as_a_version_with_its_evaluation(
    vertex: VertexRegistry, standin: VertexModelRegistry
) -> None:
    runs = "gs://recflow-artifacts/training/runs"
    vertex.register_champion(registration(f"{runs}/run-1", 0.3))
    refused = vertex.register_challenger(refused_registration(f"{runs}/run-2", 0.1, "run-2"))
    assert refused.version == "2" and CHAMPION not in refused.aliases
    assert refused.run_dir == f"{runs}/run-2"
    assert vertex.champion().version == "1"  # type: ignore[union-attr]
    assert standin.aliases("recflow-ranker")["2"] == []

    evaluation = vertex.evaluation("2")
    assert evaluation["outcome"] == "kept_champion" and evaluation["champion_version"] == "1"
    assert evaluation["intervals"] == INTERVALS
    (imported,) = standin.evaluations[("recflow-ranker", "2")]
    metrics = imported["metrics"]
    # Metrics not only in labels: numbers, intervals and the paired difference, per version.
    assert metrics["warm_users/model/ndcg@10"] == 0.1
    assert (metrics["warm_users/model/ndcg@10/low"], metrics["warm_users/model/ndcg@10/high"]) == (
        0.05,
        0.15,
    )
    assert metrics["gate/paired_difference/high"] == -0.1
    assert metrics["gate/champion_primary_metric_value"] == 0.3
    # Onto version 2 itself (the SDK names it by project number once it has read it back).
    base = "/v1/projects/[^/]+/locations/europe-west4"
    assert standin.sent("POST", f"{base}/models/recflow-ranker@2/evaluations:import")


def test_a_vertex_version_without_a_run_directory_is_an_error(
    vertex: VertexRegistry, standin: VertexModelRegistry
) -> None:
    from google.cloud import aiplatform

    aiplatform.Model.upload(display_name="x", model_id="recflow-ranker", version_aliases=[CHAMPION])
    with pytest.raises(RegistryError, match="not registered by recflow"):
        vertex.champion()


def test_vertex_registry_refuses_a_local_run_dir(vertex: VertexRegistry, tmp_path: Path) -> None:
    with pytest.raises(RegistrySettingError, match="gs://"):
        vertex.register_champion(registration(str(tmp_path / "run-1"), 0.1))
