"""The evaluation gate's decision: pure functions over metrics and recommendation frames.

A challenger replaces the champion only if

1. its batch recommendations pass the output checks (trainer.served_checks), and
2. it is not worse than the champion beyond the noise: both models are scored on the SAME test
   window (the caller re-scores the champion's saved model on the challenger's test cutoff;
   see recflow.promotion.scoring), and the paired bootstrap interval of (challenger - champion)
   over the same users' primary metric must not lie entirely below -tolerance. A
   non-inferiority rule: the number of users decides how small a loss can be told from noise.
   The interval covers which users happened to be in the test window, not which seed trained
   the model: retrained with another seed, the same model moves too, and on thousands of users
   that move alone can put the whole interval below 0. The tolerance covers it (see
   DEFAULT_TOLERANCE).

The primary metric is NDCG@10 of the model's ranking for **warm users**: cold users get the same
popularity fallback from every model, so including them adds the same number to both sides and
only dilutes the difference the gate is there to see. NDCG rather than recall because the
product shows a ranked list and NDCG rewards putting the hits first.

With no champion yet, a challenger that passes the output checks is promoted. A champion that
could not be re-scored is compared through its recorded metrics (another window, other users):
no paired interval exists then, so its point value minus the tolerance is the bar, and the
decision says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pandas as pd

from trainer.evaluation import in_segment
from trainer.intervals import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, Interval, paired_difference

# The seed-to-seed noise of the primary metric: the same data and model retrained with seeds
# 0..4 gave warm NDCG@10 with sd 0.0020 on the demo sample and 0.0005 on the ratings sample, so
# two retrains differ by up to 1.96 * sqrt(2) * 0.0020 = 0.0055 in 95% of cases. A loss the seed
# alone can cause is not a reason to refuse; `--tolerance` sets another value for other data.
DEFAULT_TOLERANCE = 0.0055
# segment -> ranker -> metric -> value, as in a run's metrics.json
Metrics = Mapping[str, Mapping[str, Mapping[str, float]]]
# ranker -> per-user metrics with an is_warm_user column, as in Evaluation.per_user
PerUser = Mapping[str, pd.DataFrame]


class Outcome(StrEnum):
    PROMOTED = "promoted"
    KEPT_CHAMPION = "kept_champion"
    REJECTED_BY_OUTPUT_CHECKS = "rejected_by_output_checks"


class ChampionScoring(StrEnum):
    """How the champion's metrics were obtained."""

    RESCORED = "rescored"  # its saved model, on the challenger's test window: comparable
    RECORDED = "recorded"  # its own metrics.json, from ITS test window: the fallback


@dataclass(frozen=True)
class GatePolicy:
    """What is compared, how much loss beyond the noise is accepted (absolute, same metric),
    and the bootstrap that measures the noise."""

    tolerance: float = DEFAULT_TOLERANCE
    segment: str = "warm_users"
    ranker: str = "model"
    metric: str = "ndcg@10"
    confidence: float = DEFAULT_CONFIDENCE
    resamples: int = DEFAULT_RESAMPLES
    seed: int = 0

    @property
    def primary_metric(self) -> str:
        return f"{self.segment}/{self.ranker}/{self.metric}"

    def value(self, metrics: Metrics, *, whose: str) -> float:
        try:
            return float(metrics[self.segment][self.ranker][self.metric])
        except KeyError as error:
            raise ValueError(
                f"{whose} metrics have no {self.primary_metric} (missing key {error}); was it "
                "evaluated with k=10 by this version of the trainer?"
            ) from error

    def per_user_values(self, per_user: PerUser, *, whose: str) -> pd.Series:
        """The primary metric of each user in the policy's segment, indexed by user."""
        try:
            frame = per_user[self.ranker]
            return in_segment(frame, self.segment)[self.metric]
        except KeyError as error:
            raise ValueError(
                f"{whose} per-user metrics have no {self.primary_metric} (missing key {error})"
            ) from error

    def paired_difference(self, challenger: PerUser, champion: PerUser) -> Interval:
        """Bootstrap interval of (challenger - champion) over the same users' primary metric."""
        return paired_difference(
            self.per_user_values(challenger, whose="the challenger's"),
            self.per_user_values(champion, whose="the champion's"),
            confidence=self.confidence,
            resamples=self.resamples,
            seed=self.seed,
        )


@dataclass(frozen=True)
class ChampionEvaluation:
    """The champion the challenger is compared with."""

    version: str
    run_dir: str
    metrics: Metrics
    scoring: ChampionScoring
    note: str = ""  # why it could not be re-scored, when scoring is RECORDED
    per_user: PerUser | None = None  # on the challenger's test window, when RESCORED


