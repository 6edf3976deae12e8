"""SIGINT and SIGTERM recorded rather than raised, for commands that must clean up after
themselves when a workflow is cancelled or times out (GitHub Actions sends SIGINT, then SIGTERM
7.5 s later, then SIGKILL).

The handler only notes the signal: an exception raised wherever the main thread happens to be
(inside an HTTP client, holding a connection pool's lock) can leave that client unusable for the
very request that cleans up. The caller checks `Interrupt.signum` between steps of its own.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class Interrupt:
    """The first interrupting signal received, if any (later ones are ignored)."""

    signum: int | None = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""


@contextmanager
def interrupts_recorded() -> Iterator[Interrupt]:
    """Within: SIGINT and SIGTERM are recorded on the yielded Interrupt instead of stopping the
    process; the previous handlers are restored on exit. Signal handlers exist only in the main
    thread; elsewhere nothing is installed and nothing is recorded."""
    interrupt = Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield interrupt
        return

    def record(signum: int, frame: object) -> None:
        if interrupt.signum is None:
            interrupt.signum = signum

    previous = {number: signal.signal(number, record) for number in INTERRUPTS}
    try:
        yield interrupt
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
