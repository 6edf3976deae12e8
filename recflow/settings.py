"""Where things live, read once from the environment so every command agrees."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """Paths and the dbt target of one invocation; see README, 'Configuration'."""

    data_dir: Path
    duckdb_path: Path
    dbt_project_dir: Path
    dbt_target: str
    dbt_target_path: Path
    dbt_vars: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_default_data_dir(self) -> bool:
        return self.data_dir == default_data_dir()

    @classmethod
    def from_env(
        cls, *, data_dir: Path | None = None, dbt_vars: Mapping[str, Any] | None = None
    ) -> Settings:
        env_data_dir = os.environ.get("RECFLOW_DATA_DIR")
        return cls(
            data_dir=(data_dir or Path(env_data_dir or default_data_dir())).resolve(),
            duckdb_path=Path(
                os.environ.get("RECFLOW_DUCKDB_PATH", REPO_ROOT / "data" / "warehouse.duckdb")
            ).resolve(),
            dbt_project_dir=REPO_ROOT / "dbt",
            dbt_target=os.environ.get("RECFLOW_DBT_TARGET", "local"),
            # Separate target paths let several builds (tests, a user's run) coexist.
            dbt_target_path=Path(
                os.environ.get("DBT_TARGET_PATH", REPO_ROOT / "dbt" / "target")
            ).resolve(),
            dbt_vars=dict(dbt_vars or {}),
        )

    def dbt_environment(self) -> dict[str, str]:
        """The process environment dbt runs with: paths made absolute, tracking off."""
        return {
            **os.environ,
            "DO_NOT_TRACK": "1",
            "DBT_PROFILES_DIR": os.environ.get("DBT_PROFILES_DIR", str(self.dbt_project_dir)),
            "RECFLOW_DATA_DIR": str(self.data_dir),
            "RECFLOW_DUCKDB_PATH": str(self.duckdb_path),
            "RECFLOW_DBT_TARGET": self.dbt_target,
            "DBT_TARGET_PATH": str(self.dbt_target_path),
            "DBT_LOG_PATH": str(self.dbt_target_path / "logs"),
        }


def default_data_dir() -> Path:
    return (REPO_ROOT / "data" / "sample").resolve()
