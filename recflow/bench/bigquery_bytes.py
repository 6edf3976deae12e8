"""BigQuery bytes on paper: what each model's query would bill in a full build and in a daily
incremental run, from the DuckDB build's tables, so the benchmark shows what the daily design
saves.

BigQuery on demand bills the logical bytes of the columns a query references in the partitions
it reads, at least 10 MB per table referenced. Per non-null value: INT64, FLOAT64, DATE,
DATETIME, TIME, TIMESTAMP 8 bytes, BOOL 1, NUMERIC 16, STRING and BYTES 2 + the UTF-8 size; NULL
0 (BigQuery's "data size calculation"). The columns come from each model's compiled SQL (the
incremental DuckDB build's manifest) parsed with sqlglot, views inlined (BigQuery bills a view's
tables) and unused columns and filters pushed down as BigQuery does; a query sqlglot cannot
resolve counts every column of the tables it reads. A table is partitioned on the
`partition_date` its config names (`incremental_by_cutoff`: `cutoff_date`). A full build reads
every partition; in a daily run an incremental model reads only the partitions its compiled
filters on the parent's partition column keep (`cutoffs_to_rebuild()` and
`incremental_window_start()` compile to literal dates, which BigQuery prunes on); a table
model's literal filters on a partition column (`scoring_cutoff_date()`) prune in both builds.
Not counted: dbt's merge statements, bound queries, hooks, data tests.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.pushdown_predicates import pushdown_predicates
from sqlglot.optimizer.pushdown_projections import pushdown_projections
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import traverse_scope

from recflow.pipeline.settings import project_vars
from recflow.review.bigquery_cost import DEFAULT_USD_PER_TIB, estimate_usd, format_bytes, format_usd

log = logging.getLogger(__name__)

DIALECT = "duckdb"  # the manifest is the DuckDB build's
MIN_BYTES_PER_TABLE = 10 * 2**20
BILLED = ("table", "incremental")
_PARTITION = re.compile(r"partition_date\s*=\s*['\"](\w+)['\"]")
Key = tuple[str, str]  # (schema, name), lower-case


@dataclass(frozen=True)
class Relation:
    """A model or source of the manifest as BigQuery would hold it."""

    key: Key
    name: str
    materialized: str  # table, incremental, view, ephemeral, source
    partition_column: str | None
    compiled_sql: str | None = None
    parents: tuple[str, ...] = ()  # relation names of what it reads, for the fallback


@dataclass(frozen=True)
class TableRead:
    """One table a model's query reads: the columns it references and, when the daily run
    prunes partitions, the filter (DuckDB SQL on the partition column) that keeps them."""

    key: Key
    columns: frozenset[str]
    partition_filter: str | None = None


@dataclass(frozen=True)
class ModelBytes:
    name: str
    materialized: str
    full_bytes: int  # billed: the logical bytes, at least 10 MB per table read
    daily_bytes: int
    full_logical: int  # the referenced columns' logical bytes, before the minimums
    daily_logical: int
    note: str = ""  # why the figure is rougher (all columns counted)

    @property
    def ratio(self) -> float | None:
        return self.daily_bytes / self.full_bytes if self.full_bytes else None


@dataclass(frozen=True)
class BigQueryBytes:
    """The section's figures: one row per billed model, and the cutoffs a daily run rebuilds."""

    rows: tuple[ModelBytes, ...]
    rebuilt_cutoffs: tuple[date, ...]
    rebuilt_labelled_cutoffs: tuple[date, ...]
    usd_per_tib: float = DEFAULT_USD_PER_TIB
    pruned_reads: int = 0  # reads of incremental models with a compiled partition filter

    def total(self, figure: str) -> int:
        """Sum of one ModelBytes figure (full_bytes, daily_bytes, ...) over the models."""
        return sum(getattr(row, figure) for row in self.rows)


