"""Where a run came from: its id, the code's commit and the Vertex AI job, for run_metadata.json.

Shared by the trainer's entry point, `recflow`'s commands (bench, gate job, job submission) and
the typed configuration constructor, so every record of a run names its commit the same way.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
# Vertex AI custom-job variables recorded with each run when present.
VERTEX_CONTEXT = ("CLOUD_ML_PROJECT_ID", "CLOUD_ML_JOB_ID", "CLOUD_ML_TRIAL_ID", "AIP_MODEL_DIR")


def new_run_id() -> str:
    """A run id that sorts by start time (UTC, to the microsecond)."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def git_commit() -> str:
    """$GIT_COMMIT, else the checkout's HEAD, else 'unknown' (a training container has no git)."""
    if commit := os.environ.get("GIT_COMMIT"):
        return commit
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_context(
    dbt_vars: Mapping[str, Any] | None = None, *, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """What run_metadata.json records about the run's origin: the commit, the Vertex AI job's
    variables when set, and the dbt vars the marts were built with (when the caller knows)."""
    env = os.environ if environ is None else environ
    return {
        "git_commit": git_commit(),
        **{name.lower(): env[name] for name in VERTEX_CONTEXT if name in env},
        **({"dbt_vars": dict(dbt_vars)} if dbt_vars is not None else {}),
    }
