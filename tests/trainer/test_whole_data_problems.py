"""Whole-data problems: an event log nothing can be trained on stops every command that meets
it with one message naming the cause (with the counts that show it) and the setting or fix,
exit code 2 and no traceback.

Each cause is a small generated data directory run through the real command in a fresh
interpreter: `recflow run` (which asks right after `dbt build`), `python -m trainer.task` and
`recflow gate` (which ask when they find too few examples). The numbers all three read come
from the `event_log_summary` mart; trainer.data_problems.diagnose turns them into the message.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest
from conftest import (
    CommandResult,
    Isolation,
    TinyWarehouse,
    query,
    run_dbt_command,
    run_recflow_cli,
)
from trainer_harness import (
    assert_clean_failure,
    copy_warehouse,
    duckdb_uri,
    manifest_of,
    run_trainer,
    trainer_args,
)

from recflow.samples.events import UNPARSEABLE_EVENT_AT, SampleSpec, generate, write_data_dir
from trainer.data_problems import SUMMARY_MODEL, EventLogSummary, diagnose

pytestmark = pytest.mark.dbt

# Clean rows only (no injected dirty rows), so every count in a message is the test's own.
SMALL = SampleSpec(n_users=80, n_items=60, n_categories=8, n_days=70, dirty_share=0.0)
# Only these are positive: none of the generated event types is (the cause under test).
NO_STAGED_POSITIVE_TYPES = {
    "view": {"weight": 1.0, "is_positive": False},
    "click": {"weight": 3.0, "is_positive": False},
    "cart": {"weight": 6.0, "is_positive": False},
    "purchase": {"weight": 10.0, "is_positive": False},
    "wishlist": {"weight": 2.0, "is_positive": True},
}


def sample_tables(n_days: int = SMALL.n_days) -> dict[str, pa.Table]:
    return dict(generate(dataclasses.replace(SMALL, n_days=n_days)).tables)


def replaced(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def recflow_run(tmp_path: Path, data_dir: Path, *extra: str) -> CommandResult:
    isolation = Isolation.under(tmp_path / "work", data_dir)
    return run_recflow_cli(isolation, "run", "--data-dir", str(data_dir), *extra)


def the_message(result: CommandResult, prefix: str = "recflow: ") -> str:
    """Exit 2, no traceback, no training started, and the one line that carries the message."""
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output, result.output
    assert "training the ranker" not in result.output, result.output
    (message,) = [line for line in result.output.splitlines() if line.startswith(prefix)]
    return message


def summary_of(duckdb_path: Path) -> EventLogSummary:
    """The built warehouse's event log summary, read as the trainer reads it (one row)."""
    with duckdb.connect(str(duckdb_path), read_only=True) as connection:
        (row,) = connection.sql(f"select * from main.{SUMMARY_MODEL}").to_arrow_table().to_pylist()
    return EventLogSummary.from_row(row)


def event_days(events: pa.Table) -> tuple[str, str]:
    """The first and last UTC day of the events, as ISO dates."""
    bounds = pc.min_max(events["event_at"])
    return bounds["min"].as_py().date().isoformat(), bounds["max"].as_py().date().isoformat()


# --- recflow run: one message right after the feature build ------------------------------------


def write_unparseable(data_dir: Path) -> pa.Table:
    """The sample with no parseable event_at (CSV, since a Parquet timestamp cannot be bad)."""
    tables = sample_tables()
    events = tables.pop("events")
    write_data_dir(tables, data_dir, file_format="parquet")
    garbled = [UNPARSEABLE_EVENT_AT[i % 3] for i in range(events.num_rows)]
    pacsv.write_csv(replaced(events, "event_at", pa.array(garbled)), data_dir / "events.csv")
    return events


def write_future(data_dir: Path) -> pa.Table:
    """The sample moved to start a month from now."""
    tables = sample_tables()
    events = tables["events"]
    shift = datetime.now(UTC) + timedelta(days=30) - SMALL.start_at
    shifted = pc.add(events["event_at"], pa.scalar(shift, pa.duration("us")))
    tables["events"] = replaced(events, "event_at", shifted)
    write_data_dir(tables, data_dir, file_format="parquet")
    return tables["events"]


