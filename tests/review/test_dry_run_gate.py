"""The BigQuery cost gate of `recflow review --bigquery` as a pure function of the dry runs, and
what the public report says about failed dry runs (never the API's message or the SQL)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from recflow.review.bigquery_cost import BYTES_PER_TIB, BigQueryCost, DryRun, DryRunRow
from recflow.review.dry_run_gate import DryRunGateError, DryRunLimits, evaluate_gate
from recflow.review.findings import ReviewConfig
from recflow.review.report import build_review, render_markdown, to_json

GIB = 2**30
USD_PER_TIB = 6.25


def _row(name: str, base: DryRun | None, head: DryRun | None) -> DryRunRow:
    return DryRunRow(unique_id=f"model.recflow.{name}", name=name, base=base, head=head)


def _bytes(value: int) -> DryRun:
    return DryRun(bytes_processed=value)


def _failed(reason: str, message: str) -> DryRun:
    return DryRun(error=f"{reason}: {message}", reason=reason)


def _cost(*rows: DryRunRow) -> BigQueryCost:
    return BigQueryCost(project="p", location="EU", usd_per_tib=USD_PER_TIB, rows=rows)


# +3 GiB (modified), +1 GiB (new), -2 GiB (removed): net +2 GiB per build.
MEASURED = (
    _row("grown", _bytes(GIB), _bytes(4 * GIB)),
    _row("added", None, _bytes(GIB)),
    _row("dropped", _bytes(2 * GIB), None),
)


def test_no_limit_passes_and_sums_the_net_change_per_build() -> None:
    verdict = evaluate_gate(_cost(*MEASURED), DryRunLimits())

    assert verdict.passed
    assert verdict.bytes_increase == 2 * GIB
    assert verdict.monthly_usd_increase == pytest.approx(2 * GIB / BYTES_PER_TIB * 6.25 * 30)
    assert verdict.failures == ()


@pytest.mark.parametrize(
    ("limits", "passed"),
    [
        pytest.param(DryRunLimits(max_bytes_increase=2 * GIB), True, id="bytes-at-the-limit"),
        pytest.param(DryRunLimits(max_bytes_increase=2 * GIB - 1), False, id="bytes-above"),
        # 2 GiB at $6.25/TiB is $0.0122 a build; 30 builds $0.366; 4 builds $0.049.
        pytest.param(DryRunLimits(max_monthly_usd_increase=0.37), True, id="usd-below"),
        pytest.param(DryRunLimits(max_monthly_usd_increase=0.36), False, id="usd-above"),
        pytest.param(
            DryRunLimits(max_monthly_usd_increase=0.05, builds_per_month=4), True, id="weekly"
        ),
        pytest.param(DryRunLimits(max_bytes_increase=0), False, id="zero-tolerance"),
    ],
)
def test_limits_pass_or_fail(limits: DryRunLimits, passed: bool) -> None:
    verdict = evaluate_gate(_cost(*MEASURED), limits)

    assert verdict.passed is passed
    assert len(verdict.failures) == (0 if passed else 1)


def test_a_saving_passes_any_limit() -> None:
    cheaper = _row("slimmed", _bytes(5 * GIB), _bytes(GIB))

    verdict = evaluate_gate(_cost(cheaper), DryRunLimits(max_bytes_increase=0))

    assert verdict.passed
    assert verdict.bytes_increase == -4 * GIB


def test_refused_sql_fails_even_without_limits_but_not_found_is_only_listed() -> None:
    rows = (
        *MEASURED,
        _row("broken", _bytes(GIB), _failed("invalidQuery", "Unrecognized name: x at [1:8]")),
        _row("reads_new_parent", None, _failed("notFound", "Not found: Table p:d.t")),
    )

    verdict = evaluate_gate(_cost(*rows), DryRunLimits())

    assert not verdict.passed
    assert verdict.refused == ("broken",)
    assert verdict.unmeasured == ("reads_new_parent",)
    assert verdict.bytes_increase == 2 * GIB  # neither has a difference to add
    (failure,) = verdict.failures
    assert "broken" in failure


def test_a_failed_dry_run_of_the_base_only_is_not_the_pull_requests_fault() -> None:
    row = _row("flaky_base", _failed("backendError", "try again"), _bytes(GIB))

    verdict = evaluate_gate(_cost(row), DryRunLimits(max_bytes_increase=0))

    assert verdict.passed
    assert verdict.unmeasured == ("flaky_base",)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({}, DryRunLimits(), id="unset"),
        pytest.param(
            {
                "RECFLOW_PR_MAX_BYTES_INCREASE": "",
                "RECFLOW_PR_MAX_MONTHLY_USD_INCREASE": "",
                "RECFLOW_PR_BUILDS_PER_MONTH": "",
            },
            DryRunLimits(),
            id="empty-repository-variables",
        ),
        pytest.param(
            {
                "RECFLOW_PR_MAX_BYTES_INCREASE": "107374182400",
                "RECFLOW_PR_MAX_MONTHLY_USD_INCREASE": "25",
                "RECFLOW_PR_BUILDS_PER_MONTH": "4.3",
            },
            DryRunLimits(
                max_bytes_increase=100 * GIB, max_monthly_usd_increase=25.0, builds_per_month=4.3
            ),
            id="set",
        ),
    ],
)
def test_limits_from_environment(env: dict[str, str], expected: DryRunLimits) -> None:
    assert DryRunLimits.from_env(env) == expected


@pytest.mark.parametrize(
    "env",
    [
        {"RECFLOW_PR_MAX_BYTES_INCREASE": "100GB"},
        {"RECFLOW_PR_MAX_BYTES_INCREASE": "1.5"},
        {"RECFLOW_PR_MAX_MONTHLY_USD_INCREASE": "-1"},
        {"RECFLOW_PR_MAX_MONTHLY_USD_INCREASE": "nan"},
        {"RECFLOW_PR_BUILDS_PER_MONTH": "0"},
    ],
    ids=["unit", "fraction", "negative", "nan", "no-builds"],
)
def test_unusable_limits_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(DryRunGateError, match="RECFLOW_PR_"):
        DryRunLimits.from_env(env)


# What BigQuery's messages and the compiled SQL can hold: table names and rendered values.
SECRET_SQL = "select email from `acme-prod.crm.customers` where plan = 'enterprise-2026'"
SECRET_MESSAGES = (
    "Unrecognized name: email at [1:8]",
    "Not found: Table acme-prod:crm.customers was not found in location EU",
    "Access Denied: Table acme-prod:crm.customers: User does not have permission",
)


def test_the_report_names_failed_models_and_reason_codes_but_no_message_or_sql() -> None:
    metadata = {"adapter_type": "bigquery", "dbt_version": "1.11.0", "project_name": "recflow"}
    empty = {"metadata": metadata, "nodes": {}, "sources": {}}
    review = build_review(empty, empty, ReviewConfig())
    rows = (
        _row("invalid", _bytes(GIB), _failed("invalidQuery", SECRET_MESSAGES[0])),
        _row("missing", None, _failed("notFound", SECRET_MESSAGES[1])),
        _row("denied", _failed("accessDenied", SECRET_MESSAGES[2]), _bytes(GIB)),
        # A reason that is not a plain code (ours or an odd API answer) is left out too.
        _row("odd", None, DryRun(error=SECRET_SQL, reason=SECRET_SQL)),
    )
    cost = _cost(*rows)
    review = replace(review, bigquery=cost, bigquery_gate=evaluate_gate(cost, DryRunLimits()))

    markdown = render_markdown(review, seconds=0.1)

    for secret in (*SECRET_MESSAGES, SECRET_SQL, "acme-prod", "customers", "enterprise"):
        assert secret not in markdown
    for line in (
        "- dry run failed for model `invalid` (pull request, `invalidQuery`), see the job log",
        "- dry run failed for model `missing` (pull request, `notFound`), see the job log",
        "- dry run failed for model `denied` (base, `accessDenied`), see the job log",
        "- dry run failed for model `odd` (pull request), see the job log",
    ):
        assert line in markdown
    assert "**Failed.**" in markdown
    gate = to_json(review, seconds=0.1)["bigquery_gate"]
    assert gate["refused"] == ["invalid", "odd"]
    assert gate["unmeasured"] == ["missing", "denied"]
