"""What the offline BigQuery check found: per node, per mode, and the report a person reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """One reason a node would fail on BigQuery, located in a file when that is known."""

    check: str
    """`compile`, `grammar`, `cast-operator`, `function`, `types` or `physical-design`."""
    message: str
    path: Path | None = None
    """The file `line` counts in: the compiled SQL, or the source file for configs."""
    line: int | None = None
    column: int | None = None
    snippet: str = ""


@dataclass(frozen=True)
class NodeResult:
    """The outcome for one dbt node, compiled in one mode (`full_refresh` or `incremental`)."""

    unique_id: str
    resource_type: str
    name: str
    source_path: str
    """As dbt reports it: relative to the dbt project directory."""
    compiled_path: Path | None
    mode: str = "full_refresh"
    problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()
    """Checks that could not run on this node, and why; notes never fail the check."""

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class CheckResult:
    """Every node's result, plus failures dbt reported without naming a node."""

    project_dir: Path
    work_dir: Path
    nodes: tuple[NodeResult, ...]
    errors: tuple[str, ...] = ()
    unit_tests_not_compiled: tuple[str, ...] = ()
    manifest_path: Path | None = None
    """dbt's manifest of the BigQuery compile (full-refresh pass), when dbt got that far."""
    compile_seconds: float = 0.0
    check_seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.errors and all(node.passed for node in self.nodes)

    @property
    def failures(self) -> tuple[NodeResult, ...]:
        return tuple(node for node in self.nodes if not node.passed)

    def node(self, name: str, mode: str = "full_refresh") -> NodeResult:
        """The result of the node called `name` (a model, test or analysis name)."""
        for result in self.nodes:
            if result.name == name and result.mode == mode:
                return result
        raise KeyError(name)


def format_report(result: CheckResult) -> str:
    """A short human report: a summary line, then each failure with file, line and snippet."""
    checked = len({node.unique_id for node in result.nodes})
    verdict = "passed" if result.passed else "FAILED"
    lines = [
        f"BigQuery check {verdict}: {checked} nodes compiled and parsed, "
        f"{len(result.failures)} failing, {len(result.errors)} other errors "
        f"(dbt compile {result.compile_seconds:.1f} s, total {result.check_seconds:.1f} s)."
    ]
    if result.unit_tests_not_compiled:
        lines.append(
            f"Not compiled: {len(result.unit_tests_not_compiled)} unit tests (dbt builds their "
            "fixtures only in `dbt test`, from the warehouse); their models are checked."
        )
    for error in result.errors:
        lines.append("")
        lines.append(error)
    for node in result.failures:
        lines.append("")
        mode = " (incremental run)" if node.mode == "incremental" else ""
        lines.append(f"{node.resource_type} {node.name}{mode}: {node.source_path}")
        for problem in node.problems:
            where = ""
            if problem.path is not None:
                where = f"{problem.path}"
                if problem.line is not None:
                    where += f":{problem.line}"
                    if problem.column is not None:
                        where += f":{problem.column}"
                where += ": "
            lines.append(f"  [{problem.check}] {where}{problem.message}")
            if problem.snippet:
                lines.append(f"      {problem.snippet}")
    if not result.passed:
        lines.append("")
        lines.append(f"Compiled SQL and dbt's log: {result.work_dir}")
    return "\n".join(lines)
