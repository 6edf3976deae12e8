"""Scans per stored relation in a full build, resolved through views and ephemeral models.

Definition. Only stored models (table, incremental, snapshot, seed) run a query in a full build
that reads data; views and ephemeral models are re-evaluated inside each query that reads them,
and tests, analyses and leaf views are left out. A stored model *scans* a stored relation (a
raw source or another stored model) once per path from the model to that relation whose
intermediate nodes are all views or ephemeral models. So a view read by three tables is three
scans of whatever the view reads, and a model that reads a source directly scans it once.

The count per relation is a proxy for bytes read: multiplying the reads of the raw event log or
of a large intermediate table is what a reviewer should notice when a model stops being a table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from recflow.review.findings import Finding, Location, ReviewConfig
from recflow.review.manifest_graph import ProjectGraph

ScanPath = tuple[str, ...]  # unique ids: reader, views/ephemerals passed through..., relation


@dataclass(frozen=True)
class RelationScans:
    """Scans of one stored relation before and after the change, with the paths that differ."""

    relation: str
    name: str
    kind: str  # "source" or "model"
    before: int
    after: int
    added_paths: tuple[ScanPath, ...]
    removed_paths: tuple[ScanPath, ...]

    @property
    def delta(self) -> int:
        return self.after - self.before


def scan_paths(graph: ProjectGraph) -> Counter[ScanPath]:
    """Every scan path of a full build of `graph`, with its multiplicity."""
    paths: Counter[ScanPath] = Counter()
    for reader in graph.models():
        if reader.is_stored:
            for parent in reader.parents:
                paths.update(_paths_through(graph, parent, (reader.unique_id,)))
    return paths


def _paths_through(graph: ProjectGraph, node_id: str, prefix: ScanPath) -> list[ScanPath]:
    node = graph.nodes[node_id]
    path = (*prefix, node_id)
    if node.is_stored:
        return [path]
    return [p for parent in node.parents for p in _paths_through(graph, parent, path)]


def compare_scans(base: ProjectGraph, head: ProjectGraph) -> tuple[RelationScans, ...]:
    """Scans per stored relation in base and head, sorted sources first, then by name."""
    before, after = scan_paths(base), scan_paths(head)
    totals_before = Counter[str]()
    totals_after = Counter[str]()
    for path, count in before.items():
        totals_before[path[-1]] += count
    for path, count in after.items():
        totals_after[path[-1]] += count
    relations = set(totals_before) | set(totals_after)
    rows = []
    for relation in relations:
        node = head.nodes.get(relation) or base.nodes[relation]
        mine_before = Counter({p: c for p, c in before.items() if p[-1] == relation})
        mine_after = Counter({p: c for p, c in after.items() if p[-1] == relation})
        rows.append(
            RelationScans(
                relation=relation,
                name=node.name,
                kind=node.kind,
                before=totals_before[relation],
                after=totals_after[relation],
                added_paths=tuple(sorted((mine_after - mine_before).elements())),
                removed_paths=tuple(sorted((mine_before - mine_after).elements())),
            )
        )
    return tuple(sorted(rows, key=lambda row: (row.kind != "source", row.name)))


def scan_findings(
    rows: tuple[RelationScans, ...], head: ProjectGraph, config: ReviewConfig
) -> tuple[Finding, ...]:
    """`raw_scan_added` for any rise in scans of a source; `table_scans_increased` when a
    stored model's scans rise by at least `table_scan_increase` (new models reading a table
    once are normal; a table turned into a view multiplies its inputs' reads)."""
    findings = []
    for row in rows:
        is_source = row.kind == "source"
        if row.delta <= 0 or (not is_source and row.delta < config.table_scan_increase):
            continue
        subjects = _models_on(row.added_paths, head)
        findings.append(
            Finding(
                rule="raw_scan_added" if is_source else "table_scans_increased",
                key=f"scans:{row.relation}",
                message=(
                    f"full-build scans of {row.kind} `{row.name}` rise from {row.before} to "
                    f"{row.after}; new: {'; '.join(render_path(p, head) for p in row.added_paths)}"
                ),
                subjects=subjects,
                locations=tuple(Location(head.nodes[s].path) for s in subjects),
                suggestion=(
                    "read the staging model (or a stored intermediate model) instead of the raw "
                    "source"
                    if is_source
                    else "keep the model a table, or read a stored model instead of the views"
                ),
            )
        )
    return tuple(findings)


def _models_on(paths: tuple[ScanPath, ...], graph: ProjectGraph) -> tuple[str, ...]:
    """Models on the given paths, readers first (the scanned relation itself excluded)."""
    ordered = dict.fromkeys(uid for path in paths for uid in path[:-1])
    return tuple(uid for uid in ordered if graph.nodes[uid].kind == "model")


def render_path(path: ScanPath, graph: ProjectGraph) -> str:
    """`reader → view (view) → relation`, with each pass-through node's materialisation."""
    names = [graph.nodes[path[0]].name]
    for uid in path[1:-1]:
        node = graph.nodes[uid]
        names.append(f"{node.name} ({node.materialized})")
    names.append(graph.nodes[path[-1]].name)
    return " → ".join(names)


def totals(rows: tuple[RelationScans, ...]) -> Mapping[str, tuple[int, int]]:
    """{relation name: (before, after)}: the compact view tests and the JSON use."""
    return {row.name: (row.before, row.after) for row in rows}
