"""`recflow review` with build artifacts: measured cost per changed model and sqlfluff findings.

The module's builds are what `make review` runs, `recflow review --base-ref HEAD`, once, on a git
repository holding a copy of the project: the base is the committed copy, the working tree
changes `int_user_item_interactions_daily` to keep only user-item-days with more than one event
(fewer rows produced) and writes its final `select` in upper case (a sqlfluff CP01 violation).
Its two `dbt run`s of the tiny sample are then reviewed again with explicit artifacts.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    DBT_PROJECT_DIR,
    REPO_ROOT,
    CommandResult,
    Isolation,
    TinySample,
    run_recflow_cli,
)
from review_checks import assert_markdown_matches_json

from recflow.cli import main as recflow_main
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


@dataclass(frozen=True)
class BaseRefReview:
    """`recflow review --base-ref HEAD` on a repository whose working tree changes one model."""

    result: CommandResult
    repo: Path
    out_dir: Path
    base: Build
    head: Build


def _git(repo: Path, *args: str) -> str:
    identity = ("-c", "user.name=review test", "-c", "user.email=review@example.invalid")
    completed = subprocess.run(
        ["git", *identity, *args], cwd=repo, capture_output=True, text=True, check=True
    )
    return completed.stdout.strip()


def _repository_with_changed_model(repo: Path) -> Path:
    """`dbt/` and `analyses/` committed, then the model changed in the working tree only."""
    ignore = shutil.ignore_patterns("target", "logs", "*.duckdb", ".user.yml")
    shutil.copytree(DBT_PROJECT_DIR, repo / "dbt", ignore=ignore)
    shutil.copytree(REPO_ROOT / "analyses", repo / "analyses", ignore=ignore)
    _git(repo, "init", "--quiet")
    _git(repo, "add", "--all")
    _git(repo, "commit", "--quiet", "-m", "base")
    model = repo / "dbt" / CHANGED_PATH
    text = model.read_text()
    assert text.endswith(FINAL_SELECT)
    model.write_text(text.removesuffix(FINAL_SELECT) + CHANGED_SELECT)
    return repo / "dbt"


@pytest.fixture(scope="module")
def base_ref_review(
    tiny_sample: TinySample, tmp_path_factory: pytest.TempPathFactory
) -> BaseRefReview:
    work = tmp_path_factory.mktemp("base_ref_review")
    project_dir = _repository_with_changed_model(work / "repo")
    out_dir = work / "review"
    isolation = Isolation.under(work / "cli", tiny_sample.parquet_dir)
    result = run_recflow_cli(
        isolation,
        *("review", "--base-ref", "HEAD", "--project-dir", str(project_dir)),
        *("--lint", "--out-dir", str(out_dir)),
    )
    sides = {
        side: Build(
            project_dir=project_dir,
            isolation=Isolation(
                data_dir=tiny_sample.parquet_dir,
                duckdb_path=out_dir / "work" / side / "warehouse.duckdb",
                target_path=out_dir / "work" / side / "target-ci",
            ),
        )
        for side in ("base", "head")
    }
    return BaseRefReview(result, work / "repo", out_dir, sides["base"], sides["head"])


@pytest.fixture(scope="module")
def builds(base_ref_review: BaseRefReview) -> tuple[Build, Build]:
    assert base_ref_review.result.returncode == 0, base_ref_review.result.output
    return base_ref_review.base, base_ref_review.head


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
    assert recflow_main(args) == 0
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
def test_base_ref_builds_both_sides_and_reviews_them_as_make_review(
    base_ref_review: BaseRefReview,
) -> None:
    """`recflow review --base-ref HEAD --lint`: the committed project and the working tree are
    built under OUT_DIR/work, the report measures the changed model on both and lints it, names
    both sides by commit, and the base's temporary worktree is gone afterwards."""
    review = base_ref_review
    assert review.result.returncode == 0, review.result.output
    report = json.loads((review.out_dir / "review.json").read_text())
    assert_markdown_matches_json(report, (review.out_dir / "review.md").read_text())
    (cost,) = report["costs"]
    assert cost["name"] == CHANGED_MODEL
    assert 0 < cost["rows_produced"]["head"] < cost["rows_produced"]["base"]
    assert report["linted_files"] == [CHANGED_PATH]
    assert any(
        f["rule"] == "sqlfluff:CP01" and f["status"] == "flagged" for f in report["findings"]
    )
    short = _git(review.repo, "rev-parse", "--short", "HEAD")
    branch = _git(review.repo, "rev-parse", "--abbrev-ref", "HEAD")
    assert f"HEAD ({short})" in report["base"]
    assert f"working tree of {branch} ({short})" in report["head"]
    assert not (review.out_dir / "work" / "base-src").exists()
    assert _git(review.repo, "worktree", "list", "--porcelain").count("worktree ") == 1


@pytest.mark.dbt
def test_base_ref_that_is_not_a_commit_stops_before_building(
    tiny_sample: TinySample, tmp_path: Path
) -> None:
    project_dir = _repository_with_changed_model(tmp_path / "repo")
    isolation = Isolation.under(tmp_path / "cli", tiny_sample.parquet_dir)
    result = run_recflow_cli(
        isolation,
        *("review", "--base-ref", "no-such-ref", "--project-dir", str(project_dir)),
        *("--out-dir", str(tmp_path / "review")),
    )
    assert result.returncode == 2, result.output
    assert "--base-ref no-such-ref is not a commit here (git fetch it?)" in result.output
    assert not (tmp_path / "review" / "work" / "base").exists()


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
    assert recflow_main(one_sided) == 2


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
