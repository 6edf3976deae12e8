"""What a user sees when their data breaks the raw data contract.

Whole-file problems (a missing directory, table, column or row) stop `recflow run` with a
message naming the offending directory, file or column, a non-zero exit and no Python
traceback. Row-level problems never stop the build: each bad row lands in
`stg_app__quarantined_rows` with its reason, and every raw row is accounted for.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import (
    DBT_PROJECT_DIR,
    STAGING_BUILD,
    CommandResult,
    Isolation,
    query,
    run_dbt_command,
    run_recflow_cli,
    write_csv,
)

from recflow.cli import _print_summary
from recflow.pipeline.settings import Settings
from recflow.pipeline.warehouse_report import summarise_build
from recflow.samples.events import SCHEMAS

pytestmark = pytest.mark.dbt


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# A minimal valid dataset in the raw data contract, as typed (Parquet) tables.
VALID_TABLES = {
    "events": pa.table(
        {
            "user_id": ["u1", "u1", "u2"],
            "item_id": ["i1", "i2", "i1"],
            "event_type": ["view", "click", "purchase"],
            "event_at": [_ts("2026-01-05 10:00"), _ts("2026-01-05 10:01"), _ts("2026-01-06 12:00")],
            "value": [None, None, 19.99],
        },
        schema=SCHEMAS["events"],
    ),
    "items": pa.table(
        {
            "item_id": ["i1", "i2"],
            "category": ["c1", "c2"],
            "created_at": [_ts("2025-01-01 00:00"), _ts("2025-01-02 00:00")],
        },
        schema=SCHEMAS["items"],
    ),
    "users": pa.table(
        {
            "user_id": ["u1", "u2"],
            "signup_at": [_ts("2025-01-01 00:00"), _ts("2025-01-02 00:00")],
            "segment": ["free", "pro"],
        },
        schema=SCHEMAS["users"],
    ),
}


def write_parquet_tables(data_dir: Path, tables: dict[str, pa.Table]) -> None:
    """Write each table as `<name>.parquet` in `data_dir` (created)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        pq.write_table(table, data_dir / f"{name}.parquet")


def recflow_run(tmp_path: Path, data_dir: Path) -> CommandResult:
    """`recflow run --data-dir <data_dir>` in a fresh interpreter, isolated under tmp_path."""
    isolation = Isolation.under(tmp_path / "work", data_dir)
    return run_recflow_cli(isolation, "run", "--data-dir", str(data_dir))


def assert_fails_cleanly(result: CommandResult, *expected: str) -> None:
    """Non-zero exit, every expected fragment in the output, and no Python traceback."""
    assert result.returncode != 0, result.output
    missing = [fragment for fragment in expected if fragment not in result.output]
    assert not missing, f"{missing} not in output:\n{result.output}"
    assert "Traceback" not in result.output, result.output


# --- Whole-file problems: the raw-table hook refuses to start the build. ---------------------


@dataclass(frozen=True)
class BadDataDir:
    """One broken data directory: how to write it, and what the error must say about it."""

    write: Callable[[Path], None]
    # Fragments of the expected message; "{dir}" stands for the data directory's path.
    expected: tuple[str, ...]


def _without_table(name: str) -> Callable[[Path], None]:
    return lambda d: write_parquet_tables(d, {k: t for k, t in VALID_TABLES.items() if k != name})


def _with_extra_csv(name: str) -> Callable[[Path], None]:
    def write(data_dir: Path) -> None:
        write_parquet_tables(data_dir, VALID_TABLES)
        VALID_TABLES[name].to_pandas().to_csv(data_dir / f"{name}.csv", index=False)

    return write


def _without_column(name: str, column: str) -> Callable[[Path], None]:
    return lambda d: write_parquet_tables(
        d, {**VALID_TABLES, name: VALID_TABLES[name].drop([column])}
    )


def _with_empty_table(name: str, file_format: str) -> Callable[[Path], None]:
    def write(data_dir: Path) -> None:
        write_parquet_tables(data_dir, {k: t for k, t in VALID_TABLES.items() if k != name})
        if file_format == "csv":  # a header row and nothing else
            write_csv(data_dir / f"{name}.csv", VALID_TABLES[name].column_names, [])
        else:
            pq.write_table(VALID_TABLES[name].slice(0, 0), data_dir / f"{name}.parquet")

    return write


