"""Write run artifacts and warehouse tables so that a failure never leaves a half-written result.

A run directory is assembled under a temporary name beside its final place and renamed into
place only when complete; a warehouse table is replaced inside one transaction.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb
import pyarrow as pa

from trainer.errors import TrainerInputError
from trainer.reading import duckdb_path

log = logging.getLogger(__name__)


@contextmanager
def staged_directory(final_dir: Path) -> Iterator[Path]:
    """Yield a temporary directory that becomes `final_dir` only if the block succeeds."""
    if final_dir.exists():
        raise TrainerInputError(f"Run directory {final_dir} already exists; refusing to overwrite.")
    final_dir.parent.mkdir(parents=True, exist_ok=True)
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


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def check_writable(warehouse_uri: str, table: str) -> None:
    """Fail before any work when `table` could not be written back to this warehouse."""
    scheme = urlsplit(warehouse_uri).scheme
    if scheme != "duckdb":
        raise TrainerInputError(
            f"Cannot write table {table} to {warehouse_uri!r}: writing supports DuckDB "
            "(duckdb:///path/to/file.duckdb) only; pass --recommendations-table '' to skip it."
        )


def replace_warehouse_table(warehouse_uri: str, table: str, rows: pa.Table) -> None:
    """Replace `schema.table` in the warehouse with `rows`, atomically."""
    check_writable(warehouse_uri, table)
    schema, _, name = table.rpartition(".")
    path = duckdb_path(warehouse_uri)
    try:
        with duckdb.connect(str(path)) as connection:
            connection.register("incoming_rows", rows)
            connection.execute("begin transaction")
            try:
                if schema:
                    connection.execute(f'create schema if not exists "{schema}"')
                connection.execute(
                    f'create or replace table "{schema or "main"}"."{name}" as '
                    "select * from incoming_rows"
                )
                connection.execute("commit")
            except BaseException:
                connection.execute("rollback")
                raise
    except duckdb.Error as error:
        raise TrainerInputError(f"Cannot write table {table} to {path}: {error}") from error
    log.info("replaced %s in %s with %d rows", table, path, rows.num_rows)
