"""Train and apply the LightGBM lambdarank model."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd

from trainer.dataset import RankingData
from trainer.feature_spec import FeatureSpec

log = logging.getLogger(__name__)

PREDICT_CHUNK_ROWS = 500_000


@dataclass(frozen=True)
class RankerParams:
    """LightGBM settings; the defaults suit tens of candidates per (user, cutoff) group."""

    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 50
    feature_fraction: float = 0.9
    lambda_l2: float = 1.0
    num_boost_round: int = 400
    early_stopping_rounds: int = 40
    eval_at: tuple[int, ...] = (10, 20)
    seed: int = 42
    num_threads: int = 2
    log_every: int = 25

    def lightgbm_params(self) -> dict[str, object]:
        return {
            "objective": "lambdarank",
            "metric": "ndcg",
            "ndcg_eval_at": list(self.eval_at),
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "lambda_l2": self.lambda_l2,
            "seed": self.seed,
            # Same data, same thread count, same model: fixed seeds and a deterministic build.
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "verbosity": -1,
        }

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def train_ranker(
    train: RankingData, validation: RankingData, spec: FeatureSpec, params: RankerParams
) -> lgb.Booster:
    """Fit lambdarank on the training groups, stopping early on validation NDCG."""
    train_set = _dataset(train, spec)
    validation_set = _dataset(validation, spec, reference=train_set)
    log.info(
        "training on %d rows in %d groups, validating on %d rows in %d groups, %d features",
        len(train.frame),
        train.num_groups,
        len(validation.frame),
        validation.num_groups,
        len(spec.features),
    )
    return lgb.train(
        params.lightgbm_params(),
        train_set,
        num_boost_round=params.num_boost_round,
        valid_sets=[validation_set],
        valid_names=["validation"],
        callbacks=[
            lgb.early_stopping(params.early_stopping_rounds, first_metric_only=False, verbose=True),
            lgb.log_evaluation(period=params.log_every),
        ],
    )


def predict_scores(booster: lgb.Booster, frame: pd.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """Model scores for rows holding the spec's features (higher = recommend first).

    In chunks of rows, so LightGBM's float matrix of the features never covers the whole frame.
    """
    features = list(spec.features)
    if len(frame) <= PREDICT_CHUNK_ROWS:
        return booster.predict(frame[features], num_iteration=booster.best_iteration)
    scores = np.empty(len(frame), dtype=np.float64)
    for start in range(0, len(frame), PREDICT_CHUNK_ROWS):
        chunk = frame.iloc[start : start + PREDICT_CHUNK_ROWS][features]
        scores[start : start + len(chunk)] = booster.predict(
            chunk, num_iteration=booster.best_iteration
        )
    return scores


def feature_importance(booster: lgb.Booster) -> pd.DataFrame:
    """Gain and split counts per feature, most useful first."""
    return (
        pd.DataFrame(
            {
                "feature": booster.feature_name(),
                "gain": booster.feature_importance(importance_type="gain"),
                "splits": booster.feature_importance(importance_type="split"),
            }
        )
        .sort_values(["gain", "feature"], ascending=[False, True])
        .reset_index(drop=True)
    )


def _dataset(
    data: RankingData, spec: FeatureSpec, reference: lgb.Dataset | None = None
) -> lgb.Dataset:
    return lgb.Dataset(
        data.frame[list(spec.features)],
        label=data.frame[spec.label].to_numpy(),
        group=data.group_sizes,
        categorical_feature=list(spec.categorical),
        reference=reference,
        free_raw_data=False,
    )
