"""What a user sees when `python -m trainer.task` cannot do its job: exit code 2, a one-line
`trainer: ...` message saying what is wrong and how to fix it, no Python traceback, and no run
directory (finished or staged) left behind, also when the failure comes after training.

(Named test_trainer_bad_input.py: tests/dbt/test_bad_input.py has the plain name, and pytest
needs unique basenames in these package-less test directories.)

A stale manifest, one whose feature columns disagree with the tables, is covered in
test_training.py::test_manifest_and_table_out_of_step_stop_the_run_naming_the_column.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
from conftest import TinyWarehouse
from trainer_harness import (
    TrainerResult,
    assert_clean_failure,
    column_types,
    copy_warehouse,
    duckdb_uri,
    execute,
    export_parquet,
    manifest_of,
    partial_dirs,
    run_trainer,
    trainer_args,
)

from trainer.dataset import TRAIN
from trainer.feature_spec import EXAMPLES_MODEL, spec_from_manifest

pytestmark = pytest.mark.dbt


def features_of(warehouse: TinyWarehouse) -> tuple[str, ...]:
    """The feature columns the tiny build's manifest declares."""
    return spec_from_manifest(manifest_of(warehouse).read_bytes()).features


def train_on(
    warehouse: Path | str,
    manifest: Path,
    tmp_path: Path,
    *,
    recommendations_table: str = "",
) -> tuple[Path, TrainerResult]:
    """Run the trainer into tmp_path/runs/run; return the run directory it was given and the
    result. `warehouse` is a DuckDB file or a URI."""
    uri = warehouse if isinstance(warehouse, str) else duckdb_uri(warehouse)
    run_dir = tmp_path / "runs" / "run"
    result = run_trainer(
        *trainer_args(uri, manifest, run_dir, recommendations_table=recommendations_table),
        cwd=tmp_path,
    )
    return run_dir, result


def mutated_copy(warehouse: TinyWarehouse, tmp_path: Path, *statements: str) -> Path:
    """A copy of the tiny warehouse with `statements` applied."""
    copy = copy_warehouse(warehouse, tmp_path / "warehouse")
    execute(copy, *statements)
    return copy


# --- training data that cannot train a ranker -----------------------------------------------------


def all_features_constant(warehouse: TinyWarehouse) -> list[str]:
    """One UPDATE setting every feature column to a constant of its own type."""
    types = column_types(warehouse.duckdb_path, EXAMPLES_MODEL)
    assignments = ", ".join(
        f'"{name}" = cast(0 as {types[name]})' for name in features_of(warehouse)
    )
    return [f"update {EXAMPLES_MODEL} set {assignments}"]


SINGLE_POSITIVE_GROUP = [
    f"""create temp table kept as
        select user_id, cutoff_date from {EXAMPLES_MODEL}
        where split = '{TRAIN}' and label = 1
        order by cutoff_date, user_id
        limit 1""",
    f"""delete from {EXAMPLES_MODEL} as examples
        where split = '{TRAIN}' and not exists (
            select 1 from kept
            where kept.user_id = examples.user_id and kept.cutoff_date = examples.cutoff_date
        )""",
]


@pytest.mark.parametrize(
    ("statements", "expected"),
    [
        pytest.param(
            [f"delete from {EXAMPLES_MODEL}"],
            ["training_examples is empty", "min_history_days"],
            id="empty-training-table",
        ),
        pytest.param(
            [f"update {EXAMPLES_MODEL} set label = 0"],
            ["no positive label in the 'train' split", "event_types"],
            id="no-positive-labels",
        ),
        pytest.param(
            SINGLE_POSITIVE_GROUP,
            ["has 1 ranking group with a positive label", "user_id, cutoff_date", "two"],
            id="single-positive-group",
        ),
        pytest.param(
            [f"delete from {EXAMPLES_MODEL} where split = 'validation'"],
            ["no 'validation' rows", "cutoff"],
            id="no-validation-split",
        ),
    ],
)
def test_untrainable_data_is_refused_before_training(
    tiny_warehouse: TinyWarehouse, tmp_path: Path, statements: list[str], expected: list[str]
) -> None:
    """No rows, no positives, a single query group or a missing split cannot train a ranker:
    each is named with what to change in the data or dbt vars."""
    warehouse = mutated_copy(tiny_warehouse, tmp_path, *statements)

    run_dir, result = train_on(warehouse, manifest_of(tiny_warehouse), tmp_path)

    assert_clean_failure(result, run_dir, *expected)


