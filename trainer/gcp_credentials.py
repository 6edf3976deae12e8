"""Google Cloud credentials for the trainer's clients (BigQuery, Cloud Storage), and the one
message that says how to provide them.

Application Default Credentials only: a missing setup is an error that names both ways to fix
it, never a silent anonymous fallback.
"""

from __future__ import annotations

import functools

import google.auth
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import Credentials

from trainer.errors import TrainerInputError

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
CREDENTIALS_HELP = (
    "run `gcloud auth application-default login` on a workstation; in CI use Workload Identity "
    "Federation (e.g. google-github-actions/auth, which sets GOOGLE_APPLICATION_CREDENTIALS); "
    "or set GOOGLE_APPLICATION_CREDENTIALS to a credential file (on Vertex AI the job's service "
    "account is used)"
)


def default_credentials(service: str) -> Credentials:
    """Application Default Credentials, or a TrainerInputError naming `service` (the API that
    needs them) and how to provide them."""
    try:
        return _application_default()
    except auth_exceptions.DefaultCredentialsError as error:
        raise missing_credentials(service, error) from error


def missing_credentials(service: str, error: Exception) -> TrainerInputError:
    """The error for absent credentials, for a client that looked them up itself."""
    return TrainerInputError(
        f"No Google Cloud credentials for {service}: {CREDENTIALS_HELP}. ({error})"
    )


def refused_credentials(action: str, error: Exception) -> TrainerInputError:
    """The error for credentials the service refused (an expired or revoked token)."""
    return TrainerInputError(
        f"The Google Cloud credentials were refused while trying to {action}: "
        f"{CREDENTIALS_HELP}. ({error})"
    )


@functools.cache
def _application_default() -> Credentials:
    # Looked up once per process: every client shares them (and their token, refreshed when it
    # expires). A failed lookup is not cached: functools.cache keeps only results.
    credentials, _ = google.auth.default(scopes=SCOPES)
    return credentials
