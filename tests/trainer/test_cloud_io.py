"""The trainer's BigQuery I/O with the real client libraries against local stand-ins
(cloud_standins.py, shared set-up in cloud_io_support.py): parsing bq:// URIs, reading marts
through the Storage Read API (gRPC) or tabledata.list pages (REST), replacing
ml.batch_recommendations with a Parquet load job, the errors a user sees when a dataset or a
table is missing (directly and through `python -m trainer.task`), and the message when no
credentials are found. Run directories on Cloud Storage are in test_gcs_run_dirs.py. Nothing
leaves 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from cloud_io_support import (
    BUCKET,
    ITEM_FEATURES,
    STORAGE_ITEM_FEATURES,
    STORAGE_SCHEMA,
    TABLE_PATH,
    TABLE_URL,
    assert_exit_2,
    connected_to,
    fixture_bigquery_read,  # noqa: F401 -- a fixture, requested by parameter name
    fixture_bigquery_rest,  # noqa: F401 -- a fixture, requested by parameter name
    fixture_clients,  # noqa: F401 -- a fixture, requested by parameter name
    isolated_env,
    recommendations,
)
from cloud_standins import (
    PROJECT,
    RecordedBigQuery,
    StandinBigQueryRead,
    recorded,
    write_service_account_key,
)
from conftest import TinyWarehouse
from google.cloud.bigquery_storage_v1 import types as storage_types
from trainer_harness import (
    duckdb_uri,
    manifest_of,
    run_trainer,
    trainer_args,
)

from trainer.errors import TrainerInputError
from trainer.recommend import RECOMMENDATIONS_SCHEMA
from trainer.warehouse import open_warehouse
from trainer.warehouse.bigquery import BigQueryClients, BigQueryLocation

pytestmark = pytest.mark.filterwarnings(
    # google-cloud-bigquery's own to_arrow() path warns about its internal use of
    # google-cloud-bigquery-storage's page.to_arrow(); nothing the trainer calls.
    "ignore:Retrieving Arrow record batches directly:PendingDeprecationWarning"
)

# --- URIs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "project", "dataset", "read_api"),
    [
        ("bq://recflow-test", "recflow-test", None, "storage"),
        ("bq://recflow-test.features", "recflow-test", "features", "storage"),
        ("bq://recflow-test.features/", "recflow-test", "features", "storage"),
        ("bq://recflow-test.features?read_api=rest", "recflow-test", "features", "rest"),
        ("bq://example.com:recflow.features", "example.com:recflow", "features", "storage"),
    ],
)
def test_bigquery_uris_name_the_project_and_the_default_dataset(
    uri: str, project: str, dataset: str | None, read_api: str
) -> None:
    location = BigQueryLocation.parse(uri)

    assert (location.project, location.dataset, location.read_api) == (project, dataset, read_api)
    assert open_warehouse(uri).default_schema == dataset


def test_table_names_resolve_against_the_uri() -> None:
    """A bare name is in the URI's dataset; `dataset.table` (the trainer's `main.x` and
    `ml.batch_recommendations` convention) picks the dataset; a full id is kept."""
    location = BigQueryLocation.parse("bq://recflow-test.features")

    assert location.table_id("training_examples") == "recflow-test.features.training_examples"
    assert location.table_id("ml.batch_recommendations") == "recflow-test.ml.batch_recommendations"
    assert location.table_id("other.ds.t") == "other.ds.t"
    assert open_warehouse("duckdb:///tmp/warehouse.duckdb").default_schema == "main"
    with pytest.raises(TrainerInputError, match="No dataset for table training_examples"):
        BigQueryLocation.parse("bq://recflow-test").table_id("training_examples")


@pytest.mark.parametrize(
    "uri",
    ["bq://", "bq://recflow-test.no-dashes", "bq://p.d?read_api=jdbc", "bq://p.d?location=EU"],
)
def test_malformed_bigquery_uris_are_refused(uri: str) -> None:
    with pytest.raises(TrainerInputError, match=r"bq://PROJECT|read_api=storage"):
        BigQueryLocation.parse(uri)


# --- reading BigQuery -----------------------------------------------------------------------------


def test_the_storage_read_api_reads_the_table_as_arrow(
    clients: BigQueryClients,
    bigquery_rest: RecordedBigQuery,
    bigquery_read: StandinBigQueryRead,
) -> None:
    """The default read: tables.get over REST for the schema, then one read session in Arrow
    format whose every stream is read from offset 0; no tabledata.list call at all."""
    warehouse = connected_to(f"bq://{PROJECT}.features", clients)

    table = warehouse.read("item_features")

    assert table.sort_by("item_id").equals(STORAGE_ITEM_FEATURES)
    assert [request.path for request in bigquery_rest.requests] == [TABLE_URL]
    (session,) = bigquery_read.sessions
    assert session.parent == f"projects/{PROJECT}"
    assert session.read_session.table == TABLE_PATH
    assert session.read_session.data_format == storage_types.DataFormat.ARROW
    assert bigquery_read.metadata[0]["x-goog-request-params"] == (
        f"read_session.table={TABLE_PATH}"
    )
    streams = {read.read_stream for read in bigquery_read.reads}
    assert len(streams) == bigquery_read.streams == 2
    assert all(read.offset == 0 for read in bigquery_read.reads)


def test_a_storage_read_of_some_columns_asks_the_session_for_only_those(
    clients: BigQueryClients,
    bigquery_rest: RecordedBigQuery,
    bigquery_read: StandinBigQueryRead,
) -> None:
    """`columns`: tables.get for the schema, then a read session whose selected fields are the
    columns, in the order asked; the table comes back with exactly those columns."""
    warehouse = connected_to(f"bq://{PROJECT}.features", clients)

    table = warehouse.read("item_features", columns=["cutoff_date", "item_id"])

    assert table.column_names == ["cutoff_date", "item_id"]
    assert table.sort_by("item_id").equals(STORAGE_ITEM_FEATURES.select(["cutoff_date", "item_id"]))
    assert [request.path for request in bigquery_rest.requests] == [TABLE_URL]
    (session,) = bigquery_read.sessions
    assert list(session.read_session.read_options.selected_fields) == ["cutoff_date", "item_id"]


def test_a_column_the_table_lacks_is_named_before_any_read_session(
    clients: BigQueryClients, bigquery_read: StandinBigQueryRead
) -> None:
    warehouse = connected_to(f"bq://{PROJECT}.features", clients)

    with pytest.raises(TrainerInputError, match=r"lacks column\(s\) no_such_column"):
        warehouse.read("item_features", columns=["item_id", "no_such_column"])

    assert bigquery_read.sessions == []


def test_the_rest_read_api_follows_page_tokens(
    clients: BigQueryClients,
    bigquery_rest: RecordedBigQuery,
    bigquery_read: StandinBigQueryRead,
) -> None:
    """`?read_api=rest`: tables.get, then tabledata.list page after page, each request carrying
    the previous page's token, timestamps asked as int64 microseconds; the JSON strings come
    back as typed Arrow columns, the Storage Read API's types, and no read session is created."""
    warehouse = connected_to(f"bq://{PROJECT}.features?read_api=rest", clients)

    table = warehouse.read("item_features")

    assert table.equals(ITEM_FEATURES)
    assert table.schema.types == STORAGE_SCHEMA.types
    pages = bigquery_rest.sent("GET", f"{TABLE_URL}/data")
    tokens = [page.query.get("pageToken", [None])[-1] for page in pages]
    recorded_tokens = [
        recorded(f"tabledata_list_item_features_page{index}")["pageToken"] for index in (1, 2)
    ]
    assert tokens == [None, *recorded_tokens]
    assert all(page.query["formatOptions.useInt64Timestamp"] == ["True"] for page in pages)
    assert all("maxResults" not in page.query for page in pages)
    assert [request.path for request in bigquery_rest.requests] == [TABLE_URL] + [
        f"{TABLE_URL}/data"
    ] * 3
    assert bigquery_read.sessions == []


