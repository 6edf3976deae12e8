"""`dbt source freshness` on the raw events, with real dbt on DuckDB: a stale export fails (exit
1) naming the table and its latest load, a fresh one passes, the thresholds follow
RECFLOW_FRESHNESS_*_AFTER_HOURS, and events in the future or without a usable timestamp never
make a stale export look fresh. The continuous-training workflow runs this (`make freshness`)
before the production build."""

from __future__ import annotations

import re
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import (
    DBT_PROJECT_DIR,
    REPO_ROOT,
    CommandResult,
    Isolation,
    run_command,
    write_csv,
)

from recflow.pipeline.dbt_invocation import dbt_executable
from recflow.samples.events import SCHEMAS

pytestmark = pytest.mark.dbt

FRESHNESS_ARGS = ("source", "freshness", "--select", "source:app.events")
NOW = datetime.now(UTC).replace(microsecond=0)
FUTURE = "2099-01-01T00:00:00Z"


@dataclass(frozen=True)
class Export:
    """A raw data directory whose latest usable event is `hours_old` hours before NOW."""

    name: str
    hours_old: float
    file_format: str  # "csv" (text, as exported) or "parquet" (typed)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def latest(self) -> datetime:
        return NOW - timedelta(hours=self.hours_old)

    def write(self, data_dir: Path) -> None:
        older = self.latest - timedelta(days=3)
        if self.file_format == "csv":
            write_csv(
                data_dir / "events.csv",
                ["user_id", "item_id", "event_type", "event_at"],
                [
                    ["u1", "i1", "view", older.isoformat()],
                    ["u1", "i1", "click", self.latest.strftime("%Y-%m-%dT%H:%M:%SZ")],
                    # A clock in the future and an unparseable value: neither is a load.
                    ["u1", "i1", "view", FUTURE],
                    ["u1", "i1", "view", "not a time"],
                ],
            )
        else:
            events = {
                "user_id": ["u1", "u1", "u1"],
                "item_id": ["i1", "i1", "i1"],
                "event_type": ["view", "click", "view"],
                "event_at": [older, self.latest, datetime(2099, 1, 1, tzinfo=UTC)],
                "value": [None, None, None],
            }
            data_dir.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table(events, schema=SCHEMAS["events"]), data_dir / "events.parquet")
        write_csv(data_dir / "items.csv", ["item_id", "category"], [["i1", "c1"]])
        write_csv(data_dir / "users.csv", ["user_id"], [["u1"]])


EXPORTS = (
    Export("fresh", hours_old=2, file_format="csv"),
    Export("one_export_missed", hours_old=30, file_format="csv"),
    # An unset repository variable reaches dbt as an empty string: the default applies.
    Export(
        "stale",
        hours_old=60,
        file_format="parquet",
        env={"RECFLOW_FRESHNESS_ERROR_AFTER_HOURS": ""},
    ),
    Export("stale_csv", hours_old=60, file_format="csv"),
    Export(
        "stale_with_a_longer_limit",
        hours_old=60,
        file_format="csv",
        env={"RECFLOW_FRESHNESS_ERROR_AFTER_HOURS": "72"},
    ),
    Export(
        "fresh_with_a_shorter_limit",
        hours_old=2,
        file_format="parquet",
        env={"RECFLOW_FRESHNESS_WARN_AFTER_HOURS": "1", "RECFLOW_FRESHNESS_ERROR_AFTER_HOURS": "1"},
    ),
)


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CommandResult]:
    """`dbt source freshness` on every export, side by side, each in its own warehouse."""
    root = tmp_path_factory.mktemp("freshness")

    def check(export: Export) -> CommandResult:
        data_dir = root / export.name / "data"
        export.write(data_dir)
        isolation = Isolation.under(root / export.name / "work", data_dir)
        return run_command(
            [dbt_executable(), *FRESHNESS_ARGS, "--project-dir", str(DBT_PROJECT_DIR)],
            isolation,
            export.env,
        )

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(check, EXPORTS))
    return {export.name: result for export, result in zip(EXPORTS, results, strict=True)}


def _export(name: str) -> Export:
    return next(export for export in EXPORTS if export.name == name)


def _latest_load_line(output: str) -> str:
    (line,) = [line for line in output.splitlines() if "Source freshness: app.events" in line]
    return line


@pytest.mark.parametrize("name", ["stale", "stale_csv"])
def test_a_stale_export_fails_naming_the_table_and_its_latest_load(
    checked: dict[str, CommandResult], name: str
) -> None:
    result = checked[name]

    assert result.returncode == 1, result.output
    assert "ERROR STALE freshness of app.events" in result.output
    line = _latest_load_line(result.output)
    latest = _export(name).latest
    assert f"is ERROR stale: latest load {latest:%Y-%m-%d %H:%M:%S} UTC" in line
    assert re.search(r", 60\.\d hours before the check", line), line
    assert "(warn after 24 hours, error after 48 hours)" in line
    assert '"raw"."events"' in line


def test_a_fresh_export_passes_and_future_or_unparseable_events_do_not_count(
    checked: dict[str, CommandResult],
) -> None:
    result = checked["fresh"]

    assert result.returncode == 0, result.output
    assert "PASS freshness of app.events" in result.output
    latest = _export("fresh").latest
    assert f"is fresh: latest load {latest:%Y-%m-%d %H:%M:%S} UTC" in _latest_load_line(
        result.output
    )


def test_one_missed_export_warns_without_stopping(checked: dict[str, CommandResult]) -> None:
    result = checked["one_export_missed"]

    assert result.returncode == 0, result.output
    assert "WARN freshness of app.events" in result.output
    assert "is WARN stale" in _latest_load_line(result.output)


def test_thresholds_follow_the_environment(checked: dict[str, CommandResult]) -> None:
    longer = checked["stale_with_a_longer_limit"]
    assert longer.returncode == 0, longer.output
    assert "WARN freshness of app.events" in longer.output
    assert "error after 72 hours" in _latest_load_line(longer.output)

    shorter = checked["fresh_with_a_shorter_limit"]
    assert shorter.returncode == 1, shorter.output
    assert "(warn after 1 hour, error after 1 hour)" in _latest_load_line(shorter.output)


def test_make_freshness_runs_the_command_tested_here() -> None:
    dry_run = subprocess.run(
        ["make", "--dry-run", "--no-print-directory", "freshness"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    (command,) = [line for line in dry_run.stdout.splitlines() if " source freshness" in line]
    words = shlex.split(command)
    assert words[0].endswith("/dbt")
    assert words[1:] == [*FRESHNESS_ARGS[:2], "--project-dir", "dbt", *FRESHNESS_ARGS[2:]]
