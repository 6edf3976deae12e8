"""Run directories on Cloud Storage (`gs://bucket/prefix`), written through fsspec/gcsfs.

**A run directory without run_metadata.json is not a finished run.** Every step that picks up a
model from Cloud Storage (a deployment, a comparison, a notebook) must check for that file.

Cloud Storage has no rename, so a run directory cannot appear all at once as it does locally.
Instead the trainer:

1. refuses a prefix that already holds any object (a finished run or an unfinished one),
2. writes every artifact into a local temporary directory,
3. uploads every artifact except run_metadata.json (each object appears whole or not at all),
4. uploads run_metadata.json last, the completion marker, after the warehouse write-back,
5. on any failure deletes the objects it uploaded (best effort: if the deletion fails too, the
   missing marker still says the run is unfinished).

Credentials: Application Default Credentials, looked up by trainer.gcp_credentials (a missing
setup is an error, never a silent anonymous fallback). With STORAGE_EMULATOR_HOST set, gcsfs
talks to that emulator instead and no credentials are used, the convention google-cloud-storage
follows as well.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import gcsfs
from gcsfs.retry import HttpError

from trainer import gcp_credentials
from trainer.errors import TrainerInputError

log = logging.getLogger(__name__)

SCHEME = "gs://"
COMPLETION_MARKER = "run_metadata.json"
EMULATOR_VARIABLE = "STORAGE_EMULATOR_HOST"


def is_gcs_uri(path: str) -> bool:
    return path.startswith(SCHEME)


def filesystem() -> gcsfs.GCSFileSystem:
    """A gcsfs filesystem with Application Default Credentials (or the emulator's none)."""
    token = (
        "anon"
        if os.environ.get(EMULATOR_VARIABLE)
        else gcp_credentials.default_credentials("Cloud Storage")
    )
    return gcsfs.GCSFileSystem(token=token, consistency="md5", skip_instance_cache=True)


def check_absent(fs: gcsfs.GCSFileSystem, uri: str) -> None:
    """Refuse a run directory whose bucket is missing or whose prefix already holds objects."""
    path = _object_path(uri)
    try:
        existing = fs.find(f"{path}/")
    except FileNotFoundError as error:
        raise TrainerInputError(
            f"Cannot write run directory {uri}: bucket {SCHEME}{path.split('/')[0]} does not "
            "exist (or these credentials cannot list it)."
        ) from error
    except (OSError, HttpError) as error:
        raise TrainerInputError(f"Cannot list run directory {uri}: {error}") from error
    if existing:
        finished = f"{path}/{COMPLETION_MARKER}" in existing
        state = "a finished run" if finished else f"an unfinished run, no {COMPLETION_MARKER}"
        raise TrainerInputError(
            f"Run directory {uri} already holds {len(existing)} object(s): {state}; refusing "
            "to overwrite it: pass another --output-dir, or delete it first."
        )


@dataclass
class GcsRunUpload:
    """A local staging directory published to `uri` by the rule in the module docstring."""

    fs: gcsfs.GCSFileSystem
    uri: str
    path: Path
    uploaded: list[str] = field(default_factory=list)

    def publish_artifacts(self) -> None:
        """Upload every staged file except the completion marker (each one once)."""
        for local in sorted(self.path.iterdir()):
            if local.name != COMPLETION_MARKER:
                self._upload(local)

    def publish_marker(self) -> None:
        """Upload what is left, the completion marker last: from now on the run is finished."""
        marker = self.path / COMPLETION_MARKER
        if not marker.is_file():
            raise RuntimeError(f"{COMPLETION_MARKER} was not staged; the run is not finished")
        self.publish_artifacts()
        self._upload(marker)
        log.info("wrote run directory %s (%d objects)", self.uri, len(self.uploaded))

    def remove_uploaded(self) -> None:
        """Delete what this run uploaded; log rather than mask the failure that got us here."""
        if not self.uploaded:
            return
        try:
            self.fs.rm(self.uploaded)
        except Exception as error:  # cleanup must not hide the error that got us here
            log.warning("could not delete the partial run %s: %s", self.uri, error)
        else:
            log.info("deleted %d objects of the failed run %s", len(self.uploaded), self.uri)
        self.fs.invalidate_cache()

    def _upload(self, local: Path) -> None:
        remote = f"{_object_path(self.uri)}/{local.name}"
        if remote in self.uploaded:
            return
        # Recorded before the call: a failed upload may still have created the object.
        self.uploaded.append(remote)
        try:
            self.fs.put_file(str(local), remote)
        except (OSError, HttpError) as error:
            raise TrainerInputError(
                f"Cannot upload {local.name} to run directory {self.uri}: {error}"
            ) from error


@contextmanager
def staged_run(uri: str) -> Iterator[GcsRunUpload]:
    """Yield a local staging directory; publish it to `uri` only if the block succeeds."""
    fs = filesystem()
    check_absent(fs, uri)
    staging = Path(tempfile.mkdtemp(prefix="recflow-run-"))
    upload = GcsRunUpload(fs=fs, uri=uri, path=staging)
    try:
        yield upload
        upload.publish_marker()
    except BaseException:
        upload.remove_uploaded()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _object_path(uri: str) -> str:
    """`gs://bucket/prefix/` -> `bucket/prefix`."""
    return uri.removeprefix(SCHEME).rstrip("/")
