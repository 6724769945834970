"""Podman services (``podman system service``), which answer the Docker Engine API, for the tests of dockext on
Podman: Debian's podman 4.3 with netavark, rootful (root's service) and rootless (the ``dockext-rl`` user's).

The rootful service runs in a network namespace of its own (``unshare -n``: its bridge and firewall rules are not
the machine's, and nothing it tries to pull can leave the machine), with its own storage, run and network
directories (the storage is kept between sessions, so images are loaded once). The rootless one is the user's, as
``podman system service`` run at a login: storage in its home, the socket at
``$XDG_RUNTIME_DIR/podman/podman.sock``, slirp4netns, which does not reach the host's loopback.

Both get a ``containers.conf`` that fits a machine with no systemd: cgroupfs, events in a file. The rootful one
also sets two limits of its containers: rootful Podman gives each container 1048576 open files and processes, which
a runtime may only set with ``CAP_SYS_RESOURCE`` when that is above the service's own limit, and this machine's
processes lack that capability; so its containers get the service's own limits. No registry is searched for short
names: an image is in the service's storage (tests load it there), or named with its registry. The local registry,
127.0.0.1:5000, is marked insecure (plain HTTP), as Docker treats loopback registries by itself; a test that
wants it from the rootful service bridges it into that service's namespace
(``bridge(5000, into=engine.netns)``, tests/support/bridge.py). Needs root, as CI runs, and
``podman`` and ``catatonit`` (scripts/setup.sh installs them).
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest

from tests.support.extraengine import engine_process, stop_leftover
from tests.support.rootless import RootlessEngine, ensure_user, runtime_dir
from tests.support.unpriv import Unpriv

ROOT = Path("/run/dockext-test-podman")
DATA_ROOT = Path("/var/lib/dockext-test-podman")
NPROC = 32768  # the rootful service's limit of processes, and so its containers'


REGISTRIES_CONF = """\
unqualified-search-registries = []
short-name-mode = "disabled"

[[registry]]
location = "127.0.0.1:5000"
insecure = true
"""


@dataclass(frozen=True)
class PodmanEngine:
    host: str  # unix:///run/dockext-test-podman/podman.sock
    client: docker.DockerClient
    netns: str  # its network namespace: /proc/<pid>/ns/net


def _config(name: str, *, limits: bool) -> dict[str, str]:
    """Writes ``ROOT/<name>.conf`` and ``ROOT/registries.conf``; the environment that points Podman at them."""
    if shutil.which("podman") is None or shutil.which("catatonit") is None:
        pytest.fail("podman or catatonit is not installed: run bash scripts/setup.sh")
    ROOT.mkdir(mode=0o755, exist_ok=True)
    ROOT.chmod(0o755)  # the rootless service reads its configuration here
    lines = ["[containers]"]
    if limits:
        nofile, nproc = resource.getrlimit(resource.RLIMIT_NOFILE)[1], _nproc()
        lines.append(f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]')
    lines += ["[engine]", 'cgroup_manager = "cgroupfs"', 'events_logger = "file"']
    conf, registries = ROOT / f"{name}.conf", ROOT / "registries.conf"
    conf.write_text("\n".join(lines) + "\n")
    registries.write_text(REGISTRIES_CONF)
    for path in (conf, registries):
        path.chmod(0o644)
    return {"CONTAINERS_CONF": str(conf), "CONTAINERS_REGISTRIES_CONF": str(registries)}


def _nproc() -> int:
    return min(resource.getrlimit(resource.RLIMIT_NPROC)[1], NPROC)


def _limit_processes() -> None:
    resource.setrlimit(resource.RLIMIT_NPROC, (_nproc(), _nproc()))


def _service(socket: Path, pidfile: Path, *options: str) -> list[str]:
    """``sh`` writing its pid to ``pidfile``, then becoming ``podman [options] system service`` on ``socket``."""
    return ["sh", "-c", f'echo $$ > {pidfile}; exec "$@"', "sh", "podman", *options, "system", "service",
            "--time=0", f"unix://{socket}"]


@contextlib.contextmanager
def podman_engine(log: Path, timeout: float = 90) -> Iterator[PodmanEngine]:
    """Start root's service; on exit remove its containers and networks, and stop it."""
    env = {**os.environ, **_config("rootful", limits=True)}
    pidfile, socket = ROOT / "podman.pid", ROOT / "podman.sock"
    stop_leftover(pidfile, lambda pid: f"--root={DATA_ROOT}".encode() in Path(f"/proc/{pid}/cmdline").read_bytes())
    socket.unlink(missing_ok=True)
    service = _service(socket, pidfile, f"--root={DATA_ROOT}", f"--runroot={ROOT / 'runroot'}",
                       f"--tmpdir={ROOT / 'libpod'}", f"--network-config-dir={ROOT / 'networks'}")
    argv = ["unshare", "-n", "--", "sh", "-c", 'ip link set lo up; exec "$@"', "sh", *service]
    with engine_process(argv, socket=socket, log=log, what="podman system service", timeout=timeout, env=env,
                        preexec_fn=_limit_processes) as client:
        try:
            yield PodmanEngine(f"unix://{socket}", client, f"/proc/{int(pidfile.read_text())}/ns/net")
        finally:
            with contextlib.suppress(docker.errors.APIError):
                client.networks.prune()


@contextlib.contextmanager
def rootless_podman(like: Unpriv, log: Path, timeout: float = 90) -> Iterator[RootlessEngine]:
    """Start the ``dockext-rl`` user's own service; on exit remove its containers and stop it."""
    user = ensure_user(like)
    config = _config("rootless", limits=False)
    runtime = runtime_dir(user)
    (runtime / "podman").mkdir(mode=0o700, exist_ok=True)
    os.chown(runtime / "podman", user.uid, user.gid)
    pidfile, socket = runtime / "podman" / "service.pid", runtime / "podman" / "podman.sock"
    stop_leftover(pidfile, lambda pid: os.stat(f"/proc/{pid}").st_uid == user.uid
                  and b"service" in Path(f"/proc/{pid}/cmdline").read_bytes())
    socket.unlink(missing_ok=True)
    env = user.env(XDG_RUNTIME_DIR=str(runtime), **config)
    with engine_process(_service(socket, pidfile), socket=socket, log=log, what="the rootless podman service",
                        timeout=timeout, env=env, cwd=user.home, user=user.uid, group=user.gid,
                        extra_groups=[]) as client:
        yield RootlessEngine(user=user, host=f"unix://{socket}", client=client, name="podman")
