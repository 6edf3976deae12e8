"""Shared harness for tests that run dbt: isolated paths per invocation, output capture, and
one tiny sample built once per session for every read-only assertion.

Every dbt invocation here gets its own DuckDB file, target path and log path under pytest's
tmp directory, so tests never touch the repository's `data/` or `dbt/target/`.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from recflow.pipeline.dbt_invocation import DbtRun, dbt_executable, run_dbt
from recflow.pipeline.settings import Settings
from recflow.samples.events import SCALES, SampleData, generate, write_data_dir

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt"
# What the trainer and the gate read (dbt/models/marts/ml).
MARTS = (
    "training_examples",
    "scoring_candidates",
    "item_features",
    "label_window_positives",
    "known_users",
    "user_item_history",
    "event_log_summary",
)
# `dbt build` of every staging model and what it reads: enough for row-level checks. Cautious
# indirect selection keeps out tests that also read unselected models (the marts' tests).
STAGING_BUILD = (
    "build",
    "--select",
    "+stg_app__events",
    "+stg_app__items",
    "+stg_app__users",
    "+stg_app__quarantined_rows",
    "+stg_app__nulled_values",
    "--indirect-selection",
    "cautious",
)
SUBPROCESS_TIMEOUT_S = 600
# What a finished trainer run directory holds.
RUN_ARTIFACTS = frozenset(
    {
        "model.txt",
        "metrics.json",
        "feature_importance.csv",
        "feature_spec.json",
        "test_recommendations.parquet",
        "batch_recommendations.parquet",
        "run_metadata.json",
    }
)
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class Isolation:
    """Where one dbt invocation reads raw data and writes its warehouse, artifacts and logs."""

    data_dir: Path
    duckdb_path: Path
    target_path: Path

    @classmethod
    def under(cls, work_dir: Path, data_dir: Path) -> Isolation:
        """Fresh warehouse and target paths inside `work_dir` (created), reading `data_dir`."""
        work_dir.mkdir(parents=True, exist_ok=True)
        return cls(
            data_dir=data_dir.resolve(),
            duckdb_path=(work_dir / "warehouse.duckdb").resolve(),
            target_path=(work_dir / "dbt_target").resolve(),
        )

    def env_vars(self) -> dict[str, str]:
        """Only the variables this harness sets; `env()` layers them over the process env."""
        return {
            "RECFLOW_DATA_DIR": str(self.data_dir),
            "RECFLOW_DUCKDB_PATH": str(self.duckdb_path),
            "DBT_TARGET_PATH": str(self.target_path),
            "DBT_LOG_PATH": str(self.target_path / "logs"),
            "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR),
            "DO_NOT_TRACK": "1",
        }

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.env_vars()}


@dataclass(frozen=True)
class CommandResult:
    """Exit code and combined stdout+stderr (colour codes removed) of one command."""

    returncode: int
    output: str


def run_command(
    command: Sequence[str], isolation: Isolation, extra_env: Mapping[str, str] | None = None
) -> CommandResult:
    """Run `command` with the isolation's environment (plus `extra_env`), from its work
    directory."""
    completed = subprocess.run(
        list(command),
        env={**isolation.env(), **(extra_env or {})},
        cwd=isolation.duckdb_path.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )
    return CommandResult(completed.returncode, _ANSI_ESCAPE.sub("", completed.stdout))


def run_dbt_command(isolation: Isolation, *args: str) -> CommandResult:
    """`dbt <args>` on the repository's project, as a child process, output captured."""
    return run_command([dbt_executable(), *args, "--project-dir", str(DBT_PROJECT_DIR)], isolation)


def run_recflow_cli(
    isolation: Isolation, *args: str, extra_env: Mapping[str, str] | None = None
) -> CommandResult:
    """`recflow <args>` exactly as a user runs it (a fresh interpreter), output captured."""
    return run_command([sys.executable, "-m", "recflow.cli", *args], isolation, extra_env)


def query(duckdb_path: Path, sql: str) -> list[tuple[Any, ...]]:
    """All rows of `sql` on a built warehouse, opened read-only."""
    with duckdb.connect(str(duckdb_path), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def scalar(duckdb_path: Path, sql: str) -> Any:
    (row,) = query(duckdb_path, sql)
    return row[0]


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str | None]]) -> Path:
    """Write one raw table as CSV; None becomes an empty field (read back as null)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@dataclass(frozen=True)
class TinySample:
    """The generator's tiny preset, written once as Parquet; the ground truth for counts."""

    data: SampleData
    parquet_dir: Path


@dataclass(frozen=True)
class TinyWarehouse:
    """A finished `dbt build` of the tiny Parquet sample. Read-only: copy before mutating."""

    sample: SampleData
    isolation: Isolation
    build: DbtRun

    @property
    def duckdb_path(self) -> Path:
        return self.isolation.duckdb_path

    @property
    def data_dir(self) -> Path:
        return self.isolation.data_dir


@pytest.fixture(scope="session")
def tiny_sample(tmp_path_factory: pytest.TempPathFactory) -> TinySample:
    data = generate(SCALES["tiny"])
    parquet_dir = tmp_path_factory.mktemp("tiny_parquet")
    write_data_dir(data.tables, parquet_dir, file_format="parquet")
    return TinySample(data=data, parquet_dir=parquet_dir)


@pytest.fixture(scope="session")
def tiny_warehouse(
    tiny_sample: TinySample, tmp_path_factory: pytest.TempPathFactory
) -> TinyWarehouse:
    """`dbt build` of the whole project on the tiny sample, once per session.

    Runs through `run_dbt` with `Settings.from_env`, the path `recflow run` takes; dbt's output
    is written to stderr (shown by pytest) only if the build fails.
    """
    isolation = Isolation.under(tmp_path_factory.mktemp("tiny_build"), tiny_sample.parquet_dir)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in isolation.env_vars().items():
            patch.setenv(name, value)
        settings = Settings.from_env(data_dir=tiny_sample.parquet_dir)
        build = run_dbt(settings, "build", quiet=True)
    return TinyWarehouse(sample=tiny_sample.data, isolation=isolation, build=build)
