"""Tests for the MovieLens-shaped ratings generator (tiny preset, so the file runs in seconds)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import Isolation, run_recflow_cli

from recflow.cli import main
from recflow.samples.events import SCHEMAS, SampleData
from recflow.samples.ratings import (
    BURST_DAYS,
    EVENT_TYPE,
    GENRES,
    RATING_SHARES,
    SCALES,
    RatingsSpec,
    generate,
)

TINY = SCALES["tiny"]
START = f"timestamptz '{TINY.start_at.isoformat()}'"
# One row per rating with the day of the period and the day since the user's first rating.
RATINGS = f"""
    select user_id, item_id, value, event_at,
           date_diff('day', {START}, event_at) as day_no,
           date_diff('day', min(event_at) over (partition by user_id)::date, event_at::date)
               as user_day
    from events
"""


@pytest.fixture(scope="module")
def data() -> SampleData:
    return generate(TINY)


@pytest.fixture(scope="module")
def con(data: SampleData) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("set timezone = 'UTC'")
    for name, table in data.tables.items():
        con.register(name, table)
    return con


def scalar(con: duckdb.DuckDBPyConnection, sql: str) -> float:
    return con.execute(sql).fetchone()[0]


def test_tables_follow_the_raw_data_contract(
    con: duckdb.DuckDBPyConnection, data: SampleData
) -> None:
    assert set(data.tables) == set(SCHEMAS)
    for name, table in data.tables.items():
        assert table.schema == SCHEMAS[name]
        assert all(table[c].null_count == 0 for c in table.column_names), name
    events, items, users = (data.tables[k] for k in ("events", "items", "users"))
    assert users.num_rows == TINY.n_users and items.num_rows == TINY.n_items
    assert set(events["event_type"].to_pylist()) == {EVENT_TYPE}
    assert set(events["value"].to_pylist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert set(items["category"].to_pylist()) == set(GENRES)
    assert all(re.fullmatch(r"u\d{3}", u) for u in users["user_id"].to_pylist())
    assert all(re.fullmatch(r"i\d{3}", i) for i in items["item_id"].to_pylist())
    assert data.dirty_counts == {}
    # Every user rated, nothing before the period, the item's release or the user's sign-up.
    assert scalar(con, "select count(distinct user_id) from events") == TINY.n_users
    assert scalar(con, f"select min(event_at) >= {START} from events")
    end = f"timestamptz '{TINY.end_at.isoformat()}'"
    assert scalar(con, f"select max(event_at) < {end} from events")
    early = "select count(*) from events e join items i using (item_id) where e.event_at < "
    assert scalar(con, early + "i.created_at") == 0
    # Each user signs up shortly (at most an hour) before their first rating.
    lo, hi = con.execute(
        """
        select min(epoch(first_at) - epoch(signup_at)), max(epoch(first_at) - epoch(signup_at))
        from users join (select user_id, min(event_at) first_at from events group by 1) f
            using (user_id)
        """
    ).fetchone()
    assert lo > 0 and hi <= 3600


def test_ratings_have_movielens_shares(con: duckdb.DuckDBPyConnection) -> None:
    shares = dict(
        con.execute(
            "select value, count(*) / sum(count(*)) over () from events group by 1"
        ).fetchall()
    )
    assert [round(shares[v], 2) for v in (1.0, 2.0, 3.0, 4.0, 5.0)] == list(RATING_SHARES)


def test_same_seed_same_data_and_other_seed_differs(data: SampleData) -> None:
    again = generate(TINY)
    assert all(again.tables[k].equals(data.tables[k]) for k in data.tables)
    assert np.array_equal(again.related, data.related)
    other = generate(replace(TINY, seed=TINY.seed + 1))
    assert not other.tables["events"].equals(data.tables["events"])


def test_at_most_one_rating_per_user_and_item(con: duckdb.DuckDBPyConnection) -> None:
    assert scalar(con, "select count(*) from events") > 10_000
    assert scalar(con, "select count(*) - count(distinct (user_id, item_id)) from events") == 0
    # Heavy raters stop at a share of the catalogue, so everyone has unseen items to rank.
    most = scalar(con, "select max(n) from (select count(*) n from events group by user_id)")
    assert most == int(TINY.max_rated_share * TINY.n_items)


def test_users_rate_mostly_in_their_first_days_and_some_return(
    con: duckdb.DuckDBPyConnection,
) -> None:
    mean_burst, returned, never = con.execute(
        f"""
        select avg(burst / n), avg((late > 0)::int), avg((after_burst = 0)::int)
        from (
            select user_id, count(*) n,
                   count(*) filter (where user_day < {BURST_DAYS}) burst,
                   count(*) filter (where user_day >= 7) late,
                   count(*) filter (where user_day >= {BURST_DAYS}) after_burst
            from ({RATINGS}) group by 1
        )
        """
    ).fetchone()
    assert 0.6 <= mean_burst <= 0.85
    assert 0.3 <= returned <= 0.7
    assert never >= 0.3
    # The first day holds more ratings than any later day of a user's life.
    by_day = dict(con.execute(f"select user_day, count(*) from ({RATINGS}) group by 1").fetchall())
    assert by_day[0] > 2 * max(n for d, n in by_day.items() if d > 0)


def test_signups_spread_over_the_period_with_bursts(con: duckdb.DuckDBPyConnection) -> None:
    weeks, median_day, max_day = con.execute(
        f"""
        select count(distinct d // 7), median(n), max(n)
        from (
            select date_diff('day', {START}, signup_at) d, count(*) over (partition by d) n
            from users
        )
        """
    ).fetchone()
    assert weeks >= 0.9 * TINY.n_days // 7
    assert max_day >= 3 * median_day
    # No week takes more than a few times its fair share of sign-ups.
    top_week = scalar(
        con,
        f"select max(n) from (select date_diff('day', {START}, signup_at) // 7, count(*) n "
        "from users group by 1)",
    )
    assert top_week <= 4 * TINY.n_users * 7 / TINY.n_days


def test_item_popularity_decays_after_release(con: duckdb.DuckDBPyConnection) -> None:
    # An item's share of each day's ratings, by weeks since its release (items released early
    # enough to be observed for ten weeks).
    by_week = dict(
        con.execute(
            f"""
            with released as (
                select item_id, date_diff('day', {START}, created_at) release_day from items
                where created_at >= {START}
                  and date_diff('day', {START}, created_at) < {TINY.n_days - 70}
            ),
            daily as (select day_no, count(*) n from ({RATINGS}) group by 1),
            per_item as (
                select r.item_id, r.day_no, (r.day_no - release_day) // 7 as wk,
                       count(*) / any_value(d.n) as day_share
                from ({RATINGS}) r join released using (item_id) join daily d using (day_no)
                group by 1, 2, 3
            )
            select wk, sum(day_share) / (7 * (select count(*) from released)) from per_item
            where wk < 10 group by 1
            """
        ).fetchall()
    )
    assert by_week[0] > 2 * by_week[7] and by_week[1] > by_week[4] > by_week[9]
    new_share = scalar(con, "select avg((created_at >= " + START + ")::int) from items")
    assert 0.25 <= new_share <= 0.55


def test_taste_and_item_item_structure(con: duckdb.DuckDBPyConnection, data: SampleData) -> None:
    # Users concentrate on few genres: their top genre holds far more than its overall share.
    top_share, overall = con.execute(
        """
        with g as (
            select user_id, category, count(*) n from events join items using (item_id)
            group by all
        )
        select avg(top / total), max(overall) from (
            select user_id, max(n) top, sum(n) total from g group by 1
        ), (select max(n) / sum(n) overall from (select category, sum(n) n from g group by 1))
        """
    ).fetchone()
    assert top_share > 2 * overall


def test_related_items_are_rated_by_the_same_users() -> None:
    # A larger catalogue than tiny's, where users rate a small share of it as at demo scale.
    spec = replace(TINY, n_items=1_500)
    data = generate(spec)
    events, items = data.tables["events"], data.tables["items"]
    rated = np.zeros((spec.n_users, spec.n_items))
    rated[
        [int(u[1:]) for u in events["user_id"].to_pylist()],
        [int(i[1:]) for i in events["item_id"].to_pylist()],
    ] = 1.0
    pop = rated.sum(axis=0)
    lift = (rated.T @ rated) / np.maximum(np.outer(pop, pop), 1.0)  # co-ratings over chance
    genre = np.array([GENRES.index(g) for g in items["category"].to_pylist()])
    same = genre[:, None] == genre[None, :]
    np.fill_diagonal(same, False)
    other = genre[:, None] != genre[None, :]
    first = np.repeat(np.arange(spec.n_items), data.related.shape[1])
    related = lift[first, data.related.ravel()].mean()
    assert related > 1.25 * lift[same].mean() > 1.25 * 1.5 * lift[other].mean()


def test_spec_rejects_bad_knobs() -> None:
    with pytest.raises(ValueError, match="items"):
        RatingsSpec(n_users=10, n_items=len(GENRES), n_days=10)
    with pytest.raises(ValueError, match="burst_day_shares"):
        RatingsSpec(n_users=10, n_items=100, n_days=10, burst_day_shares=(0.5, 0.5, 0.5))


def test_cli_writes_a_readable_ratings_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    isolation = Isolation.under(tmp_path / "work", data_dir)
    result = run_recflow_cli(
        isolation, "sample", "--profile", "ratings", "--scale", "tiny", "--data-dir", str(data_dir)
    )
    assert result.returncode == 0, result.output
    assert "ratings tiny" in result.output
    assert sorted(p.name for p in data_dir.iterdir()) == [
        "events.parquet",
        "items.parquet",
        "users.parquet",
    ]
    expected = generate(TINY)
    for name, table in expected.tables.items():
        assert pq.read_table(data_dir / f"{name}.parquet").equals(table)


def test_cli_rejects_a_scale_the_profile_lacks(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["sample", "--profile", "ratings", "--scale", "bench", "--data-dir", "unused"])
    assert exited.value.code == 2
    assert "the ratings profile has no scale 'bench' (choose from demo, tiny)" in (
        capsys.readouterr().err
    )
