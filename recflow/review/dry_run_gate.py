"""The pull request's BigQuery cost gate (`recflow review --bigquery`): pass or fail the check.

The dry runs (`bigquery_cost.py`) say how many bytes each changed model's production SQL would
process, before and after the pull request. The gate adds the changes up over the models that
have a number on every side they exist on (a new model counts in full, a removed one as a
saving) and fails when the net increase per production build, or that increase priced over a
month of builds, is above the configured limit. It also fails when BigQuery refused the pull
request's SQL for any reason other than `notFound`: that is SQL production would reject. A
`notFound` on the pull request's side is a model reading a table production does not have yet
(a parent the pull request adds); its cost is unknown until then, so it is listed, not failed.

Limits come from the environment (repository variables in the workflow; empty means unset) or
the command's flags; with no limit set the gate checks only that BigQuery accepts the SQL.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from recflow.review.bigquery_cost import BigQueryCost, estimate_usd, format_bytes

MAX_BYTES_ENV = "RECFLOW_PR_MAX_BYTES_INCREASE"
MAX_MONTHLY_USD_ENV = "RECFLOW_PR_MAX_MONTHLY_USD_INCREASE"
BUILDS_PER_MONTH_ENV = "RECFLOW_PR_BUILDS_PER_MONTH"
DEFAULT_BUILDS_PER_MONTH = 30.0  # the continuous-training workflow's daily schedule
NOT_IN_PRODUCTION_YET = "notFound"


class DryRunGateError(ValueError):
    """A limit is not a usable number."""


@dataclass(frozen=True)
class DryRunLimits:
    """How much more a pull request may make production's builds process or cost."""

    max_bytes_increase: int | None = None  # per build, summed over the changed models
    max_monthly_usd_increase: float | None = None
    builds_per_month: float = DEFAULT_BUILDS_PER_MONTH

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DryRunLimits:
        """Limits from RECFLOW_PR_* variables; an empty variable (an unset repository
        variable in GitHub Actions) counts as unset."""
        env = os.environ if environ is None else environ
        max_bytes = _number(env, MAX_BYTES_ENV)
        max_usd = _number(env, MAX_MONTHLY_USD_ENV)
        builds = _number(env, BUILDS_PER_MONTH_ENV)
        if max_bytes is not None and max_bytes != int(max_bytes):
            raise DryRunGateError(f"{MAX_BYTES_ENV}={env[MAX_BYTES_ENV]!r}: give whole bytes")
        if builds is not None and builds <= 0:
            raise DryRunGateError(f"{BUILDS_PER_MONTH_ENV}={env[BUILDS_PER_MONTH_ENV]!r}: > 0")
        return cls(
            max_bytes_increase=None if max_bytes is None else int(max_bytes),
            max_monthly_usd_increase=max_usd,
            builds_per_month=DEFAULT_BUILDS_PER_MONTH if builds is None else builds,
        )


def _number(env: Mapping[str, str], name: str) -> float | None:
    text = (env.get(name) or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError as error:
        raise DryRunGateError(f"{name}={text!r} is not a number") from error
    if value < 0 or value != value or value in {float("inf"), float("-inf")}:
        raise DryRunGateError(f"{name}={text!r}: give a finite number >= 0")
    return value


@dataclass(frozen=True)
class GateVerdict:
    """The gate's decision and every number it rests on."""

    passed: bool
    bytes_increase: int  # net, per build, over the measured models
    monthly_usd_increase: float
    limits: DryRunLimits
    refused: tuple[str, ...]  # models whose pull-request SQL BigQuery rejected
    unmeasured: tuple[str, ...]  # models reading a table production does not have yet
    failures: tuple[str, ...]  # why it failed, one sentence each; empty when passed


def evaluate_gate(cost: BigQueryCost, limits: DryRunLimits) -> GateVerdict:
    """Decide the gate from the dry runs of both sides (see the module docstring)."""
    increase = sum(row.delta_bytes for row in cost.rows if row.delta_bytes is not None)
    monthly = (estimate_usd(increase, cost.usd_per_tib) or 0.0) * limits.builds_per_month
    refused = [
        row.name
        for row in cost.rows
        if row.head is not None
        and row.head.error is not None
        and row.head.reason != NOT_IN_PRODUCTION_YET
    ]
    unmeasured = [
        row.name
        for row in cost.rows
        if row.head is not None and row.delta_bytes is None and row.name not in refused
    ]
    failures = []
    if refused:
        failures.append(
            f"BigQuery refused the pull request's SQL of {len(refused)} model(s): "
            + ", ".join(refused)
        )
    if limits.max_bytes_increase is not None and increase > limits.max_bytes_increase:
        failures.append(
            f"the changed models process {format_bytes(increase)} more per build, above the "
            f"limit of {format_bytes(limits.max_bytes_increase)} ({MAX_BYTES_ENV})"
        )
    if limits.max_monthly_usd_increase is not None and monthly > limits.max_monthly_usd_increase:
        failures.append(
            f"the changed models cost ${monthly:,.2f} more per month ({limits.builds_per_month:g}"
            f" builds), above the limit of ${limits.max_monthly_usd_increase:,.2f} "
            f"({MAX_MONTHLY_USD_ENV})"
        )
    return GateVerdict(
        passed=not failures,
        bytes_increase=increase,
        monthly_usd_increase=monthly,
        limits=limits,
        refused=tuple(refused),
        unmeasured=tuple(unmeasured),
        failures=tuple(failures),
    )
