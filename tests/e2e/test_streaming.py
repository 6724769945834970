"""Streaming exec in a real browser, against the real engine, backend container and host binaries.

The ``streams`` fixture's page runs one scenario per button and renders what its callbacks saw into element
ids; the host's ``/proc`` shows which processes exist.
"""

from __future__ import annotations

import json
import re
import socket
import urllib.request
from pathlib import Path

import docker
import pytest
from playwright.sync_api import FrameLocator, Page, expect
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.support.cli import run_dockext
from tests.support.procs import marked, wait_until
from tests.support.server import Server, log_in, start_server

pytestmark = [pytest.mark.engine, pytest.mark.browser]

PREFIX = "dockext-test-streams"  # our own image names: other suites install fixtures on the same engine
KEY = f"{PREFIX}_streams"
OTHER_KEY = f"{PREFIX}_ui-only"


@pytest.fixture(scope="module")
def installed(tmp_path_factory, fixture_image):
    home = tmp_path_factory.mktemp("streaming") / "home"
    refs = [fixture_image("streams", repo_prefix=PREFIX), fixture_image("ui-only", repo_prefix=PREFIX)]
    for ref in refs:
        run_dockext("install", "-f", ref, home=home)
    yield home, refs[0]
    for ref in refs:
        run_dockext("rm", ref, home=home, check=False)


@pytest.fixture(scope="module")
def srv(installed) -> Server:
    server = start_server(installed[0])
    yield server
    server.stop()


def open_streams(page: Page, server: Server, query: str = "") -> FrameLocator:
    log_in(page, server)
    page.goto("about:blank")
    page.goto(f"{server.url}/#/extensions/{KEY}{query}")
    ui = page.frame_locator("#extension-frame")
    expect(ui.locator("#status")).to_have_text("ready")
    return ui


def test_output_arrives_while_the_process_runs(page: Page, srv):
    ui = open_streams(page, srv)
    ui.locator("#run-tick").click()  # ticker.sh 2 3: "tick 1", three seconds, "tick 2", exit 0
    expect(ui.locator("#tick-first")).to_have_text("tick 1")
    assert ui.locator("#tick-close").text_content() == "pending"  # rendered while the process still runs
    assert ui.locator("#tick-closed-at-first").text_content() == "no"
    expect(ui.locator("#tick-close")).to_have_text("0")
    assert ui.locator("#tick-log").text_content() == "tick 1\ntick 2\n"
    assert int(ui.locator("#tick-gap").text_content()) >= 2500  # first output to onClose


def test_lines_per_stream_final_partial_lines_and_exit_codes(page: Page, srv):
    ui = open_streams(page, srv)
    ui.locator("#run-chatty").click()  # splitOutputLines, exit 3
    expect(ui.locator("#chatty-close")).to_have_text("3")
    calls = json.loads(ui.locator("#chatty-lines").text_content())
    assert all(key in ("stdout", "stderr") for key, _ in calls)  # one key per call
    assert [text for key, text in calls if key == "stdout"] == [
        "out 1", "out 2 is split", "out 3", "", "out 5 after an empty line", "out 6 has no newline",
    ]
    assert [text for key, text in calls if key == "stderr"] == [
        "err 1", "err 2 is split too", "err 3 has no newline",
    ]
    # the lines without a newline come last, when the process has exited
    assert calls[-2:] == [["stdout", "out 6 has no newline"], ["stderr", "err 3 has no newline"]]
    expect(ui.locator("#chatty-after")).to_have_text("0")  # nothing after onClose

    ui.locator("#run-chatty-raw").click()  # raw chunks, exit 0
    expect(ui.locator("#chatty-raw-close")).to_have_text("0")
    assert ui.locator("#chatty-raw-out").text_content() == (
        "out 1\nout 2 is split\nout 3\n\nout 5 after an empty line\nout 6 has no newline"
    )
    assert ui.locator("#chatty-raw-err").text_content() == "err 1\nerr 2 is split too\nerr 3 has no newline"
    assert ui.locator("#chatty-raw-keys").text_content() == "yes"
    assert int(ui.locator("#chatty-raw-chunks").text_content()) >= 2  # delivered as written, not at exit


def test_streaming_passes_args_verbatim_while_exec_splits_them(page: Page, srv):
    ui = open_streams(page, srv)
    ui.locator("#run-argv").click()  # args ["a b", "c", "'q r'"]
    expect(ui.locator("#argv-stream")).to_have_text("argc=3 [a b] [c] ['q r']")
    expect(ui.locator("#argv-exec")).to_have_text("argc=4 [a] [b] [c] [q r]")


def test_cwd_and_env_reach_all_three_clis_streaming_and_not(page: Page, srv, tmp_path):
    work = tmp_path / "work dir"
    work.mkdir()
    (work / "vars.env").write_text("FROM_FILE=from file\n")  # docker run --env-file vars.env: relative to cwd
    ui = open_streams(page, srv, f"?cwd={urllib.request.quote(str(work))}")
    ui.locator("#run-env").click()
    for mode in ("stream", "exec"):
        expect(ui.locator(f"#env-host-{mode}")).to_have_text(f"cwd={work} env=v a l", timeout=20_000)
        expect(ui.locator(f"#env-vm-{mode}")).to_have_text("/app v a l", timeout=20_000)
        expect(ui.locator(f"#env-docker-{mode}")).to_have_text("from file v a l", timeout=20_000)


