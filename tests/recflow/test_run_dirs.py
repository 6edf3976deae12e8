"""Run directories as the gate reads them: a local path is recorded absolute, so the registry's
entries resolve from any working directory, and a truncated model.txt is refused before LightGBM
parses it."""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from recflow.promotion.run_dirs import RunDirError, read_run
from trainer.feature_spec import FeatureSpec

SPEC = FeatureSpec(
    keys=("user_id", "item_id", "cutoff_date"),
    group=("user_id", "cutoff_date"),
    label="label",
    split="split",
    features=("f",),
    categorical=(),
    source_ranks={},
    popularity_rank="popularity_rank",
)


def finished_run(directory: Path) -> Path:
    directory.mkdir(parents=True)
    (directory / "run_metadata.json").write_text(json.dumps({"run_id": directory.name}))
    (directory / "metrics.json").write_text(json.dumps({"metrics": {}}))
    (directory / "feature_spec.json").write_text(json.dumps(SPEC.to_json()))
    (directory / "model.txt").write_text(MODEL_TEXT)
    return directory


def small_model() -> str:
    rng = np.random.default_rng(0)
    features = rng.random((200, 1))
    data = lgb.Dataset(features, label=(features[:, 0] > 0.5).astype(float), feature_name=["f"])
    params = {"objective": "binary", "verbose": -1, "num_threads": 1, "min_data_in_leaf": 5}
    return lgb.train(params, data, num_boost_round=20).model_to_string()


MODEL_TEXT = small_model()


def test_a_relative_run_directory_is_read_as_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = finished_run(tmp_path / "runs" / "run-1")
    monkeypatch.chdir(tmp_path)

    assert read_run("runs/run-1").uri == str(run.resolve())
    assert read_run("runs/run-1/").uri == str(run.resolve())
    assert read_run(f"file://{run}").uri == str(run.resolve())
    assert read_run("runs/run-1").metadata == {"run_id": "run-1"}


@pytest.mark.parametrize("kept", [0.2, 0.5, 0.9, 0.999])
def test_a_truncated_model_is_refused_before_lightgbm_reads_it(tmp_path: Path, kept: float) -> None:
    """A model.txt cut anywhere (a killed upload, a full disk) is a RunDirError naming the file,
    never a LightGBM abort that would kill the gate."""
    run = finished_run(tmp_path / "run")
    (run / "model.txt").write_text(MODEL_TEXT[: int(len(MODEL_TEXT) * kept)])

    with pytest.raises(RunDirError, match=r"model\.txt is not a complete LightGBM model"):
        read_run(str(run))


def test_a_whole_model_loads() -> None:
    booster = lgb.Booster(model_str=MODEL_TEXT)
    assert booster.feature_name() == ["f"]


def _corrupt(text: str, how: str) -> str:
    lines = text.split("\n")
    if how == "bad number":
        return text.replace("threshold=", "threshold=zz", 1)
    if how == "tree lines lost":
        start = next(i for i, line in enumerate(lines) if line.startswith("Tree=3"))
        return "\n".join(lines[: start + 1] + lines[start + 6 :])
    middle = len(text) // 2  # "bytes overwritten"
    return text[:middle] + "\x00\xff#" * 60 + text[middle + 180 :]


@pytest.mark.parametrize("how", ["bad number", "tree lines lost", "bytes overwritten"])
def test_a_corrupt_model_is_refused_without_aborting(tmp_path: Path, how: str) -> None:
    """A model.txt that ends as a whole one but is damaged inside: LightGBM's parallel parser
    would terminate the process (SIGABRT); read_run reports it as a RunDirError instead."""
    run = finished_run(tmp_path / "run")
    corrupt = _corrupt(MODEL_TEXT, how)
    assert corrupt != MODEL_TEXT
    (run / "model.txt").write_text(corrupt)

    with pytest.raises(RunDirError, match=r"model\.txt is not a valid LightGBM model \(corrupt"):
        read_run(str(run))


def test_a_whole_model_parses_to_the_same_predictions(tmp_path: Path) -> None:
    run = read_run(str(finished_run(tmp_path / "run")))
    features = np.random.default_rng(1).random((50, 1))
    expected = lgb.Booster(model_str=MODEL_TEXT).predict(features)
    np.testing.assert_array_equal(run.booster().predict(features), expected)
