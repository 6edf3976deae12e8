"""The training job as a few functions a pipeline and a notebook share.

    spec, manifest_sha = load_feature_spec(Path("dbt/target/manifest.json"))
    tables = load_tables(open_warehouse("duckdb:///path/to/warehouse.duckdb"), spec)
    booster = train(tables, spec, RankerParams())
    evaluation = evaluate_model(booster, tables, spec, ks=(10, 20))
    recommendations = recommend(booster, tables, spec, k=20, model_version="notebook")

`run` chains them and writes the run directory (a local path or gs://bucket/prefix) and the
batch recommendations (DuckDB or BigQuery).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trainer import (
    baselines,
    data_problems,
    dataset,
    evaluation,
    gcs,
    ranker,
    served_checks,
    serving,
    writing,
)
from trainer import recommend as recommend_module
from trainer.columns import CUTOFF_DATE, ITEM_ID, USER_ID
from trainer.config import TrainerConfig
from trainer.errors import TrainerInputError
from trainer.failpoints import failpoint
from trainer.feature_spec import (
    EXAMPLES_MODEL,
    HISTORY_MODEL,
    ITEM_FEATURES_MODEL,
    KNOWN_USERS_MODEL,
    POSITIVES_MODEL,
    SCORING_MODEL,
    FeatureSpec,
    manifest_hash,
    spec_from_manifest,
)
from trainer.metrics import metrics_table
from trainer.warehouse import Warehouse, open_warehouse, qualified, warehouse_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureTables:
    """The marts one training run reads, as pandas frames."""

    examples: pd.DataFrame
    scoring: pd.DataFrame
    positives: pd.DataFrame
    item_features: pd.DataFrame
    known_users: pd.Series  # every user the batch serves
    # Every user's items before the test cutoff, for the baselines; None leaves them out.
    history: pd.DataFrame | None = None

    @property
    def scoring_cutoff(self) -> Any:
        return scoring_cutoff_of(self.item_features)

    @property
    def test_cutoffs(self) -> list[Any]:
        return test_cutoffs_of(self.examples, "split")


@dataclass(frozen=True)
class RunResult:
    run_dir: str
    evaluation: evaluation.Evaluation
    timings: dict[str, float]
    recommendations_written: int


def test_cutoffs_of(examples: pd.DataFrame, split_column: str) -> list[Any]:
    """The cutoffs of the test split (the latest labelled cutoffs), oldest first."""
    return sorted(examples.loc[_in_test(examples, split_column), CUTOFF_DATE].unique())


def scoring_cutoff_of(item_features: pd.DataFrame) -> Any:
    """The scoring cutoff: the latest cutoff of the spine, which every per-cutoff mart holds."""
    return item_features[CUTOFF_DATE].max()


def scoring_fallback(item_features: pd.DataFrame, spec: FeatureSpec, *, k: int) -> list[str]:
    """The popularity fallback the batch serves users without candidates at the scoring cutoff."""
    at_cutoff = item_features[item_features[CUTOFF_DATE] == scoring_cutoff_of(item_features)]
    return serving.fallback_items(at_cutoff, spec.popularity_rank, k=k)


def _in_test(examples: pd.DataFrame, split_column: str) -> np.ndarray:
    return (examples[split_column] == dataset.TEST).to_numpy(dtype=bool, na_value=False)


def load_feature_spec(manifest_uri: str | Path) -> tuple[FeatureSpec, str]:
    """The feature spec from dbt's manifest.json (a local path or gs:// URI), and its SHA-256."""
    manifest_bytes = _read_manifest(str(manifest_uri))
    spec = spec_from_manifest(manifest_bytes, source=str(manifest_uri))
    return spec, manifest_hash(manifest_bytes)


def _read_manifest(uri: str) -> bytes:
    missing = TrainerInputError(
        f"dbt manifest {uri} does not exist: run `dbt build` (or `dbt parse`) first, or pass "
        "--manifest."
    )
    if gcs.is_gcs_uri(uri):
        fs = gcs.filesystem()
        try:
            return fs.cat_file(uri)
        except FileNotFoundError as error:
            raise missing from error
    path = Path(uri)
    if not path.is_file():
        raise missing
    return path.read_bytes()


