"""The pull-request workflow's BigQuery review (issue 14), read from the YAML: which jobs run for a
pull request from a fork, from this repository, and from this repository before Google Cloud is
configured, evaluated with GitHub's expression rules; and how the BigQuery job authenticates,
gates and reports."""

from __future__ import annotations

from typing import Any

import pytest
from workflow_expressions import evaluate, runs
from workflow_files import PULL_REQUEST, Step, load, steps

SAME_REPOSITORY = "github.event.pull_request.head.repo.full_name == github.repository"
WIF_ACTION = "google-github-actions/auth@"
REPOSITORY = "octo/recflow"
BIGQUERY_JOB = "review-bigquery"
DUCKDB_CHECKS = {"lint", "pytest", "pipeline"}
GATE_VARIABLES = (
    "RECFLOW_PR_MAX_BYTES_INCREASE",
    "RECFLOW_PR_MAX_MONTHLY_USD_INCREASE",
    "RECFLOW_PR_BUILDS_PER_MONTH",
)


def _pull_request(head_repository: str, variables: dict[str, str]) -> dict[str, Any]:
    return {
        "github": {
            "event_name": "pull_request",
            "repository": REPOSITORY,
            "event": {"pull_request": {"head": {"repo": {"full_name": head_repository}}}},
        },
        "vars": variables,
    }


CONFIGURED = {"GCP_PR_SERVICE_ACCOUNT": "recflow-pr@p.iam.gserviceaccount.com"}
FORK = _pull_request("someone/recflow", CONFIGURED)
SAME_REPO = _pull_request(REPOSITORY, CONFIGURED)
SAME_REPO_UNCONFIGURED = _pull_request(REPOSITORY, {})
PUSH_TO_MAIN = {"github": {"event_name": "push", "repository": REPOSITORY, "event": {}}}


def _running_jobs(context: dict[str, Any]) -> set[str]:
    return {
        job_id for job_id, job in load(PULL_REQUEST)["jobs"].items() if runs(job.get("if"), context)
    }


def _job_steps(job_id: str) -> list[Step]:
    return [step for step in steps(PULL_REQUEST) if step.job == job_id]


def _step_running(job_id: str, fragment: str) -> Step:
    return next(step for step in _job_steps(job_id) if fragment in " ".join(step.commands()))


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        pytest.param(FORK, DUCKDB_CHECKS | {"review"}, id="fork"),
        pytest.param(SAME_REPO, DUCKDB_CHECKS | {BIGQUERY_JOB}, id="same-repository"),
        pytest.param(SAME_REPO_UNCONFIGURED, DUCKDB_CHECKS | {"review"}, id="not-configured"),
        pytest.param(PUSH_TO_MAIN, DUCKDB_CHECKS, id="push-to-main"),
    ],
)
def test_which_jobs_run(context: dict[str, Any], expected: set[str]) -> None:
    assert _running_jobs(context) == expected


def test_a_fork_skips_the_bigquery_job_and_never_reaches_an_auth_step() -> None:
    for job_id, job in load(PULL_REQUEST)["jobs"].items():
        auth_steps = [s for s in _job_steps(job_id) if (s.uses or "").startswith(WIF_ACTION)]
        if not auth_steps:
            continue
        assert not runs(job.get("if"), FORK), f"job {job_id} runs for a fork"
        assert SAME_REPOSITORY in job["if"]
        for step in auth_steps:
            assert step.spec["if"] == SAME_REPOSITORY, step.label
            assert not runs(step.spec["if"], FORK)
            assert runs(step.spec["if"], SAME_REPO)


def test_the_guards_are_not_vacuous() -> None:
    """The evaluator tells the two events apart, so the tests above can fail."""
    assert evaluate(SAME_REPOSITORY, SAME_REPO) is True
    assert evaluate(SAME_REPOSITORY, FORK) is False
    assert evaluate("vars.GCP_PR_SERVICE_ACCOUNT != ''", SAME_REPO_UNCONFIGURED) is False


def test_the_bigquery_job_authenticates_as_the_pull_request_identity_only() -> None:
    job = load(PULL_REQUEST)["jobs"][BIGQUERY_JOB]
    assert job["permissions"] == {
        "contents": "read",
        "id-token": "write",
        "pull-requests": "write",
    }
    assert "environment" not in job, "the production environment's identity is not for PRs"
    (auth,) = [s for s in _job_steps(BIGQUERY_JOB) if (s.uses or "").startswith(WIF_ACTION)]
    assert auth.spec["with"] == {
        "workload_identity_provider": "${{ vars.GCP_PR_WORKLOAD_IDENTITY_PROVIDER }}",
        "service_account": "${{ vars.GCP_PR_SERVICE_ACCOUNT }}",
    }
    review = _step_running(BIGQUERY_JOB, "make review")
    checkout = _job_steps(BIGQUERY_JOB)[0]
    assert (checkout.uses or "").startswith("actions/checkout@")
    assert checkout.index < auth.index < review.index


def test_the_bigquery_job_dry_runs_gates_and_still_reports_a_failed_gate() -> None:
    job = load(PULL_REQUEST)["jobs"][BIGQUERY_JOB]
    review = _step_running(BIGQUERY_JOB, "make review")
    assert review.commands() == ['make review BASE_REF="$BASE_SHA" REVIEW_BIGQUERY=1']
    # The gate's exit code fails the check: nothing may swallow it.
    assert "if" not in review.spec
    assert "continue-on-error" not in review.spec and "continue-on-error" not in job
    for name in GATE_VARIABLES:
        assert job["env"][name] == f"${{{{ vars.{name} }}}}"
    summary = _step_running(BIGQUERY_JOB, "GITHUB_STEP_SUMMARY")
    comment = _step_running(BIGQUERY_JOB, "recflow comment --body-file review/review.md")
    assert review.index < summary.index < comment.index
    for step in (summary, comment):
        assert "!cancelled()" in step.spec["if"], step.label
        assert "hashFiles('review/review.md') != ''" in step.spec["if"], step.label
    assert comment.spec["env"]["GITHUB_TOKEN"] == "${{ github.token }}"


def test_the_duckdb_review_still_reports_to_forks() -> None:
    commands = [" ".join(step.commands()) for step in _job_steps("review")]
    assert any('make review BASE_REF="$BASE_SHA"' in c and "BIGQUERY" not in c for c in commands)
    summary = _step_running("review", "GITHUB_STEP_SUMMARY")
    assert runs(summary.spec.get("if"), FORK)
