"""`recflow gate`, `recflow gate-job`, `recflow ct`, `recflow runs` and `recflow
training-needed`: arguments in, one call, a printed result out. Exit codes: 0 decided (promoted
or kept the champion), 1 a failure (including a challenger rejected by the output checks: its
recommendations are broken), 2 bad input.

`python -m recflow.promotion.command gate ...` is the gate's entry point inside a Vertex AI job
(recflow.promotion.gate_job): it needs the trainer's dependencies and the aiplatform SDK, not
dbt or the rest of the command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from recflow.pipeline.dbt_invocation import DbtFailedError
from recflow.pipeline.settings import REPO_ROOT, SettingsError, add_run_setting_arguments
from recflow.promotion import gate
from recflow.promotion.experiments import open_experiment_log
from recflow.promotion.registry import (
    DEFAULT_LOCAL_PATH,
    RegistryError,
    RegistrySettingError,
    open_registry,
)
from trainer.errors import TrainerInputError

EXIT_DECIDED, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
TOLERANCE_VARIABLE = "RECFLOW_GATE_TOLERANCE"
REGISTRY_VARIABLE = "RECFLOW_REGISTRY"


def register(commands: argparse._SubParsersAction[Any]) -> None:
    gate_parser = commands.add_parser(
        "gate",
        help="compare a trained run with the champion and promote it if it is not worse",
        description="Score the challenger run and the current champion on the challenger's "
        "held-out test window, check the challenger's batch recommendations, decide, and if "
        "promoted register the version, move the `champion` alias and write the "
        "recommendations to the warehouse. Writes decision.json into the run directory.",
    )
    gate_parser.add_argument("--run-dir", required=True, help="the challenger (path or gs://)")
    gate_parser.add_argument(
        "--warehouse-uri", required=True, help="duckdb:///path or bq://project.dataset"
    )
    gate_parser.add_argument(
        "--features-schema", default=None, help="schema of the marts (default as the trainer's)"
    )
    _add_registry_argument(gate_parser)
    gate_parser.add_argument(
        "--recommendations-table",
        default="ml.batch_recommendations",
        help="replaced with the run's batch recommendations on promotion ('' to skip)",
    )
    gate_parser.add_argument("--decision-out", type=Path, default=None)
    _add_tolerance_argument(gate_parser)
    gate_parser.set_defaults(handler=_gate)

    from recflow.promotion import gate_job

    gate_job.register(commands)

    runs = commands.add_parser(
        "runs",
        help="list and compare the logged runs (local experiment log)",
        description="Every gated run, champion or not, from the experiment log beside the local "
        "registry (runs/experiments.jsonl): outcome, registry version, commit, and metrics with "
        "their 95%% intervals. Vertex AI runs are in Vertex AI Experiments.",
    )
    runs.add_argument(
        "--registry", type=Path, default=DEFAULT_LOCAL_PATH, help="local registry JSON file"
    )
    runs.add_argument(
        "--metric",
        dest="metrics",
        action="append",
        default=[],
        metavar="SEGMENT/RANKER/METRIC",
        help="a column to compare (repeatable; default warm and all users' NDCG@10, recall@10)",
    )
    runs.add_argument("--last", type=int, default=20, help="the newest N runs (default 20)")
    runs.add_argument("--json", action="store_true", help="the records as JSON lines")
    runs.set_defaults(handler=_runs)

    ct = commands.add_parser(
        "ct",
        help="local continuous-training dry run: build, train, gate, promote, serve",
        description="dbt build -> train (no write-back) -> gate against the champion -> if "
        "promoted: register, move `champion`, write batch recommendations -> dbt build "
        "--selector serving. On DuckDB with the local registry.",
    )
    ct.add_argument("--data-dir", type=Path, default=None)
    ct.add_argument(
        "--registry", type=Path, default=DEFAULT_LOCAL_PATH, help="local registry JSON file"
    )
    ct.add_argument("--runs-dir", type=Path, default=REPO_ROOT / "runs")
    ct.add_argument(
        "--drop-feature",
        dest="drop_features",
        action="append",
        default=[],
        metavar="NAME",
        help="train without this feature (repeatable): a deliberately worse challenger",
    )
    add_run_setting_arguments(ct)
    ct.add_argument(
        "--trainer-arg",
        dest="trainer_args",
        action="append",
        default=[],
        metavar="ARG",
        help="extra python -m trainer.task argument, written with '=' (--trainer-arg=--seed=7)",
    )
    _add_tolerance_argument(ct)
    ct.set_defaults(handler=_ct)

    needed = commands.add_parser(
        "training-needed",
        help="print true if a model feeding the trainer changed against a production manifest",
    )
    needed.add_argument(
        "--state", type=Path, required=True, help="folder with the production manifest.json"
    )
    needed.set_defaults(handler=_training_needed)


def _add_registry_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--registry",
        default=os.environ.get(REGISTRY_VARIABLE) or f"local:{DEFAULT_LOCAL_PATH}",
        help=f"local:PATH or vertex (${REGISTRY_VARIABLE}; default local:runs/registry.json)",
    )


def _add_tolerance_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tolerance",
        default=os.environ.get(TOLERANCE_VARIABLE) or str(gate.DEFAULT_TOLERANCE),
        help="the challenger is refused when the whole 95%% bootstrap interval of its per-user "
        "NDCG@10 minus the champion's lies below -TOLERANCE (absolute; against a champion that "
        "cannot be re-scored: when its point value is lower than the champion's minus "
        f"TOLERANCE) (${TOLERANCE_VARIABLE}; default {gate.DEFAULT_TOLERANCE:g})",
    )


def _tolerance(value: str) -> float:
    try:
        tolerance = float(value)
    except ValueError:
        tolerance = -1.0
    if not tolerance >= 0:
        raise RegistrySettingError(
            f"--tolerance / ${TOLERANCE_VARIABLE} must be a number >= 0, got {value!r}"
        )
    return tolerance


def _gate(args: argparse.Namespace) -> int:
    from recflow.promotion.gating import GateInputError, GateRequest, run_gate

    def decide() -> dict[str, Any]:
        request = GateRequest(
            run_dir=args.run_dir,
            warehouse_uri=args.warehouse_uri,
            policy=gate.GatePolicy(tolerance=_tolerance(args.tolerance)),
            features_schema=args.features_schema,
            recommendations_table=args.recommendations_table or None,
            decision_out=args.decision_out,
        )
        return run_gate(
            request, open_registry(args.registry), open_experiment_log(args.registry, os.environ)
        )

    return _decided("gate", decide, bad_input=(GateInputError,))


def _runs(args: argparse.Namespace) -> int:
    import json

    from recflow.promotion.experiments import (
        COMPARED_METRICS,
        EXPERIMENTS_FILE,
        LocalExperimentLog,
        compare_table,
    )

    experiments = LocalExperimentLog(args.registry.parent / EXPERIMENTS_FILE)
    runs = experiments.runs()[-args.last :] if args.last > 0 else []
    if args.json:
        for run in runs:
            print(json.dumps(run, sort_keys=True))
        return 0
    if not runs:
        print(
            f"no runs logged in {experiments.path} yet (`recflow gate` and `recflow ct` log them)"
        )
        return 0
    print(compare_table(runs, args.metrics or COMPARED_METRICS))
    return 0


def _ct(args: argparse.Namespace) -> int:
    from recflow.pipeline.run_lock import WarehouseBusyError, warehouse_lock
    from recflow.pipeline.settings import Settings, run_settings_from_args
    from recflow.promotion.ct import CtConfig, run_ct
    from recflow.promotion.gating import GateInputError

    def decide() -> dict[str, Any]:
        run_settings = run_settings_from_args(args)
        config = CtConfig(
            settings=Settings.from_env(data_dir=args.data_dir, dbt_vars=run_settings.dbt_vars),
            registry_path=args.registry,
            runs_dir=args.runs_dir,
            drop_features=tuple(args.drop_features),
            top_k=run_settings.top_k,
            tolerance=_tolerance(args.tolerance),
            trainer_args=tuple(args.trainer_args),
        )
        print(run_settings.describe())
        with warehouse_lock(config.settings.duckdb_path):
            return run_ct(config)

    return _decided("ct", decide, bad_input=(GateInputError, SettingsError, WarehouseBusyError))


def _decided(
    name: str, decide: Callable[[], dict[str, Any]], *, bad_input: tuple[type[Exception], ...]
) -> int:
    try:
        decision = decide()
    except (RegistrySettingError, TrainerInputError, *bad_input) as error:
        print(f"recflow {name}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (RegistryError, DbtFailedError) as error:
        print(f"recflow {name}: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(describe(decision))
    return EXIT_FAILED if decision["outcome"] == gate.Outcome.REJECTED_BY_OUTPUT_CHECKS else 0


def describe(decision: dict[str, Any]) -> str:
    """The decision and both sets of primary numbers, for a terminal or a job log."""
    lines = [f"\ngate decision: {decision['outcome'].upper()}"]
    lines += [f"  - {reason}" for reason in decision["reasons"]]
    metric = decision["primary_metric"]
    challenger = decision["challenger"]
    lines.append(
        f"  challenger {challenger['run_dir']}: {metric} {challenger['primary_metric_value']:.4f}"
    )
    if champion := decision["champion"]:
        lines.append(
            f"  champion version {champion['version']} ({champion['scoring']}): {metric} "
            f"{champion['primary_metric_value']:.4f}"
        )
        if difference := decision.get("paired_difference"):
            lines.append(
                f"  challenger - champion, per user: {difference['mean']:+.4f}, "
                f"{difference['confidence']:.0%} interval [{difference['low']:+.4f}, "
                f"{difference['high']:+.4f}] over {difference['users']} users"
            )
        else:
            lines.append("  no paired interval: the champion's recorded metrics were compared")
        lines.append(_metrics_table(challenger["metrics"], champion["metrics"]))
    if version := decision.get("registered_version"):
        lines.append(
            f"  registered as version {version}; `champion` now points at it"
            if decision["promoted"]
            else f"  registered as version {version}, not champion (kept for comparison)"
        )
    if where := decision.get("experiment_run"):
        lines.append(f"  logged to {where}")
    return "\n".join(lines)


def _metrics_table(challenger: Any, champion: Any) -> str:
    rows = ["  segment     metric      challenger  champion"]
    for segment in ("warm_users", "all_users"):
        for metric in ("ndcg@10", "recall@10", "map@10", "ndcg@20", "recall@20"):
            ours = challenger.get(segment, {}).get("model", {}).get(metric)
            theirs = champion.get(segment, {}).get("model", {}).get(metric)
            if ours is not None and theirs is not None:
                rows.append(f"  {segment:<11} {metric:<11} {ours:>10.4f}  {theirs:>8.4f}")
    return "\n".join(rows)


def _training_needed(args: argparse.Namespace) -> int:
    from recflow.pipeline.settings import Settings
    from recflow.promotion.training_needed import training_needed

    try:
        needed = training_needed(Settings.from_env(), args.state)
    except DbtFailedError as error:
        print(f"recflow training-needed: {error}", file=sys.stderr)
        return EXIT_FAILED
    print("true" if needed else "false")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m recflow.promotion.command gate ...`: the gate alone, as a Vertex AI job runs
    it (no dbt, none of the rest of the command line)."""
    parser = argparse.ArgumentParser(prog="recflow")
    register(parser.add_subparsers(required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
