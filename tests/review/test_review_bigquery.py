"""`recflow review --bigquery`: dry runs with the real google-cloud-bigquery client against the
recorded BigQuery REST stand-in (tests/trainer/cloud_standins.py) on 127.0.0.1.

The manifests are small hand-written ones (no dbt): the review's pair from the DuckDB build and
the pair compiled for production, whose SQL names `recflow-test.analytics.*` tables. The
stand-in answers each dry run with the bytes the test sets for that query, and with the
service's notFound body for a table production does not have yet.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import bigquery
from google.oauth2 import service_account
from review_checks import assert_markdown_matches_json

# cloud_standins lives with the trainer's tests, which own the BigQuery recordings.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "trainer"))
from cloud_standins import (
    PROJECT,
    RecordedBigQuery,
    recorded,
    recorded_bigquery,
    write_service_account_key,
)

from recflow.cli import main as recflow_main
from recflow.review.bigquery_cost import (
    BYTES_PER_TIB,
    BigQuerySettings,
    DryRun,
    DryRunRow,
    dry_run_changed,
    format_bytes,
)

DATASET = "analytics"
LOCATION = "EU"
# Bytes the stand-in answers per query (the first key a query contains).
COUNTS_BEFORE = "count(*) as event_count"
COUNTS_AFTER = "count(distinct item_id) as item_count"
SESSIONS = "as session_start_at"
DRY_RUN_BYTES = {COUNTS_AFTER: 3 * 2**30, COUNTS_BEFORE: 2**30, SESSIONS: 5 * 2**29}
NOT_YET_IN_PRODUCTION = f"{PROJECT}.{DATASET}.int_sessions"


def _model(name: str, parents: list[str], sql: str, adapter_sql: str | None = None) -> dict:
    return {
        "resource_type": "model",
        "unique_id": f"model.recflow.{name}",
        "name": name,
        "package_name": "recflow",
        "original_file_path": f"models/{name}.sql",
        "config": {"materialized": "table", "meta": {}},
        "depends_on": {"nodes": parents},
        "checksum": {"checksum": sql},
        "relation_name": f"`{PROJECT}`.`{DATASET}`.`{name}`",
        "raw_code": sql,
        "compiled_code": adapter_sql or sql,
    }


def _manifest(adapter: str, models: list[dict[str, Any]]) -> dict[str, Any]:
    source = {
        "resource_type": "source",
        "unique_id": "source.recflow.app.events",
        "package_name": "recflow",
        "source_name": "app",
        "name": "events",
        "relation_name": f"`{PROJECT}`.`raw`.`events`",
        "original_file_path": "models/sources.yml",
    }
    return {
        # dbt-bouncer (the structure rules) reads dbt_version and project_name.
        "metadata": {"adapter_type": adapter, "dbt_version": "1.11.0", "project_name": "recflow"},
        "nodes": {f"model.recflow.{m['name']}": m for m in models},
        "sources": {"source.recflow.app.events": source},
    }


def _project(adapter: str, changed: bool) -> dict[str, Any]:
    """Base: stg_events and user_event_counts. Pull request: user_event_counts counts distinct
    items, and two new models: int_sessions and user_sessions_daily, which reads it."""
    table = f"`{PROJECT}`.`{DATASET}`" if adapter == "bigquery" else "main"
    stg = _model("stg_events", ["source.recflow.app.events"], "select * from raw.events")
    measure = COUNTS_AFTER if changed else COUNTS_BEFORE
    counts = _model(
        "user_event_counts",
        ["model.recflow.stg_events"],
        f"select user_id, {measure} from {table}.stg_events group by user_id",
    )
    models = [stg, counts]
    if changed:
        models += [
            _model(
                "int_sessions",
                ["model.recflow.stg_events"],
                f"select user_id, min(event_at) {SESSIONS} from {table}.stg_events group by 1",
            ),
            _model(
                "user_sessions_daily",
                ["model.recflow.int_sessions"],
                "select user_id, count(*) as sessions "
                + (
                    f"from `{NOT_YET_IN_PRODUCTION}` group by 1"
                    if adapter == "bigquery"
                    else "from main.int_sessions group by 1"
                ),
            ),
        ]
    return _manifest(adapter, models)


@pytest.fixture
def bigquery_rest() -> Iterator[RecordedBigQuery]:
    state = RecordedBigQuery(dry_run_bytes=DRY_RUN_BYTES, missing_tables=(NOT_YET_IN_PRODUCTION,))
    with recorded_bigquery(state) as running:
        yield running


@pytest.fixture
def manifests(tmp_path: Path) -> dict[str, Path]:
    paths = {}
    for adapter in ("duckdb", "bigquery"):
        for side, changed in (("base", False), ("head", True)):
            path = tmp_path / "manifests" / f"{side}_{adapter}.json"
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps(_project(adapter, changed)))
            paths[f"{side}_{adapter}"] = path
    return paths


def _review_args(manifests: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "review",
        "--base-manifest",
        str(manifests["base_duckdb"]),
        "--manifest",
        str(manifests["head_duckdb"]),
        "--config",
        str(out / "missing-review.yml"),
        "--out-dir",
        str(out),
        *extra,
    ]


def _bigquery_args(manifests: dict[str, Path]) -> list[str]:
    return [
        "--bigquery",
        "--bigquery-manifest",
        str(manifests["head_bigquery"]),
        "--base-bigquery-manifest",
        str(manifests["base_bigquery"]),
    ]


def _credentials_env(
    monkeypatch: pytest.MonkeyPatch, bigquery_rest: RecordedBigQuery, tmp_path: Path
) -> None:
    """The prod target's variables with a service account key whose token endpoint is the
    stand-in, and the client library's own switch to send the API calls there."""
    key = write_service_account_key(tmp_path / "key.json", f"{bigquery_rest.url}/token")
    monkeypatch.setenv("RECFLOW_BQ_PROJECT", PROJECT)
    monkeypatch.setenv("RECFLOW_BQ_LOCATION", LOCATION)
    monkeypatch.setenv("RECFLOW_BQ_AUTH_METHOD", "service-account")
    monkeypatch.setenv("RECFLOW_BQ_KEYFILE", str(key))
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", bigquery_rest.url)