def test_single_group_fixture_really_keeps_one_positive_group(
    tiny_warehouse: TinyWarehouse, tmp_path: Path
) -> None:
    """Guards the case above: after the mutation, train has exactly one (user, cutoff) group
    and it has a positive, while validation and test are untouched."""
    warehouse = mutated_copy(tiny_warehouse, tmp_path, *SINGLE_POSITIVE_GROUP)

    with duckdb.connect(str(warehouse), read_only=True) as connection:
        groups = connection.execute(
            f"select count(distinct (user_id, cutoff_date)), max(label) from {EXAMPLES_MODEL} "
            f"where split = '{TRAIN}'"
        ).fetchone()
        others = connection.execute(
            f"select count(*) from {EXAMPLES_MODEL} where split != '{TRAIN}'"
        ).fetchone()
    with duckdb.connect(str(tiny_warehouse.duckdb_path), read_only=True) as connection:
        original = connection.execute(
            f"select count(*) from {EXAMPLES_MODEL} where split != '{TRAIN}'"
        ).fetchone()
    assert groups == (1, 1)
    assert others == original


def test_all_constant_features_are_refused(tiny_warehouse: TinyWarehouse, tmp_path: Path) -> None:
    """When every feature (numbers, flags and categories alike) is constant there is nothing to
    learn: the message says so and lists the features."""
    features = features_of(tiny_warehouse)
    warehouse = mutated_copy(tiny_warehouse, tmp_path, *all_features_constant(tiny_warehouse))

    run_dir, result = train_on(warehouse, manifest_of(tiny_warehouse), tmp_path)

    assert_clean_failure(
        result, run_dir, "Every feature of training_examples is constant", *features
    )


# --- the manifest ---------------------------------------------------------------------------------


def test_missing_manifest_says_to_build_first(
    tiny_warehouse: TinyWarehouse, tmp_path: Path
) -> None:
    """A manifest path that does not exist names the path and `dbt build`."""
    manifest = tmp_path / "no_target" / "manifest.json"

    run_dir, result = train_on(tiny_warehouse.duckdb_path, manifest, tmp_path)

    assert_clean_failure(result, run_dir, f"dbt manifest {manifest} does not exist", "dbt build")


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"this is not json\n", id="text"),
        pytest.param(b'{"metadata": {"dbt_schema_version": "x"}}', id="json-without-nodes"),
        pytest.param(None, id="the-duckdb-file-by-mistake"),
    ],
)
def test_a_manifest_that_is_not_one_is_refused(
    tiny_warehouse: TinyWarehouse, tmp_path: Path, content: bytes | None
) -> None:
    """Text, JSON of another shape, or a binary file passed as --manifest: `<path> is not a dbt
    manifest`, never a JSON or Unicode traceback."""
    manifest = tmp_path / "manifest.json"
    if content is None:
        manifest = tiny_warehouse.duckdb_path
    else:
        manifest.write_bytes(content)

    run_dir, result = train_on(tiny_warehouse.duckdb_path, manifest, tmp_path)

    assert_clean_failure(result, run_dir, f"{manifest} is not a dbt manifest", "dbt build")


# --- the warehouse URI ----------------------------------------------------------------------------


def empty_duckdb(directory: Path) -> str:
    """A valid DuckDB database with no tables."""
    path = directory / "empty.duckdb"
    duckdb.connect(str(path)).close()
    return duckdb_uri(path)


def not_a_duckdb_file(directory: Path) -> str:
    """A zero-byte file where the DuckDB database should be."""
    path = directory / "zero.duckdb"
    path.write_bytes(b"")
    return duckdb_uri(path)