def write_only_views(data_dir: Path) -> pa.Table:
    tables = sample_tables()
    events = tables["events"]
    tables["events"] = replaced(events, "event_type", pa.array(["view"] * events.num_rows))
    write_data_dir(tables, data_dir, file_format="parquet")
    return tables["events"]


def write_days(n_days: int) -> Callable[[Path], pa.Table]:
    def write(data_dir: Path) -> pa.Table:
        tables = sample_tables(n_days=n_days)
        write_data_dir(tables, data_dir, file_format="parquet")
        return tables["events"]

    return write


WRITERS: dict[str, Callable[[Path], pa.Table]] = {
    "unparseable": write_unparseable,
    "future": write_future,
    "only_views": write_only_views,
    "20_days": write_days(20),
    "45_days": write_days(45),
}


@dataclass(frozen=True)
class Run:
    """One data directory, the events written to it, and `recflow run` on it."""

    data_dir: Path
    events: pa.Table
    result: CommandResult


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """`recflow run` on every case, side by side (each is mostly dbt start-up)."""
    root = tmp_path_factory.mktemp("whole_data")
    written = {case: write(root / case / "data") for case, write in WRITERS.items()}
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        futures = {
            case: pool.submit(recflow_run, root / case, root / case / "data") for case in WRITERS
        }
    return {
        case: Run(root / case / "data", written[case], future.result())
        for case, future in futures.items()
    }


def test_no_parseable_timestamp(runs: dict[str, Run]) -> None:
    run = runs["unparseable"]
    message = the_message(run.result)

    assert f"all {run.events.num_rows:,} events are quarantined as unparseable_event_at" in message
    assert "event_at must hold timestamps" in message
    assert "stg_app__quarantined_rows" in message


def test_every_event_in_the_future(runs: dict[str, Run]) -> None:
    run = runs["future"]
    message = the_message(run.result)

    assert f"all {run.events.num_rows:,} events are quarantined as future_event_at" in message
    assert "the start of the run (the `as_of` var is unset)" in message
    assert "--var as_of=" in message


def test_no_positive_event_type_among_the_events(runs: dict[str, Run]) -> None:
    run = runs["only_views"]
    message = the_message(run.result)

    # A clean sample: every row is staged.
    assert f"none of the {run.events.num_rows:,} staged events is positive" in message
    assert "their event types (view)" in message
    assert "marks is_positive (click, cart, purchase)" in message
    assert "--var 'event_types=" in message


def test_history_shorter_than_min_history_days(runs: dict[str, Run]) -> None:
    run = runs["20_days"]
    first, last = event_days(run.events)
    message = the_message(run.result)

    assert f"cover 20 days ({first} to {last}), fewer than min_history_days = 28" in message
    assert "use more days of data" in message


def test_too_little_history_for_the_cutoffs_names_the_min_history_days_that_works(
    runs: dict[str, Run], tmp_path: Path
) -> None:
    """45 days hold the two test cutoffs but not the validation and train ones after 28 days of
    history; the message names the largest min_history_days that fits, and a build with it has
    every split."""
    run = runs["45_days"]
    first, last = event_days(run.events)
    message = the_message(run.result)

    assert f"cover 45 days ({first} to {last}): too few for 2 test and 2 validation" in message
    assert "(found 0 train, 0 validation, 2 test)" in message
    suggested = int(message.split("--var min_history_days=")[1].split(")")[0])
    assert 1 <= suggested < 28

    isolation = Isolation.under(tmp_path / "suggested", run.data_dir)
    vars_json = json.dumps({"min_history_days": suggested})
    # The models only: the spine and the summary are what the suggestion is about.
    built = run_dbt_command(isolation, "run", "--select", f"+{SUMMARY_MODEL}", "--vars", vars_json)
    assert built.returncode == 0, built.output
    summary = summary_of(isolation.duckdb_path)
    assert summary.train_cutoffs >= 1 and diagnose(summary) is None, summary


