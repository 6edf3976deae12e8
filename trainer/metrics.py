"""Top-K ranking metrics for offline evaluation, computed honestly.

Every evaluated user's denominator is their full set of held-out positives, including items no
candidate source could ever surface, so the numbers measure the whole pipeline (candidates plus
ranker) rather than the ranker on its own easy subset. Everything here is pure and vectorised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trainer.columns import ITEM_ID, USER_ID

RECOMMENDATION_COLUMNS = (USER_ID, ITEM_ID, "rank")
POSITIVE_COLUMNS = (USER_ID, ITEM_ID)


def ranking_metrics(
    recommendations: pd.DataFrame,
    positives: pd.DataFrame,
    *,
    ks: Sequence[int],
    catalogue_size: int,
) -> dict[str, float]:
    """Macro-averaged recall, nDCG, MAP, precision and coverage at each K in `ks`.

    `recommendations` has columns user_id, item_id, rank (1 = best, any number of rows per user,
    ranks need not be contiguous); each list is sorted by rank with ties broken by item_id, and a
    duplicated (user_id, item_id) keeps its best rank only. `positives` has columns user_id,
    item_id and must hold ALL relevant items of each evaluated user (duplicates are ignored).

    The evaluated users are exactly the distinct users in `positives`; recommendations for anyone
    else are ignored, and a user with no recommendations scores 0 on everything. Per user, with P
    the positive set and the list cut at K:

    - recall@K = |top-K ∩ P| / |P|. The denominator deliberately counts every positive, even
      those no candidate could reach, so candidate-generation misses are charged to the score.
    - ndcg@K uses binary relevance: DCG = Σ rel_i / log2(i + 1), IDCG over min(K, |P|) hits.
    - map@K: AP@K = (1 / min(K, |P|)) Σ precision@i · rel_i.
    - precision@K = |top-K ∩ P| / K, also for users with fewer than K recommendations.

    These are the means of `per_user_metrics`. coverage@K is the number of distinct items in the
    evaluated users' top-K lists divided by `catalogue_size` (lists of non-evaluated users do not
    count; the value is not clipped, so a too-small catalogue_size shows up as coverage above 1).
    Also returned: "users_evaluated" and "users_with_recommendations" (share of evaluated users
    with at least one recommendation).
    """
    _check_catalogue_size(catalogue_size)
    return score_lists(recommendations, positives, ks=ks).summary(catalogue_size=catalogue_size)


def per_user_metrics(
    recommendations: pd.DataFrame, positives: pd.DataFrame, *, ks: Sequence[int]
) -> pd.DataFrame:
    """Recall, nDCG, MAP and precision at each K for every user with a positive, one row each.

    The same definitions and inputs as `ranking_metrics` (whose macro-averages are these
    columns' means), kept per user so that their spread can be measured: bootstrap intervals
    and paired comparisons of two rankers resample these rows. Indexed by user_id (sorted), with
    columns "recall@K", "ndcg@K", "map@K", "precision@K" for each K in ascending order.
    """
    return score_lists(recommendations, positives, ks=ks).per_user_frame()


# The metrics that are a mean over users (coverage is a property of the whole set of lists).
PER_USER_METRICS = ("recall", "ndcg", "map", "precision")


@dataclass(frozen=True)
class ScoredLists:
    """Every evaluated user's metrics (in `users` order: first appearance in the positives),
    and the deduplicated list rows (user code, item code, position) that coverage counts.

    Scoring once and summarising per user segment gives exactly what `ranking_metrics` gives on
    the segment's positives: a user's values depend only on their own list and positives.
    """

    ks: list[int]
    users: np.ndarray
    per_user: dict[str, np.ndarray]
    has_recommendations: np.ndarray
    list_user: np.ndarray
    list_item: np.ndarray
    list_position: np.ndarray

    def summary(self, *, catalogue_size: int, users: np.ndarray | None = None) -> dict[str, float]:
        """`ranking_metrics` over the users where the boolean mask `users` is set (all: None)."""
        _check_catalogue_size(catalogue_size)
        if users is None:
            users = np.ones(len(self.users), dtype=bool)
        if not users.any():
            raise ValueError(_NO_POSITIVES)
        in_users = users[self.list_user]
        results: dict[str, float] = {}
        for k in self.ks:
            for metric in PER_USER_METRICS:
                results[f"{metric}@{k}"] = float(np.mean(self.per_user[f"{metric}@{k}"][users]))
            shown = self.list_item[in_users & (self.list_position <= k)]
            results[f"coverage@{k}"] = int(np.count_nonzero(np.bincount(shown))) / catalogue_size
        results["users_evaluated"] = float(np.count_nonzero(users))
        results["users_with_recommendations"] = float(np.mean(self.has_recommendations[users]))
        return results

    def per_user_frame(self) -> pd.DataFrame:
        """`per_user_metrics`: one row per evaluated user, indexed by user_id (sorted)."""
        frame = pd.DataFrame(self.per_user, index=pd.Index(self.users, name=USER_ID))
        return frame.sort_index(kind="stable")


_NO_POSITIVES = "no positives to evaluate against: every evaluated user needs at least one positive"


def _check_catalogue_size(catalogue_size: int) -> None:
    if isinstance(catalogue_size, bool) or catalogue_size < 1:
        raise ValueError(f"catalogue_size must be at least 1, got {catalogue_size!r}")


def score_lists(
    recommendations: pd.DataFrame, positives: pd.DataFrame, *, ks: Sequence[int]
) -> ScoredLists:
    """Validate the inputs of `ranking_metrics` and compute every per-user metric in one
    vectorised pass, for summaries over several user segments."""
    cutoffs = _validated_ks(ks)
    _require_columns(recommendations, "recommendations", RECOMMENDATION_COLUMNS)
    _require_columns(positives, "positives", POSITIVE_COLUMNS)
    if len(recommendations) and not pd.api.types.is_numeric_dtype(recommendations["rank"]):
        raise ValueError(
            f"recommendations column 'rank' must be numeric, got {recommendations['rank'].dtype}"
        )
    if positives.empty:
        raise ValueError(_NO_POSITIVES)

    if len(recommendations):
        _require_comparable_ids(recommendations, positives)

    # Code ids jointly over both frames (positives first, so evaluated users get codes below
    # n_users); item codes are sorted so rank ties break by item_id. Relevance then becomes an
    # integer-key lookup.
    n_positives = len(positives)
    user_codes, user_values = _codes(positives[USER_ID], recommendations[USER_ID], sort=False)
    item_codes, _ = _codes(positives[ITEM_ID], recommendations[ITEM_ID], sort=True)
    positive_user = user_codes[:n_positives]
    n_users = int(positive_user.max()) + 1
    n_items = int(item_codes.max()) + 1
    positive_keys = pd.unique(positive_user.astype(np.int64) * n_items + item_codes[:n_positives])
    positives_per_user = np.bincount(positive_keys // n_items, minlength=n_users)

    evaluated = user_codes[n_positives:] < n_users
    rec_user = user_codes[n_positives:][evaluated]
    rec_item = item_codes[n_positives:][evaluated]
    rec_rank = recommendations["rank"].to_numpy(dtype=np.float64)[evaluated]

    order = _order_by_user_rank_item(rec_user, rec_rank, rec_item, n_items)
    rec_user, rec_item = rec_user[order], rec_item[order]
    rec_keys = rec_user.astype(np.int64) * n_items + rec_item
    # np.unique reports the first occurrence in sorted order, i.e. each pair's best rank.
    _, first = np.unique(rec_keys, return_index=True)
    keep = np.zeros(len(rec_keys), dtype=bool)
    keep[first] = True
    rec_user, rec_item, rec_keys = rec_user[keep], rec_item[keep], rec_keys[keep]

    relevant = pd.Index(rec_keys).isin(positive_keys).astype(np.float64)
    position = _position_within_user(rec_user)
    # Per-row contributions, computed once and summed per user under each cut-off.
    gain = relevant / np.log2(position + 1)
    precision_at_hit = relevant * _cumsum_within_user(relevant, rec_user) / position

    ideal_dcg = np.cumsum(1.0 / np.log2(np.arange(2, max(cutoffs) + 2)))
    per_user: dict[str, np.ndarray] = {}
    for k in cutoffs:
        in_top = position <= k
        user_k = rec_user[in_top]
        attainable = np.minimum(positives_per_user, k)
        hits = np.bincount(user_k, weights=relevant[in_top], minlength=n_users)
        dcg = np.bincount(user_k, weights=gain[in_top], minlength=n_users)
        precision_sum = np.bincount(user_k, weights=precision_at_hit[in_top], minlength=n_users)

        per_user[f"recall@{k}"] = hits / positives_per_user
        per_user[f"ndcg@{k}"] = dcg / ideal_dcg[attainable - 1]
        per_user[f"map@{k}"] = precision_sum / attainable
        per_user[f"precision@{k}"] = hits / k

    return ScoredLists(
        ks=cutoffs,
        users=user_values[:n_users],
        per_user=per_user,
        has_recommendations=np.bincount(rec_user, minlength=n_users) > 0,
        list_user=rec_user,
        list_item=rec_item,
        list_position=position,
    )


def metrics_table(
    results: Mapping[str, Mapping[str, float | str]], *, columns: Sequence[str]
) -> str:
    """Fixed-width plain-text table, one row per ranker, for the CLI to print side by side.

    Numbers get 4 decimals, text cells (intervals) stay as given; a metric a ranker did not
    report shows as "-" rather than failing.
    """
    header = ["ranker", *columns]
    rows = [
        [name, *(_format_number(metrics.get(column)) for column in columns)]
        for name, metrics in results.items()
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        name, *numbers = cells
        padded = [name.ljust(widths[0])]
        padded += [cell.rjust(width) for cell, width in zip(numbers, widths[1:], strict=True)]
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def _validated_ks(ks: Sequence[int]) -> list[int]:
    """Distinct cut-offs in ascending order; each must be an integer of at least 1."""
    if len(ks) == 0:
        raise ValueError("ks must contain at least one cut-off")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"every K must be an integer of at least 1, got {k!r}")
    return sorted({int(k) for k in ks})


def _require_columns(frame: pd.DataFrame, frame_name: str, columns: Sequence[str]) -> None:
    """Reject a frame that lacks a required column or has missing values in one."""
    for column in columns:
        if column not in frame.columns:
            raise ValueError(f"{frame_name} is missing column {column!r}")
        if frame[column].isna().any():
            raise ValueError(f"{frame_name} column {column!r} has missing values")


def _require_comparable_ids(recommendations: pd.DataFrame, positives: pd.DataFrame) -> None:
    """Reject numeric ids in one frame against non-numeric ids in the other.

    Such ids never match, which would otherwise show up as a silent, plausible-looking zero.
    """
    for column in POSITIVE_COLUMNS:
        in_recommendations = recommendations[column].dtype
        in_positives = positives[column].dtype
        if pd.api.types.is_numeric_dtype(in_recommendations) != pd.api.types.is_numeric_dtype(
            in_positives
        ):
            raise ValueError(
                f"{column} is {in_recommendations} in recommendations but {in_positives} in "
                "positives: the ids can never match"
            )


def _codes(first: pd.Series, second: pd.Series, *, sort: bool) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of the values of `first` followed by `second`, under one shared coding,
    and the distinct values the codes stand for."""
    codes, uniques = pd.factorize(pd.concat([first, second], ignore_index=True), sort=sort)
    return codes, np.asarray(uniques)


def _order_by_user_rank_item(
    user: np.ndarray, rank: np.ndarray, item: np.ndarray, n_items: int
) -> np.ndarray:
    """Permutation sorting rows by (user, rank, item), all given as codes except rank.

    One argsort on a packed int64 key is several times faster than np.lexsort on three keys;
    lexsort remains the fallback when the key could overflow.
    """
    rank_code, rank_values = pd.factorize(rank, sort=True)
    n_users = int(user.max()) + 1 if len(user) else 1
    if n_users * len(rank_values) * n_items < 2**62:
        packed = (user.astype(np.int64) * len(rank_values) + rank_code) * n_items + item
        return np.argsort(packed)
    return np.lexsort((item, rank, user))


def _position_within_user(user: np.ndarray) -> np.ndarray:
    """1-based position of each row within its user's run (rows are grouped by user)."""
    starts, lengths = _runs(user)
    return np.arange(1, len(user) + 1) - np.repeat(starts, lengths)


def _cumsum_within_user(values: np.ndarray, user: np.ndarray) -> np.ndarray:
    """Running sum of `values` that restarts at each user's first row (rows grouped by user)."""
    running = np.cumsum(values)
    starts, lengths = _runs(user)
    before_run = running[starts] - values[starts]
    return running - np.repeat(before_run, lengths)


def _runs(user: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start index and length of each run of equal consecutive values."""
    if len(user) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    return starts, np.diff(np.r_[starts, len(user)])


def _format_number(value: float | str | None) -> str:
    if isinstance(value, str):
        return value or "-"
    return "-" if value is None else f"{value:.4f}"
