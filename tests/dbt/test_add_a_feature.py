"""The add-a-feature exercise, run for real: on a copy of the project, one SQL column in a feature
model and one YAML entry in training_examples' contract are the whole change, and after
`dbt build` the trainer trains on the new feature with no Python file touched."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import lightgbm as lgb
import pytest
from conftest import REPO_ROOT, SUBPROCESS_TIMEOUT_S, Isolation, TinySample, run_command

from recflow.pipeline.dbt_invocation import dbt_executable

pytestmark = pytest.mark.dbt

NEW_FEATURE = "item_trend_ratio"
FEATURE_MODEL = Path("dbt/models/intermediate/features/int_items_featurized.sql")
CONTRACT_YAML = Path("dbt/models/marts/ml/_ml__models.yml")
# The exercise: a column in the item feature model's final select...
SQL_ANCHOR = "        listed_items.cutoff_date,\n        popularity.last_event_at\n"
FEATURE_SQL = (
    "        coalesce(popularity.users_7d, 0) * 1.0\n"
    f"        / nullif(coalesce(popularity.users_28d, 0), 0) as {NEW_FEATURE},\n"
)
# ...and its one declaration, in training_examples' YAML.
YAML_ANCHOR = "      - name: is_from_covisitation\n"
FEATURE_YAML = (
    f"      - name: {NEW_FEATURE}\n"
    "        data_type: float64\n"
    "        description: The item's distinct users of the last 7 days / of the last 28 days.\n"
    "        config: {meta: {roles: [feature]}}\n"
)
COPIED = ("dbt", "analyses", "trainer", "recflow")
IGNORED = shutil.ignore_patterns("target", "logs", "__pycache__", "*.duckdb")


def insert_before(path: Path, anchor: str, text: str) -> None:
    """Insert `text` before the one occurrence of `anchor` in `path`."""
    content = path.read_text()
    assert content.count(anchor) == 1, f"{path}: expected one {anchor!r}"
    path.write_text(content.replace(anchor, text + anchor))


def python_hashes(root: Path) -> dict[str, str]:
    """sha256 of every `*.py` file under the copied directories of `root`."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for directory in COPIED
        for path in sorted((root / directory).rglob("*.py"))
        if "__pycache__" not in path.parts
    }


def test_a_feature_is_one_sql_column_and_one_yaml_entry(
    tiny_sample: TinySample, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    for directory in COPIED:
        shutil.copytree(REPO_ROOT / directory, repo / directory, ignore=IGNORED)
    insert_before(repo / FEATURE_MODEL, SQL_ANCHOR, FEATURE_SQL)
    insert_before(repo / CONTRACT_YAML, YAML_ANCHOR, FEATURE_YAML)

    # The whole build with its tests: the scoring mart's column check among them.
    isolation = Isolation.under(tmp_path / "build", tiny_sample.parquet_dir)
    build = run_command([dbt_executable(), "build", "--project-dir", str(repo / "dbt")], isolation)
    assert build.returncode == 0, build.output[-5000:]
    assert "has_the_columns_of_scoring_candidates" in build.output
    with duckdb.connect(str(isolation.duckdb_path), read_only=True) as connection:
        for table in ("training_examples", "scoring_candidates"):
            columns = {row[0] for row in connection.execute(f"describe {table}").fetchall()}
            assert NEW_FEATURE in columns, table

    run_dir = tmp_path / "run"
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AIP_", "CLOUD_ML_", "RECFLOW_", "DBT_"))
    }
    trained = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainer.task",
            "--warehouse-uri",
            f"duckdb://{isolation.duckdb_path}",
            "--manifest",
            str(isolation.target_path / "manifest.json"),
            "--output-dir",
            str(run_dir),
            "--recommendations-table",
            "",
            "--num-boost-round",
            "30",
        ],
        # The copy's trainer, so the check below covers the code that trained.
        env={**env, "PYTHONPATH": str(repo), "OMP_WAIT_POLICY": "PASSIVE"},
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )
    assert trained.returncode == 0, trained.stderr[-5000:]

    spec = json.loads((run_dir / "feature_spec.json").read_text())
    assert NEW_FEATURE in spec["features"]
    model_features = lgb.Booster(model_file=str(run_dir / "model.txt")).feature_name()
    assert NEW_FEATURE in model_features
    assert python_hashes(repo) == python_hashes(REPO_ROOT)
