"""The gate on real trainer runs over the tiny sample's dbt build, and the local
continuous-training dry run (`recflow ct`) twice on the demo sample: a first model is promoted, a
deliberately worse one is refused and the champion keeps serving."""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gcsfs
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import (
    Isolation,
    TinySample,
    TinyWarehouse,
    query,
    run_command,
    run_recflow_cli,
    scalar,
)
from gcp_storage_emulator.server import create_server

from recflow.promotion import gate
from recflow.promotion.experiments import LocalExperimentLog
from recflow.promotion.gating import GateInputError, GateRequest, run_gate
from recflow.promotion.registry import CHAMPION, LocalRegistry
from recflow.samples.events import DEFAULT_SCALE, SCALES, generate, write_data_dir
from trainer import pipeline
from trainer.feature_spec import EXAMPLES_MODEL, SCORING_MODEL
from trainer.ranker import RankerParams

pytestmark = pytest.mark.dbt

COMMIT = "0123456789abcdef0123456789abcdef01234567"
FAST = RankerParams(num_boost_round=30, num_threads=1, log_every=1000)
TABLE = "ml.batch_recommendations"
# The dbt project drops this column in the "feature removed" scenario.
REMOVED_FEATURE = "item_users_1d"


@dataclass(frozen=True)
class Workspace:
    """A private copy of the tiny warehouse and two runs trained on it (none written back)."""

    root: Path
    warehouse: Path
    manifest: Path
    run_a: Path
    run_b: Path

    @property
    def uri(self) -> str:
        return f"duckdb://{self.warehouse}"


def train(warehouse: Path, manifest: Path, run_dir: Path, **overrides: Any) -> Path:
    pipeline.run(
        pipeline.TrainerConfig(
            warehouse_uri=f"duckdb://{warehouse}",
            manifest_path=str(manifest),
            run_dir=str(run_dir),
            run_id=run_dir.name,
            recommendations_table=None,
            params=overrides.pop("params", FAST),
            run_context={"git_commit": COMMIT},
            **overrides,
        )
    )
    return run_dir


def served_rows(warehouse: Path) -> int | None:
    """Rows of the served table, None while nothing has been served."""
    schema, table = TABLE.split(".")
    exists = scalar(
        warehouse,
        "select count(*) from information_schema.tables "
        f"where table_schema = '{schema}' and table_name = '{table}'",
    )
    return scalar(warehouse, f"select count(*) from {TABLE}") if exists else None


def primary(run_dir: Path) -> float:
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    return float(metrics["warm_users"]["model"]["ndcg@10"])


def warm_users(run_dir: Path) -> int:
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    return int(metrics["warm_users"]["model"]["users_evaluated"])


def served_versions(warehouse: Path) -> set[str]:
    return {row[0] for row in query(warehouse, f"select distinct model_version from {TABLE}")}


