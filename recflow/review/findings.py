"""Findings every check returns, the review's configuration, and how a finding's status is set.

A check produces `Finding`s for one project graph. The report runs each check on the base and
on the pull request; `resolve` then decides each pull-request finding's status: `existing` when
the base has the same finding (same `key`), `ignored` by `dbt/review.yml`, `acknowledged` when
one of its subject models gives a reason in `config.meta.review_acknowledged`, else `flagged`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from recflow.review.bigquery_cost import DEFAULT_USD_PER_TIB
from recflow.review.manifest_graph import ProjectGraph

RULE_IDS = (
    "raw_scan_added",
    "table_scans_increased",
    "duplicated_logic",
    "source_read_by_many_models",
    "source_joined_with_models",
    "rejoined_upstream_concept",
    "view_chain_too_deep",
    "view_with_many_children",
    "intermediate_reads_mart",
)
LINT_RULE_PREFIX = "sqlfluff:"  # sqlfluff findings: `sqlfluff:<code>`, e.g. sqlfluff:CP01
STATUSES = ("flagged", "acknowledged", "ignored", "existing")


class ReviewConfigError(ValueError):
    """dbt/review.yml is malformed."""


@dataclass(frozen=True)
class Location:
    """A place in the dbt project: file relative to the project directory, 1-based line."""

    path: str
    line: int | None = None

    def __str__(self) -> str:
        return self.path if self.line is None else f"{self.path}:{self.line}"


@dataclass(frozen=True)
class Finding:
    """One rule's finding. `key` identifies it across base and pull request."""

    rule: str
    key: str
    message: str
    subjects: tuple[str, ...]  # unique ids of the models it concerns (acknowledgement lookup)
    locations: tuple[Location, ...] = ()
    suggestion: str = ""
    status: str = "flagged"
    reason: str | None = None  # acknowledgement or ignore reason


@dataclass(frozen=True)
class ReviewConfig:
    """Thresholds and ignores from dbt/review.yml (every key optional)."""

    max_view_chain_depth: int = 3
    max_view_children: int = 3
    table_scan_increase: int = 2
    duplicate_min_nodes: int = 12
    ignored_rules: frozenset[str] = field(default_factory=frozenset)
    ignored_models: tuple[str, ...] = ()  # fnmatch patterns on model names
    usd_per_tib: float = DEFAULT_USD_PER_TIB  # on-demand price for `review --bigquery`


def load_config(path: Path | None) -> ReviewConfig:
    """Read dbt/review.yml; a missing file means the defaults."""
    if path is None or not path.exists():
        return ReviewConfig()
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ReviewConfigError(f"cannot read {path}: {error}") from error
    return parse_config(document, origin=str(path))


def parse_config(document: Mapping[str, Any], origin: str = "review.yml") -> ReviewConfig:
    """A ReviewConfig from the parsed YAML; unknown keys and rule ids are errors (typos)."""
    if not isinstance(document, Mapping):
        raise ReviewConfigError(f"{origin}: expected a mapping at the top level")
    unknown = set(document) - {"thresholds", "ignore", "bigquery"}
    thresholds = document.get("thresholds") or {}
    ignore = document.get("ignore") or {}
    bigquery = document.get("bigquery") or {}
    defaults = ReviewConfig()
    threshold_names = {
        "max_view_chain_depth",
        "max_view_children",
        "table_scan_increase",
        "duplicate_min_nodes",
    }
    unknown |= {f"thresholds.{k}" for k in set(thresholds) - threshold_names}
    unknown |= {f"ignore.{k}" for k in set(ignore) - {"rules", "models"}}
    unknown |= {f"bigquery.{k}" for k in set(bigquery) - {"usd_per_tib"}}
    rules = frozenset(str(rule) for rule in ignore.get("rules") or ())
    unknown |= {
        f"ignore.rules: {rule}"
        for rule in rules - set(RULE_IDS)
        if not rule.startswith(LINT_RULE_PREFIX)
    }
    if unknown:
        raise ReviewConfigError(f"{origin}: unknown keys or rules: {', '.join(sorted(unknown))}")
    values = {name: thresholds.get(name, getattr(defaults, name)) for name in threshold_names}
    if not all(isinstance(value, int) and value >= 0 for value in values.values()):
        raise ReviewConfigError(f"{origin}: thresholds must be non-negative integers")
    usd_per_tib = bigquery.get("usd_per_tib", defaults.usd_per_tib)
    if isinstance(usd_per_tib, bool) or not isinstance(usd_per_tib, int | float) or usd_per_tib < 0:
        raise ReviewConfigError(f"{origin}: bigquery.usd_per_tib must be a non-negative number")
    return ReviewConfig(
        **values,
        usd_per_tib=float(usd_per_tib),
        ignored_rules=rules,
        ignored_models=tuple(str(pattern) for pattern in ignore.get("models") or ()),
    )


def resolve(
    head: Iterable[Finding],
    base_keys: frozenset[str],
    graph: ProjectGraph,
    config: ReviewConfig,
) -> tuple[Finding, ...]:
    """Set each pull-request finding's status and reason (see the module docstring)."""
    return tuple(_resolve_one(finding, base_keys, graph, config) for finding in head)


def _resolve_one(
    finding: Finding, base_keys: frozenset[str], graph: ProjectGraph, config: ReviewConfig
) -> Finding:
    if finding.key in base_keys:
        return replace(finding, status="existing", reason=None)
    if finding.rule in config.ignored_rules:
        return replace(finding, status="ignored", reason="rule ignored in review.yml")
    names = [graph.nodes[s].name for s in finding.subjects if s in graph.nodes]
    for name in names:
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in config.ignored_models):
            return replace(finding, status="ignored", reason=f"{name} ignored in review.yml")
    for subject in finding.subjects:
        node = graph.nodes.get(subject)
        reason = node.acknowledged(finding.rule) if node else None
        if reason:
            return replace(finding, status="acknowledged", reason=f"{node.name}: {reason}")
    return replace(finding, status="flagged", reason=None)
