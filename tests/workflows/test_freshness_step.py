"""Continuous training checks the raw events' freshness before the production build (issue 14):
a stale export fails that step, and with it the job, before anything is built or trained."""

from __future__ import annotations

from workflow_files import CONTINUOUS_TRAINING, steps

FRESHNESS_VARIABLES = ("RECFLOW_FRESHNESS_WARN_AFTER_HOURS", "RECFLOW_FRESHNESS_ERROR_AFTER_HOURS")


def test_freshness_runs_after_authentication_and_before_the_build() -> None:
    build_steps = [step for step in steps(CONTINUOUS_TRAINING) if step.job == "dbt-build"]
    (freshness,) = [step for step in build_steps if "make freshness" in step.commands()]
    (build,) = [step for step in build_steps if "make build" in step.commands()]
    auth = next(s for s in build_steps if (s.uses or "").startswith("google-github-actions/auth@"))

    assert auth.index < freshness.index < build.index
    # A stale source must stop the job: no condition, nothing that swallows the exit code.
    assert freshness.commands() == ["make freshness"]
    assert "if" not in freshness.spec and "continue-on-error" not in freshness.spec
    assert "if" not in build.spec, "the build runs only after a fresh source"
    for name in FRESHNESS_VARIABLES:
        assert freshness.spec["env"][name] == f"${{{{ vars.{name} }}}}"
