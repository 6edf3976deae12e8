"""Every `make` target and `recflow` subcommand (with every long flag) that a workflow step calls
exists locally, so a step that passes in CI is a command anyone can run on a laptop. The names
are read from the workflows, not listed here, so a renamed target or flag fails this test."""

from __future__ import annotations

import argparse
import subprocess

import pytest
from workflow_files import REPO_ROOT, MakeCall, RecflowCall, make_calls, recflow_calls

from recflow import cli

MAKE_TIMEOUT_S = 60


def _subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli._parser()
    subparsers = next(
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    )
    return dict(subparsers.choices)


def test_workflows_call_local_commands():
    assert {call.subcommand for call in recflow_calls()} >= {"submit", "gate-job", "comment"}
    assert {target for call in make_calls() for target in call.targets} >= {"install", "build"}


@pytest.mark.parametrize(
    "call",
    recflow_calls(),
    ids=lambda call: f"{call.step.workflow}:{call.step.job}:recflow {call.subcommand}",
)
def test_recflow_subcommand_and_flags_exist(call: RecflowCall):
    parsers = _subcommand_parsers()
    assert call.subcommand in parsers, (
        f"{call.step.label} runs `recflow {call.subcommand}`, which the CLI does not have "
        f"(it has: {', '.join(sorted(parsers))})"
    )
    known_flags = set(parsers[call.subcommand]._option_string_actions)
    for flag in call.flags:
        assert flag in known_flags, (
            f"{call.step.label}: `recflow {call.subcommand}` has no option {flag}"
        )


@pytest.mark.parametrize(
    "call",
    make_calls(),
    ids=lambda call: f"{call.step.workflow}:{call.step.job}:make {' '.join(call.targets)}",
)
def test_make_targets_exist(call: MakeCall):
    assert call.targets, f"{call.step.label} runs a bare `make`: name the target"
    for target in call.targets:
        # A dry run: prints the recipe, runs nothing, and fails only for an unknown target.
        dry_run = subprocess.run(
            ["make", "--dry-run", "--no-print-directory", target],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=MAKE_TIMEOUT_S,
            check=False,
        )
        assert "No rule to make target" not in dry_run.stderr, (
            f"{call.step.label} runs `make {target}`, which the Makefile does not have"
        )
        assert dry_run.returncode == 0, f"make --dry-run {target} failed:\n{dry_run.stderr}"
