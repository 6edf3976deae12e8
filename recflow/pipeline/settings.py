"""Where things live, read once from the environment so every command agrees, and the dbt var
overrides of a run, checked before anything is written."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


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


class SettingsError(ValueError):
    """A setting the user gave is invalid; the message names it and what is allowed."""


# Overrides checked here, before any dbt call: dbt would accept these values and build empty or
# wrong tables. Every other var is passed through for dbt's own checks.
POSITIVE_INT_VARS = (
    "recommendations_per_user",
    "label_window_days",
    "cutoff_interval_days",
    "min_history_days",
    "candidates_per_source",
    "train_cutoff_count",
    "test_cutoff_count",
    "validation_cutoff_count",
    "train_users_per_cutoff",
    "labelled_users_per_cutoff",
)
PERCENT_VARS = ("train_negative_sample_percent",)


def project_vars(dbt_project_dir: Path = REPO_ROOT / "dbt") -> dict[str, Any]:
    """The `vars:` of dbt_project.yml with their defaults: the only keys an override may set."""
    project = yaml.safe_load((dbt_project_dir / "dbt_project.yml").read_text())
    return dict(project.get("vars") or {})


def parse_var_assignment(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` of one `--var`, the value read as YAML the way dbt reads `--vars`."""
    key, separator, value = text.partition("=")
    if not separator or not key.strip():
        raise SettingsError(f"--var expects KEY=VALUE, got {text!r}")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as error:
        raise SettingsError(
            f"--var {key.strip()}: {value!r} is not valid YAML ({_yaml_problem(error)})"
        ) from None
    return key.strip(), _json_ready(parsed)


def read_vars_file(path: Path) -> dict[str, Any]:
    """The overrides of a `--vars-file`: a YAML mapping of var names to values."""
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as error:
        raise SettingsError(f"--vars-file {path}: cannot read it ({error.strerror})") from None
    except yaml.YAMLError as error:
        problem = _yaml_problem(error)
        raise SettingsError(f"--vars-file {path}: not valid YAML ({problem})") from None
    if not isinstance(loaded, dict) or not all(isinstance(key, str) for key in loaded):
        raise SettingsError(
            f"--vars-file {path}: must hold a YAML mapping of var names to values, "
            f"got {type(loaded).__name__}"
        )
    return {key: _json_ready(value) for key, value in loaded.items()}


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's multi-line message as one line: the problem and where it is."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        return f"{error.problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(error).split())


def _json_ready(value: Any) -> Any:
    """YAML dates and times as ISO strings: dbt receives the overrides as JSON, and
    run_metadata.json records them."""
    return json.loads(json.dumps(value, default=str))


def validate_dbt_vars(
    overrides: Mapping[str, Any],
    defaults: Mapping[str, Any],
    *,
    origins: Mapping[str, str] | None = None,
) -> None:
    """Refuse unknown keys and out-of-range values. `origins` says where each key was set (e.g.
    "--vars-file f.yml: min_history_days"), so the message names the flag to fix."""
    origins = origins or {}

    def where(key: str) -> str:
        return origins.get(key, f"--var {key}")

    for key in overrides:
        if key not in defaults:
            raise SettingsError(
                f"{where(key)} is not a var of dbt/dbt_project.yml; known vars: "
                f"{', '.join(sorted(defaults))}"
            )
    for key, value in overrides.items():
        if key in POSITIVE_INT_VARS:
            allowed = _int_in_range(value, 1, None)
        elif key in PERCENT_VARS:
            allowed = _int_in_range(value, 1, 100)
        else:
            continue
        if allowed:
            raise SettingsError(f"{where(key)} {allowed}, got {value!r}")
    effective = {**defaults, **overrides}
    window, interval = effective.get("label_window_days"), effective.get("cutoff_interval_days")
    # dbt refuses this too, but only once it compiles the spine, after other models were built.
    if window is not None and interval is not None and window > interval:
        raise SettingsError(
            f"label_window_days ({window}) must not exceed cutoff_interval_days ({interval}): "
            "the test labels would reach into the next cutoff"
        )


