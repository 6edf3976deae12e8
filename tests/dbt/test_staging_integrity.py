"""Staging that cannot be fooled by what the export holds.

Events of items (and, by default, users) missing from the catalogue are quarantined and reach
no feature table; the check follows the current catalogue, so an item listed later is staged.
A data directory is read exactly as named whatever characters its path holds. Event keys cannot
collide whatever the ids contain, and copies of one event written with two spellings of one
instant are recognised as duplicates.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import (
    STAGING_BUILD,
    Isolation,
    TinySample,
    TinyWarehouse,
    query,
    run_dbt_command,
    scalar,
    write_csv,
)
from test_bad_input import (
    EVENTS_HEADER,
    ITEMS_HEADER,
    USERS_HEADER,
    VALID_ITEMS,
    VALID_TABLES,
    VALID_USERS,
    assert_fails_cleanly,
    write_parquet_tables,
)

from recflow.samples.events import write_data_dir

pytestmark = pytest.mark.dbt

# Models that hold every raw event whatever its fate; all others hold staged events only.
HOLD_QUARANTINED_EVENTS = (
    "base_app__events_validated",
    "base_app__events_checked",
    "stg_app__quarantined_rows",
    "stg_app__nulled_values",
)


def quarantined_reasons(duckdb_path: Path) -> Counter[str]:
    rows = query(
        duckdb_path,
        "select quarantine_reason from stg_app__quarantined_rows where source_table = 'events'",
    )
    return Counter(reason for (reason,) in rows)


def rows_holding(duckdb_path: Path, column_suffix: str, ids: list[str]) -> dict[str, int]:
    """Per table or view of the built project (quarantine aside), its rows whose columns ending
    in `column_suffix` (user_id, item_id, related_item_id, ...) hold one of `ids`."""
    with duckdb.connect(str(duckdb_path), read_only=True) as connection:
        columns = connection.execute(
            "select table_name, column_name from information_schema.columns "
            "where table_schema = 'main' and column_name like ?",
            [f"%{column_suffix}"],
        ).fetchall()
        return {
            f"{table}.{column}": connection.execute(
                f'select count(*) from main."{table}" where list_contains(?, "{column}")', [ids]
            ).fetchall()[0][0]
            for table, column in columns
            if table not in HOLD_QUARANTINED_EVENTS
        }


def every_nth(values: pa.Array, n: int) -> list[str]:
    return sorted(set(values.to_pylist()))[::n]


def test_events_of_items_or_users_missing_from_the_catalogue_reach_no_feature_table(
    tiny_sample: TinySample, tiny_warehouse: TinyWarehouse, tmp_path: Path
) -> None:
    """The tiny sample with a tenth of its items and users left out of their tables builds; each
    event the complete sample staged is now quarantined as unknown_item (item left out) or
    unknown_user (user left out), and no model besides the quarantine holds those ids, so no
    candidate, feature, fallback or served user can come from them."""
    tables = tiny_sample.data.tables
    missing_items = every_nth(tables["items"]["item_id"], 10)
    missing_users = every_nth(tables["users"]["user_id"], 10)
    keep_items = pc.invert(pc.is_in(tables["items"]["item_id"], pa.array(missing_items)))
    keep_users = pc.invert(pc.is_in(tables["users"]["user_id"], pa.array(missing_users)))
    data_dir = tmp_path / "data"
    write_data_dir(
        {
            "events": tables["events"],
            "items": tables["items"].filter(keep_items),
            "users": tables["users"].filter(keep_users),
        },
        data_dir,
        file_format="parquet",
    )
    isolation = Isolation.under(tmp_path / "work", data_dir)

    result = run_dbt_command(isolation, "build")
    assert result.returncode == 0, result.output

    # What the complete sample staged is the ground truth of which events were otherwise valid.
    complete = query(tiny_warehouse.duckdb_path, "select user_id, item_id from stg_app__events")
    expected_unknown_item = sum(item in missing_items for _, item in complete)
    expected_unknown_user = sum(
        user in missing_users and item not in missing_items for user, item in complete
    )
    assert expected_unknown_item > 0 and expected_unknown_user > 0
    reasons = quarantined_reasons(isolation.duckdb_path)
    assert reasons["unknown_item"] == expected_unknown_item
    assert reasons["unknown_user"] == expected_unknown_user
    staged = scalar(isolation.duckdb_path, "select count(*) from stg_app__events")
    assert staged == len(complete) - expected_unknown_item - expected_unknown_user
    assert staged + reasons.total() == tables["events"].num_rows

    item_rows = rows_holding(isolation.duckdb_path, "item_id", missing_items)
    user_rows = rows_holding(isolation.duckdb_path, "user_id", missing_users)
    assert {
        "int_candidates_generated.item_id",
        "scoring_candidates.item_id",
        "item_features.item_id",
    } <= set(item_rows)
    assert {"known_users.user_id", "scoring_candidates.user_id"} <= set(user_rows)
    assert item_rows == dict.fromkeys(item_rows, 0)
    assert user_rows == dict.fromkeys(user_rows, 0)


def _events_csv(data_dir: Path, rows: list[tuple[str | None, ...]]) -> None:
    write_csv(data_dir / "events.csv", EVENTS_HEADER, rows)


def test_an_item_listed_later_is_staged_by_the_full_refresh_its_stored_events_need(
    tmp_path: Path,
) -> None:
    """An event of an item the catalogue does not list yet is quarantined as unknown_item. When
    a later export lists the item and the event's day lies before the recomputed window, the
    tables built from that day would keep missing it: an incremental build stops naming the
    change (dbt/macros/provenance), and the full refresh it asks for stages the event."""
    events = [
        ("u1", "i1", "view", "2026-01-01T10:00:00Z", None),  # 6 days before the last day
        ("u1", "i-later", "view", "2026-01-01T10:05:00Z", None),
        ("u2", "i1", "click", "2026-01-07T09:00:00Z", None),
    ]
    data_dir = tmp_path / "data"
    _events_csv(data_dir, events)
    write_csv(data_dir / "users.csv", USERS_HEADER, VALID_USERS)
    write_csv(data_dir / "items.csv", ITEMS_HEADER, VALID_ITEMS)
    isolation = Isolation.under(tmp_path / "work", data_dir)
    staged_sql = "select item_id from stg_app__events order by all"

    first = run_dbt_command(isolation, *STAGING_BUILD)
    assert first.returncode == 0, first.output
    assert quarantined_reasons(isolation.duckdb_path) == {"unknown_item": 1}
    assert query(isolation.duckdb_path, staged_sql) == [("i1",), ("i1",)]

    write_csv(data_dir / "items.csv", ITEMS_HEADER, [*VALID_ITEMS, ("i-later", "c1", None)])
    incremental = run_dbt_command(isolation, *STAGING_BUILD)
    assert incremental.returncode != 0
    assert (
        "1 items added to the items table have events stored before the incremental window"
        in incremental.output
    )
    second = run_dbt_command(isolation, *STAGING_BUILD, "--full-refresh")
    assert second.returncode == 0, second.output
    assert quarantined_reasons(isolation.duckdb_path) == {}
    assert query(isolation.duckdb_path, staged_sql) == [("i-later",), ("i1",), ("i1",)]


def test_events_of_unknown_users_are_staged_when_the_var_says_keep(tmp_path: Path) -> None:
    """With `events_of_unknown_users: keep` an event of a user the users table does not list is
    staged (and its user relationship test is off); an unknown item is still quarantined."""
    data_dir = tmp_path / "data"
    _events_csv(
        data_dir,
        [
            ("u1", "i1", "view", "2026-01-05T10:00:00Z", None),
            ("u-unlisted", "i1", "view", "2026-01-05T10:01:00Z", None),
            ("u-unlisted", "i-unlisted", "view", "2026-01-05T10:02:00Z", None),
        ],
    )
    write_csv(data_dir / "users.csv", USERS_HEADER, VALID_USERS)
    write_csv(data_dir / "items.csv", ITEMS_HEADER, VALID_ITEMS)
    isolation = Isolation.under(tmp_path / "work", data_dir)

    result = run_dbt_command(isolation, *STAGING_BUILD, "--vars", "{events_of_unknown_users: keep}")

    assert result.returncode == 0, result.output
    assert "relationships_stg_app__events_user_id" not in result.output
    assert "relationships_stg_app__events_item_id" in result.output
    assert quarantined_reasons(isolation.duckdb_path) == {"unknown_item": 1}
    assert query(isolation.duckdb_path, "select user_id from stg_app__events order by 1") == [
        ("u-unlisted",),
        ("u1",),
    ]


def test_an_unknown_setting_for_events_of_unknown_users_stops_with_its_name(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    write_parquet_tables(data_dir, VALID_TABLES)
    isolation = Isolation.under(tmp_path / "work", data_dir)

    result = run_dbt_command(isolation, *STAGING_BUILD, "--vars", "{events_of_unknown_users: drop}")

    assert_fails_cleanly(result, "'events_of_unknown_users'", "'quarantine' or 'keep'", "'drop'")


# (directory read, a sibling its name matches as a glob pattern): [ ] * ? are glob characters
# to DuckDB, and a quote and a space must survive the SQL string.
EXACT_PATHS = {
    "brackets": ("export[1]", "export1"),
    "quote_space_star": ("team's export*", "team's export-old"),
}


@pytest.mark.parametrize("case_id", EXACT_PATHS)
def test_a_data_directory_is_read_exactly_as_named(case_id: str, tmp_path: Path) -> None:
    """A data directory whose name is also a glob pattern is read as named, not its sibling
    that the pattern matches (which holds other events)."""
    name, sibling = EXACT_PATHS[case_id]
    data_dir = tmp_path / name
    write_parquet_tables(data_dir, VALID_TABLES)
    decoy_events = (
        VALID_TABLES["events"].slice(0, 1).set_column(0, "user_id", pa.array(["u-decoy"]))
    )
    write_parquet_tables(tmp_path / sibling, {**VALID_TABLES, "events": decoy_events})
    isolation = Isolation.under(tmp_path / "work", data_dir)

    result = run_dbt_command(isolation, *STAGING_BUILD)

    assert result.returncode == 0, result.output
    staged = query(isolation.duckdb_path, "select user_id, item_id from stg_app__events")
    events = VALID_TABLES["events"]
    expected = zip(events["user_id"].to_pylist(), events["item_id"].to_pylist(), strict=True)
    assert Counter(staged) == Counter(expected)


def test_a_missing_data_directory_named_like_a_pattern_does_not_read_its_sibling(
    tmp_path: Path,
) -> None:
    """'export[1]' absent, 'export1' present: the build stops naming 'export[1]'."""
    write_parquet_tables(tmp_path / "export1", VALID_TABLES)
    isolation = Isolation.under(tmp_path / "work", tmp_path / "export[1]")

    result = run_dbt_command(isolation, *STAGING_BUILD)

    assert_fails_cleanly(result, f"'{tmp_path / 'export[1]'}' does not exist or is empty")


# --- Event keys -------------------------------------------------------------------------------

KEY_USERS = [("a|b", None, None), ("a", None, None), ("u1", None, None)]
KEY_ITEMS = [("c", None, None), ("b|c", None, None), ("i1", None, None)]
KEY_EVENTS = {
    # Ids that joined with '|' would give one text.
    "pipe_1": ("a|b", "c", "view", "2024-01-01T09:00:00Z", None),
    "pipe_2": ("a", "b|c", "view", "2024-01-01T09:00:00Z", None),
    # One instant and one amount, written two ways: one event.
    "instant_utc": ("u1", "i1", "purchase", "2024-01-01T10:00:00Z", "12.5"),
    "instant_offset": ("u1", "i1", "purchase", "2024-01-01 11:00:00+01:00", "12.50"),
    # Unparseable times: quarantined, each with a key of its own that every run gives again.
    "soon_1": ("u1", "i1", "view", "soon", None),
    "soon_2": ("u1", "i1", "view", "soon", None),
    "later": ("u1", "i1", "view", "later", None),
}


@dataclass(frozen=True)
class KeyedBuild:
    """A staging build of KEY_EVENTS, built twice (the second run incremental)."""

    duckdb_path: Path
    # raw event_at -> event_ids of base_app__events_validated, after the first and second run.
    first_keys: dict[str, list[str]]
    second_keys: dict[str, list[str]]


def _keys_by_raw_time(duckdb_path: Path) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for event_at_raw, event_id in query(
        duckdb_path,
        "select event_at_raw, event_id from base_app__events_validated order by all",
    ):
        keys.setdefault(event_at_raw, []).append(event_id)
    return keys


@pytest.fixture(scope="module")
def keyed_build(tmp_path_factory: pytest.TempPathFactory) -> KeyedBuild:
    root = tmp_path_factory.mktemp("event_keys")
    data_dir = root / "data"
    _events_csv(data_dir, list(KEY_EVENTS.values()))
    write_csv(data_dir / "users.csv", USERS_HEADER, KEY_USERS)
    write_csv(data_dir / "items.csv", ITEMS_HEADER, KEY_ITEMS)
    isolation = Isolation.under(root / "work", data_dir)
    first = run_dbt_command(isolation, *STAGING_BUILD)
    assert first.returncode == 0, first.output
    first_keys = _keys_by_raw_time(isolation.duckdb_path)
    second = run_dbt_command(isolation, *STAGING_BUILD)
    assert second.returncode == 0, second.output
    return KeyedBuild(isolation.duckdb_path, first_keys, _keys_by_raw_time(isolation.duckdb_path))


def test_ids_holding_the_separator_do_not_make_two_events_one(keyed_build: KeyedBuild) -> None:
    """User 'a|b' with item 'c' and user 'a' with item 'b|c' at one instant are two events."""
    staged = query(
        keyed_build.duckdb_path,
        "select user_id, item_id, event_id from stg_app__events where event_type = 'view'",
    )
    assert {(user, item) for user, item, _ in staged} == {("a|b", "c"), ("a", "b|c")}
    assert len({event_id for *_, event_id in staged}) == 2


def test_one_instant_written_two_ways_is_one_event_and_the_copy_a_duplicate(
    keyed_build: KeyedBuild,
) -> None:
    """'10:00Z' and '11:00+01:00' (with '12.5' and '12.50') are one event: one staged, the
    other quarantined as duplicate_event, under the same key."""
    staged = query(
        keyed_build.duckdb_path,
        "select strftime(event_at, '%Y-%m-%d %H:%M'), event_value from stg_app__events "
        "where event_type = 'purchase'",
    )
    assert staged == [("2024-01-01 10:00", 12.5)]
    duplicates = query(
        keyed_build.duckdb_path,
        "select raw_record from stg_app__quarantined_rows "
        "where quarantine_reason = 'duplicate_event'",
    )
    assert len(duplicates) == 1
    assert json.loads(duplicates[0][0])["event_type"] == "purchase"
    keys = keyed_build.first_keys
    utc, offset = (KEY_EVENTS[c][3] for c in ("instant_utc", "instant_offset"))
    assert keys[utc] == keys[offset]


def test_events_with_an_unparseable_time_keep_a_deterministic_key(
    keyed_build: KeyedBuild,
) -> None:
    """Rows whose time does not parse are quarantined; copies share a key, different texts do
    not, and the next run (which recomputes those rows) gives the same keys."""
    reasons = quarantined_reasons(keyed_build.duckdb_path)
    assert reasons == {"unparseable_event_at": 3, "duplicate_event": 1}
    keys = keyed_build.first_keys
    assert len(keys["soon"]) == 2 and len(set(keys["soon"])) == 1
    assert keys["later"] != keys["soon"][:1] and None not in keys["later"]
    assert keyed_build.second_keys == keyed_build.first_keys
