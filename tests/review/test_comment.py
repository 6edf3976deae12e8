"""`recflow comment` against a local http.server stand-in of GitHub's issue-comments REST API.

The stand-in keeps comments per issue, pages the list with a Link header as GitHub does
(`per_page`, `page`), records every request, and can refuse writes with GitHub's 403 body (a
fork's read-only token).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from local_http import serve_http

from recflow.cli import main as recflow_main
from recflow.review.comment import DEFAULT_MARKER, MAX_BODY_CHARS, sticky_body

REPOSITORY = "octo/recflow"
PR = 7
TOKEN = "ghs_standin"  # a fake token: the stand-in accepts only this one


@dataclass
class GitHubStandin:
    """Issue comments of one repository, and the requests the client sent."""

    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list)
    refuse_writes: bool = False
    page_size_cap: int = 100
    url: str = ""
    _next_id: int = 1000

    def add(self, issue: int, body: str) -> int:
        self._next_id += 1
        comment = {
            "id": self._next_id,
            "body": body,
            "html_url": f"https://github.com/{REPOSITORY}/pull/{issue}#issuecomment-{self._next_id}",
        }
        self.comments.setdefault(issue, []).append(comment)
        return self._next_id

    def writes(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path, _ in self.requests if method != "GET"]


def _handler(state: GitHubStandin) -> type[BaseHTTPRequestHandler]:
    prefix = f"/repos/{REPOSITORY}/issues"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            state.requests.append((self.command, self.path, body))
            if self.headers.get("authorization") != f"Bearer {TOKEN}":
                self._reply(HTTPStatus.UNAUTHORIZED, {"message": "Bad credentials"})
                return
            segments = parts.path.removeprefix(prefix).strip("/").split("/")
            if self.command != "GET" and state.refuse_writes:
                message = "Resource not accessible by integration"
                self._reply(HTTPStatus.FORBIDDEN, {"message": message, "status": "403"})
            elif segments[0].isdigit() and segments[1:] == ["comments"]:
                self._issue_comments(int(segments[0]), parse_qs(parts.query), body)
            elif segments[0] == "comments" and self.command == "PATCH":
                self._update(int(segments[1]), body)
            else:
                self._reply(HTTPStatus.NOT_FOUND, {"message": "Not Found"})

        def _issue_comments(self, issue: int, query: dict[str, list[str]], body: Any) -> None:
            if issue != PR:
                self._reply(HTTPStatus.NOT_FOUND, {"message": "Not Found"})
            elif self.command == "POST":
                comment_id = state.add(issue, body["body"])
                self._reply(HTTPStatus.CREATED, self._comment(comment_id))
            else:
                per_page = min(int(query.get("per_page", ["30"])[0]), state.page_size_cap)
                page = int(query.get("page", ["1"])[0])
                comments = state.comments.get(issue, [])
                chunk = comments[(page - 1) * per_page : page * per_page]
                headers = {}
                if page * per_page < len(comments):
                    base = f"{state.url}{prefix}/{issue}/comments?per_page={per_page}"
                    headers["Link"] = f'<{base}&page={page + 1}>; rel="next"'
                self._reply(HTTPStatus.OK, chunk, headers)

        def _update(self, comment_id: int, body: Any) -> None:
            for comments in state.comments.values():
                for comment in comments:
                    if comment["id"] == comment_id:
                        comment["body"] = body["body"]
                        self._reply(HTTPStatus.OK, comment)
                        return
            self._reply(HTTPStatus.NOT_FOUND, {"message": "Not Found"})

        def _comment(self, comment_id: int) -> dict[str, Any]:
            return next(c for cs in state.comments.values() for c in cs if c["id"] == comment_id)

        do_GET = do_POST = do_PATCH = _serve  # noqa: N815 - http.server's naming

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests assert on `requests`."""

    return Handler


@pytest.fixture
def github() -> Iterator[GitHubStandin]:
    state = GitHubStandin()
    with serve_http(_handler(state), name="github-standin") as url:
        state.url = url
        yield state


def _event(path: Path, fork: bool) -> Path:
    head_repo = {"full_name": "someone/recflow" if fork else REPOSITORY, "fork": fork}
    event = {
        "number": PR,
        "pull_request": {
            "number": PR,
            "head": {"repo": head_repo},
            "base": {"repo": {"full_name": REPOSITORY, "fork": False}},
        },
    }
    path.write_text(json.dumps(event))
    return path


@pytest.fixture
def workflow_env(
    github: GitHubStandin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Path]:
    """The variables GitHub Actions sets for a pull_request job from the same repository."""
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_REPOSITORY", REPOSITORY)
    monkeypatch.setenv("GITHUB_API_URL", github.url)
    event = _event(tmp_path / "event.json", fork=False)
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(event))
    summary = tmp_path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    report = tmp_path / "review.md"
    return {"event": event, "summary": summary, "report": report}


