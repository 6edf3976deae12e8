"""Entry point: `python -m trainer.task`, the same on a laptop, in CI and as a Vertex AI job.

Arguments default from the environment: the run directory from AIP_MODEL_DIR when Vertex AI
sets it (a gs:// URI; see trainer.gcs for how a run is published there), else runs/<run id>; the
warehouse from RECFLOW_WAREHOUSE_URI (duckdb://, file:// or bq://project.dataset) or
RECFLOW_DUCKDB_PATH.

Vertex AI's other variables: CLOUD_ML_PROJECT_ID, CLOUD_ML_JOB_ID and CLOUD_ML_TRIAL_ID are
recorded in run_metadata.json. AIP_CHECKPOINT_DIR is deliberately unused: the job trains in
minutes, and a booster resumed from a checkpoint would lose early stopping's state and no longer
be the model a rerun reproduces, so a restarted job retrains from the start. AIP_TENSORBOARD_LOG_DIR
is unused too: writing event files needs a TensorBoard writer the project does not depend on, and
metrics.json holds the evaluation. Logs are JSON lines for Cloud Logging there (trainer.logs).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb

from trainer.errors import TrainerInputError
from trainer.logs import configure_logging
from trainer.pipeline import TrainerConfig, run, summary_table
from trainer.ranker import RankerParams

REPO_ROOT = Path(__file__).resolve().parent.parent
# Vertex AI custom-job variables recorded with each run when present.
VERTEX_CONTEXT = ("CLOUD_ML_PROJECT_ID", "CLOUD_ML_JOB_ID", "CLOUD_ML_TRIAL_ID", "AIP_MODEL_DIR")


def get_args(argv: list[str] | None = None) -> TrainerConfig:
    """Parse arguments and environment into the run's configuration."""
    parser = argparse.ArgumentParser(prog="python -m trainer.task", description=__doc__)
    parser.add_argument("--warehouse-uri", default=_default_warehouse_uri())
    parser.add_argument(
        "--features-schema",
        default=None,
        help="schema (BigQuery dataset) of the marts; default main, or the bq:// URI's dataset",
    )
    parser.add_argument(
        "--manifest",
        default=str(
            Path(os.environ.get("DBT_TARGET_PATH", REPO_ROOT / "dbt" / "target")) / "manifest.json"
        ),
        help="dbt's manifest.json (a local path or gs:// URI), where the feature spec comes from",
    )
    parser.add_argument(
        "--output-dir",
        default=None,
        help="the run directory, a local path or gs://bucket/prefix "
        "(default: $AIP_MODEL_DIR, else runs/<run id>)",
    )
    parser.add_argument(
        "--recommendations-table",
        default="ml.batch_recommendations",
        help="warehouse table replaced with the batch recommendations ('' to skip)",
    )
    parser.add_argument(
        "--exclude-feature",
        dest="exclude_features",
        action="append",
        default=[],
        metavar="NAME",
        help="leave this feature of the dbt YAML out of the model (repeatable); recorded in "
        "run_metadata.json",
    )
    parser.add_argument("--top-k", type=int, default=20, help="recommendations per user (>= 1)")
    parser.add_argument(
        "--dbt-vars",
        default=None,
        metavar="JSON",
        help="the dbt var overrides the feature tables were built with (a JSON object), "
        "recorded in run_metadata.json as dbt_vars",
    )
    parser.add_argument("--eval-k", type=int, nargs="+", default=[10, 20])
    defaults = RankerParams()
    parser.add_argument("--num-boost-round", type=int, default=defaults.num_boost_round)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--num-leaves", type=int, default=defaults.num_leaves)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--log-every", type=int, default=defaults.log_every)
    parser.add_argument(
        "--num-threads",
        type=int,
        default=defaults.num_threads,
        help="LightGBM threads; results are reproducible for a fixed value",
    )
    args = parser.parse_args(argv)
    if args.top_k < 1:
        raise TrainerInputError(f"--top-k must be an integer >= 1, got {args.top_k}")
    dbt_vars = _dbt_vars(args.dbt_vars)

    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    run_dir = args.output_dir or os.environ.get("AIP_MODEL_DIR") or str(REPO_ROOT / "runs" / run_id)
    return TrainerConfig(
        warehouse_uri=args.warehouse_uri,
        manifest_path=args.manifest,
        run_dir=run_dir.rstrip("/") or run_dir,
        run_id=run_id,
        features_schema=args.features_schema,
        recommendations_table=args.recommendations_table or None,
        top_k=args.top_k,
        ks=tuple(sorted(set(args.eval_k))),
        exclude_features=tuple(args.exclude_features),
        params=RankerParams(
            num_boost_round=args.num_boost_round,
            learning_rate=args.learning_rate,
            num_leaves=args.num_leaves,
            seed=args.seed,
            log_every=args.log_every,
            num_threads=args.num_threads,
        ),
        run_context={
            "git_commit": git_commit(),
            **{name.lower(): os.environ[name] for name in VERTEX_CONTEXT if name in os.environ},
            **({"dbt_vars": dbt_vars} if dbt_vars is not None else {}),
        },
    )


def _dbt_vars(text: str | None) -> dict[str, Any] | None:
    """The parsed --dbt-vars, or None when the caller did not say which vars dbt used."""
    if text is None:
        return None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise TrainerInputError(f"--dbt-vars must be a JSON object: {error}") from None
    if not isinstance(parsed, dict):
        raise TrainerInputError(f"--dbt-vars must be a JSON object, got {text!r}")
    return parsed


def main(argv: list[str] | None = None) -> int:
    try:
        configure_logging(os.environ)
        lgb.register_logger(logging.getLogger("lightgbm"))
        config = get_args(argv)
        result = run(config)
    except TrainerInputError as error:
        print(f"trainer: {error}", file=sys.stderr)
        return 2
    print(f"\nrun {config.run_id}: {result.run_dir}")
    print(summary_table(result.evaluation, ks=config.ks))
    if result.recommendations_written:
        print(
            f"\n{result.recommendations_written:,} recommendations written to "
            f"{config.recommendations_table}"
        )
    return 0


def _default_warehouse_uri() -> str:
    if uri := os.environ.get("RECFLOW_WAREHOUSE_URI"):
        return uri
    path = Path(os.environ.get("RECFLOW_DUCKDB_PATH", REPO_ROOT / "data" / "warehouse.duckdb"))
    return f"duckdb://{path.resolve()}"


def git_commit() -> str:
    """$GIT_COMMIT, else the checkout's HEAD, else 'unknown' (a training container has no git)."""
    if commit := os.environ.get("GIT_COMMIT"):
        return commit
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
