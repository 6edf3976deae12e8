"""What the run report reads: the run directory's files, and the marts (and the optional
realised-quality table) in the warehouse the run was trained on."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from recflow.report.figures import KEYS, SOURCE_PREFIX, recall_by_source
from trainer.errors import TrainerInputError
from trainer.warehouse import Warehouse, open_warehouse

log = logging.getLogger(__name__)

# The daily realised quality of what was served, built by the monitoring models when they exist.
QUALITY_TABLE = "served_quality_realised"  # dbt/models/marts/monitoring
TEST_SPLIT = "test"


@dataclass(frozen=True)
class RunArtifacts:
    """The files of one finished run directory that the report draws."""

    run_dir: Path
    metadata: dict[str, Any]
    metrics: dict[str, Any]
    feature_spec: dict[str, Any]
    importance: pd.DataFrame
    batch: pd.DataFrame

    @property
    def run_id(self) -> str:
        return str(self.metadata.get("run_id", self.run_dir.name))

    @property
    def source_flags(self) -> list[str]:
        """The mart's `is_from_<source>` columns, whether or not this model used them."""
        names = [
            *self.feature_spec.get("features", []),
            *self.feature_spec.get("excluded_features", []),
        ]
        return sorted({name for name in names if name.startswith(SOURCE_PREFIX)})


def read_run(run_dir: Path) -> RunArtifacts:
    """The run directory's metadata, metrics, spec, feature importance and batch; a
    TrainerInputError naming the directory when it is not a finished run."""
    metadata_path = run_dir / "run_metadata.json"
    if not metadata_path.is_file():
        raise TrainerInputError(
            f"{run_dir} is not a finished run directory (no run_metadata.json): train first "
            "(recflow run) or point --run-dir at runs/<run id>."
        )
    return RunArtifacts(
        run_dir=run_dir,
        metadata=json.loads(metadata_path.read_text()),
        metrics=json.loads((run_dir / "metrics.json").read_text()),
        feature_spec=json.loads((run_dir / "feature_spec.json").read_text()),
        importance=pd.read_csv(run_dir / "feature_importance.csv"),
        batch=pd.read_parquet(run_dir / "batch_recommendations.parquet"),
    )


@dataclass(frozen=True)
class WarehouseFacts:
    """What the report reads from the warehouse; a section whose read failed has None and its
    reason in `problems` (the report says it rather than failing the run that wrote it)."""

    recall: dict[str, float] | None = None
    catalogue: pd.DataFrame | None = None
    quality: pd.DataFrame | None = None
    problems: dict[str, str] = field(default_factory=dict)


def read_warehouse(
    uri: str,
    run: RunArtifacts,
    *,
    schema: str | None = None,
    quality_table: str = QUALITY_TABLE,
) -> WarehouseFacts:
    """Candidate recall on the test window (from the marts the evaluation read), the catalogue
    at the batch's cutoff and, when the table exists, the realised quality history."""
    problems: dict[str, str] = {}
    try:
        warehouse = open_warehouse(uri)
    except TrainerInputError as error:
        problem = str(error)
        return WarehouseFacts(problems={"recall": problem, "catalogue": problem})
    schema = schema if schema is not None else warehouse.default_schema
    recall = catalogue = quality = None
    try:
        recall = candidate_recall(warehouse, schema, run.source_flags)
    except TrainerInputError as error:
        problems["recall"] = str(error)
    try:
        catalogue = catalogue_at(warehouse, schema, run.batch)
    except TrainerInputError as error:
        problems["catalogue"] = str(error)
    try:
        quality = warehouse.read(_named(schema, quality_table)).to_pandas()
    except TrainerInputError as error:
        log.info("no realised-quality history (%s): %s", quality_table, error)
    return WarehouseFacts(recall=recall, catalogue=catalogue, quality=quality, problems=problems)


def candidate_recall(
    warehouse: Warehouse, schema: str | None, flags: list[str]
) -> dict[str, float]:
    """The analysis `candidate_recall_by_source` on the marts: the test window's positives
    (label_window_positives) against the candidates of the same users (training_examples)."""
    positives = warehouse.read(
        _named(schema, "label_window_positives"), columns=[*KEYS, "split"]
    ).to_pandas()
    candidates = warehouse.read(
        _named(schema, "training_examples"), columns=[*KEYS, "split", *flags]
    ).to_pandas()
    return recall_by_source(
        positives.loc[positives["split"] == TEST_SPLIT],
        candidates.loc[candidates["split"] == TEST_SPLIT],
    )


def catalogue_at(warehouse: Warehouse, schema: str | None, batch: pd.DataFrame) -> pd.DataFrame:
    """item_id and popularity_rank of every catalogue item at the batch's cutoff."""
    items = warehouse.read(
        _named(schema, "item_features"), columns=["item_id", "popularity_rank", "cutoff_date"]
    ).to_pandas()
    cutoffs = pd.to_datetime(batch["cutoff_date"]).unique()
    at_cutoff = items.loc[pd.to_datetime(items["cutoff_date"]).isin(cutoffs)]
    return at_cutoff[["item_id", "popularity_rank"]].reset_index(drop=True)


def _named(schema: str | None, table: str) -> str:
    return table if "." in table or not schema else f"{schema}.{table}"
