"""The trainer on the tiny sample's dbt build: deterministic training, honest evaluation that can
be recomputed from the run's artifacts, a complete run directory and warehouse table accepted by
the dbt serving tests, a feature added in SQL and YAML only, and a clear stop when the manifest
and the tables disagree."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import (
    RUN_ARTIFACTS,
    Isolation,
    TinyWarehouse,
    query,
    run_dbt_command,
    scalar,
)
from trainer_harness import (
    FAKE_GIT_COMMIT,
    TrainerResult,
    assert_clean_failure,
    copy_warehouse,
    duckdb_uri,
    execute,
    export_parquet,
    frame,
    manifest_of,
    partial_dirs,
    run_trainer,
    trainer_args,
)

from trainer import evaluation, pipeline, serving
from trainer.dataset import TEST
from trainer.evaluation import SEGMENTS
from trainer.feature_spec import (
    EXAMPLES_MODEL,
    HISTORY_MODEL,
    ITEM_FEATURES_MODEL,
    KNOWN_USERS_MODEL,
    POSITIVES_MODEL,
    SCORING_MODEL,
    FeatureSpec,
    manifest_hash,
)
from trainer.metrics import ranking_metrics
from trainer.ranker import RankerParams

pytestmark = pytest.mark.dbt

KS = (10, 20)
TOP_K = 20  # the trainer's default --top-k, equal to dbt's `recommendations_per_user`
TIMINGS = {
    "load_seconds",
    "train_seconds",
    "evaluate_seconds",
    "load_scoring_seconds",
    "recommend_seconds",
    "write_artifacts_seconds",
}
RANKERS = {
    "model",
    "source:covisitation",
    "source:itemknn",
    "source:popularity",
    "source:popularity_all",
    "source:category",
    "source:repeat",
    "global_popularity",
    "baseline:popularity_all",
    "baseline:popularity_7d",
    "baseline:popularity_30d",
    "baseline:global_popularity",
    "baseline:item_knn",
    "baseline:als",
}
# One thread in-process: LightGBM's OpenMP threads spin while they wait, which is ~20x slower
# when the CPU is shared. The subprocess runs below keep the default thread count.
FAST_PARAMS = RankerParams(num_boost_round=30, num_threads=1, log_every=1000)


@dataclass(frozen=True)
class Loaded:
    """The spec and the marts of the tiny build, read once through the notebook API."""

    spec: FeatureSpec
    manifest_sha: str
    tables: pipeline.FeatureTables


@dataclass(frozen=True)
class FinishedRun:
    """One `python -m trainer.task` run, end to end, on a private copy of the tiny warehouse."""

    warehouse: Path
    manifest: Path
    run_dir: Path
    result: TrainerResult

    def artifact_json(self, name: str) -> dict[str, Any]:
        return json.loads((self.run_dir / name).read_text())


@pytest.fixture(scope="module")
def loaded(tiny_warehouse: TinyWarehouse) -> Loaded:
    spec, manifest_sha = pipeline.load_feature_spec(manifest_of(tiny_warehouse))
    tables = pipeline.load_tables(duckdb_uri(tiny_warehouse.duckdb_path), spec)
    return Loaded(spec=spec, manifest_sha=manifest_sha, tables=tables)


@pytest.fixture(scope="module")
def booster(loaded: Loaded) -> lgb.Booster:
    """One fast in-process training, shared by the tests that only read the model."""
    return pipeline.train(loaded.tables, loaded.spec, FAST_PARAMS)


@pytest.fixture(scope="module")
def finished_run(
    tiny_warehouse: TinyWarehouse, tmp_path_factory: pytest.TempPathFactory
) -> FinishedRun:
    """The trainer as a user runs it, writing ml.batch_recommendations back to the copy."""
    work = tmp_path_factory.mktemp("trainer_e2e")
    warehouse = copy_warehouse(tiny_warehouse, work / "warehouse")
    run_dir = work / "runs" / "run-1"
    result = run_trainer(
        *trainer_args(
            duckdb_uri(warehouse),
            manifest_of(tiny_warehouse),
            run_dir,
            recommendations_table="ml.batch_recommendations",
        ),
        cwd=work,
    )
    assert result.returncode == 0, result.stderr
    return FinishedRun(warehouse, manifest_of(tiny_warehouse), run_dir, result)


# --- the notebook API -----------------------------------------------------------------------------


def test_training_is_deterministic(loaded: Loaded) -> None:
    """Same data and parameters give the same model byte for byte, the same evaluation and the
    same recommendations: a rerun reproduces a run."""
    first = pipeline.train(loaded.tables, loaded.spec, FAST_PARAMS)
    second = pipeline.train(loaded.tables, loaded.spec, FAST_PARAMS)

    assert first.model_to_string() == second.model_to_string()
    assert first.feature_name() == list(loaded.spec.features)
    first_eval = pipeline.evaluate_model(first, loaded.tables, loaded.spec, ks=KS)
    second_eval = pipeline.evaluate_model(second, loaded.tables, loaded.spec, ks=KS)
    assert first_eval.metrics == second_eval.metrics
    assert first_eval.candidate_recall == second_eval.candidate_recall
    pd.testing.assert_frame_equal(first_eval.test_recommendations, second_eval.test_recommendations)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert pipeline.recommend(
        first, loaded.tables, loaded.spec, k=TOP_K, model_version="v", generated_at=at
    ).equals(
        pipeline.recommend(
            second, loaded.tables, loaded.spec, k=TOP_K, model_version="v", generated_at=at
        )
    )


def test_evaluation_reports_every_ranker_per_segment_within_bounds(
    loaded: Loaded, booster: lgb.Booster
) -> None:
    """metrics[segment][ranker] holds recall/ndcg/map/precision/coverage at each K for the model
    and every baseline, all in [0, 1]; the candidate recall ceiling is in (0, 1]; warm users are
    a subset of all users. (recall@K may exceed the ceiling: fallback lists are not candidates.)
    """
    result = pipeline.evaluate_model(booster, loaded.tables, loaded.spec, ks=KS)

    assert set(result.metrics) == set(SEGMENTS) == set(result.candidate_recall)
    expected_keys = {
        f"{metric}@{k}" for k in KS for metric in ("recall", "ndcg", "map", "precision", "coverage")
    } | {"users_evaluated", "users_with_recommendations"}
    for segment, by_ranker in result.metrics.items():
        assert set(by_ranker) == RANKERS
        for ranker_name, values in by_ranker.items():
            assert set(values) == expected_keys, (segment, ranker_name)
            for key, value in values.items():
                assert math.isfinite(value)
                if key != "users_evaluated":
                    assert 0.0 <= value <= 1.0, (segment, ranker_name, key, value)
            assert values["users_with_recommendations"] == 1.0  # everyone gets a fallback
        assert 0.0 < result.candidate_recall[segment] <= 1.0
    warm, everyone = (result.metrics[s]["model"]["users_evaluated"] for s in SEGMENTS)
    assert 0 < warm <= everyone
    assert result.metrics["all_users"]["model"]["recall@20"] > 0.0

    lists = result.test_recommendations
    assert list(lists.columns) == ["user_id", "item_id", "rank", "is_fallback", "cutoff_date"]
    assert lists["cutoff_date"].nunique() == 2  # two test cutoffs, each served on its own
    assert not lists.duplicated(["user_id", "item_id", "cutoff_date"]).any()
    assert lists.groupby(["user_id", "cutoff_date"])["rank"].max().le(max(KS)).all()


def test_per_user_metrics_average_to_the_reported_ones_inside_their_intervals(
    loaded: Loaded, booster: lgb.Booster
) -> None:
    """Evaluation.per_user holds each ranker's per-user metrics with the warm flag; each
    segment's means are the reported metrics, and every interval contains its metric."""
    result = pipeline.evaluate_model(booster, loaded.tables, loaded.spec, ks=KS)

    assert set(result.per_user) == RANKERS
    assert set(result.intervals) == set(SEGMENTS)
    for ranker_name, per_user in result.per_user.items():
        assert per_user.index.is_unique and per_user["is_warm_user"].dtype == bool
        for segment in SEGMENTS:
            rows = evaluation.in_segment(per_user, segment)
            reported = result.metrics[segment][ranker_name]
            assert len(rows) == reported["users_evaluated"]
            bounds = result.intervals[segment][ranker_name]
            assert set(bounds) == {
                f"{metric}@{k}" for k in KS for metric in ("recall", "ndcg", "map", "precision")
            }
            for metric, (low, high) in bounds.items():
                mean = rows[metric].mean()
                assert mean == pytest.approx(reported[metric], rel=1e-12, abs=1e-15)
                assert low <= reported[metric] <= high, (segment, ranker_name, metric)
    model = result.per_user["model"]
    low, high = result.intervals["warm_users"]["model"]["ndcg@10"]
    assert 0 <= low < high  # the tiny sample has enough warm users for a real interval
    assert model["is_warm_user"].sum() == result.metrics["warm_users"]["model"]["users_evaluated"]


