"""Tests for the top-K ranking metrics: hand-computed cases, edge cases and a brute-force check."""

from __future__ import annotations

from math import log2

import numpy as np
import pandas as pd
import pytest

from trainer.metrics import metrics_table, per_user_metrics, ranking_metrics


def recs(rows: dict[str, list[str]]) -> pd.DataFrame:
    """Recommendation lists given best-first, ranked 1..n per user."""
    return pd.DataFrame(
        [
            {"user_id": user, "item_id": item, "rank": rank}
            for user, items in rows.items()
            for rank, item in enumerate(items, start=1)
        ],
        columns=["user_id", "item_id", "rank"],
    )


def positives(rows: dict[str, list[str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"user_id": user, "item_id": item} for user, items in rows.items() for item in items],
        columns=["user_id", "item_id"],
    )


def metrics(
    recommendations: pd.DataFrame,
    relevant: pd.DataFrame,
    ks: tuple[int, ...] = (2, 4),
    catalogue_size: int = 100,
) -> dict[str, float]:
    return ranking_metrics(recommendations, relevant, ks=ks, catalogue_size=catalogue_size)


def test_single_user_hand_computed() -> None:
    # P = {a, c}, list [a, b, c, d]: relevance 1, 0, 1, 0.
    result = metrics(recs({"u": ["a", "b", "c", "d"]}), positives({"u": ["a", "c"]}))

    # @2: top-2 = [a, b], one hit out of |P| = 2.
    assert result["recall@2"] == pytest.approx(1 / 2)
    # DCG = 1/log2(2) = 1; IDCG = 1/log2(2) + 1/log2(3) = 1 + 1/log2(3).
    assert result["ndcg@2"] == pytest.approx(1 / (1 + 1 / log2(3)))
    # AP@2 = (1/min(2, 2)) * (precision@1 * 1) = (1/2)(1).
    assert result["map@2"] == pytest.approx(0.5)
    assert result["precision@2"] == pytest.approx(1 / 2)

    # @4: both positives found, at positions 1 and 3.
    assert result["recall@4"] == pytest.approx(1.0)
    # DCG = 1 + 1/log2(4); IDCG over min(4, 2) = 2 positions = 1 + 1/log2(3).
    assert result["ndcg@4"] == pytest.approx((1 + 1 / log2(4)) / (1 + 1 / log2(3)))
    # AP@4 = (1/2) * (precision@1 + precision@3) = (1/2)(1 + 2/3).
    assert result["map@4"] == pytest.approx((1 / 2) * (1 + 2 / 3))
    assert result["precision@4"] == pytest.approx(2 / 4)

    # Coverage: 2 and 4 distinct items out of a catalogue of 100.
    assert result["coverage@2"] == pytest.approx(2 / 100)
    assert result["coverage@4"] == pytest.approx(4 / 100)
    assert result["users_evaluated"] == 1
    assert result["users_with_recommendations"] == 1


def test_unreachable_positive_still_counts_in_recall_denominator() -> None:
    # P = {a, z}; z is never recommended. List [a, b].
    result = metrics(recs({"u": ["a", "b"]}), positives({"u": ["a", "z"]}), ks=(2, 10))

    # recall = 1 hit / |P| = 1/2, at any K: z is charged even though no candidate had it.
    assert result["recall@2"] == pytest.approx(1 / 2)
    assert result["recall@10"] == pytest.approx(1 / 2)
    # IDCG@2 assumes both positives could be placed: DCG 1 over IDCG 1 + 1/log2(3).
    assert result["ndcg@2"] == pytest.approx(1 / (1 + 1 / log2(3)))
    # AP@10 = (1/min(10, 2)) * precision@1 = (1/2)(1).
    assert result["map@10"] == pytest.approx(1 / 2)
    # precision@10 = 1 hit / 10, although only 2 items were recommended.
    assert result["precision@10"] == pytest.approx(1 / 10)