@pytest.mark.parametrize(
    ("uri", "table", "fragments"),
    [
        pytest.param(
            f"bq://{PROJECT}.features",
            "training_examples",
            [
                f"table {PROJECT}.features.training_examples",
                f"Not found: Table {PROJECT}:features.training_examples",
                "dbt build",
            ],
            id="table-missing",
        ),
        pytest.param(
            f"bq://{PROJECT}.features?read_api=rest",
            "marts.item_features",
            [f"Not found: Dataset {PROJECT}:marts", "--features-schema"],
            id="dataset-missing",
        ),
    ],
)
def test_a_missing_table_or_dataset_is_named_with_the_fix(
    clients: BigQueryClients,
    bigquery_read: StandinBigQueryRead,
    uri: str,
    table: str,
    fragments: list[str],
) -> None:
    """The service's own 404 message, the fully qualified table and what to do."""
    with pytest.raises(TrainerInputError) as raised:
        connected_to(uri, clients).read(table)

    for fragment in fragments:
        assert fragment in str(raised.value)
    assert bigquery_read.sessions == []


# --- writing BigQuery -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "upload"),
    [pytest.param(40, "multipart", id="multipart"), pytest.param(150_000, "resumable", id="big")],
)
def test_recommendations_replace_the_table_in_one_parquet_load_job(
    clients: BigQueryClients, bigquery_rest: RecordedBigQuery, rows: int, upload: str
) -> None:
    """datasets.get (the target must exist; its location is the job's), one upload whose job
    configuration loads Parquet with WRITE_TRUNCATE into ml.batch_recommendations with the
    table's schema, then jobs.get until DONE. The uploaded file holds exactly the rows, with
    generated_at as a UTC timestamp (a naive Parquet timestamp would load as DATETIME)."""
    warehouse = connected_to(f"bq://{PROJECT}.features", clients)
    rows_written = recommendations(rows)

    warehouse.replace("ml.batch_recommendations", rows_written)

    assert bigquery_rest.sent("GET", f"/bigquery/v2/projects/{PROJECT}/datasets/ml")
    (insert,) = bigquery_rest.sent("POST", f"/upload/bigquery/v2/projects/{PROJECT}/jobs")
    assert insert.query["uploadType"] == [upload]
    (job,) = bigquery_rest.jobs.values()
    assert job.resource["jobReference"]["location"] == "EU"
    assert job.resource["configuration"]["load"] == {
        "sourceFormat": "PARQUET",
        "writeDisposition": "WRITE_TRUNCATE",
        "createDisposition": "CREATE_IF_NEEDED",
        "destinationTable": {
            "projectId": PROJECT,
            "datasetId": "ml",
            "tableId": "batch_recommendations",
        },
        "schema": {
            "fields": [
                {"name": "user_id", "type": "STRING", "mode": "NULLABLE"},
                {"name": "item_id", "type": "STRING", "mode": "NULLABLE"},
                {"name": "recommendation_rank", "type": "INT64", "mode": "NULLABLE"},
                {"name": "score", "type": "FLOAT64", "mode": "NULLABLE"},
                {"name": "cutoff_date", "type": "DATE", "mode": "NULLABLE"},
                {"name": "model_version", "type": "STRING", "mode": "NULLABLE"},
                {"name": "generated_at", "type": "TIMESTAMP", "mode": "NULLABLE"},
            ]
        },
    }
    job_id = job.resource["jobReference"]["jobId"]
    (poll,) = bigquery_rest.sent("GET", f"/bigquery/v2/projects/{PROJECT}/jobs/{job_id}")
    assert poll.query["location"] == ["EU"]
    uploaded = job.rows
    assert uploaded.schema.field("generated_at").type == pa.timestamp("us", tz="UTC")
    assert uploaded.cast(RECOMMENDATIONS_SCHEMA).equals(rows_written)
    if upload == "resumable":
        assert bigquery_rest.sent("PUT", f"/upload/bigquery/v2/projects/{PROJECT}/jobs")


