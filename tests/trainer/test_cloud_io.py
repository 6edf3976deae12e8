"""The trainer's cloud I/O with the real client libraries against local stand-ins
(cloud_standins.py): run directories on Cloud Storage (gcsfs on gcp-storage-emulator), reading
marts from BigQuery through the Storage Read API (gRPC) or tabledata.list pages (REST), replacing
ml.batch_recommendations with a Parquet load job, and the errors a user sees when a dataset,
a table or the credentials are missing. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pyarrow as pa
import pytest
from cloud_standins import (
    PROJECT,
    EmulatedStorage,
    RecordedBigQuery,
    StandinBigQueryRead,
    recorded,
    recorded_bigquery,
    standin_bigquery_read,
    storage_emulator,
    write_service_account_key,
)
from conftest import RUN_ARTIFACTS, TinyWarehouse
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import types as storage_types
from trainer_harness import (
    FAST_ROUNDS,
    TrainerResult,
    copy_warehouse,
    duckdb_uri,
    execute,
    frame,
    manifest_of,
    run_trainer,
    trainer_args,
)

from trainer import gcs
from trainer.errors import TrainerInputError
from trainer.recommend import RECOMMENDATIONS_SCHEMA
from trainer.warehouse import open_warehouse
from trainer.warehouse.bigquery import BigQueryClients, BigQueryLocation, BigQueryWarehouse

BUCKET = "recflow-runs"
TABLE_PATH = f"projects/{PROJECT}/datasets/features/tables/item_features"
TABLE_URL = f"/bigquery/v2/projects/{PROJECT}/datasets/features/tables/item_features"
# The rows in recorded_bigquery/tabledata_list_item_features_page*.json, typed as the client types
# tabledata.list pages (TIMESTAMP -> UTC microseconds; every column nullable).
ITEM_FEATURES = pa.table(
    {
        "item_id": ["item-001", "item-002", "item-003", "item-004", "item-005"],
        "cutoff_date": [date(2026, 1, 5)] * 3 + [date(2026, 1, 12)] * 2,
        "category": ["books", None, "games", "books", "toys"],
        "popularity_rank": [1, 2, 3, 1, 2],
        "users_7d": [42, 17, None, 50, 0],
        "trend_ratio": [1.25, 0.5, None, 2.0, 0.0],
        "is_new_item": [False, True, False, True, None],
        "created_at": [
            datetime(2025, 1, 1, tzinfo=UTC),
            datetime(2026, 1, 2, 8, 30, 0, 123456, tzinfo=UTC),
            None,
            datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC),
            datetime(2024, 2, 29, 12, tzinfo=UTC),
        ],
    },
    schema=pa.schema(
        [
            ("item_id", pa.string()),
            ("cutoff_date", pa.date32()),
            ("category", pa.string()),
            ("popularity_rank", pa.int64()),
            ("users_7d", pa.int64()),
            ("trend_ratio", pa.float64()),
            ("is_new_item", pa.bool_()),
            ("created_at", pa.timestamp("us", tz="UTC")),
        ]
    ),
)
# The Storage Read API sends the same types, with the REQUIRED column marked non-nullable.
STORAGE_SCHEMA = ITEM_FEATURES.schema.set(0, pa.field("item_id", pa.string(), nullable=False))
STORAGE_ITEM_FEATURES = ITEM_FEATURES.cast(STORAGE_SCHEMA)

pytestmark = pytest.mark.filterwarnings(
    # google-cloud-bigquery's own to_arrow() path warns about its internal use of
    # google-cloud-bigquery-storage's page.to_arrow(); nothing the trainer calls.
    "ignore:Retrieving Arrow record batches directly:PendingDeprecationWarning"
)


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def bigquery_rest() -> Iterator[RecordedBigQuery]:
    with recorded_bigquery() as state:
        yield state


@pytest.fixture
def bigquery_read() -> Iterator[StandinBigQueryRead]:
    with standin_bigquery_read({TABLE_PATH: STORAGE_ITEM_FEATURES}) as state:
        yield state


@pytest.fixture
def clients(
    bigquery_rest: RecordedBigQuery, bigquery_read: StandinBigQueryRead
) -> Iterator[BigQueryClients]:
    """The official clients pointed at the stand-ins through their documented options."""
    connected = BigQueryClients(
        bigquery=bigquery.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": bigquery_rest.url},
        ),
        storage=bigquery_read.client(),
    )
    yield connected
    connected.close()  # before the servers stop, so no call is left hanging


@pytest.fixture(scope="module")
def storage() -> Iterator[EmulatedStorage]:
    with storage_emulator(BUCKET) as emulated:
        yield emulated


def isolated_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    """Variables for a trainer subprocess that can reach nothing but the stand-ins: no
    developer credentials (an empty HOME, no gcloud config), no metadata-server probe."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        "HOME": str(home),
        "CLOUDSDK_CONFIG": str(home / "gcloud"),
        "NO_GCE_CHECK": "True",
        "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "no-such-key.json"),
        "STORAGE_EMULATOR_HOST": "",
        "BIGQUERY_EMULATOR_HOST": "",
        **variables,
    }


