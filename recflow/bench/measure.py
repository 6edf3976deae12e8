"""Run one benchmark step as a child process and measure its wall time and peak memory.

Peak memory is the kernel's high-water mark of resident memory, read with `os.wait4` when the
child is reaped: exact (no polling interval to miss a short spike) and no dependency. The figure
is the largest single process of the step's tree (Linux reports the maximum over the child and
the descendants it waited for, not their sum); every step here is one process (dbt runs DuckDB
in-process, with threads), so that is the step's peak. A fresh process per step keeps each
figure its own.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# ru_maxrss is in kibibytes on Linux (bytes on macOS).
_MAXRSS_UNIT = 1 if os.uname().sysname == "Darwin" else 1024


class StepFailedError(RuntimeError):
    """A benchmark step exited non-zero; the message names its log file."""


@dataclass(frozen=True)
class Measurement:
    """Wall time and peak resident memory of one step's process."""

    seconds: float
    peak_rss_bytes: int


def run_measured(
    command: Sequence[str], *, env: Mapping[str, str], cwd: Path, log_path: Path
) -> Measurement:
    """Run `command` to completion with its output in `log_path`; raise if it fails."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log.debug("running %s (log: %s)", " ".join(command), log_path)
    with log_path.open("w") as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(command), env=dict(env), cwd=cwd, stdout=output, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-30:])
        raise StepFailedError(
            f"{command[0]} {' '.join(command[1:3])} ... failed (exit {process.returncode}); "
            f"full output in {log_path}; last lines:\n{tail}"
        )
    return Measurement(seconds=seconds, peak_rss_bytes=usage.ru_maxrss * _MAXRSS_UNIT)
