"""`make docs`, as CI runs it: on a clone without a warehouse it builds the tiny sample's empty
schema and writes dbt's static docs site, one self-contained page with every model's lineage
and column docs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, SUBPROCESS_TIMEOUT_S

pytestmark = pytest.mark.dbt


def test_make_docs_writes_one_page_with_every_model_and_its_column_docs(tmp_path: Path) -> None:
    docs_dir = tmp_path / "dbt-docs"
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("RECFLOW_", "DBT_"))
    }
    result = subprocess.run(
        [
            "make",
            "--no-print-directory",
            # The test runs inside an installed environment: do not reinstall it.
            "-o",
            "install",
            "docs",
            f"BIN={Path(sys.executable).parent}",
            f"DOCS_DIR={docs_dir}",
            f"RECFLOW_DUCKDB_PATH={tmp_path / 'no-warehouse.duckdb'}",
        ],
        cwd=REPO_ROOT,
        env={**env, "DO_NOT_TRACK": "1"},
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "building the tiny sample's schema" in result.stdout

    page = (docs_dir / "index.html").read_text()
    manifest = json.loads((docs_dir / "target" / "manifest.json").read_text())
    models = [n for n in manifest["nodes"].values() if n["resource_type"] == "model"]
    # The static page embeds the manifest and the catalog: every model and a column's doc.
    for name in ("training_examples", "int_candidates_featurized", "stg_app__events"):
        assert f'"name": "{name}"' in page or f'"name":"{name}"' in page, name
    assert len(models) >= 30
    catalog = json.loads((docs_dir / "target" / "catalog.json").read_text())
    assert "model.recflow.training_examples" in catalog["nodes"]
