"""The check every review test runs: the Markdown says what the JSON says.

Not a conftest (tests/conftest.py owns that name): test modules in this folder import it by
name.
"""

from __future__ import annotations

from typing import Any

from recflow.review.bigquery_cost import format_bytes


def assert_markdown_matches_json(report: dict[str, Any], markdown: str) -> None:
    """Every flagged, acknowledged or ignored finding (message and locations) and every
    BigQuery dry-run row (bytes on both sides, error reason codes) of the JSON is in the
    Markdown, and no dry run's error message is (the Markdown is a public comment)."""
    for finding in report["findings"]:
        if finding["status"] in {"flagged", "acknowledged", "ignored"}:
            assert finding["message"] in markdown
            for location in finding["locations"]:
                path, line = location["path"], location["line"]
                assert (path if line is None else f"{path}:{line}") in markdown
    bigquery = report["bigquery"]
    if bigquery is None:
        assert "### BigQuery dry run" not in markdown
        return
    section = markdown.split("### BigQuery dry run", 1)[1].split("\n### ", 1)[0]
    assert f"`{bigquery['project']}` ({bigquery['location']})" in section
    for model in bigquery["models"]:
        prefix = f"| `{model['name']}` |"
        (row,) = [line for line in section.splitlines() if line.startswith(prefix)]
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        for cell, side in zip(cells[1:3], (model["base"], model["head"]), strict=True):
            if side is None:
                assert cell == "-"
            elif side["error"] is not None:
                assert cell == "error"
                assert f"dry run failed for model `{model['name']}`" in section
                assert side["reason"] in section
                assert side["error"] not in markdown
            else:
                assert cell == format_bytes(side["bytes_processed"])
        if model["delta_bytes"] is not None:
            assert format_bytes(abs(model["delta_bytes"])) in cells[3]
