"""`recflow comment`: create or update one sticky pull-request comment through GitHub's REST API.

The comment is found again by a hidden HTML marker on its first line, so every run of the
review on a pull request edits the same comment instead of adding one per push: list the
pull request's issue comments (all pages), PATCH the first one holding the marker, else POST a
new one.

Read from the environment as GitHub Actions sets it: GITHUB_TOKEN, GITHUB_REPOSITORY
(owner/name), GITHUB_API_URL (default https://api.github.com, a GitHub Enterprise Server
sets its own) and GITHUB_EVENT_PATH (the pull request's number, unless `--pr` gives it).

A pull request from a fork gets a read-only GITHUB_TOKEN, so the API answers 403 to the write.
That is not a failure of the pull request: the command appends the report to the job summary
(GITHUB_STEP_SUMMARY) and exits 0 with a note. Exit codes: 0 posted, updated or refused on a
fork; 2 bad input (no token, no repository or pull request number, a missing body file, 404);
1 any other API failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

DEFAULT_API_URL = "https://api.github.com"
DEFAULT_MARKER = "<!-- recflow-review -->"
# GitHub refuses a comment body longer than this (422 "body is too long").
MAX_BODY_CHARS = 65536
TIMEOUT_S = 30
EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


class CommentError(Exception):
    """The comment cannot be written; the message says why and what to do."""

    exit_code = EXIT_FAILED


class CommentInputError(CommentError):
    exit_code = EXIT_BAD_INPUT


class ForkTokenError(CommentError):
    """403 on a pull request from a fork: the token is read-only by GitHub's design."""

    exit_code = 0