def load_tables(
    warehouse: Warehouse | str, spec: FeatureSpec, *, schema: str | None = None
) -> FeatureTables:
    """Read and check the four marts; rows come back in a deterministic order.

    `schema` is where the marts are (a BigQuery dataset on bq://); by default `main` locally and
    the dataset of a bq://project.dataset URI.
    """
    warehouse = warehouse_of(warehouse)
    schema = schema or warehouse.default_schema
    examples = load_examples(warehouse, spec, schema=schema)
    return FeatureTables(
        history=load_history(warehouse, test_cutoffs_of(examples, spec.split), schema=schema),
        examples=examples,
        scoring=load_scoring(warehouse, spec, schema=schema),
        positives=_read(warehouse, schema, POSITIVES_MODEL).to_pandas(),
        item_features=_read(warehouse, schema, ITEM_FEATURES_MODEL).to_pandas(),
        known_users=load_known_users(warehouse, schema=schema),
    )


def load_history(
    warehouse: Warehouse, cutoffs: Sequence[Any], *, schema: str | None
) -> pd.DataFrame:
    """Every user's items before each of `cutoffs` (the `user_item_history` mart), for the
    baselines."""
    columns = [*baselines.HISTORY_COLUMNS, CUTOFF_DATE]
    table = _read(warehouse, schema, HISTORY_MODEL, columns=columns)
    wanted = pa.array(list(cutoffs), pa.date32())
    return table.filter(pc.is_in(table[CUTOFF_DATE], value_set=wanted)).to_pandas()


def load_known_users(warehouse: Warehouse, *, schema: str | None) -> pd.Series:
    """Every user the batch must serve (the `known_users` mart), as a Series of ids."""
    users = _read(warehouse, schema, KNOWN_USERS_MODEL, columns=[USER_ID]).to_pandas()
    return users[USER_ID]


def load_examples(warehouse: Warehouse, spec: FeatureSpec, *, schema: str | None) -> pd.DataFrame:
    """The training examples, checked, sorted by (group, keys) so their order is total."""
    # The table is handed over, not kept: to_frame narrows and sorts it column by column.
    examples = dataset.to_frame(
        _read_checked(warehouse, schema, EXAMPLES_MODEL, spec, with_label=True),
        spec,
        sort_by=list(dict.fromkeys([*spec.group, *spec.keys])),
    )
    try:
        dataset.check_trainable(examples, spec, EXAMPLES_MODEL)
    except TrainerInputError:
        # Too few examples often has a cause upstream (no timestamp parsed, nothing positive,
        # too few days): name that one when the event log summary shows it.
        data_problems.check_warehouse(warehouse, schema=schema)
        raise
    return examples


def load_scoring(warehouse: Warehouse, spec: FeatureSpec, *, schema: str | None) -> pd.DataFrame:
    """The candidates at the latest cutoff, checked, in the warehouse's order."""
    return dataset.to_frame(
        _read_checked(warehouse, schema, SCORING_MODEL, spec, with_label=False), spec
    )


def _read(
    warehouse: Warehouse, schema: str | None, model: str, *, columns: Sequence[str] | None = None
) -> pa.Table:
    return warehouse.read(qualified(schema, model), columns=columns)


def _read_checked(
    warehouse: Warehouse, schema: str | None, model: str, spec: FeatureSpec, *, with_label: bool
) -> pa.Table:
    table = _read(warehouse, schema, model)
    spec.check_columns(model, table.column_names, with_label=with_label)
    return table


def train(tables: FeatureTables, spec: FeatureSpec, params: ranker.RankerParams) -> lgb.Booster:
    """Fit the ranker on the train split with early stopping on validation."""
    return train_on_examples(tables.examples, spec, params)


def train_on_examples(
    examples: pd.DataFrame, spec: FeatureSpec, params: ranker.RankerParams
) -> lgb.Booster:
    """`train` on the training examples alone."""
    splits = {
        name: dataset.split_frame(examples, spec, name, positive_groups_only=True)
        for name in (dataset.TRAIN, dataset.VALIDATION)
    }
    if splits[dataset.VALIDATION].num_groups == 0:
        raise TrainerInputError(
            f"{EXAMPLES_MODEL} has no validation group with a positive label, so early stopping "
            "has nothing to watch: use more data or a longer label window."
        )
    return ranker.train_ranker(splits[dataset.TRAIN], splits[dataset.VALIDATION], spec, params)


def evaluate_model(
    booster: lgb.Booster, tables: FeatureTables, spec: FeatureSpec, *, ks: Sequence[int]
) -> evaluation.Evaluation:
    """The model and the baselines on the test cutoff, against all test-window positives."""
    return evaluate_on_examples(
        booster,
        tables.examples,
        tables.positives,
        tables.item_features,
        spec,
        ks=ks,
        history=tables.history,
    )


