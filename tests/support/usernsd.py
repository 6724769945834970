"""A second, rootful dockerd run with ``--userns-remap=default``, for the tests of dockext on such an engine.

With remapping, container uid N runs as host uid 165536 + N (the ``dockremap`` user's subordinate ids, which
dockerd creates itself), so no uid inside a container is an ordinary user of this host. The engine runs in a
network namespace of its own (``unshare -n``: its bridge and iptables rules are not the machine's engine's),
with its own data root (kept between sessions, so images are loaded once), exec root and socket
(``root:docker 0660``, as the machine's). Needs root, as CI runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker

from tests.support.extraengine import engine_process, stop_leftover

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
    stop_leftover(pidfile, lambda pid: f"--pidfile={pidfile}".encode() in Path(f"/proc/{pid}/cmdline").read_bytes())
    argv = ["dockerd", "--userns-remap=default", f"--data-root={DATA_ROOT}", f"--exec-root={ROOT / 'exec'}",
            f"--pidfile={pidfile}", "-H", f"unix://{socket}", "--group=docker"]
    with engine_process(["unshare", "-n", "--", "sh", "-c", 'ip link set lo up; exec "$@"', "sh", *argv],
                        socket=socket, log=log, what="dockerd --userns-remap", timeout=timeout) as client:
        yield RemappedEngine(f"unix://{socket}", client)
