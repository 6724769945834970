"""An SSH server on 127.0.0.1 for ``DOCKER_HOST=ssh://...`` tests: OpenSSH's own ``sshd``, run by the test with
its own keys and configuration (nothing of the machine's), letting one key in as root. Its ``docker system
dial-stdio`` reaches the local engine, as on a real remote host.

The client side: ``ssh`` reads its configuration from the passwd entry's home, not ``$HOME``, so the server
gives a directory to put first on ``PATH`` holding an ``ssh`` that runs the real one with ``-F`` and a config
naming the server ``dockext-remote`` (its port, the key, its host key). dockext's dialer and the docker CLI
both run ``ssh`` from ``PATH``, so both go through it; nothing of the machine's own ssh setup is touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: the system's, else the one scripts/setup.sh takes out of Debian's package into the venv
SSHD_CANDIDATES = ("/usr/sbin/sshd", str(Path(__file__).resolve().parents[2] / ".venv/opt/openssh/usr/sbin/sshd"))
ALIAS = "dockext-remote"


@dataclass
class SshServer:
    url: str  # ssh://dockext-remote
    bin_dir: Path  # put first on PATH: its ssh knows the alias
    log: Path

    def env(self) -> dict[str, str]:
        """The environment changes a client needs (``PATH`` and ``DOCKER_HOST``)."""
        return {"PATH": f"{self.bin_dir}:{os.environ.get('PATH', os.defpath)}", "DOCKER_HOST": self.url}

    def accepted(self) -> int:
        """How many logins the server accepted so far (each ssh connection is one)."""
        return self.log.read_text(errors="replace").count("Accepted publickey")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def sshd(directory: Path) -> Iterator[SshServer]:
    found = [c for c in SSHD_CANDIDATES if os.access(c, os.X_OK)]
    if not found:
        raise RuntimeError("sshd is missing: run `bash scripts/setup.sh` (it takes it out of openssh-server)")
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "id_ed25519"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / name)], check=True)
    shutil.copy(directory / "id_ed25519.pub", directory / "authorized_keys")
    port = _free_port()
    config = directory / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {directory / 'host_key'}\n"
        f"AuthorizedKeysFile {directory / 'authorized_keys'}\nPidFile {directory / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nAllowTcpForwarding no\nX11Forwarding no\nPrintMotd no\nLogLevel INFO\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege-separation directory
    host_pub = (directory / "host_key.pub").read_text().split()
    (directory / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    (directory / "ssh_config").write_text(
        f"Host {ALIAS}\n  HostName 127.0.0.1\n  Port {port}\n  User root\n"
        f"  IdentityFile {directory / 'id_ed25519'}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {directory / 'known_hosts'}\n  StrictHostKeyChecking yes\n"
    )
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    real_ssh = shutil.which("ssh") or "/usr/bin/ssh"
    (bin_dir / "ssh").write_text(f'#!/bin/sh\nexec {real_ssh} -F {directory / "ssh_config"} "$@"\n')
    (bin_dir / "ssh").chmod(0o755)
    log = directory / "sshd.log"
    with open(log, "w") as fh:
        # sshd wants to be started by its absolute path (it re-executes itself)
        proc = subprocess.Popen([found[0], "-D", "-e", "-f", str(config)], stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield SshServer(f"ssh://{ALIAS}", bin_dir, log)
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