@dataclass(frozen=True)
class CommentTarget:
    """Where the comment goes and with which token."""

    api_url: str
    repository: str  # owner/name
    pull_request: int
    token: str
    from_fork: bool  # the event says the head repository is not the base repository

    @classmethod
    def from_env(cls, pr: int | None, environ: Mapping[str, str] | None = None) -> CommentTarget:
        env = os.environ if environ is None else environ
        token = env.get("GITHUB_TOKEN", "")
        if not token:
            raise CommentInputError(
                "GITHUB_TOKEN is not set: in a workflow pass `env: GITHUB_TOKEN: "
                "${{ github.token }}` (with `permissions: pull-requests: write`); locally export "
                "a token that may comment on the repository"
            )
        repository = env.get("GITHUB_REPOSITORY", "")
        if repository.count("/") != 1:
            raise CommentInputError(
                f"GITHUB_REPOSITORY={repository!r}: set it to owner/name (GitHub Actions does)"
            )
        event = _read_event(env.get("GITHUB_EVENT_PATH"))
        number = pr if pr is not None else _event_number(event)
        if number is None:
            raise CommentInputError(
                "no pull request number: pass --pr N, or run on a pull_request event "
                "(GITHUB_EVENT_PATH)"
            )
        return cls(
            api_url=(env.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/"),
            repository=repository,
            pull_request=number,
            token=token,
            from_fork=_is_fork(event),
        )


def _read_event(path: str | None) -> Mapping[str, Any]:
    if not path:
        return {}
    try:
        event = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise CommentInputError(
            f"cannot read the event file GITHUB_EVENT_PATH={path}: {error}"
        ) from error
    return event if isinstance(event, Mapping) else {}


def _event_number(event: Mapping[str, Any]) -> int | None:
    for holder in (event.get("pull_request"), event.get("issue"), event):
        if isinstance(holder, Mapping) and isinstance(holder.get("number"), int):
            return int(holder["number"])
    return None


def _is_fork(event: Mapping[str, Any]) -> bool:
    pull = event.get("pull_request")
    if not isinstance(pull, Mapping):
        return False
    head = (pull.get("head") or {}).get("repo") or {}
    base = (pull.get("base") or {}).get("repo") or {}
    return bool(head.get("fork")) or head.get("full_name") != base.get("full_name")


@dataclass(frozen=True)
class Outcome:
    """What happened: "created", "updated" or "skipped" (a fork's read-only token)."""

    action: str
    comment_id: int | None
    url: str | None


def sticky_body(report: str, marker: str) -> str:
    """The marker line, then the report, cut to GitHub's limit with a note where it was cut."""
    body = f"{marker}\n{report}"
    if len(body) <= MAX_BODY_CHARS:
        return body
    note = "\n\n_… cut at GitHub's comment size limit: the full report is in the job summary._\n"
    return body[: MAX_BODY_CHARS - len(note)] + note


def upsert_comment(
    target: CommentTarget, body: str, marker: str, session: requests.Session | None = None
) -> Outcome:
    """PATCH the pull request's comment holding `marker`, else POST one (see the docstring)."""
    http = session or requests.Session()
    http.headers.update(
        {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {target.token}",
            "X-GitHub-Api-Version": "2022-11-28",
        }
    )
    issue = f"{target.api_url}/repos/{target.repository}/issues/{target.pull_request}"
    existing = _find_marked(http, f"{issue}/comments", marker, target)
    if existing is None:
        created = _send(http, "POST", f"{issue}/comments", body, target)
        return Outcome("created", created.get("id"), created.get("html_url"))
    url = f"{target.api_url}/repos/{target.repository}/issues/comments/{existing}"
    updated = _send(http, "PATCH", url, body, target)
    return Outcome("updated", updated.get("id"), updated.get("html_url"))


def _find_marked(
    http: requests.Session, url: str, marker: str, target: CommentTarget
) -> int | None:
    """Id of the first comment whose body holds `marker`, following the Link header's pages."""
    next_url: str | None = url
    params: dict[str, Any] | None = {"per_page": 100}
    while next_url:
        response = _request(http, "GET", next_url, target, params=params)
        for comment in response.json():
            if marker in (comment.get("body") or ""):
                return int(comment["id"])
        next_url = response.links.get("next", {}).get("url")
        params = None  # the next link carries them
    return None


def _send(
    http: requests.Session, method: str, url: str, body: str, target: CommentTarget
) -> dict[str, Any]:
    return dict(_request(http, method, url, target, json={"body": body}).json())


def _request(
    http: requests.Session, method: str, url: str, target: CommentTarget, **kwargs: Any
) -> requests.Response:
    try:
        response = http.request(method, url, timeout=TIMEOUT_S, **kwargs)
    except requests.RequestException as error:
        raise CommentError(f"cannot reach {target.api_url}: {error}") from error
    if response.ok:
        return response
    message = _github_message(response)
    where = f"{target.repository} pull request #{target.pull_request}"
    if response.status_code == 403 and target.from_fork:
        raise ForkTokenError(
            f"GitHub refused the comment on {where} ({message}): a pull request from a fork "
            "gets a read-only token"
        )
    if response.status_code in {401, 403}:
        raise CommentError(
            f"GitHub refused {method} {url} with {response.status_code} ({message}): the token "
            "needs `pull-requests: write` (or `issues: write`) on the repository"
        )
    if response.status_code == 404:
        raise CommentInputError(
            f"GitHub has no {where}, or the token cannot see it ({method} {url}: {message})"
        )
    raise CommentError(f"GitHub answered {method} {url} with {response.status_code}: {message}")


def _github_message(response: requests.Response) -> str:
    try:
        return str(response.json().get("message") or response.reason)
    except (ValueError, AttributeError):
        return str(response.reason)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `comment` subcommand; its `handler` returns the exit code."""
    parser = subparsers.add_parser(
        "comment",
        help="create or update the one sticky pull-request comment with a report",
        description="Post a Markdown file as the pull request's sticky comment: the comment "
        "holding the marker is updated, else one is created. Reads GITHUB_TOKEN, "
        "GITHUB_REPOSITORY, GITHUB_API_URL and GITHUB_EVENT_PATH. On a pull request from a "
        "fork (read-only token) the report goes to the job summary instead and the exit code "
        "is 0.",
    )
    parser.add_argument("--body-file", type=Path, required=True, help="e.g. review/review.md")
    parser.add_argument("--pr", type=int, help="pull request number (default: from the event)")
    parser.add_argument(
        "--marker",
        default=DEFAULT_MARKER,
        help=f"hidden line that identifies the comment (default: {DEFAULT_MARKER})",
    )
    parser.set_defaults(handler=run_comment)


def run_comment(args: argparse.Namespace) -> int:
    """Read the body and the environment, upsert the comment, say what happened."""
    try:
        report = args.body_file.read_text()
    except OSError as error:
        print(f"recflow comment: cannot read --body-file: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        target = CommentTarget.from_env(args.pr)
        outcome = upsert_comment(target, sticky_body(report, args.marker), args.marker)
    except ForkTokenError as error:
        summary = _append_to_job_summary(report)
        where = "in the job summary" if summary else "in the job's artifacts and log"
        print(f"recflow comment: {error}; the report is {where}.", file=sys.stderr)
        return error.exit_code
    except CommentError as error:
        print(f"recflow comment: {error}", file=sys.stderr)
        return error.exit_code
    print(f"recflow comment: {outcome.action} comment {outcome.comment_id} ({outcome.url})")
    return 0


def _append_to_job_summary(report: str) -> bool:
    """Append the report to GITHUB_STEP_SUMMARY; False outside GitHub Actions."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return False
    with Path(path).open("a") as summary:
        summary.write(report.rstrip("\n") + "\n")
    return True