def test_review_reports_dry_run_bytes_cost_and_not_found(
    bigquery_rest: RecordedBigQuery,
    manifests: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _credentials_env(monkeypatch, bigquery_rest, tmp_path)
    out = tmp_path / "out"

    labels = ["--base-label", "origin/main (1cb17bd)", "--label", "feature (a1bbbc1)"]
    assert recflow_main(_review_args(manifests, out, *_bigquery_args(manifests), *labels)) == 0

    report = json.loads((out / "review.json").read_text())
    markdown = (out / "review.md").read_text()
    assert_markdown_matches_json(report, markdown)
    assert (report["base"], report["head"]) == ("origin/main (1cb17bd)", "feature (a1bbbc1)")
    assert "Comparing **feature (a1bbbc1)** with **origin/main (1cb17bd)**" in markdown
    bq = report["bigquery"]
    assert (bq["project"], bq["location"], bq["usd_per_tib"]) == (PROJECT, LOCATION, 6.25)
    rows = {row["name"]: row for row in bq["models"]}
    assert sorted(rows) == ["int_sessions", "user_event_counts", "user_sessions_daily"]

    counts = rows["user_event_counts"]
    assert counts["base"]["bytes_processed"] == DRY_RUN_BYTES[COUNTS_BEFORE]
    assert counts["head"]["bytes_processed"] == DRY_RUN_BYTES[COUNTS_AFTER]
    assert counts["delta_bytes"] == 2 * 2**30
    assert counts["delta_estimated_usd"] == pytest.approx(2 * 2**30 / BYTES_PER_TIB * 6.25)
    assert "| `user_event_counts` | 1.00 GiB | 3.00 GiB | +2.00 GiB |" in markdown

    sessions = rows["int_sessions"]
    assert sessions["base"] is None
    assert sessions["delta_bytes"] == sessions["head"]["bytes_processed"] == 5 * 2**29

    daily = rows["user_sessions_daily"]
    reason = (
        f"notFound: Not found: Table {PROJECT}:{DATASET}.int_sessions was not found in "
        f"location {LOCATION}"
    )
    assert daily["head"] == {
        "bytes_processed": None,
        "estimated_usd": None,
        "error": reason,
        "reason": "notFound",
    }
    assert daily["delta_bytes"] is None
    # The public report names the model and the reason code; the message stays in the log.
    assert (
        "- dry run failed for model `user_sessions_daily` (pull request, `notFound`), "
        "see the job log" in markdown
    )
    assert "int_sessions was not found" not in markdown
    assert reason in caplog.text
    # No limit set: the gate passes; the model reading a table production lacks is not counted.
    gate = report["bigquery_gate"]
    assert gate["passed"] is True
    assert gate["bytes_increase"] == 2 * 2**30 + 5 * 2**29
    assert gate["unmeasured"] == ["user_sessions_daily"]
    assert "**Passed.**" in markdown

    dry_runs = bigquery_rest.sent("POST", f"/bigquery/v2/projects/{PROJECT}/jobs")
    assert len(dry_runs) == 4  # user_event_counts twice, each new model once
    for request in dry_runs:
        resource = request.json()
        assert resource["configuration"]["dryRun"] is True
        assert resource["configuration"]["query"]["useQueryCache"] is False
        assert resource["configuration"]["query"]["useLegacySql"] is False
        assert resource["jobReference"]["location"] == LOCATION
        assert request.headers["authorization"] == (
            f"Bearer {recorded('oauth2_token')['access_token']}"
        )
    assert len(bigquery_rest.sent("POST", "/token")) >= 1


def test_dry_run_with_client_on_api_endpoint(
    bigquery_rest: RecordedBigQuery, tmp_path: Path
) -> None:
    """The pure entry point with a client built through the documented api_endpoint option."""
    key = write_service_account_key(tmp_path / "key.json", f"{bigquery_rest.url}/token")
    client = bigquery.Client(
        project=PROJECT,
        credentials=service_account.Credentials.from_service_account_file(
            str(key), scopes=["https://www.googleapis.com/auth/cloud-platform"]
        ),
        client_options={"api_endpoint": bigquery_rest.url},
    )
    settings = BigQuerySettings(project=PROJECT, location=LOCATION, keyfile=str(key))
    uid = "model.recflow.user_event_counts"

    cost = dry_run_changed(
        client,
        settings,
        [uid],
        _project("bigquery", changed=False),
        _project("bigquery", changed=True),
        usd_per_tib=5.0,
    )

    (row,) = cost.rows
    assert (row.name, row.delta_bytes) == ("user_event_counts", 2 * 2**30)
    assert cost.usd_per_tib == 5.0


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        pytest.param("duckdb_manifest", "compiled for duckdb, not BigQuery", id="duckdb-manifest"),
        pytest.param("no_project", "RECFLOW_BQ_PROJECT", id="no-project"),
        pytest.param("no_manifests", "--bigquery-manifest", id="flag-without-manifests"),
        pytest.param("missing_key", "no usable BigQuery credentials", id="missing-key-file"),
    ],
)
def test_bigquery_bad_input_exits_2(
    bigquery_rest: RecordedBigQuery,
    manifests: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    setup: str,
    message: str,
) -> None:
    _credentials_env(monkeypatch, bigquery_rest, tmp_path)
    extra = _bigquery_args(manifests)
    if setup == "duckdb_manifest":
        extra[2] = str(manifests["head_duckdb"])
    elif setup == "no_project":
        monkeypatch.delenv("RECFLOW_BQ_PROJECT")
    elif setup == "no_manifests":
        extra = ["--bigquery"]
    elif setup == "missing_key":
        monkeypatch.setenv("RECFLOW_BQ_KEYFILE", str(tmp_path / "nope.json"))

    assert recflow_main(_review_args(manifests, tmp_path / "out", *extra)) == 2

    assert message in capsys.readouterr().err
    assert not bigquery_rest.sent("POST", f"/bigquery/v2/projects/{PROJECT}/jobs")


