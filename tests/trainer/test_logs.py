"""The trainer's logs: JSON lines Cloud Logging reads (severity, message, logger, time, source
line) on Vertex AI, readable text elsewhere, and which one a process gets."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from trainer.errors import TrainerInputError
from trainer.logs import CloudLoggingFormatter, configure_logging, log_format

REPO_ROOT = Path(__file__).resolve().parents[2]


def record(level: int, message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("bad value")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord(
        "trainer.pipeline", level, "/app/trainer/pipeline.py", 42, message, args, exc_info, "run"
    )


@pytest.mark.parametrize(
    ("level", "severity"),
    [
        (logging.DEBUG, "DEBUG"),
        (logging.INFO, "INFO"),
        (logging.WARNING, "WARNING"),
        (logging.ERROR, "ERROR"),
        (logging.CRITICAL, "CRITICAL"),
    ],
)
def test_a_record_is_one_json_line_with_cloud_loggings_fields(level: int, severity: str) -> None:
    line = CloudLoggingFormatter().format(record(level, "trained %d rounds on %s", 30, "bq"))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["severity"] == severity
    assert entry["message"] == "trained 30 rounds on bq"
    assert entry["logger"] == "trainer.pipeline"
    assert datetime.fromisoformat(entry["time"]).tzinfo is not None
    assert entry["logging.googleapis.com/sourceLocation"] == {
        "file": "/app/trainer/pipeline.py",
        "line": "42",
        "function": "run",
    }


def test_an_exception_stays_in_its_records_message() -> None:
    entry = json.loads(CloudLoggingFormatter().format(record(logging.ERROR, "failed", exc=True)))
    assert entry["severity"] == "ERROR"
    assert entry["message"].startswith("failed\nTraceback (most recent call last):")
    assert entry["message"].endswith("ValueError: bad value")


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "text"),
        ({"CLOUD_ML_JOB_ID": "4000000000000000000"}, "json"),
        ({"RECFLOW_LOG_FORMAT": "json"}, "json"),
        ({"RECFLOW_LOG_FORMAT": " JSON "}, "json"),
        ({"RECFLOW_LOG_FORMAT": "text", "CLOUD_ML_JOB_ID": "1"}, "text"),
        ({"RECFLOW_LOG_FORMAT": "", "CLOUD_ML_JOB_ID": "1"}, "json"),
    ],
)
def test_the_format_follows_the_setting_else_where_it_runs(
    environ: dict[str, str], expected: str
) -> None:
    assert log_format(environ) == expected


def test_an_unknown_format_is_bad_input() -> None:
    with pytest.raises(TrainerInputError, match="RECFLOW_LOG_FORMAT must be one of json, text"):
        log_format({"RECFLOW_LOG_FORMAT": "xml"})


def test_configure_leaves_a_configured_root_logger_alone() -> None:
    """pytest's capture handlers are on the root logger: the caller's logging wins."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    stream = io.StringIO()
    assert configure_logging({"RECFLOW_LOG_FORMAT": "json"}, stream=stream) == "json"
    assert root.handlers == handlers
    assert stream.getvalue() == ""


def run_logging(environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A fresh process (no handlers yet, as `python -m trainer.task`) that logs two records."""
    script = (
        "import logging, os; from trainer.logs import configure_logging; "
        "configure_logging(os.environ); "
        "logging.getLogger('trainer.ranker').info('round %d', 7); "
        "logging.getLogger('lightgbm').warning('no split')"
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("RECFLOW_LOG_FORMAT", "CLOUD_ML_JOB_ID")
    }
    return subprocess.run(
        [sys.executable, "-c", script],
        env={**env, "PYTHONPATH": str(REPO_ROOT), **environ},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_on_vertex_ai_every_record_is_a_json_line_on_stdout() -> None:
    ran = run_logging({"CLOUD_ML_JOB_ID": "4000000000000000000"})
    assert ran.stderr == ""  # Cloud Logging files unstructured stderr lines as ERROR
    entries = [json.loads(line) for line in ran.stdout.splitlines()]
    assert [(e["severity"], e["logger"], e["message"]) for e in entries] == [
        ("INFO", "trainer.ranker", "round 7"),
        ("WARNING", "lightgbm", "no split"),
    ]


def test_locally_records_are_readable_text_on_stderr() -> None:
    ran = run_logging({})
    assert ran.stdout == ""
    lines = ran.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(" trainer.ranker round 7")
    assert lines[1].endswith(" lightgbm no split")
    assert not lines[0].startswith("{")
