"""The code-based sorting and top-k selection agree with plain pandas sorts, ties included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from trainer import ordering
from trainer.dataset import split_frame, to_frame
from trainer.evaluation import ranked_lists
from trainer.feature_spec import FeatureSpec

SPEC = FeatureSpec(
    keys=("user_id", "item_id", "cutoff_date"),
    group=("user_id", "cutoff_date"),
    label="label",
    split="split",
    features=("score_feature", "segment"),
    categorical=("segment",),
    source_ranks={},
    popularity_rank="popularity_rank",
)


def candidates(seed: int, rows: int = 400) -> pd.DataFrame:
    """Rows with many ties in the score, shuffled, string ids of uneven length."""
    generator = np.random.default_rng(seed)
    users = [f"u{n}" for n in range(12)] + ["u10a", "U1"]
    frame = pd.DataFrame(
        {
            "user_id": generator.choice(users, rows),
            "item_id": [f"i{n}" for n in generator.permutation(rows)],
            "score": generator.integers(0, 4, rows).astype(np.float64),
        }
    )
    frame.loc[generator.random(rows) < 0.1, "score"] = np.nan
    return frame


@pytest.mark.parametrize("descending", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranked_lists_equal_a_stable_pandas_sort(seed: int, descending: bool) -> None:
    rows = candidates(seed)
    expected = (
        rows[rows["score"].notna()]
        .sort_values(
            ["user_id", "score", "item_id"], ascending=[True, not descending, True], kind="stable"
        )
        .assign(rank=lambda frame: frame.groupby("user_id").cumcount() + 1)
        .query("rank <= 5")[["user_id", "item_id", "rank"]]
        .reset_index(drop=True)
    )
    result = ranked_lists(rows, "score", k=5, descending=descending)
    pd.testing.assert_frame_equal(result, expected)


def test_top_k_keeps_input_order_among_equal_keys() -> None:
    group = np.array([1, 0, 1, 0, 1, 0])
    value = np.array([2.0, 1.0, 2.0, 1.0, 2.0, np.nan])
    tie_break = np.zeros(6, dtype=np.int64)
    positions, rank = ordering.top_k_per_group(group, value, tie_break, k=2, descending=True)
    assert positions.tolist() == [1, 3, 0, 2]
    assert rank.tolist() == [1, 2, 1, 2]


@pytest.mark.parametrize(
    "values",
    [
        pa.chunked_array([["b", None, "a"], ["c", "a"]]),
        pa.array([3.5, None, -1.0, 3.5]),
        pa.array([20, 3, None, 3], type=pa.int64()),
        pa.array(["x", "y", "x"]).dictionary_encode(),
    ],
    ids=["strings", "floats", "integers", "dictionary"],
)
def test_sort_codes_order_like_the_values_with_nulls_last(values: pa.Array) -> None:
    arrow_codes = ordering.sort_codes(values)
    python = values.to_pylist()
    present = sorted({value for value in python if value is not None})
    expected = [present.index(value) if value is not None else len(present) for value in python]
    assert arrow_codes.tolist() == expected
    as_pandas = pd.Series(python, dtype="str" if isinstance(present[0], str) else "float64")
    assert ordering.sort_codes(as_pandas).tolist() == expected


def test_lexicographic_order_falls_back_to_lexsort_for_wide_keys() -> None:
    generator = np.random.default_rng(3)
    columns = [generator.integers(0, 2**40, 50), generator.integers(0, 2**40, 50)]
    columns[0][:25] = 7  # ties in the first column
    expected = np.lexsort((columns[1], columns[0]))
    assert ordering.lexicographic_order(columns).tolist() == expected.tolist()


def test_to_frame_sorts_like_arrow_sort_by() -> None:
    rows = candidates(4).assign(
        cutoff_date=lambda frame: pd.to_datetime("2026-01-05").date(),
        split="train",
        label=lambda frame: (frame["score"] > 2).astype(np.int64),
        score_feature=lambda frame: frame["score"],
        segment=lambda frame: frame["user_id"].str[-1],
    )
    table = pa.Table.from_pandas(rows.drop(columns="score"), preserve_index=False)
    keys = ["user_id", "cutoff_date", "item_id"]
    expected = to_frame(table.sort_by([(key, "ascending") for key in keys]), SPEC)
    result = to_frame(table, SPEC, sort_by=keys)
    pd.testing.assert_frame_equal(result, expected)


def test_split_frame_keeps_positive_groups_sorted_with_their_sizes() -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["b", "a", "b", "a", "c", "a", "b"],
            "item_id": ["i2", "i1", "i1", "i3", "i1", "i2", "i3"],
            "cutoff_date": [1, 1, 1, 1, 1, 2, 1],
            "split": ["train"] * 6 + ["test"],
            "label": [0, 1, 1, 0, 0, 0, 1],
            "score_feature": np.arange(7, dtype=np.float32),
            "segment": pd.Categorical(["x"] * 7),
        }
    )
    data = split_frame(frame, SPEC, "train", positive_groups_only=True)
    assert data.frame[["user_id", "item_id"]].values.tolist() == [
        ["a", "i1"],
        ["a", "i3"],
        ["b", "i1"],
        ["b", "i2"],
    ]
    assert data.group_sizes.tolist() == [2, 2]
    everything = split_frame(frame, SPEC, "train", positive_groups_only=False)
    assert everything.group_sizes.tolist() == [2, 1, 2, 1]