def relations(manifest: Mapping[str, Any]) -> dict[Key, Relation]:
    """Every model and source with a relation, keyed by (schema, name) as compiled SQL names it."""
    found: dict[Key, Relation] = {}
    graph = {**manifest["nodes"], **manifest["sources"]}
    for node in graph.values():
        if node["resource_type"] not in ("model", "source") or not node.get("relation_name"):
            continue
        depends_on = (node.get("depends_on") or {}).get("nodes", [])
        parents = tuple(
            graph[uid]["relation_name"]
            for uid in depends_on
            if graph.get(uid, {}).get("relation_name")
        )
        table = exp.to_table(node["relation_name"], dialect=DIALECT)
        key = (table.db.lower(), table.name.lower())
        raw = node.get("raw_code") or ""
        partition = _PARTITION.search(raw)
        column = partition.group(1) if partition else None
        if "incremental_by_cutoff(" in raw:
            column = "cutoff_date"
        kind = node["config"].get("materialized", "source")
        found[key] = Relation(key, node["name"], kind, column, node.get("compiled_code"), parents)
    return found


def table_reads(
    sql: str,
    known: Mapping[Key, Relation],
    columns: Mapping[Key, Iterable[str]],
    parents: Iterable[str] = (),
) -> tuple[list[TableRead], str]:
    """The tables a query reads (views inlined), the columns of each it references and their
    partition filters; with a note when sqlglot could not resolve the columns, or could not
    parse the query (then every column of `parents`, the model's relations, counts)."""
    try:
        tree = _inline_views(sqlglot.parse_one(sql, read=DIALECT), known)
    except SqlglotError as error:
        log.warning("not parsed (%s): counting every column of the parents", error)
        everything = " cross join ".join(parents) or "(select 1)"
        reads, _ = table_reads(f"select * from {everything}", known, columns)
        return reads, "all columns of its parents (sqlglot could not parse the query)"
    schema = {db: {} for db, _ in columns}
    for (db, name), names in columns.items():
        schema[db][name] = {column: "unknown" for column in names}
    try:
        tree = qualify(tree, schema=schema, dialect=DIALECT, validate_qualify_columns=False)
        # As BigQuery does: drop the columns no outer query uses, push filters down to the scans.
        tree = pushdown_predicates(pushdown_projections(tree), dialect=DIALECT)
        used = _referenced_columns(tree)
        note = ""
    except Exception as error:  # sqlglot cannot resolve it: count every column instead
        log.warning("columns not resolved (%s): counting all columns", error)
        used = {}
        note = "all columns (sqlglot could not resolve the query)"
    reads: dict[Key, TableRead] = {}
    for table in tree.find_all(exp.Table):
        key = (table.db.lower(), table.name.lower())
        if key not in known:
            continue
        cols = frozenset(columns.get(key, ())) if note else used.get(key, frozenset())
        pruning = _partition_filter(table, known[key].partition_column)
        previous = reads.get(key)
        if previous is not None:
            cols = cols | previous.columns
            # A table read twice is pruned only when every read is.
            pruning = pruning if pruning and previous.partition_filter else None
            if pruning and pruning != previous.partition_filter:
                pruning = f"({previous.partition_filter}) or ({pruning})"
        reads[key] = TableRead(key, cols, pruning)
    return list(reads.values()), note


def _inline_views(tree: exp.Expression, known: Mapping[Key, Relation]) -> exp.Expression:
    """Replace each view by its own query, recursively: BigQuery bills a view's tables."""
    for table in list(tree.find_all(exp.Table)):
        relation = known.get((table.db.lower(), table.name.lower()))
        if relation is None or relation.materialized != "view" or not relation.compiled_sql:
            continue
        body = _inline_views(sqlglot.parse_one(relation.compiled_sql, read=DIALECT), known)
        alias = table.alias_or_name
        table.replace(exp.Subquery(this=body, alias=exp.TableAlias(this=exp.to_identifier(alias))))
    return tree