@pytest.mark.parametrize(
    ("make_uri", "expected"),
    [
        pytest.param(
            lambda directory: "bq2://project/dataset",
            ["Unsupported warehouse URI scheme 'bq2'", "'bq2://project/dataset'", "duckdb:///"],
            id="unsupported-scheme",
        ),
        pytest.param(
            lambda directory: duckdb_uri(directory / "nowhere" / "warehouse.duckdb"),
            ["nowhere/warehouse.duckdb does not exist", "dbt build"],
            id="duckdb-file-missing",
        ),
        pytest.param(
            empty_duckdb,
            ["Table main.training_examples does not exist", "empty.duckdb", "dbt build"],
            id="table-missing",
        ),
        pytest.param(
            not_a_duckdb_file,
            ["Cannot open DuckDB file", "zero.duckdb", "not a valid DuckDB database file"],
            id="not-a-duckdb-file",
        ),
        pytest.param(
            lambda directory: f"file://{directory / 'no_parquet_here'}",
            ["No Parquet file for table main.training_examples", "no_parquet_here"],
            id="parquet-directory-missing",
        ),
    ],
)
def test_an_unreadable_warehouse_is_named(
    tiny_warehouse: TinyWarehouse,
    tmp_path: Path,
    make_uri: Callable[[Path], str],
    expected: list[str],
) -> None:
    """Each way the warehouse cannot be read names the URI, file or table, and how to fix it."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()

    run_dir, result = train_on(make_uri(inputs), manifest_of(tiny_warehouse), tmp_path)

    assert_clean_failure(result, run_dir, *expected)


# --- the run directory and the write-back ---------------------------------------------------------


def test_an_existing_run_directory_is_never_overwritten(
    tiny_warehouse: TinyWarehouse, tmp_path: Path
) -> None:
    """A run into an existing directory fails without touching it, and without replacing the
    warehouse table either (the write-back happens only for a run directory that was written)."""
    warehouse = copy_warehouse(tiny_warehouse, tmp_path / "warehouse")
    run_dir = tmp_path / "runs" / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "model.txt").write_text("an earlier run's model\n")

    result = run_trainer(
        *trainer_args(
            duckdb_uri(warehouse),
            manifest_of(tiny_warehouse),
            run_dir,
            recommendations_table="ml.batch_recommendations",
        ),
        cwd=tmp_path,
    )

    assert result.returncode == 2
    assert f"trainer: Run directory {run_dir} already exists" in result.stderr
    assert "Traceback" not in result.stderr
    assert [path.name for path in run_dir.iterdir()] == ["model.txt"]
    assert (run_dir / "model.txt").read_text() == "an earlier run's model\n"
    assert partial_dirs(run_dir) == []
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        tables = connection.execute(
            "select count(*) from information_schema.tables where table_schema = 'ml'"
        ).fetchone()
    assert tables == (0,)


def test_a_warehouse_that_cannot_take_the_write_back_is_refused_before_training(
    tiny_warehouse: TinyWarehouse, tmp_path: Path
) -> None:
    """A Parquet warehouse reads fine but cannot be written back: the run stops before it reads
    or trains anything, and says how to skip the write-back."""
    parquet_dir = export_parquet(tiny_warehouse.duckdb_path, tmp_path / "parquet")

    run_dir, result = train_on(
        f"file://{parquet_dir}",
        manifest_of(tiny_warehouse),
        tmp_path,
        recommendations_table="ml.batch_recommendations",
    )

    assert_clean_failure(
        result, run_dir, "Cannot write table ml.batch_recommendations", "--recommendations-table"
    )
    assert "training on" not in result.stderr


def test_a_failure_after_training_leaves_no_run_directory(
    tiny_warehouse: TinyWarehouse, tmp_path: Path
) -> None:
    """The write-back is the last step: with a view already in the recommendations table's
    place, the run fails only after every artifact was staged. The staged directory is removed,
    no run directory appears and the view is untouched: a run directory means a finished run."""
    warehouse = copy_warehouse(tiny_warehouse, tmp_path / "warehouse")
    execute(
        warehouse,
        "create schema ml",
        "create view ml.batch_recommendations as select 'someone else''s view' as note",
    )

    run_dir, result = train_on(
        duckdb_uri(warehouse),
        manifest_of(tiny_warehouse),
        tmp_path,
        recommendations_table="ml.batch_recommendations",
    )

    assert_clean_failure(result, run_dir, "Cannot write table ml.batch_recommendations")
    assert "training on" in result.stderr
    assert run_dir.parent.is_dir()  # the staging directory was made there, then removed
    assert list(run_dir.parent.iterdir()) == []
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        assert connection.execute("select note from ml.batch_recommendations").fetchall() == [
            ("someone else's view",)
        ]