def test_recommend_gives_each_scored_user_ranks_one_to_k(
    loaded: Loaded, booster: lgb.Booster
) -> None:
    """Batch recommendations: every known user, K distinct items ranked 1..K; a user with
    candidates gets their best-scored ones (scores non-increasing with rank), every other known
    user the popularity fallback with a null score."""
    recommendations = pipeline.recommend(
        booster, loaded.tables, loaded.spec, k=TOP_K, model_version="test"
    ).to_pandas()

    assert set(recommendations["user_id"]) == set(loaded.tables.known_users)
    assert not recommendations.duplicated(["user_id", "item_id"]).any()
    scored_users = set(loaded.tables.scoring["user_id"])
    fallback = serving.fallback_items(
        loaded.tables.item_features[
            loaded.tables.item_features["cutoff_date"] == loaded.tables.scoring_cutoff
        ],
        loaded.spec.popularity_rank,
        k=TOP_K,
    )
    for user, rows in recommendations.groupby("user_id"):
        ordered = rows.sort_values("recommendation_rank")
        if user in scored_users:
            candidates = (loaded.tables.scoring["user_id"] == user).sum()
            assert list(ordered["recommendation_rank"]) == list(
                range(1, min(TOP_K, candidates) + 1)
            )
            assert np.all(np.diff(ordered["score"].to_numpy()) <= 0)
        else:
            assert list(ordered["item_id"]) == fallback
            assert ordered["score"].isna().all()
    assert scored_users < set(recommendations["user_id"])  # the tiny sample has unseen users