def _referenced_columns(tree: exp.Expression) -> dict[Key, frozenset[str]]:
    used: dict[Key, set[str]] = {}
    for scope in traverse_scope(tree):
        for table in scope.tables:
            used.setdefault((table.db.lower(), table.name.lower()), set())
        for column in scope.columns:
            source = _source_of(scope, column.table)
            if isinstance(source, exp.Table):
                key = (source.db.lower(), source.name.lower())
                used.setdefault(key, set()).add(column.name.lower())
    return {key: frozenset(names) for key, names in used.items()}


def _source_of(scope: Any, alias: str) -> Any:
    while scope is not None:  # a correlated column belongs to an enclosing scope
        if alias in scope.sources:
            return scope.sources[alias]
        scope = scope.parent
    return None


def _partition_filter(table: exp.Table, partition_column: str | None) -> str | None:
    """The conditions of the select reading `table` that BigQuery prunes on: on the table's
    partition column only, against constants (no subquery)."""
    select = table.find_ancestor(exp.Select)
    if partition_column is None or select is None:
        return None
    conditions: list[exp.Expression] = []
    where = select.args.get("where")
    if where is not None:
        conditions.extend(where.this.flatten() if isinstance(where.this, exp.And) else [where.this])
    join = table.find_ancestor(exp.Join)
    if join is not None and join.args.get("on") is not None:
        on = join.args["on"]
        conditions.extend(on.flatten() if isinstance(on, exp.And) else [on])
    alias = table.alias_or_name
    kept = []
    for condition in conditions:
        cols = list(condition.find_all(exp.Column))
        if not cols or condition.find(exp.Select) is not None:
            continue
        if all(c.name.lower() == partition_column and c.table in ("", alias) for c in cols):
            bare = condition.copy()
            for column in bare.find_all(exp.Column):
                column.set("table", None)
            kept.append(bare.sql(dialect=DIALECT))
    return " and ".join(f"({condition})" for condition in kept) or None


def rebuilt_cutoffs(
    spine: Iterable[tuple[date, str, date]], lookback_days: int
) -> tuple[tuple[date, ...], tuple[date, ...]]:
    """The cutoffs `cutoffs_to_rebuild()` keeps in the next daily run, from the spine's
    (cutoff_date, split, label_window_end_date): for tables holding the scoring cutoff, those
    from (scoring - lookback - label window) on; for labelled-only tables, from (latest
    labelled cutoff - lookback) on."""
    rows = sorted(spine)
    if not rows:
        return (), ()
    window = (rows[0][2] - rows[0][0]).days
    latest = rows[-1][0]
    labelled = [cutoff for cutoff, split, _ in rows if split != "scoring"]
    bound = latest - timedelta(days=lookback_days + window)
    every = tuple(cutoff for cutoff, _, _ in rows if cutoff >= bound)
    if not labelled:
        return every, ()
    labelled_bound = max(labelled) - timedelta(days=lookback_days)
    return every, tuple(cutoff for cutoff in labelled if cutoff >= labelled_bound)


def logical_bytes(partitions: Mapping[Any, Mapping[str, int]], columns: Iterable[str]) -> int:
    """Logical bytes of `columns` over the given {partition: {column: bytes}}."""
    names = list(columns)
    return sum(sizes.get(name, 0) for sizes in partitions.values() for name in names)


