"""`recflow review --base-ref`: the base ref and the working tree built side by side.

The base ref is checked out in a temporary git worktree (removed afterwards); both dbt projects
are built (`dbt run`) on the DuckDB `ci` target from the same data, each with its own DuckDB
file, target and log directories under the review's work directory, and with BigQuery asked for
also compiled with `--target prod`. Each side runs dbt with its own project's profiles.yml, so a
pull request that changes the profile is built as it would run.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from recflow.pipeline.dbt_invocation import DbtFailedError, dbt_executable
from recflow.samples import events as sample_events

log = logging.getLogger(__name__)

CI_TARGET = "ci"
PROD_TARGET = "prod"


class ReviewBuildError(RuntimeError):
    """The base ref or the repository cannot be used (exit 2); the message says why."""


@dataclass(frozen=True)
class Side:
    """One side's build directory: its DuckDB file, logs and a target directory per dbt target."""

    work_dir: Path

    @property
    def warehouse(self) -> Path:
        return self.work_dir / "warehouse.duckdb"

    def target_path(self, target: str = CI_TARGET) -> Path:
        return self.work_dir / f"target-{target}"

    def manifest(self, target: str = CI_TARGET) -> Path:
        return self.target_path(target) / "manifest.json"

    @property
    def run_results(self) -> Path:
        return self.target_path(CI_TARGET) / "run_results.json"

    def dbt_environment(self, target: str, data_dir: Path) -> dict[str, str]:
        """The process environment with this side's paths, so the two builds never meet."""
        return {
            **os.environ,
            "DO_NOT_TRACK": "1",
            "RECFLOW_DATA_DIR": str(data_dir),
            "RECFLOW_DBT_TARGET": target,
            "RECFLOW_DUCKDB_PATH": str(self.warehouse),
            "DBT_TARGET_PATH": str(self.target_path(target)),
            "DBT_LOG_PATH": str(self.work_dir / "logs"),
        }


@dataclass(frozen=True)
class ReviewBuilds:
    """Both sides built, how the report names them, and where sqlfluff's dbt templater works."""

    base: Side
    head: Side
    base_label: str
    head_label: str
    lint_environment: dict[str, str]


def ensure_sample_data(data_dir: Path) -> None:
    """Generate the default sample into `data_dir` unless it exists (as `recflow sample`)."""
    if data_dir.exists():
        return
    log.info("no data in %s yet: generating the %s sample", data_dir, sample_events.DEFAULT_SCALE)
    generated = sample_events.generate(sample_events.SCALES[sample_events.DEFAULT_SCALE])
    sample_events.write_data_dir(generated.tables, data_dir, file_format="parquet")


def build_against_ref(
    project_dir: Path, base_ref: str, work: Path, data_dir: Path, *, bigquery: bool = False
) -> ReviewBuilds:
    """Build `base_ref`'s dbt project and the working tree's (`project_dir`) under `work`
    (emptied first); with `bigquery`, compile both for production too."""
    project_dir = project_dir.resolve()
    repo = Path(_git(project_dir, "rev-parse", "--show-toplevel"))
    shutil.rmtree(work, ignore_errors=True)
    (work / "lint").mkdir(parents=True)
    base, head = Side(work / "base"), Side(work / "head")
    with base_checkout(repo, base_ref, work / "base-src") as (base_repo, base_sha):
        base_project = base_repo / project_dir.relative_to(repo)
        log.info("building base %s (%s)", base_ref, base_sha)
        _dbt(base, "run", base_project, CI_TARGET, data_dir)
        log.info("building the working tree")
        _dbt(head, "run", project_dir, CI_TARGET, data_dir)
        if bigquery:
            _dbt(base, "compile", base_project, PROD_TARGET, data_dir)
            _dbt(head, "compile", project_dir, PROD_TARGET, data_dir)
    branch = _git(repo, "rev-parse", "--abbrev-ref", "HEAD")
    return ReviewBuilds(
        base=base,
        head=head,
        base_label=f"{base_ref} ({_git(repo, 'rev-parse', '--short', base_sha)})",
        head_label=f"working tree of {branch} ({_git(repo, 'rev-parse', '--short', 'HEAD')})",
        lint_environment={
            **os.environ,
            "DO_NOT_TRACK": "1",
            "RECFLOW_DATA_DIR": str(data_dir),
            "RECFLOW_DUCKDB_PATH": str(work / "lint" / "warehouse.duckdb"),
            "DBT_TARGET_PATH": str(work / "lint" / "target"),
            "DBT_LOG_PATH": str(work / "lint" / "logs"),
        },
    )


@contextmanager
def base_checkout(repo: Path, ref: str, destination: Path) -> Iterator[tuple[Path, str]]:
    """`ref` checked out (detached) at `destination` as a git worktree of `repo`: yields the
    checkout and the commit; the worktree is removed on the way out, failures included."""
    _git(repo, "worktree", "prune")
    try:
        sha = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except ReviewBuildError as error:
        raise ReviewBuildError(f"--base-ref {ref} is not a commit here (git fetch it?)") from error
    _git(repo, "worktree", "add", "--quiet", "--detach", str(destination), sha)
    try:
        yield destination, sha
    finally:
        _git(repo, "worktree", "remove", "--force", str(destination))


def _dbt(side: Side, command: str, project_dir: Path, target: str, data_dir: Path) -> None:
    """`dbt <command>` on one side's project and target; DbtFailedError when it fails."""
    completed = subprocess.run(
        [
            dbt_executable(),
            command,
            *("--project-dir", str(project_dir)),
            *("--profiles-dir", str(project_dir)),
            *("--target", target),
        ],
        env=side.dbt_environment(target, data_dir),
        check=False,
    )
    if completed.returncode != 0:
        raise DbtFailedError(
            f"dbt {command} --target {target} of {project_dir} failed "
            f"(exit {completed.returncode}); see its output above"
        )


def _git(cwd: Path, *args: str) -> str:
    """`git <args>` in `cwd`: its output, stripped; ReviewBuildError when git refuses."""
    completed = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise ReviewBuildError(
            f"git {' '.join(args)} failed in {cwd}: {completed.stderr.strip() or 'no output'}"
        )
    return completed.stdout.strip()