BAD_DATA_DIRS = {
    "missing_directory": BadDataDir(
        write=lambda d: None, expected=("'{dir}'", "does not exist or is empty")
    ),
    "no_events_table": BadDataDir(
        write=_without_table("events"),
        expected=("'{dir}'", "has no 'events' table", "events.parquet or events.csv"),
    ),
    "events_in_both_formats": BadDataDir(
        write=_with_extra_csv("events"),
        expected=("holds both", "{dir}/events.csv", "{dir}/events.parquet"),
    ),
    "events_without_event_at": BadDataDir(
        write=_without_column("events", "event_at"),
        expected=("'{dir}/events.parquet' has no column 'event_at'", "raw data contract"),
    ),
    "header_only_events_csv": BadDataDir(
        write=_with_empty_table("events", "csv"),
        expected=("'{dir}/events.csv' holds no rows",),
    ),
    # Every event would be quarantined as unknown_item or unknown_user: stop and say why.
    "header_only_items_csv": BadDataDir(
        write=_with_empty_table("items", "csv"),
        expected=("'{dir}/items.csv' holds no rows", "items table must not be empty"),
    ),
    "empty_users_parquet": BadDataDir(
        write=_with_empty_table("users", "parquet"),
        expected=("'{dir}/users.parquet' holds no rows", "users table must not be empty"),
    ),
    "items_without_category": BadDataDir(
        write=_without_column("items", "category"),
        expected=("'{dir}/items.parquet' has no column 'category'",),
    ),
}


@dataclass(frozen=True)
class BrokenRun:
    data_dir: Path
    result: CommandResult


@pytest.fixture(scope="module")
def broken_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BrokenRun]:
    """`recflow run` on every broken data directory, all at once (each run in its own work
    directory): the runs are independent and each is mostly dbt's start-up CPU time, so running
    them side by side saves most of their wall time on a multi-core machine."""
    root = tmp_path_factory.mktemp("broken_data_dirs")
    data_dirs = {}
    for case_id, case in BAD_DATA_DIRS.items():
        data_dirs[case_id] = (root / case_id / "data").resolve()
        case.write(data_dirs[case_id])
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        futures = {
            case_id: pool.submit(recflow_run, root / case_id, data_dir)
            for case_id, data_dir in data_dirs.items()
        }
    return {case_id: BrokenRun(data_dirs[case_id], f.result()) for case_id, f in futures.items()}


@pytest.mark.parametrize("case_id", BAD_DATA_DIRS)
def test_broken_data_directory_stops_recflow_run_with_a_clear_message(
    case_id: str, broken_runs: dict[str, BrokenRun]
) -> None:
    """`recflow run` on a data directory that breaks the contract as a whole exits non-zero and
    says which directory, file or column is wrong, without a Python traceback."""
    run = broken_runs[case_id]
    expected = (f.replace("{dir}", str(run.data_dir)) for f in BAD_DATA_DIRS[case_id].expected)
    assert_fails_cleanly(run.result, *expected)


# --- Row-level problems: quarantined, never fatal. ---------------------------------------------

