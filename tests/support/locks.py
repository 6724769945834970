"""A lock between processes: two pytest processes of one run (scripts/test.sh runs two tiers side by side), or
two sessions on one machine, that want one thing of the machine's at once."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created, readable and writable by anyone: tests of other users
    take it too) for the ``with`` block; wait for it as long as another process holds it."""
    with open(path, "a") as f:
        with contextlib.suppress(PermissionError):  # (a file another user made)
            os.chmod(path, 0o666)
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
