"""The gate's decision and its output checks, on hand-made metrics and recommendation frames."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
import pytest

from recflow.promotion.gate import (
    ChampionEvaluation,
    ChampionScoring,
    GatePolicy,
    Outcome,
    check_recommendations,
    decide,
)

POLICY = GatePolicy(tolerance=0.005)
CUTOFF = date(2026, 1, 12)


def metrics(warm_ndcg: float, *, all_ndcg: float = 0.01) -> dict:
    return {
        "warm_users": {"model": {"ndcg@10": warm_ndcg, "recall@10": 0.2}},
        "all_users": {"model": {"ndcg@10": all_ndcg, "recall@10": 0.1}},
    }


def champion(warm_ndcg: float, scoring: ChampionScoring = ChampionScoring.RESCORED):
    return ChampionEvaluation(
        version="3", run_dir="runs/champion", metrics=metrics(warm_ndcg), scoring=scoring
    )


def test_a_better_challenger_is_promoted() -> None:
    decision = decide("runs/new", metrics(0.30), champion(0.25), (), POLICY)
    assert decision.outcome is Outcome.PROMOTED
    body = decision.to_json()
    assert body["promoted"] is True
    assert body["challenger"]["primary_metric_value"] == 0.30
    assert body["champion"]["primary_metric_value"] == 0.25
    assert body["champion"]["metrics"] == metrics(0.25)  # both sets of metrics are kept
    assert body["primary_metric"] == "warm_users/model/ndcg@10"
    assert "0.3000" in body["reasons"][0] and "0.2500" in body["reasons"][0]


def test_equal_within_tolerance_is_promoted_and_the_boundary_counts() -> None:
    assert decide("r", metrics(0.2480), champion(0.25), (), POLICY).promoted
    at_boundary = decide("r", metrics(0.25 - 0.005), champion(0.25), (), POLICY)
    assert at_boundary.outcome is Outcome.PROMOTED


def test_worse_beyond_tolerance_keeps_the_champion() -> None:
    decision = decide("r", metrics(0.2449), champion(0.25), (), POLICY)
    assert decision.outcome is Outcome.KEPT_CHAMPION
    assert "worse" in decision.reasons[-1]
    # The primary metric is the warm users' one: all users' NDCG does not rescue it.
    better_overall = decide("r", metrics(0.2449, all_ndcg=0.9), champion(0.25), (), POLICY)
    assert better_overall.outcome is Outcome.KEPT_CHAMPION


def test_a_stricter_or_looser_tolerance_changes_the_decision() -> None:
    assert not decide("r", metrics(0.249), champion(0.25), (), GatePolicy(tolerance=0)).promoted
    assert decide("r", metrics(0.20), champion(0.25), (), GatePolicy(tolerance=0.06)).promoted
    with pytest.raises(ValueError, match="tolerance"):
        decide("r", metrics(0.2), champion(0.25), (), GatePolicy(tolerance=-0.1))


def test_without_a_champion_the_output_checks_decide() -> None:
    first = decide("r", metrics(0.01), None, (), POLICY)
    assert first.outcome is Outcome.PROMOTED
    assert first.to_json()["champion"] is None
    assert "no champion yet" in first.reasons[0]
    broken = decide("r", metrics(0.9), None, ("null values: score (3 rows)",), POLICY)
    assert broken.outcome is Outcome.REJECTED_BY_OUTPUT_CHECKS


def test_failing_output_checks_reject_even_a_better_challenger() -> None:
    decision = decide("r", metrics(0.9), champion(0.25), ("2 seen items",), POLICY)
    assert decision.outcome is Outcome.REJECTED_BY_OUTPUT_CHECKS
    body = decision.to_json()
    assert body["output_checks"] == {"passed": False, "problems": ["2 seen items"]}
    assert "2 seen items" in body["reasons"][0]


def test_a_champion_scored_on_its_own_window_is_named_in_the_reason() -> None:
    fallback = ChampionEvaluation(
        version="3",
        run_dir="runs/champion",
        metrics=metrics(0.25),
        scoring=ChampionScoring.RECORDED,
        note="cannot be re-scored: column x is gone",
    )
    decision = decide("r", metrics(0.26), fallback, (), POLICY)
    assert decision.promoted
    assert "RECORDED metrics" in decision.reasons[0]
    assert "column x is gone" in decision.reasons[0]
    assert decision.to_json()["champion"]["scoring"] == "recorded"


def test_missing_primary_metric_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"warm_users/model/ndcg@10.*ndcg@10"):
        decide("r", {"warm_users": {"model": {"ndcg@20": 0.1}}}, None, (), POLICY)


# --- output checks -----------------------------------------------------------------------------


def recommendations(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [user for user, _, _ in rows],
            "item_id": [item for _, item, _ in rows],
            "recommendation_rank": [rank for _, _, rank in rows],
            "score": [1.0 / rank for _, _, rank in rows],
            "snapshot_date": CUTOFF,
            "model_version": "run-1",
            "generated_at": datetime(2026, 1, 12, 3, 0),
        }
    )


def pairs(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id"])


# u1 has three candidates, u2 one (fewer than K = 2).
CANDIDATES = pairs([("u1", "a"), ("u1", "b"), ("u1", "c"), ("u2", "a")])
GOOD = [("u1", "b", 1), ("u1", "a", 2), ("u2", "a", 1)]


def test_good_recommendations_pass() -> None:
    assert check_recommendations(recommendations(GOOD), CANDIDATES, pairs([]), k=2) == ()


def test_k_distinct_items_where_k_candidates_exist() -> None:
    short = recommendations([("u1", "b", 1), ("u2", "a", 1)])
    (problem,) = check_recommendations(short, CANDIDATES, None, k=2)
    assert "exactly min(2, their candidates)" in problem and "'u1'" in problem

    repeated = recommendations([("u1", "b", 1), ("u1", "b", 2), ("u2", "a", 1)])
    problems = check_recommendations(repeated, CANDIDATES, None, k=2)
    assert any("repeated (user, item)" in problem for problem in problems)


def test_users_without_a_list_and_items_outside_the_candidates() -> None:
    missing_user = recommendations([("u1", "b", 1), ("u1", "a", 2)])
    assert (
        "have no recommendations" in check_recommendations(missing_user, CANDIDATES, None, k=2)[0]
    )
    outsider = recommendations([("u1", "b", 1), ("u1", "z", 2), ("u2", "a", 1)])
    (problem,) = check_recommendations(outsider, CANDIDATES, None, k=2)
    assert "not among the user's candidates" in problem and "'z'" in problem


def test_seen_items_and_gapped_ranks_and_nulls_fail() -> None:
    seen = check_recommendations(recommendations(GOOD), CANDIDATES, pairs([("u1", "a")]), k=2)
    assert seen == ("1 recommended item(s) were already seen by the user, e.g. ('u1', 'a')",)

    gapped = recommendations([("u1", "b", 1), ("u1", "a", 3), ("u2", "a", 1)])
    assert "not exactly 1..n" in check_recommendations(gapped, CANDIDATES, None, k=2)[0]

    with_nulls = recommendations(GOOD)
    with_nulls.loc[0, "score"] = None
    with_nulls.loc[1, "model_version"] = None
    (problem,) = check_recommendations(with_nulls, CANDIDATES, None, k=2)
    assert problem == "null values: score (1 rows), model_version (1 rows)"

    no_column = recommendations(GOOD).drop(columns=["generated_at"])
    assert check_recommendations(no_column, CANDIDATES, None, k=2) == (
        "columns generated_at are missing",
    )
