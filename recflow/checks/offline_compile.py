"""The offline `dbt compile` for BigQuery: a throwaway profile with a generated service-account
key, a hermetic environment, and dbt as a child process that is killed on a timeout.

The profile is the project's own `prod` output (so its env-var plumbing is exercised) rendered
with fake values, its authentication replaced by a key file whose token URI is a closed local
port: dbt builds the credentials even for `dbt compile`, and any request that slips through
fails at once, locally. See recflow/checks/bigquery.py for the flags and why.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from recflow.pipeline.dbt_invocation import dbt_executable

FAKE_PROJECT = "recflow-offline-check"
FAKE_DATASET = "recflow_offline_check"
FAKE_RAW_PROJECT = "recflow-offline-raw"
FAKE_LOCATION = "EU"
TARGET_NAME = "bigquery"
OFFLINE_COMPILE_VAR = "recflow_offline_compile"
DEFAULT_TIMEOUT_S = 300.0
# Nothing listens on the discard port: any request that slips through fails at once, locally.
_CLOSED_LOCAL_ENDPOINT = "127.0.0.1:9"
# Inherited variables that could point dbt or Google's libraries at something real.
_SCRUBBED_ENV_PREFIXES = ("DBT_", "RECFLOW_", "GOOGLE_", "GCE_", "CLOUDSDK_")
_AUTH_KEYS = (
    "method",
    "keyfile",
    "keyfile_json",
    "impersonate_service_account",
    "token",
    "refresh_token",
    "client_id",
    "client_secret",
    "token_uri",
    "token_endpoint",
    "workload_pool_provider_path",
    "service_account_impersonation_url",
)


@dataclass(frozen=True)
class DbtCompile:
    """One `dbt compile` child: its exit, output, duration and target directory."""

    returncode: int
    output: str
    seconds: float
    target_path: Path
    timed_out: bool = False

    def manifest(self) -> dict[str, Any] | None:
        """dbt's manifest of this compile, when dbt got far enough to write one."""
        path = self.target_path / "manifest.json"
        return json.loads(path.read_text()) if path.exists() else None


def write_offline_profile(project_dir: Path, project: Mapping[str, Any], work_dir: Path) -> Path:
    """Write profiles.yml with one BigQuery target and a fake service-account key; return the
    key file's path (the environment points at it)."""
    profiles_dir = work_dir / "profiles"
    profiles_dir.mkdir(parents=True, exist_ok=True)
    keyfile = profiles_dir / "fake-service-account.json"
    _write_fake_service_account_key(keyfile)

    profile_name = project["profile"]
    outputs: Mapping[str, Any] = {}
    profiles_path = project_dir / "profiles.yml"
    if profiles_path.exists():
        outputs = (read_yaml(profiles_path).get(profile_name) or {}).get("outputs") or {}
    prod_first = sorted(outputs.items(), key=lambda item: item[0] != "prod")
    bigquery_outputs = [
        dict(output)
        for _name, output in prod_first
        if isinstance(output, Mapping) and output.get("type") == "bigquery"
    ]
    target: dict[str, Any] = (
        bigquery_outputs[0]
        if bigquery_outputs
        else {
            "type": "bigquery",
            "project": "{{ env_var('RECFLOW_BQ_PROJECT') }}",
            "dataset": "{{ env_var('RECFLOW_BQ_DATASET') }}",
            "location": "{{ env_var('RECFLOW_BQ_LOCATION') }}",
        }
    )
    for key in _AUTH_KEYS:
        target.pop(key, None)
    target.update(
        method="service-account",
        keyfile=str(keyfile),
        threads=4,
        job_retries=0,
        job_creation_timeout_seconds=10,
        job_execution_timeout_seconds=10,
    )
    profile = {profile_name: {"target": TARGET_NAME, "outputs": {TARGET_NAME: target}}}
    (profiles_dir / "profiles.yml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return keyfile


def _write_fake_service_account_key(path: Path) -> None:
    """A well-formed service-account key file for a project that does not exist, whose token URI
    is a closed local port, so even a token request would fail locally, at once."""
    write_service_account_key(
        path,
        project=FAKE_PROJECT,
        account="offline-check",
        token_uri=f"http://{_CLOSED_LOCAL_ENDPOINT}/token",
    )


def write_service_account_key(path: Path, *, project: str, account: str, token_uri: str) -> Path:
    """A service-account key file with an RSA key generated here (it never leaves `path`): the
    auth library signs a JWT with it and exchanges it at `token_uri`. Readable by the owner only.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    keyfile = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": f"{account}@{project}.iam.gserviceaccount.com",
        "client_id": "0",
        "auth_uri": f"{token_uri.rsplit('/', 1)[0]}/auth",
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(keyfile))
    path.chmod(0o600)
    return path


def offline_environment(keyfile: Path) -> dict[str, str]:
    """The child's environment: inherited settings scrubbed, fake production values set."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_SCRUBBED_ENV_PREFIXES)
    }
    env.update(
        DO_NOT_TRACK="1",
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        # google-auth: never probe the GCE metadata server; if asked, it is a closed port.
        NO_GCE_CHECK="true",
        GCE_METADATA_HOST=_CLOSED_LOCAL_ENDPOINT,
        GCE_METADATA_IP=_CLOSED_LOCAL_ENDPOINT,
        GOOGLE_CLOUD_PROJECT=FAKE_PROJECT,
        # The variables the `prod` target and the sources read (dbt/profiles.yml).
        RECFLOW_BQ_AUTH_METHOD="service-account",
        RECFLOW_BQ_KEYFILE=str(keyfile),
        RECFLOW_BQ_PROJECT=FAKE_PROJECT,
        RECFLOW_BQ_DATASET=FAKE_DATASET,
        RECFLOW_BQ_LOCATION=FAKE_LOCATION,
        RECFLOW_RAW_PROJECT=FAKE_RAW_PROJECT,
    )
    return env


def compile_for_bigquery(
    project_dir: Path,
    work_dir: Path,
    env: Mapping[str, str],
    mode: str,
    select: Sequence[str],
    timeout_s: float,
) -> DbtCompile:
    """`dbt compile` for the offline BigQuery target, in its own target and log directories."""
    target_path = work_dir / f"target_{mode}"
    command = [
        dbt_executable(),
        "compile",
        "--project-dir",
        str(project_dir),
        "--profiles-dir",
        str(work_dir / "profiles"),
        "--target",
        TARGET_NAME,
        "--target-path",
        str(target_path),
        "--log-path",
        str(target_path / "logs"),
        "--select",
        *select,
        "--vars",
        json.dumps({OFFLINE_COMPILE_VAR: mode}),
        "--full-refresh",
        "--no-populate-cache",
        "--no-introspect",
        "--no-partial-parse",
        "--no-use-colors",
        "--quiet",
    ]
    started = time.perf_counter()
    returncode, output, timed_out = _run_with_timeout(command, env, project_dir, timeout_s)
    return DbtCompile(
        returncode=returncode,
        output=output,
        seconds=time.perf_counter() - started,
        target_path=target_path,
        timed_out=timed_out,
    )


def _run_with_timeout(
    command: Sequence[str], env: Mapping[str, str], cwd: Path, timeout_s: float
) -> tuple[int, str, bool]:
    """Run `command` in its own process group; kill that group if it outlives the timeout."""
    with subprocess.Popen(
        list(command),
        env=dict(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            output, _ = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            return -1, output, True
        return process.returncode, output, False


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML file as a mapping (empty for an empty file)."""
    return yaml.safe_load(path.read_text()) or {}