def estimate(
    manifest_path: Path,
    duckdb_path: Path,
    lookback_days: int | None = None,
    usd_per_tib: float = DEFAULT_USD_PER_TIB,
) -> BigQueryBytes:
    """BigQuery bytes of every table and incremental model of the manifest's build, full and
    daily, measured on the DuckDB warehouse (opened read-only). `lookback_days` defaults to the
    project's `incremental_lookback_days`."""
    manifest = json.loads(manifest_path.read_text())
    known = relations(manifest)
    if lookback_days is None:
        lookback_days = int(project_vars()["incremental_lookback_days"])
    with duckdb.connect(str(duckdb_path), read_only=True) as connection:
        columns = _warehouse_columns(connection)
        known = {key: relation for key, relation in known.items() if key in columns}
        plans: list[tuple[Relation, list[TableRead], str]] = []
        for relation in known.values():
            if relation.materialized in BILLED and relation.compiled_sql:
                reads, note = table_reads(relation.compiled_sql, known, columns, relation.parents)
                plans.append((relation, reads, note))
        needed: dict[Key, set[str]] = {}
        for _, reads, _ in plans:
            for read in reads:
                needed.setdefault(read.key, set()).update(read.columns)
        sizes = {
            key: _partition_bytes(
                connection,
                key,
                known[key].partition_column,
                {name: columns[key][name] for name in names if name in columns[key]},
            )
            for key, names in needed.items()
        }
        rows = []
        for relation, reads, note in plans:
            full: list[int] = []
            daily: list[int] = []
            for read in reads:
                parts = sizes[read.key]
                if read.partition_filter:
                    kept = _kept_partitions(connection, read, known[read.key].partition_column)
                    pruned = {part: size for part, size in parts.items() if part in kept}
                    # A table model's filters hold in every build (scoring_candidates reads the
                    # scoring cutoff only); an incremental model's bounds only in a daily run.
                    if relation.materialized == "table":
                        parts = pruned
                full.append(logical_bytes(parts, read.columns))
                daily.append(
                    logical_bytes(pruned if read.partition_filter else parts, read.columns)
                )
            rows.append(
                ModelBytes(
                    relation.name,
                    relation.materialized,
                    full_bytes=_with_minimum(full),
                    daily_bytes=_with_minimum(daily),
                    full_logical=sum(full),
                    daily_logical=sum(daily),
                    note=note,
                )
            )
        spine = connection.execute(
            "select cutoff_date, split, label_window_end_date from int_cutoffs_scheduled"
        ).fetchall()
    every, labelled = rebuilt_cutoffs(spine, lookback_days)
    pruned = sum(
        1
        for relation, reads, _ in plans
        for read in reads
        if relation.materialized == "incremental" and read.partition_filter
    )
    if not pruned:
        log.warning("no partition filter in %s: not an incremental build's manifest", manifest_path)
    rows.sort(key=lambda row: (-row.full_bytes, row.name))
    return BigQueryBytes(tuple(rows), every, labelled, usd_per_tib, pruned)


def _with_minimum(per_table: Iterable[int]) -> int:
    """What one query bills: at least 10 MB per table it reads, and per query."""
    return max(sum(max(size, MIN_BYTES_PER_TABLE) for size in per_table), MIN_BYTES_PER_TABLE)


def _warehouse_columns(connection: duckdb.DuckDBPyConnection) -> dict[Key, dict[str, str]]:
    found: dict[Key, dict[str, str]] = {}
    rows = connection.execute(
        "select table_schema, table_name, column_name, data_type from information_schema.columns"
        " where table_catalog = current_database() order by ordinal_position"
    ).fetchall()
    for schema, table, column, data_type in rows:
        found.setdefault((schema.lower(), table.lower()), {})[column.lower()] = data_type
    return found


def _size_sql(column: str, data_type: str) -> str:
    """DuckDB SQL for the BigQuery logical bytes of one column's non-null values."""
    quoted = exp.to_identifier(column, quoted=True).sql(dialect=DIALECT)
    kind = data_type.upper()
    if kind == "VARCHAR":
        return f"coalesce(sum(strlen({quoted})), 0) + 2 * count({quoted})"
    if kind == "BLOB":
        return f"coalesce(sum(octet_length({quoted})), 0) + 2 * count({quoted})"
    if kind == "BOOLEAN":
        return f"count({quoted})"
    if kind.startswith("DECIMAL") or kind == "INTERVAL":
        return f"16 * count({quoted})"
    if kind.endswith("[]") or kind.startswith(("STRUCT", "MAP", "JSON", "UNION")):
        return f"coalesce(sum(strlen(cast({quoted} as varchar))), 0)"  # nested: text size
    return f"8 * count({quoted})"  # integers, floats, dates, times, timestamps


