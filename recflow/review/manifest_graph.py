"""The part of a dbt `manifest.json` the review reads, as a small immutable graph.

Only models and sources are nodes: tests, analyses and hooks never materialise anything a full
build reads, so they take no part in scan counts or structure rules. Everything here is a pure
function of the manifest dict except `load_manifest`, the one place that reads a file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Materialisations whose result is stored: reading them reads the stored relation. Views and
# ephemeral models are re-evaluated by every reader, so a read passes through them.
STORED_MATERIALIZATIONS = frozenset({"table", "incremental", "snapshot", "seed"})
ACKNOWLEDGEMENT_META_KEY = "review_acknowledged"


class ManifestError(ValueError):
    """A manifest file is missing, unreadable or not a dbt manifest."""


@dataclass(frozen=True)
class Node:
    """One model or source: what it is, where it lives, what it reads."""

    unique_id: str
    name: str
    kind: str  # "model" or "source"
    materialized: str  # "source" for sources
    path: str  # original_file_path, relative to the dbt project
    parents: tuple[str, ...]  # direct model/source parents, in manifest order
    relation_name: str | None
    raw_code: str
    compiled_code: str | None
    checksum: str
    config_fingerprint: str  # JSON of the model's config, to notice config-only changes
    docs_fingerprint: str  # JSON of description and columns, to notice docs-only changes
    acknowledgements: tuple[tuple[str, str], ...]  # (rule_id, reason) from config meta

    @property
    def is_stored(self) -> bool:
        """True for sources and stored models: a reader reads the stored relation."""
        return self.kind == "source" or self.materialized in STORED_MATERIALIZATIONS

    def acknowledged(self, rule_id: str) -> str | None:
        """The reason this model gives for accepting findings of `rule_id`, if any."""
        return dict(self.acknowledgements).get(rule_id)


@dataclass(frozen=True)
class ProjectGraph:
    """Models and sources of one manifest, with parent and child edges between them."""

    nodes: Mapping[str, Node]
    children: Mapping[str, tuple[str, ...]]

    def models(self) -> Iterator[Node]:
        return (node for node in self.nodes.values() if node.kind == "model")

    def model_children(self, unique_id: str) -> tuple[str, ...]:
        return tuple(c for c in self.children.get(unique_id, ()) if self.nodes[c].kind == "model")

    def descendants(self, unique_id: str) -> frozenset[str]:
        """Every model downstream of `unique_id` (not itself)."""
        seen: set[str] = set()
        stack = list(self.model_children(unique_id))
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self.model_children(current))
        return frozenset(seen)


def load_manifest(path: Path) -> dict[str, Any]:
    """Read a manifest.json; raise ManifestError with the path when it is not one."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ManifestError(f"cannot read manifest {path}: {error}") from error
    if not isinstance(manifest, dict) or "nodes" not in manifest or "sources" not in manifest:
        raise ManifestError(f"{path} is not a dbt manifest (no 'nodes' and 'sources')")
    return manifest


def build_graph(manifest: Mapping[str, Any]) -> ProjectGraph:
    """The enabled models and sources of `manifest` and the edges between them."""
    raw_nodes = {
        uid: node for uid, node in manifest["nodes"].items() if node.get("resource_type") == "model"
    }
    raw_nodes.update(manifest["sources"])
    known = frozenset(raw_nodes)
    nodes = {uid: _node(uid, raw, known) for uid, raw in raw_nodes.items()}
    children: dict[str, list[str]] = {uid: [] for uid in nodes}
    for node in nodes.values():
        for parent in node.parents:
            children[parent].append(node.unique_id)
    return ProjectGraph(
        nodes=nodes, children={uid: tuple(sorted(kids)) for uid, kids in children.items()}
    )


def _node(unique_id: str, raw: Mapping[str, Any], known: frozenset[str]) -> Node:
    is_source = raw.get("resource_type") == "source"
    config = raw.get("config") or {}
    depends_on = (raw.get("depends_on") or {}).get("nodes") or []
    return Node(
        unique_id=unique_id,
        name=f"{raw['source_name']}.{raw['name']}" if is_source else raw["name"],
        kind="source" if is_source else "model",
        materialized="source" if is_source else str(config.get("materialized", "view")),
        path=raw.get("original_file_path", ""),
        parents=tuple(dict.fromkeys(p for p in depends_on if p in known)),
        relation_name=raw.get("relation_name"),
        raw_code=raw.get("raw_code", ""),
        compiled_code=raw.get("compiled_code"),
        checksum=(raw.get("checksum") or {}).get("checksum", ""),
        config_fingerprint=json.dumps(config, sort_keys=True, default=str),
        docs_fingerprint=json.dumps(
            {"description": raw.get("description", ""), "columns": raw.get("columns", {})},
            sort_keys=True,
            default=str,
        ),
        acknowledgements=_acknowledgements(raw),
    )


def _acknowledgements(raw: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """`meta.review_acknowledged` ({rule_id: reason}) from the model's config or its YAML."""
    merged: dict[str, str] = {}
    for meta in ((raw.get("meta") or {}), ((raw.get("config") or {}).get("meta") or {})):
        entries = meta.get(ACKNOWLEDGEMENT_META_KEY) or {}
        if isinstance(entries, Mapping):
            merged.update({str(rule): str(reason) for rule, reason in entries.items()})
    return tuple(sorted(merged.items()))