def test_a_failed_load_job_names_the_job_and_the_services_reason(
    clients: BigQueryClients, bigquery_rest: RecordedBigQuery
) -> None:
    """A job that ends DONE with an errorResult is a TrainerInputError with BigQuery's message;
    WRITE_TRUNCATE changed nothing."""
    bigquery_rest.load_outcome = "jobs_get_load_failed_quota"
    warehouse = connected_to(f"bq://{PROJECT}.features", clients)

    with pytest.raises(TrainerInputError) as raised:
        warehouse.replace("ml.batch_recommendations", recommendations(20))

    (job_id,) = bigquery_rest.jobs
    message = str(raised.value)
    assert f"Load job {job_id} into BigQuery table {PROJECT}.ml.batch_recommendations" in message
    assert "Quota exceeded: Your table exceeded quota for imports" in message
    assert "unchanged" in message


def test_a_missing_target_dataset_is_refused_before_any_upload(
    clients: BigQueryClients, bigquery_rest: RecordedBigQuery
) -> None:
    warehouse = connected_to(f"bq://{PROJECT}.features", clients)

    with pytest.raises(TrainerInputError, match=f"Not found: Dataset {PROJECT}:scratch.*bq mk"):
        warehouse.check_writable("scratch.batch_recommendations")
    with pytest.raises(TrainerInputError, match=f"Not found: Dataset {PROJECT}:scratch"):
        warehouse.replace("scratch.batch_recommendations", recommendations(20))

    assert bigquery_rest.jobs == {}


