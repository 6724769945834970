"""Connecting to a backend's socket by its path, never to what a link there names.

A backend makes its socket in its guest-services dir, which it can write: the file at the socket's path is the
backend's to choose. A symbolic link there would send dockext's connection to whatever it names on this host (the
engine's socket, another extension's backend) with dockext's rights. So the file is opened with ``O_PATH |
O_NOFOLLOW``, must be a socket, and is connected to through ``/proc/self/fd/N``: the very file checked, with no
moment in which the backend could swap it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import PurePath

__all__ = ["NOT_A_SOCKET", "address"]

NOT_A_SOCKET = "it is not a socket (a link or another file): dockext connects only to a socket the backend made there"


@contextlib.contextmanager
def address(path: PurePath | str) -> Iterator[str]:
    """An address for ``connect()`` that reaches the socket file at ``path`` itself; valid inside the block.

    Raises FileNotFoundError, PermissionError (a directory on the way dockext may not search), or OSError
    ``ENOTSOCK`` with :data:`NOT_A_SOCKET` when the file there is a link or anything but a socket."""
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            raise OSError(errno.ENOTSOCK, NOT_A_SOCKET, str(path))
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)
