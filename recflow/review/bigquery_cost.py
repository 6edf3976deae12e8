"""BigQuery dry-run bytes of each changed model, base against pull request (`review --bigquery`).

The review's own manifests come from the DuckDB CI build, so their compiled SQL is DuckDB SQL.
The dry run needs each side's SQL compiled for production instead: what `dbt compile --target
prod` writes (`--bigquery-manifest`, `--base-bigquery-manifest`). That is what a dbt user
already runs against production, with the project and datasets production uses, so the dry run
resolves the same tables the next production build reads. (The offline compile of
`recflow check-bigquery` uses a fake project, whose tables a dry run cannot find.)

Each changed model's compiled SELECT is sent as a query job with `dry_run=True` and the cache
off: BigQuery validates it, resolves its tables and returns `totalBytesProcessed` without
running it or billing anything. Both sides are dry-run against production as it is now, so a
model whose parent the pull request also changes is measured on the parent's production form,
and a model reading a model that production does not have yet gets the API's notFound reason
instead of bytes. The estimated on-demand cost is bytes / 2^40 x the configured USD per TiB
(`dbt/review.yml`, `bigquery.usd_per_tib`), before BigQuery's 10 MB minimum per referenced
table and any free tier.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from recflow.review.manifest_graph import ManifestError

if TYPE_CHECKING:
    from google.cloud import bigquery

log = logging.getLogger(__name__)

BYTES_PER_TIB = 2**40
DEFAULT_USD_PER_TIB = 6.25  # on-demand list price in the US and EU multi-regions (2026)
PARALLEL_DRY_RUNS = 8


class BigQueryDryRunError(Exception):
    """The dry runs cannot start at all: settings, credentials or manifests are unusable."""


@dataclass(frozen=True)
class BigQuerySettings:
    """Where the dry runs go and as whom: the `prod` target's RECFLOW_BQ_* variables."""

    project: str
    location: str
    keyfile: str | None  # None: Application Default Credentials

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BigQuerySettings:
        env = os.environ if environ is None else environ
        required = ("RECFLOW_BQ_PROJECT", "RECFLOW_BQ_LOCATION")
        missing = [name for name in required if not env.get(name)]
        method = env.get("RECFLOW_BQ_AUTH_METHOD", "oauth")
        if method == "service-account" and not env.get("RECFLOW_BQ_KEYFILE"):
            missing.append("RECFLOW_BQ_KEYFILE (RECFLOW_BQ_AUTH_METHOD=service-account)")
        if method not in {"oauth", "service-account"}:
            raise BigQueryDryRunError(
                f"RECFLOW_BQ_AUTH_METHOD={method!r}: use oauth or service-account"
            )
        if missing:
            raise BigQueryDryRunError(
                f"--bigquery needs {', '.join(missing)} (the variables of dbt/profiles.yml's "
                "prod target)"
            )
        return cls(
            project=env["RECFLOW_BQ_PROJECT"],
            location=env["RECFLOW_BQ_LOCATION"],
            keyfile=env.get("RECFLOW_BQ_KEYFILE") if method == "service-account" else None,
        )


@dataclass(frozen=True)
class DryRun:
    """One dry run: the bytes BigQuery would process, or why it could not tell.

    `error` is the API's message (it can hold table names and the SQL's values): it goes to the
    job log and review.json, never to the public report, which shows only `reason`."""

    bytes_processed: int | None = None
    error: str | None = None  # "<reason>: <message>" from the API, or why nothing was sent
    reason: str | None = None  # the API's reason code (notFound, invalidQuery, ...) or ours


@dataclass(frozen=True)
class DryRunRow:
    """A changed model's dry runs on the base and on the pull request's SQL."""

    unique_id: str
    name: str
    base: DryRun | None  # None: the model does not exist on that side
    head: DryRun | None

    @property
    def delta_bytes(self) -> int | None:
        before = self.base.bytes_processed if self.base else None
        after = self.head.bytes_processed if self.head else None
        if before is None and after is None:
            return None
        if (self.base is not None and before is None) or (self.head is not None and after is None):
            return None  # one side failed: no honest difference
        return (after or 0) - (before or 0)


@dataclass(frozen=True)
class BigQueryCost:
    """The dry-run section of the review."""

    project: str
    location: str
    usd_per_tib: float
    rows: tuple[DryRunRow, ...]


def estimate_usd(bytes_processed: int | None, usd_per_tib: float) -> float | None:
    """On-demand price of scanning `bytes_processed` bytes."""
    return None if bytes_processed is None else bytes_processed / BYTES_PER_TIB * usd_per_tib


def require_bigquery_manifest(manifest: Mapping[str, Any], origin: str) -> None:
    """Stop on a manifest compiled for another adapter (the usual mix-up: the DuckDB one)."""
    adapter = (manifest.get("metadata") or {}).get("adapter_type")
    if adapter != "bigquery":
        raise ManifestError(
            f"{origin} was compiled for {adapter or 'an unknown adapter'}, not BigQuery: "
            "compile it with `dbt compile --target prod`"
        )


