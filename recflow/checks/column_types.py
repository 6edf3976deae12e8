"""Types and table layout, with sqlglot: every model's output columns and types resolved from
the sources' YAML columns up through the DAG, then comparisons BigQuery has no signature for and
`partition_by`/`cluster_by` configs that name a missing column or one of the wrong type. Where
sqlglot cannot resolve a statement, the node gets a note, not a failure."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recflow.checks.results import Problem

if TYPE_CHECKING:
    from sqlglot import exp
    from sqlglot.schema import MappingSchema


@dataclass
class ManifestSchema:
    """Output columns and types of every relation, resolved with sqlglot in DAG order."""

    manifest: Mapping[str, Any]
    _schema: MappingSchema = field(init=False)

    def __post_init__(self) -> None:
        from sqlglot.schema import MappingSchema

        self._schema = MappingSchema(dialect="bigquery")
        for source in self.manifest["sources"].values():
            columns = {
                name: column.get("data_type") or "UNKNOWN"
                for name, column in source["columns"].items()
            }
            if columns:
                self._add(source, source["identifier"], columns)
        models = {
            unique_id: node
            for unique_id, node in self.manifest["nodes"].items()
            if node["resource_type"] == "model"
            and node["config"].get("materialized") != "ephemeral"
            and node.get("compiled_code") is not None
        }
        for unique_id in _topological(models, self.manifest["nodes"]):
            node = models[unique_id]
            try:
                columns = _output_columns(node, self._annotated(node["compiled_code"]))
            except Exception:  # sqlglot cannot resolve it; check() notes it on the node
                continue
            self._add(node, node["alias"], columns)

    def _add(self, relation: Mapping[str, Any], table: str, columns: Mapping[str, Any]) -> None:
        from sqlglot import exp

        self._schema.add_table(
            exp.table_(table, db=relation["schema"], catalog=relation["database"], quoted=True),
            dict(columns),
            dialect="bigquery",
        )

    def _annotated(self, sql: str) -> exp.Expression:
        import sqlglot
        from sqlglot.optimizer.annotate_types import annotate_types
        from sqlglot.optimizer.qualify import qualify

        expression = sqlglot.parse_one(sql, read="bigquery")
        qualified = qualify(expression, schema=self._schema, dialect="bigquery")
        return annotate_types(qualified, schema=self._schema, dialect="bigquery")

    def check(
        self, node: Mapping[str, Any], sql: str, path: Path | None
    ) -> tuple[list[Problem], list[str]]:
        """Temporal comparisons BigQuery rejects, and partition/cluster columns of models."""
        try:
            annotated = self._annotated(sql)
        except Exception as error:  # sqlglot cannot resolve it: note, not failure
            return [], [f"types not checked (sqlglot: {type(error).__name__}: {error})"]
        problems = list(_incompatible_comparisons(annotated, path, sql.splitlines()))
        if node["resource_type"] == "model":
            problems.extend(_layout_problems(node, _output_columns(node, annotated)))
        return problems, []


def _output_columns(node: Mapping[str, Any], annotated: exp.Expression) -> dict[str, exp.DataType]:
    """A model's output columns (lower-case) and types: sqlglot's, or, where sqlglot cannot
    tell, the `data_type` the model's YAML declares (its contract)."""
    from sqlglot import exp

    declared = {
        name.lower(): column["data_type"]
        for name, column in node.get("columns", {}).items()
        if column.get("data_type")
    }
    columns: dict[str, exp.DataType] = {}
    for select in annotated.selects:
        name = select.alias_or_name.lower()
        data_type = select.type or exp.DataType.build("UNKNOWN")
        if data_type.this == exp.DataType.Type.UNKNOWN and name in declared:
            data_type = exp.DataType.build(declared[name], dialect="bigquery")
        columns[name] = data_type
    return columns


