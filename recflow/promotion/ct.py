"""`recflow ct`: the continuous-training sequence of the production workflow, locally on DuckDB.

dbt build -> train (no write-back) -> gate against the champion -> if promoted: register the
version, move `champion`, write the batch recommendations -> dbt build --selector serving.

Before all that, the served table is made to agree with the registry: a run killed between
moving `champion` and replacing the table left the registry ahead, and the registry is the
record, so the champion's own batch recommendations are served again.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from recflow.pipeline.dbt_invocation import build_features, run_dbt
from recflow.pipeline.settings import REPO_ROOT, Settings
from recflow.promotion import gate, run_dirs
from recflow.promotion.experiments import EXPERIMENTS_FILE, LocalExperimentLog
from recflow.promotion.gating import GateRequest, run_gate
from recflow.promotion.registry import LocalRegistry, ModelRegistry, RegistryError
from recflow.samples import events as sample_events
from trainer import pipeline
from trainer import task as trainer_task
from trainer.config import TrainerConfig
from trainer.warehouse import open_warehouse

log = logging.getLogger(__name__)

RECOMMENDATIONS_TABLE = "ml.batch_recommendations"
SERVING_MART = "main.recommendations"  # dbt's serving model over RECOMMENDATIONS_TABLE


@dataclass(frozen=True)
class CtConfig:
    settings: Settings
    registry_path: Path
    runs_dir: Path = REPO_ROOT / "runs"
    drop_features: tuple[str, ...] = ()
    top_k: int = 20
    tolerance: float = gate.DEFAULT_TOLERANCE
    trainer_args: tuple[str, ...] = ()
    sample_scale: str = sample_events.DEFAULT_SCALE


def run_ct(config: CtConfig) -> dict[str, Any]:
    """Run the sequence once; returns the gate's decision (decision.json's body)."""
    settings = config.settings
    if settings.is_default_data_dir and not settings.data_dir.exists():
        log.info(
            "no data in %s yet: generating the %s sample", settings.data_dir, config.sample_scale
        )
        generated = sample_events.generate(sample_events.SCALES[config.sample_scale])
        sample_events.write_data_dir(generated.tables, settings.data_dir, file_format="parquet")
    settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    registry = LocalRegistry(config.registry_path)
    reconciled = serve_champion_if_behind(registry, settings.duckdb_path)
    build_features(settings)

    warehouse_uri = f"duckdb://{settings.duckdb_path}"
    # --trainer-arg flags take precedence, except the features they exclude, which add up.
    extra = trainer_task.keywords_from_arguments(config.trainer_args)
    trainer_config = TrainerConfig.for_run(
        **{
            "warehouse_uri": warehouse_uri,
            "manifest_path": settings.dbt_target_path / "manifest.json",
            "runs_dir": config.runs_dir,
            "top_k": config.top_k,
            "dbt_vars": settings.dbt_vars,
            **extra,
            # The gate writes them, and only for a promoted model.
            "recommendations_table": None,
            "exclude_features": (*config.drop_features, *extra.get("exclude_features", ())),
        }
    )
    run_dir = trainer_config.run_dir
    result = pipeline.run(trainer_config)
    print(f"\nchallenger {trainer_config.run_id}: {result.run_dir}")
    print(pipeline.summary_table(result.evaluation, ks=trainer_config.ks))

    decision = run_gate(
        GateRequest(
            run_dir=run_dir,
            warehouse_uri=warehouse_uri,
            policy=gate.GatePolicy(tolerance=config.tolerance),
            recommendations_table=RECOMMENDATIONS_TABLE,
        ),
        registry,
        LocalExperimentLog(config.registry_path.parent / EXPERIMENTS_FILE),
    )
    # Also when a killed run wrote the table but never rebuilt the mart over it.
    mart_behind = served_model_versions(settings.duckdb_path, SERVING_MART) != (
        served_model_versions(settings.duckdb_path)
    )
    if decision["promoted"] or reconciled or mart_behind:
        serving = dataclasses.replace(
            settings, dbt_vars={**settings.dbt_vars, "recommendations_per_user": config.top_k}
        )
        run_dbt(serving, "build", "--selector", "serving")
    return decision


def serve_champion_if_behind(registry: ModelRegistry, duckdb_path: Path) -> bool:
    """Replace the served table with the champion's batch recommendations when it holds another
    run's (or does not exist); True if it did. No champion: nothing to agree with."""
    champion = registry.champion()
    if champion is None:
        return False
    try:
        run = run_dirs.read_run(champion.run_dir)
    except run_dirs.RunDirError as error:
        raise RegistryError(
            f"the champion, version {champion.version}, cannot be served again: {error}"
        ) from error
    served = served_model_versions(duckdb_path)
    if served == {run.run_id}:
        return False
    log.warning(
        "%s holds %s, but the champion is version %s (run %s): an interrupted promotion; "
        "serving the champion's batch recommendations",
        RECOMMENDATIONS_TABLE,
        ", ".join(sorted(served)) or "nothing",
        champion.version,
        run.run_id,
    )
    open_warehouse(f"duckdb://{duckdb_path}").replace(
        RECOMMENDATIONS_TABLE, run.batch_recommendations()
    )
    return True


def served_model_versions(duckdb_path: Path, table: str = RECOMMENDATIONS_TABLE) -> set[str]:
    """The runs (model_version) whose rows `table` holds; empty when it is absent."""
    if not duckdb_path.exists():
        return set()
    with duckdb.connect(str(duckdb_path)) as connection:
        schema, name = table.split(".")
        exists = connection.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = ? and table_name = ?",
            [schema, name],
        ).fetchone()
        if not exists or not exists[0]:
            return set()
        rows = connection.execute(f"select distinct model_version from {table}").fetchall()
    return {str(row[0]) for row in rows}
