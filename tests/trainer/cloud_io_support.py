"""What test_cloud_io.py and test_gcs_run_dirs.py share: the recorded item_features mart in
the types each BigQuery read API returns, fixtures starting the stand-ins of cloud_standins.py,
an environment for trainer subprocesses that can reach nothing else, and small helpers.

Not a conftest (see trainer_harness.py): test modules import it by name, fixtures included.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from cloud_standins import (
    PROJECT,
    EmulatedStorage,
    RecordedBigQuery,
    StandinBigQueryRead,
    recorded_bigquery,
    standin_bigquery_read,
    storage_emulator,
)
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from trainer_harness import TrainerResult

from trainer.recommend import RECOMMENDATIONS_SCHEMA
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


# --- fixtures -------------------------------------------------------------------------------------
# Named `fixture_<name>` with name=<name>, pytest's documented way to keep the function from being
# shadowed by the parameters that request it; test modules import the `fixture_` names.


@pytest.fixture(name="bigquery_rest")
def fixture_bigquery_rest() -> Iterator[RecordedBigQuery]:
    with recorded_bigquery() as state:
        yield state


@pytest.fixture(name="bigquery_read")
def fixture_bigquery_read() -> Iterator[StandinBigQueryRead]:
    with standin_bigquery_read({TABLE_PATH: STORAGE_ITEM_FEATURES}) as state:
        yield state


@pytest.fixture(name="clients")
def fixture_clients(
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


@pytest.fixture(name="storage", scope="module")
def fixture_storage() -> Iterator[EmulatedStorage]:
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


def connected_to(uri: str, clients: BigQueryClients) -> BigQueryWarehouse:
    """The BigQuery warehouse `uri` names, using the stand-ins' clients for every call."""
    return BigQueryWarehouse(uri=uri, location=BigQueryLocation.parse(uri), clients=clients)
