"""The warehouses on a file system: a DuckDB file (read and replace) and a directory of Parquet
files, local or on Cloud Storage (read only).

Reads are columnar end to end: DuckDB and Parquet hand Arrow over directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import duckdb
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from trainer import gcs
from trainer.errors import TrainerInputError
from trainer.failpoints import failpoint
from trainer.warehouse.base import LOCAL_SCHEMA, Warehouse

log = logging.getLogger(__name__)

WRITABLE = "DuckDB (duckdb:///path/to/file.duckdb) or BigQuery (bq://project.dataset)"


@dataclass(frozen=True)
class DuckDBWarehouse(Warehouse):
    """A DuckDB file; a table is replaced inside one transaction."""

    uri: str
    path: Path

    def _read(self, table: str, columns: list[str] | None) -> pa.Table:
        if not self.path.is_file():
            raise TrainerInputError(
                f"DuckDB file {self.path} does not exist: run `dbt build` (make run) first, or "
                "point --warehouse-uri / RECFLOW_DUCKDB_PATH at the file it built."
            )
        selected = "*" if columns is None else ", ".join(f'"{name}"' for name in columns)
        try:
            with duckdb.connect(str(self.path), read_only=True) as connection:
                return connection.sql(f"select {selected} from {_quoted(table)}").to_arrow_table()
        except duckdb.CatalogException as error:
            raise TrainerInputError(
                f"Table {table} does not exist in {self.path}: run `dbt build` to create it."
            ) from error
        except duckdb.BinderException as error:
            raise TrainerInputError(
                f"Table {table} in {self.path} lacks a column the trainer reads ({error}): "
                "run `dbt build` so the table matches the project."
            ) from error
        except duckdb.IOException as error:
            raise TrainerInputError(f"Cannot open DuckDB file {self.path}: {error}") from error

    def check_writable(self, table: str) -> None:
        """Any table can be written to a DuckDB file (its schema is created when missing)."""

    def replace(self, table: str, rows: pa.Table) -> None:
        schema, _, name = table.rpartition(".")
        try:
            with duckdb.connect(str(self.path)) as connection:
                connection.register("incoming_rows", rows)
                connection.execute("begin transaction")
                try:
                    if schema:
                        connection.execute(f'create schema if not exists "{schema}"')
                    connection.execute(
                        f'create or replace table "{schema or LOCAL_SCHEMA}"."{name}" as '
                        "select * from incoming_rows"
                    )
                    failpoint("writeback.before_commit")
                    connection.execute("commit")
                except BaseException:
                    connection.execute("rollback")
                    raise
        except duckdb.Error as error:
            raise TrainerInputError(
                f"Cannot write table {table} to {self.path}: {error}"
            ) from error
        log.info("replaced %s in %s with %d rows", table, self.path, rows.num_rows)


@dataclass(frozen=True)
class ParquetWarehouse(Warehouse):
    """A directory of `<table>.parquet` files (a local path or gs://bucket/prefix): exported
    marts to train on; it cannot take the batch recommendations back."""

    uri: str
    directory: str

    def _read(self, table: str, columns: list[str] | None) -> pa.Table:
        path = f"{self.directory}/{table.split('.')[-1]}.parquet"
        filesystem = gcs.filesystem() if gcs.is_gcs_uri(path) else fsspec.filesystem("file")
        if not filesystem.exists(path):
            raise TrainerInputError(f"No Parquet file for table {table} at {path}.")
        try:
            return pq.read_table(path, columns=columns, filesystem=filesystem)
        except pa.ArrowInvalid as error:
            raise TrainerInputError(
                f"Parquet file {path} for table {table} lacks a column the trainer reads "
                f"({error}): export the table again from a current `dbt build`."
            ) from error

    def check_writable(self, table: str) -> None:
        raise TrainerInputError(
            f"Cannot write table {table} to {self.uri!r}: writing supports {WRITABLE} "
            "only; pass --recommendations-table '' to skip it."
        )

    def replace(self, table: str, rows: pa.Table) -> None:
        self.check_writable(table)


def _quoted(name: str) -> str:
    return ".".join(f'"{part}"' for part in name.split("."))
