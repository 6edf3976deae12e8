"""How the trainer logs: readable text on a terminal, one JSON object a line on Vertex AI.

Cloud Logging collects a custom job's stdout and stderr, files every stderr line as ERROR
unless the line is a JSON object, and then reads its severity from the object's `severity`
field, its text from `message`, and its time and source line from `time` and
`logging.googleapis.com/sourceLocation`. So on Vertex AI each record becomes one such line on
stdout. Which format: $RECFLOW_LOG_FORMAT (`json` or `text`) when set (the training image sets
`json`), else JSON where Vertex AI runs the process (it sets CLOUD_ML_JOB_ID), else text.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

from trainer.errors import TrainerInputError

FORMATS = ("json", "text")
TEXT_FORMAT = "%(asctime)s %(name)s %(message)s"
# Python's level names that Cloud Logging spells differently; the others are the same words.
_SEVERITY = {"WARN": "WARNING", "FATAL": "CRITICAL"}


class CloudLoggingFormatter(logging.Formatter):
    """A record as one line of JSON in Cloud Logging's structured-log fields."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{self.formatException(record.exc_info)}"
        if record.stack_info:
            message = f"{message}\n{self.formatStack(record.stack_info)}"
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelname, record.levelname),
            "message": message,
            "logger": record.name,
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logging.googleapis.com/sourceLocation": {
                "file": record.pathname,
                "line": str(record.lineno),
                "function": record.funcName,
            },
        }
        return json.dumps(entry, default=str, ensure_ascii=False)


def log_format(environ: Mapping[str, str]) -> str:
    """`json` or `text`, from $RECFLOW_LOG_FORMAT or, when unset, whether Vertex AI runs us."""
    chosen = environ.get("RECFLOW_LOG_FORMAT", "").strip().lower()
    if not chosen:
        return "json" if environ.get("CLOUD_ML_JOB_ID") else "text"
    if chosen not in FORMATS:
        raise TrainerInputError(
            f"RECFLOW_LOG_FORMAT must be one of {', '.join(FORMATS)}, got {chosen!r}"
        )
    return chosen


def configure_logging(
    environ: Mapping[str, str], *, level: int = logging.INFO, stream: IO[str] | None = None
) -> str:
    """Give the root logger one handler in the chosen format; returns the format.

    JSON goes to stdout (Cloud Logging reads the severity from the line, and a line it cannot
    parse is then INFO, not ERROR); text goes to stderr as logging.basicConfig does. Like
    basicConfig, it leaves a root logger that already has handlers alone: the process that
    called the trainer in-process (`recflow run`, a test) owns its logging."""
    chosen = log_format(environ)
    root = logging.getLogger()
    if root.handlers:
        return chosen
    handler = logging.StreamHandler(stream or (sys.stdout if chosen == "json" else sys.stderr))
    handler.setFormatter(
        CloudLoggingFormatter() if chosen == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root.addHandler(handler)
    root.setLevel(level)
    return chosen
