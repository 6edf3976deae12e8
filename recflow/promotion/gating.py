"""Run the gate on one challenger run: score, check, decide, and act on the decision.

Every challenger, promoted or not, is registered as a version (no alias) with its evaluation,
and logged as an experiment run; both happen before the decision is acted on, so a refused
challenger leaves its trace and nothing is served without its record.

Order on promotion: move the `champion` alias onto the new version, then replace the
warehouse's batch recommendations; if that write fails the alias goes back to the previous
champion, so the alias and the served recommendations never disagree for long. A process killed
between the two leaves the registry ahead of the table: the registry is the record, and
`recflow ct` serves its champion again before anything else (recflow.promotion.ct).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recflow.promotion import gate, run_dirs, scoring
from recflow.promotion.experiments import ExperimentLog, run_record
from recflow.promotion.registry import ModelRegistry, ModelVersion, Registration, RegistryError
from trainer import pipeline, served_checks
from trainer.columns import CUTOFF_DATE
from trainer.failpoints import failpoint
from trainer.warehouse import open_warehouse

log = logging.getLogger(__name__)


class GateInputError(ValueError):
    """The challenger cannot be gated as asked (exit 2)."""


@dataclass(frozen=True)
class GateRequest:
    run_dir: str
    warehouse_uri: str
    policy: gate.GatePolicy
    features_schema: str | None = None
    recommendations_table: str | None = "ml.batch_recommendations"
    decision_out: Path | None = None


def run_gate(
    request: GateRequest, registry: ModelRegistry, experiments: ExperimentLog | None = None
) -> dict[str, Any]:
    """Decide on the challenger at `request.run_dir`; register it and log it to `experiments`
    whatever the outcome; act on the decision; return decision.json's body."""
    try:
        challenger = run_dirs.read_run(request.run_dir)
    except run_dirs.RunDirError as error:
        raise GateInputError(str(error)) from error
    if request.recommendations_table:
        open_warehouse(request.warehouse_uri).check_writable(request.recommendations_table)
    ks = tuple(challenger.metadata.get("ks") or (10, 20))
    tables = scoring.load_current_tables(challenger, request.warehouse_uri, request.features_schema)

    challenger_scored = scoring.score(challenger, tables, ks=ks)
    if challenger_scored.metrics is None:
        raise GateInputError(
            f"the challenger {request.run_dir} cannot be scored on {request.warehouse_uri}: "
            f"{challenger_scored.unscorable_reason}"
        )
    champion_version = registry.champion()
    champion = None
    if champion_version is not None:
        if champion_version.run_dir.rstrip("/") == challenger.uri.rstrip("/"):
            raise GateInputError(
                f"{request.run_dir} is already the champion (version {champion_version.version})"
            )
        champion = _evaluate_champion(champion_version, tables, ks)

    recommendations = challenger.batch_recommendations().to_pandas()
    candidates = scoring.scoring_candidates(tables)
    cutoffs = sorted(recommendations[CUTOFF_DATE].dropna().unique())
    problems = served_checks.check_recommendations(
        recommendations,
        candidates,
        tables.known_users,
        pipeline.scoring_fallback(tables.item_features, challenger.spec, k=challenger.top_k),
        k=challenger.top_k,
    )
    decision = gate.decide(
        challenger.uri,
        challenger_scored.metrics,
        champion,
        problems,
        request.policy,
        challenger_per_user=challenger_scored.per_user,
        context={
            "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "challenger_run_id": challenger.run_id,
            "test_cutoffs": [str(cutoff) for cutoff in tables.test_cutoffs],
            "scoring_cutoffs": [str(cutoff) for cutoff in cutoffs],
            "warehouse_uri": request.warehouse_uri,
            "registry": registry.location,
            "excluded_features": challenger.metadata.get("excluded_features", []),
        },
    )
    body = decision.to_json()
    # Beside the re-scored value: the two differ only if the tables changed after training.
    body["challenger"]["recorded_primary_metric_value"] = decision.policy.value(
        challenger.metrics, whose="the challenger's recorded"
    )
    registration = Registration(
        run_dir=challenger.uri,
        run_id=challenger.run_id,
        git_commit=str(challenger.metadata.get("git_commit", "unknown")),
        dbt_manifest_sha256=str(challenger.metadata.get("dbt_manifest_sha256", "unknown")),
        primary_metric=decision.policy.primary_metric,
        primary_metric_value=body["challenger"]["primary_metric_value"],
        decision=body,
        intervals=challenger.intervals,
    )
    registered = registry.register_challenger(registration)
    body["registered_version"] = registered.version
    if experiments is not None:
        record = run_record(challenger, registration, body, registered.version)
        body["experiment_run"] = experiments.log_run(record)
    if decision.promoted:
        _promote(request, registry, challenger, registered, champion_version)
    run_dirs.write_decision(challenger.uri, body)
    registry.record_decision(body)
    if request.decision_out:
        request.decision_out.parent.mkdir(parents=True, exist_ok=True)
        request.decision_out.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    return body


def _evaluate_champion(
    version: ModelVersion, tables: pipeline.FeatureTables, ks: tuple[int, ...]
) -> gate.ChampionEvaluation:
    try:
        champion_run = run_dirs.read_run(version.run_dir)
    except run_dirs.RunDirError as error:
        raise RegistryError(
            f"the champion, version {version.version}, cannot be read: {error}. Restore its run "
            "directory, or move `champion` to another version"
        ) from error
    scored = scoring.score(champion_run, tables, ks=ks)
    if scored.metrics is not None:
        return gate.ChampionEvaluation(
            version=version.version,
            run_dir=version.run_dir,
            metrics=scored.metrics,
            scoring=gate.ChampionScoring.RESCORED,
            per_user=scored.per_user,
        )
    # Fallback, stated in the decision: the champion cannot serve these tables either, so the
    # only yardstick left is what it scored on its own test window.
    log.warning(
        "champion version %s cannot be re-scored: %s", version.version, scored.unscorable_reason
    )
    return gate.ChampionEvaluation(
        version=version.version,
        run_dir=version.run_dir,
        metrics=champion_run.metrics,
        scoring=gate.ChampionScoring.RECORDED,
        note=f"cannot be re-scored: {scored.unscorable_reason}",
    )


def _promote(
    request: GateRequest,
    registry: ModelRegistry,
    challenger: run_dirs.FinishedRun,
    registered: ModelVersion,
    previous: ModelVersion | None,
) -> None:
    registry.set_champion(registered.version)
    failpoint("promotion.after_registry_write")
    if request.recommendations_table:
        try:
            open_warehouse(request.warehouse_uri).replace(
                request.recommendations_table, challenger.batch_recommendations()
            )
        except Exception:
            if previous is not None:
                log.error(
                    "writing the recommendations failed: champion back to %s", previous.version
                )
                registry.set_champion(previous.version)
            raise
    failpoint("promotion.after_served_write")
