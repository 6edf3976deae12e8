"""Crash safety, proven by fault injection: the real CLI is killed with SIGKILL at named points
(trainer.failpoints, through $RECFLOW_FAILPOINT) on the tiny sample, and a rerun must leave the
served table and the registry's champion in agreement, no hidden staging directory behind, and
exit 0. Each kill is followed by checks of what it left, so the test also shows which state a
rerun recovers from (and that the write-back was never half-visible)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import (
    CommandResult,
    Isolation,
    TinySample,
    TinyWarehouse,
    query,
    run_recflow_cli,
    scalar,
)

from recflow.promotion.registry import LocalRegistry, Registration
from trainer import pipeline
from trainer.failpoints import POINTS, VARIABLE, failpoint
from trainer.ranker import RankerParams
from trainer.writing import remove_stale_staging

pytestmark = pytest.mark.dbt

TABLE = "ml.batch_recommendations"
BATCH = "batch_recommendations.parquet"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def recflow(isolation: Isolation, *args: str, **env: str) -> CommandResult:
    """`recflow <args>` as a fresh interpreter with extra environment variables."""
    extra = {"GIT_COMMIT": COMMIT, "OMP_WAIT_POLICY": "PASSIVE", **env}
    return run_recflow_cli(isolation, *args, extra_env=extra)


def killed_at(result: CommandResult, point: str) -> bool:
    return result.returncode == -9 and f"failpoint {point}: SIGKILL" in result.output


def served(warehouse: Path) -> tuple[set[str], int]:
    """(distinct model_version, rows) of the served table."""
    versions = {row[0] for row in query(warehouse, f"select distinct model_version from {TABLE}")}
    return versions, scalar(warehouse, f"select count(*) from {TABLE}")


def run_id(run_dir: Path | str) -> str:
    return str(json.loads((Path(run_dir) / "run_metadata.json").read_text())["run_id"])


def hidden(runs: Path) -> list[str]:
    """What a killed run can leave: staging directories (`.<run>.partial-<pid>`)."""
    return sorted(p.name for p in runs.iterdir() if p.name.startswith(".")) if runs.exists() else []


# --- the pieces, in process ---------------------------------------------------------------------


def test_a_failpoint_is_a_no_op_unless_named_and_unknown_names_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(VARIABLE, "promotion.after_served_write")
    failpoint("trainer.trained")  # another point: this process lives on
    with pytest.raises(ValueError, match="unknown failpoint"):
        failpoint("trainer.trianed")
    assert "promotion.after_registry_write" in POINTS


def test_stale_staging_directories_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    dead_pid = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_pid.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for name in (
            f".run-a.partial-{dead_pid.pid}",
            f".run-b.partial-{live.pid}",
            f".run-c.partial-{os.getpid()}",
            "run-d",  # a finished run
        ):
            (tmp_path / name).mkdir()
            (tmp_path / name / "model.txt").write_text("x")
        removed = remove_stale_staging(tmp_path)
    finally:
        live.kill()
        live.wait()
    assert removed == [tmp_path / f".run-a.partial-{dead_pid.pid}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["run-d", f".run-b.partial-{live.pid}", f".run-c.partial-{os.getpid()}"]
    )


# --- recflow run ------------------------------------------------------------------------------


@pytest.mark.slow
def test_run_killed_in_training_then_in_the_write_back_recovers_on_rerun(
    tiny_sample: TinySample, tmp_path: Path
) -> None:
    isolation = Isolation.under(tmp_path / "work", tiny_sample.parquet_dir)
    runs = tmp_path / "runs"
    data = ("--data-dir", str(tiny_sample.parquet_dir))

    first = recflow(isolation, "run", *data, AIP_MODEL_DIR=str(runs / "first"))
    assert first.returncode == 0, first.output
    before = served(isolation.duckdb_path)
    assert before[0] == {run_id(runs / "first")} and before[1] > 0

    # Killed after training: nothing was written yet.
    point = "trainer.trained"
    trained = recflow(isolation, "run", *data, AIP_MODEL_DIR=str(runs / "t"), **{VARIABLE: point})
    assert killed_at(trained, point), trained.output
    assert served(isolation.duckdb_path) == before
    assert sorted(p.name for p in runs.iterdir()) == ["first"]

    # Killed inside the write-back's transaction, after the new rows replaced the table: the
    # old table is whole (DuckDB discards the uncommitted transaction), the run's staging
    # directory is left behind, hidden.
    point = "writeback.before_commit"
    writing = recflow(isolation, "run", *data, AIP_MODEL_DIR=str(runs / "w"), **{VARIABLE: point})
    assert killed_at(writing, point), writing.output
    assert served(isolation.duckdb_path) == before
    assert len(hidden(runs)) == 1 and hidden(runs)[0].startswith(".w.partial-"), hidden(runs)

    rerun = recflow(isolation, "run", *data, AIP_MODEL_DIR=str(runs / "rerun"))
    assert rerun.returncode == 0, rerun.output
    assert served(isolation.duckdb_path)[0] == {run_id(runs / "rerun")}
    assert sorted(p.name for p in runs.iterdir()) == ["first", "rerun"]  # no staging left
    assert "left by process" in rerun.output
    assert query(isolation.duckdb_path, "select distinct model_version from recommendations") == [
        (run_id(runs / "rerun"),)
    ]


# --- recflow ct: promotion --------------------------------------------------------------------


@pytest.mark.slow
def test_ct_killed_during_promotion_is_reconciled_by_the_next_run(
    tiny_sample: TinySample, tmp_path: Path
) -> None:
    """Three kills in a row on one warehouse, around the writes of a promotion, then a clean
    run. A run after a kill that left the registry ahead first serves its champion again, which
    the output and the state after the next kill show."""
    isolation = Isolation.under(tmp_path / "work", tiny_sample.parquet_dir)
    runs = tmp_path / "runs"
    registry = LocalRegistry(tmp_path / "registry.json")
    ct = (
        "ct",
        "--data-dir",
        str(tiny_sample.parquet_dir),
        "--registry",
        str(registry.path),
        "--runs-dir",
        str(runs),
    )

    def champion_run() -> str:
        champion = registry.champion()
        assert champion is not None
        return run_id(champion.run_dir)

    first = recflow(isolation, *ct)
    assert first.returncode == 0, first.output
    version_1 = champion_run()
    assert served(isolation.duckdb_path)[0] == {version_1}

    # 1. Between the registry write and the served table's: the registry is ahead.
    point = "promotion.after_registry_write"
    result = recflow(isolation, *ct, **{VARIABLE: point})
    assert killed_at(result, point), result.output
    version_2 = champion_run()
    assert version_2 != version_1 and registry.champion().version == "2"  # type: ignore[union-attr]
    assert served(isolation.duckdb_path)[0] == {version_1}

    # 2. The next run first serves version 2 again, and is killed inside that very write: the
    # table still holds version 1, whole (the uncommitted replacement is discarded).
    point = "writeback.before_commit"
    rows_1 = pq.read_metadata(Path(registry.versions()[0].run_dir, BATCH)).num_rows
    result = recflow(isolation, *ct, **{VARIABLE: point})
    assert killed_at(result, point), result.output
    assert f"the champion is version 2 (run {version_2}): an interrupted promotion" in (
        result.output
    )
    assert served(isolation.duckdb_path) == ({version_1}, rows_1)
    assert registry.champion().version == "2"  # type: ignore[union-attr]

    # 3. This run serves version 2, promotes a third and is killed after both of its writes,
    # before the decision is recorded: registry and table agree.
    point = "promotion.after_served_write"
    result = recflow(isolation, *ct, **{VARIABLE: point})
    assert killed_at(result, point), result.output
    assert f"the champion is version 2 (run {version_2})" in result.output
    assert registry.champion().version == "3"  # type: ignore[union-attr]
    assert served(isolation.duckdb_path)[0] == {champion_run()}

    rerun = recflow(isolation, *ct)
    assert rerun.returncode == 0, rerun.output
    assert "an interrupted promotion" not in rerun.output  # nothing left to reconcile
    final = champion_run()
    assert served(isolation.duckdb_path)[0] == {final}
    assert query(isolation.duckdb_path, "select distinct model_version from recommendations") == [
        (final,)
    ]
    assert hidden(runs) == []
    # Every run the registry names is a finished run directory.
    assert all(Path(v.run_dir, "run_metadata.json").exists() for v in registry.versions())


# --- a damaged champion ---------------------------------------------------------------------


def test_a_corrupt_champion_model_is_a_clear_gate_failure(
    tiny_warehouse: TinyWarehouse, tiny_sample: TinySample, tmp_path: Path
) -> None:
    """The champion's model.txt damaged inside (it still ends as a whole model): `recflow gate`
    exits 1 naming the champion and the file, with no traceback and no abort."""
    warehouse = Path(shutil.copyfile(tiny_warehouse.duckdb_path, tmp_path / "warehouse.duckdb"))
    manifest = tiny_warehouse.isolation.target_path / "manifest.json"
    runs = {}
    for name in ("champion", "challenger"):
        runs[name] = tmp_path / "runs" / name
        pipeline.run(
            pipeline.TrainerConfig(
                warehouse_uri=f"duckdb://{warehouse}",
                manifest_path=str(manifest),
                run_dir=str(runs[name]),
                run_id=name,
                recommendations_table=None,
                params=RankerParams(num_boost_round=10, num_threads=1, log_every=1000),
                run_context={"git_commit": COMMIT},
            )
        )
    model = runs["champion"] / "model.txt"
    model.write_text(model.read_text().replace("threshold=", "threshold=zz", 1))
    registry = LocalRegistry(tmp_path / "registry.json")
    registry.register_champion(
        Registration(
            run_dir=str(runs["champion"]),
            run_id="champion",
            git_commit=COMMIT,
            dbt_manifest_sha256="0" * 64,
            primary_metric="warm_users/model/ndcg@10",
            primary_metric_value=0.1,
            decision={},
        )
    )
    isolation = Isolation.under(tmp_path / "cli", tiny_sample.parquet_dir)

    result = recflow(
        isolation,
        "gate",
        "--run-dir",
        str(runs["challenger"]),
        "--warehouse-uri",
        f"duckdb://{warehouse}",
        "--registry",
        f"local:{registry.path}",
    )

    assert result.returncode == 1, result.output
    assert "Traceback" not in result.output and "terminate called" not in result.output
    assert "the champion, version 1, cannot be read" in result.output
    assert f"{model} is not a valid LightGBM model (corrupt" in result.output
    assert registry.champion().run_dir == str(runs["champion"])  # type: ignore[union-attr]