def test_user_without_recommendations_scores_zero() -> None:
    # u1: P = {a}, list [a] -> perfect (1 on recall, ndcg, map, precision@1).
    # u2: P = {b}, no list at all -> 0 on everything.
    result = metrics(recs({"u1": ["a"]}), positives({"u1": ["a"], "u2": ["b"]}), ks=(1,))

    for name in ("recall@1", "ndcg@1", "map@1", "precision@1"):
        assert result[name] == pytest.approx((1 + 0) / 2), name
    assert result["users_evaluated"] == 2
    assert result["users_with_recommendations"] == pytest.approx(1 / 2)


@pytest.mark.parametrize(
    "empty",
    [
        pd.DataFrame({"user_id": [], "item_id": [], "rank": []}),
        pd.DataFrame(columns=["user_id", "item_id", "rank"]),  # all-object dtypes
    ],
)
def test_no_recommendations_at_all(empty: pd.DataFrame) -> None:
    result = metrics(empty, positives({"u1": ["a"], "u2": ["b", "c"]}))

    assert {value for key, value in result.items() if "@" in key} == {0.0}
    assert result["users_evaluated"] == 2
    assert result["users_with_recommendations"] == 0


def test_duplicate_recommendation_keeps_best_rank_and_frees_the_slot() -> None:
    # P = {a, c}; rows (a, 1), (a, 2), (c, 3) -> deduplicated list [a, c].
    recommendations = pd.DataFrame(
        {"user_id": ["u"] * 3, "item_id": ["a", "a", "c"], "rank": [1, 2, 3]}
    )
    result = metrics(recommendations, positives({"u": ["a", "c"]}), ks=(2,))

    # Both positives in the top 2: recall 2/2, precision 2/2, DCG = IDCG, AP = (1/2)(1 + 2/2).
    assert result["recall@2"] == pytest.approx(1.0)
    assert result["precision@2"] == pytest.approx(1.0)
    assert result["ndcg@2"] == pytest.approx(1.0)
    assert result["map@2"] == pytest.approx(1.0)
    assert result["coverage@2"] == pytest.approx(2 / 100)


def test_duplicate_recommendation_uses_its_best_rank_whatever_the_row_order() -> None:
    # P = {a}; a appears at ranks 5 and 2 (worse row first), b at 1, c at 3 -> list [b, a, c].
    recommendations = pd.DataFrame(
        {"user_id": ["u"] * 4, "item_id": ["a", "c", "a", "b"], "rank": [5, 3, 2, 1]}
    )
    result = metrics(recommendations, positives({"u": ["a"]}), ks=(1, 3))

    assert result["recall@1"] == 0
    assert result["recall@3"] == pytest.approx(1.0)
    # a at position 2: DCG = 1/log2(3), IDCG = 1; AP@3 = (1/1) * precision@2 = 1/2.
    assert result["ndcg@3"] == pytest.approx(1 / log2(3))
    assert result["map@3"] == pytest.approx(1 / 2)
    # Three distinct items after deduplication.
    assert result["precision@3"] == pytest.approx(1 / 3)
    assert result["coverage@3"] == pytest.approx(3 / 100)


def test_duplicate_positives_are_a_set() -> None:
    # P = {a, a, c} is |P| = 2, so one hit out of 2.
    result = metrics(recs({"u": ["a", "b"]}), positives({"u": ["a", "a", "c"]}), ks=(2,))
    assert result["recall@2"] == pytest.approx(1 / 2)


def test_non_contiguous_ranks_are_sorted_not_trusted() -> None:
    # Ranks 30, 10, 20 for b, a, c -> list [a, c, b]; P = {b} sits at position 3.
    recommendations = pd.DataFrame(
        {"user_id": ["u"] * 3, "item_id": ["b", "a", "c"], "rank": [30, 10, 20]}
    )
    result = metrics(recommendations, positives({"u": ["b"]}), ks=(2, 3))

    assert result["recall@2"] == 0
    assert result["recall@3"] == pytest.approx(1.0)
    # DCG = 1/log2(4) = 1/2, IDCG = 1; AP@3 = precision@3 = 1/3.
    assert result["ndcg@3"] == pytest.approx(1 / 2)
    assert result["map@3"] == pytest.approx(1 / 3)


