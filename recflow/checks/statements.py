"""Every compiled statement parsed with sqlfluff's BigQuery grammar, with three rules on the
parse tree: nothing unparsable, no `::` casts, and only BigQuery's functions
(bigquery_functions.txt)."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from recflow.checks.results import Problem

if TYPE_CHECKING:
    from sqlfluff.core import Linter

FUNCTIONS_FILE = "bigquery_functions.txt"


def bigquery_functions() -> frozenset[str]:
    """The names in bigquery_functions.txt (package data), comments left out."""
    text = resources.files(__package__).joinpath(FUNCTIONS_FILE).read_text()
    return frozenset(name for line in text.splitlines() for name in line.split("#", 1)[0].split())


BIGQUERY_FUNCTIONS = bigquery_functions()

# What a DuckDB (or Postgres) habit is spelled as in BigQuery, for the failure message.
_BIGQUERY_SPELLING = {
    "try_cast": "safe_cast(x as type)",
    "struct_pack": "struct(x as name, ...)",
    "list_value": "[a, b, ...]",
    "list": "array_agg(x)",
    "strftime": "format_timestamp(format, ts)",
    "strptime": "parse_timestamp(format, string)",
    "regexp_matches": "regexp_contains(s, r)",
    "string_split": "split(s, delimiter)",
    "len": "length(s) or array_length(a)",
    "epoch": "unix_seconds(ts)",
    "epoch_ms": "unix_millis(ts) or timestamp_millis(n)",
    "datediff": "date_diff(end, start, part) (note the argument order)",
    "dateadd": "date_add(d, interval n part)",
    "now": "current_timestamp()",
    "today": "current_date()",
    "nvl": "ifnull(a, b)",
    "iff": "if(condition, a, b)",
    "group_concat": "string_agg(x, delimiter)",
    "median": "percentile_cont(x, 0.5) over ()",
    "hash": "farm_fingerprint(s)",
    "json_extract_string": "json_value(j, path)",
    "read_parquet": "a table in a dataset (source())",
    "read_csv": "a table in a dataset (source())",
}


class StatementChecker:
    """Parses SQL with sqlfluff's BigQuery grammar and applies the tree rules."""

    def __init__(self) -> None:
        try:
            from sqlfluff.core import FluffConfig, Linter
        except ImportError as error:  # pragma: no cover - dev extras missing
            raise RuntimeError(
                "check-bigquery needs sqlfluff and sqlglot: pip install -e '.[dev]'"
            ) from error
        config = FluffConfig(
            # The raw templater: compiled SQL must not be templated a second time.
            overrides={"dialect": "bigquery", "templater": "raw", "large_file_skip_byte_limit": 0},
            ignore_local_config=True,
        )
        self._linter: Linter = Linter(config=config)

    def check(self, sql: str, path: Path | None) -> list[Problem]:
        lines = sql.splitlines()

        def snippet(line: int | None) -> str:
            return lines[line - 1].strip() if line and 0 < line <= len(lines) else ""

        parsed = self._linter.parse_string(sql)
        problems = [
            Problem(
                "grammar",
                "not BigQuery SQL: " + re.sub(r"^Line \d+, Position \d+: ", "", violation.desc()),
                path,
                violation.line_no,
                violation.line_pos,
                snippet(violation.line_no),
            )
            for violation in parsed.violations
        ]
        if parsed.tree is None:
            return problems
        for segment in parsed.tree.recursive_crawl("casting_operator"):
            line = segment.pos_marker.line_no
            problems.append(
                Problem(
                    "cast-operator",
                    "`::` casts are DuckDB/Postgres syntax; BigQuery needs cast(x as type)",
                    path,
                    line,
                    segment.pos_marker.line_pos,
                    snippet(line),
                )
            )
        for segment in parsed.tree.recursive_crawl("function_name"):
            name = segment.raw.strip("`").lower()
            if name.startswith("safe."):
                name = name.removeprefix("safe.")
            if "." in name or name.startswith("st_") or name in BIGQUERY_FUNCTIONS:
                continue
            spelling = _BIGQUERY_SPELLING.get(name)
            hint = f"; in BigQuery: {spelling}" if spelling else ""
            line = segment.pos_marker.line_no
            problems.append(
                Problem(
                    "function",
                    f"`{name}` is not a BigQuery function{hint} (if it is one, add it to "
                    "recflow/checks/bigquery_functions.txt)",
                    path,
                    line,
                    segment.pos_marker.line_pos,
                    snippet(line),
                )
            )
        return problems
