"""Engines reached over SSH (``DOCKER_HOST=ssh://[user@]host[:port]``), as the Docker CLI reaches them.

The CLI runs ``ssh ... HOST docker system dial-stdio`` for each connection and speaks the Engine API over the
process's stdin and stdout. dockext does the same behind a unix socket of its own (in a 0700 temporary
directory): each connection accepted there starts one such ``ssh`` and copies bytes both ways. Every client
of the engine in this process (both Engine API clients, the relay's hijacked execs) then
simply uses ``unix://<that socket>``, and the ``docker`` and ``docker compose`` processes dockext starts get the
``ssh://`` address itself (they dial the same way).

``ssh`` runs with ``BatchMode=yes``: it never asks for a password or a host key confirmation, so keys, the
agent and ``~/.ssh/config`` must let it in unattended, as for ``docker -H ssh://`` in a script. What ``ssh``
says on failure (``Permission denied (publickey)``, ``Host key verification failed``) is kept as
:attr:`Dialer.last_error` for the message a person sees.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

from .errors import DockextError

__all__ = ["Dialer", "dialer_for", "ssh_argv"]

_DIALERS: dict[str, Dialer] = {}
_LOCK = threading.Lock()


def ssh_argv(url: str) -> list[str]:
    """``ssh ... -- HOST docker system dial-stdio`` for ``ssh://[user@]host[:port]`` (the CLI's own options)."""
    parsed = urlparse(url)
    try:
        port = parsed.port
    except ValueError:
        raise DockextError(f"DOCKER_HOST {url!r}: the port is not a number from 1 to 65535") from None
    if parsed.scheme != "ssh" or not parsed.hostname:
        raise DockextError(f"DOCKER_HOST {url!r} is not an ssh://[user@]host[:port] address")
    if parsed.path not in ("", "/") or parsed.query or parsed.password:
        raise DockextError(f"DOCKER_HOST {url!r}: an ssh:// address has no path, query or password",
                           hint="Use ssh://user@host:port; keys come from ssh-agent or ~/.ssh/config.")
    ssh = shutil.which("ssh")
    if ssh is None:
        raise DockextError(f"DOCKER_HOST is {url}, but the ssh client is not installed",
                           hint="Install OpenSSH's client (Debian: apt-get install openssh-client).")
    argv = [ssh, "-o", "ConnectTimeout=30", "-o", "BatchMode=yes", "-T"]
    # the user and the host percent-decoded, as Go's URL parser (the Docker CLI's) gives them to ssh:
    # ssh://ad%40corp@h is the user ad@corp, [fe80::1%25eth0] the zone eth0
    if parsed.username:
        argv += ["-l", unquote(parsed.username)]
    if port:
        argv += ["-p", str(port)]
    return [*argv, "--", unquote(parsed.hostname), "docker", "system", "dial-stdio"]


class Dialer:
    """A unix socket whose every connection is an ``ssh ... docker system dial-stdio`` to one engine."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.argv = ssh_argv(url)
        self._dir = tempfile.mkdtemp(prefix="dockext-ssh-")  # 0700: only this user may connect
        self.path = str(Path(self._dir) / "engine.sock")
        self.last_error: str | None = None
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(64)
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="dockext-ssh-dial").start()

    @property
    def host(self) -> str:
        return f"unix://{self.path}"

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True, name="dockext-ssh-conn").start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, bufsize=0, start_new_session=True)
        except OSError as exc:
            self.last_error = f"cannot run ssh: {exc}"
            conn.close()
            return
        assert proc.stdin and proc.stdout and proc.stderr
        stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr

        def upstream() -> None:  # the client's bytes to ssh; its end of input is ssh's
            with contextlib.suppress(OSError):
                while data := conn.recv(65536):
                    stdin.write(data)
            with contextlib.suppress(OSError):
                stdin.close()

        sender = threading.Thread(target=upstream, daemon=True)
        sender.start()
        got_any = False
        with contextlib.suppress(OSError):
            while data := stdout.read(65536):
                got_any = True
                conn.sendall(data)
        # ssh's own output ended: find out why before the client does (its error message reads last_error)
        try:
            code = proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        said = stderr.read().decode(errors="replace").strip()
        if code != 0 and not got_any:
            lines = [ln for ln in said.splitlines() if ln.strip()]
            self.last_error = f"ssh exited {code}" + (f": {lines[-1]}" if lines else "")
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)
        conn.close()
        stderr.close()
        stdout.close()
        sender.join(1)


def dialer_for(url: str) -> Dialer:
    """The one :class:`Dialer` of this process for ``url`` (made on first use, closed at exit)."""
    with _LOCK:
        dialer = _DIALERS.get(url)
        if dialer is None:
            dialer = _DIALERS[url] = Dialer(url)
            atexit.register(dialer.close)
        return dialer