@dataclass(frozen=True)
class Decision:
    """What the gate decided, why, and on which numbers: decision.json."""

    outcome: Outcome
    reasons: tuple[str, ...]
    policy: GatePolicy
    challenger_run_dir: str
    challenger_metrics: Metrics
    champion: ChampionEvaluation | None
    output_problems: tuple[str, ...]
    context: Mapping[str, Any] = field(default_factory=dict)  # test cutoff, times, ...
    # (challenger - champion) per user on the same window; None without a re-scored champion
    difference: Interval | None = None

    @property
    def promoted(self) -> bool:
        return self.outcome is Outcome.PROMOTED

    def to_json(self) -> dict[str, Any]:
        policy = self.policy
        challenger_value = policy.value(self.challenger_metrics, whose="the challenger's")
        champion = self.champion
        return {
            "outcome": self.outcome.value,
            "promoted": self.promoted,
            "reasons": list(self.reasons),
            "primary_metric": policy.primary_metric,
            "tolerance": policy.tolerance,
            "challenger": {
                "run_dir": self.challenger_run_dir,
                "primary_metric_value": challenger_value,
                "metrics": self.challenger_metrics,
            },
            "champion": None
            if champion is None
            else {
                "version": champion.version,
                "run_dir": champion.run_dir,
                "scoring": champion.scoring.value,
                "note": champion.note,
                "primary_metric_value": policy.value(champion.metrics, whose="the champion's"),
                "metrics": champion.metrics,
            },
            "comparison": _comparison(champion),
            "paired_difference": None
            if self.difference is None
            else {
                **self.difference.to_json(),
                "of": f"challenger - champion, {policy.primary_metric}, per user",
            },
            "output_checks": {
                "passed": not self.output_problems,
                "problems": list(self.output_problems),
            },
            **dict(self.context),
        }


def _comparison(champion: ChampionEvaluation | None) -> str:
    if champion is None:
        return "no_champion"
    if champion.scoring is ChampionScoring.RESCORED:
        return "paired_bootstrap"
    return "recorded_point_values"


def decide(
    challenger_run_dir: str,
    challenger_metrics: Metrics,
    champion: ChampionEvaluation | None,
    output_problems: Sequence[str],
    policy: GatePolicy,
    *,
    challenger_per_user: PerUser | None = None,
    context: Mapping[str, Any] | None = None,
) -> Decision:
    """Promote, keep the champion, or reject on the output checks; every reason is spelled out.

    A RESCORED champion is compared user by user: both sides' per-user metrics (on the same
    window, so the same users) are required, and the challenger is kept out only when the whole
    paired interval of (challenger - champion) lies below -tolerance.
    """
    if policy.tolerance < 0:
        raise ValueError(f"the gate's tolerance must be >= 0, got {policy.tolerance}")
    challenger = policy.value(challenger_metrics, whose="the challenger's")
    name = policy.primary_metric
    reasons: list[str] = []
    if output_problems:
        outcome = Outcome.REJECTED_BY_OUTPUT_CHECKS
        reasons.append(
            f"the challenger's batch recommendations fail {len(output_problems)} output "
            "check(s): " + "; ".join(output_problems)
        )
    if champion is None:
        if not output_problems:
            outcome = Outcome.PROMOTED
        reasons.append(f"no champion yet; challenger {name} = {challenger:.4f}")
        return _decision(
            outcome,
            reasons,
            policy,
            challenger_run_dir,
            challenger_metrics,
            None,
            output_problems,
            context,
        )

    incumbent = policy.value(champion.metrics, whose="the champion's")
    values = (
        f"challenger {name} = {challenger:.4f}, champion (version {champion.version}) = "
        f"{incumbent:.4f}"
    )
    difference = None
    if champion.scoring is ChampionScoring.RESCORED:
        if challenger_per_user is None or champion.per_user is None:
            raise ValueError(
                "a re-scored champion is compared user by user: the per-user metrics of both "
                "the challenger and the champion are needed"
            )
        difference = policy.paired_difference(challenger_per_user, champion.per_user)
        bar = -policy.tolerance or 0.0  # no '-0.0000' in the reason
        good_enough = difference.high >= bar
        comparison = (
            f"{values} on the same test window; per-user difference (challenger - champion) over "
            f"{difference.users} users {difference.mean:+.4f}, {difference.confidence:.0%} "
            f"bootstrap interval [{difference.low:+.4f}, {difference.high:+.4f}] "
            f"({difference.resamples} resamples), tolerance {policy.tolerance:g}"
        )
        verdict = (
            f": the interval reaches {bar:.4f}, not worse beyond the noise"
            if good_enough
            else f": the whole interval lies below {bar:.4f}, worse beyond the noise"
        )
    else:
        threshold = incumbent - policy.tolerance
        good_enough = challenger >= threshold
        comparison = (
            f"{values} against the champion's RECORDED metrics from its own test window "
            f"({champion.note}); no paired interval (the two were not scored on the same users), "
            f"so the point values decide: the challenger needs >= {threshold:.4f} (tolerance "
            f"{policy.tolerance:g})"
        )
        verdict = ": not worse beyond tolerance" if good_enough else ": worse"
    if not output_problems:
        outcome = Outcome.PROMOTED if good_enough else Outcome.KEPT_CHAMPION
    reasons.append(comparison + verdict)
    return _decision(
        outcome,
        reasons,
        policy,
        challenger_run_dir,
        challenger_metrics,
        champion,
        output_problems,
        context,
        difference,
    )


def _decision(
    outcome: Outcome,
    reasons: list[str],
    policy: GatePolicy,
    challenger_run_dir: str,
    challenger_metrics: Metrics,
    champion: ChampionEvaluation | None,
    output_problems: Sequence[str],
    context: Mapping[str, Any] | None,
    difference: Interval | None = None,
) -> Decision:
    return Decision(
        outcome=outcome,
        reasons=tuple(reasons),
        policy=policy,
        challenger_run_dir=challenger_run_dir,
        challenger_metrics=challenger_metrics,
        champion=champion,
        output_problems=tuple(output_problems),
        context=dict(context or {}),
        difference=difference,
    )
