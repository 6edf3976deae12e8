"""The training container as Vertex AI runs it, built without Docker: the Dockerfile's own
instructions replayed in a fresh virtual environment (same Python minor version as the image's
FROM), outside the repository, then its ENTRYPOINT run there.

ENV, WORKDIR and COPY are applied as Docker would (COPY honouring what .dockerignore keeps
out); every RUN that installs Python packages is run as written, with the environment's `python`
first on PATH; the RUN steps that need root and the base image (apt-get, useradd) cannot run
here and are the only ones skipped. So the pinned wheels, `--no-deps`, `pip check` and the
trainer's imports are proven from the lock, and a change to the Dockerfile's install lines is
what this test runs.

Slow (marker `slow`): the install downloads the locked wheels (lightgbm, pyarrow, scipy, the
Google Cloud clients, ...) unless pip's cache has them; then a tiny training run.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import RUN_ARTIFACTS, TinyWarehouse
from dockerfile_steps import dockerfile_instructions

from recflow.pipeline.settings import REPO_ROOT

pytestmark = pytest.mark.slow

INSTALL_TIMEOUT_S = 1200
RUN_TIMEOUT_S = 600
# RUN steps of the Dockerfile that need root or the base image's OS; anything else is run.
SYSTEM_COMMANDS = ("apt-get", "useradd")


@dataclass
class ReplayedImage:
    """A Dockerfile replayed into a directory: its python, workdir, environment, entrypoint."""

    python: Path
    workdir: Path
    env: dict[str, str]
    entrypoint: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def run(
        self, args: list[str], *, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The entrypoint with `args`, as `docker run IMAGE ARGS` would start it."""
        return subprocess.run(
            [*self.entrypoint, *args],
            cwd=self.workdir,
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )


def clean_env(venv: Path) -> dict[str, str]:
    """The process environment without anything that would let the fresh environment see this
    repository or this virtual environment, or change the trainer's defaults; the fresh
    environment's bin first on PATH (where the image has its python).

    OMP_WAIT_POLICY=PASSIVE keeps LightGBM's idle threads from spinning on a shared CPU.
    """
    dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    inherited = {
        name: value
        for name, value in os.environ.items()
        if name not in dropped and not name.startswith(("AIP_", "CLOUD_ML_", "RECFLOW_", "DBT_"))
    }
    path = f"{venv / 'bin'}{os.pathsep}{inherited.get('PATH', '')}"
    return {**inherited, "PATH": path, "GIT_COMMIT": "test", "OMP_WAIT_POLICY": "PASSIVE"}


def _copy(source: Path, destination: Path) -> None:
    ignored = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")
    if source.is_dir():
        shutil.copytree(source, destination, ignore=ignored, dirs_exist_ok=True)
    else:
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)


def replay(dockerfile: Path, root: Path, venv: Path) -> ReplayedImage:
    """Apply the Dockerfile's instructions; `root` stands for the image's filesystem root."""
    image = ReplayedImage(python=venv / "bin" / "python", workdir=root, env=clean_env(venv))
    for keyword, argument in dockerfile_instructions(dockerfile.read_text()):
        if keyword == "ENV":
            words = shlex.split(argument)
            image.env.update(word.split("=", 1) for word in words)  # type: ignore[arg-type]
        elif keyword == "WORKDIR":
            image.workdir = root / argument.lstrip("/")
            image.workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            *sources, target = shlex.split(argument)
            for source in sources:
                destination = image.workdir / target
                if target.endswith("/") and not (REPO_ROOT / source).is_dir():
                    destination = destination / Path(source).name
                _copy(REPO_ROOT / source, destination)
        elif keyword == "RUN":
            if argument.split()[0] in SYSTEM_COMMANDS:
                image.skipped.append(argument)
                continue
            ran = subprocess.run(
                ["sh", "-c", argument],
                cwd=image.workdir,
                env=image.env,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT_S,
                check=False,
            )
            assert ran.returncode == 0, f"RUN {argument}\n{ran.stdout}\n{ran.stderr}"
        elif keyword == "ENTRYPOINT":
            image.entrypoint = json.loads(argument)
    return image


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> ReplayedImage:
    """The Dockerfile replayed into a fresh virtual environment outside the repository."""
    work = tmp_path_factory.mktemp("trainer_image")
    assert not work.resolve().is_relative_to(REPO_ROOT)
    venv = work / "venv"
    created = subprocess.run(
        [sys.executable, "-m", "venv", str(venv)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    return replay(REPO_ROOT / "Dockerfile", work / "root", venv)


def test_install_steps_run_from_the_lock_and_leave_a_consistent_environment(
    image: ReplayedImage,
) -> None:
    assert [step.split()[0] for step in image.skipped] == list(SYSTEM_COMMANDS)
    checked = subprocess.run(
        [str(image.python), "-m", "pip", "check"],
        env=image.env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout
    # Exactly the trainer's and the gate's part of the lock: nothing else came in (no dbt).
    frozen = subprocess.run(
        [str(image.python), "-m", "pip", "freeze", "--all"],
        env=image.env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=True,
    ).stdout.lower()
    pins = {
        line.lower().replace("_", "-")
        for line in (REPO_ROOT / "requirements-trainer.lock").read_text().splitlines()
        if "==" in line
    }
    installed = {line.replace("_", "-") for line in frozen.splitlines()}
    assert pins <= installed
    assert not {line for line in installed if line.startswith("dbt")}


def test_entrypoint_runs_the_trainer_from_the_copied_package(image: ReplayedImage) -> None:
    helped = image.run(["--help"])
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: python -m trainer.task")
    where = subprocess.run(
        [str(image.python), "-c", "import trainer.task, sys; print(trainer.task.__file__)"],
        cwd=image.workdir,
        env=image.env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(image.workdir / "trainer")


def test_the_gate_job_entry_point_runs_in_the_image(image: ReplayedImage) -> None:
    """`recflow gate-job` runs `python -m recflow.promotion.command gate` in this image."""
    helped = subprocess.run(
        [str(image.python), "-m", "recflow.promotion.command", "gate", "--help"],
        cwd=image.workdir,
        env=image.env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert helped.returncode == 0, helped.stderr
    assert "--run-dir" in helped.stdout


def test_the_image_trains_on_the_tiny_warehouse_and_logs_json(
    image: ReplayedImage, tiny_warehouse: TinyWarehouse, tmp_path: Path
) -> None:
    warehouse = Path(shutil.copyfile(tiny_warehouse.duckdb_path, tmp_path / "warehouse.duckdb"))
    manifest = tiny_warehouse.isolation.target_path / "manifest.json"
    run_dir = tmp_path / "run"
    trained = image.run(
        [
            *("--warehouse-uri", f"duckdb://{warehouse.resolve()}"),
            *("--manifest", str(manifest)),
            *("--output-dir", str(run_dir)),
            *("--recommendations-table", ""),
            *("--num-boost-round", "30", "--log-every", "1000"),
        ]
    )
    assert trained.returncode == 0, trained.stderr
    for name in RUN_ARTIFACTS:
        assert (run_dir / name).is_file(), name
    metadata = json.loads((run_dir / "run_metadata.json").read_text())
    assert metadata["git_commit"] == "test"
    # The image sets RECFLOW_LOG_FORMAT=json: every log record is one JSON line on stdout.
    records = [json.loads(line) for line in trained.stdout.splitlines() if line.startswith("{")]
    assert records
    assert {record["severity"] for record in records} <= {"DEBUG", "INFO", "WARNING"}
    assert any(record["logger"].startswith("trainer.") for record in records)
    assert not [line for line in trained.stderr.splitlines() if line.strip()], trained.stderr
