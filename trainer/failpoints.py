"""Named crash points for fault-injection tests.

`failpoint(name)` kills its own process with SIGKILL when $RECFLOW_FAILPOINT names that point,
and does nothing otherwise (one dictionary lookup). SIGKILL rather than an exception: no
`finally`, rollback or atexit handler runs, exactly as when the machine dies or the OOM killer
strikes, so a test proves what a rerun recovers from a crash at that point. The points are
listed here so a test cannot ask for one the code does not have.
"""

from __future__ import annotations

import os
import signal
import sys

VARIABLE = "RECFLOW_FAILPOINT"
POINTS = frozenset(
    {
        "trainer.trained",  # the model is trained, nothing is written yet
        "writeback.before_commit",  # the served table is replaced but not committed
        "promotion.after_registry_write",  # champion moved, served table not yet replaced
        "promotion.after_served_write",  # both written, the decision not yet recorded
    }
)


def failpoint(name: str) -> None:
    """SIGKILL this process when $RECFLOW_FAILPOINT is `name`; a no-op otherwise."""
    if name not in POINTS:
        raise ValueError(f"unknown failpoint {name!r}; known: {', '.join(sorted(POINTS))}")
    if os.environ.get(VARIABLE) == name:
        # The only trace a killed process can leave; the test reads it from stderr.
        sys.stderr.write(f"failpoint {name}: SIGKILL to process {os.getpid()}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
