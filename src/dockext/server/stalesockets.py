"""Backend sockets that nothing listens on any more, removed so that their backends can start again (R13).

A backend creates its socket in ``gs/<gskey>/`` on this host, a directory that outlives its container. When the
container dies without removing it (kill -9, the engine restarting), the file stays, and a backend that listens
like Node's http server (without removing an old file first) then fails with ``EADDRINUSE`` at every restart
the engine makes. In Docker Desktop ``/run/guest-services`` is fresh at each start of its VM; here the server
sweeps instead: a socket whose ``connect()`` is refused (``ECONNREFUSED``: a file, but nobody listening) for
:data:`GRACE` seconds in a row, the same file all along (inode and change time), is removed, and the
backend's next restart can listen.

A live socket accepts (the probe's connection is closed at once, which an HTTP server takes as a client that
left); one being set up refuses only between its ``bind`` and ``listen``, microseconds; one whose backend is
too busy to accept (``EAGAIN``) or that dockext may not open (``EACCES``) is left alone. A socket seen accepting
is probed again only every :data:`RECHECK` seconds. (A remote engine's sockets live in a tmpfs volume that is
fresh whenever its containers start, so they need none of this.)
"""

from __future__ import annotations

import os
import socket
import stat
import time
from collections.abc import Iterable
from pathlib import Path

__all__ = ["GRACE", "RECHECK", "StaleSockets"]

GRACE = 2.0  # seconds a socket must refuse connections before it is removed
RECHECK = 10.0  # seconds between two probes of a socket that was accepting


class StaleSockets:
    def __init__(self, grace: float = GRACE, recheck: float = RECHECK) -> None:
        self.grace = grace
        self.recheck = recheck
        self._refusing: dict[Path, tuple[tuple[int, int], float]] = {}  # path -> (identity, refusing since)
        self._accepting: dict[Path, tuple[tuple[int, int], float]] = {}  # path -> (identity, last seen accepting)

    def sweep(self, paths: Iterable[Path], now: float | None = None) -> list[Path]:
        """Probe ``paths`` (the installed backends' sockets); remove those refusing for the grace period."""
        now = time.monotonic() if now is None else now
        removed: list[Path] = []
        wanted = set(paths)
        for path in wanted:
            try:
                st = os.lstat(path)
            except OSError:
                self._forget(path)
                continue
            if not stat.S_ISSOCK(st.st_mode):
                self._forget(path)
                continue
            ident = _identity(st)
            seen = self._accepting.get(path)
            if seen is not None and seen[0] == ident and now - seen[1] < self.recheck:
                continue
            if not _refuses(path):
                self._refusing.pop(path, None)
                self._accepting[path] = (ident, now)
                continue
            self._accepting.pop(path, None)
            known, since = self._refusing.get(path, ((-1, -1), now))
            if known != ident:
                self._refusing[path] = (ident, now)
            elif now - since >= self.grace:
                self._refusing.pop(path, None)
                try:
                    if _identity(os.lstat(path)) == ident:  # still that file, not a new backend's socket
                        os.unlink(path)
                        removed.append(path)
                except OSError:
                    pass
        for path in [p for p in (*self._refusing, *self._accepting) if p not in wanted]:
            self._forget(path)
        return removed

    def _forget(self, path: Path) -> None:
        self._refusing.pop(path, None)
        self._accepting.pop(path, None)


def _identity(st: os.stat_result) -> tuple[int, int]:
    """Which file this is: the inode number alone can be reused by the next file made there."""
    return st.st_ino, st.st_ctime_ns


def _refuses(path: Path) -> bool:
    """True only when nothing listens on the socket file (ECONNREFUSED)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.connect(str(path))
    except ConnectionRefusedError:
        return True
    except OSError:  # EAGAIN: a full accept queue, so alive; EACCES and the rest: not ours to judge
        return False
    finally:
        s.close()
    return False
