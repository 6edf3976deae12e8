"""SIGINT and SIGTERM as an exception, for commands that must clean up after themselves when a
workflow is cancelled or times out (GitHub Actions sends SIGINT, then SIGTERM, then SIGKILL)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM, as an exception (a KeyboardInterrupt, so no broad `except Exception`
    on the way catches it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def interrupts_raise() -> Iterator[None]:
    """Within: the first SIGINT or SIGTERM raises Interrupted, later ones are ignored (GitHub
    Actions sends SIGINT, then SIGTERM 7.5 s later, while the caller cleans up). Previous handlers
    are restored on exit. Signal handlers exist only in the main thread; elsewhere, nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if not received:
            received.append(signum)
            raise Interrupted(signum)

    previous = {number: signal.signal(number, handler) for number in INTERRUPTS}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
