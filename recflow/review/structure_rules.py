"""DAG structure rules after dbt-project-evaluator, over models and sources only.

Each rule is a pure function of one project graph returning findings with a stable `key`, so
the report can tell findings a pull request introduces from those the base already had.
Children and parents count models only: tests and analyses read models without shaping the DAG.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from recflow.review.findings import Finding, Location, ReviewConfig
from recflow.review.manifest_graph import ProjectGraph

Rule = Callable[[ProjectGraph, ReviewConfig], tuple[Finding, ...]]


def source_read_by_many_models(graph: ProjectGraph, config: ReviewConfig) -> tuple[Finding, ...]:
    """A source read directly by more than one model: each reader re-types the raw data its
    own way; one base/staging model per source keeps that in one place."""
    findings = []
    for node in graph.nodes.values():
        readers = graph.model_children(node.unique_id)
        if node.kind == "source" and len(readers) > 1:
            names = ", ".join(f"`{graph.nodes[r].name}`" for r in readers)
            findings.append(
                Finding(
                    rule="source_read_by_many_models",
                    key=f"source_read_by_many_models:{node.unique_id}",
                    message=f"source `{node.name}` is read directly by {len(readers)} models: "
                    f"{names}",
                    subjects=readers,
                    locations=tuple(Location(graph.nodes[r].path) for r in readers),
                    suggestion="read the source in one staging model and ref that instead",
                )
            )
    return tuple(findings)


def source_joined_with_models(graph: ProjectGraph, config: ReviewConfig) -> tuple[Finding, ...]:
    """A model reading sources and models together: raw and cleaned data meet in one query,
    bypassing the staging layer's typing and quarantine."""
    findings = []
    for node in graph.models():
        kinds = {graph.nodes[p].kind for p in node.parents}
        if kinds == {"source", "model"}:
            sources = [graph.nodes[p].name for p in node.parents if graph.nodes[p].kind == "source"]
            findings.append(
                Finding(
                    rule="source_joined_with_models",
                    key=f"source_joined_with_models:{node.unique_id}",
                    message=f"`{node.name}` reads source(s) {', '.join(sources)} directly "
                    "alongside models",
                    subjects=(node.unique_id,),
                    locations=(Location(node.path),),
                    suggestion="ref the staging model of the source instead",
                )
            )
    return tuple(findings)


def rejoined_upstream_concept(graph: ProjectGraph, config: ReviewConfig) -> tuple[Finding, ...]:
    """A → B → C and A → C where C is B's only child (dbt-project-evaluator's definition): B is
    probably a fragment of C's logic that could be a CTE in C, or C should read B only."""
    findings = []
    for child in graph.models():
        parents = set(child.parents)
        for middle in child.parents:
            if graph.model_children(middle) != (child.unique_id,):
                continue
            for upstream in graph.nodes[middle].parents:
                if upstream in parents:
                    a, b, c = (graph.nodes[u].name for u in (upstream, middle, child.unique_id))
                    findings.append(
                        Finding(
                            rule="rejoined_upstream_concept",
                            key=f"rejoined_upstream_concept:{upstream}>{middle}>{child.unique_id}",
                            message=f"`{c}` reads `{a}` directly and through `{b}`, whose only "
                            f"child it is",
                            subjects=(child.unique_id, middle),
                            locations=(Location(child.path), Location(graph.nodes[middle].path)),
                            suggestion=f"fold `{b}` into `{c}` as a CTE, or read `{a}` only "
                            f"through `{b}`",
                        )
                    )
    return tuple(findings)


def view_chain_too_deep(graph: ProjectGraph, config: ReviewConfig) -> tuple[Finding, ...]:
    """A chain of more than `max_view_chain_depth` consecutive views/ephemeral models: each
    reader re-runs the whole chain, and the compiled query grows with every link."""

    @cache
    def depth(uid: str) -> int:
        node = graph.nodes[uid]
        if node.kind != "model" or node.is_stored:
            return 0
        return 1 + max((depth(p) for p in node.parents), default=0)

    findings = []
    for node in graph.models():
        chain = depth(node.unique_id)
        # Report the end of each chain only: a non-stored node none of whose children extends it.
        extends = any(not graph.nodes[c].is_stored for c in graph.model_children(node.unique_id))
        if chain > config.max_view_chain_depth and not extends:
            findings.append(
                Finding(
                    rule="view_chain_too_deep",
                    key=f"view_chain_too_deep:{node.unique_id}",
                    message=f"`{node.name}` ends a chain of {chain} views/ephemeral models "
                    f"(threshold {config.max_view_chain_depth})",
                    subjects=(node.unique_id,),
                    locations=(Location(node.path),),
                    suggestion="materialise a model in the middle of the chain as a table",
                )
            )
    return tuple(findings)


def view_with_many_children(graph: ProjectGraph, config: ReviewConfig) -> tuple[Finding, ...]:
    """A view or ephemeral model read by more than `max_view_children` models: each reader
    recomputes it, so a table is usually cheaper."""
    findings = []
    for node in graph.models():
        children = graph.model_children(node.unique_id)
        if not node.is_stored and len(children) > config.max_view_children:
            findings.append(
                Finding(
                    rule="view_with_many_children",
                    key=f"view_with_many_children:{node.unique_id}",
                    message=f"`{node.name}` ({node.materialized}) is read by {len(children)} "
                    f"models (threshold {config.max_view_children})",
                    subjects=(node.unique_id,),
                    locations=(Location(node.path),),
                    suggestion="materialise it as a table (or incremental model)",
                )
            )
    return tuple(findings)


RULES: tuple[Rule, ...] = (
    source_read_by_many_models,
    source_joined_with_models,
    rejoined_upstream_concept,
    view_chain_too_deep,
    view_with_many_children,
)


def structure_findings(graph: ProjectGraph, config: ReviewConfig) -> tuple[Finding, ...]:
    """All structure rules' findings for one graph, in rule order."""
    return tuple(finding for rule in RULES for finding in rule(graph, config))
