"""The BigQuery warehouse: read the marts and replace the batch recommendations table, through
the official clients.

Warehouse URI: `bq://PROJECT[.DATASET][?read_api=storage|rest]` (PROJECT may be domain-scoped,
`example.com:project`). A table is named the way the trainer names every table:

  `table`                  DATASET.table, DATASET from the URI (the features schema default)
  `dataset.table`          that dataset in PROJECT (`ml.batch_recommendations`)
  `project.dataset.table`  fully qualified

Reads go through the BigQuery Storage Read API into Arrow record batches (`read_api=storage`,
the default): `tables.get` for the schema, then a read session whose streams are decoded
column by column, never row by row. `read_api=rest` reads the same Arrow table through
`tabledata.list` pages instead; it exists for principals that may read tables but not create
read sessions (no `bigquery.readsessions.create`) and is used only when the URI asks for it,
never as a silent fallback.

Writes are one load job from Parquet with WRITE_TRUNCATE: BigQuery commits the new rows and
drops the old ones in one step, or changes nothing when the job fails.

Every problem a user can fix (no credentials, a dataset or table that does not exist, no
permission, a failed load job) becomes a TrainerInputError naming the table and the fix.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import BigQueryReadClient

from trainer import gcp_credentials
from trainer.errors import TrainerInputError
from trainer.warehouse.base import Warehouse

log = logging.getLogger(__name__)

SCHEME = "bq"
STORAGE_API, REST_API = "storage", "rest"
LOAD_TIMEOUT_S = 1800.0
_DATASET_NAME = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_ARROW_TO_BIGQUERY = (
    (pa.types.is_string, "STRING"),
    (pa.types.is_large_string, "STRING"),
    (pa.types.is_int64, "INT64"),
    (pa.types.is_float64, "FLOAT64"),
    (pa.types.is_boolean, "BOOL"),
    (pa.types.is_date32, "DATE"),
    (pa.types.is_timestamp, "TIMESTAMP"),
)


@dataclass(frozen=True)
class BigQueryLocation:
    """A parsed `bq://` warehouse URI: the project, its default dataset and the read API."""

    project: str
    dataset: str | None = None
    read_api: str = STORAGE_API

    @classmethod
    def parse(cls, uri: str) -> BigQueryLocation:
        parts = urlsplit(uri)
        if parts.scheme != SCHEME:
            raise TrainerInputError(f"{uri!r} is not a BigQuery URI (bq://project.dataset).")
        body = uri[len(f"{SCHEME}://") :].split("?", 1)[0].rstrip("/")
        project, dataset = _project_and_dataset(body)
        if not project or (dataset is not None and not _DATASET_NAME.match(dataset)):
            raise TrainerInputError(
                f"Cannot read BigQuery URI {uri!r}: use bq://PROJECT or bq://PROJECT.DATASET."
            )
        return cls(project=project, dataset=dataset, read_api=_read_api(uri, parts.query))

    def table_id(self, table: str) -> str:
        """`project.dataset.table` for a table named as in the module docstring."""
        parts = table.split(".")
        if len(parts) == 1 and self.dataset is None:
            raise TrainerInputError(
                f"No dataset for table {table} in bq://{self.project}: use "
                f"bq://{self.project}.DATASET or name the dataset (--features-schema DATASET)."
            )
        if len(parts) == 1:
            return f"{self.project}.{self.dataset}.{table}"
        if len(parts) == 2:
            return f"{self.project}.{table}"
        return table


@dataclass(frozen=True)
class BigQueryClients:
    """The official clients one operation uses: REST (metadata, tabledata, jobs) and, for
    Storage Read API reads, gRPC."""

    bigquery: bigquery.Client
    storage: BigQueryReadClient | None = None

    @classmethod
    def from_environment(cls, project: str, *, storage: bool) -> BigQueryClients:
        """Clients authenticated with Application Default Credentials, billed to `project`;
        the Storage Read client only when `storage` (writes and REST reads never open it)."""
        credentials = gcp_credentials.default_credentials("BigQuery")
        return cls(
            bigquery=bigquery.Client(project=project, credentials=credentials),
            storage=BigQueryReadClient(credentials=credentials) if storage else None,
        )

    def close(self) -> None:
        self.bigquery.close()
        if self.storage is not None:
            self.storage.transport.close()


@dataclass(frozen=True)
class BigQueryWarehouse(Warehouse):
    """A BigQuery project (and default dataset) named by a bq:// URI."""

    uri: str
    location: BigQueryLocation
    # Given: every operation uses them and the caller closes them; None: each operation opens
    # its own from Application Default Credentials and closes them after.
    clients: BigQueryClients | None = None

    @property
    def default_schema(self) -> str | None:
        """The URI's dataset (None when it names none: each table must then name its own)."""
        return self.location.dataset

    def _read(self, table: str, columns: list[str] | None) -> pa.Table:
        """The table as Arrow, through the read API the location names."""
        table_id = self.location.table_id(table)
        storage = self.location.read_api == STORAGE_API
        with (
            _connected(self.location, self.clients, storage=storage) as connected,
            _explained("read", table_id, _READ_FIX),
        ):
            if columns is None:
                rows = connected.bigquery.list_rows(table_id)  # tables.get: the schema
            else:
                found = connected.bigquery.get_table(table_id)  # tables.get: the schema
                rows = connected.bigquery.list_rows(
                    found, selected_fields=_fields(found.schema, columns, table_id)
                )
            if storage:
                if connected.storage is None:
                    raise ValueError("read_api=storage needs BigQueryClients.storage")
                return rows.to_arrow(bqstorage_client=connected.storage)
            return rows.to_arrow(create_bqstorage_client=False)

    def check_writable(self, table: str) -> None:
        """Fail before any work when the table's dataset does not exist or cannot be seen."""
        table_id = self.location.table_id(table)
        with _connected(self.location, self.clients, storage=False) as connected:
            _target_dataset(connected.bigquery, table_id)

    def replace(self, table: str, rows: pa.Table) -> None:
        """Replace the table with `rows` in one load job (Parquet, WRITE_TRUNCATE), and wait."""
        table_id = self.location.table_id(table)
        with _connected(self.location, self.clients, storage=False) as connected:
            dataset = _target_dataset(connected.bigquery, table_id)
            with tempfile.TemporaryFile(suffix=".parquet") as parquet:
                size = _write_parquet(_timestamps_in_utc(rows), parquet)
                with _explained("load into", table_id, _WRITE_FIX):
                    job = connected.bigquery.load_table_from_file(
                        parquet,
                        table_id,
                        size=size,
                        rewind=True,
                        location=dataset.location,
                        job_config=load_job_config(rows.schema),
                    )
            _wait_for(job, table_id)
        log.info("replaced %s with %d rows (load job %s)", table_id, rows.num_rows, job.job_id)


