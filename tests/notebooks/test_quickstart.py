"""The quickstart notebook a data scientist opens first: its paired .ipynb says what the percent
script says, it calls the pipeline's own functions rather than copies, and it runs from top to
bottom on the tiny sample warehouse with a kernel of this interpreter, printing the metrics table
and drawing both figures."""

from __future__ import annotations

import ast
import os

import jupytext
import nbformat
import pytest
from conftest import REPO_ROOT, TinyWarehouse
from nbclient import NotebookClient

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
SCRIPT = NOTEBOOK_DIR / "quickstart.py"
PAIRED = NOTEBOOK_DIR / "quickstart.ipynb"
PIPELINE_FUNCTIONS = {"load_feature_spec", "load_tables", "train", "evaluate_model", "recommend"}
EXECUTION_TIMEOUT_S = 600


def _cells(notebook: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def _code(notebook: nbformat.NotebookNode) -> str:
    return "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")


def _outputs(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [output for cell in notebook.cells for output in cell.get("outputs", [])]


def _text(output: nbformat.NotebookNode) -> str:
    if output.output_type == "stream":
        return output.text
    return str(output.get("data", {}).get("text/plain", ""))


def test_the_ipynb_holds_the_cells_of_the_percent_script_and_no_outputs():
    script = jupytext.read(SCRIPT)
    paired = nbformat.read(PAIRED, as_version=4)
    assert _cells(paired) == _cells(script), (
        "notebooks/quickstart.ipynb and quickstart.py differ: run "
        "`jupytext --sync notebooks/quickstart.py`"
    )
    assert not _outputs(paired), "commit quickstart.ipynb without outputs (they are regenerated)"


def test_the_notebook_calls_the_pipeline_functions_and_defines_none_of_its_own():
    tree = ast.parse(_code(jupytext.read(SCRIPT)))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "trainer.pipeline"
        for alias in node.names
    }
    assert imported >= PIPELINE_FUNCTIONS
    called = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert called >= PIPELINE_FUNCTIONS
    defined = [node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)]
    assert not defined, f"the notebook defines {defined}: call the pipeline's functions instead"


@pytest.mark.dbt
def test_the_notebook_runs_on_the_tiny_warehouse(
    tiny_warehouse: TinyWarehouse, monkeypatch: pytest.MonkeyPatch
):
    # The kernel inherits this environment: the tiny build's warehouse and manifest, and this
    # checkout first on the path, as `make pytest` and a worktree run it.
    for name, value in tiny_warehouse.isolation.env_vars().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = jupytext.read(SCRIPT)
    client = NotebookClient(
        notebook,
        timeout=EXECUTION_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    client.execute()

    outputs = _outputs(notebook)
    errors = [output for output in outputs if output.output_type == "error"]
    assert not errors, errors
    text = "\n".join(_text(output) for output in outputs)
    assert str(tiny_warehouse.duckdb_path) in text
    # The metrics table: the model and the baselines per segment, with intervals.
    for expected in ("ndcg@10", "warm_users", "all_users", "model", "ndcg@10 95%"):
        assert expected in text
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(images) == 2, "expected the ndcg@10 figure and the feature importance figure"
    assert "item_id" in _text(notebook.cells[-1].outputs[-1])
