"""The gate's decision and its output checks, on hand-made metrics and recommendation frames."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest

from recflow.promotion.gate import (
    DEFAULT_TOLERANCE,
    ChampionEvaluation,
    ChampionScoring,
    GatePolicy,
    Outcome,
    decide,
)
from trainer.served_checks import check_recommendations

# The rule itself, without the seed-noise allowance of the default tolerance.
POLICY = GatePolicy(tolerance=0.0)
CUTOFF = date(2026, 1, 12)
RNG = np.random.default_rng(0)
# The champion's warm users' NDCG@10, one value per user, and some cold users (fallback lists).
BASE = RNG.random(400) * 0.5
COLD = RNG.random(100) * 0.1


@dataclass(frozen=True)
class Side:
    """One model's evaluation: metrics.json's dict and the per-user frames behind it."""

    metrics: dict
    per_user: dict[str, pd.DataFrame]


def side(warm: Sequence[float], cold: Sequence[float] = COLD) -> Side:
    values = np.r_[warm, cold]
    frame = pd.DataFrame(
        {"ndcg@10": values, "is_warm_user": np.r_[[True] * len(warm), [False] * len(cold)]},
        index=pd.Index([f"w{i}" for i in range(len(warm))] + [f"c{i}" for i in range(len(cold))]),
    )
    metrics = {
        "warm_users": {"model": {"ndcg@10": float(np.mean(warm)), "recall@10": 0.2}},
        "all_users": {"model": {"ndcg@10": float(values.mean()), "recall@10": 0.1}},
    }
    return Side(metrics, {"model": frame})


def champion(warm: Sequence[float] = BASE, cold: Sequence[float] = COLD) -> ChampionEvaluation:
    incumbent = side(warm, cold)
    return ChampionEvaluation(
        version="3",
        run_dir="runs/champion",
        metrics=incumbent.metrics,
        scoring=ChampionScoring.RESCORED,
        per_user=incumbent.per_user,
    )


def judge(
    challenger: Side,
    incumbent: ChampionEvaluation | None = None,
    policy: GatePolicy = POLICY,
    problems: Sequence[str] = (),
):
    return decide(
        "runs/new",
        challenger.metrics,
        champion() if incumbent is None else incumbent,
        problems,
        policy,
        challenger_per_user=challenger.per_user,
    )


def noise(scale: float, seed: int) -> np.ndarray:
    """Per-user noise with mean exactly 0 (up to rounding): no difference on average."""
    draws = np.random.default_rng(seed).normal(0, scale, len(BASE))
    return draws - draws.mean()


def test_the_default_tolerance_accepts_a_loss_within_seed_noise() -> None:
    """A retrain that is consistently a little worse (as another seed can be: a tight interval
    wholly below 0) is refused with no tolerance and promoted with the default, which covers the
    measured seed-to-seed noise; a loss beyond it is still refused."""
    reseeded = side(BASE - 0.004)
    assert not judge(reseeded, policy=GatePolicy(tolerance=0.0)).promoted
    assert GatePolicy().tolerance == DEFAULT_TOLERANCE > 0.004
    assert judge(reseeded, policy=GatePolicy()).promoted
    assert not judge(side(BASE - 0.02), policy=GatePolicy()).promoted


def test_a_better_challenger_is_promoted() -> None:
    decision = judge(side(BASE + 0.05))
    assert decision.outcome is Outcome.PROMOTED
    body = decision.to_json()
    assert body["promoted"] is True
    assert body["challenger"]["primary_metric_value"] == pytest.approx(BASE.mean() + 0.05)
    assert body["champion"]["primary_metric_value"] == pytest.approx(BASE.mean())
    assert body["champion"]["metrics"] == side(BASE).metrics  # both sets of metrics are kept
    assert body["primary_metric"] == "warm_users/model/ndcg@10"
    assert body["comparison"] == "paired_bootstrap"
    assert body["paired_difference"]["low"] > 0
    assert f"{BASE.mean() + 0.05:.4f}" in body["reasons"][0]
    assert f"{BASE.mean():.4f}" in body["reasons"][0]


def test_an_identical_challenger_is_promoted_with_an_interval_straddling_zero() -> None:
    identical = judge(side(BASE.copy()))
    assert identical.outcome is Outcome.PROMOTED
    assert identical.difference is not None
    assert (identical.difference.low, identical.difference.high) == (0.0, 0.0)

    # The same quality with per-user noise: the interval straddles 0 strictly.
    same_on_average = judge(side(BASE + noise(0.05, seed=1)))
    assert same_on_average.outcome is Outcome.PROMOTED
    difference = same_on_average.difference
    assert difference is not None and difference.low < 0 < difference.high
    assert "not worse beyond the noise" in same_on_average.reasons[0]


def test_decision_json_carries_the_paired_interval() -> None:
    body = judge(side(BASE + noise(0.05, seed=2) - 0.001)).to_json()
    paired = body["paired_difference"]
    assert set(paired) == {"mean", "low", "high", "confidence", "resamples", "users", "of"}
    assert paired["users"] == len(BASE)  # the warm users only: cold ones get the same fallback
    assert (paired["confidence"], paired["resamples"]) == (0.95, 1000)
    assert paired["of"] == "challenger - champion, warm_users/model/ndcg@10, per user"
    assert paired["mean"] == pytest.approx(
        body["challenger"]["primary_metric_value"] - body["champion"]["primary_metric_value"]
    )
    assert paired["low"] < paired["mean"] < paired["high"]
    assert f"[{paired['low']:+.4f}, {paired['high']:+.4f}]" in body["reasons"][0]
    assert judge(side(BASE + 0.01)).to_json() == judge(side(BASE + 0.01)).to_json()  # seeded


def test_a_much_worse_challenger_is_refused() -> None:
    decision = judge(side(BASE - 0.1 + noise(0.05, seed=3)))
    assert decision.outcome is Outcome.KEPT_CHAMPION
    assert decision.difference is not None and decision.difference.high < 0
    assert "worse beyond the noise" in decision.reasons[-1]
    # The warm users decide: all users' NDCG does not rescue it.
    better_cold = judge(side(BASE - 0.1 + noise(0.05, seed=3), cold=COLD + 0.9))
    assert better_cold.outcome is Outcome.KEPT_CHAMPION


def test_the_noise_decides_not_a_fixed_margin() -> None:
    # Lower on average by 0.002, but far inside the noise of 400 users: promoted.
    noisy_loss = judge(side(BASE - 0.002 + noise(0.1, seed=4)))
    assert noisy_loss.outcome is Outcome.PROMOTED
    assert noisy_loss.difference is not None and noisy_loss.difference.mean < 0

    # The same small loss on every user is beyond the noise: refused, unless it is tolerated.
    consistent_loss = side(BASE - 0.002 + noise(0.0005, seed=5))
    assert judge(consistent_loss).outcome is Outcome.KEPT_CHAMPION
    assert judge(consistent_loss, policy=GatePolicy(tolerance=0.005)).promoted


def test_the_boundary_counts_and_the_tolerance_must_not_be_negative() -> None:
    # Dyadic values, so the per-user difference is exactly -0.125 everywhere.
    dyadic = np.arange(400) % 8 / 8 + 0.25
    lower = side(dyadic - 0.125)
    at_boundary = judge(lower, champion(dyadic), GatePolicy(tolerance=0.125))
    assert at_boundary.outcome is Outcome.PROMOTED
    assert judge(lower, champion(dyadic), GatePolicy(tolerance=0.12)).outcome is (
        Outcome.KEPT_CHAMPION
    )
    with pytest.raises(ValueError, match="tolerance"):
        judge(lower, policy=GatePolicy(tolerance=-0.1))


def test_a_rescored_champion_needs_per_user_metrics_on_the_same_users() -> None:
    challenger = side(BASE)
    with pytest.raises(ValueError, match="per-user metrics of both"):
        decide("r", challenger.metrics, champion(), (), POLICY)
    with pytest.raises(ValueError, match="same users"):
        judge(side(BASE[:-1]))


def test_without_a_champion_the_output_checks_decide() -> None:
    first = decide("r", side([0.01]).metrics, None, (), POLICY)
    assert first.outcome is Outcome.PROMOTED
    body = first.to_json()
    assert body["champion"] is None and body["paired_difference"] is None
    assert body["comparison"] == "no_champion"
    assert "no champion yet" in first.reasons[0]
    broken = decide("r", side([0.9]).metrics, None, ("null values: score (3 rows)",), POLICY)
    assert broken.outcome is Outcome.REJECTED_BY_OUTPUT_CHECKS


def test_failing_output_checks_reject_even_a_better_challenger() -> None:
    decision = judge(side(BASE + 0.3), problems=("2 seen items",))
    assert decision.outcome is Outcome.REJECTED_BY_OUTPUT_CHECKS
    body = decision.to_json()
    assert body["output_checks"] == {"passed": False, "problems": ["2 seen items"]}
    assert "2 seen items" in body["reasons"][0]


def test_a_champion_scored_on_its_own_window_has_no_paired_interval() -> None:
    fallback = ChampionEvaluation(
        version="3",
        run_dir="runs/champion",
        metrics=side([0.25]).metrics,
        scoring=ChampionScoring.RECORDED,
        note="cannot be re-scored: column x is gone",
    )
    decision = decide("r", side([0.26]).metrics, fallback, (), POLICY)
    assert decision.promoted
    assert "RECORDED metrics" in decision.reasons[0]
    assert "column x is gone" in decision.reasons[0]
    assert "no paired interval" in decision.reasons[0]
    body = decision.to_json()
    assert body["champion"]["scoring"] == "recorded"
    assert body["paired_difference"] is None
    assert body["comparison"] == "recorded_point_values"
    # Point values then: lower than the recorded champion by more than the tolerance is refused.
    assert not decide("r", side([0.2499]).metrics, fallback, (), POLICY).promoted
    assert decide("r", side([0.2499]).metrics, fallback, (), GatePolicy(tolerance=0.01)).promoted


def test_missing_primary_metric_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"warm_users/model/ndcg@10.*ndcg@10"):
        decide("r", {"warm_users": {"model": {"ndcg@20": 0.1}}}, None, (), POLICY)
    incumbent = champion()
    with pytest.raises(ValueError, match=r"challenger's per-user metrics have no"):
        decide(
            "r",
            side(BASE).metrics,
            incumbent,
            (),
            POLICY,
            challenger_per_user={"source:popularity": side(BASE).per_user["model"]},
        )


# --- output checks -----------------------------------------------------------------------------


def recommendations(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [user for user, _, _ in rows],
            "item_id": [item for _, item, _ in rows],
            "recommendation_rank": [rank for _, _, rank in rows],
            "score": [1.0 / rank for _, _, rank in rows],
            "cutoff_date": CUTOFF,
            "model_version": "run-1",
            "generated_at": datetime(2026, 1, 12, 3, 0),
        }
    )


def pairs(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id"])


# u1 has three candidates, u2 one (fewer than K = 2); u3 is known but has no candidates, so
# the popularity fallback (p, q, ...) serves u3.
CANDIDATES = pairs([("u1", "a"), ("u1", "b"), ("u1", "c"), ("u2", "a")])
KNOWN_USERS = pd.Series(["u1", "u2", "u3"])
FALLBACK = ["p", "q", "r"]
GOOD = [("u1", "b", 1), ("u1", "a", 2), ("u2", "a", 1), ("u3", "p", 1), ("u3", "q", 2)]


def check(rows: pd.DataFrame) -> tuple[str, ...]:
    return check_recommendations(rows, CANDIDATES, KNOWN_USERS, FALLBACK, k=2)


def served(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    """`recommendations` with the fallback rows unscored, as the trainer writes them."""
    frame = recommendations(rows)
    frame.loc[frame["user_id"] == "u3", "score"] = None
    return frame


def test_good_recommendations_pass() -> None:
    assert check(served(GOOD)) == ()


def test_k_distinct_items_where_k_candidates_exist() -> None:
    short = served([("u1", "b", 1), *GOOD[2:]])
    (problem,) = check(short)
    assert "exactly min(2, their candidates)" in problem and "'u1'" in problem

    repeated = served([("u1", "b", 1), ("u1", "b", 2), *GOOD[2:]])
    problems = check(repeated)
    assert any("repeated (user, item)" in problem for problem in problems)


def test_every_known_user_is_served_and_only_with_candidates() -> None:
    missing_user = served(GOOD[:2] + GOOD[3:])
    (problem,) = check(missing_user)
    assert "1 known user(s) have no recommendations" in problem and "'u2'" in problem
    outsider = served([("u1", "b", 1), ("u1", "z", 2), *GOOD[2:]])
    (problem,) = check(outsider)
    assert "not among the user's candidates" in problem and "'z'" in problem


def test_users_without_candidates_get_the_fallback() -> None:
    wrong_fallback = served([*GOOD[:3], ("u3", "q", 1), ("u3", "p", 2)])
    (problem,) = check(wrong_fallback)
    assert "without candidates do not get the popularity fallback's first 2" in problem
    short_fallback = served([*GOOD[:3], ("u3", "p", 1)])
    (problem,) = check(short_fallback)
    assert "'u3'" in problem


def test_gapped_ranks_and_nulls_fail() -> None:
    gapped = served([("u1", "b", 1), ("u1", "a", 3), *GOOD[2:]])
    assert "not exactly 1..n" in check(gapped)[0]

    with_nulls = served(GOOD)
    with_nulls.loc[0, "score"] = None
    with_nulls.loc[1, "model_version"] = None
    (problem,) = check(with_nulls)
    assert problem == "null values: model_version (1 rows), score (1 rows)"

    no_column = served(GOOD).drop(columns=["generated_at"])
    assert check(no_column) == ("columns generated_at are missing",)