def assert_exit_2(result: TrainerResult, *fragments: str) -> str:
    """Exit 2 with a one-line `trainer: ...` message holding every fragment, no traceback."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    message = next(line for line in result.stderr.splitlines() if line.startswith("trainer: "))
    for fragment in fragments:
        assert fragment in message, message
    return message


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


def recommendations(rows: int) -> pa.Table:
    """`rows` batch recommendations in the warehouse table's schema; random item ids, so that
    Parquet cannot compress a big batch below the client's multipart limit (5 MiB)."""
    item_ids = np.random.default_rng(0).bytes(16 * rows).hex()
    return pa.table(
        {
            "user_id": [f"user-{index // 20:07d}" for index in range(rows)],
            "item_id": [item_ids[32 * index : 32 * (index + 1)] for index in range(rows)],
            "recommendation_rank": [index % 20 + 1 for index in range(rows)],
            "score": [1.0 / (index + 1) for index in range(rows)],
            "cutoff_date": [date(2026, 1, 19)] * rows,
            "model_version": ["20260119T000000000000Z"] * rows,
            "generated_at": [datetime(2026, 1, 19, 6, 30)] * rows,
        },
        schema=RECOMMENDATIONS_SCHEMA,
    )


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


# --- run directories on Cloud Storage -------------------------------------------------------------


def test_a_gcs_run_is_finished_only_once_run_metadata_is_uploaded(
    storage: EmulatedStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Artifacts first, the marker last; a failure after the artifacts were uploaded deletes
    them, so the prefix is empty again, and a successful run ends with the marker newest."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", storage.url)
    failed, finished = f"gs://{BUCKET}/unit/failed", f"gs://{BUCKET}/unit/finished"

    with pytest.raises(RuntimeError, match="write-back failed"), gcs.staged_run(failed) as staged:
        (staged.path / "model.txt").write_text("tree\n")
        (staged.path / "run_metadata.json").write_text("{}\n")
        staged.publish_artifacts()
        assert storage.objects(f"{BUCKET}/unit/failed") == [f"{BUCKET}/unit/failed/model.txt"]
        raise RuntimeError("write-back failed")
    assert storage.objects(f"{BUCKET}/unit/failed") == []

    with gcs.staged_run(finished) as staged:
        for name in ("model.txt", "metrics.json", "run_metadata.json"):
            (staged.path / name).write_text(f"{name}\n")
    objects = storage.objects(f"{BUCKET}/unit/finished")
    assert [name.rpartition("/")[2] for name in objects] == [
        "metrics.json",
        "model.txt",
        "run_metadata.json",
    ]
    generations = {name: int(storage.fs.info(name)["generation"]) for name in objects}
    assert max(generations, key=generations.__getitem__).endswith("/run_metadata.json")
    assert not staged.path.exists()


def vertex_env(tmp_path: Path, storage: EmulatedStorage, model_dir: str) -> dict[str, str]:
    """What a Vertex AI custom job sets, with Cloud Storage on the emulator."""
    return isolated_env(
        tmp_path,
        STORAGE_EMULATOR_HOST=storage.url,
        AIP_MODEL_DIR=model_dir,
        AIP_CHECKPOINT_DIR=f"gs://{BUCKET}/checkpoints",
        AIP_TENSORBOARD_LOG_DIR=f"gs://{BUCKET}/tensorboard",
        CLOUD_ML_PROJECT_ID=PROJECT,
        CLOUD_ML_JOB_ID="1234567890123456789",
        CLOUD_ML_TRIAL_ID="7",
    )


def logged(result: TrainerResult) -> str:
    """What a run logged, one message a line: on Vertex AI the records are JSON lines on stdout
    (trainer.logs), anything else (an uncaught error, the `trainer:` message) is stderr."""
    messages = [
        json.loads(line)["message"] for line in result.stdout.splitlines() if line.startswith("{")
    ]
    return "\n".join([*messages, result.stderr])


def vertex_args(warehouse: Path, manifest: Path | str) -> list[str]:
    """The trainer's arguments as a Vertex job passes them: no --output-dir."""
    return [
        "--warehouse-uri",
        duckdb_uri(warehouse),
        "--manifest",
        str(manifest),
        "--recommendations-table",
        "ml.batch_recommendations",
        *FAST_ROUNDS,
    ]