def _topological(
    nodes: Mapping[str, Mapping[str, Any]], graph: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """`nodes` parents first, following dependencies through `graph` (every manifest node), so
    the tables an ephemeral parent reads come before the model that inlines it."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(unique_id: str) -> None:
        if unique_id in seen or unique_id not in graph:
            return
        seen.add(unique_id)
        for parent in graph[unique_id].get("depends_on", {}).get("nodes", []):
            visit(parent)
        if unique_id in nodes:
            order.append(unique_id)

    for unique_id in nodes:
        visit(unique_id)
    return order


def _bigquery_type_name(data_type: exp.DataType | None) -> str | None:
    """BigQuery's name for a sqlglot type, for the temporal types BigQuery keeps apart."""
    from sqlglot import exp

    if data_type is None:
        return None
    kind = data_type.this
    if kind in (exp.DataType.Type.TIMESTAMPTZ, exp.DataType.Type.TIMESTAMPLTZ):
        return "TIMESTAMP"
    if kind in (exp.DataType.Type.TIMESTAMP, exp.DataType.Type.DATETIME):
        return "DATETIME"
    if kind == exp.DataType.Type.DATE:
        return "DATE"
    return None


def _incompatible_comparisons(
    annotated: exp.Expression, path: Path | None, lines: Sequence[str]
) -> Iterator[Problem]:
    """Comparisons of a TIMESTAMP with a DATETIME or a DATE: BigQuery coerces DATE only to
    DATETIME, so these fail with "No matching signature for operator"."""
    from sqlglot import exp

    comparisons = (exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE, exp.NullSafeEQ)
    for comparison in annotated.find_all(*comparisons, exp.Between):
        if isinstance(comparison, exp.Between):
            pairs = [
                (comparison.this, comparison.args.get("low")),
                (comparison.this, comparison.args.get("high")),
            ]
        else:
            pairs = [(comparison.left, comparison.right)]
        for left, right in pairs:
            if left is None or right is None:
                continue
            types = {_bigquery_type_name(left.type), _bigquery_type_name(right.type)}
            if "TIMESTAMP" in types and types & {"DATETIME", "DATE"}:
                other = (types - {"TIMESTAMP"}).pop()
                line, column = _position(comparison)
                why = " (dbt.dateadd returns a DATETIME on BigQuery)" if other == "DATETIME" else ""
                yield Problem(
                    "types",
                    f"compares a TIMESTAMP with a {other}, which BigQuery rejects{why}; cast "
                    f"one side, e.g. cast(... as timestamp): {comparison.sql('bigquery')}",
                    path,
                    line,
                    column,
                    lines[line - 1].strip() if line and 0 < line <= len(lines) else "",
                )
                break


def _position(expression: exp.Expression) -> tuple[int | None, int | None]:
    for identifier in expression.walk():
        meta = identifier.meta if hasattr(identifier, "meta") else {}
        if "line" in meta:
            return meta["line"], meta.get("col")
    return None, None


def _layout_problems(
    node: Mapping[str, Any], columns: Mapping[str, exp.DataType | None]
) -> Iterator[Problem]:
    """`partition_by` and `cluster_by` must name output columns of a type BigQuery accepts."""
    config = node["config"]
    source = Path(node["original_file_path"])
    raw_lines = node.get("raw_code", "").splitlines()

    def problem(column: str, message: str) -> Problem:
        hit = next((i for i, line in enumerate(raw_lines) if f"'{column}'" in line), None)
        return Problem(
            "physical-design",
            message,
            source,
            hit + 1 if hit is not None else None,
            None,
            raw_lines[hit].strip() if hit is not None else "",
        )

    partition = config.get("partition_by")
    if partition:
        from dbt.adapters.bigquery.relation_configs import PartitionConfig

        try:
            parsed = PartitionConfig.parse(partition)
        except Exception as error:
            yield problem("partition_by", f"invalid partition_by {partition}: {error}")
            return
        # Ingestion-time partitioning uses the _PARTITIONTIME pseudo-column, not a column.
        if parsed is not None and not parsed.time_ingestion_partitioning:
            field_name = parsed.field.lower()
            if field_name not in columns:
                yield problem(
                    parsed.field,
                    f"partition_by field `{parsed.field}` is not a column of the model "
                    f"(columns: {', '.join(columns)})",
                )
            else:
                actual = _bigquery_type_name(columns[field_name])
                expected = {"date": "DATE", "timestamp": "TIMESTAMP", "datetime": "DATETIME"}.get(
                    parsed.data_type.lower()
                )
                if actual and expected and actual != expected:
                    yield problem(
                        parsed.field,
                        f"partition_by declares `{parsed.field}` as {expected} but the model "
                        f"returns a {actual}",
                    )
    cluster_by = config.get("cluster_by") or []
    if isinstance(cluster_by, str):
        cluster_by = [cluster_by]
    if len(cluster_by) > 4:
        yield problem(cluster_by[4], "BigQuery clusters on at most four columns")
    from sqlglot import exp

    unclusterable = {
        exp.DataType.Type.FLOAT,
        exp.DataType.Type.DOUBLE,
        exp.DataType.Type.ARRAY,
        exp.DataType.Type.STRUCT,
        exp.DataType.Type.JSON,
    }
    for column in cluster_by:
        if column.lower() not in columns:
            yield problem(column, f"cluster_by column `{column}` is not a column of the model")
        elif (data_type := columns[column.lower()]) is not None and data_type.this in unclusterable:
            yield problem(
                column,
                f"cluster_by column `{column}` is a {data_type.sql('bigquery')}, which BigQuery "
                "cannot cluster on",
            )
