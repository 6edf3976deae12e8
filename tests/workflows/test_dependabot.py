"""Dependabot keeps the pinned actions, the Python dependencies and the `.ci` Node tools current:
the file parses as Dependabot's version 2 schema requires and covers the three ecosystems, each
pointed at a directory that holds that ecosystem's manifest."""

from __future__ import annotations

import yaml
from workflow_files import REPO_ROOT

DEPENDABOT = REPO_ROOT / ".github" / "dependabot.yml"
INTERVALS = {"daily", "weekly", "monthly", "quarterly", "semiannually", "yearly", "cron"}
# What Dependabot reads for each ecosystem, relative to the entry's directory.
MANIFESTS = {
    "github-actions": (".github/workflows",),
    "pip": ("pyproject.toml",),
    "npm": ("package.json", "package-lock.json"),
}


def _updates() -> dict[str, dict]:
    document = yaml.safe_load(DEPENDABOT.read_text())
    assert document["version"] == 2
    updates = document["updates"]
    ecosystems = [entry["package-ecosystem"] for entry in updates]
    assert len(ecosystems) == len(set(ecosystems)), "one entry per ecosystem"
    return {entry["package-ecosystem"]: entry for entry in updates}


def test_dependabot_covers_actions_python_and_the_ci_node_tools() -> None:
    updates = _updates()

    assert set(updates) == set(MANIFESTS)
    assert updates["github-actions"]["directory"] == "/"
    assert updates["pip"]["directory"] == "/"
    assert updates["npm"]["directory"] == "/.ci"


def test_each_entry_points_at_its_manifests_and_has_a_schedule() -> None:
    for ecosystem, entry in _updates().items():
        directory = REPO_ROOT / entry["directory"].lstrip("/")
        for manifest in MANIFESTS[ecosystem]:
            assert (directory / manifest).exists(), f"{ecosystem}: no {manifest} in {directory}"
        assert entry["schedule"]["interval"] in INTERVALS, ecosystem
        for group in (entry.get("groups") or {}).values():
            assert group["patterns"], ecosystem
