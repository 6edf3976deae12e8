"""sqlfluff on the SQL files of the models whose SQL the pull request changes (or adds).

`sqlfluff lint --format json` runs in a child process with the repository's `.sqlfluff`
(dbt templater, local DuckDB target), its `[sqlfluff:templater:dbt]` project and profiles
directories pointed at the project being reviewed. The dbt templater compiles the project, so
the environment must be the one the DuckDB build uses (RECFLOW_DUCKDB_PATH, RECFLOW_DATA_DIR).
Each violation becomes a finding `sqlfluff:<code>` at the file and line.
"""

from __future__ import annotations

import configparser
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from recflow.review.findings import Finding, Location

LINT_TIMEOUT_S = 600


class LintError(RuntimeError):
    """sqlfluff could not run or its output was not JSON."""


def lint_findings(
    project_dir: Path,
    files: Iterable[tuple[str, str]],
    sqlfluff_config: Path,
    env: Mapping[str, str] | None = None,
) -> tuple[Finding, ...]:
    """Findings for `files`: (unique id, path relative to `project_dir`) of changed models.
    sqlfluff runs with `env` (default: this process's environment)."""
    files = sorted(set(files), key=lambda item: item[1])
    if not files:
        return ()
    project_dir = project_dir.resolve()
    with tempfile.TemporaryDirectory() as directory:
        config_path = Path(directory) / ".sqlfluff"
        _write_config(sqlfluff_config, project_dir, config_path)
        command = [
            sys.executable,
            "-m",
            "sqlfluff",
            "lint",
            "--format",
            "json",
            "--nofail",
            "--disable-progress-bar",
            "--config",
            str(config_path),
            *(path for _, path in files),
        ]
        try:
            completed = subprocess.run(
                command,
                cwd=project_dir,
                env=None if env is None else dict(env),
                capture_output=True,
                text=True,
                timeout=LINT_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise LintError(f"sqlfluff did not run: {error}") from error
    try:
        results = json.loads(completed.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as error:
        raise LintError(
            f"sqlfluff gave no JSON (exit {completed.returncode}): {completed.stderr[-2000:]}"
        ) from error
    by_path = {path: uid for uid, path in files}
    findings = []
    for result in results:
        path = Path(result["filepath"])
        relative = str(path.resolve().relative_to(project_dir)) if path.is_absolute() else str(path)
        uid = by_path.get(relative, "")
        for violation in result.get("violations", []):
            code = violation.get("code", "?")
            line = violation.get("start_line_no") or violation.get("line_no")
            name = violation.get("name") or ""
            findings.append(
                Finding(
                    rule=f"sqlfluff:{code}",
                    key=f"sqlfluff:{code}:{relative}:{line}",
                    message=f"`{relative}:{line}` {name} ({code}): {violation.get('description')}",
                    subjects=(uid,) if uid else (),
                    locations=(Location(relative, line),),
                    suggestion="`sqlfluff fix` on the file, or follow the rule by hand",
                )
            )
    return tuple(findings)


def _write_config(source: Path, project_dir: Path, target: Path) -> None:
    """The repository's sqlfluff config with the dbt templater pointed at `project_dir`."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(source)
    section = "sqlfluff:templater:dbt"
    if not parser.has_section(section):
        parser.add_section(section)
    parser.set(section, "project_dir", str(project_dir))
    parser.set(section, "profiles_dir", str(project_dir))
    with target.open("w") as handle:
        parser.write(handle)