def evaluate_on_examples(
    booster: lgb.Booster,
    examples: pd.DataFrame,
    positives: pd.DataFrame,
    item_features: pd.DataFrame,
    spec: FeatureSpec,
    *,
    ks: Sequence[int],
    history: pd.DataFrame | None = None,
) -> evaluation.Evaluation:
    """`evaluate_model` on the frames themselves."""
    in_test = _in_test(examples, spec.split)
    test_cutoffs = test_cutoffs_of(examples, spec.split)
    # Only the columns ranking and scoring read: a copy of every column is hundreds of MB.
    needed = dict.fromkeys(
        [USER_ID, ITEM_ID, CUTOFF_DATE, *spec.source_ranks.values(), *spec.features]
    )
    test_rows = examples.loc[in_test, list(needed)].reset_index(drop=True)
    test_rows[evaluation.SCORE] = ranker.predict_scores(booster, test_rows, spec)
    positives = positives[positives[CUTOFF_DATE].isin(test_cutoffs)]
    item_features = item_features[item_features[CUTOFF_DATE].isin(test_cutoffs)]
    return evaluation.evaluate(test_rows, positives, item_features, spec, ks=ks, history=history)


def recommend(
    booster: lgb.Booster,
    tables: FeatureTables,
    spec: FeatureSpec,
    *,
    k: int,
    model_version: str,
    generated_at: datetime | None = None,
) -> pa.Table:
    """Top-k recommendations for every known user at the latest cutoff."""
    return recommend_candidates(
        booster,
        tables.scoring,
        spec,
        k=k,
        users=tables.known_users,
        fallback=scoring_fallback(tables.item_features, spec, k=k),
        cutoff=tables.scoring_cutoff,
        model_version=model_version,
        generated_at=generated_at,
    )


def recommend_candidates(
    booster: lgb.Booster,
    scoring: pd.DataFrame,
    spec: FeatureSpec,
    *,
    k: int,
    users: pd.Series,
    fallback: list[str],
    cutoff: Any,
    model_version: str,
    generated_at: datetime | None = None,
) -> pa.Table:
    """`recommend` on the scoring candidates, known users and fallback list themselves."""
    return recommend_module.top_k_recommendations(
        scoring,
        ranker.predict_scores(booster, scoring, spec),
        k=k,
        users=users,
        fallback=fallback,
        cutoff=cutoff,
        model_version=model_version,
        generated_at=generated_at or datetime.now(UTC),
    )


def data_fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 over the rows' content, to tell whether two runs saw the same data."""
    row_hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(row_hashes.tobytes()).hexdigest()


