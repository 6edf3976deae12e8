"""The feature spec comes from dbt's manifest: column roles in the marts' YAML decide the label,
split, features, categorical features and baselines (the ids and cutoff are the trainer's own,
trainer.columns, and need only be declared), and any disagreement between
the manifest and a table (or inside the manifest) stops the trainer with a message naming the
model, role or column at fault."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from conftest import REPO_ROOT, TinyWarehouse
from trainer_harness import column_types, manifest_of

from trainer.errors import TrainerInputError
from trainer.feature_spec import (
    EXAMPLES_MODEL,
    ITEM_FEATURES_MODEL,
    SCORING_MODEL,
    FeatureSpec,
    manifest_hash,
    spec_from_manifest,
)

MARTS_YAML = REPO_ROOT / "dbt" / "models" / "marts" / "ml" / "_ml__models.yml"
SOURCE = "somewhere/target/manifest.json"


def column(name: str, *roles: str, **meta: str) -> dict[str, Any]:
    """One manifest column entry with `meta.roles` (and any other meta keys)."""
    return {"name": name, "meta": {"roles": list(roles), **meta} if roles else {}}


def valid_examples_columns() -> list[dict[str, Any]]:
    """A small but complete training table: every role once, in a deliberate order."""
    return [
        column("user_id"),
        column("item_id"),
        column("split", "split"),
        column("segment", "feature", "categorical"),
        column("score_a", "feature"),
        column("covis_rank", "feature", "source_rank", candidate_source="covisitation"),
        column("pop_rank", "feature", "source_rank"),
        column("note"),
        column("cutoff_date"),
        column("label", "label"),
    ]


def manifest(
    examples: list[dict[str, Any]] | None = None,
    item_features: list[dict[str, Any]] | None = None,
    *,
    drop: str | None = None,
) -> bytes:
    """Manifest JSON with the two models the spec reads; `drop` leaves one of them out."""
    models = {
        EXAMPLES_MODEL: valid_examples_columns() if examples is None else examples,
        ITEM_FEATURES_MODEL: (
            [column("item_id"), column("popularity_rank", "popularity_rank")]
            if item_features is None
            else item_features
        ),
    }
    nodes = {
        f"model.recflow.{name}": {"name": name, "columns": {c["name"]: c for c in columns}}
        for name, columns in models.items()
        if name != drop
    }
    return json.dumps({"metadata": {"project_name": "recflow"}, "nodes": nodes}).encode()


def spec_error(manifest_bytes: bytes) -> str:
    """The TrainerInputError message spec_from_manifest raises for `manifest_bytes`."""
    with pytest.raises(TrainerInputError) as caught:
        spec_from_manifest(manifest_bytes, source=SOURCE)
    return str(caught.value)


def with_roles(name: str, *roles: str) -> list[dict[str, Any]]:
    """The valid training columns with `name`'s roles replaced (added if absent)."""
    columns = [c for c in valid_examples_columns() if c["name"] != name]
    return [*columns, column(name, *roles)]


def test_spec_from_a_minimal_manifest_follows_the_roles_in_table_order() -> None:
    """Each role lands in its field, features keep the YAML order, a column without roles is
    ignored, and a source rank is keyed by `candidate_source` or else by its column name."""
    spec = spec_from_manifest(manifest())

    assert spec == FeatureSpec(
        keys=("user_id", "item_id", "cutoff_date"),
        group=("user_id", "cutoff_date"),
        label="label",
        split="split",
        features=("segment", "score_a", "covis_rank", "pop_rank"),
        categorical=("segment",),
        source_ranks={"covisitation": "covis_rank", "pop_rank": "pop_rank"},
        popularity_rank="popularity_rank",
    )
    assert spec.to_json()["features"] == ["segment", "score_a", "covis_rank", "pop_rank"]
    assert json.loads(json.dumps(spec.to_json())) == spec.to_json()


def test_manifest_hash_is_the_sha256_of_the_bytes() -> None:
    """The hash recorded in run_metadata.json identifies the exact manifest file."""
    assert manifest_hash(b"") == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert manifest_hash(manifest()) != manifest_hash(manifest() + b"\n")