def make_client(settings: BigQuerySettings) -> bigquery.Client:
    """A BigQuery client for the prod target's project and credentials. The API endpoint is
    the library's (BIGQUERY_EMULATOR_HOST redirects it, as for every client of the library)."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import bigquery
    from google.oauth2 import service_account

    scopes = ["https://www.googleapis.com/auth/cloud-platform"]
    try:
        if settings.keyfile is not None:
            credentials = service_account.Credentials.from_service_account_file(
                settings.keyfile, scopes=scopes
            )
        else:
            credentials, _ = google.auth.default(scopes=scopes)
    except (DefaultCredentialsError, OSError, ValueError) as error:
        raise BigQueryDryRunError(
            f"no usable BigQuery credentials ({error}); run `gcloud auth application-default "
            "login`, or set RECFLOW_BQ_AUTH_METHOD=service-account and RECFLOW_BQ_KEYFILE"
        ) from error
    return bigquery.Client(
        project=settings.project, credentials=credentials, location=settings.location
    )


def dry_run(client: bigquery.Client, sql: str, location: str) -> DryRun:
    """Bytes BigQuery would process for `sql`; the API's reason when it refuses."""
    from google.api_core.exceptions import GoogleAPICallError
    from google.auth.exceptions import RefreshError, TransportError
    from google.cloud import bigquery

    config = bigquery.QueryJobConfig(dry_run=True, use_query_cache=False)
    try:
        job = client.query(sql, job_config=config, location=location)
    except GoogleAPICallError as error:
        reason, message = _api_reason(error)
        return DryRun(error=f"{reason}: {message}", reason=reason)
    except (RefreshError, TransportError) as error:
        raise BigQueryDryRunError(f"BigQuery credentials were refused: {error}") from error
    return DryRun(bytes_processed=job.total_bytes_processed)


def _api_reason(error: Any) -> tuple[str, str]:
    """(reason, message) of the first error the API returned (e.g. notFound, invalidQuery)."""
    details = list(getattr(error, "errors", None) or [])
    first = details[0] if details and isinstance(details[0], Mapping) else {}
    reason = first.get("reason") or getattr(error, "reason", None) or type(error).__name__
    message = first.get("message") or getattr(error, "message", None) or str(error)
    return str(reason), str(message)


def dry_run_changed(
    client: bigquery.Client,
    settings: BigQuerySettings,
    unique_ids: Iterable[str],
    base_manifest: Mapping[str, Any],
    head_manifest: Mapping[str, Any],
    usd_per_tib: float,
) -> BigQueryCost:
    """Dry-run each model of `unique_ids` on both sides, in parallel; rows in the given order."""
    jobs: list[tuple[str, str, str | None]] = []  # (uid, side, sql or None when absent)
    rows_meta: dict[str, str] = {}
    for uid in unique_ids:
        for side, manifest in (("base", base_manifest), ("head", head_manifest)):
            node = (manifest.get("nodes") or {}).get(uid)
            if node is not None:
                rows_meta.setdefault(uid, node.get("name", uid))
                jobs.append((uid, side, node.get("compiled_code")))
    missing_sql = DryRun(
        error="no compiled SQL in the manifest: use `dbt compile --target prod`",
        reason="noCompiledSql",
    )

    def run(job: tuple[str, str, str | None]) -> DryRun:
        uid, side, sql = job
        if not sql:
            return missing_sql
        log.info("dry-running %s (%s) on BigQuery", uid, side)
        return dry_run(client, sql, settings.location)

    with ThreadPoolExecutor(max_workers=PARALLEL_DRY_RUNS) as pool:
        outcomes = list(pool.map(run, jobs))
    results = {(uid, side): outcome for (uid, side, _), outcome in zip(jobs, outcomes, strict=True)}
    for (uid, side), outcome in results.items():
        if outcome.error is not None:
            # The job log is the only place the API's message goes (see DryRun).
            log.warning("dry run failed for %s (%s): %s", uid, side, outcome.error)
    rows = tuple(
        DryRunRow(
            unique_id=uid,
            name=name,
            base=results.get((uid, "base")),
            head=results.get((uid, "head")),
        )
        for uid, name in rows_meta.items()
    )
    return BigQueryCost(
        project=settings.project, location=settings.location, usd_per_tib=usd_per_tib, rows=rows
    )


def format_bytes(value: int | None) -> str:
    """Binary units, as BigQuery's console shows them (1 TiB = 2^40 bytes)."""
    if value is None:
        return "-"
    sign = "-" if value < 0 else ""
    size = float(abs(value))
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{sign}{int(size)} B" if unit == "B" else f"{sign}{size:.2f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def format_usd(value: float | None) -> str:
    if value is None:
        return "-"
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.4f}"
