"""Measured cost of each changed model on the DuckDB CI build, base against pull request.

Inputs per side: the build's `run_results.json` and, optionally, its DuckDB file.

- **Wall time**: `execution_time` of the model's result in `run_results.json` (seconds).
- **Rows produced**: `select count(*)` of the built relation in the DuckDB file (opened
  read-only); for an ephemeral model, or without a DuckDB file, `adapter_response.rows_affected`
  when dbt-duckdb reports a non-negative value (it reports -1 for DDL), else unknown.
- **Rows and bytes scanned**: the model's compiled SELECT (from the manifest) is replayed once
  on the built DuckDB file, read-only, with `enable_profiling='json'`. DuckDB writes one JSON
  profile per statement, so profiling the build itself would need a per-model hook to set
  `profiling_output` and the statements dbt runs after the model (renames, drops) overwrite it;
  the replay reads the same parent relations the build read. Fields used from DuckDB 2.0's JSON
  profile: `query.total_rows_scanned` (rows read by all scan operators) and, for bytes, the
  sum of `intermediate_size_bytes` over operators of `type` `TABLE_SCAN` (the in-memory size of
  what the scans emitted; DuckDB 2.0's `io.total_bytes_read` counts only disk reads, which are
  0 once the file is in the buffer pool, so it is not used).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from recflow.review.manifest_graph import ManifestError, ProjectGraph

COST_METRICS = ("seconds", "rows_produced", "rows_scanned", "bytes_scanned")


@dataclass(frozen=True)
class ModelCost:
    """One model's measured cost on one build; None where it was not measured."""

    seconds: float | None = None
    rows_produced: int | None = None
    rows_scanned: int | None = None
    bytes_scanned: int | None = None

    def value(self, metric: str) -> float | int | None:
        return getattr(self, metric)


@dataclass(frozen=True)
class CostRow:
    """A changed model's cost on the base build and on the pull request's build."""

    name: str
    base: ModelCost | None  # None: not built on that side (new or removed model)
    head: ModelCost | None

    def delta(self, metric: str) -> tuple[float | int | None, float | None]:
        """(absolute, relative) change head - base; relative is None when base is 0 or
        unknown."""
        before = self.base.value(metric) if self.base else None
        after = self.head.value(metric) if self.head else None
        if before is None or after is None:
            return None, None
        absolute = after - before
        return absolute, (absolute / before if before else None)


def load_run_results(path: Path) -> dict[str, Any]:
    """Read a dbt run_results.json; raise ManifestError with the path when it is not one."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ManifestError(f"cannot read run results {path}: {error}") from error
    if not isinstance(document, dict) or not isinstance(document.get("results"), list):
        raise ManifestError(f"{path} is not a dbt run_results.json (no results)")
    return document


def measure(
    graph: ProjectGraph,
    unique_ids: list[str],
    run_results: Mapping[str, Any],
    warehouse: Path | None,
) -> dict[str, ModelCost]:
    """Cost of each of `unique_ids` that the build ran (see the module docstring)."""
    results = {r.get("unique_id"): r for r in run_results.get("results", [])}
    costs: dict[str, ModelCost] = {}
    connection = _open(warehouse)
    try:
        for uid in unique_ids:
            result, node = results.get(uid), graph.nodes.get(uid)
            if result is None or node is None or result.get("status") != "success":
                continue
            rows_affected = (result.get("adapter_response") or {}).get("rows_affected")
            rows_produced = rows_affected if isinstance(rows_affected, int) else None
            if rows_produced is not None and rows_produced < 0:
                rows_produced = None
            rows_scanned = bytes_scanned = None
            if connection is not None:
                if node.relation_name and node.materialized != "ephemeral":
                    rows_produced = _count(connection, node.relation_name)
                if node.compiled_code:
                    rows_scanned, bytes_scanned = _profile(connection, node.compiled_code)
            costs[uid] = ModelCost(
                seconds=float(result.get("execution_time") or 0.0),
                rows_produced=rows_produced,
                rows_scanned=rows_scanned,
                bytes_scanned=bytes_scanned,
            )
    finally:
        if connection is not None:
            connection.close()
    return costs


def _open(warehouse: Path | None) -> duckdb.DuckDBPyConnection | None:
    if warehouse is None:
        return None
    if not warehouse.is_file():
        raise ManifestError(f"DuckDB file {warehouse} does not exist")
    try:
        connection = duckdb.connect(str(warehouse), read_only=True)
    except duckdb.Error as error:
        raise ManifestError(f"cannot open DuckDB file {warehouse}: {error}") from error
    # As the build's profile; needs the icu extension, which some installs lack.
    with contextlib.suppress(duckdb.Error):
        connection.execute("set TimeZone = 'UTC'")
    return connection


def _count(connection: duckdb.DuckDBPyConnection, relation: str) -> int | None:
    try:
        row = connection.execute(f"select count(*) from {relation}").fetchone()
    except duckdb.Error:
        return None
    return int(row[0]) if row else None


def _profile(connection: duckdb.DuckDBPyConnection, sql: str) -> tuple[int | None, int | None]:
    """(rows scanned, bytes scanned) of one replay of `sql` with JSON profiling on."""
    with tempfile.TemporaryDirectory() as directory:
        output = Path(directory) / "profile.json"
        try:
            connection.execute("pragma enable_profiling='json'")
            connection.execute(f"set profiling_output='{output}'")
            connection.execute(sql).fetchall()
        except duckdb.Error:
            return None, None
        finally:
            connection.execute("pragma disable_profiling")
        if not output.exists():
            return None, None
        profile = json.loads(output.read_text())
    return profile_scans(profile)


def profile_scans(profile: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """(`query.total_rows_scanned`, sum of TABLE_SCAN `intermediate_size_bytes`) of one
    DuckDB 2.0 JSON profile."""
    rows = (profile.get("query") or {}).get("total_rows_scanned")
    operators = _operators(profile.get("operator") or [])
    scans = [op for op in operators if op.get("type") == "TABLE_SCAN"]
    scanned_bytes = sum(int(op.get("intermediate_size_bytes") or 0) for op in scans)
    return (int(rows) if rows is not None else None), scanned_bytes


def _operators(operators: list[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    for operator in operators:
        yield operator
        yield from _operators(operator.get("children") or [])


def compare_costs(
    base: ProjectGraph,
    head: ProjectGraph,
    unique_ids: list[str],
    base_costs: Mapping[str, ModelCost],
    head_costs: Mapping[str, ModelCost],
) -> tuple[CostRow, ...]:
    """One row per changed model measured on at least one side, in the given order."""
    rows = []
    for uid in unique_ids:
        if uid not in base_costs and uid not in head_costs:
            continue
        node = head.nodes.get(uid) or base.nodes[uid]
        rows.append(CostRow(name=node.name, base=base_costs.get(uid), head=head_costs.get(uid)))
    return tuple(rows)


def format_value(metric: str, value: float | int | None) -> str:
    if value is None:
        return "-"
    if metric == "seconds":
        return f"{value:.2f} s"
    return f"{int(value):,}"


def format_delta(metric: str, absolute: float | int | None, relative: float | None) -> str:
    if absolute is None:
        return "-"
    sign = "+" if absolute >= 0 else "-"
    text = sign + format_value(metric, abs(absolute))
    return text + (f" ({relative:+.0%})" if relative is not None else "")