def _partition_bytes(
    connection: duckdb.DuckDBPyConnection,
    key: Key,
    partition_column: str | None,
    types: Mapping[str, str],
) -> dict[Any, dict[str, int]]:
    """{partition value (None when unpartitioned): {column: logical bytes}}."""
    names = list(types)
    sizes = [_size_sql(name, types[name]) for name in names] or ["0"]
    group = exp.to_identifier(partition_column, quoted=True).sql() if partition_column else "null"
    table = f'"{key[0]}"."{key[1]}"'
    query = f"select {group}, {', '.join(sizes)} from {table} group by all"
    return {
        row[0]: {name: int(size) for name, size in zip(names, row[1:], strict=False)}
        for row in connection.execute(query).fetchall()
    }


def _kept_partitions(
    connection: duckdb.DuckDBPyConnection, read: TableRead, partition_column: str | None
) -> set[Any]:
    column = exp.to_identifier(partition_column, quoted=True).sql()
    table = f'"{read.key[0]}"."{read.key[1]}"'
    query = f"select distinct {column} from {table} where {read.partition_filter}"
    return {row[0] for row in connection.execute(query).fetchall()}


def render_markdown(estimate: BigQueryBytes) -> list[str]:
    """The benchmark report's section: bytes per model, full build against daily run."""
    dates = ", ".join(cutoff.isoformat() for cutoff in estimate.rebuilt_cutoffs) or "none"
    labelled = ", ".join(d.isoformat() for d in estimate.rebuilt_labelled_cutoffs) or "none"
    pruned = (
        f"{estimate.pruned_reads} reads of incremental models are pruned so"
        if estimate.pruned_reads
        else "no read is pruned: the manifest is not an incremental build's"
    )
    lines = [
        "### BigQuery bytes on paper (full build vs daily run)",
        "",
        "What each model's query would bill on BigQuery on demand, computed from the DuckDB "
        "build's tables: the logical bytes of the columns it references (views read through to "
        "their tables) in the partitions it reads, at least 10 MiB per table read. Per non-null "
        "value: INT64, FLOAT64, DATE, TIMESTAMP 8 bytes, BOOL 1, NUMERIC 16, STRING 2 + UTF-8 "
        "length; NULL 0. A full build reads every partition a model's literal filters keep (a "
        "table model reads the same in a daily run); an incremental model reads the partitions "
        "that the "
        "filters on the parent's partition column in the incremental build's compiled SQL keep "
        "(`cutoffs_to_rebuild()`, `incremental_window_start()`; pushed through CTEs and views, "
        f"not across join keys; {pruned}). By the macro's rule on `int_cutoffs_scheduled`, "
        f"the next daily run rebuilds the cutoffs {dates} (tables of labelled cutoffs only: "
        f"{labelled}). Sources declare no partitioning, so the raw events are read in full "
        "every day. Not counted: dbt's merge statements, the bound queries, hooks, data tests; "
        "clustering can only lower these figures.",
        "",
        "| model | materialized | full build | daily run | daily / full "
        "| before minimums, full / daily | note |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for row in estimate.rows:
        ratio = "-" if row.ratio is None else f"{row.ratio:.0%}"
        lines.append(
            f"| `{row.name}` | {row.materialized} | {format_bytes(row.full_bytes)} | "
            f"{format_bytes(row.daily_bytes)} | {ratio} | {format_bytes(row.full_logical)} / "
            f"{format_bytes(row.daily_logical)} | {row.note} |"
        )
    full, daily = estimate.total("full_bytes"), estimate.total("daily_bytes")
    rate = estimate.usd_per_tib
    lines += [
        f"| **total** | | **{format_bytes(full)}** | **{format_bytes(daily)}** | "
        f"**{daily / full:.0%}** | | |"
        if full
        else "| **total** | | - | - | - | | |",
        "",
        f"Before the 10 MiB minimums: {format_bytes(estimate.total('full_logical'))} for a full "
        f"build, {format_bytes(estimate.total('daily_logical'))} for a daily run. At "
        f"${rate:.2f} per TiB: "
        f"{format_usd(estimate_usd(full, rate))} per full build, "
        f"{format_usd(estimate_usd(daily, rate))} per daily run.",
        "",
    ]
    return lines
