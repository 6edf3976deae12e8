"""Offline evaluation on the held-out test cutoff: the model against simple baselines.

Every ranker is scored against ALL positives of each user in the test label window (from the
`label_window_positives` mart), not only those its candidates contained, so candidate misses
count against it. Rankers:
  model                 the LightGBM scores over the user's candidates: what serving delivers
  source:<name>         each candidate source's own ranking (its `source_rank` column)
  global_popularity     the fallback list for everyone (recent popularity, seen items included)
  baseline:<name>       baselines learnt from every user's history before the cutoff, beyond
                        the candidates (trainer/baselines.py): popularity over all history and
                        the last 7 and 30 days, item-kNN and ALS without the user's own items,
                        and all-history global popularity with them
Users with no list from a ranker (cold users: every user with history has candidates) get the
global popularity list as fallback, the same for every ranker and exactly what the batch serves
them (trainer/serving.py). Results are reported for warm users (events before the cutoff) and
for all users, each metric with a 95% bootstrap interval over the segment's users; the per-user
values are kept for paired comparisons (the model against each baseline, and the gate's
champion against challenger).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trainer import baselines, ordering, serving
from trainer.columns import CUTOFF_DATE, ITEM_ID, USER_ID
from trainer.feature_spec import FeatureSpec
from trainer.intervals import bootstrap_interval_sets, paired_differences
from trainer.metrics import ScoredLists, score_lists

log = logging.getLogger(__name__)

SCORE = "score"
SEGMENTS = ("warm_users", "all_users")
WARM_USER = "is_warm_user"


@dataclass(frozen=True)
class Evaluation:
    """segment -> ranker -> metric -> value; plus the model's top-K lists at the test cutoffs."""

    metrics: dict[str, dict[str, dict[str, float]]]
    candidate_recall: dict[str, float]
    test_recommendations: pd.DataFrame
    # ranker -> per_user_metrics of every user with a positive, plus an is_warm_user column
    per_user: dict[str, pd.DataFrame] = field(default_factory=dict)
    # segment -> ranker -> metric -> [low, high]: 95% bootstrap intervals of the per-user metrics
    intervals: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)
    # segment -> ranker -> paired (model - ranker) difference of NDCG at the smallest K
    model_against: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)


def ranked_lists(rows: pd.DataFrame, order_by: str, *, k: int, descending: bool) -> pd.DataFrame:
    """Each user's top-k rows by `order_by` (nulls dropped) as user_id, item_id, rank.

    Lists are sorted by user_id, then `order_by`, ties broken by item_id (then row order).
    """
    return RankingKeys.of(rows).ranked_lists(order_by, k=k, descending=descending)


