"""A rootless Docker engine (``dockerd-rootless.sh``) run by an ordinary user, ``dockext-rl``, for the tests of
dockext on such an engine (reference R13).

The user is not in the ``docker`` group: it reaches no engine but its own. It gets subordinate ids (``/etc/subuid``,
``/etc/subgid``), as ``useradd`` gives them on Debian; its engine keeps images in ``~/.local/share/docker`` from
one session to the next and listens on ``/run/user/<uid>/docker.sock``. Container networking is slirp4netns with
``--disable-host-loopback`` (the script's default): nothing reaches the host's loopback, and no test container
sends anything outside the networks it is on. Needs root (as CI runs), ``rootlesskit``, ``newuidmap`` and
``slirp4netns`` (scripts/setup.sh installs them).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from tests.support.extraengine import engine_process, stop_leftover
from tests.support.unpriv import Unpriv

USER = "dockext-rl"
SUBIDS = "100000:65536"  # the subordinate ids it is given when useradd did not (the first 64 Ki above 100000)
SCRIPT_DIRS = ("/usr/bin", "/usr/share/docker.io/contrib")  # docker-ce's packages, Debian's docker.io


@dataclass(frozen=True)
class RootlessEngine:
    user: Unpriv
    host: str  # unix:///run/user/<uid>/docker.sock (Podman: /run/user/<uid>/podman/podman.sock)
    client: docker.DockerClient  # root's client of it (root may connect to any socket)
    name: str = "docker"  # or "podman" (tests/support/podman.py)

    @property
    def socket(self) -> Path:
        return Path(self.host.removeprefix("unix://"))

    def env(self, **extra: str) -> dict[str, str]:
        """The user's environment with its engine selected, as a login with a rootless engine set up has it."""
        runtime = f"/run/user/{self.user.uid}"
        return self.user.env(DOCKER_HOST=self.host, XDG_RUNTIME_DIR=runtime, **extra)



def ensure_user(like: Unpriv) -> Unpriv:
    """``dockext-rl`` (created once, with subordinate ids), running the same dockext venv as ``like``."""
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", "--user-group", USER],
                       check=True, capture_output=True)
    for table in (Path("/etc/subuid"), Path("/etc/subgid")):
        lines = table.read_text().splitlines() if table.exists() else []
        if not any(line.split(":", 1)[0] == USER for line in lines):
            with table.open("a") as fh:
                fh.write(f"{USER}:{SUBIDS}\n")
    entry = pwd.getpwnam(USER)
    return Unpriv(user=USER, uid=entry.pw_uid, gid=entry.pw_gid, home=Path(entry.pw_dir), python=like.python,
                  dockext=like.dockext)


def runtime_dir(user: Unpriv) -> Path:
    """``/run/user/<uid>`` (``XDG_RUNTIME_DIR``, which a login would make), the user's own, mode 0700."""
    runtime = Path(f"/run/user/{user.uid}")
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chown(runtime, user.uid, user.gid)
    return runtime


def _script() -> str:
    for d in SCRIPT_DIRS:
        if os.access(f"{d}/dockerd-rootless.sh", os.X_OK):
            return f"{d}/dockerd-rootless.sh"
    pytest.fail("dockerd-rootless.sh is missing (it comes with the docker.io package): run bash scripts/setup.sh")


@contextlib.contextmanager
def rootless_engine(like: Unpriv, log: Path, timeout: float = 90) -> Iterator[RootlessEngine]:
    """Start the user's rootless engine; stop it (and what runs on it) on exit."""
    for tool in ("rootlesskit", "newuidmap", "slirp4netns"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: run bash scripts/setup.sh")
    user = ensure_user(like)
    runtime = runtime_dir(user)
    socket = runtime / "docker.sock"
    _stop_leftover(runtime, user.uid)
    env = user.env(XDG_RUNTIME_DIR=str(runtime))
    env["PATH"] = f"{env['PATH']}:/usr/sbin:/sbin:{':'.join(SCRIPT_DIRS)}"
    with engine_process([_script()], socket=socket, log=log, what="the rootless engine", timeout=timeout, env=env,
                        cwd=user.home, user=user.uid, group=user.gid, extra_groups=[]) as client:
        yield RootlessEngine(user=user, host=f"unix://{socket}", client=client)


def _stop_leftover(runtime: Path, uid: int) -> None:
    """The rootless engine an interrupted session left running, named by its pid file: stopped only if that pid is
    a process of the engine's user ``uid`` (a pid file left by a dockerd killed with SIGKILL may name a pid the
    system has given since to anyone: root's dockerd, another test)."""
    stop_leftover(runtime / "docker.pid", lambda pid: os.stat(f"/proc/{pid}").st_uid == uid)
