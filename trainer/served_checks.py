"""What a batch of recommendations must be before it may replace the served table.

The trainer runs these checks before its write-back, and the gate before a promotion, so the
served table is never replaced by a batch that misses users or items the checks require.
"""

from __future__ import annotations

import pandas as pd

from trainer.columns import CUTOFF_DATE, ITEM_ID, USER_ID

MAX_EXAMPLES = 5

RECOMMENDATION_COLUMNS = (
    USER_ID,
    ITEM_ID,
    "recommendation_rank",
    "score",
    CUTOFF_DATE,
    "model_version",
    "generated_at",
)


def check_recommendations(
    recommendations: pd.DataFrame,
    candidates: pd.DataFrame,
    known_users: pd.Series,
    fallback: list[str],
    *,
    k: int,
) -> tuple[str, ...]:
    """Problems with a run's batch recommendations; empty when they are fit to serve.

    `candidates` holds the scoring cutoff's (user_id, item_id) candidates, `known_users` every
    user the batch must serve and `fallback` the popularity list for users without candidates.
    Every user with candidates gets exactly min(k, their candidates) distinct candidate items,
    ranked 1..n and scored; every other known user gets the fallback's first k items. No nulls
    but the fallback rows' scores. Which items a user may be recommended (seen ones or not) is
    the candidates' rule, so recommending only candidates keeps it; dbt's serving test
    `assert_recommendations_exclude_seen_items` checks it again in the warehouse.
    """
    missing = [name for name in RECOMMENDATION_COLUMNS if name not in recommendations.columns]
    if missing:
        return (f"columns {', '.join(missing)} are missing",)
    problems: list[str] = []
    candidate_pairs = candidates[[USER_ID, ITEM_ID]].drop_duplicates()
    has_candidates = recommendations[USER_ID].isin(candidate_pairs[USER_ID].unique())
    required = [name for name in RECOMMENDATION_COLUMNS if name != "score"]
    nulls = recommendations[required].isna().sum().to_dict()
    nulls["score"] = int(recommendations.loc[has_candidates, "score"].isna().sum())
    nulls = {name: int(count) for name, count in nulls.items() if count}
    if nulls:
        problems.append("null values: " + ", ".join(f"{n} ({c} rows)" for n, c in nulls.items()))
    recs = recommendations.dropna(subset=[USER_ID, ITEM_ID, "recommendation_rank"])
    pairs = recs[[USER_ID, ITEM_ID]]
    duplicated = pairs[pairs.duplicated()]
    if len(duplicated):
        problems.append(
            f"{len(duplicated)} repeated (user, item) rows, e.g. {_examples(duplicated)}"
        )

    expected = candidate_pairs.groupby(USER_ID).size().clip(upper=k).rename("expected")
    served = pd.Index(pd.unique(recs[USER_ID]))
    unserved = pd.Index(pd.unique(known_users)).union(expected.index).difference(served)
    if len(unserved):
        problems.append(
            f"{len(unserved)} known user(s) have no recommendations, e.g. "
            f"{_examples(unserved.to_frame())}"
        )
    per_user = recs.groupby(USER_ID).agg(
        rows=(ITEM_ID, "size"),
        distinct_items=(ITEM_ID, "nunique"),
        min_rank=("recommendation_rank", "min"),
        max_rank=("recommendation_rank", "max"),
        distinct_ranks=("recommendation_rank", "nunique"),
    )
    joined = per_user.join(expected, how="inner")
    wrong_count = joined[
        (joined["distinct_items"] != joined["expected"]) | (joined["rows"] != joined["expected"])
    ]
    if len(wrong_count):
        first = wrong_count.iloc[0]
        problems.append(
            f"{len(wrong_count)} user(s) do not get exactly min({k}, their candidates) distinct "
            f"items, e.g. user {wrong_count.index[0]!r}: {int(first['distinct_items'])} distinct "
            f"in {int(first['rows'])} rows, expected {int(first['expected'])}"
        )
    bad_ranks = joined[
        (joined["min_rank"] != 1)
        | (joined["max_rank"] != joined["rows"])
        | (joined["distinct_ranks"] != joined["rows"])
    ]
    if len(bad_ranks):
        problems.append(
            f"{len(bad_ranks)} user(s) have ranks that are not exactly 1..n, e.g. "
            f"{_examples(bad_ranks.index.to_frame())}"
        )
    with_candidates = pairs[pairs[USER_ID].isin(expected.index)]
    not_candidates = _anti_join(with_candidates, candidate_pairs)
    if len(not_candidates):
        problems.append(
            f"{len(not_candidates)} recommended item(s) are not among the user's candidates, "
            f"e.g. {_examples(not_candidates)}"
        )
    fallback_rows = recs.loc[~recs[USER_ID].isin(expected.index)]
    expected_fallback = dict(enumerate(fallback[:k], start=1))
    off_fallback = fallback_rows[
        fallback_rows["recommendation_rank"].map(expected_fallback) != fallback_rows[ITEM_ID]
    ]
    short = fallback_rows.groupby(USER_ID).size() != len(expected_fallback)
    if len(off_fallback) or short.any():
        users = pd.Index(pd.unique(off_fallback[USER_ID])).union(short[short].index)
        problems.append(
            f"{len(users)} user(s) without candidates do not get the popularity fallback's "
            f"first {len(expected_fallback)} items, e.g. {_examples(users.to_frame())}"
        )
    return tuple(problems)


def _anti_join(left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
    merged = left.merge(right, how="left", indicator=True)
    return merged.loc[merged["_merge"] == "left_only", list(left.columns)]


def _examples(rows: pd.DataFrame) -> str:
    shown = [
        "(" + ", ".join(repr(value) for value in row) + ")"
        for row in rows.head(MAX_EXAMPLES).itertuples(index=False)
    ]
    return ", ".join(shown)
