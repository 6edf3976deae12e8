"""The repository's GitHub Actions workflows as data: jobs, steps, `run:` commands, and the
`make` targets and `recflow` subcommands (with their flags) those commands call."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS_DIR = REPO_ROOT / ".github" / "workflows"
PULL_REQUEST = WORKFLOWS_DIR / "pull-request.yml"
CONTINUOUS_TRAINING = WORKFLOWS_DIR / "continuous-training.yml"

# `recflow` on PATH or the project's own, then the subcommand and the rest of that command (up
# to the end of a command substitution, a pipe, a list operator or the line).
_RECFLOW_CALL = re.compile(r"(?:^|[\s\"'(])(?:\.venv/bin/)?recflow\s+([a-z][a-z0-9-]*)([^)|;&\n]*)")
_MAKE_CALL = re.compile(r"(?:^|[\s(])make\s+([^|;&\n)]*)")
_LONG_FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
_MAKE_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Step:
    """One step of a job, where it is, and what it does."""

    workflow: str
    job: str
    index: int
    spec: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.workflow}: job {self.job}, step {self.index + 1} ({self.spec.get('name')})"

    @property
    def uses(self) -> str | None:
        return self.spec.get("uses")

    @property
    def run(self) -> str | None:
        return self.spec.get("run")

    def commands(self) -> list[str]:
        """The `run:` script as shell commands: continuation lines joined, comments and blank
        lines dropped."""
        if self.run is None:
            return []
        joined = re.sub(r"\\\n\s*", " ", self.run)
        commands = []
        for line in joined.splitlines():
            command = line.strip()
            if command and not command.startswith("#"):
                commands.append(command)
        return commands


@dataclass(frozen=True)
class RecflowCall:
    """`recflow SUBCOMMAND --flag ...` as a workflow step writes it."""

    step: Step
    subcommand: str
    flags: tuple[str, ...]


@dataclass(frozen=True)
class MakeCall:
    step: Step
    targets: tuple[str, ...]


def load(path: Path) -> dict[str, Any]:
    """A workflow file as a mapping. PyYAML reads the bare key `on` as the boolean true (YAML
    1.1); it is put back under "on"."""
    document = yaml.safe_load(path.read_text())
    if True in document:
        document["on"] = document.pop(True)
    return document


def workflow_paths() -> list[Path]:
    return sorted(WORKFLOWS_DIR.glob("*.yml")) + sorted(WORKFLOWS_DIR.glob("*.yaml"))


def steps(path: Path) -> Iterator[Step]:
    for job_id, job in load(path)["jobs"].items():
        for index, spec in enumerate(job.get("steps", [])):
            yield Step(workflow=path.name, job=job_id, index=index, spec=spec)


def all_steps() -> Iterator[Step]:
    for path in workflow_paths():
        yield from steps(path)


def recflow_calls() -> list[RecflowCall]:
    calls = []
    for step in all_steps():
        for command in step.commands():
            for match in _RECFLOW_CALL.finditer(command):
                subcommand, rest = match.groups()
                calls.append(RecflowCall(step, subcommand, tuple(_LONG_FLAG.findall(rest))))
    return calls


def make_calls() -> list[MakeCall]:
    calls = []
    for step in all_steps():
        for command in step.commands():
            for match in _MAKE_CALL.finditer(command):
                words = shlex.split(match.group(1))
                targets = tuple(
                    word
                    for word in words
                    if not (_MAKE_VARIABLE.match(word) or word.startswith("-"))
                )
                calls.append(MakeCall(step, targets))
    return calls
