"""The warehouse the trainer reads its marts from and writes batch recommendations to, named by
one URI that is parsed here, once, into an object that reads and replaces tables:

  duckdb:///abs/path/warehouse.duckdb      a DuckDB file (the local default): read and replace
  file:///abs/dir, /abs/dir or             a directory of <table>.parquet files (exported
  gs://bucket/prefix                       marts): read only
  bq://PROJECT[.DATASET][?read_api=...]    BigQuery (trainer.warehouse.bigquery): read through
                                           the Storage Read API, replace by one load job

    warehouse = open_warehouse("duckdb:///path/to/warehouse.duckdb")
    examples = warehouse.read(qualified(warehouse.default_schema, "training_examples"))

The features schema (`--features-schema`) defaults to `main` on DuckDB and Parquet and to the
URI's dataset on BigQuery (`Warehouse.default_schema`).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from trainer import gcs
from trainer.errors import TrainerInputError
from trainer.warehouse.base import LOCAL_SCHEMA, Warehouse, qualified
from trainer.warehouse.bigquery import SCHEME as BIGQUERY_SCHEME
from trainer.warehouse.bigquery import BigQueryLocation, BigQueryWarehouse
from trainer.warehouse.local import DuckDBWarehouse, ParquetWarehouse

__all__ = [
    "LOCAL_SCHEMA",
    "BigQueryWarehouse",
    "DuckDBWarehouse",
    "ParquetWarehouse",
    "Warehouse",
    "open_warehouse",
    "qualified",
    "warehouse_of",
]

SUPPORTED = (
    "duckdb:///path/to/file.duckdb, file:///path/to/dir, a local directory, gs://bucket/prefix "
    "(Parquet files) or bq://project.dataset"
)


def open_warehouse(uri: str) -> Warehouse:
    """The warehouse `uri` names; a TrainerInputError naming the URI when it names none."""
    parts = urlsplit(uri)
    if parts.scheme == "duckdb":
        return DuckDBWarehouse(uri=uri, path=Path(parts.netloc + parts.path))
    if parts.scheme in ("", "file"):
        return ParquetWarehouse(uri=uri, directory=uri.removeprefix("file://").rstrip("/"))
    if gcs.is_gcs_uri(uri):
        return ParquetWarehouse(uri=uri, directory=uri.rstrip("/"))
    if parts.scheme == BIGQUERY_SCHEME:
        return BigQueryWarehouse(uri=uri, location=BigQueryLocation.parse(uri))
    raise TrainerInputError(
        f"Unsupported warehouse URI scheme '{parts.scheme}' in {uri!r}: use {SUPPORTED}."
    )


def warehouse_of(warehouse: Warehouse | str) -> Warehouse:
    """`warehouse` itself, or the one its URI names: for functions a notebook calls with a URI."""
    return warehouse if isinstance(warehouse, Warehouse) else open_warehouse(warehouse)
