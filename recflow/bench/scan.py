"""The lower bound of a feature build: one aggregate scan of the raw events on the same engine.

A single query reads `events.parquet` once and groups it two ways (by user and by item, with
count, first and last event), which is the least any user/item feature build must do. DuckDB
runs with the `settings` of the dbt profile's selected DuckDB target (threads, memory_limit,
TimeZone, ...: whatever the profile sets, rendered by dbt's own profile renderer from the same
environment), so the build and the scan share one engine configuration. The profile's
`threads` is dbt's model concurrency, not DuckDB's, and so is not applied here.

Run as `python -m recflow.bench.scan --data-dir D --result-out F` (its own process); writes the
query's seconds and the rows it read to F.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb

from recflow.pipeline.settings import REPO_ROOT

log = logging.getLogger(__name__)

PROFILE_NAME = "recflow"

SCAN_SQL = """
    select
        user_id,
        item_id,
        count(*) as events,
        min(event_at) as first_event_at,
        max(event_at) as last_event_at
    from read_parquet(?)
    group by grouping sets ((user_id), (item_id))
"""


class ProfileError(ValueError):
    """The dbt profile's selected target cannot drive the scan."""


def duckdb_profile_settings(
    profiles_dir: Path, env: Mapping[str, str], *, target: str | None = None
) -> dict[str, Any]:
    """The selected target's DuckDB `settings`, rendered as dbt renders them from `env`."""
    from dbt.config.profile import read_profile
    from dbt.config.renderer import ProfileRenderer
    from dbt_common.context import set_invocation_context

    set_invocation_context(dict(env))
    raw = read_profile(str(profiles_dir))
    if PROFILE_NAME not in raw:
        raise ProfileError(f"{profiles_dir}/profiles.yml has no profile '{PROFILE_NAME}'")
    renderer = ProfileRenderer({})
    name = target or renderer.render_value(raw[PROFILE_NAME].get("target", "default"))
    outputs = raw[PROFILE_NAME].get("outputs", {})
    if name not in outputs:
        raise ProfileError(f"{profiles_dir}/profiles.yml has no target '{name}'")
    output = renderer.render_data(outputs[name])
    if output.get("type") != "duckdb":
        raise ProfileError(
            f"target '{name}' in {profiles_dir}/profiles.yml is {output.get('type')!r}: the "
            "benchmark runs on DuckDB; set RECFLOW_DBT_TARGET=local"
        )
    return dict(output.get("settings") or {})


def scan_events(events_file: Path, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Run the one-scan aggregate; its seconds exclude connecting and importing."""
    with duckdb.connect(":memory:") as con:
        # As dbt-duckdb applies them: one SET per setting on the connection.
        for key, value in settings.items():
            con.execute(f"set {key} = '{str(value).replace(chr(39), chr(39) * 2)}'")
        # Warm up outside the timing: the file's footer (dbt's on-run-start hook reads it before
        # the build too) and the one-off Arrow result set-up.
        con.sql(
            "describe select * from read_parquet(?)", params=[str(events_file)]
        ).to_arrow_table()
        started = time.perf_counter()
        result = con.sql(SCAN_SQL, params=[str(events_file)]).to_arrow_table()
        seconds = time.perf_counter() - started
        (events,) = con.execute(
            "select count(*) from read_parquet(?)", [str(events_file)]
        ).fetchone()
    return {
        "query_seconds": round(seconds, 3),
        "events": events,
        "groups": result.num_rows,
        "duckdb_settings": {k: str(v) for k, v in settings.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recflow.bench.scan", description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--result-out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    profiles_dir = Path(os.environ.get("DBT_PROFILES_DIR", REPO_ROOT / "dbt"))
    settings = duckdb_profile_settings(profiles_dir, os.environ)
    result = scan_events(args.data_dir / "events.parquet", settings)
    log.info("one scan of %d events: %.2f s", result["events"], result["query_seconds"])
    args.result_out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
