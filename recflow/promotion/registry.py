"""The model registry: versions of one model, each a finished run directory, and a `champion`
alias on the version that serves. Every gated challenger becomes a version with its evaluation
attached, promoted or not, so a refused one leaves a trace; only a promotion moves `champion`.
One interface, two places:

- `LocalRegistry`: a JSON file (default runs/registry.json) over local run directories, written
  atomically (temp file + rename, under a file lock), that keeps every version with its
  evaluation, every alias move and every gate decision, so the gate runs end to end without a
  cloud;
- `VertexRegistry`: Vertex AI Model Registry, one Model resource with a non-default version per
  gated run, a ModelEvaluation imported onto each version (metrics, intervals, the decision and
  the run directory) and the `champion` version alias. Recommendations are served from the
  warehouse, never from a Vertex AI endpoint, so a version has no serving container: it is
  uploaded as the SDK's referenced model (no containerSpec, no artifactUri; Model.upload
  requires a container whenever artifactUri is set) and its run directory lives in its
  evaluation. A team with a real prediction image sets RECFLOW_VERTEX_SERVING_IMAGE, and the
  versions then carry it and artifactUri.

`open_registry("local:PATH" | "vertex")` picks one (RECFLOW_REGISTRY in the workflows).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from recflow.pipeline.settings import REPO_ROOT

if TYPE_CHECKING:  # the SDK takes seconds to import: only the Vertex registry does.
    from google.auth.credentials import Credentials
    from google.cloud import aiplatform

log = logging.getLogger(__name__)

CHAMPION = "champion"
DEFAULT_MODEL_ID = "recflow-ranker"
DEFAULT_LOCAL_PATH = REPO_ROOT / "runs" / "registry.json"
FORMAT_VERSION = 1


class RegistryError(RuntimeError):
    """The registry cannot be read or written; the message says which and why."""


class RegistrySettingError(ValueError):
    """A registry setting is missing or malformed (exit 2)."""


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of the model."""

    version: str
    run_dir: str
    aliases: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Registration:
    """What a new version records about itself."""

    run_dir: str
    run_id: str
    git_commit: str
    dbt_manifest_sha256: str
    primary_metric: str
    primary_metric_value: float
    decision: Mapping[str, Any]
    # segment -> ranker -> metric -> [low, high], the trainer's bootstrap intervals
    intervals: Mapping[str, Any] = field(default_factory=dict)

    @property
    def outcome(self) -> str:
        return str(self.decision.get("outcome", "promoted"))

    def evaluation(self) -> dict[str, Any]:
        """What is attached to the version: the gate's numbers and where the run lives."""
        decision = self.decision
        champion = decision.get("champion") or {}
        return {
            "run_dir": self.run_dir,
            "run_id": self.run_id,
            "outcome": self.outcome,
            "primary_metric": self.primary_metric,
            "primary_metric_value": self.primary_metric_value,
            "champion_version": champion.get("version"),
            "champion_primary_metric_value": champion.get("primary_metric_value"),
            "paired_difference": decision.get("paired_difference"),
            "metrics": (decision.get("challenger") or {}).get("metrics", {}),
            "intervals": dict(self.intervals),
            "test_cutoffs": decision.get("test_cutoffs", []),
        }


class ModelRegistry(Protocol):
    """Versions of one model and the alias that marks the serving one."""

    @property
    def location(self) -> str:
        """Where the registry is, for messages."""
        ...

    def champion(self) -> ModelVersion | None:
        """The version the `champion` alias points at; None before the first promotion."""
        ...

    def register_challenger(self, registration: Registration) -> ModelVersion:
        """Add a version for a gated run, with its evaluation, without moving any alias."""
        ...

    def register_champion(self, registration: Registration) -> ModelVersion:
        """Add a version for a promoted run and move the `champion` alias onto it."""
        ...

    def set_champion(self, version: str) -> ModelVersion:
        """Move the `champion` alias to an existing version (a rollback)."""
        ...

    def record_decision(self, decision: Mapping[str, Any]) -> None:
        """Keep a gate decision, whatever its outcome."""
        ...


def open_registry(spec: str) -> ModelRegistry:
    """`local:PATH` (or `local` for runs/registry.json) or `vertex` (settings from the
    environment, see VertexRegistrySettings)."""
    kind, _, argument = spec.partition(":")
    if kind == "local":
        return LocalRegistry(Path(argument) if argument else DEFAULT_LOCAL_PATH)
    if kind == "vertex" and not argument:
        return VertexRegistry(VertexRegistrySettings.from_env(os.environ))
    raise RegistrySettingError(
        f"--registry / $RECFLOW_REGISTRY {spec!r}: use local:PATH (a JSON file, e.g. "
        "local:runs/registry.json) or vertex (Vertex AI Model Registry)"
    )


