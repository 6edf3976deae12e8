"""Does a change to the dbt project call for a new model? Only when it reaches what the trainer
reads: a model in `state:modified+` (modified, or downstream of a modified model) against the
production manifest that is one of the trainer's marts."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

from recflow.pipeline.dbt_invocation import DbtFailedError, dbt_executable
from recflow.pipeline.settings import Settings
from trainer.feature_spec import (
    EXAMPLES_MODEL,
    HISTORY_MODEL,
    ITEM_FEATURES_MODEL,
    KNOWN_USERS_MODEL,
    POSITIVES_MODEL,
    SCORING_MODEL,
)

# Every mart the trainer reads: the training, evaluation (baselines) and serving inputs.
TRAINER_MODELS = frozenset(
    {
        EXAMPLES_MODEL,
        SCORING_MODEL,
        POSITIVES_MODEL,
        ITEM_FEATURES_MODEL,
        KNOWN_USERS_MODEL,
        HISTORY_MODEL,
    }
)


def needs_training(modified_and_downstream: Iterable[str], *, state_has_manifest: bool) -> bool:
    """True without a production manifest to compare with (nothing proves the model current),
    else when a changed model is, or feeds, one of the trainer's tables."""
    if not state_has_manifest:
        return True
    return bool(TRAINER_MODELS & set(modified_and_downstream))


def modified_models(settings: Settings, state_dir: Path) -> list[str]:
    """`dbt ls --select state:modified+ --state DIR --resource-type model`: model names."""
    completed = subprocess.run(
        [
            dbt_executable(),
            "--quiet",
            "ls",
            "--select",
            "state:modified+",
            "--state",
            str(state_dir.resolve()),
            "--resource-type",
            "model",
            "--output",
            "name",
            "--project-dir",
            str(settings.dbt_project_dir),
            "--target",
            settings.dbt_target,
        ],
        env=settings.dbt_environment(),
        cwd=settings.dbt_project_dir,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise DbtFailedError(
            f"dbt ls failed (exit {completed.returncode}):\n{completed.stdout}{completed.stderr}"
        )
    return [line.strip() for line in completed.stdout.splitlines() if line.strip()]


def training_needed(settings: Settings, state_dir: Path) -> bool:
    has_manifest = (state_dir / "manifest.json").is_file()
    changed = modified_models(settings, state_dir) if has_manifest else []
    return needs_training(changed, state_has_manifest=has_manifest)
