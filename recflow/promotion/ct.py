"""`recflow ct`: the continuous-training sequence of the production workflow, locally on DuckDB.

dbt build -> train (no write-back) -> gate against the champion -> if promoted: register the
version, move `champion`, write the batch recommendations -> dbt build --selector serving.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recflow import sample_data
from recflow.dbt_invocation import build_features, run_dbt
from recflow.promotion import gate
from recflow.promotion.gating import GateRequest, run_gate
from recflow.promotion.registry import LocalRegistry
from recflow.settings import REPO_ROOT, Settings
from trainer import pipeline
from trainer import task as trainer_task

log = logging.getLogger(__name__)

RECOMMENDATIONS_TABLE = "ml.batch_recommendations"


@dataclass(frozen=True)
class CtConfig:
    settings: Settings
    registry_path: Path
    runs_dir: Path = REPO_ROOT / "runs"
    drop_features: tuple[str, ...] = ()
    top_k: int = 20
    tolerance: float = gate.DEFAULT_TOLERANCE
    trainer_args: tuple[str, ...] = ()
    sample_scale: str = sample_data.DEFAULT_SCALE


def run_ct(config: CtConfig) -> dict[str, Any]:
    """Run the sequence once; returns the gate's decision (decision.json's body)."""
    settings = config.settings
    if settings.is_default_data_dir and not settings.data_dir.exists():
        log.info(
            "no data in %s yet: generating the %s sample", settings.data_dir, config.sample_scale
        )
        generated = sample_data.generate(sample_data.SCALES[config.sample_scale])
        sample_data.write_data_dir(generated.tables, settings.data_dir, file_format="parquet")
    settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    build_features(settings)

    warehouse_uri = f"duckdb://{settings.duckdb_path}"
    trainer_config = trainer_task.get_args(
        [
            "--warehouse-uri",
            warehouse_uri,
            "--manifest",
            str(settings.dbt_target_path / "manifest.json"),
            "--recommendations-table",
            "",  # the gate writes them, and only for a promoted model
            "--top-k",
            str(config.top_k),
            "--dbt-vars",
            json.dumps(dict(settings.dbt_vars)),
            *(f"--exclude-feature={name}" for name in config.drop_features),
            *config.trainer_args,
        ]
    )
    run_dir = str(config.runs_dir / trainer_config.run_id)
    trainer_config = dataclasses.replace(trainer_config, run_dir=run_dir)
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
        LocalRegistry(config.registry_path),
    )
    if decision["promoted"]:
        serving = dataclasses.replace(
            settings, dbt_vars={**settings.dbt_vars, "recommendations_per_user": config.top_k}
        )
        run_dbt(serving, "build", "--selector", "serving")
    return decision
