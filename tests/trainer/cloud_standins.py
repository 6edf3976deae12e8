"""Local stand-ins for the Google Cloud services the trainer talks to, for tests that run the
real client libraries: every server listens on 127.0.0.1 on a free port, records what the
clients sent, and stops when its context manager exits.

- Cloud Storage: gcp-storage-emulator (in-process, in memory), reached by gcsfs through
  STORAGE_EMULATOR_HOST.
- BigQuery REST: `RecordedBigQuery`, an http.server answering with the recorded response bodies in
  recorded_bigquery/ (tables.get, paginated tabledata.list, datasets.get, multipart and resumable
  jobs.insert uploads, jobs.get, dry-run query jobs, 404 errors) plus an OAuth 2.0 token
  endpoint.
- BigQuery Storage Read API: `StandinBigQueryRead`, a gRPC server implementing CreateReadSession
  and ReadRows with the client package's own message types and Arrow IPC payloads.

Not a conftest (see trainer_harness.py): test modules import it by name.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import gcsfs
import grpc
import pyarrow as pa
import pyarrow.parquet as pq
from gcp_storage_emulator.server import create_server
from google.cloud.bigquery_storage_v1 import BigQueryReadClient, types
from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
    BigQueryReadGrpcTransport,
)
from local_http import (
    NO_SUCH_ROUTE,
    Reply,
    SentRequest,
    dispatch,
    fill_recording,
    json_handler,
    serve_http,
)

from recflow.checks import offline_compile

RECORDINGS = Path(__file__).resolve().parent / "recorded_bigquery"
PROJECT = "recflow-test"
STOP_TIMEOUT_S = 5.0


def free_port() -> int:
    """A port nothing listens on right now (for servers that need the number up front)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- Cloud Storage --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmulatedStorage:
    """A running gcp-storage-emulator: its URL (for STORAGE_EMULATOR_HOST) and a gcsfs client."""

    url: str
    fs: gcsfs.GCSFileSystem

    def objects(self, prefix: str) -> list[str]:
        """`bucket/name` of every object under `bucket/prefix/`."""
        self.fs.invalidate_cache()
        return sorted(self.fs.find(f"{prefix.rstrip('/')}/"))


@contextmanager
def storage_emulator(*buckets: str) -> Iterator[EmulatedStorage]:
    """gcp-storage-emulator in this process, in memory, with `buckets` created."""
    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        fs = gcsfs.GCSFileSystem(token="anon", endpoint_url=url, skip_instance_cache=True)
        for bucket in buckets:
            fs.mkdir(bucket)
        yield EmulatedStorage(url=url, fs=fs)
    finally:
        server.stop()


# --- BigQuery REST --------------------------------------------------------------------------------


@dataclass
class LoadJob:
    """A load job the stand-in accepted: its resource, the uploaded file and how it ends."""

    resource: dict[str, Any]
    data: bytes
    outcome: str  # a recorded jobs.get body: jobs_get_load_done or jobs_get_load_failed_quota

    @property
    def rows(self) -> pa.Table:
        return pq.read_table(pa.BufferReader(self.data))