@pytest.mark.parametrize(
    ("examples", "expected"),
    [
        pytest.param(
            [c for c in valid_examples_columns() if c["name"] != "label"],
            ["model training_examples", "role 'label'", "found none"],
            id="no-label",
        ),
        pytest.param(
            [*valid_examples_columns(), column("label_copy", "label")],
            ["model training_examples", "role 'label'", "'label'", "'label_copy'"],
            id="two-labels",
        ),
        pytest.param(
            with_roles("split"),
            ["model training_examples", "role 'split'", "found none"],
            id="no-split",
        ),
        pytest.param(
            with_roles("note", "categorical"),
            ["note", "training_examples", "'categorical' but not 'feature'"],
            id="categorical-not-feature",
        ),
        pytest.param(
            [c for c in valid_examples_columns() if "feature" not in c["meta"].get("roles", [])],
            ["training_examples", "role 'feature'"],
            id="no-feature",
        ),
        pytest.param(
            [c for c in valid_examples_columns() if c["name"] != "cutoff_date"],
            ["model training_examples", "no column(s) cutoff_date", "user_id, item_id"],
            id="no-cutoff-column",
        ),
    ],
)
def test_a_bad_role_declaration_names_the_model_and_role(
    examples: list[dict[str, Any]], expected: list[str]
) -> None:
    """A missing, doubled or inconsistent role is reported against the model's YAML, with the
    manifest's path, instead of training on a guess."""
    message = spec_error(manifest(examples))

    assert message.startswith(SOURCE)
    for fragment in expected:
        assert fragment in message, message


def test_the_ids_and_cutoff_need_no_roles() -> None:
    """Keys and group are the trainer's own (trainer.columns): a YAML without `key`/`group`
    roles gives the same spec as one with them."""
    without = [
        column(
            c["name"],
            *(r for r in c["meta"].get("roles", []) if r not in ("key", "group")),
            **{k: v for k, v in c["meta"].items() if k != "roles"},
        )
        for c in valid_examples_columns()
    ]

    spec = spec_from_manifest(manifest(without), source=SOURCE)

    assert spec == spec_from_manifest(manifest(), source=SOURCE)
    assert spec.keys == ("user_id", "item_id", "cutoff_date")
    assert spec.group == ("user_id", "cutoff_date")


def test_item_features_needs_exactly_one_popularity_rank() -> None:
    """The popularity fallback needs its ordering column; none, or two, is an error naming
    item_features and the role."""
    for columns in (
        [column("item_id")],
        [column("rank_a", "popularity_rank"), column("rank_b", "popularity_rank")],
    ):
        message = spec_error(manifest(item_features=columns))
        assert "model item_features" in message
        assert "role 'popularity_rank'" in message


@pytest.mark.parametrize("missing", [EXAMPLES_MODEL, ITEM_FEATURES_MODEL])
def test_a_manifest_without_a_model_names_it(missing: str) -> None:
    """A manifest of another project (or a partial parse) is refused, naming the model."""
    message = spec_error(manifest(drop=missing))

    assert f"has no model '{missing}'" in message
    assert SOURCE in message


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty-file"),
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"[]", id="json-list"),
        pytest.param(b'{"metadata": {}}', id="no-nodes"),
        pytest.param(b"null", id="json-null"),
        pytest.param(b"\xff\xfe\x00\xd8garbage\xff", id="binary"),
        pytest.param(b"DUCK\x00\x00\x01\x02\xc3\x28", id="invalid-utf8"),
    ],
)
def test_a_file_that_is_not_a_manifest_is_refused_as_such(content: bytes) -> None:
    """Text that is not JSON, JSON that is not a manifest, and binary files (say, the DuckDB file
    passed as --manifest by mistake) all get the same clear message, not a traceback."""
    message = spec_error(content)

    assert message.startswith(f"{SOURCE} is not a dbt manifest")
    assert "dbt build" in message


def check_columns_error(
    spec: FeatureSpec, columns: list[str], *, with_label: bool, table: str = EXAMPLES_MODEL
) -> str:
    with pytest.raises(TrainerInputError) as caught:
        spec.check_columns(table, columns, with_label=with_label)
    return str(caught.value)


def test_check_columns_accepts_exactly_the_declared_columns() -> None:
    """The training table needs the label; the scoring table may have it or not. Columns without
    any role (like `note`) must not appear in the tables, so they are not declared either."""
    spec = spec_from_manifest(manifest())
    declared = [*spec.keys, spec.split, *spec.features]

    spec.check_columns(EXAMPLES_MODEL, [*declared, spec.label], with_label=True)
    spec.check_columns(SCORING_MODEL, declared, with_label=False)
    spec.check_columns(SCORING_MODEL, [*declared, spec.label], with_label=False)


def test_check_columns_names_a_missing_column() -> None:
    """A feature the spec declares but the table lacks (a stale table or manifest) is named,
    together with the table; so is a missing label in the training table."""
    spec = spec_from_manifest(manifest())
    declared = [*spec.keys, spec.split, *spec.features, spec.label]

    message = check_columns_error(spec, [c for c in declared if c != "score_a"], with_label=True)
    assert message.startswith("training_examples has no column(s) score_a ")
    assert "dbt build" in message

    message = check_columns_error(spec, declared[:-1], with_label=True)
    assert message.startswith("training_examples has no column(s) label ")


def test_check_columns_names_an_unexpected_extra_column() -> None:
    """A column the SQL produces but the YAML gives no role would silently not be a feature:
    it is named instead, with the fix (give it a role)."""
    spec = spec_from_manifest(manifest())
    declared = [*spec.keys, spec.split, *spec.features]

    message = check_columns_error(
        spec, [*declared, "surprise", "another"], with_label=False, table=SCORING_MODEL
    )
    assert message.startswith("scoring_candidates has column(s) another, surprise with no role")
    assert "roles" in message


def marts_yaml_columns(model: str) -> list[dict[str, Any]]:
    """The columns of one mart exactly as written in marts/ml/_ml__models.yml."""
    models = yaml.safe_load(MARTS_YAML.read_text())["models"]
    (found,) = [m for m in models if m["name"] == model]
    return found["columns"]


def yaml_roles(entry: dict[str, Any]) -> list[str]:
    return entry.get("config", {}).get("meta", {}).get("roles", [])


@pytest.mark.dbt
def test_spec_from_the_real_manifest(tiny_warehouse: TinyWarehouse) -> None:
    """dbt's manifest carries the YAML roles through: the spec is the YAML's roles in YAML order,
    and it matches the columns of both tables the build produced."""
    manifest_bytes = manifest_of(tiny_warehouse).read_bytes()
    spec = spec_from_manifest(manifest_bytes)
    columns = marts_yaml_columns(EXAMPLES_MODEL)

    assert spec.keys == ("user_id", "item_id", "cutoff_date")
    assert spec.group == ("user_id", "cutoff_date")
    assert spec.label == "label"
    assert spec.split == "split"
    assert spec.features == tuple(c["name"] for c in columns if "feature" in yaml_roles(c))
    assert len(spec.features) >= 20
    assert {"covisitation_score", "item_users_1d", "is_from_category"} <= set(spec.features)
    assert spec.categorical == ("user_segment", "item_category")
    assert spec.source_ranks == {
        "covisitation": "covisitation_rank",
        "itemknn": "itemknn_rank",
        "popularity": "popularity_rank",
        "popularity_all": "popularity_all_rank",
        "category": "category_rank",
        "repeat": "repeat_rank",
    }
    assert spec.popularity_rank == "popularity_rank"
    assert "popularity_rank" in column_types(tiny_warehouse.duckdb_path, ITEM_FEATURES_MODEL)

    spec.check_columns(
        EXAMPLES_MODEL,
        list(column_types(tiny_warehouse.duckdb_path, EXAMPLES_MODEL)),
        with_label=True,
    )
    spec.check_columns(
        SCORING_MODEL,
        list(column_types(tiny_warehouse.duckdb_path, SCORING_MODEL)),
        with_label=False,
    )


@pytest.mark.dbt
def test_scoring_candidates_has_the_training_columns_minus_the_label(
    tiny_warehouse: TinyWarehouse,
) -> None:
    """The spec is read from training_examples only and applied to scoring_candidates too. The
    columns are declared once, in training_examples' YAML; the dbt test `has_the_columns_of` on
    scoring_candidates checks the built tables agree (same names and types, but `label`), and
    the two built tables do agree."""
    nodes = json.loads(manifest_of(tiny_warehouse).read_bytes())["nodes"]
    (check,) = [
        node
        for node in nodes.values()
        if node["resource_type"] == "test"
        and node.get("test_metadata", {}).get("name") == "has_the_columns_of"
        and node.get("attached_node") == f"model.recflow.{SCORING_MODEL}"
    ]
    assert check["test_metadata"]["kwargs"]["except_columns"] == ["label"]
    assert f"model.recflow.{EXAMPLES_MODEL}" in check["depends_on"]["nodes"]
    scoring_declared = nodes[f"model.recflow.{SCORING_MODEL}"]["columns"].values()
    assert not [c["name"] for c in scoring_declared if c["meta"].get("roles")]

    examples = column_types(tiny_warehouse.duckdb_path, EXAMPLES_MODEL)
    del examples["label"]
    # Dicts: the same names and types, in any column order.
    assert column_types(tiny_warehouse.duckdb_path, SCORING_MODEL) == examples
