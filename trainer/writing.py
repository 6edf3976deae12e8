"""Write run artifacts so that a failure never leaves a half-written run directory.

A run directory is a local path or a `gs://bucket/prefix` URI. Either way artifacts are written
into a local staging directory first:

- locally, the staging directory sits beside the final place and is renamed into it only when
  complete, so a run directory either is finished or does not exist;
- on Cloud Storage, which has no rename, the artifacts are uploaded and run_metadata.json is
  uploaded last as the completion marker (see trainer.gcs): **a run directory without
  run_metadata.json is not a finished run**, and a failed run deletes what it uploaded.

Warehouse tables are replaced by trainer.warehouse, atomically too.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from trainer import gcs
from trainer.errors import TrainerInputError

log = logging.getLogger(__name__)
# `.<run name>.partial-<pid>`: a staging directory and the process that writes it.
_STAGING_NAME = re.compile(r"^\..+\.partial-(?P<pid>[0-9]+)$")


class StagedRun(Protocol):
    """Where a run writes its artifacts before they are published."""

    @property
    def path(self) -> Path:
        """The local staging directory to write every artifact into."""
        ...

    def publish_artifacts(self) -> None:
        """Publish what is staged except the completion marker (run_metadata.json)."""
        ...


@dataclass(frozen=True)
class LocalStagedRun:
    """A staging directory beside the run directory; it is renamed into place at the end."""

    path: Path

    def publish_artifacts(self) -> None:
        """Nothing to do before the end: the rename publishes everything at once."""


def check_run_dir_free(run_dir: str) -> None:
    """Fail before any work when `run_dir` exists already or is not a place runs can go."""
    if gcs.is_gcs_uri(run_dir):
        gcs.check_absent(gcs.filesystem(), run_dir)
    elif "://" in run_dir:
        raise TrainerInputError(
            f"Cannot write run directory {run_dir}: use a local path or gs://bucket/prefix."
        )
    elif Path(run_dir).exists():
        raise TrainerInputError(f"Run directory {run_dir} already exists; refusing to overwrite.")


@contextmanager
def staged_run(run_dir: str) -> Iterator[StagedRun]:
    """Yield a staging area that becomes the run directory only if the block succeeds."""
    if gcs.is_gcs_uri(run_dir):
        with gcs.staged_run(run_dir) as upload:
            yield upload
    else:
        with staged_directory(Path(run_dir)) as staging:
            yield LocalStagedRun(staging)


@contextmanager
def staged_directory(final_dir: Path) -> Iterator[Path]:
    """Yield a temporary directory that becomes `final_dir` only if the block succeeds."""
    if final_dir.exists():
        raise TrainerInputError(f"Run directory {final_dir} already exists; refusing to overwrite.")
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(final_dir.parent)
    staging = final_dir.with_name(f".{final_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    staging.rename(final_dir)
    log.info("wrote run directory %s", final_dir)


def remove_stale_staging(runs_dir: Path) -> list[Path]:
    """Delete the staging directories in `runs_dir` whose process is gone; return them.

    A process killed before its rename (kill -9, a lost machine) leaves its staging directory
    behind, hidden by its leading dot. One whose process still runs is another run at work and
    is left alone; so is ours. A reused process id only delays the clean-up, never deletes a
    live run's files.
    """
    removed = []
    for entry in runs_dir.iterdir():
        match = _STAGING_NAME.match(entry.name)
        if not match or not entry.is_dir():
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or _process_exists(pid):
            continue
        log.warning("removing %s, left by process %d that ended before finishing", entry, pid)
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