@dataclass
class RecordedBigQuery:
    """What the BigQuery stand-in knows (recorded tables and datasets) and what it was sent."""

    tables: dict[str, str] = field(
        default_factory=lambda: {f"{PROJECT}/features/item_features": "item_features"}
    )
    datasets: dict[str, str] = field(default_factory=lambda: {f"{PROJECT}/ml": "ml"})
    load_outcome: str = "jobs_get_load_done"
    requests: list[SentRequest] = field(default_factory=list)
    jobs: dict[str, LoadJob] = field(default_factory=dict)
    url: str = ""
    resumable_uploads: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Dry-run query jobs: the bytes of a query are those of the first key it contains; a query
    # naming one of `missing_tables` (`project.dataset.table`) gets the service's notFound.
    dry_run_bytes: dict[str, int] = field(default_factory=dict)
    missing_tables: tuple[str, ...] = ()
    # A query containing one of these names gets the service's invalidQuery ("Unrecognized
    # name: <name>"), as for a column the table does not have.
    unknown_names: tuple[str, ...] = ()
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def sent(self, method: str, path_pattern: str) -> list[SentRequest]:
        """The requests with this method whose path matches `path_pattern` (a regex)."""
        with self._lock:
            return [request for request in self.requests if request.matches(method, path_pattern)]

    def record(self, request: SentRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def dataset_known(self, project: str, dataset: str) -> bool:
        return f"{project}/{dataset}" in self.datasets or any(
            key.startswith(f"{project}/{dataset}/") for key in self.tables
        )


def recorded(name: str, **values: Any) -> Any:
    """A recorded body with its `$name` placeholders filled in (see local_http.fill_recording)."""
    return fill_recording(RECORDINGS / f"{name}.json", values)


class _BigQueryRoutes:
    """Routes of the BigQuery v2 REST API (and the token endpoint) the trainer uses."""

    def __init__(self, state: RecordedBigQuery) -> None:
        self.state = state
        base = "/bigquery/v2/projects/(?P<project>[^/]+)"
        self.routes: list[tuple[str, str, Callable[..., Reply]]] = [
            ("POST", "/token", self.token),
            ("GET", f"{base}/datasets/(?P<dataset>[^/]+)", self.get_dataset),
            ("GET", f"{base}/datasets/(?P<dataset>[^/]+)/tables/(?P<table>[^/]+)", self.get_table),
            (
                "GET",
                f"{base}/datasets/(?P<dataset>[^/]+)/tables/(?P<table>[^/]+)/data",
                self.list_rows,
            ),
            ("POST", "/upload/bigquery/v2/projects/(?P<project>[^/]+)/jobs", self.insert_job),
            ("PUT", "/upload/bigquery/v2/projects/(?P<project>[^/]+)/jobs", self.resume_upload),
            ("GET", f"{base}/jobs/(?P<job_id>[^/]+)", self.get_job),
            ("POST", f"{base}/jobs", self.insert_query_job),
        ]

    def handle(self, request: SentRequest) -> Reply:
        self.state.record(request)
        replied = dispatch(self.routes, request)
        return replied if replied is not None else (HTTPStatus.NOT_FOUND, NO_SUCH_ROUTE, {})

    def token(self, request: SentRequest) -> Reply:
        return HTTPStatus.OK, recorded("oauth2_token"), {}

    def get_dataset(self, request: SentRequest, project: str, dataset: str) -> Reply:
        name = self.state.datasets.get(f"{project}/{dataset}")
        if name is None:
            return _not_found_dataset(project, dataset)
        return HTTPStatus.OK, recorded(f"datasets_get_{name}"), {}

    def get_table(self, request: SentRequest, project: str, dataset: str, table: str) -> Reply:
        name = self.state.tables.get(f"{project}/{dataset}/{table}")
        if name is None:
            return self._table_missing(project, dataset, table)
        return HTTPStatus.OK, recorded(f"tables_get_{name}"), {}

    def list_rows(self, request: SentRequest, project: str, dataset: str, table: str) -> Reply:
        name = self.state.tables.get(f"{project}/{dataset}/{table}")
        if name is None:
            return self._table_missing(project, dataset, table)
        pages = sorted(RECORDINGS.glob(f"tabledata_list_{name}_page*.json"))
        token = request.query.get("pageToken", [None])[-1]
        index = 0
        if token is not None:
            tokens = [json.loads(page.read_text()).get("pageToken") for page in pages]
            if token not in tokens:
                return HTTPStatus.BAD_REQUEST, {"error": {"code": 400, "message": "bad token"}}, {}
            index = tokens.index(token) + 1
        return HTTPStatus.OK, recorded(pages[index].stem), {}

    def insert_job(self, request: SentRequest, project: str) -> Reply:
        upload_type = request.query.get("uploadType", [""])[-1]
        if upload_type == "multipart":
            metadata, data = _multipart_parts(request)
            return HTTPStatus.OK, self._accept_load(project, json.loads(metadata), data), {}
        if upload_type == "resumable":
            upload_id = uuid.uuid4().hex
            self.state.resumable_uploads[upload_id] = {"resource": request.json(), "data": b""}
            location = f"{self.state.url}{request.path}?uploadType=resumable&upload_id={upload_id}"
            return HTTPStatus.OK, None, {"Location": location}
        return HTTPStatus.BAD_REQUEST, {"error": {"code": 400, "message": "uploadType"}}, {}

    def resume_upload(self, request: SentRequest, project: str) -> Reply:
        upload = self.state.resumable_uploads[request.query["upload_id"][-1]]
        upload["data"] += request.body
        total = request.headers.get("content-range", "").rpartition("/")[2]
        if total == "*" or len(upload["data"]) < int(total):
            sent_range = f"bytes=0-{len(upload['data']) - 1}"
            return HTTPStatus.PERMANENT_REDIRECT, None, {"Range": sent_range}
        return HTTPStatus.OK, self._accept_load(project, upload["resource"], upload["data"]), {}

    def get_job(self, request: SentRequest, project: str, job_id: str) -> Reply:
        job = self.state.jobs[job_id]
        rows = job.rows.num_rows if job.outcome == "jobs_get_load_done" else 0
        return HTTPStatus.OK, self._job_body(job, job.outcome, output_rows=rows), {}

    def insert_query_job(self, request: SentRequest, project: str) -> Reply:
        """jobs.insert of a query; only dry runs, which the service answers at once."""
        resource = request.json()
        configuration = resource.get("configuration", {})
        if not configuration.get("dryRun") or "query" not in configuration:
            return HTTPStatus.BAD_REQUEST, {"error": {"code": 400, "message": "dry runs only"}}, {}
        sql = configuration["query"]["query"]
        location = resource.get("jobReference", {}).get("location") or "US"
        for table in self.state.missing_tables:
            if table in sql:
                table_project, dataset, name = table.split(".")
                body = recorded(
                    "error_query_not_found_table",
                    project=table_project,
                    dataset=dataset,
                    table=name,
                    location=location,
                )
                return HTTPStatus.NOT_FOUND, body, {}
        for name in self.state.unknown_names:
            if name in sql:
                return HTTPStatus.BAD_REQUEST, recorded("error_query_invalid", identifier=name), {}
        total = next((size for key, size in self.state.dry_run_bytes.items() if key in sql), None)
        if total is None:
            message = "the stand-in has no dry-run bytes for this query"
            return HTTPStatus.BAD_REQUEST, {"error": {"code": 400, "message": message}}, {}
        body = recorded(
            "jobs_insert_query_dry_run",
            project=project,
            location=location,
            configuration={**configuration, "jobType": "QUERY"},
            total_bytes=str(total),  # int64 fields are decimal strings in the API
        )
        return HTTPStatus.OK, body, {}

    def _accept_load(self, project: str, resource: dict[str, Any], data: bytes) -> dict[str, Any]:
        reference = resource["jobReference"]
        job = LoadJob(resource=resource, data=data, outcome=self.state.load_outcome)
        self.state.jobs[reference["jobId"]] = job
        return self._job_body(job, "jobs_insert_load_running")

    def _job_body(self, job: LoadJob, recording: str, **extra: Any) -> dict[str, Any]:
        reference = job.resource["jobReference"]
        return recorded(
            recording,
            project=reference["projectId"],
            job_id=reference["jobId"],
            location=reference.get("location") or "US",
            configuration={**job.resource["configuration"], "jobType": "LOAD"},
            input_bytes=len(job.data),
            **extra,
        )

    def _table_missing(self, project: str, dataset: str, table: str) -> Reply:
        if not self.state.dataset_known(project, dataset):
            return _not_found_dataset(project, dataset)
        body = recorded("error_not_found_table", project=project, dataset=dataset, table=table)
        return HTTPStatus.NOT_FOUND, body, {}


def _not_found_dataset(project: str, dataset: str) -> Reply:
    body = recorded("error_not_found_dataset", project=project, dataset=dataset)
    return HTTPStatus.NOT_FOUND, body, {}


def _multipart_parts(request: SentRequest) -> tuple[bytes, bytes]:
    """The JSON metadata and the file of a multipart/related upload (RFC 2387 framing as the
    client writes it: CRLF line ends, one header per part)."""
    boundary = request.headers["content-type"].partition("boundary=")[2].strip('"').encode()
    parts = request.body.split(b"--" + boundary)[1:-1]
    payloads = [part.removeprefix(b"\r\n").partition(b"\r\n\r\n")[2][:-2] for part in parts]
    metadata, data = payloads
    return metadata, data


@contextmanager
def recorded_bigquery(state: RecordedBigQuery | None = None) -> Iterator[RecordedBigQuery]:
    """The BigQuery REST stand-in on 127.0.0.1, serving `state`'s recordings."""
    state = state or RecordedBigQuery()
    handler = json_handler(_BigQueryRoutes(state).handle)
    with serve_http(handler, name="bigquery-standin") as url:
        state.url = url
        yield state


# --- BigQuery Storage Read API (gRPC) -------------------------------------------------------------

READ_SERVICE = "google.cloud.bigquery.storage.v1.BigQueryRead"


@dataclass
class StandinBigQueryRead:
    """The Storage Read API over `tables` (`projects/p/datasets/d/tables/t` -> Arrow), each
    served as `streams` streams of `batch_rows`-row record batches."""

    tables: dict[str, pa.Table]
    streams: int = 2
    batch_rows: int = 2
    sessions: list[types.CreateReadSessionRequest] = field(default_factory=list)
    reads: list[types.ReadRowsRequest] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)
    endpoint: str = ""
    _stream_rows: dict[str, tuple[pa.Table, bool]] = field(default_factory=dict)

    def client(self) -> BigQueryReadClient:
        """The real client on an insecure channel to this server (credentials unused)."""
        channel = grpc.insecure_channel(self.endpoint)
        return BigQueryReadClient(transport=BigQueryReadGrpcTransport(channel=channel))

    def create_read_session(
        self, request: types.CreateReadSessionRequest, context: grpc.ServicerContext
    ) -> types.ReadSession:
        self.sessions.append(request)
        self.metadata.append(dict(context.invocation_metadata()))
        path = request.read_session.table
        if path not in self.tables:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Not found: Table {path}")
        table = self.tables[path]
        options = request.read_session.read_options.arrow_serialization_options
        lz4 = options.buffer_compression == options.CompressionCodec.LZ4_FRAME
        name = f"projects/{PROJECT}/locations/us/sessions/{uuid.uuid4().hex[:12]}"
        count = self.streams if request.max_stream_count <= 0 else request.max_stream_count
        count = min(count, self.streams)
        bounds = [round(i * table.num_rows / count) for i in range(count + 1)]
        streams = []
        for index in range(count):
            stream = types.ReadStream(name=f"{name}/streams/{index}")
            rows = table.slice(bounds[index], bounds[index + 1] - bounds[index])
            self._stream_rows[stream.name] = (rows, lz4)
            streams.append(stream)
        return types.ReadSession(
            name=name,
            data_format=types.DataFormat.ARROW,
            arrow_schema=types.ArrowSchema(serialized_schema=table.schema.serialize().to_pybytes()),
            table=path,
            streams=streams,
            estimated_row_count=table.num_rows,
        )

    def read_rows(
        self, request: types.ReadRowsRequest, context: grpc.ServicerContext
    ) -> Iterator[types.ReadRowsResponse]:
        self.reads.append(request)
        self.metadata.append(dict(context.invocation_metadata()))
        rows, lz4 = self._stream_rows[request.read_stream]
        batches = rows.slice(request.offset).to_batches(max_chunksize=self.batch_rows)
        for index, batch in enumerate(batches):
            response = types.ReadRowsResponse(
                arrow_record_batch=types.ArrowRecordBatch(
                    serialized_record_batch=_ipc_batch(batch, lz4), row_count=batch.num_rows
                ),
                row_count=batch.num_rows,
            )
            if index == 0:  # as the service does: the schema in a stream's first response only
                response.arrow_schema = types.ArrowSchema(
                    serialized_schema=rows.schema.serialize().to_pybytes()
                )
            yield response


