"""Settings of `recflow run` / `recflow ct` without editing the project: `--var` and
`--vars-file` dbt var overrides and `--top-k`, checked in one place (`RunSettings`) before
anything is written, recorded in run_metadata.json; and errors a user causes end in one message
and exit code 2, never a traceback."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import CommandResult, Isolation, TinySample, query, run_recflow_cli

from recflow.pipeline.settings import (
    PERCENT_VARS,
    POSITIVE_INT_VARS,
    RunSettings,
    SettingsError,
    parse_var_assignment,
    project_vars,
    read_vars_file,
)
from recflow.samples.events import SampleSpec, generate, write_data_dir
from trainer import task as trainer_task
from trainer.errors import TrainerInputError

DEFAULTS = project_vars()


def settings_error(**arguments: Any) -> str:
    """The message of the SettingsError `RunSettings.from_arguments` raises; always one line."""
    with pytest.raises(SettingsError) as raised:
        RunSettings.from_arguments(defaults=DEFAULTS, **{"top_k": None, **arguments})
    message = str(raised.value)
    assert "\n" not in message
    return message


# --- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        ("exclude_seen_items=false", ("exclude_seen_items", False)),
        ("min_history_days=14", ("min_history_days", 14)),
        (
            "event_types={click: {weight: 1, is_positive: true}}",
            ("event_types", {"click": {"weight": 1, "is_positive": True}}),
        ),
        ("event_types={click: {weight: 1}}", ("event_types", {"click": {"weight": 1}})),
        ("as_of=", ("as_of", None)),
        # A YAML date becomes the ISO string dbt and run_metadata.json get as JSON.
        ("cutoff_calendar_anchor=2000-01-10", ("cutoff_calendar_anchor", "2000-01-10")),
        ("as_of=2026-03-01T00:00:00Z", ("as_of", "2026-03-01 00:00:00+00:00")),
        ("as_of='a=b'", ("as_of", "a=b")),  # splits on the first '=' only
    ],
)
def test_a_var_value_is_read_as_yaml(assignment: str, expected: tuple[str, Any]) -> None:
    assert parse_var_assignment(assignment) == expected


@pytest.mark.parametrize(
    ("assignment", "fragments"),
    [
        ("exclude_seen_items", ["--var expects KEY=VALUE", "'exclude_seen_items'"]),
        ("=3", ["--var expects KEY=VALUE"]),
        ("event_types={click: ", ["--var event_types", "not valid YAML"]),
    ],
)
def test_a_malformed_var_is_refused(assignment: str, fragments: list[str]) -> None:
    message = settings_error(var_assignments=[assignment])
    assert all(fragment in message for fragment in fragments), message


def test_a_vars_file_is_a_yaml_mapping(tmp_path: Path) -> None:
    path = tmp_path / "vars.yml"
    path.write_text("exclude_seen_items: false\ncutoff_calendar_anchor: 2000-01-10\n")
    assert read_vars_file(path) == {
        "exclude_seen_items": False,
        "cutoff_calendar_anchor": "2000-01-10",
    }


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("- min_history_days\n", "must hold a YAML mapping"),
        ("14\n", "must hold a YAML mapping"),
        ("", "must hold a YAML mapping"),
        ("{1: 2}\n", "must hold a YAML mapping"),
        ("a: [\n", "not valid YAML"),
        (None, "cannot read it"),
    ],
)
def test_a_vars_file_that_is_not_a_mapping_is_refused_naming_the_file(
    tmp_path: Path, content: str | None, fragment: str
) -> None:
    path = tmp_path / "vars.yml"
    if content is not None:
        path.write_text(content)
    message = settings_error(vars_file=path)
    assert f"--vars-file {path}" in message and fragment in message, message


# --- merging ----------------------------------------------------------------------------------


def test_var_wins_over_the_holdout_shorthand_which_wins_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "vars.yml"
    path.write_text("label_window_days: 3\nmin_history_days: 21\nexclude_seen_items: false\n")
    settings = RunSettings.from_arguments(
        top_k=None,
        vars_file=path,
        holdout_days=14,
        var_assignments=["min_history_days=35", "label_window_days=10"],
        defaults=DEFAULTS,
    )
    assert settings.dbt_vars == {
        "label_window_days": 10,
        "min_history_days": 35,
        "exclude_seen_items": False,
        "cutoff_interval_days": 14,
        "recommendations_per_user": 20,
    }


def test_top_k_defaults_to_the_project_k_and_always_reaches_dbt() -> None:
    default = RunSettings.from_arguments(top_k=None, defaults=DEFAULTS)
    assert default.top_k == DEFAULTS["recommendations_per_user"] == 20
    assert default.dbt_vars == {"recommendations_per_user": 20}
    assert default.describe() == "dbt var overrides: recommendations_per_user=20"

    explicit = RunSettings.from_arguments(top_k=7, defaults=DEFAULTS)
    assert (explicit.top_k, explicit.dbt_vars) == (7, {"recommendations_per_user": 7})

    from_var = RunSettings.from_arguments(
        top_k=None, var_assignments=["recommendations_per_user=9"], defaults=DEFAULTS
    )
    assert (from_var.top_k, from_var.dbt_vars) == (9, {"recommendations_per_user": 9})


# --- validation -------------------------------------------------------------------------------


def test_every_checked_var_is_a_var_of_the_project() -> None:
    """A var renamed in dbt_project.yml must be renamed here too, or its check silently stops."""
    assert set(POSITIVE_INT_VARS) | set(PERCENT_VARS) <= set(DEFAULTS)


def test_an_unknown_var_is_refused_naming_it_and_the_known_ones(tmp_path: Path) -> None:
    message = settings_error(var_assignments=["exclude_seen_item=false"])
    assert message.startswith("--var exclude_seen_item is not a var of dbt/dbt_project.yml")
    assert all(known in message for known in DEFAULTS), message

    path = tmp_path / "vars.yml"
    path.write_text("holdout_days: 7\n")
    assert settings_error(vars_file=path).startswith(f"--vars-file {path}: holdout_days is not")


@pytest.mark.parametrize("name", POSITIVE_INT_VARS)
@pytest.mark.parametrize("value", ["0", "-3", "2.5", "'7'", "true", "null"])
def test_positive_int_vars_out_of_range_are_refused(name: str, value: str) -> None:
    message = settings_error(var_assignments=[f"{name}={value}"])
    assert message.startswith(f"--var {name} must be an integer >= 1, got "), message


@pytest.mark.parametrize("value", ["0", "101", "50.5"])
def test_the_negative_sample_percent_must_lie_in_1_to_100(value: str) -> None:
    message = settings_error(var_assignments=[f"train_negative_sample_percent={value}"])
    assert message.startswith("--var train_negative_sample_percent must be an integer 1..100")


@pytest.mark.parametrize("value", [1, 100])
def test_the_negative_sample_percent_bounds_are_allowed(value: int) -> None:
    settings = RunSettings.from_arguments(
        top_k=None, var_assignments=[f"train_negative_sample_percent={value}"], defaults=DEFAULTS
    )
    assert settings.dbt_vars["train_negative_sample_percent"] == value


def test_a_bad_value_in_the_vars_file_names_the_file_and_the_var(tmp_path: Path) -> None:
    path = tmp_path / "vars.yml"
    path.write_text("candidates_per_source: 0\n")
    assert settings_error(vars_file=path) == (
        f"--vars-file {path}: candidates_per_source must be an integer >= 1, got 0"
    )


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"top_k": 0}, "--top-k must be an integer >= 1, got 0"),
        ({"top_k": -5}, "--top-k must be an integer >= 1, got -5"),
        ({"holdout_days": 0}, "--holdout-days must be an integer >= 1, got 0"),
    ],
)
def test_top_k_and_holdout_days_below_one_are_refused(
    arguments: dict[str, int], expected: str
) -> None:
    assert settings_error(**arguments) == expected


def test_candidates_per_source_below_k_is_refused_naming_both() -> None:
    message = settings_error(top_k=40)
    assert "candidates_per_source (30)" in message and "--top-k (40)" in message, message
    message = settings_error(top_k=10, var_assignments=["candidates_per_source=9"])
    assert "candidates_per_source (9)" in message and "--top-k (10)" in message, message
    equal = RunSettings.from_arguments(
        top_k=10, var_assignments=["candidates_per_source=10"], defaults=DEFAULTS
    )
    assert equal.dbt_vars == {"candidates_per_source": 10, "recommendations_per_user": 10}


def test_top_k_and_a_different_recommendations_per_user_are_refused() -> None:
    message = settings_error(top_k=10, var_assignments=["recommendations_per_user=12"])
    assert "--top-k (10)" in message and "recommendations_per_user (12)" in message, message


def test_a_label_window_longer_than_the_cutoff_interval_is_refused() -> None:
    message = settings_error(var_assignments=["label_window_days=8"])
    assert "label_window_days (8)" in message and "cutoff_interval_days (7)" in message


# --- the trainer's own checks ---------------------------------------------------------------


def test_the_trainer_refuses_top_k_below_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(TrainerInputError, match=r"^--top-k must be an integer >= 1, got 0$"):
        trainer_task.get_args(["--top-k", "0"])
    assert trainer_task.main(["--top-k", "0", "--output-dir", "/nonexistent/run"]) == 2
    assert capsys.readouterr().err == "trainer: --top-k must be an integer >= 1, got 0\n"


def test_the_trainer_records_the_dbt_vars_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_COMMIT", "abc")
    overrides = {"exclude_seen_items": False, "recommendations_per_user": 5}
    config = trainer_task.get_args(["--dbt-vars", json.dumps(overrides)])
    assert config.run_context["dbt_vars"] == overrides
    # Not told: nothing recorded, rather than a claim that no var was overridden.
    assert "dbt_vars" not in trainer_task.get_args([]).run_context
    with pytest.raises(TrainerInputError, match="--dbt-vars must be a JSON object"):
        trainer_task.get_args(["--dbt-vars", "[1]"])
    with pytest.raises(TrainerInputError, match="--dbt-vars must be a JSON object"):
        trainer_task.get_args(["--dbt-vars", "{a"])


# --- the commands, as a user runs them --------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    command: tuple[str, ...]
    message: str


REFUSALS = {
    "run-top-k": Refusal(("run", "--top-k", "0"), "--top-k must be an integer >= 1, got 0"),
    "run-unknown-var": Refusal(
        ("run", "--var", "min_history=7"),
        "--var min_history is not a var of dbt/dbt_project.yml; known vars: ",
    ),
    "run-holdout": Refusal(
        ("run", "--holdout-days", "0"), "--holdout-days must be an integer >= 1, got 0"
    ),
    "run-vars-file-list": Refusal(
        ("run", "--vars-file", "{work}/list.yml"),
        "--vars-file {work}/list.yml: must hold a YAML mapping",
    ),
    "ct-percent": Refusal(
        ("ct", "--var", "train_negative_sample_percent=0", "--top-k", "5"),
        "--var train_negative_sample_percent must be an integer 1..100, got 0",
    ),
    "ct-candidates": Refusal(
        ("ct", "--top-k", "31"), "candidates_per_source (30) is below --top-k (31)"
    ),
}


@pytest.fixture(scope="module")
def refusals(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[Path, Path, CommandResult]]:
    """Every refused command in a fresh interpreter, side by side (each is interpreter start-up),
    each in its own empty work directory, with a data directory and registry that do not exist."""
    root = tmp_path_factory.mktemp("refusals")

    def refuse(case_id: str) -> tuple[Path, Path, CommandResult]:
        work = (root / case_id).resolve()
        isolation = Isolation.under(work / "warehouse", work / "data")
        (work / "list.yml").write_text("- candidates_per_source\n")
        command = [part.replace("{work}", str(work)) for part in REFUSALS[case_id].command]
        extra = ["--registry", str(work / "registry.json"), "--runs-dir", str(work / "runs")]
        command += ["--data-dir", str(work / "data"), *(extra if command[0] == "ct" else [])]
        return work, isolation.duckdb_path.parent, run_recflow_cli(isolation, *command)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        futures = {case_id: pool.submit(refuse, case_id) for case_id in REFUSALS}
    return {case_id: future.result() for case_id, future in futures.items()}


@pytest.mark.parametrize("case_id", REFUSALS)
def test_invalid_settings_are_refused_before_anything_is_written(
    case_id: str, refusals: dict[str, tuple[Path, Path, CommandResult]]
) -> None:
    """Exit 2 and exactly one line of output naming the flag: no dbt call (no warehouse, no
    target directory), no data directory, no registry or run directory."""
    work, warehouse_dir, result = refusals[case_id]
    command = REFUSALS[case_id].command[0]
    expected = REFUSALS[case_id].message.replace("{work}", str(work))
    assert result.returncode == 2, result.output
    (line,) = result.output.splitlines()
    assert line.startswith(f"recflow{' ct' if command == 'ct' else ''}: {expected}"), line
    assert sorted(path.name for path in work.iterdir()) == ["list.yml", "warehouse"]
    assert list(warehouse_dir.iterdir()) == []


@pytest.mark.dbt
def test_a_data_directory_too_short_for_the_protocol_ends_in_one_message(
    tmp_path: Path,
) -> None:
    """35 days of history, less than min_history_days (28) + two label windows (7 each): the
    feature build runs, then `recflow run` ends with one message naming the days and
    min_history_days, exit code 2, no traceback (every cause: test_whole_data_problems.py)."""
    data_dir = tmp_path / "data"
    spec = SampleSpec(n_users=100, n_items=60, n_categories=10, n_days=35)
    write_data_dir(generate(spec).tables, data_dir, file_format="parquet")
    isolation = Isolation.under(tmp_path / "work", data_dir)

    result = run_recflow_cli(isolation, "run", "--data-dir", str(data_dir))

    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output, result.output
    (message,) = [line for line in result.output.splitlines() if "min_history_days" in line]
    assert message.startswith("recflow: the "), message
    assert "cover 35 days" in message and "min_history_days = 28" in message, message


@pytest.mark.dbt
def test_overrides_reach_dbt_and_the_run_metadata(
    tiny_sample: TinySample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`recflow run` on the tiny sample with a vars file, `--var`s that override it and
    `--top-k`: the overrides are printed once, the candidates and recommendations follow them,
    and run_metadata.json records exactly the effective overrides."""
    run_dir = tmp_path / "run"
    monkeypatch.setenv("AIP_MODEL_DIR", str(run_dir))  # keeps the run out of the repository
    monkeypatch.setenv("GIT_COMMIT", "0" * 40)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    vars_file = tmp_path / "vars.yml"
    vars_file.write_text("candidates_per_source: 12\ntrain_negative_sample_percent: 100\n")
    isolation = Isolation.under(tmp_path / "work", tiny_sample.parquet_dir)

    result = run_recflow_cli(
        isolation,
        "run",
        "--data-dir",
        str(tiny_sample.parquet_dir),
        "--vars-file",
        str(vars_file),
        "--var",
        "candidates_per_source=8",
        "--var",
        "exclude_seen_items=false",
        "--top-k",
        "5",
    )

    assert result.returncode == 0, result.output
    overrides = {
        "candidates_per_source": 8,
        "train_negative_sample_percent": 100,
        "exclude_seen_items": False,
        "recommendations_per_user": 5,
    }
    printed = [line for line in result.output.splitlines() if "dbt var overrides" in line]
    assert printed == [
        "dbt var overrides: candidates_per_source=8, train_negative_sample_percent=100, "
        "exclude_seen_items=false, recommendations_per_user=5"
    ]
    metadata = json.loads((run_dir / "run_metadata.json").read_text())
    assert metadata["dbt_vars"] == overrides
    assert metadata["top_k"] == 5
    warehouse = isolation.duckdb_path
    (ranks,) = query(
        warehouse,
        "select max(greatest(coalesce(covisitation_rank, 0), coalesce(popularity_rank, 0), "
        "coalesce(category_rank, 0))) from int_candidates_generated",
    )
    assert ranks == (8,)
    # Seen items stay candidates once exclude_seen_items is false.
    (seen,) = query(
        warehouse,
        "select count(*) from int_candidates_generated join int_user_items_aggregated using "
        "(user_id, item_id, cutoff_date)",
    )
    assert seen[0] > 0
    assert query(warehouse, "select distinct count(*) from recommendations group by user_id") == [
        (5,)
    ]