# --- local -------------------------------------------------------------------------------------


class LocalRegistry:
    """A JSON file: versions (1, 2, ...) over run directories, aliases, and a history."""

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()

    @property
    def location(self) -> str:
        return f"local:{self.path}"

    def champion(self) -> ModelVersion | None:
        state = self._read()
        version = state["aliases"].get(CHAMPION)
        return None if version is None else self._version(state, version)

    def versions(self) -> list[ModelVersion]:
        state = self._read()
        return [self._version(state, entry["version"]) for entry in state["versions"]]

    def history(self) -> list[dict[str, Any]]:
        return list(self._read()["history"])

    def register_challenger(self, registration: Registration) -> ModelVersion:
        return self._register(registration, champion=False)

    def register_champion(self, registration: Registration) -> ModelVersion:
        return self._register(registration, champion=True)

    def _register(self, registration: Registration, *, champion: bool) -> ModelVersion:
        with self._updating() as state:
            version = str(len(state["versions"]) + 1)
            state["versions"].append(
                {
                    "version": version,
                    "run_dir": registration.run_dir,
                    "run_id": registration.run_id,
                    "registered_at": _now(),
                    "labels": registration_labels(registration),
                    "primary_metric": registration.primary_metric,
                    "primary_metric_value": registration.primary_metric_value,
                    "outcome": registration.outcome,
                    "evaluation": registration.evaluation(),
                }
            )
            state["history"].append(
                {
                    "at": _now(),
                    "event": "registered",
                    "version": version,
                    "run_id": registration.run_id,
                }
            )
            if champion:
                self._move_alias(state, version)
        log.info("registered version %s (%s) in %s", version, registration.run_dir, self.path)
        return self._version(self._read(), version)

    def evaluation(self, version: str) -> dict[str, Any]:
        """The evaluation attached to `version` when it was registered."""
        state = self._read()
        entry = next((e for e in state["versions"] if e["version"] == version), None)
        if entry is None:
            raise RegistrySettingError(f"{self.path} has no version {version!r}")
        return dict(entry.get("evaluation") or {})

    def set_champion(self, version: str) -> ModelVersion:
        with self._updating() as state:
            if not any(entry["version"] == version for entry in state["versions"]):
                raise RegistrySettingError(f"{self.path} has no version {version!r}")
            self._move_alias(state, version)
        return self._version(self._read(), version)

    def record_decision(self, decision: Mapping[str, Any]) -> None:
        with self._updating() as state:
            state["history"].append({"at": _now(), "event": "decision", "decision": decision})

    @staticmethod
    def _move_alias(state: dict[str, Any], version: str) -> None:
        previous = state["aliases"].get(CHAMPION)
        state["aliases"][CHAMPION] = version
        state["history"].append(
            {
                "at": _now(),
                "event": "alias_moved",
                "alias": CHAMPION,
                "from": previous,
                "to": version,
            }
        )

    @staticmethod
    def _version(state: Mapping[str, Any], version: str) -> ModelVersion:
        entry = next(entry for entry in state["versions"] if entry["version"] == version)
        aliases = tuple(alias for alias, target in state["aliases"].items() if target == version)
        return ModelVersion(
            version=version, run_dir=entry["run_dir"], aliases=aliases, labels=entry["labels"]
        )

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"format": FORMAT_VERSION, "versions": [], "aliases": {}, "history": []}
        try:
            state = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise RegistryError(f"cannot read the registry {self.path}: {error}") from error
        if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
            raise RegistryError(
                f"{self.path} is not a recflow registry file (format {FORMAT_VERSION})"
            )
        return state

    @contextlib.contextmanager
    def _updating(self) -> Iterator[dict[str, Any]]:
        """Read, let the block change, then replace the file in one rename; one writer at once."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.with_name(f".{self.path.name}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self._read()
            yield state
            _write_atomically(self.path, json.dumps(state, indent=2, sort_keys=True) + "\n")


def _write_atomically(path: Path, text: str) -> None:
    """A reader sees the old file or the new one, never a half-written one."""
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    ) as handle:
        temporary = Path(handle.name)
        try:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    temporary.replace(path)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def registration_labels(registration: Registration) -> dict[str, str]:
    """Labels in Vertex AI's rules (lowercase [a-z0-9_-], at most 63 characters), the same for
    both registries so a local version reads like a Vertex one."""
    from recflow.gcp.vertex_submit import label_value

    metric = registration.primary_metric.rsplit("/", 1)[-1]
    return {
        "git_commit": label_value(registration.git_commit),
        "dbt_manifest_sha": label_value(registration.dbt_manifest_sha256),
        "recflow_run_id": label_value(registration.run_id),
        "gate_outcome": label_value(registration.outcome),
        label_value(metric.replace("@", "_at_")): label_value(
            f"{registration.primary_metric_value:.4f}".replace(".", "_")
        ),
    }


# --- Vertex AI ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VertexRegistrySettings:
    """Where the model lives in Vertex AI Model Registry."""

    project: str
    region: str
    model_id: str = DEFAULT_MODEL_ID
    # Empty: versions are referenced models without a serving container (served from the
    # warehouse). Only a real prediction image belongs here; never the training image.
    serving_image: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> VertexRegistrySettings:
        missing = [
            name for name in ("RECFLOW_GCP_PROJECT", "RECFLOW_GCP_REGION") if not environ.get(name)
        ]
        if missing:
            raise RegistrySettingError(
                f"the Vertex AI registry needs {' and '.join(missing)} (the project and region "
                "of the Model Registry), as `recflow submit` does"
            )
        return cls(
            project=environ["RECFLOW_GCP_PROJECT"],
            region=environ["RECFLOW_GCP_REGION"],
            model_id=environ.get("RECFLOW_VERTEX_MODEL_ID") or DEFAULT_MODEL_ID,
            serving_image=environ.get("RECFLOW_VERTEX_SERVING_IMAGE") or "",
        )


class VertexRegistry:
    """Vertex AI Model Registry through the aiplatform SDK: `models/<model_id>`, a non-default
    version per gated run with a ModelEvaluation attached, and the `champion` alias."""

    def __init__(
        self,
        settings: VertexRegistrySettings,
        *,
        credentials: Credentials | None = None,
        api_endpoint: str | None = None,
        api_transport: str | None = None,
    ) -> None:
        from google.cloud import aiplatform

        self.settings = settings
        aiplatform.init(
            project=settings.project,
            location=settings.region,
            credentials=credentials,
            api_endpoint=api_endpoint,
            api_transport=api_transport,
        )

    @property
    def location(self) -> str:
        s = self.settings
        return f"vertex:projects/{s.project}/locations/{s.region}/models/{s.model_id}"

    def champion(self) -> ModelVersion | None:
        return self._get(CHAMPION)

    def register_challenger(self, registration: Registration) -> ModelVersion:
        return self._register(registration, champion=False)

    def register_champion(self, registration: Registration) -> ModelVersion:
        return self._register(registration, champion=True)

    def _register(self, registration: Registration, *, champion: bool) -> ModelVersion:
        from google.api_core import exceptions as api_exceptions
        from google.cloud import aiplatform

        if not registration.run_dir.startswith("gs://"):
            raise RegistrySettingError(
                f"Vertex AI Model Registry keeps gs:// artifacts; {registration.run_dir} is local "
                "(use --registry local:PATH for local runs)"
            )
        exists = self._exists()
        serving = self.settings.serving_image
        try:
            model = aiplatform.Model.upload(
                display_name=self.settings.model_id,
                # The first upload creates models/<model_id>; later ones add versions to it.
                model_id=None if exists else self.settings.model_id,
                parent_model=self.settings.model_id if exists else None,
                # Neither set: a referenced model, registered without a serving container.
                artifact_uri=registration.run_dir if serving else None,
                serving_container_image_uri=serving or None,
                is_default_version=False,
                version_aliases=[CHAMPION] if champion else None,
                version_description=_version_description(registration, registration.decision),
                labels=registration_labels(registration),
                sync=True,
            )
            self._import_evaluation(model, registration)
        except api_exceptions.GoogleAPICallError as error:
            raise RegistryError(
                f"registering in {self.location} failed: {error.message}"
            ) from error
        log.info("registered %s version %s", model.resource_name, model.version_id)
        return self._version(model)

    def set_champion(self, version: str) -> ModelVersion:
        from google.api_core import exceptions as api_exceptions
        from google.cloud import aiplatform

        try:
            aiplatform.ModelRegistry(self.settings.model_id).add_version_aliases(
                [CHAMPION], version
            )
        except api_exceptions.GoogleAPICallError as error:
            raise RegistryError(
                f"moving {CHAMPION} to version {version} of {self.location} failed: {error.message}"
            ) from error
        moved = self._get(CHAMPION)
        if moved is None or moved.version != version:
            raise RegistryError(f"{CHAMPION} of {self.location} did not move to version {version}")
        return moved

    def record_decision(self, decision: Mapping[str, Any]) -> None:
        """Nothing more to do: decision.json is in the run directory, and every gated run's
        version carries the decision in its evaluation, description and labels."""

    def evaluation(self, version: str) -> dict[str, Any]:
        """The evaluation imported onto `version` (empty when it has none)."""
        from google.api_core import exceptions as api_exceptions
        from google.cloud import aiplatform

        try:
            model = aiplatform.Model(model_name=self.settings.model_id, version=version)
            return _evaluation_of(model)
        except api_exceptions.GoogleAPICallError as error:
            raise RegistryError(f"reading {self.location} failed: {error.message}") from error

    def _import_evaluation(self, model: aiplatform.Model, registration: Registration) -> None:
        """ModelService.ImportModelEvaluation onto the new version: the metrics as numbers (no
        metrics schema: Vertex AI has none for ranking; the field is optional), the rest as
        metadata."""
        from google.cloud.aiplatform_v1.types import ModelEvaluation
        from google.protobuf import json_format, struct_pb2

        evaluation = registration.evaluation()
        metrics = struct_pb2.Value()
        json_format.ParseDict(evaluation_metrics(evaluation), metrics)
        metadata = struct_pb2.Value()
        json_format.ParseDict(
            json.loads(json.dumps({k: v for k, v in evaluation.items() if k != "metrics"})),
            metadata,
        )
        model.api_client.import_model_evaluation(
            parent=model.versioned_resource_name,
            model_evaluation=ModelEvaluation(
                display_name=f"recflow gate {registration.run_id}",
                metrics=metrics,
                metadata=metadata,
            ),
        )

    def _exists(self) -> bool:
        from google.api_core import exceptions as api_exceptions
        from google.cloud import aiplatform

        try:
            aiplatform.Model(model_name=self.settings.model_id)
        except api_exceptions.NotFound:
            return False
        except api_exceptions.GoogleAPICallError as error:
            raise RegistryError(f"reading {self.location} failed: {error.message}") from error
        return True

    def _get(self, version: str | None) -> ModelVersion | None:
        from google.api_core import exceptions as api_exceptions
        from google.cloud import aiplatform

        try:
            model = aiplatform.Model(model_name=self.settings.model_id, version=version)
            return self._version(model)
        except api_exceptions.NotFound:
            return None
        except api_exceptions.GoogleAPICallError as error:
            raise RegistryError(f"reading {self.location} failed: {error.message}") from error

    def _version(self, model: aiplatform.Model) -> ModelVersion:
        resource = model.gca_resource
        run_dir = str(resource.artifact_uri) or str(_evaluation_of(model).get("run_dir", ""))
        if not run_dir:
            raise RegistryError(
                f"version {resource.version_id} of {self.location} has neither an artifact URI "
                "nor an evaluation naming its run directory: it was not registered by recflow"
            )
        return ModelVersion(
            version=str(resource.version_id),
            run_dir=run_dir,
            aliases=tuple(resource.version_aliases),
            labels=dict(resource.labels),
        )


def evaluation_metrics(evaluation: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of an evaluation, flat (`segment/ranker/metric`, `.../low`, `.../high`,
    `gate/...`), as Vertex AI shows a ModelEvaluation's metrics and Experiments its runs'."""
    flat: dict[str, float] = {}
    for segment, rankers in (evaluation.get("metrics") or {}).items():
        for ranker, metrics in rankers.items():
            for name, value in metrics.items():
                if isinstance(value, int | float):
                    flat[f"{segment}/{ranker}/{name}"] = float(value)
    for segment, rankers in (evaluation.get("intervals") or {}).items():
        for ranker, metrics in rankers.items():
            for name, bounds in metrics.items():
                if isinstance(bounds, list | tuple) and len(bounds) == 2:
                    flat[f"{segment}/{ranker}/{name}/low"] = float(bounds[0])
                    flat[f"{segment}/{ranker}/{name}/high"] = float(bounds[1])
    flat["gate/primary_metric_value"] = float(evaluation["primary_metric_value"])
    if (champion := evaluation.get("champion_primary_metric_value")) is not None:
        flat["gate/champion_primary_metric_value"] = float(champion)
    for key in ("mean", "low", "high", "users"):
        value = (evaluation.get("paired_difference") or {}).get(key)
        if isinstance(value, int | float):
            flat[f"gate/paired_difference/{key}"] = float(value)
    return flat


def _evaluation_of(model: aiplatform.Model) -> dict[str, Any]:
    """The metadata of the newest evaluation imported onto this version."""
    from google.protobuf import json_format

    evaluations = list(
        model.api_client.list_model_evaluations(parent=model.versioned_resource_name)
    )
    if not evaluations:
        return {}
    newest = max(evaluations, key=lambda evaluation: evaluation.create_time)
    return dict(json_format.MessageToDict(newest._pb.metadata) or {})


def _version_description(registration: Registration, decision: Mapping[str, Any]) -> str:
    champion = decision.get("champion") or {}
    against = (
        f" vs champion {champion.get('primary_metric_value', float('nan')):.4f}"
        f" (version {champion.get('version')}, {champion.get('scoring')})"
        if champion
        else " (no champion yet)"
    )
    return (
        f"{decision.get('outcome', 'promoted')}: {registration.primary_metric} "
        f"{registration.primary_metric_value:.4f}{against}; run {registration.run_id}; "
        f"decision.json in {registration.run_dir}"
    )