# --- the trainer and the gate: the same message when they find no examples ----------------------


@pytest.fixture(scope="module")
def no_positive_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A feature build whose `event_types` var marks as positive only a type the data lacks."""
    root = tmp_path_factory.mktemp("no_positive")
    data_dir = root / "data"
    write_data_dir(sample_tables(), data_dir, file_format="parquet")
    isolation = Isolation.under(root / "work", data_dir)
    vars_json = json.dumps({"event_types": NO_STAGED_POSITIVE_TYPES})
    build = run_dbt_command(isolation, "build", "--vars", vars_json)
    assert build.returncode == 0, build.output
    return isolation.duckdb_path


NO_POSITIVE_FRAGMENTS = (
    "staged events is positive",
    "their event types (cart, click, purchase, view)",
    "marks is_positive (wishlist)",
)


def test_trainer_names_event_types_without_a_staged_positive(
    no_positive_warehouse: Path, tiny_warehouse: TinyWarehouse, tmp_path: Path
) -> None:
    run_dir = tmp_path / "runs" / "run"
    result = run_trainer(
        *trainer_args(duckdb_uri(no_positive_warehouse), manifest_of(tiny_warehouse), run_dir),
        cwd=tmp_path,
    )

    assert_clean_failure(result, run_dir, *NO_POSITIVE_FRAGMENTS)
    summary = summary_of(no_positive_warehouse)
    assert f"none of the {summary.staged_events:,} staged events" in result.stderr


def test_gate_names_the_problem_of_the_tables_it_scores_on(
    no_positive_warehouse: Path, tiny_warehouse: TinyWarehouse, tmp_path: Path
) -> None:
    """A run trained on good tables, gated on a warehouse rebuilt from a log without positives."""
    good = copy_warehouse(tiny_warehouse, tmp_path / "good")
    run_dir = tmp_path / "runs" / "challenger"
    trained = run_trainer(
        *trainer_args(duckdb_uri(good), manifest_of(tiny_warehouse), run_dir), cwd=tmp_path
    )
    assert trained.returncode == 0, trained.stderr
    isolation = Isolation.under(tmp_path / "cli", tiny_warehouse.data_dir)

    result = run_recflow_cli(
        isolation,
        "gate",
        "--run-dir",
        str(run_dir),
        "--warehouse-uri",
        duckdb_uri(no_positive_warehouse),
        "--registry",
        f"local:{tmp_path / 'registry.json'}",
        "--recommendations-table",
        "",
    )

    message = the_message(result, prefix="recflow gate: ")
    for fragment in NO_POSITIVE_FRAGMENTS:
        assert fragment in message, message
    assert not (run_dir / "decision.json").exists()
    assert not (tmp_path / "registry.json").exists()


# --- the summary itself ---------------------------------------------------------------------------


def test_the_summary_of_a_trainable_log_recounts_the_staged_tables_and_diagnoses_nothing(
    tiny_warehouse: TinyWarehouse,
) -> None:
    summary = summary_of(tiny_warehouse.duckdb_path)
    path = tiny_warehouse.duckdb_path
    raw = tiny_warehouse.sample.tables["events"].num_rows

    assert summary.raw_events == raw
    assert summary.staged_events == query(path, "select count(*) from stg_app__events")[0][0]
    assert summary.staged_events + summary.quarantined_events == raw
    assert (
        summary.positive_events
        == query(path, "select count(*) from stg_app__events where is_positive")[0][0]
    )
    splits = dict(query(path, "select split, count(*) from int_cutoffs_scheduled group by 1"))
    assert (summary.train_cutoffs, summary.validation_cutoffs, summary.test_cutoffs) == (
        splits["train"],
        splits["validation"],
        splits["test"],
    )
    assert summary.positive_event_types == "click, cart, purchase"
    assert summary.staged_event_types == "cart, click, purchase, view"
    assert diagnose(summary) is None
