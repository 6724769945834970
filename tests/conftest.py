"""Session fixtures shared by every test tier.

Test helpers live in ``tests/support`` (``from tests.support.images import ...``).
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import subprocess
import warnings
from collections.abc import Callable, Iterator

import docker
import pytest

from tests.support.bridge import bridge
from tests.support.images import build_fixture
from tests.support.procs import kill_marked

CLONE_NEWNET = 0x40000000


def pytest_configure(config: pytest.Config) -> None:
    _default_interrupts()
    _own_network_namespace()


def _default_interrupts() -> None:
    """SIGINT and SIGQUIT as a terminal's foreground process gets them, even when pytest was started ignoring them.

    A shell starts a background job with both ignored (scripts/test.sh runs two pytest processes so), and every
    process a test starts inherits an ignored signal: the tests that interrupt ``dockext`` with SIGINT, as Ctrl-C
    does, would find it ignored. With Python's own handler here, the processes tests start get the default."""
    for sig, handler in ((signal.SIGINT, signal.default_int_handler), (signal.SIGQUIT, signal.SIG_DFL)):
        if signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, handler)


def _own_network_namespace() -> None:
    """Run the whole test session in a network namespace of its own, with only loopback.

    Chromium aborts requests in flight with ERR_NETWORK_CHANGED whenever an IP address appears on the
    host, which Docker does each time it creates a network (every compose project gets one). In a namespace
    of our own nothing changes under the browser, and the tests cannot send traffic anywhere but loopback
    and unix sockets. The engine, Compose and the registry are reached through dockerd's unix socket, which
    does not depend on the namespace. Set DOCKEXT_TEST_NETNS=0 to stay in the host's namespace.
    """
    if os.environ.get("DOCKEXT_TEST_NETNS", "1") == "0" or os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    # kept open so that a test can still reach the host's namespace (nsenter --net=$DOCKEXT_TEST_HOST_NETNS)
    host_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
    if libc.unshare(CLONE_NEWNET) != 0:
        warnings.warn(f"no network namespace for the tests: {os.strerror(ctypes.get_errno())}", stacklevel=1)
        return
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    os.environ["DOCKEXT_TEST_HOST_NETNS"] = f"/proc/{os.getpid()}/fd/{host_ns}"


@pytest.fixture(scope="session", autouse=True)
def _registry_in_our_namespace() -> Iterator[None]:
    """The local registry at 127.0.0.1:5000 here too, for dockext's own clients (the Marketplace reads it)."""
    with bridge(5000):
        yield


@pytest.fixture(scope="session", autouse=True)
def _engine_answers(request: pytest.FixtureRequest) -> None:
    """Stop the run with a clear message when tests that need the engine are collected but it is down."""
    if not any(
        item.get_closest_marker("engine") or item.get_closest_marker("browser")
        for item in request.session.items
    ):
        return
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=10)
        client.ping()
        client.close()
    except Exception as exc:  # docker.errors.DockerException, requests' ConnectionError, PermissionError...
        pytest.exit(
            f"the Docker engine at {where} does not answer ({exc}).\n"
            "Start it (and the registry on 127.0.0.1:5000) with: bash scripts/setup.sh",
            returncode=3,
        )


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    client = docker.from_env(timeout=120)
    yield client
    client.close()


@pytest.fixture(scope="session")
def fixture_image(docker_client: docker.DockerClient) -> Callable[..., str]:
    """``fixture_image(name, tag="1.0.0", repo_prefix="dockext-test", labels=None)``: builds it (once); returns the
    ref (``labels``: see :func:`build_fixture`)."""
    built: dict[tuple[str, str, str, tuple[tuple[str, str], ...]], str] = {}

    def build(name: str, *, tag: str = "1.0.0", repo_prefix: str = "dockext-test",
              labels: dict[str, str] | None = None) -> str:
        key = (name, tag, repo_prefix, tuple(sorted((labels or {}).items())))
        if key not in built:
            built[key] = build_fixture(docker_client, name, tag=tag, repo_prefix=repo_prefix, labels=labels)
        return built[key]

    return build


@pytest.fixture
def marker() -> Iterator[str]:
    """A unique word for the argv of processes a test starts; whatever still carries it afterwards is killed."""
    value = "dxm" + secrets.token_hex(6)
    yield value
    kill_marked(value)
