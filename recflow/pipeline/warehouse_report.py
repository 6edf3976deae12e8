"""Read-only summaries of a finished local build: what each mart holds, what was quarantined or
nulled, and how well each candidate source covers the test window."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from recflow.pipeline.settings import Settings


@dataclass(frozen=True)
class BuildSummary:
    rows_per_model: dict[str, int]
    quarantined: dict[tuple[str, str], int]
    candidate_recall: dict[str, float]
    # (source table, column) -> values that did not parse and were staged as null.
    nulled_values: dict[tuple[str, str], int]


def summarise_build(settings: Settings, *, model_names: list[str], recall_sql: str) -> BuildSummary:
    """Count rows per model, quarantined rows per reason and nulled values per column, and run
    the recall analysis."""
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as connection:
        rows_per_model = {
            name: connection.execute(f'select count(*) from "{name}"').fetchall()[0][0]
            for name in model_names
        }
        quarantined = {
            (source_table, reason): count
            for source_table, reason, count in connection.execute(
                "select source_table, quarantine_reason, count(*) from stg_app__quarantined_rows "
                "group by all order by all"
            ).fetchall()
        }
        nulled_values = {
            (source_table, column_name): count
            for source_table, column_name, count in connection.execute(
                "select source_table, column_name, count(*) from stg_app__nulled_values "
                "group by all order by all"
            ).fetchall()
        }
        recall_table = connection.sql(recall_sql).to_arrow_table()
    candidate_recall = {
        name: recall_table.column(name)[0].as_py() for name in recall_table.column_names
    }
    return BuildSummary(rows_per_model, quarantined, candidate_recall, nulled_values)