def _int_in_range(value: Any, low: int, high: int | None) -> str | None:
    """None when `value` is an integer in [low, high], else what is allowed."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if is_int and value >= low and (high is None or value <= high):
        return None
    return f"must be an integer >= {low}" if high is None else f"must be an integer {low}..{high}"


@dataclass(frozen=True)
class RunSettings:
    """The K and dbt var overrides of one `recflow run` or `recflow ct`, checked together
    before anything runs: `dbt_vars` goes to every dbt call and into run_metadata.json."""

    top_k: int
    dbt_vars: Mapping[str, Any]

    @classmethod
    def from_arguments(
        cls,
        *,
        top_k: int | None,
        var_assignments: Sequence[str] = (),
        vars_file: Path | None = None,
        holdout_days: int | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> RunSettings:
        """Merge the vars file, then `--holdout-days`, then each `--var` (the later wins), and
        check the result. K is `--top-k`, else a `recommendations_per_user` override, else the
        project's default; dbt always receives it as `recommendations_per_user`."""
        defaults = project_vars() if defaults is None else defaults
        overrides: dict[str, Any] = {}
        origins: dict[str, str] = {}
        if vars_file is not None:
            overrides.update(read_vars_file(vars_file))
            origins.update({key: f"--vars-file {vars_file}: {key}" for key in overrides})
        if holdout_days is not None:
            if _int_in_range(holdout_days, 1, None):
                raise SettingsError(f"--holdout-days must be an integer >= 1, got {holdout_days}")
            for key in ("label_window_days", "cutoff_interval_days"):
                overrides[key], origins[key] = holdout_days, f"--holdout-days (sets {key})"
        for assignment in var_assignments:
            key, value = parse_var_assignment(assignment)
            overrides[key], origins[key] = value, f"--var {key}"
        validate_dbt_vars(overrides, defaults, origins=origins)
        k = cls._resolve_top_k(top_k, overrides, defaults)
        per_source = overrides.get("candidates_per_source", defaults.get("candidates_per_source"))
        if per_source is not None and per_source < k:
            raise SettingsError(
                f"candidates_per_source ({per_source}) is below --top-k ({k}): each candidate "
                f"source must offer at least K items; set --var candidates_per_source={k} or "
                "lower --top-k"
            )
        return cls(top_k=k, dbt_vars={**overrides, "recommendations_per_user": k})

    @staticmethod
    def _resolve_top_k(
        top_k: int | None, overrides: Mapping[str, Any], defaults: Mapping[str, Any]
    ) -> int:
        if top_k is None:
            return int(
                overrides.get("recommendations_per_user", defaults["recommendations_per_user"])
            )
        if _int_in_range(top_k, 1, None):
            raise SettingsError(f"--top-k must be an integer >= 1, got {top_k}")
        if overrides.get("recommendations_per_user", top_k) != top_k:
            raise SettingsError(
                f"--top-k ({top_k}) and --var recommendations_per_user "
                f"({overrides['recommendations_per_user']}) disagree: set K with --top-k only"
            )
        return top_k

    def describe(self) -> str:
        """One line for the start of a run: the overrides dbt and the trainer's metadata get."""
        shown = ", ".join(f"{key}={json.dumps(value)}" for key, value in self.dbt_vars.items())
        return f"dbt var overrides: {shown}"


def add_run_setting_arguments(parser: argparse.ArgumentParser) -> None:
    """`--top-k`, `--var` and `--vars-file`, shared by `recflow run` and `recflow ct`."""
    parser.add_argument(
        "--top-k",
        type=int,
        default=None,
        help="recommendations per user: the trainer's --top-k and the dbt var "
        "recommendations_per_user (default: that var, 20)",
    )
    parser.add_argument(
        "--var",
        dest="var_assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one dbt var of dbt/dbt_project.yml, the value read as YAML (repeatable; "
        "wins over --vars-file), e.g. --var exclude_seen_items=false",
    )
    parser.add_argument(
        "--vars-file",
        type=Path,
        default=None,
        metavar="FILE.yml",
        help="a YAML mapping of dbt var overrides",
    )


def run_settings_from_args(args: argparse.Namespace) -> RunSettings:
    """The parsed `add_run_setting_arguments` flags (and `--holdout-days` if present), checked."""
    return RunSettings.from_arguments(
        top_k=args.top_k,
        var_assignments=args.var_assignments,
        vars_file=args.vars_file,
        holdout_days=getattr(args, "holdout_days", None),
    )
