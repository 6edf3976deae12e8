"""A failed offline compile turned into node results, from what dbt printed.

dbt stops at the first node it cannot compile and names it in its output; a macro without a
BigQuery variant stops it while parsing, before it names any node, so the nodes calling that
macro are found in the source files instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from recflow.checks.offline_compile import OFFLINE_COMPILE_VAR, DbtCompile
from recflow.checks.results import NodeResult, Problem

_NODE_ERROR = re.compile(
    r"(?:Compilation|Runtime|Database|Parsing) Error in (?P<type>model|test|analysis|snapshot|"
    r"seed|operation|unit_test) (?P<name>\S+) \((?P<path>[^)]+)\)\n(?P<message>(?:[ \t]+.*\n?)*)"
)
_MISSING_MACRO = re.compile(r"No macro named '(?P<macro>\w+)' found")


def compile_failures(
    compiled: DbtCompile,
    manifest: Mapping[str, Any] | None,
    project_dir: Path,
    project: Mapping[str, Any],
    mode: str,
) -> tuple[tuple[NodeResult, ...], tuple[str, ...]]:
    """Turn a failed `dbt compile` into node results where dbt's output allows it."""
    log = compiled.target_path / "logs" / "dbt.log"
    if compiled.timed_out:
        return (), (
            "dbt compile did not finish within the timeout (--timeout). An offline compile "
            "never waits on the network, so either something tried to reach BigQuery or the "
            f"timeout is too short for this machine. dbt's log: {log}\n{_tail(compiled.output)}",
        )
    nodes_by_name = {
        (node["resource_type"], node["name"]): node
        for node in (manifest or {}).get("nodes", {}).values()
    }
    results: list[NodeResult] = []
    for match in _NODE_ERROR.finditer(compiled.output):
        message = " ".join(match["message"].split())
        if "connection never acquired" in message:
            message = (
                "needs a warehouse connection while compiling (run_query, adapter.get_relation "
                "or similar); guard it with `if execute` and the offline var "
                f"`{OFFLINE_COMPILE_VAR}`, as dbt/macros/cross_db/is_incremental.sql does "
                f"(dbt: {message})"
            )
        node = nodes_by_name.get((match["type"], match["name"]))
        results.append(
            NodeResult(
                unique_id=node["unique_id"] if node else f"{match['type']}.{match['name']}",
                resource_type=match["type"],
                name=match["name"],
                source_path=match["path"],
                compiled_path=None,
                mode=mode,
                problems=(Problem("compile", message),),
            )
        )
    missing_macro = _MISSING_MACRO.search(compiled.output)
    if not results and missing_macro:
        macro = missing_macro["macro"]
        results.extend(_macro_users(project_dir, project, macro, mode, _tail(compiled.output)))
    if results:
        return tuple(results), ()
    return (), (f"dbt compile failed (exit {compiled.returncode}):\n{_tail(compiled.output)}",)


def _macro_users(
    project_dir: Path, project: Mapping[str, Any], macro: str, mode: str, dbt_error: str
) -> Iterator[NodeResult]:
    """Models, tests and analyses that call `macro`, directly or through other macros.

    dbt raises a dispatch error while parsing, before it knows which node it was rendering,
    so the users are found in the source files: calls of `macro`, then of each project macro
    whose body calls it, until nothing new turns up.
    """
    macro_paths = [project_dir / p for p in project.get("macro-paths", ["macros"])]
    node_paths = {
        "model": project.get("model-paths", ["models"]),
        "test": project.get("test-paths", ["tests"]),
        "analysis": project.get("analysis-paths", ["analyses"]),
    }
    definition = re.compile(r"{%-?\s*macro\s+(\w+)\s*\((.*?){%-?\s*endmacro", re.DOTALL)
    callers, frontier = {macro}, {macro}
    while frontier:
        called = re.compile(r"\b(?:\w+\.)?(" + "|".join(map(re.escape, frontier)) + r")\s*\(")
        frontier = set()
        for path in _sql_files(macro_paths):
            for name, body in definition.findall(path.read_text()):
                if name not in callers and called.search(body):
                    frontier.add(name)
        callers |= frontier
    called = re.compile(r"\b(?:\w+\.)?(" + "|".join(map(re.escape, callers)) + r")\s*\(")
    message = (
        f"calls macro `{macro}`, which has no BigQuery variant (`bigquery__{macro}` or "
        f"`default__{macro}`): dbt cannot compile it for BigQuery. dbt: "
        + " ".join(dbt_error.split())[-300:]
    )
    for resource_type, relative_dirs in node_paths.items():
        for path in _sql_files(project_dir / d for d in relative_dirs):
            lines = path.read_text().splitlines()
            hit = next((i for i, line in enumerate(lines) if called.search(line)), None)
            if hit is None:
                continue
            source_path = os.path.relpath(path, project_dir)
            yield NodeResult(
                unique_id=f"{resource_type}.{project['name']}.{path.stem}",
                resource_type=resource_type,
                name=path.stem,
                source_path=source_path,
                compiled_path=None,
                mode=mode,
                problems=(Problem("compile", message, path, hit + 1, None, lines[hit].strip()),),
            )


def _sql_files(directories: Iterable[Path]) -> Iterator[Path]:
    for directory in directories:
        if directory.is_dir():
            yield from sorted(directory.rglob("*.sql"))


def _tail(output: str, lines: int = 25) -> str:
    return "\n".join(output.strip().splitlines()[-lines:])