def test_a_difference_needs_an_answer_from_every_side_that_exists() -> None:
    def row(base: DryRun | None, head: DryRun | None) -> DryRunRow:
        return DryRunRow(unique_id="model.p.m", name="m", base=base, head=head)

    assert row(DryRun(bytes_processed=100), None).delta_bytes == -100  # removed model
    assert row(None, DryRun(bytes_processed=70)).delta_bytes == 70  # new model
    assert row(DryRun(bytes_processed=100), DryRun(error="notFound: x")).delta_bytes is None
    assert row(None, DryRun(error="invalidQuery: x")).delta_bytes is None
    assert [format_bytes(v) for v in (999, 1536, -3 * 2**40, None)] == [
        "999 B",
        "1.50 KiB",
        "-3.00 TiB",
        "-",
    ]


def test_sql_bigquery_refuses_fails_the_gate_and_stays_out_of_the_report(
    manifests: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The pull request's SQL names a column production's table lacks: BigQuery answers
    invalidQuery, whose message echoes the SQL. The check fails; the report says which model and
    the reason code, and only the job log has the message."""
    head = json.loads(manifests["head_bigquery"].read_text())
    counts = head["nodes"]["model.recflow.user_event_counts"]
    counts["compiled_code"] = counts["compiled_code"].replace("item_id", "secret_column")
    manifests["head_bigquery"].write_text(json.dumps(head))
    state = RecordedBigQuery(
        dry_run_bytes=DRY_RUN_BYTES,
        missing_tables=(NOT_YET_IN_PRODUCTION,),
        unknown_names=("secret_column",),
    )
    out = tmp_path / "out"
    with recorded_bigquery(state) as running:
        _credentials_env(monkeypatch, running, tmp_path)
        exit_code = recflow_main(_review_args(manifests, out, *_bigquery_args(manifests)))

    assert exit_code == 1
    report = json.loads((out / "review.json").read_text())
    markdown = (out / "review.md").read_text()
    assert_markdown_matches_json(report, markdown)
    assert report["bigquery_gate"]["passed"] is False
    assert report["bigquery_gate"]["refused"] == ["user_event_counts"]
    assert (
        "- dry run failed for model `user_event_counts` (pull request, `invalidQuery`), "
        "see the job log" in markdown
    )
    assert "**Failed.**" in markdown
    assert "secret_column" not in markdown
    assert "Unrecognized name: secret_column at [1:8]" in caplog.text
    err = capsys.readouterr().err
    assert "BigQuery cost gate failed: BigQuery refused the pull request's SQL" in err


@pytest.mark.parametrize(
    ("env", "flags", "expected_exit", "failure"),
    [
        pytest.param({}, [], 0, None, id="no-limit"),
        pytest.param(
            {"RECFLOW_PR_MAX_BYTES_INCREASE": str(2**30)}, [], 1, "more per build", id="bytes"
        ),
        pytest.param(
            {"RECFLOW_PR_MAX_BYTES_INCREASE": str(2**30)},
            ["--max-bytes-increase", str(5 * 2**30)],
            0,
            None,
            id="flag-overrides-env",
        ),
        # +4.5 GiB per build at $6.25 per TiB, 30 builds: about $0.82 per month.
        pytest.param(
            {"RECFLOW_PR_MAX_MONTHLY_USD_INCREASE": "0.5"}, [], 1, "per month", id="monthly"
        ),
        pytest.param(
            {"RECFLOW_PR_MAX_MONTHLY_USD_INCREASE": "0.5", "RECFLOW_PR_BUILDS_PER_MONTH": "4"},
            [],
            0,
            None,
            id="weekly-builds",
        ),
        pytest.param({"RECFLOW_PR_MAX_BYTES_INCREASE": ""}, [], 0, None, id="empty-is-unset"),
        pytest.param({"RECFLOW_PR_MAX_BYTES_INCREASE": "1 GiB"}, [], 2, "not a number", id="bad"),
    ],
)
def test_gate_limits_from_repository_variables_and_flags(
    bigquery_rest: RecordedBigQuery,
    manifests: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    flags: list[str],
    expected_exit: int,
    failure: str | None,
) -> None:
    _credentials_env(monkeypatch, bigquery_rest, tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "out"

    exit_code = recflow_main(_review_args(manifests, out, *_bigquery_args(manifests), *flags))

    assert exit_code == expected_exit
    err = capsys.readouterr().err
    if expected_exit == 2:
        assert failure in err
        assert not bigquery_rest.sent("POST", f"/bigquery/v2/projects/{PROJECT}/jobs")
        return
    gate = json.loads((out / "review.json").read_text())["bigquery_gate"]
    assert gate["passed"] is (expected_exit == 0)
    assert gate["bytes_increase"] == 2 * 2**30 + 5 * 2**29
    if failure is not None:
        (message,) = gate["failures"]
        assert failure in message
        assert f"BigQuery cost gate failed: {message}" in err