def test_float_rank_ties_break_by_item_id() -> None:
    # b and a tie at rank 0.5 -> ordered a, b; P = {b} lands at position 2.
    recommendations = pd.DataFrame(
        {"user_id": ["u"] * 3, "item_id": ["b", "a", "c"], "rank": [0.5, 0.5, 0.7]}
    )
    result = metrics(recommendations, positives({"u": ["b"]}), ks=(1, 2))

    assert result["recall@1"] == 0
    # DCG@2 = 1/log2(3), IDCG = 1.
    assert result["ndcg@2"] == pytest.approx(1 / log2(3))


def test_coverage_counts_only_evaluated_users_top_k() -> None:
    # u1 [a, b, c], u2 [b, d, e]; u3 has no positives, so its [x, y] is ignored everywhere.
    result = metrics(
        recs({"u1": ["a", "b", "c"], "u2": ["b", "d", "e"], "u3": ["x", "y"]}),
        positives({"u1": ["a"], "u2": ["d"]}),
        ks=(1, 2, 3),
        catalogue_size=10,
    )

    # @1: {a, b}; @2: {a, b, d}; @3: {a, b, c, d, e} -- over a catalogue of 10.
    assert result["coverage@1"] == pytest.approx(2 / 10)
    assert result["coverage@2"] == pytest.approx(3 / 10)
    assert result["coverage@3"] == pytest.approx(5 / 10)
    assert result["users_evaluated"] == 2
    assert result["users_with_recommendations"] == 1


