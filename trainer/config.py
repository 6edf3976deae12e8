"""One training run's configuration: a frozen dataclass, and the one constructor that both
`python -m trainer.task` (argv and environment, the Vertex AI job) and `recflow` call."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer import provenance
from trainer.errors import TrainerInputError
from trainer.ranker import RankerParams

DEFAULT_RUNS_DIR = provenance.REPO_ROOT / "runs"
DEFAULT_RECOMMENDATIONS_TABLE = "ml.batch_recommendations"


@dataclass(frozen=True)
class TrainerConfig:
    """Everything one run needs, built once by `TrainerConfig.for_run`."""

    warehouse_uri: str
    manifest_path: str
    run_dir: str  # a local path or gs://bucket/prefix
    run_id: str
    features_schema: str | None = None  # None: `main` locally, the bq:// URI's dataset
    recommendations_table: str | None = DEFAULT_RECOMMENDATIONS_TABLE
    top_k: int = 20
    ks: tuple[int, ...] = (10, 20)
    params: RankerParams = field(default_factory=RankerParams)
    # Features of the dbt YAML this model leaves out (a deliberately different challenger).
    exclude_features: tuple[str, ...] = ()
    run_context: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_run(
        cls,
        *,
        warehouse_uri: str,
        manifest_path: str | Path,
        run_dir: str | Path | None = None,
        runs_dir: str | Path | None = None,
        features_schema: str | None = None,
        recommendations_table: str | None = DEFAULT_RECOMMENDATIONS_TABLE,
        top_k: int = 20,
        ks: Iterable[int] = (10, 20),
        exclude_features: Iterable[str] = (),
        params: RankerParams | None = None,
        dbt_vars: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> TrainerConfig:
        """A new run: a fresh run id, its directory (`run_dir`; else `runs_dir`/<run id>; else
        $AIP_MODEL_DIR, which Vertex AI sets; else runs/<run id> in the repository) and its
        provenance (commit, Vertex AI job, the dbt vars the marts were built with, when
        known) for run_metadata.json. `recommendations_table` None or '' skips the write-back.
        """
        if top_k < 1:
            raise TrainerInputError(f"--top-k must be an integer >= 1, got {top_k}")
        env = os.environ if environ is None else environ
        run_id = provenance.new_run_id()
        if run_dir:
            directory = str(run_dir)
        elif runs_dir is not None:
            directory = str(Path(runs_dir) / run_id)
        else:
            directory = env.get("AIP_MODEL_DIR") or str(DEFAULT_RUNS_DIR / run_id)
        return cls(
            warehouse_uri=warehouse_uri,
            manifest_path=str(manifest_path),
            run_dir=directory.rstrip("/") or directory,
            run_id=run_id,
            features_schema=features_schema,
            recommendations_table=recommendations_table or None,
            top_k=top_k,
            ks=tuple(sorted(set(ks))),
            exclude_features=tuple(exclude_features),
            params=params or RankerParams(),
            run_context=provenance.run_context(dbt_vars, environ=env),
        )
