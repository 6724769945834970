"""Podman services (``podman system service``), which answer the Docker Engine API, for the tests of dockext on
Podman: Debian's podman 4.3 with netavark, rootful (root's service) and rootless (the ``dockext-rl`` user's).

Each runs in a network namespace of its own, with only loopback (``unshare -n``: its bridges and firewall rules
are not the machine's, and nothing it or its containers try to reach can leave the machine); on exit every
process left in that namespace (aardvark-dns, conmons of exec sessions, which linger 300 s) is killed. The rootful
one has its own storage, run and network directories (the storage is kept between sessions, so images are loaded
once), and a mount namespace of its own with a fresh ``/run/containers/networks``: rootful Podman keeps its IPAM
database and aardvark-dns state there whatever ``--network-config-dir`` says, and would share them with any other
rootful Podman of the machine. The rootless one is the user's, as ``podman system service`` run at a login:
storage in its home, the socket at ``$XDG_RUNTIME_DIR/podman/podman.sock``; its pause process (which holds the
user's namespaces between commands) is stopped before and after, so that it is made in the test's namespace.

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
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.support.extraengine import engine_process, stop_leftover
from tests.support.locks import locked
from tests.support.procs import kill, pids_where
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

# the compat API completes short names with docker.io whatever the search list says: never pull from there
[[registry]]
location = "docker.io"
blocked = true
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


def _service(socket: Path, pidfile: Path, *options: str, setup: str, namespaces: str = "-n",
             run_as: str = "") -> list[str]:
    """``unshare namespaces``, there ``setup`` (shell commands), then ``podman [options] system service`` on
    ``socket`` (through ``run_as``: ``setpriv ...``); the service's pid goes to ``pidfile``."""
    start = f'{setup}; exec {run_as} "$@"'
    service = ["sh", "-c", f'echo $$ > {pidfile}; exec "$@"', "sh", "podman", *options, "system", "service",
               "--time=0", f"unix://{socket}"]
    return ["unshare", namespaces, "--propagation", "private", "--", "sh", "-c", start, "sh", *service]


def _in_namespace(netns: str) -> Callable[[int], bool]:
    return lambda pid: os.readlink(f"/proc/{pid}/ns/net") == netns


@contextlib.contextmanager
def _running(argv: list[str], pidfile: Path, **kwargs: Any) -> Iterator[tuple[docker.DockerClient, str]]:
    """:func:`engine_process` of ``argv`` (``kwargs``: its other arguments); yields its client and the path of the
    service's network namespace. When the service has stopped, whatever still runs in that namespace is killed."""
    netns = None
    try:
        with engine_process(argv, **kwargs) as client:
            path = f"/proc/{int(pidfile.read_text())}/ns/net"
            netns = os.readlink(path)
            yield client, path
    finally:
        if netns is not None:
            kill(pids_where(_in_namespace(netns)))


#: where rootful Podman keeps what it must not share with another rootful Podman of the machine (see above)
ROOTFUL_OPTIONS = (f"--root={DATA_ROOT}", f"--runroot={ROOT / 'runroot'}", f"--tmpdir={ROOT / 'libpod'}",
                   f"--network-config-dir={ROOT / 'networks'}")
ROOTFUL_SETUP = ("mkdir -p /run/containers/networks && mount -t tmpfs -o mode=0700 tmpfs /run/containers/networks "
                 "&& ip link set lo up")


def _remove_leftovers(env: dict[str, str], log: Path) -> None:
    """Remove the containers and networks a run killed before its clean-up left in the kept storage.

    Their network namespaces died with that run, and Podman's API then fails every list of containers
    ("unknown FS magic on /run/netns/..."): every later test on Podman would fail, and so would the clean-up at
    its end. The CLI removes them, in namespaces like the service's (so that what their removal runs, such as
    aardvark-dns, is not left in the machine's)."""
    podman = " ".join(["podman", *ROOTFUL_OPTIONS])
    script = f"{ROOTFUL_SETUP}; {podman} rm --all --force --time=0; {podman} network prune --force"
    with log.open("ab") as out:
        subprocess.run(["unshare", "-nm", "--propagation", "private", "--", "sh", "-c", script], env=env,
                       stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=180, check=False)


@contextlib.contextmanager
def podman_engine(log: Path, timeout: float = 90) -> Iterator[PodmanEngine]:
    """Start root's service, after removing what a killed run left in its storage; on exit remove its containers
    and networks, and stop it. One at a time on the machine: a second one waits for the first to stop (it would
    take the first one's storage for a killed run's leftovers and stop it)."""
    env = {**os.environ, **_config("rootful", limits=True)}
    pidfile, socket = ROOT / "podman.pid", ROOT / "podman.sock"
    with locked(ROOT.with_name(ROOT.name + ".lock")):
        stop_leftover(pidfile, lambda pid: f"--root={DATA_ROOT}".encode() in Path(f"/proc/{pid}/cmdline").read_bytes())
        _remove_leftovers(env, log)
        socket.unlink(missing_ok=True)
        argv = _service(socket, pidfile, *ROOTFUL_OPTIONS, namespaces="-nm", setup=ROOTFUL_SETUP)
        with _running(argv, pidfile, socket=socket, log=log, what="podman system service", timeout=timeout, env=env,
                      preexec_fn=_limit_processes) as (client, netns):
            yield PodmanEngine(f"unix://{socket}", client, netns)


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

    def pause() -> list[int]:  # the user's pause process: `catatonit -P`
        return pids_where(lambda pid: os.stat(f"/proc/{pid}").st_uid == user.uid
                          and Path(f"/proc/{pid}/cmdline").read_bytes() == b"catatonit\0-P\0")

    kill(pause())
    argv = _service(socket, pidfile, setup="ip link set lo up",
                    run_as=f"setpriv --reuid={user.uid} --regid={user.gid} --clear-groups")
    try:
        with _running(argv, pidfile, socket=socket, log=log, timeout=timeout, env=env, cwd=user.home,
                      what="the rootless podman service") as (client, _):
            yield RootlessEngine(user=user, host=f"unix://{socket}", client=client, name="podman")
    finally:
        kill(pause())
