"""What the data tests read: whole tables by default, only the recently rebuilt partitions with
`data_test_scope: recent` (what recflow passes on an incremental build).

A duplicated row in an old cutoff of a per-cutoff model fails its uniqueness test when whole
tables are tested and passes when only recent cutoffs are; a duplicated row in the latest cutoff
fails either way, and a full refresh always tests whole tables.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
from conftest import Isolation, TinyWarehouse, run_dbt_command, scalar

from recflow.pipeline.dbt_invocation import build_features
from recflow.pipeline.settings import Settings

pytestmark = pytest.mark.dbt

MODEL = "int_users_featurized"
UNIQUENESS_TEST = "unique_combination_of_columns_int_users_featurized_user_id__cutoff_date"
RECENT = json.dumps({"data_test_scope": "recent"})


def _copy(tiny_warehouse: TinyWarehouse, work_dir: Path) -> Isolation:
    isolation = Isolation.under(work_dir, tiny_warehouse.data_dir)
    shutil.copy(tiny_warehouse.duckdb_path, isolation.duckdb_path)
    return isolation


def _duplicate_a_row(isolation: Isolation, cutoff_sql: str) -> None:
    with duckdb.connect(str(isolation.duckdb_path)) as connection:
        connection.execute(
            f"insert into {MODEL} select * from {MODEL} where cutoff_date = ({cutoff_sql}) limit 1"
        )


def _uniqueness_test_sql(isolation: Isolation) -> str:
    """The compiled uniqueness test of the last dbt invocation (run_results.json)."""
    results = json.loads((isolation.target_path / "run_results.json").read_text())
    (compiled,) = (
        r["compiled_code"] for r in results["results"] if UNIQUENESS_TEST in r["unique_id"]
    )
    return compiled


def _uniqueness_test_fails(isolation: Isolation, *args: str) -> bool:
    result = run_dbt_command(isolation, "test", "--select", f"{MODEL},test_name:*unique*", *args)
    assert UNIQUENESS_TEST in result.output, result.output
    return result.returncode != 0


@pytest.fixture
def old_cutoff_duplicated(tiny_warehouse: TinyWarehouse, tmp_path: Path) -> Isolation:
    isolation = _copy(tiny_warehouse, tmp_path)
    _duplicate_a_row(isolation, f"select min(cutoff_date) from {MODEL}")
    oldest, latest = scalar(
        isolation.duckdb_path, f"select [min(cutoff_date), max(cutoff_date)] from {MODEL}"
    )
    assert (latest - oldest).days > 17, "the tiny sample must span more than the recent window"
    return isolation


def test_whole_tables_are_tested_by_default(old_cutoff_duplicated: Isolation) -> None:
    assert _uniqueness_test_fails(old_cutoff_duplicated)


def test_recent_scope_skips_old_cutoffs(old_cutoff_duplicated: Isolation) -> None:
    assert not _uniqueness_test_fails(old_cutoff_duplicated, "--vars", RECENT)


def test_a_full_refresh_tests_whole_tables_whatever_the_scope(
    tiny_warehouse: TinyWarehouse, tmp_path: Path
) -> None:
    isolation = _copy(tiny_warehouse, tmp_path)
    for refresh, filtered in (((), True), (("--full-refresh",), False)):
        result = run_dbt_command(
            isolation, "build", "--select", f"{MODEL},test_name:*unique*", "--vars", RECENT,
            *refresh,
        )  # fmt: skip
        assert result.returncode == 0, result.output
        compiled = _uniqueness_test_sql(isolation)
        assert ("max(cutoff_date)" in compiled) is filtered, compiled


def test_recent_scope_still_tests_the_latest_cutoff(
    tiny_warehouse: TinyWarehouse, tmp_path: Path
) -> None:
    isolation = _copy(tiny_warehouse, tmp_path)
    _duplicate_a_row(isolation, f"select max(cutoff_date) from {MODEL}")
    assert _uniqueness_test_fails(isolation, "--vars", RECENT)


def test_an_unknown_scope_names_the_var(tiny_warehouse: TinyWarehouse, tmp_path: Path) -> None:
    isolation = _copy(tiny_warehouse, tmp_path)
    result = run_dbt_command(
        isolation, "test", "--select", MODEL, "--vars", json.dumps({"data_test_scope": "some"})
    )
    assert result.returncode != 0
    assert "data_test_scope must be 'all' or 'recent'" in result.output


def test_recflow_builds_a_stored_warehouse_testing_recent_partitions_only(
    tiny_warehouse: TinyWarehouse, tmp_path: Path
) -> None:
    """build_features, which `recflow run` and `ct` call: incremental on an unchanged export."""
    isolation = _copy(tiny_warehouse, tmp_path)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in isolation.env_vars().items():
            patch.setenv(name, value)
        build_features(Settings.from_env(data_dir=tiny_warehouse.data_dir))
    assert "max(cutoff_date)" in _uniqueness_test_sql(isolation)
