"""Named points in install, update and remove where a test can kill dockext as ``kill -9`` would.

``DOCKEXT_CRASH_AT=<operation>:<step>`` (for instance ``update:swapped``) makes the process SIGKILL itself
when it reaches that point: nothing runs after it, no ``finally``, no rollback, exactly like a power cut of
the process. The tests walk every point of every operation and check that the next dockext command finds a
consistent state (reference security-reliability.md B2, R1-R3). Unset, this costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

__all__ = ["ENV", "POINTS", "reached"]

ENV = "DOCKEXT_CRASH_AT"

#: every point, in the order an operation passes them
POINTS: dict[str, tuple[str, ...]] = {
    "install": ("staged", "moved", "backend-started", "committed"),
    "update": ("staged", "old-stopped", "old-moved", "swapped", "new-started", "committed", "cleaned"),
    "rm": ("tombstoned", "backend-stopped", "deleted"),
}


def reached(point: str) -> None:
    if os.environ.get(ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