# --- python -m trainer.task end to end ------------------------------------------------------------


def test_run_directory_holds_every_artifact(finished_run: FinishedRun, loaded: Loaded) -> None:
    """Exit 0 and a complete run directory: the model (with the spec's features, loadable), the
    metrics, feature importance for every feature, the spec, both recommendation files; no
    staging directory left beside it."""
    assert {path.name for path in finished_run.run_dir.iterdir()} == RUN_ARTIFACTS
    assert partial_dirs(finished_run.run_dir) == []
    assert f"{finished_run.run_dir}" in finished_run.result.stdout
    assert "candidate recall ceiling" in finished_run.result.stdout

    model = lgb.Booster(model_file=str(finished_run.run_dir / "model.txt"))
    assert model.feature_name() == list(loaded.spec.features)
    assert finished_run.artifact_json("feature_spec.json") == loaded.spec.to_json()
    importance = pd.read_csv(finished_run.run_dir / "feature_importance.csv")
    assert list(importance.columns) == ["feature", "gain", "splits"]
    assert sorted(importance["feature"]) == sorted(loaded.spec.features)
    assert importance["gain"].sum() > 0
    metrics = finished_run.artifact_json("metrics.json")
    assert set(metrics) == {"metrics", "candidate_recall", "intervals", "model_against"}
    assert set(metrics["metrics"]) == set(SEGMENTS) == set(metrics["intervals"])
    for segment, against in metrics["model_against"].items():
        # The paired difference's mean is the difference of the two rankers' reported means.
        assert set(against) == RANKERS - {"model"}
        by_ranker = metrics["metrics"][segment]
        for ranker_name, interval in against.items():
            difference = by_ranker["model"]["ndcg@10"] - by_ranker[ranker_name]["ndcg@10"]
            assert interval["mean"] == pytest.approx(difference, abs=1e-9)
            assert interval["low"] <= interval["mean"] <= interval["high"]


def test_saved_model_reproduces_the_batch_scores(finished_run: FinishedRun, loaded: Loaded) -> None:
    """model.txt is the model that scored the batch (saved at its best iteration): reloading it
    and scoring the scoring candidates gives the scores in batch_recommendations.parquet."""
    model = lgb.Booster(model_file=str(finished_run.run_dir / "model.txt"))
    batch = pq.read_table(finished_run.run_dir / "batch_recommendations.parquet").to_pandas()
    scoring = loaded.tables.scoring
    rescored = scoring[["user_id", "item_id"]].assign(
        rescored=model.predict(scoring[list(loaded.spec.features)])
    )
    # Fallback rows (users without candidates) have no score to reproduce.
    scored = batch[batch["score"].notna()]
    joined = scored.merge(rescored, on=["user_id", "item_id"], how="left", validate="one_to_one")

    assert joined["rescored"].notna().all()
    np.testing.assert_allclose(joined["score"], joined["rescored"], rtol=1e-9, atol=1e-12)


