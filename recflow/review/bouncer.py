"""Run dbt-bouncer checks on a manifest held in memory: the review's I/O edge to dbt-bouncer.

dbt-bouncer reads its artifacts and its configuration from files, so both are written to a
temporary directory and the documented CLI runs there (`run --output-file`, JSON), in its own
process: its console logging and GC settings stay out of the review's process.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

# dbt-bouncer's exit code (dbt_bouncer.enums.ExitCode) when no resource matched any check.
_NO_CHECKS_RUN = 4


class BouncerError(RuntimeError):
    """dbt-bouncer is missing, or it refused the configuration or the manifest."""


def bouncer_executable() -> str:
    """The dbt-bouncer next to this interpreter (the project's venv), else the one on PATH."""
    beside = Path(sys.executable).with_name("dbt-bouncer")
    if beside.exists():
        return str(beside)
    found = shutil.which("dbt-bouncer")
    if found is None:
        raise BouncerError("dbt-bouncer is not installed (pip install -e '.[dev]')")
    return found


def run_checks(
    manifest: Mapping[str, Any], checks: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The failed results of `checks` (dbt-bouncer `manifest_checks` entries) on `manifest`.

    Each result is dbt-bouncer's JSON output row: check_run_id (`<check>:<index>:<resource>`),
    unique_id, file_path, failure_message, severity, outcome."""
    with tempfile.TemporaryDirectory(prefix="recflow-bouncer-") as tmp:
        work = Path(tmp)
        (work / "target").mkdir()
        (work / "target" / "manifest.json").write_text(json.dumps(manifest))
        config = work / "dbt-bouncer.yml"
        config.write_text(
            yaml.safe_dump({"dbt_artifacts_dir": "target", "manifest_checks": list(checks)})
        )
        output = work / "results.json"
        command = [
            bouncer_executable(),
            "run",
            "--config-file",
            str(config),
            "--output-file",
            str(output),
            "--output-format",
            "json",
            "--output-only-failures",
        ]
        ran = subprocess.run(command, cwd=work, capture_output=True, text=True, check=False)
        # A crash exits 1 too, as failed checks do: only the output file tells them apart.
        if ran.returncode == _NO_CHECKS_RUN:
            return []
        if ran.returncode not in (0, 1) or not output.exists():
            detail = (ran.stderr or ran.stdout).strip()[-2000:]
            raise BouncerError(f"dbt-bouncer exited {ran.returncode}: {detail}")
        return [row for row in json.loads(output.read_text()) if row["outcome"] == "failed"]
