"""The trainer's view of the dbt project: which columns are label, split, features.

The label, split, features, categorical features, candidate source ranks and the popularity
rank come from column `meta.roles` in the dbt YAML, read from `manifest.json`, so a data
scientist adds a feature in SQL and YAML and the trainer follows with no Python change. The ids
and the cutoff (keys and group) are the trainer's own contract (trainer.columns): the manifest
must declare those columns.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from trainer import columns
from trainer.errors import TrainerInputError

PROJECT = "recflow"
EXAMPLES_MODEL = "training_examples"
SCORING_MODEL = "scoring_candidates"
ITEM_FEATURES_MODEL = "item_features"
POSITIVES_MODEL = "label_window_positives"
KNOWN_USERS_MODEL = "known_users"
HISTORY_MODEL = "user_item_history"


@dataclass(frozen=True)
class FeatureSpec:
    """Column roles of the training table, in table order."""

    keys: tuple[str, ...]
    group: tuple[str, ...]
    label: str
    split: str
    features: tuple[str, ...]
    categorical: tuple[str, ...]
    source_ranks: Mapping[str, str]  # candidate source name -> its rank column
    popularity_rank: str  # item_features column ordering the popularity fallback
    # Declared as features in the dbt YAML but left out of this model (`--exclude-feature`):
    # still expected in the tables, never trained on.
    excluded_features: tuple[str, ...] = ()

    def without_features(self, names: Iterable[str]) -> FeatureSpec:
        """The spec with `names` left out of the model's features; each must be a feature."""
        excluded = tuple(dict.fromkeys(names))
        unknown = sorted(set(excluded) - set(self.features))
        if unknown:
            raise TrainerInputError(
                f"Cannot exclude {', '.join(unknown)}: not a feature of {EXAMPLES_MODEL} (its "
                f"features are {', '.join(self.features)})."
            )
        kept = tuple(name for name in self.features if name not in excluded)
        if not kept:
            raise TrainerInputError("Excluding every feature leaves nothing to train on.")
        return replace(
            self,
            features=kept,
            categorical=tuple(name for name in self.categorical if name not in excluded),
            excluded_features=(*self.excluded_features, *excluded),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "keys": list(self.keys),
            "group": list(self.group),
            "label": self.label,
            "split": self.split,
            "features": list(self.features),
            "categorical": list(self.categorical),
            "source_ranks": dict(self.source_ranks),
            "popularity_rank": self.popularity_rank,
            "excluded_features": list(self.excluded_features),
        }

    @classmethod
    def from_json(
        cls, payload: Mapping[str, Any], *, source: str = "feature_spec.json"
    ) -> FeatureSpec:
        """The spec a run saved (`to_json`), e.g. to score that run's model again."""
        try:
            return cls(
                keys=tuple(payload["keys"]),
                group=tuple(payload["group"]),
                label=payload["label"],
                split=payload["split"],
                features=tuple(payload["features"]),
                categorical=tuple(payload["categorical"]),
                source_ranks=dict(payload["source_ranks"]),
                popularity_rank=payload["popularity_rank"],
                excluded_features=tuple(payload.get("excluded_features", ())),
            )
        except (KeyError, TypeError) as error:
            raise TrainerInputError(f"{source} is not a saved feature spec: {error!r}") from error

    def check_columns(self, table_name: str, columns: Iterable[str], *, with_label: bool) -> None:
        """Fail, naming the columns, when a table and the spec disagree in either direction."""
        expected = {*self.keys, *self.group, self.split, *self.features, *self.excluded_features}
        if with_label:
            expected.add(self.label)
        present = set(columns)
        missing = sorted(expected - present)
        unexpected = sorted(present - expected - {self.label})
        hint = (
            "The dbt YAML (manifest.json) and the table disagree: rebuild with `dbt build` so "
            "both come from the same project version, or fix the column in the mart's SQL/YAML."
        )
        if missing:
            raise TrainerInputError(
                f"{table_name} has no column(s) {', '.join(missing)} that the feature spec "
                f"declares. {hint}"
            )
        if unexpected:
            raise TrainerInputError(
                f"{table_name} has column(s) {', '.join(unexpected)} with no role in the "
                f"feature spec (add them to the model's YAML with a `roles` meta). {hint}"
            )


def manifest_hash(manifest_bytes: bytes) -> str:
    return hashlib.sha256(manifest_bytes).hexdigest()


def spec_from_manifest(manifest_bytes: bytes, *, source: str = "manifest.json") -> FeatureSpec:
    """Build the spec from a dbt manifest's `training_examples` and `item_features` columns."""
    try:
        manifest = json.loads(manifest_bytes)
        nodes = manifest["nodes"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise TrainerInputError(
            f"{source} is not a dbt manifest ({error}); run `dbt build` (or `dbt parse`) to "
            "write one."
        ) from error
    examples = _model_columns(nodes, EXAMPLES_MODEL, source)
    item_features = _model_columns(nodes, ITEM_FEATURES_MODEL, source)
    missing_ids = [name for name in columns.KEYS if name not in examples]
    if missing_ids:
        raise TrainerInputError(
            f"{source}: model {EXAMPLES_MODEL} declares no column(s) {', '.join(missing_ids)}; "
            f"the trainer needs {', '.join(columns.KEYS)} in every example (add them to the "
            "model's SQL and YAML)."
        )

    by_role: dict[str, list[str]] = {}
    source_ranks: dict[str, str] = {}
    for name, column in examples.items():
        meta = column.get("meta") or {}
        for role in meta.get("roles", []):
            by_role.setdefault(role, []).append(name)
            if role == "source_rank":
                source_ranks[meta.get("candidate_source", name)] = name
    popularity = [
        name
        for name, column in item_features.items()
        if "popularity_rank" in (column.get("meta") or {}).get("roles", [])
    ]

    def exactly_one(role: str, found: list[str], model: str) -> str:
        if len(found) != 1:
            raise TrainerInputError(
                f"{source}: model {model} must have exactly one column with role '{role}' in "
                f"its YAML meta, found {found or 'none'}."
            )
        return found[0]

    label = exactly_one("label", by_role.get("label", []), EXAMPLES_MODEL)
    split = exactly_one("split", by_role.get("split", []), EXAMPLES_MODEL)
    features = tuple(by_role.get("feature", []))
    if not features:
        raise TrainerInputError(
            f"{source}: no column of {EXAMPLES_MODEL} has role 'feature'; declare features "
            "with `config: {meta: {roles: [feature]}}` in its YAML."
        )
    not_features = sorted(set(by_role.get("categorical", [])) - set(features))
    if not_features:
        raise TrainerInputError(
            f"{source}: column(s) {', '.join(not_features)} of {EXAMPLES_MODEL} are "
            "'categorical' but not 'feature'."
        )
    return FeatureSpec(
        keys=columns.KEYS,
        group=columns.GROUP,
        label=label,
        split=split,
        features=features,
        categorical=tuple(by_role.get("categorical", [])),
        source_ranks=source_ranks,
        popularity_rank=exactly_one("popularity_rank", popularity, ITEM_FEATURES_MODEL),
    )


def _model_columns(nodes: Mapping[str, Any], model: str, source: str) -> Mapping[str, Any]:
    node = nodes.get(f"model.{PROJECT}.{model}")
    if node is None:
        raise TrainerInputError(
            f"{source} has no model '{model}': is it the manifest of this project's dbt build?"
        )
    return node["columns"]
