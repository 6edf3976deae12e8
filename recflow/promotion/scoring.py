"""Score saved models on the current feature tables with the trainer's own evaluation code.

The data grows between runs, so the champion's recorded metrics.json describes an older test
window than the challenger's. Both models are therefore scored again here on the challenger's
test cutoff as it is in the warehouse now: the same rows, the same positives, the same
fallback and the same code (trainer.pipeline.evaluate_model).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from recflow.promotion.run_dirs import FinishedRun
from trainer import pipeline
from trainer.columns import CUTOFF_DATE, ITEM_ID, USER_ID
from trainer.feature_spec import FeatureSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scored:
    """A model's metrics on the current tables, or why it could not be scored."""

    metrics: dict[str, Any] | None
    unscorable_reason: str = ""
    # ranker -> per-user metrics (Evaluation.per_user), for the gate's paired comparison
    per_user: Mapping[str, pd.DataFrame] = field(default_factory=dict)


def load_current_tables(
    challenger: FinishedRun, warehouse_uri: str, schema: str | None
) -> pipeline.FeatureTables:
    """The marts as they are now, checked against the challenger's feature spec."""
    return pipeline.load_tables(warehouse_uri, challenger.spec, schema=schema)


def score(run: FinishedRun, tables: pipeline.FeatureTables, *, ks: tuple[int, ...]) -> Scored:
    """`run`'s saved model on the tables' test cutoff, or the reason it cannot be."""
    spec = run.spec
    examples = tables.examples
    needed = {*spec.features, *spec.source_ranks.values(), spec.split, *spec.keys}
    missing = sorted(needed - set(examples.columns))
    if spec.popularity_rank not in tables.item_features.columns:
        missing.append(spec.popularity_rank)
    if missing:
        return Scored(
            None,
            f"its feature table columns {', '.join(missing)} are no longer in the warehouse "
            "(the dbt project dropped or renamed them)",
        )
    booster = run.booster()
    if list(booster.feature_name()) != list(spec.features):
        return Scored(None, f"{run.uri}/model.txt and its feature_spec.json disagree")
    evaluation = pipeline.evaluate_model(
        booster,
        # No baselines: the gate compares two models, on the same users.
        replace(tables, examples=_as_categories(examples, spec), history=None),
        spec,
        ks=ks,
    )
    return Scored(evaluation.metrics, per_user=evaluation.per_user)


def _as_categories(frame: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """A model trained with a categorical column must be fed one (its levels are in model.txt)."""
    converted = {
        name: frame[name].astype("category")
        for name in spec.categorical
        if not isinstance(frame[name].dtype, pd.CategoricalDtype)
    }
    return frame.assign(**converted) if converted else frame


def scoring_candidates(tables: pipeline.FeatureTables) -> pd.DataFrame:
    """(user_id, item_id) candidates at the latest (scoring) cutoff."""
    return tables.scoring[[USER_ID, ITEM_ID, CUTOFF_DATE]]
