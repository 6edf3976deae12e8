"""Read a finished trainer run directory (a local path or gs://) and write the gate's decision
into it. A directory without run_metadata.json is not a finished run (see trainer.gcs)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import lightgbm as lgb
import pyarrow as pa
import pyarrow.parquet as pq

from trainer import gcs
from trainer.feature_spec import FeatureSpec

METADATA = "run_metadata.json"
DECISION = "decision.json"
# The header line that lets LightGBM parse the trees in parallel threads (see parse_model).
_TREE_SIZES = re.compile(r"^tree_sizes=.*\n", flags=re.MULTILINE)


class RunDirError(ValueError):
    """A run directory that is missing, unfinished or not a trainer run."""


@dataclass(frozen=True)
class FinishedRun:
    """What the gate needs from one run directory."""

    uri: str
    metadata: dict[str, Any]
    metrics: dict[str, Any]  # segment -> ranker -> metric -> value
    spec: FeatureSpec
    model_text: str
    intervals: dict[str, Any] = field(default_factory=dict)  # ... -> metric -> [low, high]

    @property
    def run_id(self) -> str:
        return str(self.metadata.get("run_id", self.uri.rstrip("/").rsplit("/", 1)[-1]))

    @property
    def top_k(self) -> int:
        return int(self.metadata.get("top_k", 20))

    def booster(self) -> lgb.Booster:
        return parse_model(self.model_text)

    def batch_recommendations(self) -> pa.Table:
        filesystem, path = _fs(self.uri)
        with filesystem.open(f"{path}/batch_recommendations.parquet", "rb") as handle:
            return pq.read_table(handle)


def read_run(uri: str) -> FinishedRun:
    """The run at `uri`; RunDirError unless it is a finished trainer run.

    A local run directory is returned by its absolute path, so what the registry records from
    it resolves from any working directory; a gs:// URI stays as given.
    """
    uri = absolute_uri(uri)
    filesystem, path = _fs(uri)
    if not filesystem.exists(f"{path}/{METADATA}"):
        raise RunDirError(
            f"{uri} is not a finished trainer run: it has no {METADATA} (a run directory gets it "
            "last; check the path, or that the training job succeeded)"
        )
    try:
        metadata = _read_json(filesystem, f"{path}/{METADATA}")
        evaluation = _read_json(filesystem, f"{path}/metrics.json")
        metrics = evaluation["metrics"]
        spec = FeatureSpec.from_json(
            _read_json(filesystem, f"{path}/feature_spec.json"), source=f"{uri}/feature_spec.json"
        )
        model_text = filesystem.cat_file(f"{path}/model.txt").decode()
    except (FileNotFoundError, KeyError, ValueError) as error:
        raise RunDirError(f"{uri} is not a complete trainer run: {error}") from error
    if not is_complete_model(model_text):
        raise RunDirError(
            f"{uri}/model.txt is not a complete LightGBM model (truncated or corrupt: it does not "
            "end with the trees, parameters and categories a saved model ends with)"
        )
    try:
        parse_model(model_text)
    except lgb.basic.LightGBMError as error:
        raise RunDirError(
            f"{uri}/model.txt is not a valid LightGBM model (corrupt: {error})"
        ) from error
    return FinishedRun(
        uri=uri,
        metadata=metadata,
        metrics=metrics,
        spec=spec,
        model_text=model_text,
        intervals=dict(evaluation.get("intervals") or {}),
    )


def write_decision(uri: str, decision: dict[str, Any]) -> str:
    """Write decision.json into the run directory (one object write: whole or absent)."""
    filesystem, path = _fs(uri)
    target = f"{path}/{DECISION}"
    filesystem.pipe_file(target, _json_bytes(decision))
    return f"{uri.rstrip('/')}/{DECISION}"


def _json_bytes(payload: dict[str, Any]) -> bytes:
    return (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode()


def _read_json(filesystem: fsspec.AbstractFileSystem, path: str) -> dict[str, Any]:
    return json.loads(filesystem.cat_file(path))


def is_complete_model(model_text: str) -> bool:
    """Whether `model_text` ends as every model LightGBM's Python package saves does.

    Checked before LightGBM parses it: a file cut inside its trees makes LightGBM's parser
    threads abort the whole process instead of raising an error the gate could report.
    """
    lines = model_text.rstrip("\n").split("\n")
    return (
        "end of trees" in lines
        and "end of parameters" in lines
        and lines[-1].startswith("pandas_categorical:")
    )


def parse_model(model_text: str) -> lgb.Booster:
    """The model in `model_text`; LightGBMError, never a process abort, when it is corrupt.

    Given the header's `tree_sizes`, LightGBM parses the trees in parallel threads, and a format
    error there terminates the process; without it the trees are parsed one after another and
    an error is raised. The predictions are the same.
    """
    return lgb.Booster(model_str=_TREE_SIZES.sub("", model_text, count=1))


def absolute_uri(uri: str) -> str:
    """`uri` with a local path (plain or file://) made absolute; any other URI unchanged."""
    if "://" in uri and not uri.startswith("file://"):
        return uri
    return str(Path(uri.removeprefix("file://")).resolve())


def _fs(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    stripped = uri.rstrip("/")
    if gcs.is_gcs_uri(stripped):
        return gcs.filesystem(), stripped.removeprefix(gcs.SCHEME)
    if "://" in stripped and not stripped.startswith("file://"):
        raise RunDirError(f"{uri}: a run directory is a local path or gs://bucket/prefix")
    return fsspec.filesystem("file"), stripped.removeprefix("file://")
