"""The trainer as Vertex AI runs it: the project's sdist installed into a fresh virtual
environment with only its declared dependencies, then `python -m trainer.task` from outside the
repository.

Slow (marker `slow`): creating the environment and installing lightgbm, pyarrow, the Google
Cloud clients and the rest from PyPI takes a minute or two, less with pip's cache warm. Versions
come from requirements.lock (as constraints), as on every other install.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import RUN_ARTIFACTS, TinyWarehouse

from recflow import vertex_submit
from recflow.settings import REPO_ROOT

pytestmark = pytest.mark.slow

INSTALL_TIMEOUT_S = 1200
RUN_TIMEOUT_S = 600


def clean_env() -> dict[str, str]:
    """The process environment without anything that would let the fresh environment see this
    repository or this virtual environment, or change the trainer's defaults.

    OMP_WAIT_POLICY=PASSIVE keeps LightGBM's idle threads from spinning on a shared CPU.
    """
    dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    inherited = {
        name: value
        for name, value in os.environ.items()
        if name not in dropped and not name.startswith(("AIP_", "CLOUD_ML_", "RECFLOW_", "DBT_"))
    }
    return {**inherited, "GIT_COMMIT": "test", "OMP_WAIT_POLICY": "PASSIVE"}


def run(command: list[str], *, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory outside the repository."""
    directory = tmp_path_factory.mktemp("outside_repo")
    assert not directory.resolve().is_relative_to(REPO_ROOT)
    return directory


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory: pytest.TempPathFactory, outside: Path) -> Path:
    """A fresh virtual environment with the sdist installed: `pip install -c lock <sdist>`."""
    work = tmp_path_factory.mktemp("trainer_package")
    sdist = vertex_submit.build_sdist(REPO_ROOT, work / "dist")
    venv = work / "venv"
    created = run([sys.executable, "-m", "venv", str(venv)], cwd=outside, timeout=RUN_TIMEOUT_S)
    assert created.returncode == 0, created.stderr
    python = venv / "bin" / "python"
    installed = run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "-c",
            str(REPO_ROOT / "requirements.lock"),
            str(sdist),
        ],
        cwd=outside,
        timeout=INSTALL_TIMEOUT_S,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return python


def test_sdist_installs_without_dbt(venv_python: Path, outside: Path) -> None:
    where = run(
        [str(venv_python), "-c", "import trainer.task; print(trainer.task.__file__)"],
        cwd=outside,
        timeout=RUN_TIMEOUT_S,
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv_python.parent.parent)

    dbt = run([str(venv_python), "-c", "import dbt"], cwd=outside, timeout=RUN_TIMEOUT_S)
    assert dbt.returncode != 0
    assert "ModuleNotFoundError: No module named 'dbt'" in dbt.stderr

    checked = run([str(venv_python), "-m", "pip", "check"], cwd=outside, timeout=RUN_TIMEOUT_S)
    assert checked.returncode == 0, checked.stdout


def test_installed_trainer_trains_on_the_tiny_warehouse(
    venv_python: Path, outside: Path, tiny_warehouse: TinyWarehouse
) -> None:
    warehouse = Path(shutil.copyfile(tiny_warehouse.duckdb_path, outside / "warehouse.duckdb"))
    manifest = tiny_warehouse.isolation.target_path / "manifest.json"
    run_dir = outside / "run"
    trained = run(
        [
            str(venv_python),
            "-m",
            "trainer.task",
            *("--warehouse-uri", f"duckdb://{warehouse.resolve()}"),
            *("--manifest", str(manifest)),
            *("--output-dir", str(run_dir)),
            *("--recommendations-table", ""),
            *("--num-boost-round", "30", "--log-every", "1000"),
        ],
        cwd=outside,
        timeout=RUN_TIMEOUT_S,
    )
    assert trained.returncode == 0, trained.stderr
    for name in RUN_ARTIFACTS:
        assert (run_dir / name).is_file(), name
    metadata = json.loads((run_dir / "run_metadata.json").read_text())
    assert metadata["git_commit"] == "test"
