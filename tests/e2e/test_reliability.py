"""The host API under load and churn, against a real ``dockext serve``, real backends and a real engine.

Reference security-reliability.md B6: R14 (a backend killed under load), R17 (a soak across several
extensions), R18 (exec churn). What is asserted is what a user would notice: every call answers, with the
right extension's data or the documented error; nothing hangs; nothing is left behind (file descriptors,
zombie processes, process groups). No timing thresholds: deadlines here only catch a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import pytest
from websockets.sync.client import connect

from dockext import model
from dockext.server.backend_http import IDLE_TIMEOUT
from tests.support.aio import run
from tests.support.cli import run_dockext
from tests.support.procs import marked, wait_until
from tests.support.server import Server, start_server
from tests.support.session import Session, Ui, open_fds

pytestmark = [pytest.mark.engine]

SOAK_PREFIX = "dockext-test-soak"
TITLE = "VM Image"  # the vm-image fixture's title, which all five share
EXTENSIONS = 5
CONCURRENCY = 16
BATCHES = 3
PER_BATCH = 3400  # x 3 batches: the reference's 10k proxied requests
FD_SLACK = 2  # descriptors allowed above the baseline once idle (the reference's figure)
SETTLE = 2 * IDLE_TIMEOUT + 10  # seconds to wait for idle connections to close: twice the idle timeout, + room
HANG = 60.0  # seconds after which a call counts as hung (dockext's own deadlines are 5 s to connect)


@dataclass
class Ext:
    ref: str
    key: str
    ui: Ui
    hostname: str  # of its backend container: what GET /whoami answers
    container: str  # its id


@dataclass
class Soak:
    server: Server
    session: Session
    exts: list[Ext]

    @property
    def pid(self) -> int:
        return self.server.proc.pid


def backend_container(client: docker.DockerClient, key: str) -> Any:
    project = model.compose_project(key)
    found = client.containers.list(filters={"label": f"com.docker.compose.project={project}"})
    assert len(found) == 1, [c.name for c in found]
    return found[0]


@pytest.fixture(scope="module")
def soak(tmp_path_factory, fixture_image, docker_client) -> Iterator[Soak]:
    """Five extensions with backends (the vm-image fixture under five names), each with an open UI."""
    home = tmp_path_factory.mktemp("soak") / "home"
    refs = [fixture_image("vm-image", repo_prefix=f"{SOAK_PREFIX}{i}") for i in range(EXTENSIONS)]
    installed: list[str] = []
    server = None
    try:
        for ref in refs:
            installed.append(ref)
            run_dockext("install", "-f", ref, home=home)
        server = start_server(home)
        session = Session(server)
        exts = []
        for ref in refs:
            key = model.extension_key(model.ImageRef.parse(ref))
            ui = session.open_ui(key)
            session.wait_backend(ui)
            container = backend_container(docker_client, key)
            exts.append(Ext(ref, key, ui, container.attrs["Config"]["Hostname"], container.id))
        assert len({e.hostname for e in exts}) == EXTENSIONS
        yield Soak(server, session, exts)
    finally:
        if server is not None:
            server.stop()
        for ref in installed:
            run_dockext("rm", ref, home=home, check=False)
            untag(docker_client, ref)


def untag(client: docker.DockerClient, ref: str) -> None:
    """Remove a name given to a shared fixture image (other tests see the image under its first name)."""
    with contextlib.suppress(docker.errors.APIError):
        client.images.remove(ref, noprune=True)


def idle_fds(pid: int, limit: int) -> int:
    """The server's descriptor count once it is at most ``limit`` (or the count after :data:`SETTLE`)."""
    wait_until(lambda: open_fds(pid) <= limit, SETTLE, interval=0.25)
    return open_fds(pid)


def settled_fds(pid: int) -> int:
    """The server's descriptor count once it has not changed for longer than the idle timeout (every pooled
    connection closes at most that long after its last use)."""
    deadline = time.monotonic() + SETTLE
    count, since = open_fds(pid), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since <= IDLE_TIMEOUT + 1:
        time.sleep(0.25)
        if (now := open_fds(pid)) != count:
            count, since = now, time.monotonic()
    return count