def run(config: TrainerConfig) -> RunResult:
    """Load, train, evaluate, recommend, then write the run directory and the warehouse table."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    # Settle what can be known before the expensive part.
    warehouse = open_warehouse(config.warehouse_uri)
    writing.check_run_dir_free(config.run_dir)
    if config.recommendations_table:
        warehouse.check_writable(config.recommendations_table)
    spec, manifest_sha = load_feature_spec(config.manifest_path)
    spec = spec.without_features(config.exclude_features)
    schema = config.features_schema or warehouse.default_schema
    # The marts are read when first needed and released when done with (not as FeatureTables),
    # so the training examples and the scoring candidates are never in memory together.
    examples = load_examples(warehouse, spec, schema=schema)
    positives = _read(warehouse, schema, POSITIVES_MODEL).to_pandas()
    item_features = _read(warehouse, schema, ITEM_FEATURES_MODEL).to_pandas()
    rows = {
        EXAMPLES_MODEL: len(examples),
        POSITIVES_MODEL: len(positives),
        ITEM_FEATURES_MODEL: len(item_features),
    }
    training_data_sha256 = data_fingerprint(examples)
    test_cutoffs = test_cutoffs_of(examples, spec.split)
    scoring_cutoff = scoring_cutoff_of(item_features)
    fallback = scoring_fallback(item_features, spec, k=config.top_k)
    known_users = load_known_users(warehouse, schema=schema)
    rows[KNOWN_USERS_MODEL] = len(known_users)
    lap("load_seconds")
    booster = train_on_examples(examples, spec, config.params)
    lap("train_seconds")
    failpoint("trainer.trained")
    history = load_history(warehouse, test_cutoffs, schema=schema)
    rows[HISTORY_MODEL] = len(history)
    result = evaluate_on_examples(
        booster, examples, positives, item_features, spec, ks=config.ks, history=history
    )
    del examples, positives, item_features, history
    lap("evaluate_seconds")
    scoring = load_scoring(warehouse, spec, schema=schema)
    rows[SCORING_MODEL] = len(scoring)
    lap("load_scoring_seconds")
    recommendations = recommend_candidates(
        booster,
        scoring,
        spec,
        k=config.top_k,
        users=known_users,
        fallback=fallback,
        cutoff=scoring_cutoff,
        model_version=config.run_id,
    )
    # Only the keys are checked: the features go first, so the checks' hashing of millions of
    # (user, item) pairs never adds to a frame still holding every feature.
    candidates = scoring[[USER_ID, ITEM_ID]]
    del scoring
    if config.recommendations_table:
        check_servable(
            recommendations,
            candidates,
            known_users,
            fallback,
            k=config.top_k,
            table=config.recommendations_table,
        )
    del candidates
    lap("recommend_seconds")

    with writing.staged_run(config.run_dir) as staged:
        staging = staged.path
        booster.save_model(str(staging / "model.txt"), num_iteration=booster.best_iteration)
        writing.write_json(
            staging / "metrics.json",
            {
                "metrics": result.metrics,
                "candidate_recall": result.candidate_recall,
                "intervals": result.intervals,
                "model_against": result.model_against,
            },
        )
        ranker.feature_importance(booster).to_csv(staging / "feature_importance.csv", index=False)
        writing.write_json(staging / "feature_spec.json", spec.to_json())
        pq.write_table(
            pa.Table.from_pandas(
                result.test_recommendations,
                preserve_index=False,
            ),
            staging / "test_recommendations.parquet",
        )
        pq.write_table(recommendations, staging / "batch_recommendations.parquet")
        lap("write_artifacts_seconds")
        writing.write_json(
            staging / "run_metadata.json",
            {
                "run_id": config.run_id,
                "dbt_manifest_sha256": manifest_sha,
                "warehouse_uri": config.warehouse_uri,
                "rows": {**rows, "batch_recommendations": recommendations.num_rows},
                "training_data_sha256": training_data_sha256,
                "best_iteration": booster.best_iteration,
                "parameters": config.params.to_json(),
                "excluded_features": list(spec.excluded_features),
                "top_k": config.top_k,
                "ks": list(config.ks),
                "timings": timings,
                **config.run_context,
            },
        )
        # Everything but run_metadata.json (a no-op locally, where the rename publishes it all).
        staged.publish_artifacts()
        # Last, so a failed write-back leaves no run directory that looks finished: the local
        # rename, or on GCS the run_metadata.json upload, happens after it.
        if config.recommendations_table:
            warehouse.replace(config.recommendations_table, recommendations)
    log.info("run %s finished: %s", config.run_id, timings)
    return RunResult(
        run_dir=config.run_dir,
        evaluation=result,
        timings=timings,
        recommendations_written=recommendations.num_rows if config.recommendations_table else 0,
    )


def check_servable(
    recommendations: pa.Table,
    scoring: pd.DataFrame,
    known_users: pd.Series,
    fallback: list[str],
    *,
    k: int,
    table: str,
) -> None:
    """Stop before the write-back when the batch fails the serving checks the gate applies:
    the served table keeps its rows rather than being replaced by a batch missing users."""
    problems = served_checks.check_recommendations(
        recommendations.to_pandas(), scoring, known_users, fallback, k=k
    )
    if problems:
        raise TrainerInputError(
            f"the batch recommendations fail the serving checks, so {table} was left as it "
            f"was: {'; '.join(problems)}"
        )


def summary_table(result: evaluation.Evaluation, *, ks: Sequence[int]) -> str:
    """The metrics of every ranker per user segment, and the model against each of them, as text."""
    columns = [f"{metric}@{k}" for k in ks for metric in ("ndcg", "recall", "map")]
    primary = f"ndcg@{min(ks)}"
    blocks = []
    for segment, by_ranker in result.metrics.items():
        ceiling = result.candidate_recall[segment]
        intervals = result.intervals.get(segment, {})
        against = result.model_against.get(segment, {})
        rows = {
            name: {
                **values,
                f"{primary} 95%": _interval_text(intervals.get(name, {}).get(primary)),
                "model - it": _difference_text(against.get(name)),
            }
            for name, values in by_ranker.items()
        }
        blocks.append(
            f"{segment} (candidate recall ceiling {ceiling:.4f}; model - it: paired difference "
            f"of {primary} with its 95% bootstrap interval over users)\n"
            + metrics_table(
                rows,
                columns=[*columns, f"coverage@{max(ks)}", f"{primary} 95%", "model - it"],
            )
        )
    return "\n\n".join(blocks)


def _interval_text(bounds: Sequence[float] | None) -> str:
    return f"[{bounds[0]:.4f}, {bounds[1]:.4f}]" if bounds else ""


def _difference_text(interval: dict[str, float] | None) -> str:
    if not interval:
        return ""
    return f"{interval['mean']:+.4f} [{interval['low']:+.4f}, {interval['high']:+.4f}]"
