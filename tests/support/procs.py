"""The host's processes as ``/proc`` shows them: find what a test started by a marker in its argv."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path


def pids_where(match: Callable[[int], bool]) -> list[int]:
    """The pids for which ``match(pid)`` holds; a process that goes (or an ``OSError`` of ``match``) does not."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if match(int(entry)):
                    found.append(int(entry))
    return found


def kill(pids: Iterable[int]) -> None:
    """SIGKILL each of ``pids`` that is still there."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def marked(marker: str) -> dict[int, str]:
    """``{pid: command line}`` of the live processes whose argv contains ``marker`` (zombies have none)."""
    found: dict[int, str] = {}
    needle = marker.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            if needle in raw:
                found[int(entry)] = raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
    return found


def children(pid: int) -> dict[int, str]:
    """``{pid: command line}`` of the direct children of ``pid``."""
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{entry}/stat").read_bytes()
            if int(stat.rsplit(b")", 1)[1].split()[1]) == pid:
                raw = Path(f"/proc/{entry}/cmdline").read_bytes()
                found[int(entry)] = raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
    return found


def cmdline(pid: int) -> str | None:
    """The command line of ``pid``, or None once it is gone (a zombie has an empty one)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace") or None


def still_running(procs: dict[int, str]) -> dict[int, str]:
    """Those of ``procs`` (``{pid: command line}``) that still run: same PID *and* same command line, so that
    a PID reused by another process does not count."""
    return {pid: cmd for pid, cmd in procs.items() if cmdline(pid) == cmd}


def wait_until(check: Callable[[], bool], timeout: float = 10.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return bool(check())


def kill_marked(marker: str) -> None:
    """Clean-up after a failed test: SIGKILL whatever still carries ``marker``."""
    kill(marked(marker))