# --- BigQuery through `python -m trainer.task` ----------------------------------------------------


@pytest.mark.dbt
@pytest.mark.parametrize(
    ("warehouse", "recommendations_table", "fragments"),
    [
        pytest.param(
            f"bq://{PROJECT}.marts",
            "",
            [f"Not found: Dataset {PROJECT}:marts", f"{PROJECT}.marts.training_examples"],
            id="features-dataset-missing",
        ),
        pytest.param(
            f"bq://{PROJECT}.features",
            "ml.batch_recommendations",
            [f"Not found: Table {PROJECT}:features.training_examples", "dbt build"],
            id="target-checked-then-table-missing",
        ),
        pytest.param(
            f"bq://{PROJECT}.features",
            "scratch.batch_recommendations",
            [f"Not found: Dataset {PROJECT}:scratch", "--recommendations-table ''"],
            id="target-dataset-missing",
        ),
    ],
)
def test_the_trainer_names_a_missing_dataset_and_exits_2(
    tiny_warehouse: TinyWarehouse,
    bigquery_rest: RecordedBigQuery,
    tmp_path: Path,
    warehouse: str,
    recommendations_table: str,
    fragments: list[str],
) -> None:
    """End to end through the CLI with Application Default Credentials: a service account key
    whose token endpoint is the stand-in (the real JWT exchange), BIGQUERY_EMULATOR_HOST (the
    client's own switch) for the API. The write-back target is checked first (datasets.get),
    then the marts are read; the trainer stops before training with the service's 404 message,
    and every API call carried the exchanged token."""
    key = write_service_account_key(tmp_path / "key.json", f"{bigquery_rest.url}/token")
    run_dir = tmp_path / "runs" / "run"
    env = isolated_env(
        tmp_path,
        GOOGLE_APPLICATION_CREDENTIALS=str(key),
        BIGQUERY_EMULATOR_HOST=bigquery_rest.url,
    )

    result = run_trainer(
        *trainer_args(
            warehouse,
            manifest_of(tiny_warehouse),
            run_dir,
            recommendations_table=recommendations_table,
        ),
        cwd=tmp_path,
        env=env,
    )

    assert_exit_2(result, *fragments)
    assert "training on" not in result.stderr
    assert not run_dir.exists()
    if recommendations_table:
        dataset = recommendations_table.partition(".")[0]
        first_call = bigquery_rest.requests[1]
        assert first_call.path == f"/bigquery/v2/projects/{PROJECT}/datasets/{dataset}"
    (token,) = bigquery_rest.sent("POST", "/token")
    assert b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer" in token.body
    api_calls = [request for request in bigquery_rest.requests if request.path != "/token"]
    assert api_calls
    assert {call.headers["authorization"] for call in api_calls} == {
        f"Bearer {recorded('oauth2_token')['access_token']}"
    }


# --- without credentials --------------------------------------------------------------------------


@pytest.mark.dbt
@pytest.mark.parametrize(
    ("warehouse", "output_dir", "service"),
    [
        pytest.param(f"bq://{PROJECT}.features", None, "BigQuery", id="bigquery"),
        pytest.param(None, f"gs://{BUCKET}/models/run", "Cloud Storage", id="cloud-storage"),
    ],
)
def test_without_credentials_the_trainer_says_how_to_provide_them(
    tiny_warehouse: TinyWarehouse,
    tmp_path: Path,
    warehouse: str | None,
    output_dir: str | None,
    service: str,
) -> None:
    """No Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS names a missing file,
    HOME is empty): exit 2 before anything is read, naming both ways to provide them. No
    anonymous fallback, no request anywhere."""
    run_dir = output_dir or str(tmp_path / "runs" / "run")
    result = run_trainer(
        *trainer_args(
            warehouse or duckdb_uri(tiny_warehouse.duckdb_path),
            manifest_of(tiny_warehouse),
            run_dir,
        ),
        cwd=tmp_path,
        env=isolated_env(tmp_path),
    )

    assert_exit_2(
        result,
        f"No Google Cloud credentials for {service}",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "gcloud auth application-default login",
    )
    assert "training on" not in result.stderr
    assert not (tmp_path / "runs").exists()