def load_job_config(schema: pa.Schema) -> bigquery.LoadJobConfig:
    """Parquet, replacing the table and its schema; the schema is given so that a timestamp
    column is a TIMESTAMP whatever the Parquet writer's conventions."""
    return bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.PARQUET,
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
        schema=bigquery_schema(schema),
    )


def bigquery_schema(schema: pa.Schema) -> list[bigquery.SchemaField]:
    """BigQuery columns for the Arrow types the trainer writes."""
    return [
        bigquery.SchemaField(
            field.name,
            _bigquery_type(field),
            mode="NULLABLE" if field.nullable else "REQUIRED",
        )
        for field in schema
    ]


# --- helpers --------------------------------------------------------------------------------------

_READ_FIX = (
    "build the marts there with dbt (`dbt build` against the BigQuery target), or point "
    "--warehouse-uri (bq://PROJECT.DATASET) or --features-schema at the dataset that holds them"
)
_WRITE_FIX = (
    "create the dataset (`bq mk --dataset PROJECT:DATASET`) or name another one with "
    "--recommendations-table DATASET.TABLE; pass --recommendations-table '' to skip the write-back"
)


def _project_and_dataset(body: str) -> tuple[str, str | None]:
    """`project.dataset` -> (project, dataset); a domain-scoped project keeps its dotted
    domain: `example.com:project.dataset` -> ('example.com:project', 'dataset')."""
    domain, colon, rest = body.rpartition(":")
    project, _, dataset = rest.partition(".")
    return (f"{domain}:{project}" if colon else project), (dataset or None)