EVENTS_HEADER = ("user_id", "item_id", "event_type", "event_at", "value")
VALID_EVENTS = [
    ("u1", "i1", "view", "2026-01-05T10:00:00Z", None),
    ("u1", "i1", "click", "2026-01-05T10:01:00Z", None),
    ("u2", "i2", "purchase", "2026-01-06T12:00:00Z", "19.99"),
    ("u2", "i1", "view", "2026-01-06T14:30:00+02:00", None),  # an offset, converted to UTC
    ("u3", "i2", "cart", "2026-01-07 08:00:00", "5"),  # no offset: already UTC
    ("u3", "i3", "view", "2026-01-07T09:00:00Z", None),  # its exact copy follows below
]
# Each bad row carries a marker (an id no other row uses) to find it in `raw_record`. An
# unparseable `value` is not a reason (its own test below); unknown items and users are tested
# in test_staging_integrity.py.
QUARANTINED_EVENTS = [
    ("missing_user_id", "i-q-no-user", (None, "i-q-no-user", "view", "2026-01-05T11:00:00Z", None)),
    ("missing_item_id", "u-q-no-item", ("u-q-no-item", None, "view", "2026-01-05T11:00:00Z", None)),
    (
        "missing_event_type",
        "u-q-no-type",
        ("u-q-no-type", "i1", None, "2026-01-05T11:00:00Z", None),
    ),
    ("missing_event_at", "u-q-no-time", ("u-q-no-time", "i1", "view", None, None)),
    ("unparseable_event_at", "u-q-bad-time", ("u-q-bad-time", "i1", "view", "yesterday", None)),
    (
        "unparseable_event_at",
        "u-q-bad-date",
        ("u-q-bad-date", "i1", "view", "2026-02-30T10:00:00Z", None),
    ),
    (
        "unknown_event_type",
        "u-q-wish",
        ("u-q-wish", "i1", "wishlist", "2026-01-05T11:00:00Z", None),
    ),
    ("future_event_at", "u-q-future", ("u-q-future", "i1", "view", "2099-01-01T00:00:00Z", None)),
    ("duplicate_event", "i3", ("u3", "i3", "view", "2026-01-07T09:00:00Z", None)),
]
ITEMS_HEADER = ("item_id", "category", "created_at")
VALID_ITEMS = [
    ("i1", "c1", "2025-01-01T00:00:00Z"),
    ("i2", "c2", "2025-01-02T00:00:00Z"),
    ("i3", None, None),  # category and listing date are optional
]
QUARANTINED_ITEMS = [
    ("missing_item_id", "c-q-no-id", (None, "c-q-no-id", "2025-01-01T00:00:00Z")),
    ("duplicate_item_id", "c-q-relisted", ("i2", "c-q-relisted", "2025-06-01T00:00:00Z")),
    ("unparseable_created_at", "i-q-bad-created", ("i-q-bad-created", "c1", "last spring")),
]
USERS_HEADER = ("user_id", "signup_at", "segment")
VALID_USERS = [
    ("u1", "2025-01-01T00:00:00Z", "free"),
    ("u2", "2025-01-01T00:00:00Z", "pro"),
    ("u3", None, None),
]
QUARANTINED_USERS = [
    ("missing_user_id", "s-q-no-id", (None, "2025-01-01T00:00:00Z", "s-q-no-id")),
    (
        "duplicate_user_id",
        "s-q-signed-up-again",
        ("u1", "2025-09-01T00:00:00Z", "s-q-signed-up-again"),
    ),
    ("unparseable_signup_at", "u-q-bad-signup", ("u-q-bad-signup", "not-a-date", "free")),
]


def test_bad_rows_are_quarantined_with_their_reason_and_every_row_is_accounted_for(
    tmp_path: Path,
) -> None:
    """A hand-written CSV data directory with one row per problem builds; each bad row is in
    quarantine under its own reason (exact copies: the first is kept, the second quarantined),
    the valid rows are staged with UTC timestamps, and staged + quarantined = raw rows."""
    data_dir = tmp_path / "data"
    raw_events = VALID_EVENTS + [row for _, _, row in QUARANTINED_EVENTS]
    write_csv(data_dir / "events.csv", EVENTS_HEADER, raw_events)
    write_csv(
        data_dir / "items.csv", ITEMS_HEADER, VALID_ITEMS + [r for *_, r in QUARANTINED_ITEMS]
    )
    write_csv(
        data_dir / "users.csv", USERS_HEADER, VALID_USERS + [r for *_, r in QUARANTINED_USERS]
    )
    isolation = Isolation.under(tmp_path / "work", data_dir)

    result = run_dbt_command(isolation, *STAGING_BUILD)
    assert result.returncode == 0, result.output

    expected = {
        (table, reason, marker)
        for table, rows in (
            ("events", QUARANTINED_EVENTS),
            ("items", QUARANTINED_ITEMS),
            ("users", QUARANTINED_USERS),
        )
        for reason, marker, _ in rows
    }
    markers = {marker for _, _, marker in expected}
    found = []
    for table, reason, raw_record in query(
        isolation.duckdb_path,
        "select source_table, quarantine_reason, raw_record from stg_app__quarantined_rows",
    ):
        json.loads(raw_record)  # the raw row is kept as valid JSON
        matched = [m for m in markers if f'"{m}"' in raw_record]
        assert len(matched) == 1, (table, reason, raw_record)
        found.append((table, reason, matched[0]))
    assert len(found) == len(expected)
    assert set(found) == expected

    staged = query(
        isolation.duckdb_path,
        "select user_id, item_id, event_type, strftime(event_at, '%Y-%m-%d %H:%M'), event_value "
        "from stg_app__events",
    )
    assert Counter(staged) == Counter(
        [
            ("u1", "i1", "view", "2026-01-05 10:00", None),
            ("u1", "i1", "click", "2026-01-05 10:01", None),
            ("u2", "i2", "purchase", "2026-01-06 12:00", 19.99),
            ("u2", "i1", "view", "2026-01-06 12:30", None),
            ("u3", "i2", "cart", "2026-01-07 08:00", 5.0),
            ("u3", "i3", "view", "2026-01-07 09:00", None),
        ]
    )
    assert len(staged) + len(QUARANTINED_EVENTS) == len(raw_events)
    assert query(isolation.duckdb_path, "select item_id from stg_app__items order by 1") == [
        ("i1",),
        ("i2",),
        ("i3",),
    ]
    assert query(isolation.duckdb_path, "select user_id from stg_app__users order by 1") == [
        ("u1",),
        ("u2",),
        ("u3",),
    ]


