"""Tests for the synthetic interaction-log generator (tiny preset, so the file runs in seconds)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recflow.samples.events import (
    DIRTY_REASONS,
    EVENT_TYPES,
    SCALES,
    SCHEMAS,
    UNPARSEABLE_EVENT_AT,
    SampleData,
    generate,
    write_data_dir,
)

TINY = SCALES["tiny"]
VALID_TYPES = "('view', 'click', 'cart', 'purchase')"
PRICED = "event_type in ('cart', 'purchase')"
# Rows that carry none of the injected problems (duplicates are copies of clean rows).
CLEAN = f"""
    select * from events
    where user_id is not null and item_id is not null and event_at is not null
      and event_type in {VALID_TYPES} and event_at < timestamptz '{TINY.end_at.isoformat()}'
"""


@pytest.fixture(scope="module")
def data() -> SampleData:
    return generate(TINY)


@pytest.fixture(scope="module")
def con(data: SampleData) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for name, table in data.tables.items():
        con.register(name, table)
    con.execute("set timezone = 'UTC'")
    return con


def scalar(con: duckdb.DuckDBPyConnection, sql: str) -> float:
    return con.execute(sql).fetchone()[0]


def test_same_seed_same_data_and_other_seed_differs(data: SampleData) -> None:
    again = generate(TINY)
    assert all(again.tables[k].equals(data.tables[k]) for k in data.tables)
    assert again.dirty_counts == data.dirty_counts
    other = generate(replace(TINY, seed=TINY.seed + 1))
    assert not other.tables["events"].equals(data.tables["events"])


def test_schemas(data: SampleData) -> None:
    assert set(data.tables) == {"events", "items", "users"}
    for name, table in data.tables.items():
        assert table.schema == SCHEMAS[name]
    assert data.tables["events"].schema.field("event_at").type == pa.timestamp("us", tz="UTC")


def test_sizes_and_ids(data: SampleData) -> None:
    events, items, users = (data.tables[k] for k in ("events", "items", "users"))
    assert users.num_rows == TINY.n_users and items.num_rows == TINY.n_items
    assert 20_000 <= events.num_rows <= 40_000
    assert all(re.fullmatch(r"u\d{3}", u) for u in users["user_id"].to_pylist())
    assert all(re.fullmatch(r"i\d{3}", i) for i in items["item_id"].to_pylist())
    cats = items["category"].drop_null().to_pylist()
    assert set(cats) == {f"c{c:02d}" for c in range(1, TINY.n_categories + 1)}
    assert 1 <= items["category"].null_count <= 0.02 * TINY.n_items
    assert set(users["segment"].to_pylist()) == {"free", "plus", "pro"}


def test_new_items_and_no_event_before_creation(con: duckdb.DuckDBPyConnection) -> None:
    start = f"timestamptz '{TINY.start_at.isoformat()}'"
    share_new = scalar(con, f"select avg((created_at >= {start})::int) from items")
    assert 0.12 <= share_new <= 0.3
    early = f"select count(*) from ({CLEAN}) e join items i using (item_id) "
    early += "where e.event_at < i.created_at"
    assert scalar(con, early) == 0
    before_signup = f"select count(*) from ({CLEAN}) e join users u using (user_id)"
    assert scalar(con, before_signup + " where e.event_at < u.signup_at") == 0
    assert scalar(con, f"select min(event_at) >= {start} from ({CLEAN})")


def test_funnel_order(con: duckdb.DuckDBPyConnection) -> None:
    counts = dict(con.execute(f"select event_type, count(*) from ({CLEAN}) group by 1").fetchall())
    assert counts["view"] > counts["click"] > counts["cart"] > counts["purchase"] > 0
    assert 0.2 <= counts["click"] / counts["view"] <= 0.45
    # Per user-item, each stage's first occurrence follows the previous stage's first occurrence.
    broken = f"""
        with f as (
            select user_id, item_id,
                   min(event_at) filter (where event_type = 'view') v,
                   min(event_at) filter (where event_type = 'click') c,
                   min(event_at) filter (where event_type = 'cart') a,
                   min(event_at) filter (where event_type = 'purchase') p
            from (select distinct * from ({CLEAN})) group by all
        )
        select count(*) from f
        where (c is not null and not coalesce(c > v, false))
           or (a is not null and not coalesce(a > c, false))
           or (p is not null and not coalesce(p > a, false))
    """
    assert scalar(con, broken) == 0
    assert scalar(con, f"select count(*) from ({CLEAN}) where (value is null) = ({PRICED})") == 0


def test_popularity_is_long_tailed(con: duckdb.DuckDBPyConnection) -> None:
    share = scalar(
        con,
        f"""
        with v as (select item_id, count(*) n from ({CLEAN}) where event_type = 'view' group by 1)
        select sum(n) filter (where r <= {TINY.n_items // 10}) / sum(n)
        from (select n, row_number() over (order by n desc) r from v)
        """,
    )
    assert share > 0.3  # uniform popularity would give ~0.1


def test_consecutive_views_are_ring_neighbours(
    con: duckdb.DuckDBPyConnection, data: SampleData
) -> None:
    pairs = con.execute(
        f"""
        select a, b from (
            select item_id a, lead(item_id) over w b,
                   lead(event_at) over w - event_at gap
            from (select distinct * from ({CLEAN}) where event_type = 'view')
            window w as (partition by user_id order by event_at)
        ) where gap <= interval 5 minutes
        """
    ).fetchall()
    a, b = (np.array([int(x[1:]) for x in col]) for col in zip(*pairs, strict=True))
    assert a.size > 5_000
    related = (data.related[a] == b[:, None]).any(axis=1).mean()
    chance = (data.related[a] == np.random.default_rng(0).permutation(b)[:, None]).any(1).mean()
    assert related > 0.6 and related > 10 * chance


def test_dirty_counts_match_data(con: duckdb.DuckDBPyConnection, data: SampleData) -> None:
    events = data.tables["events"]
    future = f"timestamptz '{TINY.end_at.isoformat()}' + interval 700 days"
    observed = {
        "missing_user_id": events["user_id"].null_count,
        "missing_item_id": events["item_id"].null_count,
        "missing_event_at": events["event_at"].null_count,
        "unknown_event_type": scalar(
            con, f"select count(*) from events where event_type not in {VALID_TYPES}"
        ),
        "future_event_at": scalar(con, f"select count(*) from events where event_at > {future}"),
        "duplicate_event": events.num_rows
        - scalar(con, "select count(*) from (select distinct * from events)"),
    }
    assert observed == data.dirty_counts
    assert set(data.dirty_counts) == set(DIRTY_REASONS)
    assert all(n > 0 for n in data.dirty_counts.values())
    assert 0.003 <= sum(data.dirty_counts.values()) / events.num_rows <= 0.005
    # Recorded positions point at rows with exactly that problem.
    rows = events.take(np.concatenate(list(data.dirty_rows.values()))).to_pylist()
    reasons = [r for r, pos in data.dirty_rows.items() for _ in pos]
    for reason, row in zip(reasons, rows, strict=True):
        problems = {
            "missing_user_id": row["user_id"] is None,
            "missing_item_id": row["item_id"] is None,
            "missing_event_at": row["event_at"] is None,
            "unknown_event_type": row["event_type"] not in EVENT_TYPES,
            "future_event_at": row["event_at"] is not None and row["event_at"] > TINY.end_at,
        }
        assert {k for k, bad in problems.items() if bad} == (
            set() if reason == "duplicate_event" else {reason}
        )


def test_events_are_not_sorted(data: SampleData) -> None:
    users = data.tables["events"]["user_id"].to_pylist()
    assert users != sorted(users, key=lambda u: u or "")


def test_csv_round_trip(data: SampleData, tmp_path: Path) -> None:
    result = write_data_dir(data.tables, tmp_path, file_format="csv")
    assert {p.name for p in tmp_path.iterdir()} == {"events.csv", "items.csv", "users.csv"}
    assert result.unparseable_event_at >= 2
    con = duckdb.connect()
    path = str(result.paths["events"])
    rel = f"read_csv('{path}', all_varchar = true)"
    n_events = data.tables["events"].num_rows
    assert scalar(con, f"select count(*) from {rel}") == n_events + result.unparseable_event_at
    bad = con.execute(
        f"select event_at from {rel}"
        " where try_cast(event_at as timestamptz) is null and event_at is not null"
    ).fetchall()
    assert len(bad) == result.unparseable_event_at
    assert {b for (b,) in bad} <= set(UNPARSEABLE_EVENT_AT)
    assert (
        scalar(con, f"select count(*) from {rel} where user_id is null")
        == (data.dirty_counts["missing_user_id"])
    )
    first = con.execute(
        f"select event_at from {rel} where event_at like '2026-%' limit 1"
    ).fetchone()[0]
    assert re.fullmatch(r"2026-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", first)
    # Parsed timestamps and values survive the trip exactly.
    items = f"read_csv('{result.paths['items']}', all_varchar = true)"
    got = con.execute(f"select item_id, created_at::timestamptz from {items} order by 1").fetchall()
    want = data.tables["items"].select(["item_id", "created_at"]).to_pylist()
    assert got == [tuple(r.values()) for r in sorted(want, key=lambda r: r["item_id"])]


def test_parquet_write_replaces_csv_atomically(data: SampleData, tmp_path: Path) -> None:
    out = tmp_path / "raw"
    write_data_dir(data.tables, out, file_format="csv")
    result = write_data_dir(data.tables, out, file_format="parquet")
    assert result.unparseable_event_at == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "events.parquet",
        "items.parquet",
        "users.parquet",
    ]
    for name, table in data.tables.items():
        assert pq.read_table(result.paths[name]).equals(table)
    assert (
        pq.ParquetFile(result.paths["events"]).metadata.row_group(0).column(0).compression == "ZSTD"
    )
