"""One `recflow run` or `recflow ct` at a time per warehouse, with two real processes: the
second refuses at once (exit 2, one message naming the warehouse and the lock file), and a
kill -9 of the first, in the middle of its dbt build, leaves neither a stale lock nor an
orphaned dbt, so the rerun finishes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import CommandResult, Isolation, TinySample, query, run_recflow_cli

from recflow.pipeline.run_lock import WarehouseBusyError, lock_path_of, warehouse_lock

COMMIT = "0" * 40


def environment(isolation: Isolation, run_dir: Path) -> dict[str, str]:
    return {
        **isolation.env(),
        "GIT_COMMIT": COMMIT,
        "OMP_WAIT_POLICY": "PASSIVE",
        "AIP_MODEL_DIR": str(run_dir),  # keeps the run out of the repository
    }


def recflow(isolation: Isolation, run_dir: Path, *args: str) -> CommandResult:
    return run_recflow_cli(isolation, *args, extra_env=environment(isolation, run_dir))


def test_a_held_lock_refuses_a_second_holder_and_is_released_after(tmp_path: Path) -> None:
    warehouse = tmp_path / "w" / "warehouse.duckdb"
    with warehouse_lock(warehouse) as lock_file:
        assert lock_file == lock_path_of(warehouse) == tmp_path / "w" / "warehouse.duckdb.lock"
        with pytest.raises(WarehouseBusyError, match=str(lock_file)), warehouse_lock(warehouse):
            pass
    with warehouse_lock(warehouse):  # released on leaving the block
        pass


@pytest.mark.dbt
@pytest.mark.slow
def test_a_second_run_refuses_and_a_killed_build_leaves_nothing_behind(
    tiny_sample: TinySample, tmp_path: Path
) -> None:
    isolation = Isolation.under(tmp_path / "work", tiny_sample.parquet_dir)
    data = ("--data-dir", str(tiny_sample.parquet_dir))
    first = subprocess.Popen(
        [sys.executable, "-m", "recflow.cli", "run", *data],
        env=environment(isolation, tmp_path / "runs" / "first"),
        cwd=isolation.duckdb_path.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # Wait until dbt has written a model: the build is under way.
        assert first.stdout is not None
        lines = []
        for line in first.stdout:
            lines.append(line)
            if " OK created " in line:
                break
        else:
            pytest.fail("the first run ended before dbt built a model:\n" + "".join(lines))
        dbt = psutil.Process(first.pid).children(recursive=True)
        assert dbt, "no dbt child process"

        for command in ("run", "ct"):
            started = time.monotonic()
            second = recflow(isolation, tmp_path / "runs" / "second", command, *data)
            assert second.returncode == 2, second.output
            assert time.monotonic() - started < 60
            message = [line for line in second.output.splitlines() if "in use" in line]
            prefix = "recflow ct" if command == "ct" else "recflow"
            assert message == [
                f"{prefix}: the warehouse {isolation.duckdb_path} is in use by another `recflow "
                f"run` or `recflow ct` (it holds the lock {lock_path_of(isolation.duckdb_path)}); "
                "wait for it to finish, or set RECFLOW_DUCKDB_PATH to another warehouse"
            ], second.output
            assert "Traceback" not in second.output
        assert first.poll() is None  # the refusals did not disturb the first run

        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        # dbt dies with its parent (PR_SET_PDEATHSIG) rather than build on unlocked.
        _, alive = psutil.wait_procs(dbt, timeout=30)
        assert alive == [], alive
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()

    rerun = recflow(isolation, tmp_path / "runs" / "rerun", "run", *data)
    assert rerun.returncode == 0, rerun.output
    assert query(isolation.duckdb_path, "select count(*) from recommendations")[0][0] > 0
