"""BigQuery bytes on paper: the referenced columns (views read through), the daily run's
partitions, and the figures on an incremental compile of the tiny build, checked by hand."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pytest
from conftest import Isolation, TinyWarehouse, run_dbt_command

from recflow.bench.bigquery_bytes import (
    MIN_BYTES_PER_TABLE,
    BigQueryBytes,
    ModelBytes,
    Relation,
    estimate,
    rebuilt_cutoffs,
    relations,
    render_markdown,
    table_reads,
)

EVENTS = ("main", "events_t")
VIEW = ("main", "events_v")


def test_a_view_is_read_through_to_its_table_with_its_filter_pushed_down() -> None:
    known = {
        EVENTS: Relation(EVENTS, "events_t", "incremental", "event_date"),
        VIEW: Relation(
            VIEW,
            "events_v",
            "view",
            None,
            'select * from "main"."events_t" where item_id is not null',
        ),
    }
    columns = {EVENTS: ["user_id", "item_id", "event_date", "payload"]}
    sql = (
        'with v as (select * from "main"."events_v" where event_date >= '
        "cast('2026-03-01' as date)) select user_id, count(*) as n from v group by user_id"
    )

    reads, note = table_reads(sql, known, columns)

    assert note == ""
    assert [read.key for read in reads] == [EVENTS]
    # item_id filters inside the view; payload is never referenced, so it is not billed.
    assert reads[0].columns == {"user_id", "item_id", "event_date"}
    assert reads[0].partition_filter is not None
    assert "2026-03-01" in reads[0].partition_filter


def test_a_filter_on_another_column_prunes_nothing() -> None:
    known = {EVENTS: Relation(EVENTS, "events_t", "incremental", "event_date")}
    sql = 'select user_id from "main"."events_t" where user_id >= \'u5\''
    (read,), _ = table_reads(sql, known, {EVENTS: ["user_id", "event_date"]})
    assert read.partition_filter is None
    assert read.columns == {"user_id"}


def test_a_query_sqlglot_cannot_parse_counts_every_column_of_its_parents() -> None:
    known = {
        EVENTS: Relation(EVENTS, "events_t", "incremental", "event_date"),
        VIEW: Relation(VIEW, "events_v", "view", None, 'select user_id from "main"."events_t"'),
    }
    columns = {EVENTS: ["user_id", "item_id", "event_date"]}
    parents = ['"main"."events_v"']
    reads, note = table_reads("select from from (", known, columns, parents)
    assert "could not parse" in note
    # Every column of the view, which is one column of its table.
    assert [(read.key, read.columns) for read in reads] == [(EVENTS, {"user_id"})]
    reads, _ = table_reads("select from from (", known, columns, [*parents, '"main"."events_t"'])
    assert [(read.key, read.columns) for read in reads] == [
        (EVENTS, {"user_id", "item_id", "event_date"})
    ]


def test_rebuilt_cutoffs_follow_the_macro() -> None:
    spine = [
        (date(2026, 2, 23), "validation", date(2026, 3, 2)),
        (date(2026, 3, 2), "test", date(2026, 3, 9)),
        (date(2026, 3, 9), "test", date(2026, 3, 16)),
        (date(2026, 3, 16), "scoring", date(2026, 3, 23)),
    ]
    # scoring 03-16 - 3 days lookback - 7 days label window = 03-06; labelled 03-09 - 3 = 03-06.
    every, labelled = rebuilt_cutoffs(spine, lookback_days=3)
    assert every == (date(2026, 3, 9), date(2026, 3, 16))
    assert labelled == (date(2026, 3, 9),)
    every, labelled = rebuilt_cutoffs(spine, lookback_days=8)
    assert every == (date(2026, 3, 2), date(2026, 3, 9), date(2026, 3, 16))
    assert labelled == (date(2026, 3, 2), date(2026, 3, 9))


def test_render_markdown_shows_totals_and_the_price() -> None:
    row = ModelBytes("m", "incremental", 4 * 2**30, 2**30, 4 * 2**30, 2**30)
    lines = render_markdown(BigQueryBytes((row,), (date(2026, 3, 16),), (), usd_per_tib=8.0))
    text = "\n".join(lines)
    assert lines[0] == "### BigQuery bytes on paper (full build vs daily run)"
    assert "| `m` | incremental | 4.00 GiB | 1.00 GiB | 25% |" in text
    assert "**4.00 GiB** | **1.00 GiB** | **25%**" in text
    assert "$0.0312 per full build, $0.0078 per daily run" in text
    assert "2026-03-16" in text


@dataclass(frozen=True)
class IncrementalCompile:
    """The tiny build's warehouse (a copy) and the manifest of an incremental compile on it."""

    manifest: Path
    duckdb_path: Path

    def sql(self, query: str) -> list[tuple[object, ...]]:
        with duckdb.connect(str(self.duckdb_path), read_only=True) as connection:
            return connection.execute(query).fetchall()


