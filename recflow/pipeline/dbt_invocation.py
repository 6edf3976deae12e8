"""Run dbt as a child process and read back what it reports.

A child process rather than dbt's in-process runner: dbt's adapters keep connections and global
state for the life of the process, and the report that follows opens the same DuckDB file.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from recflow.pipeline.settings import Settings

log = logging.getLogger(__name__)
# prctl(2), looked up once here: a forked child should not load libraries before exec.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


class DbtFailedError(RuntimeError):
    """dbt exited non-zero; its own output (already shown) says why."""


@dataclass(frozen=True)
class NodeTiming:
    unique_id: str
    status: str
    seconds: float


@dataclass(frozen=True)
class DbtRun:
    command: tuple[str, ...]
    seconds: float
    nodes: tuple[NodeTiming, ...]
    output: str = ""  # dbt's stdout, when run quietly


def dbt_executable() -> str:
    return str(Path(sys.executable).with_name("dbt"))


def run_dbt(settings: Settings, *args: str, quiet: bool = False) -> DbtRun:
    """Run `dbt <args>` on the settings' project and target; raise DbtFailedError if it fails."""
    command = (
        dbt_executable(),
        *args,
        "--project-dir",
        str(settings.dbt_project_dir),
        "--target",
        settings.dbt_target,
        *(("--vars", json.dumps(dict(settings.dbt_vars))) if settings.dbt_vars else ()),
    )
    log.info("running %s", " ".join(command[1:]))
    started = time.perf_counter()
    completed = subprocess.run(
        command,
        env=settings.dbt_environment(),
        cwd=settings.dbt_project_dir,
        stdout=subprocess.PIPE if quiet else None,
        stderr=subprocess.STDOUT if quiet else None,
        text=True,
        check=False,
        preexec_fn=_die_with_parent if _PRCTL is not None else None,
    )
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        if quiet and completed.stdout:
            sys.stderr.write(completed.stdout)
        raise DbtFailedError(
            f"dbt {next(a for a in args if not a.startswith('-'))} failed "
            f"(exit {completed.returncode}); see its output above"
        )
    return DbtRun(
        command=command,
        seconds=seconds,
        nodes=_read_node_timings(settings),
        output=completed.stdout or "",
    )


def build_features(settings: Settings, *, full_refresh: bool = False) -> DbtRun:
    """`dbt build` of the features, fully refreshed when asked or when the export changed where
    an incremental build would keep stored rows (dbt/macros/provenance): says why, then rebuilds
    rather than stopping, as the build's own check would. An incremental build tests only the
    partitions it rebuilt (`data_test_scope: recent`, unless the run's vars say otherwise); a
    full or first build tests every row."""
    if not full_refresh:
        state = export_state(settings)
        if state.changes:
            print("the export changed since the last build: " + "; ".join(state.changes))
            print("rebuilding every table from this export (dbt build --full-refresh)")
            full_refresh = True
        elif state.tables_stored:
            settings = dataclasses.replace(
                settings, dbt_vars={"data_test_scope": "recent", **settings.dbt_vars}
            )
    return run_dbt(settings, "build", *(("--full-refresh",) if full_refresh else ()))


@dataclass(frozen=True)
class ExportState:
    changes: tuple[str, ...]  # how the export differs from what the stored tables were built from
    tables_stored: bool  # whether any table is stored yet (false: the next build is the first)


def export_state(settings: Settings) -> ExportState:
    """What the warehouse holds against the export: its changes since the last build (empty:
    nothing differs, or nothing is stored yet) and whether anything is stored."""
    operation = run_dbt(settings, "--quiet", "run-operation", "export_changes", quiet=True)
    for line in reversed(operation.output.splitlines()):
        if line.startswith('{"export_changes"'):
            reported = json.loads(line)
            return ExportState(
                changes=tuple(reported["export_changes"]),
                tables_stored=bool(reported["tables_stored"]),
            )
    raise DbtFailedError(f"dbt run-operation export_changes printed no result:\n{operation.output}")


def _die_with_parent() -> None:
    """In the dbt child, before exec: the kernel kills it when recflow dies (kill -9
    included), so no orphaned build keeps writing the warehouse after its lock is released."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _read_node_timings(settings: Settings) -> tuple[NodeTiming, ...]:
    run_results = settings.dbt_target_path / "run_results.json"
    if not run_results.exists():
        return ()
    results = json.loads(run_results.read_text())["results"]
    return tuple(
        NodeTiming(
            unique_id=result["unique_id"],
            status=result["status"],
            seconds=float(result["execution_time"]),
        )
        for result in results
    )


def compiled_analysis_sql(settings: Settings, name: str) -> str:
    """Compile one analysis of the project and return its SQL."""
    run_dbt(settings, "compile", "--select", name, quiet=True)
    manifest = json.loads((settings.dbt_target_path / "manifest.json").read_text())
    return manifest["nodes"][f"analysis.recflow.{name}"]["compiled_code"]
