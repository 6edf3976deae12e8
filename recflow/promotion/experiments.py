"""Runs you can compare: every gated run, champion or not, with its parameters, its metrics and
their intervals, the dbt manifest hash, the git commit and what the gate made of it.

- `LocalExperimentLog`: append-only JSON lines, one per run (runs/experiments.jsonl beside the
  local registry); `recflow runs` lists and compares them;
- `VertexExperimentLog`: Vertex AI Experiments through the SDK's ExperimentRun API, one run per
  gated run under one experiment (default: the model id), params and metrics on the run. No
  backing TensorBoard: nothing here is a time series.

The gate logs the run before it acts on the decision, so a promotion is never left without its
record; a run that cannot be logged stops the gate before anything served changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from recflow.promotion.registry import (
    DEFAULT_MODEL_ID,
    Registration,
    RegistryError,
    RegistrySettingError,
    evaluation_metrics,
)

if TYPE_CHECKING:  # the SDK takes seconds to import: only the Vertex log does.
    from google.auth.credentials import Credentials

    from recflow.promotion.run_dirs import FinishedRun

log = logging.getLogger(__name__)

EXPERIMENTS_FILE = "experiments.jsonl"
EXPERIMENT_VARIABLE = "RECFLOW_VERTEX_EXPERIMENT"
# Metadata context ids (an experiment run is `<experiment>-<run>`): [a-z0-9][a-z0-9-]{0,127}.
_CONTEXT_ID_INVALID = re.compile(r"[^a-z0-9-]+")
_CONTEXT_ID_MAX = 128
Value = float | int | str


@dataclass(frozen=True)
class RunRecord:
    """One run as Experiments shows it: flat params and metrics, and where it came from."""

    run_id: str
    run_dir: str
    git_commit: str
    dbt_manifest_sha256: str
    outcome: str
    registered_version: str | None
    params: Mapping[str, Value] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "run_dir": self.run_dir,
            "git_commit": self.git_commit,
            "dbt_manifest_sha256": self.dbt_manifest_sha256,
            "outcome": self.outcome,
            "registered_version": self.registered_version,
            "params": dict(self.params),
            "metrics": dict(self.metrics),
        }


def run_record(
    run: FinishedRun,
    registration: Registration,
    decision: Mapping[str, Any],
    registered_version: str | None,
) -> RunRecord:
    """The record of a gated run: the trainer's parameters and data, the gate's policy, and the
    evaluation attached to its registry version (re-scored metrics, intervals, paired
    difference)."""
    metadata = run.metadata
    params: dict[str, Value] = {
        "run_dir": run.uri,
        "git_commit": registration.git_commit,
        "dbt_manifest_sha256": registration.dbt_manifest_sha256,
        "training_data_sha256": str(metadata.get("training_data_sha256", "")),
        "warehouse_uri": str(metadata.get("warehouse_uri", "")),
        "top_k": int(metadata.get("top_k", run.top_k)),
        "ks": json.dumps(metadata.get("ks", [])),
        "excluded_features": json.dumps(metadata.get("excluded_features", [])),
        "gate/outcome": registration.outcome,
        "gate/primary_metric": registration.primary_metric,
        "gate/tolerance": float(decision.get("tolerance", 0.0)),
        "gate/comparison": str(decision.get("comparison", "")),
        "gate/test_cutoffs": json.dumps(decision.get("test_cutoffs", [])),
        "gate/champion_version": str((decision.get("champion") or {}).get("version") or ""),
        "registered_version": registered_version or "",
    }
    for name, value in (metadata.get("parameters") or {}).items():
        params[f"lightgbm/{name}"] = _value(value)
    for name, value in (metadata.get("dbt_vars") or {}).items():
        params[f"dbt_vars/{name}"] = _value(value)
    metrics = evaluation_metrics(registration.evaluation())
    if (best := metadata.get("best_iteration")) is not None:
        metrics["train/best_iteration"] = float(best)
    for table, rows in (metadata.get("rows") or {}).items():
        metrics[f"rows/{table}"] = float(rows)
    return RunRecord(
        run_id=run.run_id,
        run_dir=run.uri,
        git_commit=registration.git_commit,
        dbt_manifest_sha256=registration.dbt_manifest_sha256,
        outcome=registration.outcome,
        registered_version=registered_version,
        params=params,
        metrics=metrics,
    )


def _value(value: Any) -> Value:
    """Experiments keeps numbers and strings; anything else as its JSON text."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float | str):
        return value
    return json.dumps(value, sort_keys=True)


class ExperimentLog(Protocol):
    """Where gated runs are logged for comparison."""

    @property
    def location(self) -> str:
        """Where the runs are, for messages and decision.json."""
        ...

    def log_run(self, record: RunRecord) -> str:
        """Log one run; returns where it was logged."""
        ...


class ExperimentLogError(RegistryError):
    """A run could not be logged (exit 1): the gate stops before acting on its decision."""


def open_experiment_log(registry_spec: str, environ: Mapping[str, str]) -> ExperimentLog:
    """The log that goes with a registry: `local:PATH` -> experiments.jsonl beside PATH;
    `vertex` -> Vertex AI Experiments in the same project and region."""
    from recflow.promotion.registry import DEFAULT_LOCAL_PATH

    kind, _, argument = registry_spec.partition(":")
    if kind == "local":
        registry_path = Path(argument) if argument else DEFAULT_LOCAL_PATH
        return LocalExperimentLog(registry_path.parent / EXPERIMENTS_FILE)
    if kind == "vertex":
        return VertexExperimentLog(VertexExperimentSettings.from_env(environ))
    raise RegistrySettingError(f"no experiment log goes with the registry {registry_spec!r}")


