"""`recflow review`: compare the pull request's dbt manifest with the base branch's.

The I/O edge of the review: reads the two manifests and dbt/review.yml, times the pure
`build_review`, writes review.md and review.json. Exit 0 whatever the flags say (they are
information for the reviewer); 2 when an input is missing or malformed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from recflow.review.findings import ReviewConfigError, load_config
from recflow.review.manifest_graph import ManifestError, load_manifest
from recflow.review.report import build_review, render_markdown, to_json

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MANIFEST = REPO_ROOT / "dbt" / "target" / "manifest.json"
DEFAULT_CONFIG = REPO_ROOT / "dbt" / "review.yml"
EXIT_BAD_INPUT = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `review` subcommand; its `handler` returns the exit code."""
    parser = subparsers.add_parser(
        "review",
        help="compare the dbt project with the base branch's and write a review report",
        description="Compare two dbt manifests (the pull request's and the base branch's) and "
        "write review.md (a pull-request comment) and review.json: changed models, full-build "
        "scans per relation, duplicated logic and DAG structure rules.",
    )
    base = parser.add_mutually_exclusive_group(required=True)
    base.add_argument("--base-manifest", type=Path, help="the base branch's manifest.json")
    base.add_argument(
        "--state", type=Path, help="a directory holding the base branch's manifest.json"
    )
    parser.add_argument(
        "--manifest",
        type=Path,
        default=DEFAULT_MANIFEST,
        help="the pull request's manifest.json, with compiled_code (default: dbt/target)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help="thresholds and ignores (default: dbt/review.yml)",
    )
    parser.add_argument("--out-dir", type=Path, default=Path(), help="where review.* go")
    parser.set_defaults(handler=run_review)


def run_review(args: argparse.Namespace) -> int:
    """Read the inputs, build the review, write review.md and review.json."""
    base_path = args.base_manifest or args.state / "manifest.json"
    try:
        base_manifest = load_manifest(base_path)
        head_manifest = load_manifest(args.manifest)
        config = load_config(args.config)
    except (ManifestError, ReviewConfigError) as error:
        print(f"recflow review: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    started = time.perf_counter()
    review = build_review(
        base_manifest,
        head_manifest,
        config,
        base_label=str(base_path),
        head_label=str(args.manifest),
    )
    seconds = time.perf_counter() - started
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "review.md").write_text(render_markdown(review, seconds))
    (args.out_dir / "review.json").write_text(json.dumps(to_json(review, seconds), indent=2) + "\n")
    print(
        f"recflow review: {len(review.flags)} flag(s), {len(review.changed_models)} changed "
        f"model(s), {seconds:.2f} s; wrote {args.out_dir / 'review.md'} and review.json"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run `review` without the rest of the `recflow` CLI (until it is wired in there)."""
    parser = argparse.ArgumentParser(prog="recflow")
    register(parser.add_subparsers(required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