def test_event_types_without_a_positive_type_fail_with_a_message_naming_is_positive(
    tmp_path: Path,
) -> None:
    """Configuring `event_types` with no positive type (so no training label) stops dbt with a
    message pointing at `is_positive`, not a traceback or an empty label column."""
    data_dir = tmp_path / "data"
    write_parquet_tables(data_dir, VALID_TABLES)
    isolation = Isolation.under(tmp_path / "work", data_dir)

    result = run_dbt_command(
        isolation,
        *STAGING_BUILD,
        "--vars",
        "{event_types: {view: {weight: 1, is_positive: false}}}",
    )

    assert_fails_cleanly(result, "'event_types'", "is_positive")


def test_unparseable_value_is_nulled_and_counted_not_quarantined(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CSV event whose optional `value` is not a number ('12,50') is staged with a null value,
    not quarantined; the value is listed in stg_app__nulled_values (a warn-level test counts it)
    and `recflow run`'s summary prints the count by column next to the quarantined rows."""
    data_dir = tmp_path / "data"
    valid = ("u1", "i1", "purchase", "2026-01-05T10:00:00Z", "19.99")
    bad = ("u1", "i2", "purchase", "2026-01-05T10:00:00Z", "12,50")
    write_csv(data_dir / "events.csv", EVENTS_HEADER, [valid, bad])
    write_csv(data_dir / "items.csv", ITEMS_HEADER, VALID_ITEMS)
    write_csv(data_dir / "users.csv", USERS_HEADER, VALID_USERS)
    isolation = Isolation.under(tmp_path / "work", data_dir)

    result = run_dbt_command(isolation, *STAGING_BUILD)

    assert result.returncode == 0, result.output
    assert "WARN 1 has_no_rows_stg_app__nulled_values" in result.output, result.output
    assert query(isolation.duckdb_path, "select * from stg_app__quarantined_rows") == []
    assert query(
        isolation.duckdb_path, "select item_id, event_value from stg_app__events order by 1"
    ) == [("i1", 19.99), ("i2", None)]
    ((source_table, column_name, raw_value, raw_record),) = query(
        isolation.duckdb_path, "select * from stg_app__nulled_values"
    )
    assert (source_table, column_name, raw_value) == ("events", "value", "12,50")
    assert json.loads(raw_record)["item_id"] == "i2"

    settings = Settings(
        data_dir=isolation.data_dir,
        duckdb_path=isolation.duckdb_path,
        dbt_project_dir=DBT_PROJECT_DIR,
        dbt_target="local",
        dbt_target_path=isolation.target_path,
    )
    summary = summarise_build(
        settings, model_names=["stg_app__events"], recall_sql="select 0 as test_positives"
    )
    assert summary.nulled_values == {("events", "value"): 1}
    assert summary.quarantined == {}
    _print_summary(settings, summary, build_seconds=1.0)
    printed = capsys.readouterr().out
    assert "nulled values (unparseable, staged as null): 1" in printed
    assert re.search(r"^  events\.value +1$", printed, re.MULTILINE), printed
