"""What the tests' HTTP stand-ins (BigQuery, Vertex AI, GitHub) share: a threaded server on
127.0.0.1 at a free port, stopped when the context exits; the request a client sent; a handler
that answers JSON; recorded response bodies with placeholders. Importable from every test folder
because pytest puts tests/ (where the root conftest.py lives) on sys.path."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

STOP_TIMEOUT_S = 5.0
# What the Google APIs answer for a path they do not serve.
NO_SUCH_ROUTE = {"error": {"code": 404, "message": "no such route"}}

# status, JSON body (None: no body), extra response headers
Reply = tuple[int, Any, Mapping[str, str]]


@dataclass(frozen=True)
class SentRequest:
    """One HTTP request a client sent to a stand-in."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def matches(self, method: str, path_pattern: str) -> bool:
        """Whether this request has `method` and a path matching `path_pattern` (a regex)."""
        return self.method == method and re.fullmatch(path_pattern, self.path) is not None


def dispatch(
    routes: Sequence[tuple[str, str, Callable[..., Any]]], request: SentRequest
) -> Any | None:
    """Call the first route whose method and path pattern (a regex) match `request`, with the
    pattern's named groups as keyword arguments; None when no route matches."""
    for method, pattern, handler in routes:
        match = re.fullmatch(pattern, request.path)
        if match and method == request.method:
            return handler(request, **match.groupdict())
    return None


def rfc3339_now() -> str:
    """The current UTC time as Google APIs write timestamps."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def json_handler(
    respond: Callable[[SentRequest], Reply], *, unquote_path: bool = False
) -> type[BaseHTTPRequestHandler]:
    """A request handler that passes every request to `respond` and writes its JSON reply."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("content-length") or 0)
            request = SentRequest(
                method=self.command,
                path=unquote(parts.path) if unquote_path else parts.path,
                query=parse_qs(parts.query, keep_blank_values=True),
                headers={name.lower(): value for name, value in self.headers.items()},
                body=self.rfile.read(length),
            )
            status, body, headers = respond(request)
            payload = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve  # noqa: N815 - stdlib names

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests assert on the requests the stand-in recorded."""

    return Handler


@contextmanager
def serve_http(handler: type[BaseHTTPRequestHandler], *, name: str) -> Iterator[str]:
    """Serve `handler` in a daemon thread; yields the base URL (http://127.0.0.1:PORT)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name=name, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(STOP_TIMEOUT_S)


def fill_recording(path: Path, values: Mapping[str, Any]) -> Any:
    """A recorded JSON body with its `$name` placeholders filled in (a whole-string placeholder
    may be replaced by any JSON value, e.g. a job's configuration)."""
    return _fill(json.loads(path.read_text()), values)


def _fill(node: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(node, dict):
        return {key: _fill(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_fill(value, values) for value in node]
    if isinstance(node, str):
        if node.startswith("$") and node[1:] in values:
            return values[node[1:]]
        return Template(node).safe_substitute({k: str(v) for k, v in values.items()})
    return node
