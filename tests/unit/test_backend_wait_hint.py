"""When a backend's socket never answers and the engine runs on another kernel than this machine's (a VM:
Docker Desktop, Colima, Lima; or another machine behind a forwarded unix socket), the error says why that matters
and what to set. The real engine's own case (same kernel: no such words) is in tests/engine/test_install.py's
backend timeout test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockext.errors import BackendNotReady

from .test_reliability_cases import StubEngine, installer, make_record


class KernelEngine(StubEngine):
    def __init__(self, kernel: str) -> None:
        super().__init__()
        self._kernel = kernel

    def kernel(self) -> str:
        return self._kernel

    def project_containers(self, project: str) -> list[dict]:
        return []


def timed_out(home: Path, kernel: str, *, local: bool = True) -> BackendNotReady:
    inst, _ = installer(home, KernelEngine(kernel))
    inst.backend_timeout = 0.2
    with pytest.raises(BackendNotReady) as info:
        inst._wait_for_socket(make_record(), "backend.sock", lambda: "it does not exist", local=local)
    return info.value


def test_an_engine_on_another_kernel_is_named_with_the_setting_that_reaches_its_backends(tmp_path):
    err = timed_out(tmp_path, "6.6.16-0-virt")
    assert "the backend did not expose its socket backend.sock within 0 s (it does not exist)" in err.message
    assert err.hint == (
        "The backend must listen on /run/guest-services/backend.sock in its container. The engine runs on another "
        f"kernel (6.6.16-0-virt; this machine's is {os.uname().release}): in a VM, or on another machine behind "
        "its socket, where a socket made in a shared folder cannot be reached from here. Set "
        "DOCKEXT_REMOTE_ENGINE=1 to reach backends through a relay container.")


@pytest.mark.parametrize("kernel, local", [(os.uname().release, True), ("", True), ("6.6.16-0-virt", False)],
                         ids=["same kernel", "kernel unknown", "through the relay already"])
def test_otherwise_the_hint_is_only_where_to_listen(tmp_path, kernel, local):
    assert timed_out(tmp_path, kernel, local=local).hint == \
        "The backend must listen on /run/guest-services/backend.sock in its container."