def _ipc_batch(batch: pa.RecordBatch, lz4: bool) -> bytes:
    """One encapsulated Arrow IPC record batch message, LZ4-compressed when the client asked."""
    options = pa.ipc.IpcWriteOptions(compression="lz4" if lz4 else None)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema, options=options) as writer:
        writer.write_batch(batch)
    messages = pa.ipc.MessageReader.open_stream(sink.getvalue())
    messages.read_next_message()  # the schema, sent once in the ReadSession
    return messages.read_next_message().serialize().to_pybytes()


@contextmanager
def standin_bigquery_read(tables: dict[str, pa.Table]) -> Iterator[StandinBigQueryRead]:
    """The Storage Read API stand-in as a gRPC server on 127.0.0.1."""
    state = StandinBigQueryRead(tables=tables)
    handlers = grpc.method_handlers_generic_handler(
        READ_SERVICE,
        {
            "CreateReadSession": grpc.unary_unary_rpc_method_handler(
                state.create_read_session,
                request_deserializer=types.CreateReadSessionRequest.deserialize,
                response_serializer=types.ReadSession.serialize,
            ),
            "ReadRows": grpc.unary_stream_rpc_method_handler(
                state.read_rows,
                request_deserializer=types.ReadRowsRequest.deserialize,
                response_serializer=types.ReadRowsResponse.serialize,
            ),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handlers,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    state.endpoint = f"127.0.0.1:{port}"
    try:
        yield state
    finally:
        server.stop(grace=None).wait(STOP_TIMEOUT_S)


# --- credentials ----------------------------------------------------------------------------------


def write_service_account_key(path: Path, token_uri: str) -> Path:
    """A service account key file (a fresh RSA key) whose token endpoint is `token_uri`: the
    auth library signs a JWT with it and exchanges it there, as at oauth2.googleapis.com."""
    return offline_compile.write_service_account_key(
        path, project=PROJECT, account="trainer", token_uri=token_uri
    )
