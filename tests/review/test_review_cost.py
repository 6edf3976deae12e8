"""`recflow review` with build artifacts: measured cost per changed model and sqlfluff findings.

Two `dbt run`s of the tiny sample, shared by the module: the base project and a copy whose
`int_user_item_interactions_daily` keeps only user-item-days with more than one event (fewer
rows produced) and writes its final `select` in upper case (a sqlfluff CP01 violation).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import DBT_PROJECT_DIR, REPO_ROOT, Isolation, TinySample, run_command
from review_checks import assert_markdown_matches_json

from recflow.pipeline.dbt_invocation import dbt_executable
from recflow.review.command import main as review_main
from recflow.review.cost import profile_scans

CHANGED_MODEL = "int_user_item_interactions_daily"
CHANGED_PATH = f"models/intermediate/interactions/{CHANGED_MODEL}.sql"
FINAL_SELECT = "select * from aggregated\n"
CHANGED_SELECT = "SELECT * from aggregated\nwhere event_count > 1\n"


@dataclass(frozen=True)
class Build:
    project_dir: Path
    isolation: Isolation

    @property
    def manifest(self) -> Path:
        return self.isolation.target_path / "manifest.json"

    @property
    def run_results(self) -> Path:
        return self.isolation.target_path / "run_results.json"


def _build_copy(work: Path, sample: TinySample, changed: bool) -> Build:
    project = work / "project"
    shutil.copytree(
        DBT_PROJECT_DIR, project / "dbt", ignore=shutil.ignore_patterns("target", "logs")
    )
    shutil.copytree(REPO_ROOT / "analyses", project / "analyses")
    if changed:
        model = project / "dbt" / CHANGED_PATH
        text = model.read_text()
        assert text.endswith(FINAL_SELECT)
        model.write_text(text.removesuffix(FINAL_SELECT) + CHANGED_SELECT)
    isolation = Isolation.under(work / "build", sample.parquet_dir)
    command = [dbt_executable(), "run", "--project-dir", str(project / "dbt")]
    result = run_command(command, isolation)
    assert result.returncode == 0, result.output
    return Build(project_dir=project / "dbt", isolation=isolation)


@pytest.fixture(scope="module")
def builds(
    tiny_sample: TinySample, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Build, Build]:
    base = _build_copy(tmp_path_factory.mktemp("cost_base"), tiny_sample, changed=False)
    head = _build_copy(tmp_path_factory.mktemp("cost_head"), tiny_sample, changed=True)
    return base, head


def _run_review(base: Build, head: Build, out: Path, *extra: str) -> tuple[dict[str, Any], str]:
    args = [
        "review",
        "--base-manifest",
        str(base.manifest),
        "--manifest",
        str(head.manifest),
        "--out-dir",
        str(out),
        *extra,
    ]
    assert review_main(args) == 0
    report = json.loads((out / "review.json").read_text())
    markdown = (out / "review.md").read_text()
    assert_markdown_matches_json(report, markdown)
    return report, markdown


@pytest.mark.dbt
def test_cost_of_changed_model_on_both_builds(builds: tuple[Build, Build], tmp_path: Path) -> None:
    base, head = builds
    report, markdown = _run_review(
        base,
        head,
        tmp_path,
        "--base-run-results",
        str(base.run_results),
        "--run-results",
        str(head.run_results),
        "--base-warehouse",
        str(base.isolation.duckdb_path),
        "--warehouse",
        str(head.isolation.duckdb_path),
    )
    (cost,) = report["costs"]
    assert cost["name"] == CHANGED_MODEL
    results = {
        r["unique_id"]: r["execution_time"]
        for r in json.loads(head.run_results.read_text())["results"]
    }
    assert cost["seconds"]["head"] == results[f"model.recflow.{CHANGED_MODEL}"]
    rows = cost["rows_produced"]
    assert 0 < rows["head"] < rows["base"]
    assert rows["delta"] == rows["head"] - rows["base"]
    assert rows["relative"] == pytest.approx(rows["delta"] / rows["base"], abs=1e-4)
    # Same input read on both sides: the filter is applied after the scan.
    scanned = cost["rows_scanned"]
    assert scanned["base"] == scanned["head"] > rows["base"]
    assert cost["bytes_scanned"]["base"] > 0
    assert "### Measured cost on the DuckDB build" in markdown
    cost_table = markdown.split("### Measured cost on the DuckDB build")[1]
    row = next(line for line in cost_table.splitlines() if line.startswith(f"| `{CHANGED_MODEL}`"))
    assert f"{rows['base']:,} → {rows['head']:,}, -{-rows['delta']:,} (" in row
    assert "measured cost" not in " ".join(report["not_yet_covered"])


@pytest.mark.dbt
def test_cost_section_only_with_run_results(builds: tuple[Build, Build], tmp_path: Path) -> None:
    base, head = builds
    report, markdown = _run_review(base, head, tmp_path)
    assert report["costs"] is None
    assert report["linted_files"] is None
    assert "Measured cost" not in markdown
    one_sided = [
        "review",
        "--base-manifest",
        str(base.manifest),
        "--manifest",
        str(head.manifest),
        "--run-results",
        str(head.run_results),
    ]
    assert review_main(one_sided) == 2


@pytest.mark.dbt
def test_sqlfluff_reports_uppercase_keyword_in_changed_file(
    builds: tuple[Build, Build], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, head = builds
    lint_isolation = Isolation.under(tmp_path / "lint", head.isolation.data_dir)
    for name, value in lint_isolation.env_vars().items():
        monkeypatch.setenv(name, value)
    report, markdown = _run_review(
        base, head, tmp_path / "out", "--lint", "--project-dir", str(head.project_dir)
    )
    assert report["linted_files"] == [CHANGED_PATH]
    line = (
        head.project_dir.joinpath(CHANGED_PATH)
        .read_text()
        .splitlines()
        .index(CHANGED_SELECT.splitlines()[0])
    )
    (keyword,) = [
        f for f in report["findings"] if f["rule"] == "sqlfluff:CP01" and f["status"] == "flagged"
    ]
    assert keyword["locations"] == [{"path": CHANGED_PATH, "line": line + 1}]
    assert {f["locations"][0]["path"] for f in report["findings"] if "sqlfluff" in f["rule"]} == {
        CHANGED_PATH
    }
    assert f"`{CHANGED_PATH}`" in markdown


def test_profile_scans_reads_duckdb_json_profile() -> None:
    profile = {
        "query": {"total_rows_scanned": 10},
        "operator": [
            {
                "type": "RESULT_COLLECTOR",
                "children": [
                    {"type": "TABLE_SCAN", "intermediate_size_bytes": 80, "children": []},
                    {"type": "TABLE_SCAN", "intermediate_size_bytes": 20},
                ],
            }
        ],
    }
    assert profile_scans(profile) == (10, 100)