def _comment(report: Path, *extra: str) -> int:
    return recflow_main(["comment", "--body-file", str(report), *extra])


def test_first_run_creates_second_run_updates_the_same_comment(
    github: GitHubStandin, workflow_env: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    github.add(PR, "LGTM")
    report = workflow_env["report"]
    report.write_text("## dbt review\n\n1 flag(s)\n")

    assert _comment(report) == 0
    report.write_text("## dbt review\n\n0 flag(s)\n")
    assert _comment(report) == 0

    (mine,) = [c for c in github.comments[PR] if DEFAULT_MARKER in c["body"]]
    assert mine["body"] == f"{DEFAULT_MARKER}\n## dbt review\n\n0 flag(s)\n"
    assert len(github.comments[PR]) == 2  # the reviewer's comment and the sticky one
    issue = f"/repos/{REPOSITORY}/issues"
    assert github.writes() == [
        ("POST", f"{issue}/{PR}/comments"),
        ("PATCH", f"{issue}/comments/{mine['id']}"),
    ]
    output = capsys.readouterr().out
    assert "created comment" in output
    assert f"updated comment {mine['id']}" in output
    assert not workflow_env["summary"].exists()


def test_finds_the_marked_comment_on_a_later_page(
    github: GitHubStandin, workflow_env: dict[str, Path]
) -> None:
    github.page_size_cap = 2  # as if the pull request had hundreds of comments
    for index in range(5):
        github.add(PR, f"comment {index}")
    marked = github.add(PR, f"{DEFAULT_MARKER}\nold report")
    github.add(PR, "after the report")
    workflow_env["report"].write_text("new report\n")

    assert _comment(workflow_env["report"]) == 0

    lists = [path for method, path, _ in github.requests if method == "GET"]
    assert len(lists) == 3  # pages 1-3 of 2; the marked comment is the 6th
    assert "page=3" in lists[-1]
    assert github.writes() == [("PATCH", f"/repos/{REPOSITORY}/issues/comments/{marked}")]
    assert github.comments[PR][5]["body"] == f"{DEFAULT_MARKER}\nnew report\n"


def test_fork_read_only_token_exits_0_and_writes_the_job_summary(
    github: GitHubStandin,
    workflow_env: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    github.refuse_writes = True
    _event(workflow_env["event"], fork=True)
    workflow_env["report"].write_text("## dbt review\n")

    assert _comment(workflow_env["report"]) == 0

    assert github.writes() == [("POST", f"/repos/{REPOSITORY}/issues/{PR}/comments")]
    error = capsys.readouterr().err
    assert "Resource not accessible by integration" in error
    assert "fork" in error
    assert "the report is in the job summary" in error
    assert workflow_env["summary"].read_text() == "## dbt review\n"


def test_403_on_the_same_repository_is_a_failure(
    github: GitHubStandin, workflow_env: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    github.refuse_writes = True
    workflow_env["report"].write_text("## dbt review\n")

    assert _comment(workflow_env["report"]) == 1

    assert "pull-requests: write" in capsys.readouterr().err
    assert not workflow_env["summary"].exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param("no_token", "GITHUB_TOKEN is not set", id="no-token"),
        pytest.param("wrong_pr", "has no octo/recflow pull request #8", id="unknown-pr-404"),
        pytest.param("no_number", "no pull request number", id="no-event-no-pr"),
        pytest.param("no_body", "cannot read --body-file", id="missing-body-file"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(
    github: GitHubStandin,
    workflow_env: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    change: str,
    message: str,
) -> None:
    report = workflow_env["report"]
    report.write_text("## dbt review\n")
    extra: list[str] = []
    if change == "no_token":
        monkeypatch.delenv("GITHUB_TOKEN")
    elif change == "wrong_pr":
        extra = ["--pr", str(PR + 1)]
    elif change == "no_number":
        monkeypatch.delenv("GITHUB_EVENT_PATH")
    elif change == "no_body":
        report = report.with_name("missing.md")

    assert _comment(report, *extra) == 2

    assert message in capsys.readouterr().err
    assert not github.writes()


def test_sticky_body_is_cut_to_githubs_limit() -> None:
    body = sticky_body("x" * (MAX_BODY_CHARS + 10), DEFAULT_MARKER)
    assert len(body) == MAX_BODY_CHARS
    assert body.startswith(DEFAULT_MARKER + "\n")
    assert "full report is in the job summary" in body
    assert sticky_body("short", DEFAULT_MARKER) == f"{DEFAULT_MARKER}\nshort"
