"""The review of a pull request's dbt project against its base: built, then rendered.

`build_review` is a pure function of two manifest dicts and the configuration; `to_json` and
`render_markdown` render the same `Review`, so every flag in the JSON is in the Markdown.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from recflow.review.bigquery_cost import (
    BigQueryCost,
    DryRun,
    estimate_usd,
    format_bytes,
    format_usd,
)
from recflow.review.cost import COST_METRICS, CostRow, format_delta, format_value
from recflow.review.dry_run_gate import GateVerdict
from recflow.review.duplicate_logic import ParseProblem, duplicate_findings
from recflow.review.findings import Finding, ReviewConfig, resolve
from recflow.review.manifest_graph import ProjectGraph, build_graph
from recflow.review.scans import RelationScans, compare_scans, render_path, scan_findings
from recflow.review.structure_rules import structure_findings

SCHEMA_VERSION = 1
NOT_YET_COVERED: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChangedModel:
    """A model the pull request adds, removes or modifies, and the models downstream of it."""

    unique_id: str
    name: str
    path: str
    change: str  # "new", "modified" or "removed"
    aspects: tuple[str, ...]  # for "modified": any of "sql", "config", "docs"
    materialized_before: str | None
    materialized_after: str | None
    downstream: tuple[str, ...]  # names of head models downstream (not themselves changed)


@dataclass(frozen=True)
class Review:
    """Everything the report says; `seconds` is set by the caller once it is known."""

    base_label: str
    head_label: str
    changed_models: tuple[ChangedModel, ...]
    scans: tuple[RelationScans, ...]
    findings: tuple[Finding, ...]
    parse_problems: tuple[ParseProblem, ...]
    base_graph: ProjectGraph
    head_graph: ProjectGraph
    costs: tuple[CostRow, ...] | None = None  # None: no build artifacts given
    linted_files: tuple[str, ...] | None = None  # None: sqlfluff not run
    bigquery: BigQueryCost | None = None  # None: no BigQuery dry run (`--bigquery`)
    bigquery_gate: GateVerdict | None = None  # None: no dry run, so no gate

    @property
    def flags(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.status == "flagged")


def changed_models(base: ProjectGraph, head: ProjectGraph) -> tuple[ChangedModel, ...]:
    """New, removed and modified models (SQL checksum, config or docs differ), sorted."""
    base_models = {n.unique_id: n for n in base.models()}
    head_models = {n.unique_id: n for n in head.models()}
    rows = []
    for uid in sorted(base_models.keys() | head_models.keys()):
        before, after = base_models.get(uid), head_models.get(uid)
        if before is None or after is None:
            aspects: tuple[str, ...] = ()
            change = "new" if before is None else "removed"
        else:
            aspects = tuple(
                aspect
                for aspect, differs in (
                    ("sql", before.checksum != after.checksum),
                    ("config", before.config_fingerprint != after.config_fingerprint),
                    ("docs", before.docs_fingerprint != after.docs_fingerprint),
                )
                if differs
            )
            change = "modified"
            if not aspects:
                continue
        node = after or before
        assert node is not None
        rows.append(
            ChangedModel(
                unique_id=uid,
                name=node.name,
                path=node.path,
                change=change,
                aspects=aspects,
                materialized_before=before.materialized if before else None,
                materialized_after=after.materialized if after else None,
                downstream=(),
            )
        )
    changed = frozenset(row.unique_id for row in rows)
    return tuple(
        replace(row, downstream=_unchanged_downstream(head, row.unique_id, changed)) for row in rows
    )


def _unchanged_downstream(
    head: ProjectGraph, unique_id: str, changed: frozenset[str]
) -> tuple[str, ...]:
    """Names of the models downstream of `unique_id` that are not changed themselves."""
    if unique_id not in head.nodes:
        return ()
    return tuple(sorted(head.nodes[d].name for d in head.descendants(unique_id) - changed))


def build_review(
    base_manifest: Mapping[str, Any],
    head_manifest: Mapping[str, Any],
    config: ReviewConfig,
    base_label: str = "base",
    head_label: str = "pull request",
    extra_findings: tuple[Finding, ...] = (),
) -> Review:
    """Compare two manifests: changed models, scans, and every rule's findings with status.

    The structure rules run dbt-bouncer on each manifest (a subprocess, recflow/review/bouncer.py).
    `extra_findings` are pull-request findings computed outside (sqlfluff on changed files)."""
    base, head = build_graph(base_manifest), build_graph(head_manifest)
    base_duplicates, _ = duplicate_findings(base, config)
    head_duplicates, problems = duplicate_findings(head, config)
    base_structure = structure_findings(base_manifest, base, config)
    base_keys = frozenset(f.key for f in (*base_duplicates, *base_structure))
    scans = compare_scans(base, head)
    head_findings = (
        *scan_findings(scans, head, config),
        *head_duplicates,
        *structure_findings(head_manifest, head, config),
        *extra_findings,
    )
    return Review(
        base_label=base_label,
        head_label=head_label,
        changed_models=changed_models(base, head),
        scans=scans,
        findings=resolve(head_findings, base_keys, head, config),
        parse_problems=problems,
        base_graph=base,
        head_graph=head,
    )


def to_json(review: Review, seconds: float) -> dict[str, Any]:
    """The review as a JSON-ready dict (schema version SCHEMA_VERSION)."""
    head, base = review.head_graph, review.base_graph
    return {
        "schema_version": SCHEMA_VERSION,
        "base": review.base_label,
        "head": review.head_label,
        "summary": {
            status: sum(1 for f in review.findings if f.status == status)
            for status in ("flagged", "acknowledged", "ignored", "existing")
        },
        "changed_models": [
            {
                "unique_id": m.unique_id,
                "name": m.name,
                "path": m.path,
                "change": m.change,
                "aspects": list(m.aspects),
                "materialized": {"before": m.materialized_before, "after": m.materialized_after},
                "downstream": list(m.downstream),
            }
            for m in review.changed_models
        ],
        "scans": [
            {
                "relation": row.relation,
                "name": row.name,
                "kind": row.kind,
                "before": row.before,
                "after": row.after,
                "added_paths": [render_path(p, head) for p in row.added_paths],
                "removed_paths": [render_path(p, base) for p in row.removed_paths],
            }
            for row in review.scans
        ],
        "findings": [
            {
                "rule": f.rule,
                "key": f.key,
                "status": f.status,
                "message": f.message,
                "reason": f.reason,
                "suggestion": f.suggestion,
                "subjects": list(f.subjects),
                "locations": [{"path": loc.path, "line": loc.line} for loc in f.locations],
            }
            for f in review.findings
        ],
        "parse_problems": [{"model": p.model, "error": p.error} for p in review.parse_problems],
        "costs": None if review.costs is None else [_cost_json(row) for row in review.costs],
        "linted_files": None if review.linted_files is None else list(review.linted_files),
        "bigquery": None if review.bigquery is None else _bigquery_json(review.bigquery),
        "bigquery_gate": None if review.bigquery_gate is None else _gate_json(review.bigquery_gate),
        "not_yet_covered": list(NOT_YET_COVERED),
        "runtime_seconds": round(seconds, 3),
    }


def render_markdown(review: Review, seconds: float) -> str:
    """The review as a pull-request comment."""
    flags = review.flags
    lines = [
        "## dbt review",
        "",
        f"Comparing **{review.head_label}** with **{review.base_label}**: "
        f"{len(flags)} flag(s) for the reviewer.",
        "",
        *_findings_section("Flags", flags, with_reason=False),
        *_findings_section(
            "Acknowledged or ignored",
            tuple(f for f in review.findings if f.status in {"acknowledged", "ignored"}),
            with_reason=True,
        ),
        *_changed_section(review.changed_models),
        *_scans_section(review),
        *_costs_section(review.costs),
        *_bigquery_section(review.bigquery),
        *_gate_section(review.bigquery_gate),
    ]
    existing = [f for f in review.findings if f.status == "existing"]
    if existing:
        lines += [
            f"<details><summary>Findings already on the base branch ({len(existing)})</summary>",
            "",
            *(f"- `{f.rule}`: {f.message}" for f in existing),
            "",
            "</details>",
            "",
        ]
    if review.linted_files is not None:
        linted = ", ".join(f"`{path}`" for path in review.linted_files) or "none"
        lines += [f"_sqlfluff linted the changed SQL files: {linted}._", ""]
    if review.parse_problems:
        lines += ["Models sqlglot could not parse (no duplicate check):", ""]
        lines += [f"- `{p.model}`: {p.error}" for p in review.parse_problems] + [""]
    if NOT_YET_COVERED:
        lines += [f"_Not in this report yet: {', '.join(NOT_YET_COVERED)}._", ""]
    lines += [
        f"_Review computed in {seconds:.2f} s (excluding dbt)._",
        "",
    ]
    return "\n".join(lines)


def _findings_section(title: str, findings: tuple[Finding, ...], with_reason: bool) -> list[str]:
    if not findings:
        return [f"### {title}", "", "None.", ""] if title == "Flags" else []
    lines = [f"### {title}", ""]
    for f in findings:
        where = ", ".join(f"`{loc}`" for loc in f.locations)
        lines.append(f"- **`{f.rule}`**: {f.message}")
        if where:
            lines.append(f"  - where: {where}")
        if with_reason:
            lines.append(f"  - {f.status}: {f.reason}")
        elif f.suggestion:
            lines.append(f"  - suggestion: {f.suggestion}")
    return [*lines, ""]


def _changed_section(models: tuple[ChangedModel, ...]) -> list[str]:
    lines = ["### Changed models", ""]
    if not models:
        return [*lines, "None.", ""]
    lines += [
        "| model | change | materialised | downstream |",
        "|---|---|---|---|",
    ]
    for m in models:
        change = m.change + (f" ({', '.join(m.aspects)})" if m.aspects else "")
        if m.materialized_before and m.materialized_before != m.materialized_after:
            materialised = f"{m.materialized_before} → {m.materialized_after or '-'}"
        else:
            materialised = m.materialized_after or "-"
        downstream = ", ".join(m.downstream) or "-"
        lines.append(f"| `{m.name}` (`{m.path}`) | {change} | {materialised} | {downstream} |")
    return [*lines, ""]


def _scans_section(review: Review) -> list[str]:
    lines = [
        "### Full-build scans per stored relation",
        "",
        "A stored model scans a relation once per path to it through views and ephemeral "
        "models (see `recflow/review/scans.py`).",
        "",
        "| relation | kind | before | after |",
        "|---|---|---|---|",
    ]
    for row in review.scans:
        marker = " ⚠" if row.delta > 0 else ""
        lines.append(f"| `{row.name}` | {row.kind} | {row.before} | {row.after}{marker} |")
    return [*lines, ""]


def _cost_json(row: CostRow) -> dict[str, Any]:
    metrics = {}
    for metric in COST_METRICS:
        absolute, relative = row.delta(metric)
        metrics[metric] = {
            "base": row.base.value(metric) if row.base else None,
            "head": row.head.value(metric) if row.head else None,
            "delta": absolute,
            "relative": None if relative is None else round(relative, 4),
        }
    return {"name": row.name, **metrics}


_COST_TITLES = {
    "seconds": "wall time",
    "rows_produced": "rows produced",
    "rows_scanned": "rows scanned",
    "bytes_scanned": "bytes scanned",
}


def _costs_section(costs: tuple[CostRow, ...] | None) -> list[str]:
    if costs is None:
        return []
    lines = [
        "### Measured cost on the DuckDB build",
        "",
        "Per changed model: base → pull request, change. Wall time from `run_results.json`, "
        "rows produced counted in the built relation, rows and bytes scanned from a DuckDB "
        "JSON profile of the model's query (see `recflow/review/cost.py`).",
        "",
    ]
    if not costs:
        return [*lines, "No changed model was built.", ""]
    lines += [
        "| model | " + " | ".join(_COST_TITLES[m] for m in COST_METRICS) + " |",
        "|---" * (len(COST_METRICS) + 1) + "|",
    ]
    for row in costs:
        cells = []
        for metric in COST_METRICS:
            before = format_value(metric, row.base.value(metric) if row.base else None)
            after = format_value(metric, row.head.value(metric) if row.head else None)
            cells.append(f"{before} → {after}, {format_delta(metric, *row.delta(metric))}")
        lines.append(f"| `{row.name}` | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _dry_run_json(run: DryRun | None, usd_per_tib: float) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "bytes_processed": run.bytes_processed,
        "estimated_usd": estimate_usd(run.bytes_processed, usd_per_tib),
        "error": run.error,
        "reason": run.reason,
    }


def _bigquery_json(cost: BigQueryCost) -> dict[str, Any]:
    return {
        "project": cost.project,
        "location": cost.location,
        "usd_per_tib": cost.usd_per_tib,
        "models": [
            {
                "unique_id": row.unique_id,
                "name": row.name,
                "base": _dry_run_json(row.base, cost.usd_per_tib),
                "head": _dry_run_json(row.head, cost.usd_per_tib),
                "delta_bytes": row.delta_bytes,
                "delta_estimated_usd": estimate_usd(row.delta_bytes, cost.usd_per_tib),
            }
            for row in cost.rows
        ],
    }


def _dry_run_cell(run: DryRun | None) -> str:
    if run is None:
        return "-"
    if run.error is not None:
        return "error"
    return format_bytes(run.bytes_processed)


def _bigquery_section(cost: BigQueryCost | None) -> list[str]:
    if cost is None:
        return []
    lines = [
        "### BigQuery dry run",
        "",
        f"Bytes each changed model's compiled SELECT would process on `{cost.project}` "
        f"({cost.location}), base → pull request, both dry-run against production as it is; "
        f"estimated on-demand cost at ${cost.usd_per_tib:g} per TiB "
        "(see `recflow/review/bigquery_cost.py`).",
        "",
    ]
    if not cost.rows:
        return [*lines, "No changed model to dry-run.", ""]
    lines += [
        "| model | base | pull request | change | estimated cost per run |",
        "|---|---|---|---|---|",
    ]
    errors = []
    for row in cost.rows:
        delta = row.delta_bytes
        change = "-" if delta is None else ("+" if delta >= 0 else "") + format_bytes(delta)
        price = [
            estimate_usd(r.bytes_processed, cost.usd_per_tib) if r else None
            for r in (row.base, row.head)
        ]
        delta_usd = estimate_usd(delta, cost.usd_per_tib)
        cost_cell = f"{format_usd(price[0])} → {format_usd(price[1])}"
        if delta_usd is not None:
            cost_cell += f" ({'+' if delta_usd >= 0 else ''}{format_usd(delta_usd)})"
        lines.append(
            f"| `{row.name}` | {_dry_run_cell(row.base)} | {_dry_run_cell(row.head)} | "
            f"{change} | {cost_cell} |"
        )
        for side, run in (("base", row.base), ("pull request", row.head)):
            if run is not None and run.error is not None:
                errors.append(f"- {failed_dry_run_line(row.name, side, run.reason)}")
    if errors:
        lines += ["", "Not dry-run:", "", *errors]
    return [*lines, ""]


_REASON_CODE = re.compile(r"^[A-Za-z]{1,40}$")


def failed_dry_run_line(model: str, side: str, reason: str | None) -> str:
    """What the public report says about a failed dry run: the model, the side and the API's
    reason code, never its message or the SQL (they can hold table names and the values the
    SQL was rendered with); those are in the job log."""
    code = f", `{reason}`" if reason and _REASON_CODE.match(reason) else ""
    return f"dry run failed for model `{model}` ({side}{code}), see the job log"


def _gate_json(verdict: GateVerdict) -> dict[str, Any]:
    return {
        "passed": verdict.passed,
        "bytes_increase": verdict.bytes_increase,
        "monthly_usd_increase": verdict.monthly_usd_increase,
        "limits": {
            "max_bytes_increase": verdict.limits.max_bytes_increase,
            "max_monthly_usd_increase": verdict.limits.max_monthly_usd_increase,
            "builds_per_month": verdict.limits.builds_per_month,
        },
        "refused": list(verdict.refused),
        "unmeasured": list(verdict.unmeasured),
        "failures": list(verdict.failures),
    }


def _gate_section(verdict: GateVerdict | None) -> list[str]:
    if verdict is None:
        return []
    limits = verdict.limits
    byte_limit = (
        "no limit"
        if limits.max_bytes_increase is None
        else f"limit {format_bytes(limits.max_bytes_increase)}"
    )
    usd_limit = (
        "no limit"
        if limits.max_monthly_usd_increase is None
        else f"limit {format_usd(limits.max_monthly_usd_increase)}"
    )
    sign = "+" if verdict.bytes_increase >= 0 else ""
    lines = [
        "### BigQuery cost gate",
        "",
        f"**{'Passed' if verdict.passed else 'Failed'}.** Net change per production build: "
        f"{sign}{format_bytes(verdict.bytes_increase)} ({byte_limit}); per month at "
        f"{limits.builds_per_month:g} builds: {sign}{format_usd(verdict.monthly_usd_increase)} "
        f"({usd_limit}).",
        "",
    ]
    lines += [f"- {failure}" for failure in verdict.failures]
    if verdict.unmeasured:
        names = ", ".join(f"`{name}`" for name in verdict.unmeasured)
        lines += [
            *([""] if verdict.failures else []),
            f"Not counted (no number on one side, e.g. a parent production does not have yet): "
            f"{names}.",
        ]
    return [*lines, ""] if lines[-1] else lines
