"""One constructor for a run's configuration: the command line (`python -m trainer.task`, the
Vertex AI job) and `recflow` (keywords, no argv) build the same TrainerConfig."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.config import TrainerConfig
from trainer.errors import TrainerInputError
from trainer.ranker import RankerParams
from trainer.task import get_args, keywords_from_arguments


def test_the_command_line_and_the_keywords_build_the_same_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_COMMIT", "abc123")
    monkeypatch.delenv("AIP_MODEL_DIR", raising=False)
    argv = [
        *("--warehouse-uri", "duckdb:///w.duckdb", "--manifest", "m.json"),
        *("--output-dir", f"{tmp_path}/run/", "--top-k", "7", "--eval-k", "20", "5", "20"),
        *("--recommendations-table", "", "--exclude-feature", "a", "--seed", "3"),
        *("--dbt-vars", '{"min_history_days": 2}'),
    ]

    from_argv = get_args(argv)
    from_keywords = TrainerConfig.for_run(
        warehouse_uri="duckdb:///w.duckdb",
        manifest_path=Path("m.json"),
        run_dir=tmp_path / "run",
        top_k=7,
        ks=(20, 5),
        recommendations_table=None,
        exclude_features=["a"],
        params=RankerParams(seed=3),
        dbt_vars={"min_history_days": 2},
    )

    assert from_argv == TrainerConfig(**{**vars(from_keywords), "run_id": from_argv.run_id})
    assert from_argv.run_dir == str(tmp_path / "run")
    assert from_argv.ks == (5, 20)
    assert from_argv.run_context == {"git_commit": "abc123", "dbt_vars": {"min_history_days": 2}}


def test_a_run_without_a_directory_goes_under_runs_dir_by_its_id(tmp_path: Path) -> None:
    config = TrainerConfig.for_run(
        warehouse_uri="duckdb:///w.duckdb",
        manifest_path="m.json",
        runs_dir=tmp_path,
        environ={"CLOUD_ML_JOB_ID": "42"},
    )

    assert config.run_dir == str(tmp_path / config.run_id)
    assert config.recommendations_table == "ml.batch_recommendations"
    assert config.run_context["cloud_ml_job_id"] == "42"
    assert "dbt_vars" not in config.run_context
    with pytest.raises(TrainerInputError, match="--top-k must be an integer >= 1, got 0"):
        TrainerConfig.for_run(warehouse_uri="duckdb:///w", manifest_path="m", top_k=0)


def test_extra_trainer_flags_become_only_the_keywords_they_set() -> None:
    """`recflow ct --trainer-arg`: a flag given changes its keyword, nothing else is touched."""
    assert keywords_from_arguments([]) == {}
    assert keywords_from_arguments(["--seed=7", "--exclude-feature=a", "--eval-k", "5"]) == {
        "params": RankerParams(seed=7),
        "exclude_features": ("a",),
        "ks": (5,),
    }
    with pytest.raises(TrainerInputError, match="--dbt-vars must be a JSON object"):
        keywords_from_arguments(["--dbt-vars", "[1]"])