@pytest.fixture(scope="module")
def incremental_compile(
    tiny_warehouse: TinyWarehouse, tmp_path_factory: pytest.TempPathFactory
) -> IncrementalCompile:
    isolation = Isolation.under(tmp_path_factory.mktemp("bq_bytes"), tiny_warehouse.data_dir)
    shutil.copy(tiny_warehouse.duckdb_path, isolation.duckdb_path)
    compiled = run_dbt_command(isolation, "compile")
    assert compiled.returncode == 0, compiled.output[-3000:]
    return IncrementalCompile(isolation.target_path / "manifest.json", isolation.duckdb_path)


@pytest.fixture(scope="module")
def tiny_estimate(incremental_compile: IncrementalCompile) -> BigQueryBytes:
    return estimate(incremental_compile.manifest, incremental_compile.duckdb_path, lookback_days=3)


def by_name(result: BigQueryBytes, name: str) -> ModelBytes:
    return next(row for row in result.rows if row.name == name)


def test_a_staging_read_costs_its_columns_bytes(
    incremental_compile: IncrementalCompile, tiny_estimate: BigQueryBytes
) -> None:
    # int_cutoffs_scheduled reads the events through the staging views; by hand, in Python:
    # 8 bytes per date, 2 + UTF-8 length per string, nothing for a null.
    def string_bytes(values: list[object]) -> int:
        return sum(2 + len(str(value).encode()) for value in values if value is not None)

    events = incremental_compile.sql(
        "select event_date, item_id, user_id, quarantine_reason from base_app__events_validated"
    )
    items = incremental_compile.sql(
        "select item_id, quarantine_reason from base_app__items_validated"
    )
    users = incremental_compile.sql(
        "select user_id, quarantine_reason from base_app__users_validated"
    )
    expected = 8 * sum(row[0] is not None for row in events)
    for table in (events, items, users):
        for column in zip(*table, strict=True):
            if not isinstance(column[0], date):
                expected += string_bytes(list(column))

    row = by_name(tiny_estimate, "int_cutoffs_scheduled")

    assert row.full_logical == expected
    assert row.daily_logical == expected  # a table model reads everything every day
    assert row.full_bytes == 3 * MIN_BYTES_PER_TABLE  # three small tables, 10 MB each


def test_the_staging_views_are_folded_into_their_readers(
    incremental_compile: IncrementalCompile, tiny_estimate: BigQueryBytes
) -> None:
    manifest = json.loads(incremental_compile.manifest.read_text())
    parents = manifest["nodes"]["model.recflow.int_cutoffs_scheduled"]["depends_on"]["nodes"]
    assert "model.recflow.stg_app__events" in parents
    known = relations(manifest)
    assert known[("main", "stg_app__events")].materialized == "view"
    names = {row.name for row in tiny_estimate.rows}
    assert "stg_app__events" not in names and "base_app__events_checked" not in names
    assert "int_cutoffs_scheduled" in names


def test_a_daily_run_reads_only_the_rebuilt_cutoffs(
    incremental_compile: IncrementalCompile, tiny_estimate: BigQueryBytes
) -> None:
    spine = incremental_compile.sql("select max(cutoff_date) from int_cutoffs_scheduled")
    assert tiny_estimate.rebuilt_cutoffs[-1] == spine[0][0]
    manifest = json.loads(incremental_compile.manifest.read_text())
    known = relations(manifest)
    columns: dict[tuple[str, str], list[str]] = {}
    for schema, table, column in incremental_compile.sql(
        "select table_schema, table_name, column_name from information_schema.columns"
    ):
        columns.setdefault((schema, table), []).append(column)
    for model, splits, expected in (
        ("int_users_featurized", "true", tiny_estimate.rebuilt_cutoffs),
        ("training_examples", "split != 'scoring'", tiny_estimate.rebuilt_labelled_cutoffs),
    ):
        sql = known[("main", model)].compiled_sql
        assert sql is not None
        reads, note = table_reads(sql, known, columns)
        assert note == ""
        filters = [read.partition_filter for read in reads if read.partition_filter]
        assert filters, f"{model} reads no partition through cutoffs_to_rebuild()"
        for where in filters:
            kept = incremental_compile.sql(
                "select cutoff_date from int_cutoffs_scheduled "
                f"where {splits} and ({where}) order by 1"
            )
            assert tuple(cutoff for (cutoff,) in kept) == expected

    featurized = by_name(tiny_estimate, "int_users_featurized")
    assert 0 < featurized.daily_logical < featurized.full_logical
    scoring = by_name(tiny_estimate, "scoring_candidates")
    assert scoring.materialized == "table"
    assert scoring.daily_logical == scoring.full_logical
    assert tiny_estimate.total("daily_logical") < tiny_estimate.total("full_logical")
    assert all(row.note == "" for row in tiny_estimate.rows)
    assert tiny_estimate.pruned_reads > 0
    assert f"{tiny_estimate.pruned_reads} reads of incremental models" in "\n".join(
        render_markdown(tiny_estimate)
    )