def top_k_positions(
    rows: pd.DataFrame, order_by: str, *, k: int, descending: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Positions in `rows` of each user's top-k rows by `order_by`, and their 1-based ranks."""
    return RankingKeys.of(rows).top_k_positions(order_by, k=k, descending=descending)


@dataclass(frozen=True)
class RankingKeys:
    """Candidate rows with their user and item sort codes, computed once for many rankings."""

    rows: pd.DataFrame
    user_codes: np.ndarray
    item_codes: np.ndarray

    @classmethod
    def of(cls, rows: pd.DataFrame) -> RankingKeys:
        return cls(rows, ordering.sort_codes(rows[USER_ID]), ordering.sort_codes(rows[ITEM_ID]))

    def top_k_positions(
        self, order_by: str, *, k: int, descending: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        return ordering.top_k_per_group(
            self.user_codes,
            self.rows[order_by].to_numpy(dtype=np.float64, na_value=np.nan),
            self.item_codes,
            k=k,
            descending=descending,
        )

    def ranked_lists(self, order_by: str, *, k: int, descending: bool) -> pd.DataFrame:
        positions, rank = self.top_k_positions(order_by, k=k, descending=descending)
        return pd.DataFrame(
            {
                USER_ID: self.rows[USER_ID].take(positions).reset_index(drop=True),
                ITEM_ID: self.rows[ITEM_ID].take(positions).reset_index(drop=True),
                "rank": rank,
            }
        )


def evaluate(
    test_rows: pd.DataFrame,
    positives: pd.DataFrame,
    item_features: pd.DataFrame,
    spec: FeatureSpec,
    *,
    ks: Sequence[int],
    history: pd.DataFrame | None = None,
) -> Evaluation:
    """Score the model and the baselines on the test cutoffs.

    `test_rows` are the test split's candidates with a `score` column; `positives` the test
    windows' positives (user_id, item_id, is_warm_user, cutoff_date); `item_features` the item
    features at the test cutoffs (the catalogue, and popularity for the fallback); `history`
    every user's items before each cutoff (the user_item_history mart), from which the
    `baseline:` rankers learn (None leaves them out, as the gate does). Each cutoff is served on
    its own (its candidates, fallback and baselines); every (user, cutoff) pair with a positive
    is one ranking query, and the metrics average over the queries.
    """
    k = max(ks)
    cutoffs = sorted(positives[CUTOFF_DATE].unique())
    queries = Queries.of(positives, several=len(cutoffs) > 1)
    parts: dict[str, list[pd.DataFrame]] = {}
    for cutoff in cutoffs:
        at_cutoff = _served_at_cutoff(
            test_rows[test_rows[CUTOFF_DATE] == cutoff],
            positives.loc[positives[CUTOFF_DATE] == cutoff, USER_ID].unique(),
            item_features[item_features[CUTOFF_DATE] == cutoff],
            None if history is None else history[history[CUTOFF_DATE] == cutoff],
            cutoff,
            spec,
            k=k,
        )
        for name, ranked in at_cutoff.items():
            parts.setdefault(name, []).append(ranked.assign(cutoff_date=cutoff))
    served = {name: pd.concat(frames, ignore_index=True) for name, frames in parts.items()}
    lists = {name: queries.keyed(frame) for name, frame in served.items()}
    query_positives = queries.keyed(positives)
    catalogue_size = int(item_features[ITEM_ID].nunique())

    warm_queries = np.asarray(
        pd.unique(query_positives.loc[query_positives[WARM_USER], USER_ID]), dtype=object
    )
    candidates = queries.keyed(test_rows[test_rows[CUTOFF_DATE].isin(cutoffs)])
    keys = RankingKeys.of(candidates)
    max_candidates = int(np.bincount(keys.user_codes).max()) if len(candidates) else 1
    all_candidates = keys.ranked_lists(SCORE, k=max_candidates, descending=True)
    # Each ranker's lists are scored once against every query's positives; a segment's metrics
    # are the summary over its users, exactly ranking_metrics on the segment's positives.
    scored = {name: score_lists(ranked, query_positives, ks=ks) for name, ranked in lists.items()}
    scored_candidates = score_lists(all_candidates, query_positives, ks=[max_candidates])
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    candidate_recall: dict[str, float] = {}
    for segment in SEGMENTS:
        metrics[segment] = {
            name: result.summary(
                catalogue_size=catalogue_size, users=_segment_mask(result, segment, warm_queries)
            )
            for name, result in scored.items()
        }
        candidate_recall[segment] = scored_candidates.summary(
            catalogue_size=catalogue_size,
            users=_segment_mask(scored_candidates, segment, warm_queries),
        )[f"recall@{max_candidates}"]
    per_user = _per_user_frames(scored, warm_queries)
    intervals, model_against = segment_bootstraps(per_user, metric=f"ndcg@{min(ks)}")
    return Evaluation(
        metrics=metrics,
        candidate_recall=candidate_recall,
        test_recommendations=served["model"],
        per_user=per_user,
        intervals=intervals,
        model_against=model_against,
    )


@dataclass(frozen=True)
class Queries:
    """Ranking queries: a user at one test cutoff. With a single cutoff the query id is the user
    id itself; with several it is a number per (user, cutoff), so a user scored at two cutoffs
    counts twice and nothing depends on what characters an id holds."""

    ids: pd.DataFrame | None  # user_id, cutoff_date -> query; None: one cutoff

    @classmethod
    def of(cls, positives: pd.DataFrame, *, several: bool) -> Queries:
        if not several:
            return cls(None)
        pairs = positives[[USER_ID, CUTOFF_DATE]].drop_duplicates()
        pairs = pairs.sort_values([CUTOFF_DATE, USER_ID], kind="stable")
        return cls(pairs.assign(query=[f"q{i}" for i in range(len(pairs))]))

    def keyed(self, frame: pd.DataFrame) -> pd.DataFrame:
        """`frame` (user_id, cutoff_date, ...) with user_id replaced by the query id."""
        if self.ids is None:
            return frame.drop(columns=CUTOFF_DATE, errors="ignore").reset_index(drop=True)
        keyed = frame.merge(self.ids, on=[USER_ID, CUTOFF_DATE], how="left", sort=False)
        # Candidates of users without a positive at that cutoff belong to no query.
        keyed = keyed[keyed["query"].notna()]
        return (
            keyed.drop(columns=[USER_ID, CUTOFF_DATE])
            .rename(columns={"query": USER_ID})
            .reset_index(drop=True)
        )


def _served_at_cutoff(
    test_rows: pd.DataFrame,
    users: np.ndarray,
    item_features: pd.DataFrame,
    history: pd.DataFrame | None,
    cutoff: object,
    spec: FeatureSpec,
    *,
    k: int,
) -> dict[str, pd.DataFrame]:
    """What every ranker serves each user with a positive at one cutoff (trainer/serving.py)."""
    fallback = serving.fallback_items(item_features, spec.popularity_rank, k=k)
    keys = RankingKeys.of(test_rows)
    lists = {"model": keys.ranked_lists(SCORE, k=k, descending=True)}
    for source, rank_column in spec.source_ranks.items():
        lists[f"source:{source}"] = keys.ranked_lists(rank_column, k=k, descending=False)
    lists["global_popularity"] = lists["model"].iloc[0:0]  # everyone gets the fallback
    if history is not None:
        for name, ranked in baseline_lists(history, users, cutoff, k=k).items():
            lists[f"baseline:{name}"] = ranked
    return {name: serving.serve(ranked, users, fallback) for name, ranked in lists.items()}


def baseline_lists(
    history: pd.DataFrame, users: Sequence[str], cutoff: object, *, k: int
) -> dict[str, pd.DataFrame]:
    """The baselines' top-k lists (trainer/baselines.py): popularity over all history and the
    last 7 and 30 days and item-kNN and ALS, all without the user's own items, and global
    popularity with them. ALS only where the `evaluation` extra (implicit) is installed."""
    als_params = baselines.AlsParams() if importlib.util.find_spec("implicit") else None
    if als_params is None:
        log.warning("implicit is not installed (the `evaluation` extra): no ALS baseline")
    return baselines.compute_baselines(
        history, users, cutoff, k=k, exclude_seen=True, als_params=als_params
    )


def per_user_by_ranker(
    lists: dict[str, pd.DataFrame], positives: pd.DataFrame, *, ks: Sequence[int]
) -> dict[str, pd.DataFrame]:
    """Each ranker's per-user metrics over every user with a positive, flagged warm or not."""
    warm_users = np.asarray(pd.unique(positives.loc[positives[WARM_USER], USER_ID]), dtype=object)
    scored = {name: score_lists(ranked, positives, ks=ks) for name, ranked in lists.items()}
    return _per_user_frames(scored, warm_users)


def _per_user_frames(
    scored: dict[str, ScoredLists], warm_users: np.ndarray
) -> dict[str, pd.DataFrame]:
    frames = {}
    for name, result in scored.items():
        frame = result.per_user_frame()
        frames[name] = frame.assign(**{WARM_USER: _is_in(frame.index, warm_users)})
    return frames


def _segment_mask(scored: ScoredLists, segment: str, warm_users: np.ndarray) -> np.ndarray | None:
    """Which of the scored users are in `segment` (None: all of them)."""
    if segment == "warm_users":
        return _is_in(scored.users, warm_users)
    if segment == "all_users":
        return None
    raise ValueError(f"unknown segment {segment!r}; expected one of {', '.join(SEGMENTS)}")


def _is_in(ids: pd.Index | np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Whether each id is one of `wanted` (an object array), as a hash lookup on objects: the
    isin of a pandas string index makes a Python object per wanted value on every call."""
    return pd.Index(np.asarray(ids, dtype=object), dtype=object).isin(wanted)


def in_segment(per_user: pd.DataFrame, segment: str) -> pd.DataFrame:
    """The rows of a `per_user_by_ranker` frame that belong to one of SEGMENTS."""
    if segment == "warm_users":
        return per_user[per_user[WARM_USER]]
    if segment == "all_users":
        return per_user
    raise ValueError(f"unknown segment {segment!r}; expected one of {', '.join(SEGMENTS)}")


def segment_bootstraps(
    per_user: dict[str, pd.DataFrame], *, metric: str
) -> tuple[dict[str, dict[str, dict[str, list[float]]]], dict[str, dict[str, dict[str, float]]]]:
    """Per segment, every ranker's 95% bootstrap intervals and the model against each ranker.

    The first result is segment -> ranker -> metric -> [low, high], every ranker on the same
    resampled users; the second segment -> ranker -> the paired difference of `metric` (model
    minus ranker) over the segment's users with its 95% interval: does the model beat it beyond
    noise? All of a segment's intervals are computed from one draw of its users, each exactly
    what `bootstrap_intervals` and `paired_difference` give on their own.
    """
    intervals: dict[str, dict[str, dict[str, list[float]]]] = {}
    model_against: dict[str, dict[str, dict[str, float]]] = {}
    for segment in SEGMENTS:
        rows = pd.concat(
            {
                name: in_segment(frame, segment).drop(columns=WARM_USER)
                for name, frame in per_user.items()
            },
            axis=1,
        )
        model = in_segment(per_user["model"], segment)[metric]
        others = [name for name in per_user if name != "model"] if len(model) else []
        differences = [
            pd.DataFrame(
                {"value": paired_differences(model, in_segment(per_user[name], segment)[metric])}
            )
            for name in others
        ]
        by_ranker, *against = bootstrap_interval_sets([rows, *differences])
        intervals[segment] = {name: {} for name in per_user}
        for (name, ranker_metric), interval in by_ranker.items():
            intervals[segment][name][ranker_metric] = [interval.low, interval.high]
        model_against[segment] = {
            name: result["value"].to_json() for name, result in zip(others, against, strict=True)
        }
    return intervals, model_against
