"""Turn the training table into LightGBM ranking inputs: pure functions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from trainer.errors import TrainerInputError
from trainer.feature_spec import FeatureSpec

TRAIN, VALIDATION, TEST = "train", "validation", "test"
FLOAT32_EXACT_INTEGERS = 2**24  # every integer up to this is exactly representable


@dataclass(frozen=True)
class RankingData:
    """Rows of one split, sorted so each query group is contiguous, with the group sizes."""

    frame: pd.DataFrame
    group_sizes: np.ndarray

    @property
    def num_groups(self) -> int:
        return len(self.group_sizes)


def to_frame(table: pa.Table, spec: FeatureSpec) -> pd.DataFrame:
    """Arrow to pandas in one pass, with the memory of a 10M-row table in mind.

    Categorical features become pandas categories (LightGBM reads them as categorical and
    remembers their levels for scoring) by dictionary-encoding them in Arrow, so no column of
    Python strings is ever built for them. Numeric features become float32, the precision
    LightGBM bins them at anyway: float64 ones always, integer ones (counts, ranks, days) when
    every value is exact in float32 (|x| <= 2^24). With every feature float32 or boolean,
    LightGBM's own matrix for training and scoring is float32 too, half the memory of float64.
    `table` is consumed: Arrow frees each column as soon as pandas holds it, so the two copies
    never coexist.
    """
    categorical = set(spec.categorical)
    narrowed = set(spec.features) - categorical
    columns = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        if name in categorical:
            column = pc.dictionary_encode(column)
        elif name in narrowed and _exact_in_float32(column):
            column = column.cast(pa.float32())
        columns.append(column)
    converted = pa.Table.from_arrays(columns, names=table.column_names)
    del table, columns
    frame = converted.to_pandas(split_blocks=True, self_destruct=True)
    for name in spec.categorical:
        # Levels in sorted order, not in the order rows arrived, so a rebuild that returns the
        # same rows in another order trains the same model.
        frame[name] = frame[name].cat.reorder_categories(sorted(frame[name].cat.categories))
    return frame


def _exact_in_float32(column: pa.ChunkedArray) -> bool:
    if pa.types.is_float64(column.type):
        return True
    if not pa.types.is_integer(column.type):
        return False
    bounds = pc.min_max(column)
    lowest, highest = bounds["min"].as_py(), bounds["max"].as_py()
    return lowest is None or max(abs(lowest), abs(highest)) <= FLOAT32_EXACT_INTEGERS


def split_frame(
    frame: pd.DataFrame, spec: FeatureSpec, split: str, *, positive_groups_only: bool
) -> RankingData:
    """One split's rows grouped by the spec's group columns.

    Training and validation keep only groups with at least one positive: a group without one
    carries no ranking signal for lambdarank and would dilute NDCG during early stopping.
    """
    rows = frame[frame[spec.split] == split]
    if positive_groups_only and not rows.empty:
        has_positive = rows.groupby(list(spec.group), observed=True)[spec.label].transform("max")
        rows = rows[has_positive > 0]
    rows = rows.sort_values([*spec.group, *spec.keys], kind="stable").reset_index(drop=True)
    group_sizes = (
        rows.groupby(list(spec.group), sort=False, observed=True).size().to_numpy()
        if not rows.empty
        else np.array([], dtype=np.int64)
    )
    return RankingData(frame=rows, group_sizes=group_sizes)


def check_trainable(frame: pd.DataFrame, spec: FeatureSpec, table_name: str) -> None:
    """Fail with a message that names the problem when no sensible ranker can be trained."""
    if frame.empty:
        raise TrainerInputError(
            f"{table_name} is empty: the dbt build produced no candidates. Check that the data "
            "directory covers more than min_history_days plus three snapshot intervals."
        )
    splits = set(frame[spec.split].unique())
    for needed in (TRAIN, VALIDATION, TEST):
        if needed not in splits:
            raise TrainerInputError(
                f"{table_name} has no '{needed}' rows in column {spec.split}: the data covers "
                "too few snapshots. Use more days of data or lower train_snapshots / "
                "snapshot_interval_days in dbt_project.yml."
            )
    train = frame[frame[spec.split] == TRAIN]
    if int(train[spec.label].sum()) == 0:
        raise TrainerInputError(
            f"{table_name} has no positive {spec.label} in the '{TRAIN}' split: check the "
            "`event_types` var (is_positive) and the label window."
        )
    positive_groups = train[train[spec.label] > 0].groupby(list(spec.group), observed=True).ngroups
    if positive_groups < 2:
        raise TrainerInputError(
            f"{table_name} has {positive_groups} ranking group with a positive label in "
            f"'{TRAIN}' (groups are {', '.join(spec.group)}); a ranker needs at least two."
        )
    constant = [column for column in spec.features if train[column].nunique(dropna=False) <= 1]
    if len(constant) == len(spec.features):
        raise TrainerInputError(
            f"Every feature of {table_name} is constant in '{TRAIN}' "
            f"({', '.join(constant)}): there is nothing to learn from."
        )
