"""Turn the training table into LightGBM ranking inputs: pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from trainer import ordering
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


def to_frame(table: pa.Table, spec: FeatureSpec, *, sort_by: Sequence[str] = ()) -> pd.DataFrame:
    """Arrow to pandas in one pass, with the memory of a 10M-row table in mind.

    Categorical features become pandas categories (LightGBM reads them as categorical and
    remembers their levels for scoring) by dictionary-encoding them in Arrow, so no column of
    Python strings is ever built for them. Numeric features become float32, the precision
    LightGBM bins them at anyway: float64 ones always, integer ones (counts, ranks, days) when
    every value is exact in float32 (|x| <= 2^24). With every feature float32 or boolean,
    LightGBM's own matrix for training and scoring is float32 too, half the memory of float64.
    `sort_by` columns order the rows (stable, ascending, nulls last), applied column by column
    after narrowing, so no second copy of the wide table is made.
    `table` is consumed: each column is released as soon as its narrowed copy exists, so pass a
    table nothing else holds and the two copies never coexist.
    """
    names = table.column_names
    source = table.columns
    order = (
        ordering.lexicographic_order([ordering.sort_codes(table[name]) for name in sort_by])
        if sort_by
        else None
    )
    del table
    categorical = set(spec.categorical)
    narrowed = set(spec.features) - categorical
    columns = []
    for name in names:
        column = source.pop(0)
        if name in categorical:
            column = pc.dictionary_encode(column)
        elif name in narrowed and _exact_in_float32(column):
            column = column.cast(pa.float32())
        if order is not None:
            column = column.take(order)
        columns.append(column)
    converted = pa.Table.from_arrays(columns, names=names)
    del columns
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
    Rows are sorted by the group, then the keys (stable), so the order does not depend on how
    the warehouse returned them; groups are selected and sorted on integer codes, and the
    frame is copied once.
    """
    in_split = np.flatnonzero((frame[spec.split] == split).to_numpy(dtype=bool, na_value=False))
    rows = frame.iloc[in_split]
    sort_columns = list(dict.fromkeys([*spec.group, *spec.keys]))
    codes = {name: ordering.sort_codes(rows[name]) for name in sort_columns}
    group = ordering.lexicographic_order([codes[name] for name in spec.group])
    group_id = np.empty(len(rows), dtype=np.int64)
    group_id[group] = np.cumsum(np.r_[False, _differs([codes[name][group] for name in spec.group])])
    if positive_groups_only and len(rows):
        label = rows[spec.label].to_numpy(dtype=np.float64, na_value=np.nan)
        has_positive = np.zeros(int(group_id.max()) + 1, dtype=bool)
        has_positive[group_id[label > 0]] = True
        keep = has_positive[group_id]
        in_split, group_id = in_split[keep], group_id[keep]
        codes = {name: values[keep] for name, values in codes.items()}
    order = ordering.lexicographic_order([codes[name] for name in sort_columns])
    selected = frame.take(in_split[order]).reset_index(drop=True)
    return RankingData(frame=selected, group_sizes=ordering.run_lengths(group_id[order]))


def _differs(sorted_columns: list[np.ndarray]) -> np.ndarray:
    """Whether each row after the first differs from the previous one in any column."""
    changed = np.zeros(max(len(sorted_columns[0]) - 1, 0), dtype=bool)
    for column in sorted_columns:
        changed |= column[1:] != column[:-1]
    return changed


def check_trainable(frame: pd.DataFrame, spec: FeatureSpec, table_name: str) -> None:
    """Fail with a message that names the problem when no sensible ranker can be trained."""
    if frame.empty:
        raise TrainerInputError(
            f"{table_name} is empty: no labelled cutoff has a user with a positive event in its "
            "label window. Every event quarantined, no positive event type (the `event_types` "
            "var) or too few days for min_history_days and the held-out cutoffs can cause it: "
            "the event_log_summary and stg_app__quarantined_rows tables show which."
        )
    splits = set(frame[spec.split].unique())
    for needed in (TRAIN, VALIDATION, TEST):
        if needed not in splits:
            raise TrainerInputError(
                f"{table_name} has no '{needed}' rows in column {spec.split}: the data covers "
                "too few cutoffs (labelled cutoffs start min_history_days after the first "
                "event, cutoff_interval_days apart, and the latest test_cutoff_count + "
                "validation_cutoff_count of them are held out, so training needs at least one "
                "more). Use more days of data or lower min_history_days / test_cutoff_count / "
                "validation_cutoff_count / cutoff_interval_days (dbt vars; recflow run --var)."
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
    # Stops at the first feature that varies (usually the first): counting every feature's
    # distinct values costs seconds at ten million rows.
    if all(train[column].nunique(dropna=False) <= 1 for column in spec.features):
        raise TrainerInputError(
            f"Every feature of {table_name} is constant in '{TRAIN}' "
            f"({', '.join(spec.features)}): there is nothing to learn from."
        )