def test_close_ends_a_docker_events_stream(page: Page, srv, installed, marker, docker_client: docker.DockerClient):
    name = f"streams-events-{marker}"
    ui = open_streams(page, srv, f"?ctr={name}")
    ui.locator("#run-events").click()
    assert wait_until(lambda: any("events" in cmd for cmd in marked(marker).values())), "docker events not started"
    container = docker_client.containers.create(installed[1], command=["true"], name=name, labels={"dockext.test": "1"})
    try:
        expect(ui.locator("#events-seen")).to_contain_text("create", timeout=15_000)
        assert ui.locator("#events-closed").text_content() == "pending"
        ui.locator("#close-events").click()
        # the docker CLI's own status: 143 when SIGTERM ended it, 0 when its stream ended first (it catches the
        # signal; see test_conformance.test_v1_stream_close_ends_docker_events)
        expect(ui.locator("#events-closed")).to_have_text(re.compile(r"^(143|0) errors=0$"))
        assert marked(marker) == {}  # onClose comes once the process group is gone
    finally:
        container.remove(force=True)


def test_refusals_and_failures_come_back_through_on_error(page: Page, srv, marker):
    ui = open_streams(page, srv, f"?marker={marker}")
    ui.locator("#run-refused").click()
    expect(ui.locator("#refused-H")).to_have_text(
        re.compile(r"^ExecRefused\|the docker command may not start with the option '-H'.*\|code=126\|output=0$")
    )
    expect(ui.locator("#refused-ld")).to_have_text(
        re.compile(r"^ExecRefused\|environment variable LD_PRELOAD is not allowed.*\|code=126\|output=0$")
    )
    expect(ui.locator("#refused-bin")).to_have_text(
        re.compile(r"^ExecRefused\|'touch' is not a host binary of this extension.*\|code=126\|output=0$")
    )
    expect(ui.locator("#refused-cwd")).to_have_text(
        f"ExecError|cwd /nonexistent-{marker}: no such directory|code=127|output=0"
    )
    assert not Path(f"/tmp/dockext-refused-{marker}").exists()


def _instance(server: Server, key: str) -> tuple[str, str]:
    """Open a UI instance from outside the browser (token auth): ``(origin, capability)``."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/api/ui-instances", method="POST",
        data=json.dumps({"extension": key}).encode(),
        headers={"Host": f"localhost:{server.port}", "Authorization": f"Bearer {server.token}",
                 "X-Dockext": "1", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body = json.loads(response.read())
    return body["origin"], body["url"][len(body["origin"]):].split("/")[2]


def test_the_stream_socket_checks_origin_and_capability(srv):
    origin, cap = _instance(srv, KEY)
    other_origin, other_cap = _instance(srv, OTHER_KEY)

    def attempt(host_origin: str, path_cap: str, origin_header: str) -> str:
        # the URL names the extension's host (the Host header); the connection goes to 127.0.0.1
        url = f"{host_origin.replace('http://', 'ws://')}/i/{path_cap}/__dockext__/stream"
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        try:
            with connect(url, sock=sock, origin=origin_header, open_timeout=5) as ws:
                ws.send(json.dumps({"cli": "host", "cmd": "argv.sh", "args": ["hi"]}))
                output = b"".join(m[1:] for m in ws if isinstance(m, bytes) and m[:1] == b"\x01")
                return output.decode().splitlines()[1]
        except InvalidStatus as exc:
            return f"refused {exc.response.status_code}"

    assert [
        attempt(origin, cap, origin),  # the extension's own page
        attempt(origin, cap, "http://evil.example"),  # foreign Origin
        attempt(origin, cap, f"http://dockext.localhost:{srv.port}"),  # the dashboard is foreign too
        attempt(origin, "wrong-capability", origin),
        attempt(origin, other_cap, origin),  # another extension's capability
        attempt(other_origin, cap, other_origin),  # ... or its origin with ours
    ] == ["[hi]"] + ["refused 403"] * 5


def test_engine_lists_and_a_failed_navigation_reach_the_page(page: Page, srv, installed, marker,
                                                             docker_client: docker.DockerClient):
    name = f"streams-list-{marker}"
    container = docker_client.containers.create(installed[1], command=["true"], name=name, labels={"dockext.test": "1"})
    try:
        ui = open_streams(page, srv, f"?ctr={name}&marker={marker}")
        ui.locator("#run-dashboard").click()
        expect(ui.locator("#list-containers")).to_have_text(f"/{name}")
        expect(ui.locator("#list-images")).to_contain_text(installed[1])
        # the dashboard answers the request: no such container, and the tab stays open
        expect(ui.locator("#navigate-missing")).to_have_text(re.compile(r"^rejected Error: .*no-such-container-"))
        expect(ui.locator("#navigate-devenv")).to_have_text("resolved undefined")
        expect(page.locator("#extension-frame")).to_have_count(1)
    finally:
        container.remove(force=True)