@contextlib.contextmanager
def peak_fds(pid: int) -> Iterator[list[int]]:
    """``[n]``: the most descriptors ``pid`` had open while the block ran (sampled every 50 ms)."""
    peak = [open_fds(pid)]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], open_fds(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def hammer(soak: Soak, requests: int) -> Counter[str]:
    """``requests`` proxied ``GET /whoami`` from CONCURRENCY tasks, each to a random extension; every answer
    must come from that extension's own backend. Returns how many each extension answered."""
    answered: Counter[str] = Counter()
    rng = random.Random(1234)
    plan = [rng.choice(soak.exts) for _ in range(requests)]
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    clients = {e.key: soak.session.async_page(e.ui, timeout=HANG, limits=limits) for e in soak.exts}

    async def worker() -> None:
        while plan:
            ext = plan.pop()
            r = await clients[ext.key].get(f"{ext.ui.api}/vm/whoami")
            assert r.status_code == 200, (ext.key, r.status_code, r.text[:300])
            assert r.json() == {"hostname": ext.hostname}, (ext.key, r.text[:300])  # never another's backend
            answered[ext.key] += 1

    try:
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    finally:
        for c in clients.values():
            await c.aclose()
    return answered


def test_soak_across_extensions_answers_every_call_and_leaks_nothing(soak: Soak) -> None:
    """R17: 10k proxied requests at c=16 across five extensions, in three batches, each answered by the right
    backend; once idle, the pooled backend connections close and the descriptors return to the baseline."""
    baseline = settled_fds(soak.pid)  # what is open with no connection idle
    rss: list[int] = []
    for _ in range(BATCHES):
        with peak_fds(soak.pid) as peak:
            answered = run(hammer(soak, PER_BATCH))
        assert sum(answered.values()) == PER_BATCH and len(answered) == EXTENSIONS
        busy = peak[0]
        # the load really held connections: the browser side's and at least one per backend
        assert busy >= baseline + CONCURRENCY + EXTENSIONS, (baseline, busy)
        after = idle_fds(soak.pid, baseline + FD_SLACK)
        assert after <= baseline + FD_SLACK, f"descriptors: {baseline} before, {busy} busy, {after} idle"
        rss.append(rss_kib(soak.pid))
    print(f"fds baseline {baseline}; RSS after each batch (KiB): {rss}")
    # no trend: what the first batch allocated (caches, pools) is reused, not grown, by the next two
    assert rss[-1] - rss[0] < 16 << 10, rss


def test_a_backend_killed_under_load_fails_fast_and_comes_back(soak: Soak, docker_client) -> None:
    """R14: one backend crashes (its container's init is SIGKILLed) while 16 calls are in flight. Calls to it
    answer 502 with the error object (none hangs, none is a broken connection); calls to the other extensions
    go on; the engine restarts the backend (``restart: always``) and calls to it succeed again; no descriptor
    is left over."""
    victim, others = soak.exts[0], soak.exts[1:]
    baseline = settled_fds(soak.pid)
    outcomes: Counter[str] = Counter()
    failures: list[dict[str, Any]] = []

    async def load() -> None:
        clients = {e.key: soak.session.async_page(e.ui, timeout=HANG) for e in soak.exts}
        state = {"killed": False, "failed": False, "recovered": False}

        async def worker(n: int) -> None:
            ext = victim if n % 2 == 0 else others[(n // 2) % len(others)]
            while not state["recovered"]:
                r = await clients[ext.key].get(f"{ext.ui.api}/vm/whoami")
                if r.status_code == 200:
                    assert r.json() == {"hostname": ext.hostname}
                    outcomes[f"{'victim' if ext is victim else 'other'} 200"] += 1
                    if ext is victim and state["failed"]:
                        state["recovered"] = True
                    continue
                assert ext is victim, (ext.key, r.status_code, r.text[:300])
                assert state["killed"], ("failed before the kill", r.status_code, r.text[:300])
                state["failed"] = True
                outcomes["victim error"] += 1
                failures.append({"status": r.status_code, "marked": r.headers.get("x-dockext-proxy-error"),
                                 "body": r.json()})
                await asyncio.sleep(0.05)

        async def killer() -> None:
            await asyncio.sleep(0.5)
            state["killed"] = True
            # a crash, not `docker kill` (which the engine takes as the user stopping it: no restart)
            os.kill(docker_client.containers.get(victim.container).attrs["State"]["Pid"], signal.SIGKILL)

        try:
            async with asyncio.timeout(HANG):
                await asyncio.gather(killer(), *(worker(n) for n in range(CONCURRENCY)))
        finally:
            for c in clients.values():
                await c.aclose()

    run(load())
    print(f"backend crash under load: {dict(outcomes)}")
    assert outcomes["victim error"] > 0 and outcomes["other 200"] > 0, outcomes
    for f in failures:
        assert f["status"] == 502 and f["marked"] == "1", f
        assert f["body"]["error"]["type"] == "BackendNotReady", f
        assert f"the backend of {TITLE} cannot be reached" in f["body"]["error"]["message"], f
    after = idle_fds(soak.pid, baseline + FD_SLACK)
    assert after <= baseline + FD_SLACK, f"descriptors: {baseline} before, {after} after"
    # the restarted backend is a new process in the same container: its answers carry the same host name
    assert backend_container(docker_client, victim.key).id == victim.container


# ------------------------------------------------------------------------------------------- exec churn

CHURN_PREFIX = "dockext-test-churn"
HOST_EXECS = 3000
DOCKER_EXECS = 200
VM_EXECS = 50
STREAMS = 500  # half run to the end, half are closed while running


@pytest.fixture(scope="module")
def churn(tmp_path_factory, fixture_image, docker_client) -> Iterator[tuple[Server, Session, Ui]]:
    home = tmp_path_factory.mktemp("churn") / "home"
    ref = fixture_image("streams", repo_prefix=CHURN_PREFIX)
    run_dockext("install", "-f", ref, home=home)
    server = start_server(home)
    try:
        session = Session(server)
        yield server, session, session.open_ui(model.extension_key(model.ImageRef.parse(ref)))
    finally:
        server.stop()
        run_dockext("rm", ref, home=home, check=False)
        untag(docker_client, ref)


def zombies_of(pid: int) -> list[int]:
    """Children of ``pid`` that have exited and were never waited for."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "Z" and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


async def execs(session: Session, ui: Ui, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """POST each body to the exec endpoint from 8 tasks; the results in order."""
    results: list[dict[str, Any]] = [{} for _ in bodies]
    todo = list(enumerate(bodies))
    async with session.async_page(ui, timeout=HANG) as c:

        async def worker() -> None:
            while todo:
                i, body = todo.pop()
                r = await c.post(f"{ui.api}/exec", json=body)
                assert r.status_code == 200, (body, r.status_code, r.text[:300])
                results[i] = r.json()

        await asyncio.gather(*(worker() for _ in range(8)))
    return results


def stream(server: Server, ui: Ui, request: dict[str, Any], *, close_after_first: bool) -> tuple[str, dict]:
    """One streaming exec over the WebSocket, as ddclient.js runs it: (stdout text, the exit message)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=HANG)
    with connect(f"ws://{ui.host}{ui.api}/stream", sock=sock, origin=ui.origin, open_timeout=HANG,
                 close_timeout=HANG) as ws:
        ws.send(json.dumps(request))
        out = b""
        for raw in ws:
            if isinstance(raw, bytes):
                assert raw[0] == 1, raw  # stdout
                out += raw[1:]
                if close_after_first:
                    ws.send(json.dumps({"close": True}))
                    close_after_first = False
                continue
            return out.decode(), json.loads(raw)
    raise AssertionError("the stream ended without an exit message")


def test_exec_churn_leaves_no_zombies_processes_or_descriptors(churn, marker) -> None:
    """R18: thousands of short host, docker and vm execs and hundreds of streams, half of them closed while
    running: each gives its documented result; afterwards the server has no zombie child, no process of the
    streams survives, and its descriptors are back at the baseline."""
    server, session, ui = churn
    pid = server.proc.pid
    baseline = settled_fds(pid)

    host = [{"cli": "host", "cmd": "argv.sh", "args": [f"{marker}-{i}"]} for i in range(HOST_EXECS)]
    for i, result in enumerate(run(execs(session, ui, host))):
        assert result["code"] == 0 and f"[{marker}-{i}]" in result["stdout"], result

    docker_ = [{"cli": "docker", "cmd": "version", "args": ["--format", "{{.Server.APIVersion}}"]}
               for _ in range(DOCKER_EXECS)]
    versions = {r["stdout"].strip() for r in run(execs(session, ui, docker_)) if r["code"] == 0}
    assert len(versions) == 1 and versions != {""}, versions  # all 200 succeeded, with one answer

    vm = [{"cli": "vm", "cmd": "echo", "args": [f"vm-{i}"]} for i in range(VM_EXECS)]
    for i, result in enumerate(run(execs(session, ui, vm))):
        assert result["code"] == 0 and result["stdout"] == f"vm-{i}\n", result

    for i in range(STREAMS):
        if i % 2:
            out, end = stream(server, ui, {"cli": "host", "cmd": "argv.sh", "args": [f"s{i}"]},
                              close_after_first=False)
            assert f"[s{i}]" in out and end == {"exit": 0, "signal": None}, (out, end)
        else:  # sleeper.sh prints a line, then waits on a child of its own: closed, the whole group ends
            out, end = stream(server, ui, {"cli": "host", "cmd": "sleeper.sh", "args": [f"{marker}-s{i}"]},
                              close_after_first=True)
            assert out.startswith(f"sleeper {marker}-s{i} started") and end == {"exit": 143, "signal": "SIGTERM"}, (
                out, end,
            )

    assert wait_until(lambda: zombies_of(pid) == [], 10), zombies_of(pid)
    assert wait_until(lambda: marked(marker) == {}, 10), marked(marker)
    after = idle_fds(pid, baseline + FD_SLACK)
    assert after <= baseline + FD_SLACK, f"descriptors: {baseline} before, {after} after"
