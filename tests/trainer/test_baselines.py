"""The baselines on cases worked out by hand, and the shape of every baseline's lists."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pandas as pd
import pytest

from trainer import baselines
from trainer.baselines import (
    HISTORY_COLUMNS,
    AlsParams,
    als,
    compute_baselines,
    global_popularity,
    item_knn,
    popularity,
)
from trainer.errors import TrainerInputError

CUTOFF = pd.Timestamp("2024-03-01", tz="UTC")


def history_of(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    """(user, item, last event) rows; one event each, weight 1."""
    return pd.DataFrame(
        {
            "user_id": [user for user, _, _ in rows],
            "item_id": [item for _, item, _ in rows],
            "event_count": 1,
            "interaction_weight": 1.0,
            "last_event_at": pd.to_datetime([at for _, _, at in rows], utc=True, format="ISO8601"),
        },
        columns=list(HISTORY_COLUMNS),
    )


def lists_of(frame: pd.DataFrame) -> dict[str, list[str]]:
    return frame.groupby("user_id", sort=True)["item_id"].agg(list).to_dict()


# Popularity, distinct users: all history b 3, d 3, a 2, c 2, e 1. Last 7 days [02-23, 03-01):
# d 2 (02-23 00:00 is inside, 02-22 23:59:59 is not), b 1, c 1. Last 30 days [01-31, 03-01):
# b 3, d 3, c 2, a 1.
POPULARITY_HISTORY = history_of(
    [
        ("u1", "a", "2024-01-10"),
        ("u1", "b", "2024-02-10"),
        ("u2", "a", "2024-02-05"),
        ("u2", "b", "2024-02-20"),
        ("u2", "c", "2024-02-28 23:59:59"),
        ("u3", "b", "2024-02-25"),
        ("u3", "d", "2024-02-23 00:00:00"),
        ("u4", "d", "2024-02-29"),
        ("u4", "c", "2024-02-10"),
        ("u5", "e", "2024-01-01"),
        ("u5", "d", "2024-02-22 23:59:59"),  # just before the 7-day window
    ]
)


def test_popularity_all_history_ranks_by_distinct_users_ties_by_item_id() -> None:
    ranked = popularity(POPULARITY_HISTORY, ["u1", "u4"], CUTOFF, 3, None, False)
    # b and d both have 3 users: b first by item_id; a and c (2 users) likewise.
    assert lists_of(ranked) == {"u1": ["b", "d", "a"], "u4": ["b", "d", "a"]}
    assert ranked["rank"].tolist() == [1, 2, 3, 1, 2, 3]


def test_popularity_windows_count_users_whose_last_event_is_in_the_window() -> None:
    week = popularity(POPULARITY_HISTORY, ["new"], CUTOFF, 5, 7, False)
    month = popularity(POPULARITY_HISTORY, ["new"], CUTOFF, 5, 30, False)
    # 7 days: d 2 (u3 at the window's first second, u4), b 1, c 1; a and e at zero, by id.
    assert lists_of(week) == {"new": ["d", "b", "c", "a", "e"]}
    # 30 days: b 3, d 3, c 2, a 1 (u2 only: u1's a is older), e 0.
    assert lists_of(month) == {"new": ["b", "d", "c", "a", "e"]}


def test_popularity_excludes_each_users_own_items() -> None:
    ranked = popularity(POPULARITY_HISTORY, ["u1", "u3", "u5"], CUTOFF, 2, 7, True)
    # Week order d, b, c, a, e without the user's own items (from all history, not the window).
    assert lists_of(ranked) == {"u1": ["d", "c"], "u3": ["c", "a"], "u5": ["b", "c"]}


def test_global_popularity_is_one_list_with_seen_items() -> None:
    ranked = global_popularity(POPULARITY_HISTORY, ["u2", "u1", "cold"], CUTOFF, 2)
    assert lists_of(ranked) == {"cold": ["b", "d"], "u1": ["b", "d"], "u2": ["b", "d"]}
    assert ranked["user_id"].tolist() == ["cold", "cold", "u1", "u1", "u2", "u2"]


def test_k_larger_than_the_catalogue_lists_every_allowed_item_once() -> None:
    ranked = popularity(POPULARITY_HISTORY, ["u2", "cold"], CUTOFF, 50, None, True)
    assert lists_of(ranked) == {"cold": ["b", "d", "a", "c", "e"], "u2": ["d", "e"]}
    assert ranked.loc[ranked["user_id"] == "u2", "rank"].tolist() == [1, 2]
    knn = item_knn(POPULARITY_HISTORY, ["u2"], CUTOFF, 50, True)
    assert sorted(lists_of(knn)["u2"]) == ["d", "e"]


# kNN by hand on 4 users x 5 items: u1 {a, b}, u2 {a, b, c}, u3 {b, c, d}, u4 {d, e}.
# Users per item: a 2, b 3, c 2, d 2, e 1. Co-occurrence: ab 2, ac 1, bc 2, bd 1, cd 1, de 1.
# Cosine: ab = bc = 2/sqrt(6) = 0.8165, ac = cd = 1/2, bd = 1/sqrt(6) = 0.4082,
# de = 1/sqrt(2) = 0.7071, the rest 0. All-history popularity: b, a, c, d, e.
KNN_HISTORY = history_of(
    [
        (user, item, "2024-02-01")
        for user, items in {"u1": "ab", "u2": "abc", "u3": "bcd", "u4": "de"}.items()
        for item in items
    ]
)


def test_item_neighbours_are_the_cosine_similarities() -> None:
    interactions = baselines._Interactions.of(KNN_HISTORY, CUTOFF)
    binary = interactions.matrix(np.ones(len(KNN_HISTORY)))
    s6, s2 = np.sqrt(6), np.sqrt(2)
    expected = np.array(
        [
            [0, 2 / s6, 1 / 2, 0, 0],
            [2 / s6, 0, 2 / s6, 1 / s6, 0],
            [1 / 2, 2 / s6, 0, 1 / 2, 0],
            [0, 1 / s6, 1 / 2, 0, 1 / s2],
            [0, 0, 0, 1 / s2, 0],
        ]
    )
    np.testing.assert_allclose(baselines._item_neighbours(binary, 50).toarray(), expected)
    # One neighbour each: b's two at 0.8165 tie, a wins by item_id.
    top_one = baselines._item_neighbours(binary, 1).toarray()
    assert [interactions.item_ids[row.argmax()] for row in top_one] == ["b", "a", "b", "e", "d"]
    assert (top_one > 0).sum(axis=1).tolist() == [1, 1, 1, 1, 1]


def test_top_k_of_a_score_block_breaks_ties_by_column_and_skips_the_unscored() -> None:
    scores = np.array([[1.0, 2.0, 2.0, 2.0, -np.inf], [-np.inf, -np.inf, 0.5, -np.inf, 3.0]])
    row, column, rank = baselines._top_k_dense(scores, 2)
    assert row.tolist() == [0, 0, 1, 1]
    assert column.tolist() == [1, 2, 4, 2]
    assert rank.tolist() == [1, 2, 1, 2]
    row, column, rank = baselines._top_k_dense(scores, 3, above=0.5)
    assert (row.tolist(), column.tolist(), rank.tolist()) == (
        [0, 0, 0, 1],
        [1, 2, 3, 4],
        [1, 2, 3, 1],
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top_k_of_stored_values_is_the_dense_top_k_of_the_scored_cells(seed: int) -> None:
    # Rows from empty to full, with ties (values on a coarse grid) and rows shorter than k.
    rng = np.random.default_rng(seed)
    n_rows, n_columns, k = 60, 300, 7
    dense = np.where(
        rng.random((n_rows, n_columns)) < rng.random((n_rows, 1)) ** 3,
        rng.integers(1, 6, (n_rows, n_columns)) / 4.0,
        0.0,
    )
    dense[:3] = 0.0
    row, column = np.nonzero(dense)
    shuffled = rng.permutation(len(row))  # stored values need not come in row order
    row, column = row[shuffled], column[shuffled]

    positions, rank = baselines._top_k_stored(row, dense[row, column], column, n_rows, k)

    expected = baselines._top_k_dense(dense, k, above=0.0)
    assert row[positions].tolist() == expected[0].tolist()
    assert column[positions].tolist() == expected[1].tolist()
    assert rank.tolist() == expected[2].tolist()
    assert (np.bincount(row[positions], minlength=n_rows) <= k).all()


def test_item_knn_scores_sum_similarities_to_the_users_items() -> None:
    ranked = item_knn(KNN_HISTORY, ["u1", "u3", "u4"], CUTOFF, 3, True)
    # u1: c = ac + bc = 1.3165, d = bd = 0.4082, e unscored (popularity fill).
    # u3: a = ab + ac = 1.3165, e = de = 0.7071. u4: c = cd = 0.5, b = bd = 0.4082, then a.
    assert lists_of(ranked) == {"u1": ["c", "d", "e"], "u3": ["a", "e"], "u4": ["c", "b", "a"]}


def test_item_knn_keeps_only_each_items_top_neighbours() -> None:
    ranked = item_knn(KNN_HISTORY, ["u1", "u3"], CUTOFF, 3, True, neighbours=1)
    # a -> b, b -> a, c -> b, d -> e, e -> d. u1 {a, b} reaches only its own items: all filled
    # from popularity; u3 {b, c, d} reaches a (0.8165) and e (0.7071).
    assert lists_of(ranked) == {"u1": ["c", "d", "e"], "u3": ["a", "e"]}


def test_item_knn_with_seen_items_breaks_ties_by_item_id() -> None:
    ranked = item_knn(KNN_HISTORY, ["u1"], CUTOFF, 5, False)
    # c 1.3165, a = sim(b, a) 0.8165 ties b = sim(a, b), d 0.4082, e filled.
    assert lists_of(ranked) == {"u1": ["c", "a", "b", "d", "e"]}


def test_cold_users_get_their_baselines_popularity_list() -> None:
    results = compute_baselines(
        POPULARITY_HISTORY, ["cold"], CUTOFF, k=3, exclude_seen=True, als_params=AlsParams()
    )
    all_history = ["b", "d", "a"]
    assert lists_of(results["popularity_7d"]) == {"cold": ["d", "b", "c"]}
    assert lists_of(results["popularity_30d"]) == {"cold": ["b", "d", "c"]}
    for name in ("popularity_all", "global_popularity", "item_knn", "als"):
        assert lists_of(results[name]) == {"cold": all_history}, name


def random_history(seed: int, users: int = 60, items: int = 25, rows: int = 500) -> pd.DataFrame:
    generator = np.random.default_rng(seed)
    keys = np.unique(generator.integers(0, users * items, rows))
    counts = generator.integers(1, 5, len(keys))
    return pd.DataFrame(
        {
            "user_id": [f"u{key // items}" for key in keys],
            "item_id": [f"i{key % items}" for key in keys],
            "event_count": counts,
            "interaction_weight": counts * 1.5,
            "last_event_at": CUTOFF
            - pd.to_timedelta(generator.integers(1, 60 * 86400, len(keys)), "s"),
        }
    )


@pytest.mark.parametrize("exclude_seen", [True, False])
def test_every_baseline_lists_k_distinct_items_per_user(exclude_seen: bool) -> None:
    history = random_history(1)
    users = np.array(["u3", "u1", "cold2", "u3", "cold1", "u59", "u10"], dtype=object)
    results = compute_baselines(history, users, CUTOFF, k=10, exclude_seen=exclude_seen)
    assert list(results) == [
        "popularity_all",
        "popularity_7d",
        "popularity_30d",
        "global_popularity",
        "item_knn",
        "als",
    ]
    seen = set(zip(history["user_id"], history["item_id"], strict=True))
    for name, ranked in results.items():
        assert list(ranked.columns) == ["user_id", "item_id", "rank"], name
        assert ranked["rank"].dtype == np.int64
        assert sorted(set(users)) == sorted(ranked["user_id"].unique())
        assert ranked["user_id"].is_monotonic_increasing
        assert (
            ranked.groupby("user_id")["rank"].agg(list).map(lambda r: r == list(range(1, 11))).all()
        )
        assert not ranked.duplicated(["user_id", "item_id"]).any(), name
        pairs = set(zip(ranked["user_id"], ranked["item_id"], strict=True))
        if exclude_seen and name != "global_popularity":
            assert not pairs & seen, name
    everyones = results["global_popularity"].groupby("user_id")["item_id"].agg(tuple)
    assert everyones.nunique() == 1
    if exclude_seen:  # the same items as popularity_all only for users who saw none of them
        assert set(everyones.iloc[0]) != set(lists_of(results["popularity_all"])["u3"])
    else:
        pd.testing.assert_frame_equal(results["global_popularity"], results["popularity_all"])


def reference_knn(history: pd.DataFrame, user: str, k: int, neighbours: int) -> list[str]:
    """Item-kNN spelled out with dense matrices and sorted()."""
    matrix = pd.crosstab(history["user_id"], history["item_id"]).clip(upper=1).astype(float)
    items = list(matrix.columns)
    x = matrix.to_numpy()
    counts = x.sum(axis=0)
    cosine = (x.T @ x) / np.sqrt(np.outer(counts, counts))
    np.fill_diagonal(cosine, 0)
    kept = np.zeros_like(cosine)
    for i in range(len(items)):
        best = sorted(range(len(items)), key=lambda j: (-cosine[i, j], j))[:neighbours]
        kept[i, best] = cosine[i, best]
    scores = x[list(matrix.index).index(user)] @ kept
    own = set(history.loc[history["user_id"] == user, "item_id"])
    scored = [j for j in range(len(items)) if scores[j] > 0 and items[j] not in own]
    ranked = [items[j] for j in sorted(scored, key=lambda j: (-round(scores[j], 9), j))][:k]
    fill = [
        item
        for item in history.groupby("item_id")
        .size()
        .sort_index()
        .sort_values(ascending=False, kind="stable")
        .index
        if item not in own and item not in ranked
    ]
    return ranked + fill[: k - len(ranked)]


@pytest.mark.parametrize("neighbours", [3, 50])
def test_item_knn_agrees_with_a_dense_reference_in_small_blocks(
    neighbours: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = random_history(2, users=40, items=15, rows=150)
    users = sorted(history["user_id"].unique())
    # Blocks of a few rows, so the chunked paths run many times.
    monkeypatch.setattr(baselines, "BLOCK_CELLS", 40)
    ranked = lists_of(item_knn(history, users, CUTOFF, 6, True, neighbours=neighbours))
    for user in users:
        assert ranked[user] == reference_knn(history, user, 6, neighbours), user


def planted_blocks() -> pd.DataFrame:
    """Two groups of 12 users; each saw all 8 items of its group but two, none of the other's."""
    rows = []
    for group in ("x", "y"):
        for user in range(12):
            held_out = {user % 8, (user + 3) % 8}
            rows += [
                (f"{group}{user:02d}", f"{group}_item{item}", "2024-02-01")
                for item in range(8)
                if item not in held_out
            ]
    return history_of(rows)


