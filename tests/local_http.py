"""One way to run the tests' HTTP stand-ins (BigQuery, Vertex AI, GitHub): a threaded server on
127.0.0.1 at a free port, stopped when the context exits. Importable from every test folder
because pytest puts tests/ (where the root conftest.py lives) on sys.path."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STOP_TIMEOUT_S = 5.0


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
