"""The training container's definition without building it: the Dockerfile's promises (Python of
the tests, locked trainer dependencies only, non-root, the trainer's entry point), the trainer's
part of the lock, the tag that names the image, and `recflow trainer-image`.

tests/recflow/test_trainer_package.py replays the Dockerfile's install steps and runs the
trainer there (slow)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dockerfile_steps import dockerfile_instructions

from recflow import cli
from recflow.gcp import trainer_image
from recflow.pipeline.settings import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
LOCK = REPO_ROOT / "requirements.lock"
TRAINER_LOCK = REPO_ROOT / trainer_image.TRAINER_REQUIREMENTS


def instructions(keyword: str) -> list[str]:
    return [arg for key, arg in dockerfile_instructions(DOCKERFILE.read_text()) if key == keyword]


# --- the Dockerfile ------------------------------------------------------------------------------


def test_image_has_the_python_of_the_tests() -> None:
    (base,) = instructions("FROM")
    match = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim-\w+", base)
    assert match, f"FROM {base}: pin an exact python:X.Y.Z-slim-<debian> image"
    assert tuple(map(int, match.groups()[:2])) == sys.version_info[:2]


def test_image_runs_the_trainer_as_a_non_root_user() -> None:
    steps = dockerfile_instructions(DOCKERFILE.read_text())
    (entrypoint,) = instructions("ENTRYPOINT")
    assert json.loads(entrypoint) == ["python", "-m", "trainer.task"]
    (user,) = instructions("USER")
    assert user not in ("root", "0")
    assert f"useradd --create-home --uid 10001 {user}" in instructions("RUN")
    user_index = steps.index(("USER", user))
    assert not [key for key, _ in steps[user_index:] if key in ("RUN", "COPY")]


def test_image_installs_exactly_the_trainers_locked_wheels() -> None:
    installs = [run for run in instructions("RUN") if "pip install" in run]
    assert installs == [
        "python -m pip install --no-deps --only-binary=:all: --requirement "
        f"{TRAINER_LOCK.name} && python -m pip check"
    ]
    copies = [copy.split() for copy in instructions("COPY")]
    assert copies == [[TRAINER_LOCK.name, "./"], ["trainer/", "trainer/"], ["recflow/", "recflow/"]]


def test_the_trainer_lock_is_the_trainers_part_of_the_lock() -> None:
    """Same pins as requirements.lock, and exactly what the trainer's dependencies require in
    this environment (installed from the lock): `make lock` rewrites it."""
    assert TRAINER_LOCK.read_text() == trainer_image.current_requirements_text()
    lock_lines = set(LOCK.read_text().splitlines())
    pins = [line for line in TRAINER_LOCK.read_text().splitlines() if not line.startswith("#")]
    assert pins and set(pins) <= lock_lines
    names = {pin.split("==")[0].lower() for pin in pins}
    # The trainer's, and the gate job's (Model Registry, Experiments); never dbt.
    assert {"lightgbm", "pyarrow", "duckdb", "google-cloud-bigquery", "implicit"} <= names
    assert "google-cloud-aiplatform" in names
    assert not {name for name in names if name.startswith("dbt")}


def test_trainer_requirements_follow_requirements_and_their_markers() -> None:
    lock = "a==1\nB_b==2\nc==3\nd==4\nunused==5\n"
    requires = {
        "a": ["b-b>=1", "d; extra == 'fast'", "c; python_version < '3'"],
        "b-b": ["d"],
    }
    lines = trainer_image.trainer_requirements(lock, ["a"], requires.get)
    assert lines == ["a==1", "B_b==2", "d==4"]
    with pytest.raises(ValueError, match="missing is required by the trainer but not in the lock"):
        trainer_image.trainer_requirements(lock, ["missing"], requires.get)


def test_dockerignore_keeps_the_build_context_to_the_images_inputs() -> None:
    rules = [
        line
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert rules[0] == "*"
    kept = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied = {source.rstrip("/") for copy in instructions("COPY") for source in copy.split()[:-1]}
    assert kept == {"Dockerfile", *copied}
    assert {"**/__pycache__", "**/*.pyc"} <= set(rules)


# --- the tag -------------------------------------------------------------------------------------


@pytest.fixture
def context(tmp_path: Path) -> Path:
    """A copy of the image's inputs, to change."""
    for path in trainer_image.image_inputs(REPO_ROOT):
        target = tmp_path / path.relative_to(REPO_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return tmp_path


def test_image_inputs_are_the_dockerfile_the_trainer_lock_and_the_python_sources() -> None:
    inputs = {path.relative_to(REPO_ROOT).as_posix() for path in trainer_image.image_inputs()}
    sources = {
        path.relative_to(REPO_ROOT).as_posix()
        for package in ("trainer", "recflow")
        for path in (REPO_ROOT / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert inputs == {"Dockerfile", TRAINER_LOCK.name, *sources}
    assert "trainer/task.py" in inputs


def test_tag_is_stable_and_moves_with_every_input(context: Path) -> None:
    tag = trainer_image.image_tag(context)
    assert re.fullmatch(r"[0-9a-f]{16}", tag)
    assert trainer_image.image_tag(context) == tag == trainer_image.image_tag(REPO_ROOT)
    # Byte code is not copied into the image, so it does not name a new one.
    (context / "trainer" / "__pycache__").mkdir(exist_ok=True)
    (context / "trainer" / "__pycache__" / "task.cpython-311.pyc").write_bytes(b"\0")
    assert trainer_image.image_tag(context) == tag
    seen = {tag}
    for changed in ("trainer/task.py", TRAINER_LOCK.name, "Dockerfile"):
        path = context / changed
        path.write_text(path.read_text() + "\n# changed\n")
        new = trainer_image.image_tag(context)
        assert new not in seen, f"changing {changed} kept the tag"
        seen.add(new)
    (context / "trainer" / "new_module.py").write_text("")
    assert trainer_image.image_tag(context) not in seen


def test_image_uri_in_the_default_or_a_named_repository() -> None:
    tag = trainer_image.image_tag()
    assert trainer_image.training_image(project="p", region="europe-west4") == (
        f"europe-west4-docker.pkg.dev/p/recflow/trainer:{tag}"
    )
    assert trainer_image.training_image(
        project="p", region="r", repository="us-docker.pkg.dev/shared/ml/"
    ) == (f"us-docker.pkg.dev/shared/ml/trainer:{tag}")
    assert trainer_image.training_image(project="p", region="r", image="x/y:1") == "x/y:1"


# --- the command ---------------------------------------------------------------------------------


def recflow(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`recflow ARGV` in a process of its own, as a workflow step runs it."""
    return subprocess.run(
        [sys.executable, "-c", "import sys; from recflow import cli; sys.exit(cli.main())", *argv],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_trainer_image_command_prints_the_image_submit_runs() -> None:
    env = {"RECFLOW_GCP_PROJECT": "my-project", "RECFLOW_GCP_REGION": "europe-west4"}
    printed = recflow("trainer-image", env=env)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == (
        f"europe-west4-docker.pkg.dev/my-project/recflow/trainer:{trainer_image.image_tag()}\n"
    )
    named = recflow("trainer-image", env={**env, "RECFLOW_IMAGE_REPOSITORY": "eu.gcr.io/x"})
    assert named.stdout == f"eu.gcr.io/x/trainer:{trainer_image.image_tag()}\n"


def test_trainer_image_command_names_what_is_missing() -> None:
    missing = recflow("trainer-image", env={"RECFLOW_GCP_REGION": "europe-west4"})
    assert missing.returncode == 2
    assert "$RECFLOW_GCP_PROJECT" in missing.stderr
    assert "$RECFLOW_IMAGE_REPOSITORY" in missing.stderr
    assert missing.stdout == ""


def test_trainer_image_is_a_recflow_subcommand() -> None:
    args = cli._parser().parse_args(["trainer-image", "--image-repository", "r"])
    assert args.handler is trainer_image.trainer_image_command
