"""What issue 6 demands of the GitHub Actions workflows, read from the YAML itself: least
privilege, pinned actions, no secrets where forks run, concurrency, the production environment,
training only after a successful dbt build, and thin steps that call local commands."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from workflow_files import (
    CONTINUOUS_TRAINING,
    PULL_REQUEST,
    REPO_ROOT,
    Step,
    all_steps,
    load,
    steps,
    workflow_paths,
)

FULL_SHA_PIN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$")
VERSION_COMMENT = re.compile(r"#\s*v\d+(\.\d+)*\b")
WIF_ACTION = "google-github-actions/auth@"
SAME_REPOSITORY = "github.event.pull_request.head.repo.full_name == github.repository"
# Shell glue a step may hold beside its `make`/`recflow` call: files, summaries and outputs.
GLUE_COMMANDS = frozenset({"cat", "echo", "mkdir", "gcloud", "if", "then", "else", "fi", "{", "||"})
MAX_COMMANDS_PER_STEP = 6


def _job_ids(path: Path) -> list[str]:
    return list(load(path)["jobs"])


def _jobs(path: Path) -> dict[str, dict[str, Any]]:
    return load(path)["jobs"]


def _uses_auth(path: Path, job_id: str) -> bool:
    return any(
        step.job == job_id and (step.uses or "").startswith(WIF_ACTION) for step in steps(path)
    )


def test_both_workflows_exist():
    assert {path.name for path in workflow_paths()} >= {PULL_REQUEST.name, CONTINUOUS_TRAINING.name}


@pytest.mark.parametrize("path", workflow_paths(), ids=lambda path: path.name)
def test_every_third_party_action_is_pinned_to_a_full_commit_sha_with_its_version(path: Path):
    lines = [line for line in path.read_text().splitlines() if USES_LINE.match(line)]
    assert lines, f"{path.name} uses no action at all"
    for line in lines:
        reference, rest = USES_LINE.match(line).groups()
        assert FULL_SHA_PIN.match(reference), f"{path.name}: `{reference}` is not pinned to a SHA"
        assert VERSION_COMMENT.search(rest), f"{path.name}: `{reference}` has no `# vX.Y.Z`"


@pytest.mark.parametrize("path", workflow_paths(), ids=lambda path: path.name)
def test_permissions_are_empty_at_the_top_and_granted_per_job(path: Path):
    workflow = load(path)
    assert workflow["permissions"] == {}, f"{path.name}: top-level permissions must be {{}}"
    for job_id, job in workflow["jobs"].items():
        assert isinstance(job.get("permissions"), dict), f"{path.name}: {job_id} sets none"
        assert "write-all" not in str(job["permissions"])


@pytest.mark.parametrize("path", workflow_paths(), ids=lambda path: path.name)
def test_id_token_is_granted_exactly_to_the_jobs_that_authenticate_to_google_cloud(path: Path):
    for job_id, job in _jobs(path).items():
        has_id_token = job["permissions"].get("id-token") == "write"
        assert has_id_token == _uses_auth(path, job_id), (
            f"{path.name}: job {job_id} id-token={has_id_token} but uses auth="
            f"{_uses_auth(path, job_id)}"
        )


@pytest.mark.parametrize("path", workflow_paths(), ids=lambda path: path.name)
def test_every_job_has_a_timeout(path: Path):
    for job_id, job in _jobs(path).items():
        assert isinstance(job.get("timeout-minutes"), int), f"{path.name}: {job_id} has no timeout"


@pytest.mark.parametrize("path", workflow_paths(), ids=lambda path: path.name)
def test_checkouts_do_not_persist_credentials(path: Path):
    checkouts = [step for step in steps(path) if (step.uses or "").startswith("actions/checkout@")]
    assert checkouts
    for step in checkouts:
        assert step.spec.get("with", {}).get("persist-credentials") is False, step.label


@pytest.mark.parametrize("path", workflow_paths(), ids=lambda path: path.name)
def test_workflows_have_concurrency_groups(path: Path):
    concurrency = load(path).get("concurrency")
    assert concurrency and concurrency.get("group"), f"{path.name} has no concurrency group"


def test_pull_request_workflow_runs_for_forks_without_secrets_or_a_privileged_trigger():
    text = PULL_REQUEST.read_text()
    workflow = load(PULL_REQUEST)
    assert "pull_request" in workflow["on"]
    assert not {"pull_request_target", "workflow_run"} & set(workflow["on"])
    assert not re.search(r"\bsecrets\.", text), "the pull-request workflow must use no secret"
    for job_id, job in workflow["jobs"].items():
        assert "environment" not in job
        # Only a job that never runs for a fork may ask for a cloud identity (issue 14; the
        # fork path is evaluated in test_pull_request_bigquery.py).
        if "id-token" in job["permissions"]:
            assert SAME_REPOSITORY in job["if"], job_id


def test_pull_request_superseded_runs_are_cancelled_but_main_runs_finish():
    concurrency = load(PULL_REQUEST)["concurrency"]
    assert "pull_request.number" in concurrency["group"]
    assert concurrency["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"


def test_pull_request_checks_cover_lint_changed_sql_dbt_pytest_trainer_and_review():
    commands = " ; ".join(cmd for step in steps(PULL_REQUEST) for cmd in step.commands())
    for expected in (
        "make lint-python",
        "make lint-sql-changed BASE=",
        "make lint-workflows",
        "make pytest",
        "make build",
        "make run",
        "make docs",
        "make review BASE_REF=",
        "recflow comment --body-file review/review.md",
        'review/review.md >> "$GITHUB_STEP_SUMMARY"',
    ):
        assert expected in commands, f"no step runs `{expected}`"
    pipeline = _jobs(PULL_REQUEST)["pipeline"]
    assert pipeline["env"]["RECFLOW_DBT_TARGET"] == "ci"


def test_pull_request_pipeline_keeps_the_dbt_docs_of_its_build():
    pipeline_steps = [step for step in steps(PULL_REQUEST) if step.job == "pipeline"]
    build = next(step for step in pipeline_steps if step.commands() == ["make build"])
    docs = next(step for step in pipeline_steps if step.commands() == ["make docs"])
    upload = next(
        step for step in pipeline_steps if (step.uses or "").startswith("actions/upload-artifact@")
    )
    # After the build, so the catalog is read from this pull request's warehouse.
    assert build.index < docs.index < upload.index
    assert upload.spec["with"]["path"] == "build/dbt-docs/index.html"
    assert upload.spec["with"]["if-no-files-found"] == "error"


def test_jobs_that_diff_against_the_base_fetch_full_history():
    for step in steps(PULL_REQUEST):
        if any("BASE" in command for command in step.commands()):
            checkout = next(
                s
                for s in steps(PULL_REQUEST)
                if s.job == step.job and (s.uses or "").startswith("actions/checkout@")
            )
            assert checkout.spec["with"].get("fetch-depth") == 0, step.label


def test_review_comment_is_posted_only_for_pull_requests_from_this_repository():
    comments = [
        step for step in steps(PULL_REQUEST) if "recflow comment" in " ".join(step.commands())
    ]
    for step in comments:
        # Guarded by the step itself, or by a job that never runs for a fork.
        guard = step.spec["if"] if step.spec.get("if") == SAME_REPOSITORY else None
        assert guard or SAME_REPOSITORY in _jobs(PULL_REQUEST)[step.job]["if"], step.label
        assert step.spec["env"]["GITHUB_TOKEN"] == "${{ github.token }}"
    comment = comments[0]
    assert comment.spec["if"] == SAME_REPOSITORY
    summary = next(
        step for step in steps(PULL_REQUEST) if "GITHUB_STEP_SUMMARY" in (step.run or "")
    )
    assert "if" not in summary.spec, "fork pull requests must still get the report in the summary"
    assert summary.index < comment.index
    review_job = _jobs(PULL_REQUEST)[comment.job]
    assert review_job["permissions"] == {"contents": "read", "pull-requests": "write"}


def test_pip_cache_is_keyed_on_the_lock_file():
    caches = [step for step in all_steps() if (step.uses or "").startswith("actions/cache@")]
    assert caches
    for step in caches:
        assert "hashFiles('requirements.lock')" in step.spec["with"]["key"], step.label


def test_continuous_training_triggers():
    triggers = load(CONTINUOUS_TRAINING)["on"]
    assert triggers["push"]["branches"] == ["main"]
    assert sorted(triggers["push"]["paths"]) == ["dbt/**", "trainer/**"]
    assert triggers["schedule"][0]["cron"]
    force = triggers["workflow_dispatch"]["inputs"]["force_training"]
    assert force["type"] == "boolean"
    assert force["default"] is False


def test_two_trainings_never_race():
    concurrency = load(CONTINUOUS_TRAINING)["concurrency"]
    assert concurrency["cancel-in-progress"] is False
    assert "${{" not in concurrency["group"].replace("${{ github.workflow }}", ""), (
        "one group for every run of the workflow, whatever the ref"
    )


def test_training_needs_a_successful_dbt_build_and_a_reason_to_train():
    jobs = _jobs(CONTINUOUS_TRAINING)
    assert jobs["train"]["needs"] == "dbt-build"
    condition = jobs["train"]["if"]
    assert "needs.dbt-build.result == 'success'" in condition
    assert "needs.dbt-build.outputs.training_needed == 'true'" in condition
    # No always()/failure() that would let it run after a failed build.
    assert not re.search(r"\b(always|failure)\(\)", condition)
    output = jobs["dbt-build"]["outputs"]["training_needed"]
    assert output == "${{ steps.training-needed.outputs.training_needed }}"


def test_training_needed_is_decided_before_the_build_and_forced_on_schedule_and_dispatch():
    build_steps = [step for step in steps(CONTINUOUS_TRAINING) if step.job == "dbt-build"]
    decide = next(step for step in build_steps if step.spec.get("id") == "training-needed")
    build = next(step for step in build_steps if "make build" in step.commands())
    assert decide.index < build.index
    script = " ".join(decide.commands())
    assert 'recflow training-needed --state "$PROD_STATE_DIR"' in script
    assert 'training_needed=$needed" >> "$GITHUB_OUTPUT"' in script
    forced = decide.spec["env"]["FORCED"]
    assert "github.event_name == 'schedule'" in forced
    assert "inputs.force_training" in forced


def test_production_jobs_use_the_production_environment_and_federated_identity():
    for job_id, job in _jobs(CONTINUOUS_TRAINING).items():
        assert job["environment"] == "production", job_id
        assert job["permissions"] == {"contents": "read", "id-token": "write"}, job_id
        auth = next(
            step
            for step in steps(CONTINUOUS_TRAINING)
            if step.job == job_id and (step.uses or "").startswith(WIF_ACTION)
        )
        assert set(auth.spec["with"]) == {"workload_identity_provider", "service_account"}
        assert auth.spec["with"]["workload_identity_provider"].startswith("${{ vars.")
    assert "credentials_json" not in CONTINUOUS_TRAINING.read_text()


def test_dbt_build_keeps_its_artifacts_and_stores_the_new_production_state():
    build_steps = [step for step in steps(CONTINUOUS_TRAINING) if step.job == "dbt-build"]
    upload = next(s for s in build_steps if (s.uses or "").startswith("actions/upload-artifact@"))
    assert upload.spec["with"]["path"].split() == [
        "dbt/target/manifest.json",
        "dbt/target/run_results.json",
    ]
    fetch, store = (
        next(
            s for s in build_steps if "$PROD_STATE_URI" in (s.run or "") and verb in s.spec["name"]
        )
        for verb in ("Fetch", "Store")
    )
    build = next(step for step in build_steps if "make build" in step.commands())
    assert fetch.index < build.index < store.index
    assert "if" not in store.spec, "the state moves only when the build succeeded"
    state_uri = _jobs(CONTINUOUS_TRAINING)["dbt-build"]["env"]["PROD_STATE_URI"]
    assert state_uri.endswith("/dbt-state/prod/manifest.json")
    documented = "gs://$RECFLOW_GCS_BUCKET/$RECFLOW_GCS_PREFIX/dbt-state/prod/manifest.json"
    assert documented in (REPO_ROOT / "docs" / "production.md").read_text()


def test_train_job_submits_gates_records_and_serves_in_order():
    train_steps = [step for step in steps(CONTINUOUS_TRAINING) if step.job == "train"]
    commands = [(step.index, " ".join(step.commands())) for step in train_steps]

    def index_of(fragment: str) -> int:
        return next(index for index, command in commands if fragment in command)

    submit = index_of("recflow submit --run-dir-out run_dir.txt")
    # The runner only orchestrates: the gate reads BigQuery inside a Vertex AI job.
    gate = index_of('recflow gate-job --run-dir "$(cat run_dir.txt)"')
    summary = index_of("GITHUB_STEP_SUMMARY")
    serving = index_of("make build-serving")
    assert submit < gate < summary < serving
    gate_command = commands[[index for index, _ in commands].index(gate)][1]
    for flag in ("--service-account", "--recommendations-table", "--decision-out"):
        assert flag in gate_command
    upload = next(s for s in train_steps if (s.uses or "").startswith("actions/upload-artifact@"))
    assert upload.spec["with"]["path"] == "decision.json"


@pytest.mark.parametrize("step", list(all_steps()), ids=lambda step: step.label)
def test_every_run_step_calls_make_or_recflow_or_is_small_glue(step: Step):
    if step.run is None:
        assert step.uses, f"{step.label} neither runs nor uses anything"
        return
    commands = step.commands()
    assert 0 < len(commands) <= MAX_COMMANDS_PER_STEP, f"{step.label} is a script, not a step"
    for command in commands:
        calls_local_command = re.search(r"(^|[\s\"'(])(make|(\.venv/bin/)?recflow)\s", command)
        first_word = re.split(r"[\s;]", command, maxsplit=1)[0]
        is_glue = first_word in GLUE_COMMANDS or re.match(r"^[a-z_]+=", command)
        assert calls_local_command or is_glue, f"{step.label}: `{command}` is neither"


@pytest.mark.parametrize("step", list(all_steps()), ids=lambda step: step.label)
def test_no_expression_is_expanded_inside_a_run_script(step: Step):
    """Expressions go through `env:`, so no value is ever pasted into shell source."""
    assert "${{" not in (step.run or ""), step.label
