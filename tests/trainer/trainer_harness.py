"""Helpers the trainer's tests share: run `python -m trainer.task` as a user does, copy and
mutate a built warehouse, and check that a failed run left nothing behind.

Not a conftest (a second `conftest` module would shadow `tests/conftest.py` for `from conftest
import ...`): test modules in this directory import it by name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
from conftest import SUBPROCESS_TIMEOUT_S, TinyWarehouse

from trainer.feature_spec import (
    EXAMPLES_MODEL,
    HISTORY_MODEL,
    ITEM_FEATURES_MODEL,
    KNOWN_USERS_MODEL,
    POSITIVES_MODEL,
    SCORING_MODEL,
)

# Recorded as run_metadata.json's git_commit, so no test run shells out to git.
FAKE_GIT_COMMIT = "0123456789abcdef0123456789abcdef01234567"
# Enough rounds to learn something on the tiny sample, few enough to take well under a second.
FAST_ROUNDS = ("--num-boost-round", "30", "--log-every", "1000")
MART_TABLES = (
    EXAMPLES_MODEL,
    SCORING_MODEL,
    POSITIVES_MODEL,
    ITEM_FEATURES_MODEL,
    KNOWN_USERS_MODEL,
    HISTORY_MODEL,
)


@dataclass(frozen=True)
class TrainerResult:
    """Exit code and the two output streams of one `python -m trainer.task`."""

    returncode: int
    stdout: str
    stderr: str


def trainer_env() -> dict[str, str]:
    """The process environment minus anything that would change the trainer's defaults.

    OMP_WAIT_POLICY=PASSIVE: LightGBM's OpenMP threads otherwise spin while they wait, which
    makes training ~20x slower whenever another process shares the CPU.
    """
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AIP_", "CLOUD_ML_", "RECFLOW_", "DBT_"))
    }
    return {**inherited, "GIT_COMMIT": FAKE_GIT_COMMIT, "OMP_WAIT_POLICY": "PASSIVE"}


def run_trainer(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> TrainerResult:
    """`python -m trainer.task <args>` in a fresh interpreter, output captured; `env` is laid
    over `trainer_env()` (e.g. Vertex AI's variables or a stand-in's address)."""
    completed = subprocess.run(
        [sys.executable, "-m", "trainer.task", *args],
        env={**trainer_env(), **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )
    return TrainerResult(completed.returncode, completed.stdout, completed.stderr)


def trainer_args(
    warehouse_uri: str,
    manifest: Path,
    output_dir: Path | str,
    *,
    recommendations_table: str = "",
    extra: Sequence[str] = FAST_ROUNDS,
) -> list[str]:
    """Arguments for one fast run; by default nothing is written back to the warehouse."""
    return [
        "--warehouse-uri",
        warehouse_uri,
        "--manifest",
        str(manifest),
        "--output-dir",
        str(output_dir),
        "--recommendations-table",
        recommendations_table,
        *extra,
    ]


def duckdb_uri(path: Path) -> str:
    return f"duckdb://{path.resolve()}"


def manifest_of(warehouse: TinyWarehouse) -> Path:
    """The manifest.json written by the build that made `warehouse`."""
    return warehouse.isolation.target_path / "manifest.json"


def copy_warehouse(warehouse: TinyWarehouse, work_dir: Path) -> Path:
    """A private, writable copy of the built DuckDB file under `work_dir`."""
    work_dir.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(warehouse.duckdb_path, work_dir / "warehouse.duckdb"))


def execute(duckdb_path: Path, *statements: str) -> None:
    """Run SQL statements, read-write, in one connection."""
    with duckdb.connect(str(duckdb_path)) as connection:
        for statement in statements:
            connection.execute(statement)


def frame(duckdb_path: Path, sql: str) -> pd.DataFrame:
    """The result of `sql` on a warehouse, opened read-only, as a DataFrame."""
    with duckdb.connect(str(duckdb_path), read_only=True) as connection:
        return connection.sql(sql).df()


def column_types(duckdb_path: Path, table: str) -> dict[str, str]:
    """Column name -> DuckDB type name of `main.<table>`."""
    with duckdb.connect(str(duckdb_path), read_only=True) as connection:
        rows = connection.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'main' and table_name = ? order by ordinal_position",
            [table],
        ).fetchall()
    return dict(rows)


def export_parquet(duckdb_path: Path, directory: Path) -> Path:
    """Write the four marts the trainer reads as `<table>.parquet` files in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(duckdb_path), read_only=True) as connection:
        for table in MART_TABLES:
            target = (directory / f"{table}.parquet").as_posix()
            connection.execute(f"copy main.{table} to '{target}' (format parquet)")
    return directory


def partial_dirs(output_dir: Path) -> list[Path]:
    """Staging directories the trainer left beside `output_dir` (there should be none)."""
    parent = output_dir.parent
    return sorted(parent.glob(f".{output_dir.name}.partial-*")) if parent.is_dir() else []


def assert_clean_failure(result: TrainerResult, output_dir: Path, *fragments: str) -> None:
    """Exit 2 with a one-line `trainer: ...` message holding every fragment, no traceback, and
    neither the run directory nor a staging directory left behind."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    message = next(
        (line for line in result.stderr.splitlines() if line.startswith("trainer: ")), None
    )
    assert message is not None, result.stderr
    for fragment in fragments:
        assert fragment in message, message
    assert not output_dir.exists()
    assert partial_dirs(output_dir) == []
