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
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb

from trainer.config import TrainerConfig
from trainer.errors import TrainerInputError
from trainer.logs import configure_logging
from trainer.pipeline import run, summary_table
from trainer.provenance import REPO_ROOT
from trainer.ranker import RankerParams

_RANKER_FLAGS = (
    "num_boost_round",
    "learning_rate",
    "num_leaves",
    "seed",
    "log_every",
    "num_threads",
)
# Which parsed flags set each TrainerConfig.for_run keyword.
_FLAGS_OF = {
    "warehouse_uri": ("warehouse_uri",),
    "manifest_path": ("manifest",),
    "run_dir": ("output_dir",),
    "features_schema": ("features_schema",),
    "recommendations_table": ("recommendations_table",),
    "exclude_features": ("exclude_features",),
    "top_k": ("top_k",),
    "dbt_vars": ("dbt_vars",),
    "ks": ("eval_k",),
    "params": _RANKER_FLAGS,
}


def get_args(argv: Sequence[str] | None = None) -> TrainerConfig:
    """Parse arguments and environment into the run's configuration."""
    return TrainerConfig.for_run(**_for_run_keywords(_parser().parse_args(argv)))


def keywords_from_arguments(argv: Sequence[str]) -> dict[str, Any]:
    """The `TrainerConfig.for_run` keywords that the trainer flags in `argv` set (only those
    given), so a caller building its own configuration can take extra trainer flags from a user
    (`recflow ct --trainer-arg`)."""
    parser = _parser()
    args = parser.parse_args(argv)
    given = {name for name, value in vars(args).items() if value != parser.get_default(name)}
    keywords = _for_run_keywords(args)
    return {name: keywords[name] for name, flags in _FLAGS_OF.items() if given & set(flags)}


def _for_run_keywords(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "warehouse_uri": args.warehouse_uri,
        "manifest_path": args.manifest,
        "run_dir": args.output_dir,
        "features_schema": args.features_schema,
        "recommendations_table": args.recommendations_table,
        "exclude_features": tuple(args.exclude_features),
        "top_k": args.top_k,
        "dbt_vars": _dbt_vars(args.dbt_vars),
        "ks": tuple(args.eval_k),
        "params": RankerParams(**{name: getattr(args, name) for name in _RANKER_FLAGS}),
    }


def _parser() -> argparse.ArgumentParser:
    """The flags of `python -m trainer.task` (the Vertex AI job passes them)."""
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
    return parser


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


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m trainer.task`: parse `argv` and the environment, then run."""
    try:
        configure_logging(os.environ)
        config = get_args(argv)
    except TrainerInputError as error:
        print(f"trainer: {error}", file=sys.stderr)
        return 2
    return run_and_report(config)


def run_and_report(config: TrainerConfig) -> int:
    """Run and print the summary; returns the exit status (2, with the message on stderr, when
    the input is at fault), so the command line and `recflow run` report a run alike."""
    lgb.register_logger(logging.getLogger("lightgbm"))
    try:
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


if __name__ == "__main__":
    sys.exit(main())
