"""A second, rootful dockerd run with ``--userns-remap=default``, for the tests of dockext on such an engine.

With remapping, container uid N runs as host uid 165536 + N (the ``dockremap`` user's subordinate ids, which
dockerd creates itself), so no uid inside a container is an ordinary user of this host. The engine runs in a
network namespace of its own (``unshare -n``: its bridge and iptables rules are not the machine's engine's),
with its own data root (kept between sessions, so images are loaded once), exec root and socket
(``root:docker 0660``, as the machine's). Needs root, as CI runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest

ROOT = Path("/run/dockext-test-userns")
DATA_ROOT = Path("/var/lib/dockext-test-userns")


@dataclass(frozen=True)
class RemappedEngine:
    host: str  # unix:///run/dockext-test-userns/docker.sock
    client: docker.DockerClient


@contextlib.contextmanager
def remapped_engine(log: Path, timeout: float = 90) -> Iterator[RemappedEngine]:
    """Start the engine; on exit remove its containers and stop it."""
    ROOT.mkdir(mode=0o755, exist_ok=True)
    pidfile, socket = ROOT / "docker.pid", ROOT / "docker.sock"
    _stop(pidfile)
    argv = ["dockerd", "--userns-remap=default", f"--data-root={DATA_ROOT}", f"--exec-root={ROOT / 'exec'}",
            f"--pidfile={pidfile}", "-H", f"unix://{socket}", "--group=docker"]
    with log.open("ab") as out:
        proc = subprocess.Popen(["unshare", "-n", "--", "sh", "-c", 'ip link set lo up; exec "$@"', "sh", *argv],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    client = None
    try:
        deadline = time.monotonic() + timeout
        while client is None:
            if proc.poll() is not None:
                pytest.fail(f"dockerd --userns-remap exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                candidate = docker.DockerClient(base_url=f"unix://{socket}", timeout=60)
                candidate.ping()
                client = candidate
            except Exception:  # not up yet: no socket, connection refused, a 500 while it starts
                if time.monotonic() > deadline:
                    pytest.fail(f"dockerd --userns-remap did not answer within {timeout} s:\n"
                                f"{log.read_text()[-3000:]}")
                time.sleep(0.2)
        yield RemappedEngine(f"unix://{socket}", client)
    finally:
        if client is not None:
            for container in client.containers.list(all=True):
                with contextlib.suppress(docker.errors.APIError):
                    container.remove(force=True)
            client.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _stop(pidfile: Path) -> None:
    """The engine an interrupted session left running (its pid file): stopped, so this one can start."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(pidfile.read_text().strip())
        os.kill(pid, signal.SIGTERM)
        for _ in range(300):
            os.kill(pid, 0)  # ProcessLookupError (an OSError) once it is gone
            time.sleep(0.1)