def test_run_metadata_records_provenance(finished_run: FinishedRun, loaded: Loaded) -> None:
    """run_metadata.json ties the run to code (git commit), dbt project (manifest hash) and data
    (row counts and a content fingerprint equal to the notebook API's), with parameters and
    timings."""
    metadata = finished_run.artifact_json("run_metadata.json")
    warehouse = finished_run.warehouse

    assert metadata["git_commit"] == FAKE_GIT_COMMIT
    assert metadata["dbt_manifest_sha256"] == manifest_hash(finished_run.manifest.read_bytes())
    assert metadata["dbt_manifest_sha256"] == loaded.manifest_sha
    assert metadata["warehouse_uri"] == duckdb_uri(warehouse)
    assert metadata["rows"] == {
        EXAMPLES_MODEL: scalar(warehouse, f"select count(*) from {EXAMPLES_MODEL}"),
        SCORING_MODEL: scalar(warehouse, f"select count(*) from {SCORING_MODEL}"),
        POSITIVES_MODEL: scalar(warehouse, f"select count(*) from {POSITIVES_MODEL}"),
        ITEM_FEATURES_MODEL: scalar(warehouse, f"select count(*) from {ITEM_FEATURES_MODEL}"),
        KNOWN_USERS_MODEL: scalar(warehouse, f"select count(*) from {KNOWN_USERS_MODEL}"),
        # The baselines read the history at the test cutoffs only.
        HISTORY_MODEL: scalar(
            warehouse,
            f"select count(*) from {HISTORY_MODEL} where cutoff_date in "
            f"(select cutoff_date from training_examples where split = 'test')",
        ),
        "batch_recommendations": scalar(warehouse, "select count(*) from ml.batch_recommendations"),
    }
    assert metadata["training_data_sha256"] == pipeline.data_fingerprint(loaded.tables.examples)
    assert set(metadata["timings"]) == TIMINGS
    assert all(seconds >= 0 for seconds in metadata["timings"].values())
    assert metadata["parameters"]["num_boost_round"] == 30
    assert 1 <= metadata["best_iteration"] <= 30
    assert metadata["top_k"] == TOP_K
    assert metadata["ks"] == list(KS)
    assert metadata["run_id"] in finished_run.result.stdout