@pytest.mark.dbt
def test_a_vertex_job_writes_its_run_directory_to_aip_model_dir(
    tiny_warehouse: TinyWarehouse, storage: EmulatedStorage, tmp_path: Path
) -> None:
    """AIP_MODEL_DIR (gs://) is the run directory and the manifest is read from gs://: every
    artifact is in the bucket, model.txt
    loads with LightGBM, run_metadata.json records the Vertex job and was uploaded last, the
    recommendations were written back, and nothing went to the checkpoint or TensorBoard
    directories."""
    warehouse = copy_warehouse(tiny_warehouse, tmp_path / "warehouse")
    model_dir = f"gs://{BUCKET}/models/run1/"
    # As `recflow submit` stages it: the manifest travels to the job through the bucket.
    storage.fs.put(str(manifest_of(tiny_warehouse)), f"{BUCKET}/inputs/manifest.json")

    result = run_trainer(
        *vertex_args(warehouse, f"gs://{BUCKET}/inputs/manifest.json"),
        cwd=tmp_path,
        env=vertex_env(tmp_path, storage, model_dir),
    )

    assert result.returncode == 0, result.stderr
    assert f"gs://{BUCKET}/models/run1" in result.stdout
    # Cloud Logging reads each record's severity from its JSON line; stderr would be ERROR.
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert {record["severity"] for record in records} == {"INFO"}
    assert any("training on" in record["message"] for record in records)
    objects = storage.objects(f"{BUCKET}/models/run1")
    assert {name.rpartition("/")[2] for name in objects} == RUN_ARTIFACTS
    fs = storage.fs
    model = lgb.Booster(model_str=fs.cat(f"{BUCKET}/models/run1/model.txt").decode())
    spec = json.loads(fs.cat(f"{BUCKET}/models/run1/feature_spec.json"))
    assert model.feature_name() == spec["features"]
    metadata = json.loads(fs.cat(f"{BUCKET}/models/run1/run_metadata.json"))
    assert metadata["cloud_ml_project_id"] == PROJECT
    assert metadata["cloud_ml_job_id"] == "1234567890123456789"
    assert metadata["cloud_ml_trial_id"] == "7"
    assert metadata["aip_model_dir"] == model_dir
    generations = {name: int(fs.info(name)["generation"]) for name in objects}
    assert max(generations, key=generations.__getitem__).endswith("/run_metadata.json")
    written = frame(warehouse, "select count(*) as n from ml.batch_recommendations")
    assert written["n"].item() == metadata["rows"]["batch_recommendations"]
    assert storage.objects(f"{BUCKET}/checkpoints") == []
    assert storage.objects(f"{BUCKET}/tensorboard") == []
    assert not (tmp_path / "runs").exists()


@pytest.mark.dbt
def test_a_failure_after_training_leaves_nothing_under_the_gcs_prefix(
    tiny_warehouse: TinyWarehouse, storage: EmulatedStorage, tmp_path: Path
) -> None:
    """The write-back fails after the artifacts were uploaded (a view holds the table's
    place): the uploaded objects are deleted, no run_metadata.json ever appears, and the view
    is untouched."""
    warehouse = copy_warehouse(tiny_warehouse, tmp_path / "warehouse")
    execute(
        warehouse,
        "create schema ml",
        "create view ml.batch_recommendations as select 'someone else''s view' as note",
    )

    result = run_trainer(
        *vertex_args(warehouse, manifest_of(tiny_warehouse)),
        cwd=tmp_path,
        env=vertex_env(tmp_path, storage, f"gs://{BUCKET}/models/failed"),
    )

    assert_exit_2(result, "Cannot write table ml.batch_recommendations")
    assert "training on" in logged(result)
    uploaded = len(RUN_ARTIFACTS) - 1
    assert f"deleted {uploaded} objects of the failed run gs://{BUCKET}/models/failed" in (
        logged(result)
    )
    assert storage.objects(f"{BUCKET}/models/failed") == []
    assert frame(warehouse, "select note from ml.batch_recommendations")["note"].tolist() == [
        "someone else's view"
    ]


@pytest.mark.dbt
@pytest.mark.parametrize(
    ("model_dir", "fragments"),
    [
        pytest.param(
            f"gs://{BUCKET}/models/leftover",
            ["already holds 1 object(s): an unfinished run, no run_metadata.json", "delete"],
            id="unfinished-run-present",
        ),
        pytest.param(
            "gs://no-such-bucket/models/run",
            ["bucket gs://no-such-bucket does not exist"],
            id="bucket-missing",
        ),
    ],
)
def test_an_unusable_gcs_run_directory_is_refused_before_training(
    tiny_warehouse: TinyWarehouse,
    storage: EmulatedStorage,
    tmp_path: Path,
    model_dir: str,
    fragments: list[str],
) -> None:
    """A prefix holding objects (even without run_metadata.json) is never overwritten, and a
    missing bucket is found before the training rather than at the first upload."""
    storage.fs.pipe_file(f"{BUCKET}/models/leftover/model.txt", b"an earlier attempt\n")

    result = run_trainer(
        *vertex_args(tiny_warehouse.duckdb_path, manifest_of(tiny_warehouse)),
        cwd=tmp_path,
        env=vertex_env(tmp_path, storage, model_dir),
    )

    assert_exit_2(result, *fragments)
    assert "training on" not in logged(result)
    assert storage.fs.cat(f"{BUCKET}/models/leftover/model.txt") == b"an earlier attempt\n"


def connected_to(uri: str, clients: BigQueryClients) -> BigQueryWarehouse:
    """The BigQuery warehouse `uri` names, using the stand-ins' clients for every call."""
    return BigQueryWarehouse(uri=uri, location=BigQueryLocation.parse(uri), clients=clients)