def test_als_recommends_the_unseen_items_of_the_users_block() -> None:
    history = planted_blocks()
    users = sorted(history["user_id"].unique())
    ranked = lists_of(als(history, users, CUTOFF, 2, True, factors=4, iterations=20))
    for user in users:
        group, number = user[0], int(user[1:])
        held_out = {f"{group}_item{number % 8}", f"{group}_item{(number + 3) % 8}"}
        assert set(ranked[user]) == held_out, user


def test_als_is_deterministic_for_a_seed() -> None:
    history = random_history(3)
    users = sorted(history["user_id"].unique())
    first = als(history, users, CUTOFF, 5, True, seed=11, threads=2)
    again = als(history, users, CUTOFF, 5, True, seed=11, threads=1)
    pd.testing.assert_frame_equal(first, again)
    other_seed = als(history, users, CUTOFF, 5, True, seed=12, threads=1)
    assert not first.equals(other_seed)


def test_missing_implicit_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "implicit.cpu.als", None)
    with pytest.raises(TrainerInputError, match=r"evaluation"):
        als(KNN_HISTORY, ["u1"], CUTOFF, 2, True)
    # Without ALS the other baselines need no implicit.
    results = compute_baselines(
        KNN_HISTORY, ["u1"], CUTOFF, k=2, exclude_seen=True, als_params=None
    )
    assert "als" not in results


def test_history_at_or_after_the_cutoff_is_refused() -> None:
    late = history_of([("u1", "a", "2024-03-01 00:00:00")])
    with pytest.raises(TrainerInputError, match="at or after the cutoff"):
        popularity(late, ["u1"], CUTOFF, 2, None, True)


def test_history_with_a_pair_twice_is_refused() -> None:
    twice = history_of([("u1", "a", "2024-02-01"), ("u2", "a", "2024-02-01")] * 2)
    with pytest.raises(TrainerInputError, match="one row per pair"):
        item_knn(twice, ["u1"], CUTOFF, 2, True)


def test_compute_baselines_logs_each_baselines_time(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="trainer.baselines"):
        compute_baselines(KNN_HISTORY, ["u1"], CUTOFF.date(), k=2, exclude_seen=True, windows=(14,))
    logged = [record.getMessage().split(":")[0] for record in caplog.records]
    assert logged == [
        "baseline popularity_14d",
        "baseline global_popularity",
        "baseline item_knn",
        "baseline als",
    ]