def test_metrics_can_be_recomputed_from_the_artifacts(finished_run: FinishedRun) -> None:
    """Anyone can check metrics.json: test_recommendations.parquet plus the test windows'
    positives from label_window_positives give the model's recall@10 (and every other metric)
    through trainer.metrics.ranking_metrics, for both segments, each (user, test cutoff) one
    ranking query."""
    lists = pq.read_table(finished_run.run_dir / "test_recommendations.parquet").to_pandas()
    warehouse = finished_run.warehouse
    positives = pd.DataFrame(
        query(
            warehouse,
            f"select user_id, item_id, is_warm_user, cutoff_date from {POSITIVES_MODEL} "
            f"where split = '{TEST}'",
        ),
        columns=["user_id", "item_id", "is_warm_user", "cutoff_date"],
    )
    test_cutoff_count = set(positives["cutoff_date"])
    assert set(lists["cutoff_date"]) == test_cutoff_count and len(test_cutoff_count) == 2
    catalogue_size = scalar(
        warehouse,
        f"select count(distinct item_id) from {ITEM_FEATURES_MODEL} where cutoff_date in "
        f"(select cutoff_date from {POSITIVES_MODEL} where split = '{TEST}')",
    )

    def by_query(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(user_id=frame["user_id"] + "@" + frame["cutoff_date"].astype(str))

    lists = by_query(lists)
    positives = by_query(positives)
    reported = finished_run.artifact_json("metrics.json")["metrics"]

    segments = {"all_users": positives, "warm_users": positives[positives["is_warm_user"]]}
    for segment, segment_positives in segments.items():
        recomputed = ranking_metrics(
            lists[["user_id", "item_id", "rank"]],
            segment_positives[["user_id", "item_id"]],
            ks=KS,
            catalogue_size=catalogue_size,
        )
        assert recomputed["recall@10"] == pytest.approx(reported[segment]["model"]["recall@10"])
        assert recomputed == pytest.approx(reported[segment]["model"])


def test_batch_recommendations_table_is_written_back(finished_run: FinishedRun) -> None:
    """ml.batch_recommendations holds the run's batch file: every scored user, ranks 1..K, no
    duplicate (user, item), stamped with the run id and the scoring cutoff."""
    warehouse = finished_run.warehouse
    columns = ["user_id", "item_id", "recommendation_rank", "score"]
    table = frame(warehouse, f"select {', '.join(columns)} from ml.batch_recommendations")
    batch = pq.read_table(finished_run.run_dir / "batch_recommendations.parquet").to_pandas()
    metadata = finished_run.artifact_json("run_metadata.json")

    assert len(table) == len(batch) == metadata["rows"]["batch_recommendations"]
    pd.testing.assert_frame_equal(
        table.sort_values(columns[:2], ignore_index=True),
        batch[columns].sort_values(columns[:2], ignore_index=True),
    )
    per_user = query(
        warehouse,
        "select user_id, count(*), count(distinct item_id), min(recommendation_rank), "
        "max(recommendation_rank), count(distinct recommendation_rank) "
        "from ml.batch_recommendations group by user_id",
    )
    assert {row[1:] for row in per_user} == {(TOP_K, TOP_K, 1, TOP_K, TOP_K)}
    assert {row[0] for row in per_user} == {
        user for (user,) in query(warehouse, f"select user_id from {KNOWN_USERS_MODEL}")
    }
    assert query(warehouse, "select distinct model_version from ml.batch_recommendations") == [
        (metadata["run_id"],)
    ]
    assert query(warehouse, "select distinct cutoff_date from ml.batch_recommendations") == (
        query(warehouse, f"select distinct cutoff_date from {SCORING_MODEL}")
    )


def test_dbt_serving_build_accepts_the_trainer_output(
    finished_run: FinishedRun, tiny_warehouse: TinyWarehouse, tmp_path: Path
) -> None:
    """`dbt build --selector serving` on the written-back warehouse passes: the recommendations
    model builds and its tests (K complete ranks per user, unique pairs, no item the user has
    already seen) accept what the trainer wrote."""
    isolation = Isolation(
        data_dir=tiny_warehouse.data_dir,
        duckdb_path=finished_run.warehouse,
        target_path=(tmp_path / "serving_target").resolve(),
    )
    result = run_dbt_command(isolation, "build", "--selector", "serving")

    assert result.returncode == 0, result.output
    assert "ranks_are_complete" in result.output
    assert "assert_recommendations_exclude_seen_items" in result.output
    assert scalar(finished_run.warehouse, "select count(*) from main.recommendations") == (
        scalar(finished_run.warehouse, "select count(*) from ml.batch_recommendations")
    )


# --- manifest and tables out of step --------------------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "column"),
    [
        pytest.param(
            f"alter table {EXAMPLES_MODEL} drop column item_users_1d",
            "item_users_1d",
            id="feature-missing-from-table",
        ),
        pytest.param(
            f"alter table {EXAMPLES_MODEL} add column surprise double",
            "surprise",
            id="column-missing-from-spec",
        ),
    ],
)
def test_manifest_and_table_out_of_step_stop_the_run_naming_the_column(
    tiny_warehouse: TinyWarehouse, tmp_path: Path, statement: str, column: str
) -> None:
    """A stale manifest or a stale table (one built by another project version) is refused
    before training, naming the table and the column, with no run directory written."""
    warehouse = copy_warehouse(tiny_warehouse, tmp_path / "warehouse")
    execute(warehouse, statement)
    run_dir = tmp_path / "runs" / "stale"

    result = run_trainer(
        *trainer_args(duckdb_uri(warehouse), manifest_of(tiny_warehouse), run_dir), cwd=tmp_path
    )

    assert_clean_failure(result, run_dir, EXAMPLES_MODEL, column, "dbt build")


# --- Parquet warehouses ---------------------------------------------------------------------------


def test_a_parquet_directory_trains_the_same_model(
    tiny_warehouse: TinyWarehouse, finished_run: FinishedRun, tmp_path: Path
) -> None:
    """A directory of <table>.parquet files (file:// URI) is read like the DuckDB file: with
    nothing written back the run succeeds, sees the same data (fingerprint) and, trained in
    another process with the default thread count, produces the end-to-end run's model and
    metrics byte for byte: determinism across processes, not only within one."""
    parquet_dir = export_parquet(tiny_warehouse.duckdb_path, tmp_path / "parquet")
    run_dir = tmp_path / "runs" / "parquet"

    result = run_trainer(
        *trainer_args(f"file://{parquet_dir}", manifest_of(tiny_warehouse), run_dir),
        cwd=tmp_path,
    )

    assert result.returncode == 0, result.stderr
    metadata = json.loads((run_dir / "run_metadata.json").read_text())
    reference = finished_run.artifact_json("run_metadata.json")
    assert metadata["training_data_sha256"] == reference["training_data_sha256"]
    assert metadata["rows"] == reference["rows"]
    for artifact in ("model.txt", "metrics.json", "feature_importance.csv"):
        assert (run_dir / artifact).read_bytes() == (finished_run.run_dir / artifact).read_bytes()
    assert "recommendations written" not in result.stdout
