"""DAG structure rules (after dbt-project-evaluator), checked by dbt-bouncer.

Each review rule is one or more dbt-bouncer checks with thresholds from dbt/review.yml; their
failures become findings with a stable `key` (rule and resource), so the report can tell
findings a pull request introduces from those the base already had. dbt-bouncer counts models
only as children and parents, as the review does: tests and analyses do not shape the DAG.
Rules dbt-bouncer cannot express (scans, cost, duplicated logic) live in their own modules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from recflow.review.bouncer import run_checks
from recflow.review.findings import Finding, Location, ReviewConfig
from recflow.review.manifest_graph import ProjectGraph


@dataclass(frozen=True)
class StructureRule:
    """A review rule id, the dbt-bouncer check that finds it, and what to do about it."""

    rule: str
    check: str
    suggestion: str


RULES: tuple[StructureRule, ...] = (
    StructureRule(
        "source_read_by_many_models",
        "check_source_used_by_only_one_model",
        "read the source in one staging model and ref that instead",
    ),
    StructureRule(
        "source_joined_with_models",
        "check_model_does_not_directly_join_to_source",
        "ref the staging model of the source instead",
    ),
    StructureRule(
        "rejoined_upstream_concept",
        "check_model_does_not_rejoin_upstream_concepts",
        "fold the parent into this model as a CTE, or read its upstream only through it",
    ),
    StructureRule(
        "view_chain_too_deep",
        "check_model_max_chained_views",
        "materialise a model in the middle of the chain as a table",
    ),
    StructureRule(
        "view_with_many_children",
        "check_model_materialization_by_fanout",
        "materialise it as a table (or incremental model)",
    ),
    StructureRule(
        "intermediate_reads_mart",
        "check_lineage_permitted_upstream_models",
        "compute it in an intermediate model both read; marts are the pipeline's outputs",
    ),
)
_BY_CHECK = {rule.check: rule for rule in RULES}
_NOT_STORED = ("view", "ephemeral")


def bouncer_checks(config: ReviewConfig) -> list[dict[str, Any]]:
    """The dbt-bouncer `manifest_checks` entries of the rules, with the review's thresholds.

    A chain of more than `max_view_chain_depth` views/ephemeral models is a view or ephemeral
    model with that many of them upstream in a row (dbt-bouncer takes 1 at least); a view read
    by more than `max_view_children` models has at least one more child than that."""
    chain = max(config.max_view_chain_depth, 1)
    return [
        {"name": "check_source_used_by_only_one_model"},
        {"name": "check_model_does_not_directly_join_to_source"},
        {"name": "check_model_does_not_rejoin_upstream_concepts"},
        *(
            {
                "name": "check_model_max_chained_views",
                "materialization": materialized,
                "materializations_to_include": list(_NOT_STORED),
                "max_chained_views": chain,
            }
            for materialized in _NOT_STORED
        ),
        {
            "name": "check_model_materialization_by_fanout",
            "min_downstream_models": config.max_view_children + 1,
            "materializations": ["table", "incremental", "snapshot", "seed"],
        },
        # The DAG runs forwards: what an intermediate model reads is staging or intermediate.
        {
            "name": "check_lineage_permitted_upstream_models",
            "include": "^models/intermediate/",
            "upstream_path_pattern": "^models/(staging|intermediate)/",
        },
    ]


def findings_from_results(
    results: Iterable[Mapping[str, Any]], graph: ProjectGraph
) -> tuple[Finding, ...]:
    """dbt-bouncer's failed results as findings, in rule order, one per rule and resource.

    A source's finding concerns the models reading it (they can acknowledge it)."""
    found: dict[str, Finding] = {}
    for row in results:
        rule = _BY_CHECK.get(str(row["check_run_id"]).split(":", 1)[0])
        uid = row.get("unique_id")
        if rule is None or uid not in graph.nodes:
            continue
        node = graph.nodes[uid]
        message = str(row.get("failure_message") or rule.check)
        subjects: tuple[str, ...] = (uid,)
        if node.kind == "source":
            subjects = graph.model_children(uid)
            names = ", ".join(f"`{graph.nodes[r].name}`" for r in subjects)
            message = f"{message} Read by: {names}."
        key = f"{rule.rule}:{uid}"
        found.setdefault(
            key,
            Finding(
                rule=rule.rule,
                key=key,
                message=f"{message} (dbt-bouncer `{rule.check}`)",
                subjects=subjects,
                locations=tuple(Location(graph.nodes[s].path) for s in subjects),
                suggestion=rule.suggestion,
            ),
        )
    order = {rule.rule: i for i, rule in enumerate(RULES)}
    return tuple(sorted(found.values(), key=lambda f: (order[f.rule], f.key)))


def structure_findings(
    manifest: Mapping[str, Any], graph: ProjectGraph, config: ReviewConfig
) -> tuple[Finding, ...]:
    """All structure rules' findings for one manifest (`graph` is built from it)."""
    return findings_from_results(run_checks(manifest, bouncer_checks(config)), graph)
