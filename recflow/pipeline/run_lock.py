"""One `recflow run` or `recflow ct` at a time per warehouse: an OS file lock beside it.

The lock is the kernel's (flock), so it is released whenever its process ends, kill -9 included:
there is never a stale lock to clean up. A second command on the same warehouse refuses at once
instead of meeting DuckDB's own lock halfway through a build.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import filelock

log = logging.getLogger(__name__)


class WarehouseBusyError(RuntimeError):
    """Another command holds the warehouse (exit 2); the message names it and the lock file."""


def lock_path_of(duckdb_path: Path) -> Path:
    """The lock file of a DuckDB warehouse: beside it, `<file>.lock`."""
    return duckdb_path.with_name(f"{duckdb_path.name}.lock")


@contextmanager
def warehouse_lock(duckdb_path: Path) -> Iterator[Path]:
    """Hold the warehouse's lock for the block; WarehouseBusyError at once if another holds it."""
    lock_path = lock_path_of(duckdb_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    # No soft (file-exists) fallback: a soft lock would outlive a killed process.
    lock = filelock.FileLock(lock_path, blocking=False, fallback_to_soft=False)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise WarehouseBusyError(
            f"the warehouse {duckdb_path} is in use by another `recflow run` or `recflow ct` "
            f"(it holds the lock {lock_path}); wait for it to finish, or set "
            "RECFLOW_DUCKDB_PATH to another warehouse"
        ) from None
    except OSError as error:
        raise WarehouseBusyError(
            f"cannot lock the warehouse {duckdb_path} through {lock_path}: {error}"
        ) from error
    log.info("holding %s", lock_path)
    try:
        yield lock_path
    finally:
        lock.release()