@pytest.fixture(scope="module")
def workspace(tiny_warehouse: TinyWarehouse, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("gate")
    warehouse = Path(shutil.copyfile(tiny_warehouse.duckdb_path, root / "warehouse.duckdb"))
    manifest = tiny_warehouse.isolation.target_path / "manifest.json"
    run_a = train(warehouse, manifest, root / "runs" / "run-a")
    run_b = train(
        warehouse,
        manifest,
        root / "runs" / "run-b",
        params=RankerParams(num_boost_round=30, num_threads=1, log_every=1000, seed=7),
    )
    return Workspace(root, warehouse, manifest, run_a, run_b)


def gate_cli(ws: Workspace, isolation: Isolation, run_dir: Path, registry: Path, *extra: str):
    return run_recflow_cli(
        isolation,
        "gate",
        "--run-dir",
        str(run_dir),
        "--warehouse-uri",
        ws.uri,
        "--registry",
        f"local:{registry}",
        *extra,
    )


def test_gate_promotes_the_first_run_and_rescoring_reproduces_its_metrics(
    workspace: Workspace, tiny_sample: TinySample, tmp_path: Path
) -> None:
    ws = workspace
    isolation = Isolation.under(tmp_path / "cli", tiny_sample.parquet_dir)
    registry_path = tmp_path / "registry.json"
    decision_out = tmp_path / "out" / "decision.json"

    first = gate_cli(ws, isolation, ws.run_a, registry_path, "--decision-out", str(decision_out))
    assert first.returncode == 0, first.output
    assert "gate decision: PROMOTED" in first.output
    decision = json.loads(decision_out.read_text())
    assert decision == json.loads((ws.run_a / "decision.json").read_text())
    assert decision["outcome"] == "promoted" and decision["registered_version"] == "1"
    assert decision["champion"] is None
    # Re-scoring the challenger from its saved model gives the trainer's own numbers.
    assert decision["challenger"]["primary_metric_value"] == pytest.approx(primary(ws.run_a))
    assert served_versions(ws.warehouse) == {"run-a"}

    registry = LocalRegistry(registry_path)
    second = run_gate(
        GateRequest(run_dir=str(ws.run_b), warehouse_uri=ws.uri, policy=gate.GatePolicy()),
        registry,
    )
    champion = second["champion"]
    assert champion["version"] == "1" and champion["scoring"] == "rescored"
    # The champion's saved model, scored again on the same tables, reproduces its metrics.json
    # (the gate leaves out the history baselines: it compares two models).
    assert champion["primary_metric_value"] == pytest.approx(primary(ws.run_a), abs=1e-12)
    recorded = json.loads((ws.run_a / "metrics.json").read_text())["metrics"]
    rescored_rankers = {name for by_ranker in champion["metrics"].values() for name in by_ranker}
    assert "model" in rescored_rankers
    assert not any(name.startswith("baseline:") for name in rescored_rankers)
    assert champion["metrics"] == {
        segment: {name: by_ranker[name] for name in champion["metrics"][segment]}
        for segment, by_ranker in recorded.items()
    }
    # The paired interval over the same warm users decides: refused only if it lies wholly
    # below -tolerance. Its mean is the difference of the two re-scored values.
    paired = second["paired_difference"]
    assert second["comparison"] == "paired_bootstrap"
    assert paired["mean"] == pytest.approx(primary(ws.run_b) - primary(ws.run_a), abs=1e-12)
    assert paired["low"] <= paired["mean"] <= paired["high"]
    assert paired["users"] == warm_users(ws.run_a)
    expected = "kept_champion" if paired["high"] < -gate.DEFAULT_TOLERANCE else "promoted"
    assert second["outcome"] == expected
    history = [entry["decision"]["outcome"] for entry in registry.history() if "decision" in entry]
    assert history == ["promoted", expected]


def test_a_champion_whose_features_are_gone_is_compared_on_its_recorded_metrics(
    workspace: Workspace, tmp_path: Path
) -> None:
    """The dbt project drops a column the champion uses: the champion cannot be re-scored, and
    the decision says so and uses its recorded metrics instead."""
    ws = workspace
    warehouse = Path(shutil.copyfile(ws.warehouse, tmp_path / "warehouse.duckdb"))
    import duckdb

    with duckdb.connect(str(warehouse)) as connection:
        for table in (EXAMPLES_MODEL, SCORING_MODEL):
            connection.execute(f"alter table main.{table} drop column {REMOVED_FEATURE}")
    manifest = json.loads(ws.manifest.read_text())
    # The feature's one declaration (scoring_candidates holds training_examples' columns).
    del manifest["nodes"][f"model.recflow.{EXAMPLES_MODEL}"]["columns"][REMOVED_FEATURE]
    manifest_path = tmp_path / "manifest.json"
    manifest_path.write_text(json.dumps(manifest))
    challenger = train(warehouse, manifest_path, tmp_path / "runs" / "run-c")

    registry = LocalRegistry(tmp_path / "registry.json")
    registry.register_champion(
        _registration(ws.run_a)  # the champion trained before the column was dropped
    )
    decision = run_gate(
        GateRequest(
            run_dir=str(challenger),
            warehouse_uri=f"duckdb://{warehouse}",
            policy=gate.GatePolicy(),
            recommendations_table=None,
        ),
        registry,
    )
    champion = decision["champion"]
    assert champion["scoring"] == "recorded"
    assert REMOVED_FEATURE in champion["note"]
    assert champion["primary_metric_value"] == pytest.approx(primary(ws.run_a))
    assert "RECORDED metrics" in " ".join(decision["reasons"])
    # Scored on different windows, the two share no users to pair: the decision says so.
    assert decision["comparison"] == "recorded_point_values"
    assert decision["paired_difference"] is None
    assert "no paired interval" in " ".join(decision["reasons"])


def test_an_identical_challenger_is_promoted_with_a_zero_interval(
    workspace: Workspace, tmp_path: Path
) -> None:
    """The champion's own run, copied: every user scores the same on both sides, so the
    paired interval is exactly [0, 0], which does not lie below -tolerance."""
    ws = workspace
    twin = Path(shutil.copytree(ws.run_a, tmp_path / "run-a-twin"))
    (twin / "decision.json").unlink(missing_ok=True)
    registry = LocalRegistry(tmp_path / "registry.json")
    registry.register_champion(_registration(ws.run_a))
    decision = run_gate(
        GateRequest(
            run_dir=str(twin),
            warehouse_uri=ws.uri,
            policy=gate.GatePolicy(),
            recommendations_table=None,
        ),
        registry,
    )
    assert decision["outcome"] == "promoted"
    paired = decision["paired_difference"]
    assert (paired["mean"], paired["low"], paired["high"]) == (0.0, 0.0, 0.0)
    assert paired["users"] == warm_users(ws.run_a) > 1
    assert json.loads((twin / "decision.json").read_text())["paired_difference"] == paired


def _registration(run_dir: Path) -> Any:
    from recflow.promotion.registry import Registration

    return Registration(
        run_dir=str(run_dir),
        run_id=run_dir.name,
        git_commit=COMMIT,
        dbt_manifest_sha256="0" * 64,
        primary_metric="warm_users/model/ndcg@10",
        primary_metric_value=primary(run_dir),
        decision={},
    )


def test_broken_recommendations_are_rejected_and_nothing_changes(
    workspace: Workspace, tiny_sample: TinySample, tmp_path: Path
) -> None:
    ws = workspace
    broken = Path(shutil.copytree(ws.run_b, tmp_path / "run-broken"))
    (broken / "decision.json").unlink(missing_ok=True)
    rows = pq.read_table(broken / "batch_recommendations.parquet").to_pandas()
    first_user = rows["user_id"].iloc[0]
    rows.loc[rows["user_id"] == first_user, "item_id"] = rows["item_id"].iloc[0]  # repeats
    pq.write_table(
        pa.Table.from_pandas(rows, preserve_index=False), broken / "batch_recommendations.parquet"
    )
    registry_path = tmp_path / "registry.json"
    LocalRegistry(registry_path).register_champion(_registration(ws.run_a))
    # Whatever serves now (nothing, when this test runs first) still serves afterwards.
    before = served_rows(ws.warehouse)

    isolation = Isolation.under(tmp_path / "cli", tiny_sample.parquet_dir)
    result = gate_cli(ws, isolation, broken, registry_path)
    assert result.returncode == 1, result.output
    assert "REJECTED_BY_OUTPUT_CHECKS" in result.output
    assert "repeated (user, item)" in result.output
    assert LocalRegistry(registry_path).champion().version == "1"  # type: ignore[union-attr]
    assert served_rows(ws.warehouse) == before
    decision = json.loads((broken / "decision.json").read_text())
    assert decision["outcome"] == "rejected_by_output_checks"


def test_the_job_entry_point_registers_and_logs_every_run_champion_or_not(
    workspace: Workspace, tiny_sample: TinySample, tmp_path: Path
) -> None:
    """`python -m recflow.promotion.command gate`, what the Vertex AI gate job runs: a promoted
    run and a refused one are both registry versions with their evaluation and both experiment
    runs with params, metrics and intervals; `recflow runs` compares them."""
    ws = workspace
    isolation = Isolation.under(tmp_path / "cli", tiny_sample.parquet_dir)
    registry_path = tmp_path / "registry.json"
    broken = Path(shutil.copytree(ws.run_b, tmp_path / "run-broken"))
    (broken / "decision.json").unlink(missing_ok=True)
    rows = pq.read_table(broken / "batch_recommendations.parquet").to_pandas()
    rows = rows[rows["user_id"] != rows["user_id"].iloc[0]]  # a known user goes unserved
    pq.write_table(
        pa.Table.from_pandas(rows, preserve_index=False), broken / "batch_recommendations.parquet"
    )

    def gate_module(run_dir: Path) -> Any:
        return run_command(
            [
                sys.executable,
                "-m",
                "recflow.promotion.command",
                "gate",
                "--run-dir",
                str(run_dir),
                "--warehouse-uri",
                ws.uri,
                "--registry",
                f"local:{registry_path}",
                "--recommendations-table",
                "",
            ],
            isolation,
        )

    first = gate_module(ws.run_a)
    assert first.returncode == 0, first.output
    assert "registered as version 1; `champion` now points at it" in first.output
    refused = gate_module(broken)
    assert refused.returncode == 1, refused.output
    assert "registered as version 2, not champion" in refused.output

    registry = LocalRegistry(registry_path)
    assert registry.champion().version == "1"  # type: ignore[union-attr]
    assert [v.aliases for v in registry.versions()] == [(CHAMPION,), ()]
    assert registry.evaluation("2")["outcome"] == "rejected_by_output_checks"
    runs = LocalExperimentLog(tmp_path / "experiments.jsonl").runs()
    assert [(r["run_id"], r["outcome"], r["registered_version"]) for r in runs] == [
        ("run-a", "promoted", "1"),
        ("run-b", "rejected_by_output_checks", "2"),
    ]
    first_run = runs[0]
    assert first_run["git_commit"] == COMMIT
    assert (
        first_run["dbt_manifest_sha256"]
        == json.loads((ws.run_a / "run_metadata.json").read_text())["dbt_manifest_sha256"]
    )
    assert first_run["params"]["lightgbm/num_boost_round"] == FAST.num_boost_round
    metrics = first_run["metrics"]
    ndcg = metrics["warm_users/model/ndcg@10"]
    assert ndcg == pytest.approx(primary(ws.run_a))
    assert (
        metrics["warm_users/model/ndcg@10/low"] <= ndcg <= metrics["warm_users/model/ndcg@10/high"]
    )
    assert runs[1]["metrics"]["gate/champion_primary_metric_value"] == pytest.approx(ndcg)

    compared = run_recflow_cli(isolation, "runs", "--registry", str(registry_path))
    assert compared.returncode == 0, compared.output
    lines = compared.output.strip().splitlines()
    assert lines[-2].startswith("run-a") and "promoted" in lines[-2]
    assert f"{ndcg:.4f} [" in lines[-2]
    assert lines[-1].startswith("run-b") and "rejected_by_output_checks" in lines[-1]


def test_gate_bad_input_exits_2(
    workspace: Workspace, tiny_sample: TinySample, tmp_path: Path
) -> None:
    isolation = Isolation.under(tmp_path / "cli", tiny_sample.parquet_dir)
    missing = tmp_path / "no-such-run"
    result = gate_cli(workspace, isolation, missing, tmp_path / "registry.json")
    assert result.returncode == 2, result.output
    assert f"recflow gate: {missing} is not a finished trainer run" in result.output
    assert "Traceback" not in result.output
    bad_registry = run_recflow_cli(
        isolation,
        "gate",
        "--run-dir",
        str(workspace.run_a),
        "--warehouse-uri",
        workspace.uri,
        "--registry",
        "s3://nowhere",
    )
    assert bad_registry.returncode == 2 and "local:PATH" in bad_registry.output
    bad_tolerance = gate_cli(
        workspace, isolation, workspace.run_a, tmp_path / "r.json", "--tolerance", "-1"
    )
    assert bad_tolerance.returncode == 2 and "RECFLOW_GATE_TOLERANCE" in bad_tolerance.output


def test_gate_reads_and_writes_a_run_directory_on_cloud_storage(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Vertex AI run lands on gs://: the gate reads it there (through gcsfs, against
    gcp-storage-emulator) and writes decision.json beside it; an unfinished run is refused."""
    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="recflow-artifacts")
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    try:
        fs = gcsfs.GCSFileSystem(token="anon", skip_instance_cache=True)
        run_uri = "gs://recflow-artifacts/training/runs/run-a/model"
        for artifact in workspace.run_a.iterdir():
            if artifact.name != "decision.json":
                fs.put_file(str(artifact), f"{run_uri}/{artifact.name}")
        fs.put_file(
            str(workspace.run_a / "model.txt"), "gs://recflow-artifacts/unfinished/model.txt"
        )
        registry = LocalRegistry(tmp_path / "registry.json")
        request = GateRequest(
            run_dir=run_uri,
            warehouse_uri=workspace.uri,
            policy=gate.GatePolicy(),
            recommendations_table=None,
        )
        decision = run_gate(request, registry)
        assert decision["outcome"] == "promoted"
        assert registry.champion().run_dir == run_uri  # type: ignore[union-attr]
        fs.invalidate_cache()
        assert json.loads(fs.cat_file(f"{run_uri}/decision.json")) == decision
        unfinished = dataclasses.replace(request, run_dir="gs://recflow-artifacts/unfinished")
        with pytest.raises(GateInputError, match=r"no run_metadata\.json"):
            run_gate(unfinished, registry)
    finally:
        server.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- recflow ct, twice ------------------------------------------------------------------------


def per_user_features(manifest: Path) -> tuple[list[str], list[str]]:
    """(kept, dropped): only features constant within a user's candidate list are kept."""
    spec, _ = pipeline.load_feature_spec(manifest)
    kept = [f for f in spec.features if f.startswith("user_") and not f.startswith("user_item_")]
    return kept, [f for f in spec.features if f not in kept]


@pytest.mark.slow
def test_ct_promotes_a_first_model_then_refuses_a_worse_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worse challenger is worse by construction, not by luck: it keeps only features that
    are the same for every candidate of a user, so it cannot order a user's candidates at all.

    On the demo sample, as `make ct` runs: the gate refuses only what is worse beyond the noise,
    and the tiny sample's 170 warm users leave a paired interval about +-0.025 NDCG@10 wide,
    wider than this challenger's loss there (about -0.02); the demo's ~1,750 warm users do not.
    """
    monkeypatch.setenv("GIT_COMMIT", COMMIT)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    data_dir = tmp_path / "demo_parquet"
    write_data_dir(generate(SCALES[DEFAULT_SCALE]).tables, data_dir, file_format="parquet")
    isolation = Isolation.under(tmp_path / "ct", data_dir)
    registry_path = tmp_path / "registry.json"
    runs = tmp_path / "runs"
    common = (
        "--data-dir",
        str(data_dir),
        "--registry",
        str(registry_path),
        "--runs-dir",
        str(runs),
    )

    first = run_recflow_cli(isolation, "ct", *common)
    assert first.returncode == 0, first.output
    assert "gate decision: PROMOTED" in first.output
    (run_1,) = sorted(runs.iterdir())
    registry = LocalRegistry(registry_path)
    assert registry.champion().version == "1"  # type: ignore[union-attr]
    assert served_versions(isolation.duckdb_path) == {run_1.name}
    # The serving models were built and tested on the promoted recommendations.
    assert (
        scalar(
            isolation.duckdb_path, "select count(distinct model_version) from main.recommendations"
        )
        == 1
    )

    kept, dropped = per_user_features(isolation.target_path / "manifest.json")
    assert kept and dropped
    second = run_recflow_cli(isolation, "ct", *common, *(f"--drop-feature={f}" for f in dropped))
    assert second.returncode == 0, second.output
    assert "gate decision: KEPT_CHAMPION" in second.output
    run_2 = next(run for run in runs.iterdir() if run != run_1)
    decision = json.loads((run_2 / "decision.json").read_text())
    assert decision["outcome"] == "kept_champion"
    assert decision["champion"]["version"] == "1" and decision["champion"]["scoring"] == "rescored"
    # Worse beyond the noise: the whole paired interval over the warm users lies below
    # -tolerance, and the terminal shows it.
    paired = decision["paired_difference"]
    assert paired["high"] < -gate.DEFAULT_TOLERANCE
    assert paired["mean"] == pytest.approx(
        decision["challenger"]["primary_metric_value"]
        - decision["champion"]["primary_metric_value"]
    )
    assert "worse beyond the noise" in second.output
    assert f"[{paired['low']:+.4f}, {paired['high']:+.4f}]" in second.output
    assert json.loads((run_2 / "run_metadata.json").read_text())["excluded_features"] == dropped
    assert decision["excluded_features"] == dropped

    # The champion alias stays on version 1 and its recommendations still serve; the refused
    # challenger is version 2, without an alias, and both runs are in the experiment log.
    assert registry.champion().version == "1"  # type: ignore[union-attr]
    assert [(v.version, v.aliases) for v in registry.versions()] == [
        ("1", ("champion",)),
        ("2", ()),
    ]
    logged = LocalExperimentLog(tmp_path / "experiments.jsonl").runs()
    assert [(r["run_id"], r["outcome"]) for r in logged] == [
        (run_1.name, "promoted"),
        (run_2.name, "kept_champion"),
    ]
    assert served_versions(isolation.duckdb_path) == {run_1.name}
    served = pd.DataFrame(query(isolation.duckdb_path, f"select user_id, item_id from {TABLE}"))
    promoted = pq.read_table(run_1 / "batch_recommendations.parquet").to_pandas()
    assert len(served) == len(promoted)
    assert CHAMPION in registry.champion().aliases  # type: ignore[union-attr]
