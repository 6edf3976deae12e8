"""`recflow report`: (re)generate a run directory's report.html."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from recflow.report.build import write_report
from recflow.report.inputs import QUALITY_TABLE


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "report",
        help="write report.html into a run directory",
        description="Build one self-contained HTML file in the run directory: the model against "
        "every baseline with intervals, candidate recall per source, feature importance, the "
        "batch's scores, catalogue coverage and popularity bias, and realised quality when the "
        "warehouse has a history of it.",
    )
    parser.add_argument("--run-dir", type=Path, required=True, help="a finished run directory")
    parser.add_argument(
        "--warehouse-uri",
        default=None,
        help="duckdb:///path or bq://project.dataset (default: the run's, from run_metadata.json)",
    )
    parser.add_argument(
        "--quality-table",
        default=QUALITY_TABLE,
        help="realised quality per day of what was served; absent: the section says so",
    )
    parser.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    path = write_report(
        args.run_dir, warehouse_uri=args.warehouse_uri, quality_table=args.quality_table
    )
    print(f"report: {path}")
    return 0