# --- local -------------------------------------------------------------------------------------


class LocalExperimentLog:
    """An append-only JSON-lines file, one object per logged run; never rewritten."""

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()

    @property
    def location(self) -> str:
        return f"local:{self.path}"

    def log_run(self, record: RunRecord) -> str:
        line = json.dumps({"logged_at": _now(), **record.to_json()}, sort_keys=True) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._appending() as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:
            raise ExperimentLogError(f"cannot log the run to {self.path}: {error}") from error
        log.info("logged run %s to %s", record.run_id, self.path)
        return self.location

    def runs(self) -> list[dict[str, Any]]:
        """Every logged run, oldest first; a line cut short by a crash is skipped, named."""
        if not self.path.exists():
            return []
        runs = []
        for number, line in enumerate(self.path.read_text().splitlines(), start=1):
            try:
                runs.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning("%s line %d is not a complete record: skipped", self.path, number)
        return runs

    @contextlib.contextmanager
    def _appending(self) -> Iterator[Any]:
        """One writer at once, so two gates never interleave their lines."""
        with self.path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield handle


# --- Vertex AI Experiments ---------------------------------------------------------------------


@dataclass(frozen=True)
class VertexExperimentSettings:
    project: str
    region: str
    experiment: str = DEFAULT_MODEL_ID

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> VertexExperimentSettings:
        from recflow.promotion.registry import VertexRegistrySettings

        registry = VertexRegistrySettings.from_env(environ)
        experiment = environ.get(EXPERIMENT_VARIABLE) or registry.model_id
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,127}", experiment):
            raise RegistrySettingError(
                f"${EXPERIMENT_VARIABLE} / the model id {experiment!r} names the Vertex AI "
                "experiment: 1-128 lowercase letters, digits or '-', not starting with '-'"
            )
        return cls(project=registry.project, region=registry.region, experiment=experiment)


def experiment_run_name(experiment: str, run_id: str) -> str:
    """A run name Vertex AI accepts: the run id lowercased, other characters as '-', short
    enough that `<experiment>-<run>` (the run's context id) fits in 128 characters."""
    name = _CONTEXT_ID_INVALID.sub("-", run_id.lower()).strip("-") or "run"
    return name[: _CONTEXT_ID_MAX - len(experiment) - 1].rstrip("-")


class VertexExperimentLog:
    """Vertex AI Experiments: `Experiment.get_or_create`, then `ExperimentRun.create` (or the
    existing run, when the gate is run again on the same run), `log_params`, `log_metrics`,
    `end_run`."""

    def __init__(
        self,
        settings: VertexExperimentSettings,
        *,
        credentials: Credentials | None = None,
        api_endpoint: str | None = None,
        api_transport: str | None = None,
    ) -> None:
        self.settings = settings
        self._client_options = {
            "credentials": credentials,
            "api_endpoint": api_endpoint,
            "api_transport": api_transport,
        }

    @property
    def location(self) -> str:
        s = self.settings
        return f"vertex:projects/{s.project}/locations/{s.region}/experiments/{s.experiment}"

    def log_run(self, record: RunRecord) -> str:
        from google.api_core import exceptions as api_exceptions
        from google.cloud import aiplatform

        s = self.settings
        aiplatform.init(project=s.project, location=s.region, **self._client_options)
        name = experiment_run_name(s.experiment, record.run_id)
        try:
            experiment = aiplatform.Experiment.get_or_create(s.experiment)
            try:
                run = aiplatform.ExperimentRun.create(name, experiment=experiment)
            except (api_exceptions.Conflict, RuntimeError):  # the gate ran on it before
                run = aiplatform.ExperimentRun(name, experiment=experiment)
            run.log_params(_one_line(record.params))
            run.log_metrics(dict(record.metrics))
            run.end_run()
        except (api_exceptions.GoogleAPICallError, ValueError) as error:
            message = getattr(error, "message", str(error))
            raise ExperimentLogError(
                f"cannot log run {record.run_id} to {self.location}: {message}"
            ) from error
        log.info("logged run %s to %s as %s", record.run_id, self.location, name)
        return f"{self.location}/runs/{name}"


def _one_line(params: Mapping[str, Value]) -> dict[str, Value]:
    """Strings as Experiments shows them: one line, at most 1,000 characters."""
    return {
        key: value[:1000].replace("\n", " ") if isinstance(value, str) else value
        for key, value in params.items()
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- comparing local runs ----------------------------------------------------------------------

COMPARED_METRICS = (
    "warm_users/model/ndcg@10",
    "warm_users/model/recall@10",
    "all_users/model/ndcg@10",
)


def compare_table(runs: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> str:
    """One row per run, newest last: outcome, version, commit, and each metric with its 95%
    interval when the trainer recorded one."""
    header = ["run", "outcome", "version", "commit", *metrics]
    rows = [header]
    for run in runs:
        values = run.get("metrics", {})
        cells = [
            str(run.get("run_id", "")),
            str(run.get("outcome", "")),
            str(run.get("registered_version") or "-"),
            str(run.get("git_commit", ""))[:8],
        ]
        for metric in metrics:
            value = values.get(metric)
            low, high = values.get(f"{metric}/low"), values.get(f"{metric}/high")
            text = "-" if value is None else f"{value:.4f}"
            if value is not None and low is not None and high is not None:
                text += f" [{low:.4f}, {high:.4f}]"
            cells.append(text)
        rows.append(cells)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )
