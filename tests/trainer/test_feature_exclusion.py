"""`--exclude-feature`: a feature of the dbt YAML left out of one model, still expected in the
tables, recorded with the run; and the saved spec reads back as it was."""

from __future__ import annotations

import pytest

from trainer.errors import TrainerInputError
from trainer.feature_spec import FeatureSpec
from trainer.task import get_args

SPEC = FeatureSpec(
    keys=("user_id", "item_id"),
    group=("user_id", "cutoff_date"),
    label="label",
    split="split",
    features=("item_category", "popularity_rank", "user_events_7d"),
    categorical=("item_category",),
    source_ranks={"popularity": "popularity_rank"},
    popularity_rank="popularity_rank_7d",
)
COLUMNS = ["user_id", "item_id", "cutoff_date", "split", *SPEC.features]


def test_excluded_features_leave_the_model_but_stay_expected_in_the_table() -> None:
    spec = SPEC.without_features(["item_category", "item_category"])
    assert spec.features == ("popularity_rank", "user_events_7d")
    assert spec.categorical == ()
    assert spec.excluded_features == ("item_category",)
    assert spec.source_ranks == SPEC.source_ranks  # baselines still rank by the column
    spec.check_columns("training_examples", [*COLUMNS, "label"], with_label=True)
    with pytest.raises(TrainerInputError, match="no column"):
        spec.check_columns(
            "training_examples", [c for c in COLUMNS if c != "item_category"], with_label=False
        )


def test_excluding_an_unknown_or_every_feature_is_bad_input() -> None:
    with pytest.raises(TrainerInputError, match="Cannot exclude nope: not a feature"):
        SPEC.without_features(["nope"])
    with pytest.raises(TrainerInputError, match="nothing to train on"):
        SPEC.without_features(SPEC.features)


def test_the_saved_spec_reads_back() -> None:
    spec = SPEC.without_features(["user_events_7d"])
    assert FeatureSpec.from_json(spec.to_json()) == spec
    legacy = {key: value for key, value in SPEC.to_json().items() if key != "excluded_features"}
    assert FeatureSpec.from_json(legacy) == SPEC  # runs from before the option
    with pytest.raises(TrainerInputError, match="not a saved feature spec"):
        FeatureSpec.from_json({"keys": []}, source="runs/x/feature_spec.json")


def test_the_option_reaches_the_config() -> None:
    config = get_args(["--exclude-feature", "a", "--exclude-feature=b", "--output-dir", "/tmp/x"])
    assert config.exclude_features == ("a", "b")
    assert get_args(["--output-dir", "/tmp/x"]).exclude_features == ()