def _read_api(uri: str, query: str) -> str:
    options = parse_qs(query, keep_blank_values=True)
    unknown = set(options) - {"read_api"}
    read_api = options.get("read_api", [STORAGE_API])[-1]
    if unknown or read_api not in (STORAGE_API, REST_API):
        raise TrainerInputError(
            f"Cannot read BigQuery URI {uri!r}: the only option is read_api=storage (the "
            "default, the Storage Read API) or read_api=rest (tabledata.list)."
        )
    return read_api


@contextmanager
def _connected(
    location: BigQueryLocation, clients: BigQueryClients | None, *, storage: bool
) -> Iterator[BigQueryClients]:
    """The given clients (the caller owns them), or new ones closed after the block."""
    if clients is not None:
        yield clients
        return
    owned = BigQueryClients.from_environment(location.project, storage=storage)
    try:
        yield owned
    finally:
        owned.close()


@contextmanager
def _explained(action: str, table_id: str, fix: str) -> Iterator[None]:
    """Turn the API errors a user can fix into TrainerInputErrors naming `table_id`."""
    try:
        yield
    except api_exceptions.NotFound as error:
        raise TrainerInputError(
            f"Cannot {action} BigQuery table {table_id}: {_server_message(error)}. To fix: {fix}."
        ) from error
    except (api_exceptions.Forbidden, api_exceptions.Unauthorized) as error:
        raise TrainerInputError(
            f"Not allowed to {action} BigQuery table {table_id}: {_server_message(error)}. The "
            "credentials need BigQuery Data Viewer and Read Session User to read (or, without "
            "Read Session User, a bq://...?read_api=rest URI), Data Editor and Job User to write."
        ) from error
    except api_exceptions.BadRequest as error:
        raise TrainerInputError(
            f"BigQuery refused to {action} table {table_id}: {_server_message(error)}"
        ) from error
    except auth_exceptions.RefreshError as error:
        raise gcp_credentials.refused_credentials(f"{action} {table_id}", error) from error


def _fields(
    schema: list[bigquery.SchemaField], columns: list[str], table_id: str
) -> list[bigquery.SchemaField]:
    """The schema's fields named `columns`, in that order; a TrainerInputError when one lacks."""
    by_name = {field.name: field for field in schema}
    missing = [name for name in columns if name not in by_name]
    if missing:
        raise TrainerInputError(
            f"BigQuery table {table_id} lacks column(s) {', '.join(missing)} that the trainer "
            f"reads: {_READ_FIX}."
        )
    return [by_name[name] for name in columns]


def _server_message(error: api_exceptions.GoogleAPICallError) -> str:
    """The API's own message (`Not found: Dataset p:d`), without the request line."""
    for detail in error.errors or ():
        if isinstance(detail, dict) and detail.get("message"):
            return str(detail["message"])
    return str(error.message)


def _target_dataset(client: bigquery.Client, table_id: str) -> bigquery.Dataset:
    project, dataset_id, _ = table_id.rsplit(".", 2)
    with _explained("write", table_id, _WRITE_FIX):
        return client.get_dataset(bigquery.DatasetReference(project, dataset_id))


def _timestamps_in_utc(rows: pa.Table) -> pa.Table:
    """Naive timestamps (UTC by the trainer's convention) as UTC-aware ones: BigQuery reads a
    naive Parquet timestamp as DATETIME."""
    for index, field in enumerate(rows.schema):
        if pa.types.is_timestamp(field.type) and field.type.tz is None:
            utc = pc.assume_timezone(rows.column(index), timezone="UTC")
            rows = rows.set_column(index, pa.field(field.name, utc.type, field.nullable), utc)
    return rows


def _write_parquet(rows: pa.Table, sink: IO[bytes]) -> int:
    pq.write_table(rows, sink)
    size = sink.tell()
    sink.seek(0)
    return size


def _wait_for(job: bigquery.LoadJob, table_id: str) -> None:
    try:
        job.result(timeout=LOAD_TIMEOUT_S)
    except api_exceptions.GoogleAPICallError as error:
        message = (job.error_result or {}).get("message") or _server_message(error)
        raise TrainerInputError(
            f"Load job {job.job_id} into BigQuery table {table_id} failed: {message}. The table "
            "is unchanged."
        ) from error


def _bigquery_type(field: pa.Field) -> str:
    for matches, name in _ARROW_TO_BIGQUERY:
        if matches(field.type):
            return name
    raise TypeError(f"No BigQuery type for column {field.name} of Arrow type {field.type}")