def test_macro_average_over_two_users() -> None:
    # u1: P = {a, c}, list [a, b, c, d] (the hand-computed case above).
    # u2: P = {x},    list [y, x]: recall@2 = 1, ndcg@2 = 1/log2(3), AP@2 = (1/1)(1/2),
    #     precision@2 = 1/2.
    result = metrics(
        recs({"u1": ["a", "b", "c", "d"], "u2": ["y", "x"]}),
        positives({"u1": ["a", "c"], "u2": ["x"]}),
        ks=(2,),
    )

    assert result["recall@2"] == pytest.approx((1 / 2 + 1) / 2)
    assert result["ndcg@2"] == pytest.approx((1 / (1 + 1 / log2(3)) + 1 / log2(3)) / 2)
    assert result["map@2"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert result["precision@2"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    # Distinct items in the top 2 lists: {a, b, y, x}.
    assert result["coverage@2"] == pytest.approx(4 / 100)


def test_integer_ids_and_row_order_do_not_matter() -> None:
    frame = recs({"u1": ["a", "b", "c", "d"], "u2": ["y", "x"]})
    relevant = positives({"u1": ["a", "c"], "u2": ["x"]})
    as_strings = metrics(frame, relevant)

    user_ids = {"u1": 7, "u2": 3}
    item_ids = {item: number for number, item in enumerate("abcdxy")}
    as_integers = metrics(
        frame.replace({"user_id": user_ids, "item_id": item_ids}).sample(frac=1, random_state=1),
        relevant.replace({"user_id": user_ids, "item_id": item_ids}),
    )
    assert as_integers == pytest.approx(as_strings)


def test_inputs_are_not_modified() -> None:
    frame = recs({"u": ["b", "a", "b"]})
    relevant = positives({"u": ["a", "a"]})
    frame_before, relevant_before = frame.copy(), relevant.copy()
    metrics(frame, relevant)
    pd.testing.assert_frame_equal(frame, frame_before)
    pd.testing.assert_frame_equal(relevant, relevant_before)


@pytest.mark.parametrize("seed", range(5))
def test_perfect_ranking_property(seed: int) -> None:
    # Every user's list starts with all their positives (shuffled), then non-positives.
    rng = np.random.default_rng(seed)
    ks = (1, 3, 5, 10)
    list_rows, positive_rows, sizes = [], [], []
    for user in range(50):
        size = int(rng.integers(1, 9))
        items = rng.permutation(40)
        sizes.append(size)
        positive_rows += [(user, int(item)) for item in items[:size]]
        list_rows += [(user, int(item), rank) for rank, item in enumerate(items[:15], start=1)]
    result = ranking_metrics(
        pd.DataFrame(list_rows, columns=["user_id", "item_id", "rank"]),
        pd.DataFrame(positive_rows, columns=["user_id", "item_id"]),
        ks=ks,
        catalogue_size=40,
    )

    for k in ks:
        assert result[f"ndcg@{k}"] == pytest.approx(1.0)
        assert result[f"map@{k}"] == pytest.approx(1.0)
        assert result[f"recall@{k}"] == pytest.approx(np.mean([min(k, n) / n for n in sizes]))


def reference_metrics(
    recommendations: pd.DataFrame, relevant: pd.DataFrame, k: int
) -> dict[str, float]:
    """Straightforward per-user loop, the definitions written out one at a time."""
    scores: dict[str, list[float]] = {"recall": [], "ndcg": [], "map": [], "precision": []}
    for user, group in relevant.groupby("user_id"):
        wanted = set(group["item_id"])
        rows = recommendations[recommendations["user_id"] == user]
        rows = rows.sort_values(["rank", "item_id"]).drop_duplicates("item_id")
        top = list(rows["item_id"])[:k]
        hits = [item in wanted for item in top]
        attainable = min(k, len(wanted))
        scores["recall"].append(sum(hits) / len(wanted))
        scores["precision"].append(sum(hits) / k)
        dcg = sum(1 / log2(i + 2) for i, hit in enumerate(hits) if hit)
        scores["ndcg"].append(dcg / sum(1 / log2(i + 2) for i in range(attainable)))
        precision_sum = sum(sum(hits[: i + 1]) / (i + 1) for i, hit in enumerate(hits) if hit)
        scores["map"].append(precision_sum / attainable)
    return {f"{name}@{k}": float(np.mean(values)) for name, values in scores.items()}


@pytest.mark.parametrize("seed", range(3))
def test_matches_brute_force_reference(seed: int) -> None:
    # Random lists with duplicates, ties, gaps in ranks, users without lists and extra users.
    rng = np.random.default_rng(seed)
    n = 600
    recommendations = pd.DataFrame(
        {
            "user_id": rng.integers(0, 60, n),
            "item_id": rng.integers(0, 30, n),
            "rank": rng.integers(1, 40, n),
        }
    )
    relevant = pd.DataFrame(
        {"user_id": rng.integers(0, 50, 150), "item_id": rng.integers(0, 30, 150)}
    )
    result = ranking_metrics(recommendations, relevant, ks=(1, 5, 10), catalogue_size=30)

    for k in (1, 5, 10):
        assert {key: result[key] for key in reference_metrics(recommendations, relevant, k)} == (
            pytest.approx(reference_metrics(recommendations, relevant, k))
        )


def reference_per_user(recommendations: pd.DataFrame, relevant: pd.DataFrame, k: int) -> dict:
    """The brute-force definitions above, one user at a time: user -> metric -> value."""
    return {
        user: reference_metrics(recommendations, relevant[relevant["user_id"] == user], k)
        for user in relevant["user_id"].unique()
    }


@pytest.mark.parametrize("seed", range(3))
def test_per_user_metrics_match_brute_force_and_average_to_ranking_metrics(seed: int) -> None:
    rng = np.random.default_rng(seed)
    recommendations = pd.DataFrame(
        {
            "user_id": rng.integers(0, 60, 600),
            "item_id": rng.integers(0, 30, 600),
            "rank": rng.integers(1, 40, 600),
        }
    )
    relevant = pd.DataFrame(
        {"user_id": rng.integers(0, 50, 150), "item_id": rng.integers(0, 30, 150)}
    )
    ks = (1, 5, 10)
    per_user = per_user_metrics(recommendations, relevant, ks=ks)

    assert per_user.index.name == "user_id"
    assert list(per_user.index) == sorted(relevant["user_id"].unique())
    assert list(per_user.columns) == [
        f"{metric}@{k}" for k in ks for metric in ("recall", "ndcg", "map", "precision")
    ]
    for k in ks:
        for user, expected in reference_per_user(recommendations, relevant, k).items():
            got = per_user.loc[user, list(expected)].to_dict()
            assert got == pytest.approx(expected), (user, k)
    summary = ranking_metrics(recommendations, relevant, ks=ks, catalogue_size=30)
    for column in per_user.columns:
        assert per_user[column].mean() == pytest.approx(summary[column], rel=1e-15, abs=0)


def test_per_user_metrics_give_zero_to_a_user_without_a_list() -> None:
    per_user = per_user_metrics(recs({"u1": ["a"]}), positives({"u2": ["b"], "u1": ["a"]}), ks=(1,))
    assert per_user.to_dict("index") == {
        "u1": {"recall@1": 1.0, "ndcg@1": 1.0, "map@1": 1.0, "precision@1": 1.0},
        "u2": {"recall@1": 0.0, "ndcg@1": 0.0, "map@1": 0.0, "precision@1": 0.0},
    }
    with pytest.raises(ValueError, match="no positives to evaluate against"):
        per_user_metrics(recs({"u": ["a"]}), positives({}), ks=(1,))


@pytest.mark.parametrize(
    ("frame_name", "column"),
    [
        ("recommendations", "user_id"),
        ("recommendations", "item_id"),
        ("recommendations", "rank"),
        ("positives", "user_id"),
        ("positives", "item_id"),
    ],
)
def test_missing_column_names_frame_and_column(frame_name: str, column: str) -> None:
    frames = {"recommendations": recs({"u": ["a"]}), "positives": positives({"u": ["a"]})}
    frames[frame_name] = frames[frame_name].drop(columns=column)
    with pytest.raises(ValueError, match=rf"{frame_name} is missing column '{column}'"):
        metrics(frames["recommendations"], frames["positives"])


@pytest.mark.parametrize("ks", [(0,), (10, -1), (), (2.5,)])
def test_invalid_k(ks: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"K|cut-off"):
        metrics(recs({"u": ["a"]}), positives({"u": ["a"]}), ks=ks)


@pytest.mark.parametrize("catalogue_size", [0, -3])
def test_invalid_catalogue_size(catalogue_size: int) -> None:
    with pytest.raises(ValueError, match="catalogue_size"):
        metrics(recs({"u": ["a"]}), positives({"u": ["a"]}), catalogue_size=catalogue_size)


def test_empty_positives() -> None:
    with pytest.raises(ValueError, match="no positives to evaluate against"):
        metrics(recs({"u": ["a"]}), positives({}))


def test_missing_values_are_rejected() -> None:
    frame = recs({"u": ["a", "b"]})
    frame.loc[1, "rank"] = np.nan
    with pytest.raises(ValueError, match="recommendations column 'rank' has missing values"):
        metrics(frame, positives({"u": ["a"]}))


def test_ids_of_incomparable_types_are_rejected() -> None:
    # Integer item ids against string item ids would silently score 0.
    with pytest.raises(ValueError, match=r"item_id .* can never match"):
        metrics(recs({"u": ["1"]}), pd.DataFrame({"user_id": ["u"], "item_id": [1]}))


def test_metrics_table_layout() -> None:
    table = metrics_table(
        {
            "model": {"recall@10": 0.123456, "ndcg@10": 0.5},
            "popularity": {"recall@10": 0.05},
        },
        columns=["recall@10", "ndcg@10"],
    )

    assert table.splitlines() == [
        "ranker      recall@10  ndcg@10",
        "----------  ---------  -------",
        "model          0.1235   0.5000",
        "popularity     0.0500        -",
    ]
