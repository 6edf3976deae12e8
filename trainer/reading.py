"""Read the dbt marts the trainer needs, from a warehouse URI, as Arrow tables.

Supported URIs:
  duckdb:///abs/path/warehouse.duckdb   a DuckDB file (the local default); tables by name
  file:///abs/dir  or  /abs/dir         a directory of <table>.parquet files
  bq://project.dataset                  BigQuery (trainer.bigquery_io): `dataset.table`, or a
                                        bare name for a table in the URI's dataset
Reads are columnar end to end (DuckDB, Parquet and the BigQuery Storage Read API hand Arrow
over directly): no row-by-row fetches and no CSV round trip.

The features schema (`--features-schema`) defaults to `main` on DuckDB and Parquet and to the
URI's dataset on BigQuery.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from trainer import bigquery_io
from trainer.errors import TrainerInputError

log = logging.getLogger(__name__)

SUPPORTED = (
    "duckdb:///path/to/file.duckdb, file:///path/to/dir, a local directory or bq://project.dataset"
)
LOCAL_SCHEMA = "main"


def read_table(warehouse_uri: str, table: str) -> pa.Table:
    """Read one table (optionally `schema.table`) from the warehouse at `warehouse_uri`."""
    scheme = urlsplit(warehouse_uri).scheme
    if scheme == "duckdb":
        result = _read_duckdb(duckdb_path(warehouse_uri), table)
    elif scheme in ("", "file"):
        result = _read_parquet(warehouse_uri, table)
    elif scheme == bigquery_io.SCHEME:
        location = bigquery_io.BigQueryLocation.parse(warehouse_uri)
        result = bigquery_io.read_table(location, table)
    else:
        raise TrainerInputError(
            f"Unsupported warehouse URI scheme '{scheme}' in {warehouse_uri!r}: use {SUPPORTED}."
        )
    log.info("read %s from %s: %d rows", table, warehouse_uri, result.num_rows)
    return result


def default_schema(warehouse_uri: str) -> str | None:
    """Where the marts are when no schema is given: `main` locally, the URI's dataset on
    BigQuery (None when the URI names none, so each table must name its dataset)."""
    if urlsplit(warehouse_uri).scheme == bigquery_io.SCHEME:
        return bigquery_io.BigQueryLocation.parse(warehouse_uri).dataset
    return LOCAL_SCHEMA


def duckdb_path(warehouse_uri: str) -> Path:
    parts = urlsplit(warehouse_uri)
    return Path(parts.netloc + parts.path)


def _read_duckdb(path: Path, table: str) -> pa.Table:
    if not path.is_file():
        raise TrainerInputError(
            f"DuckDB file {path} does not exist: run `dbt build` (make run) first, or point "
            "--warehouse-uri / RECFLOW_DUCKDB_PATH at the file it built."
        )
    try:
        with duckdb.connect(str(path), read_only=True) as connection:
            return connection.sql(f"select * from {_quoted(table)}").to_arrow_table()
    except duckdb.CatalogException as error:
        raise TrainerInputError(
            f"Table {table} does not exist in {path}: run `dbt build` to create it."
        ) from error
    except duckdb.IOException as error:
        raise TrainerInputError(f"Cannot open DuckDB file {path}: {error}") from error


def _read_parquet(warehouse_uri: str, table: str) -> pa.Table:
    directory = warehouse_uri.removeprefix("file://").rstrip("/")
    path = f"{directory}/{table.split('.')[-1]}.parquet"
    filesystem, fs_path = fsspec.core.url_to_fs(path)
    if not filesystem.exists(fs_path):
        raise TrainerInputError(f"No Parquet file for table {table} at {path}.")
    return pq.read_table(fs_path, filesystem=filesystem)


def _quoted(table: str) -> str:
    return ".".join(f'"{part}"' for part in table.split("."))
