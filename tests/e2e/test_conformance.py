"""The ddClient conformance suite: two extension UIs written in TypeScript against the official typings
(@docker/extension-api-client-types 0.4.2, tests/conformance/src) call every member of the v1 and the v0 API in
real Chromium, against a real ``dockext serve``, the real engine, a real backend and a real host binary; each
result is rendered into an element with a fixed id (format: tests/conformance/src/common.ts) and asserted here,
one test per member or behaviour.

The whole suite runs twice: on the machine's Docker engine, and on a Podman service (tests/support/podman.py),
whose Docker-compatible API dockext drives the same way. Where the two engines answer differently by design
(the name of an exec event, how an image's short name is spelt), the test says which engine gives what.

The expected values are the documented contracts: the typings, docs/design.md, the reference
(extensions-platform.md §4.4) and the failure shapes documented at the top of static/sdk/ddclient.js.
"""

from __future__ import annotations

import json
import platform
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
from playwright.sync_api import Browser, BrowserContext, Frame, Locator, Page, expect

from tests.support.cli import run_dockext
from tests.support.images import CONFORMANCE_DIR, TEST_LABEL, compile_conformance, copy_image
from tests.support.podman import podman_engine
from tests.support.procs import cmdline, pids_where
from tests.support.server import Server, start_server

pytestmark = [pytest.mark.engine, pytest.mark.browser]

PREFIX = "dockext-test-conf"  # our own image names: other suites install fixtures on the same engine
ARCH = {"x86_64": "x64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
TAG = "1.0.0"
ENV_FILE_VALUE = "read through a relative --env-file"
MISSING_IMAGE = "dockext-conformance-no-such-image:0"
EXEC_HELPERS = ["function", "function", "function"]  # lines, parseJsonLines, parseJsonObject on rejections


@dataclass
class Ext:
    version: str
    ref: str
    key: str
    project: str
    image_id: str
    container_id: str = ""
    container_name: str = ""


@dataclass(frozen=True)
class Engine:
    """The engine the suite runs on: ``docker`` (the machine's) or ``podman``."""

    name: str
    client: docker.DockerClient
    env: dict[str, str]  # what points dockext at it (DOCKER_HOST), empty for the machine's engine


@dataclass
class Conformance:
    server: Server
    exts: dict[str, Ext]
    volume: str
    files: Path
    api_version: str
    engine: Engine


@dataclass
class Session:
    """One browser page on one conformance extension, and what the page asked the browser to open."""

    conf: Conformance
    ext: Ext
    context: BrowserContext
    page: Page
    results: dict[str, Any] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    popups: list[Page] = field(default_factory=list)
    network_changed: list[str] = field(default_factory=list)  # requests Chromium aborted with ERR_NETWORK_CHANGED
    attempts: int = 0

    @property
    def frame(self) -> Frame:
        handle = self.page.locator("#extension-frame").element_handle()
        frame = handle.content_frame() if handle else None
        assert frame is not None, "the extension frame is not there"
        return frame

    def query(self) -> str:
        return "?" + urllib.parse.urlencode({
            "container": self.ext.container_id, "containerName": self.ext.container_name,
            "project": self.ext.project, "image": self.ext.image_id, "ref": self.ext.ref, "tag": TAG,
            "volume": self.conf.volume, "dir": str(self.conf.files),
            # the event an exec starts with: Docker's exec_create (its filter also takes "exec" for any exec_*
            # event, exec_die of an earlier exec included), Podman's exec
            "execEvent": "exec" if self.conf.engine.name == "podman" else "exec_create",
        })

    def open(self) -> None:
        """Opens (again) the extension's tab through a deep link carrying the query, and waits for its page."""
        self.page.evaluate("(hash) => { location.hash = hash; }", f"#/extensions/{self.ext.key}{self.query()}")
        expect(self.page.locator("#extension-frame")).to_have_attribute("data-key", self.ext.key)
        expect(self.page.frame_locator("#extension-frame").locator("#status")).to_have_text(
            "done", timeout=120_000)

    def read_results(self) -> dict[str, Any]:
        raw = self.frame.evaluate(
            """() => Object.fromEntries([...document.querySelectorAll("[data-result]")]
                 .map((e) => [e.id, {state: e.dataset.state, text: e.textContent}]))""")
        out: dict[str, Any] = {}
        for key, item in raw.items():
            out[key] = json.loads(item["text"]) if item["state"] == "done" else {"state": item["state"]}
        return out

    def click(self, button: str, *, timeout: float = 60_000) -> Any:
        """Clicks a button of the page; returns its rendered result (waits until it is rendered)."""
        ui = self.page.frame_locator("#extension-frame")
        press_enter(self.page, ui.locator(f"#{button}"))
        return self.result_of(button, timeout=timeout)

    def result_of(self, button: str, *, timeout: float = 60_000) -> Any:
        ui = self.page.frame_locator("#extension-frame")
        expect(ui.locator(f"#{button}-result")).to_have_attribute("data-state", "done", timeout=timeout)
        return json.loads(ui.locator(f"#{button}-result").text_content() or "null")


def press_enter(page: Page, button: Locator, *, removes_frame: bool = False) -> None:
    """Activates a button of the extension frame with the keyboard, as a user can.

    Not a mouse click: the dashboard's toasts float over the frame (and stay while the pointer rests on
    one), so a click at the button's position could land on a toast. The key goes through the page's
    keyboard, not the element, and a button acts on the keydown of Enter. When that removes the frame (a
    navigation), the keyup waits until the frame is gone: a key event routed to the frame's renderer while
    the frame is torn down is never acknowledged, and Playwright would wait for it forever.
    """
    button.focus()
    page.keyboard.down("Enter")
    if removes_frame:
        expect(page.locator("#extension-frame")).to_have_count(0, timeout=15_000)
    page.keyboard.up("Enter")


# ------------------------------------------------------------------------------------------------ set-up


def _wait_for_backend(home: Path, key: str, timeout: float = 60) -> None:
    """Until the extension's backend answers GET /hello on its socket (what install started)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        for sock_path in (home / "gs").glob("*/conformance.sock"):
            record = json.loads((home / "extensions" / key / "extension.json").read_text())
            if sock_path.parent.name != (record.get("vm") or {}).get("gs_key"):
                continue
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(2)
                    s.connect(str(sock_path))
                    s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError as exc:
                last = exc
        time.sleep(0.2)
    raise AssertionError(f"the backend of {key} did not answer within {timeout} s ({last})")


@pytest.fixture(scope="module", params=["docker", "podman"])
def engine(request, tmp_path_factory, docker_client: docker.DockerClient) -> Iterator[Engine]:
    if request.param == "docker":
        yield Engine("docker", docker_client, {})
        return
    with podman_engine(tmp_path_factory.mktemp("podman") / "podman.log") as podman:
        yield Engine("podman", podman.client, {"DOCKER_HOST": podman.host})


@pytest.fixture(scope="module")
def conf(tmp_path_factory, fixture_image, engine: Engine, docker_client: docker.DockerClient) -> Iterator[Conformance]:
    server = start_server(tmp_path_factory.mktemp("conformance") / "home", extra_env=engine.env)
    client = engine.client
    files = Path(tempfile.mkdtemp(prefix="dockext-conformance-files-"))
    (files / "sub").mkdir()
    (files / "sub" / "inside.json").write_text("{}")
    (files / "data.json").write_text('{"data": 1}')
    (files / "other.json").write_text("{}")
    (files / "notes.txt").write_text("notes")
    (files / "conformance.env").write_text(f"FROM_ENV_FILE={ENV_FILE_VALUE}\n")
    volume = client.volumes.create(f"dockext-test-conf-{uuid.uuid4().hex[:8]}", labels={TEST_LABEL: "1"})
    exts: dict[str, Ext] = {}
    try:
        for version in ("v1", "v0"):
            ref = fixture_image(f"conformance-{version}", tag=TAG, repo_prefix=PREFIX)
            if client is not docker_client:
                copy_image(docker_client, client, ref)
            key = f"{PREFIX}_conformance-{version}"
            exts[version] = Ext(version, ref, key, f"{key}-desktop-extension", client.images.get(ref).id)
            run_dockext("install", "-f", ref, home=server.home, env=engine.env)
        for ext in exts.values():
            containers = [c for c in client.containers.list(
                all=True, filters={"label": f"com.docker.compose.project={ext.project}"})
                if c.labels.get("com.docker.compose.service") != "dockext-sockperm"]
            assert len(containers) == 1, [c.name for c in containers]
            ext.container_id, ext.container_name = containers[0].id, containers[0].name
            _wait_for_backend(server.home, ext.key)
        yield Conformance(server, exts, volume.name, files, client.version()["ApiVersion"], engine)
    finally:
        for ext in exts.values():
            run_dockext("rm", ext.ref, home=server.home, check=False, env=engine.env)
        server.stop()
        volume.remove(force=True)
        shutil.rmtree(files, ignore_errors=True)


# Every toast the dashboard shows, recorded as it appears (they dismiss themselves after a few seconds).
RECORD_TOASTS = """() => {
  window.__toastLog = [];
  new MutationObserver((mutations) => {
    for (const m of mutations) for (const node of m.addedNodes) {
      if (!node.classList || !node.classList.contains("toast")) continue;
      const part = (name) => node.querySelector(name);
      window.__toastLog.push({className: node.className,
        source: part(".toast-source") && part(".toast-source").textContent,
        text: part(".toast-message") && part(".toast-message").textContent,
        elements: part(".toast-message") ? part(".toast-message").children.length : -1});
    }
  }).observe(document.getElementById("toasts"), {childList: true});
}"""


def _request_failed(session: Session, request) -> None:
    if "ERR_NETWORK_CHANGED" in (request.failure or ""):
        session.network_changed.append(request.url)


def popped(session: Session, popup: Page) -> None:
    """Keeps a page the extension opened (``openExternal``) and puts the dashboard's tab back in front, as a user
    who reads the new tab and comes back does: Chromium gives a tab behind another one animation frame per second,
    and each Playwright click on the dashboard waits two frames for the element to be still (2 s a click)."""
    session.popups.append(popup)
    session.page.bring_to_front()


def _session(conf: Conformance, browser: Browser, version: str) -> Iterator[Session]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    session = Session(conf, conf.exts[version], context, context.new_page())
    context.on("request", lambda request: session.requests.append(request.url))
    context.on("requestfailed", lambda request: _request_failed(session, request))
    context.on("page", lambda page: popped(session, page))
    try:
        session.page.goto(conf.server.login_url)
        expect(session.page.locator("#home-title")).to_be_visible()
        session.page.evaluate(RECORD_TOASTS)
        # Chromium aborts every request in flight when a network interface comes or goes (other test sessions
        # on this engine start containers, whose veth devices do that): such a run measured nothing about
        # dockext, so the page is run again, from a fresh UI instance. Any other failure stands.
        while True:
            session.attempts += 1
            session.network_changed.clear()
            session.open()
            session.results = session.read_results()
            if not session.network_changed or session.attempts == 5:
                break
            session.page.evaluate("location.hash = '#/'")
            expect(session.page.locator("#extension-frame")).to_have_count(0)
        yield session
    finally:
        context.close()


@pytest.fixture(scope="module")
def v1(conf: Conformance, browser: Browser) -> Iterator[Session]:
    yield from _session(conf, browser, "v1")


@pytest.fixture(scope="module")
def v0(conf: Conformance, browser: Browser) -> Iterator[Session]:
    yield from _session(conf, browser, "v0")


def ok(session: Session, check: str) -> Any:
    """The value check ``check`` resolved with; fails with what happened instead."""
    got = session.results.get(check)
    assert got is not None, f"no result element #{check}"
    assert set(got) == {"ok"}, (f"#{check}: expected a resolution, got {got} (page runs: {session.attempts}; "
                                f"aborted by network changes in the last: {len(session.network_changed)})")
    return got["ok"]


def rejected(session: Session, check: str) -> Any:
    value = ok(session, check)
    assert set(value) == {"rejected"}, f"#{check}: {value}"
    return value["rejected"]


def spellings(session: Session) -> set[str]:
    """How the session's engine names the extension's image (a short name): Docker keeps it, Podman spells it in
    full, with ``docker.io/`` when it built the image and ``localhost/`` when it loaded it."""
    ref = session.ext.ref
    return {ref} if session.conf.engine.name == "docker" else {f"docker.io/{ref}", f"localhost/{ref}"}


def docker_events_processes(container_name: str) -> list[str]:
    """Command lines of running `docker events` processes filtered on ``container_name``."""
    def match(pid: int) -> bool:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        return b"events" in words and f"container={container_name}".encode() in words
    return [c for pid in pids_where(match) if (c := cmdline(pid))]


def wait_until(check, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return bool(check())


# --------------------------------------------------------------------------------------- the TypeScript


def test_sources_type_check_and_a_type_error_fails_the_build(tmp_path: Path):
    """tsc compiled both pages (the fixtures need them), and the same project with one wrong call fails."""
    build = compile_conformance()
    for name in ("common.js", "v1.js", "v0.js"):
        text = (build / name).read_text()
        assert "import " not in text and "export " not in text and "require(" not in text, name  # plain scripts
    bad = tmp_path / "bad"
    shutil.copytree(CONFORMANCE_DIR, bad, ignore=shutil.ignore_patterns("node_modules", "build"), symlinks=True)
    (bad / "node_modules").symlink_to(CONFORMANCE_DIR / "node_modules")
    (bad / "src" / "wrong.ts").write_text(
        "(() => { const dd: V1Client = window.ddClient; void dd.docker.cli.exec('ps', '-a'); })();\n")
    tsc = CONFORMANCE_DIR / "node_modules" / "typescript" / "bin" / "tsc"
    proc = subprocess.run(["node", str(tsc), "-p", str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0
    # args must be string[]
    assert "src/wrong.ts(1,78): error TS2345" in proc.stdout, proc.stdout
    assert not (bad / "build" / "wrong.js").exists()


# ------------------------------------------------------------------------------------------- v1: extension


def test_v1_extension_image(v1: Session):
    assert ok(v1, "extension-image") == v1.ext.ref


def test_v1_extension_members(v1: Session):
    assert ok(v1, "extension-members") == {
        "vmCliExec": "function", "service": ["function"] * 7, "hostCliExec": "function"}


def test_v1_host_platform_arch_hostname(v1: Session):
    assert ok(v1, "host-info") == {"platform": "linux", "arch": ARCH, "hostname": socket.gethostname()}


def test_v1_open_external_http_opens_a_browser_window(v1: Session):
    assert ok(v1, "host-open-external-http") == {"returned": "<undefined>"}
    url = "http://127.0.0.1:9/opened-by-conformance-v1?x=1"
    assert wait_until(lambda: url in v1.requests), v1.requests


def test_v1_open_external_file_url_is_refused(v1: Session):
    threw = ok(v1, "host-open-external-file")
    assert set(threw) == {"threw"} and threw["threw"]["$error"] == "TypeError", threw
    assert not any(u.startswith("file:") for u in v1.requests + [p.url for p in v1.popups])


def toasts_shown(session: Session) -> list[tuple[str, str, str, int]]:
    log = session.page.evaluate("window.__toastLog")
    return [(t["className"], t["source"], t["text"], t["elements"]) for t in log]


def test_v1_toasts(v1: Session):
    assert ok(v1, "toast") == ["<undefined>"] * 3
    shown = toasts_shown(v1)
    for level, text in [("success", "conformance v1: success toast"), ("warning", "conformance v1: warning toast"),
                        ("error", "conformance v1: error toast <b>not bold</b>")]:
        # with the extension's title as source, the text as text (no <b> element), at the right level
        assert ("toast toast-" + level, "Conformance v1", text, 0) in shown, shown


# ---------------------------------------------------------------------------------------- v1: docker exec


def test_v1_docker_exec_resolves_with_quotes_stripped(v1: Session):
    assert ok(v1, "docker-exec-json") == {
        "keys": ["cmd", "stderr", "stdout"], "cmd": 'docker info --format "{{json .OSType}}"', "code": "<absent>",
        "stdout": '"linux"\n', "stderr": None, "lines": ['"linux"'], "parsed": "linux"}


def test_v1_docker_exec_parse_json_lines(v1: Session):
    [name] = ok(v1, "docker-exec-json-lines")
    assert name in spellings(v1), name


def test_v1_docker_exec_non_zero_rejects_with_node_exec_error_shape(v1: Session):
    err = rejected(v1, "docker-exec-error")
    assert {k: err[k] for k in ("killed", "code", "signal", "cmd", "helpers")} == {
        "killed": False, "code": 1, "signal": None, "cmd": f"docker image inspect {MISSING_IMAGE}",
        "helpers": EXEC_HELPERS}
    assert isinstance(err["stdout"], str)
    assert "No such image" in err["stderr"]


def test_v1_docker_exec_env(v1: Session):
    assert ok(v1, "docker-exec-env") == "from the docker CLI's environment\n"


def test_v1_docker_exec_cwd(v1: Session):
    assert ok(v1, "docker-exec-cwd") == f"{ENV_FILE_VALUE}\n"


def test_v1_docker_exec_global_flags_are_refused(v1: Session):
    err = rejected(v1, "docker-exec-refused")
    assert (err["name"], err["killed"], err["code"], err["helpers"]) == ("ExecRefused", False, 126, EXEC_HELPERS)


# -------------------------------------------------------------------------------------------- v1: vm exec


def test_v1_vm_exec_joins_and_splits_arguments(v1: Session):
    assert ok(v1, "vm-exec-split") == {
        "plain": {"keys": ["cmd", "stderr", "stdout"], "cmd": "/app/args.sh one two three", "code": "<absent>",
                  "stdout": "3: [one] [two] [three]\n", "stderr": "", "lines": ["3: [one] [two] [three]"]},
        "quoted": "2: [one two] [three four]\n"}


def test_v1_vm_exec_cwd_and_env(v1: Session):
    assert ok(v1, "vm-exec-cwd-env") == ["/app", "vm env value"]


def test_v1_vm_exec_non_zero_rejects(v1: Session):
    assert rejected(v1, "vm-exec-error") == {
        "killed": False, "code": 7, "signal": None, "cmd": 'sh -c "echo out; echo err >&2; exit 7"',
        "stdout": "out\n", "stderr": "err\n", "helpers": EXEC_HELPERS}


# ------------------------------------------------------------------------------------------ v1: host exec


def test_v1_host_exec_joins_and_splits_arguments(v1: Session):
    assert ok(v1, "host-exec-args") == {
        "keys": ["cmd", "stderr", "stdout"], "cmd": "conf-host args one two 'three four'", "code": "<absent>",
        "stdout": "3: [one] [two] [three four]\n", "stderr": "", "lines": ["3: [one] [two] [three four]"]}


def test_v1_host_exec_runs_in_the_extension_host_folder(v1: Session):
    host_dir = v1.conf.server.home / "extensions" / v1.ext.key / "host"
    assert ok(v1, "host-exec-default-cwd") == f"cwd={host_dir} env=<unset>\n"


def test_v1_host_exec_cwd_and_env(v1: Session):
    assert ok(v1, "host-exec-cwd-env") == f"cwd={v1.conf.files} env=host env value\n"


def test_v1_host_exec_result_helpers(v1: Session):
    assert ok(v1, "host-exec-json") == {
        "lines": ['{"a":1}', '{"b":[2,3]}'], "jsonLines": [{"a": 1}, {"b": [2, 3]}], "object": {"x": {"y": True}}}


def test_v1_host_exec_non_zero_rejects(v1: Session):
    assert rejected(v1, "host-exec-error") == {
        "killed": False, "code": 3, "signal": None, "cmd": "conf-host fail", "stdout": "to stdout\n",
        "stderr": "to stderr\n", "helpers": EXEC_HELPERS}


def test_v1_host_exec_of_an_undeclared_binary_is_refused(v1: Session):
    err = rejected(v1, "host-exec-refused")
    assert (err["name"], err["killed"], err["code"]) == ("ExecRefused", False, 126)


# ------------------------------------------------------------------------------------------ v1: streaming


def test_v1_stream_lines_in_order_and_exit_code(v1: Session):
    assert ok(v1, "stream-host-lines") == {
        "events": [{"stdout": "out 1"}, {"stderr": "err 1"}, {"stdout": "out 2"}, {"stderr": "err 2"}],
        "errors": [], "closes": [{"exitCode": 5, "type": "number"}]}


def test_v1_stream_raw_chunks(v1: Session):
    assert ok(v1, "stream-host-chunks") == {
        "keys": ["stderr", "stdout"], "stdout": "out 1\nout 2\n", "stderr": "err 1\nerr 2\n", "errors": [],
        "closes": [{"exitCode": 5, "type": "number"}]}


def test_v1_stream_args_are_verbatim(v1: Session):
    assert ok(v1, "stream-host-verbatim") == {
        "events": [{"stdout": "2: [one two] [three]"}], "errors": [], "closes": [{"exitCode": 0, "type": "number"}]}


def test_v1_stream_cwd_and_env(v1: Session):
    assert ok(v1, "stream-host-cwd-env") == {
        "events": [{"stdout": f"cwd={v1.conf.files} env=streamed env value"}], "errors": [],
        "closes": [{"exitCode": 0, "type": "number"}]}


def test_v1_stream_vm_exec(v1: Session):
    assert ok(v1, "stream-vm") == {
        "events": [{"stdout": "vm out"}, {"stderr": "vm err"}], "errors": [],
        "closes": [{"exitCode": 4, "type": "number"}]}


def test_v1_stream_docker_exec(v1: Session):
    assert ok(v1, "stream-docker") == {
        "events": [{"stdout": v1.conf.api_version}], "errors": [], "closes": [{"exitCode": 0, "type": "number"}]}


def test_v1_stream_refused_calls_on_error_then_on_close(v1: Session):
    got = ok(v1, "stream-refused")
    assert got["events"] == []
    assert len(got["errors"]) == 1 and got["errors"][0]["name"] == "ExecRefused", got
    assert got["closes"] == [{"exitCode": 126, "type": "number"}]


def process_group_members(pgid: int) -> list[str]:
    """Command lines of the live processes of group ``pgid`` (a zombie has none)."""
    def in_group(pid: int) -> bool:  # /proc/PID/stat: "pid (comm) state ppid pgrp ..."
        return int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[2]) == pgid
    return [c for pid in pids_where(in_group) if (c := cmdline(pid))]


def test_v1_stream_close_ends_a_host_process(v1: Session):
    got = ok(v1, "stream-host-close")
    first, returned = got["events"]
    assert first["stdout"].startswith("waiting in group "), got
    assert returned == {"closeReturned": "<undefined>"}
    assert got["errors"] == []
    assert got["closes"] == [{"exitCode": 143, "type": "number"}]  # killed by SIGTERM: 128 + 15
    # onClose came once the whole group was gone: the shell and the sleep it started
    assert process_group_members(int(first["stdout"].rsplit(" ", 1)[1])) == []


def test_v1_stream_close_ends_docker_events(v1: Session):
    got = ok(v1, "stream-docker-events-close")
    first, returned = got["events"]
    assert first["type"] == "container" and first["actor"] == v1.ext.container_id, got
    if v1.conf.engine.name == "podman":
        assert first["action"] == "exec", got  # Podman names one event for an exec's start
    else:
        assert first["action"].startswith("exec_create"), got
    assert returned == {"closeReturned": "<undefined>"}
    assert got["errors"] == []
    # One onClose, after close(), with the docker CLI's own status. The CLI (28+) catches SIGTERM: it exits 143
    # when the signal is what ended the command, and 0 when the stream it was reading ended first with a plain
    # cancellation (cmd/docker/docker.go does not report those), so both are what Docker Desktop would pass on too.
    # That a process killed by a signal reports 128 + N is shown by test_v1_stream_close_ends_a_host_process.
    [close] = got["closes"]
    assert close in ({"exitCode": 143, "type": "number", "afterClose": True},
                     {"exitCode": 0, "type": "number", "afterClose": True}), got
    # and the process is gone from the host
    assert wait_until(lambda: not docker_events_processes(v1.ext.container_name), 5), \
        docker_events_processes(v1.ext.container_name)


# ----------------------------------------------------------------------------------------- v1: vm.service


def echo(method: str, body: Any, *, query: str = "", content_type: str | None = "application/json",
         header: str | None = None) -> dict[str, Any]:
    return {"method": method, "path": "/echo", "query": query, "body": body, "contentType": content_type,
            "header": header}


def test_v1_service_get(v1: Session):
    assert ok(v1, "service-get") == {"message": "hello from the conformance backend", "method": "GET"}


def test_v1_service_post(v1: Session):
    assert ok(v1, "service-post") == echo("POST", {"n": 1, "s": "ä"})


def test_v1_service_put(v1: Session):
    assert ok(v1, "service-put") == echo("PUT", {"put": True})


def test_v1_service_patch(v1: Session):
    assert ok(v1, "service-patch") == echo("PATCH", [1, 2])


def test_v1_service_delete(v1: Session):
    assert ok(v1, "service-delete") == echo("DELETE", None, query="id=7", content_type=None)


def test_v1_service_head(v1: Session):
    got = ok(v1, "service-head")
    assert got["seen"] == ["HEAD"]  # the backend saw a HEAD request
    assert got["head"] in ("", "<undefined>", None)  # and it resolved with no body


def test_v1_service_request(v1: Session):
    assert ok(v1, "service-request") == echo("PUT", {"k": "v"}, query="via=request", header="yes")
    assert ok(v1, "service-request-get") == {"message": "hello from the conformance backend", "method": "GET"}


def test_v1_service_text_answer(v1: Session):
    assert ok(v1, "service-text") == "plain text from the backend"


def test_v1_service_non_2xx_rejects_with_service_error(v1: Session):
    err = rejected(v1, "service-418")
    assert (err["name"], err["message"], err["statusCode"]) == ("ServiceError", "status 418 from the backend", 418)
    err = rejected(v1, "service-500")
    assert (err["name"], err["message"], err["statusCode"]) == ("ServiceError", "status 500 from the backend", 500)


# ---------------------------------------------------------------------------------------------- v1: lists


def test_v1_list_containers_with_filters(v1: Session):
    assert ok(v1, "list-containers") == [{"id": v1.ext.container_id, "names": [f"/{v1.ext.container_name}"],
                                          "state": "running", "project": v1.ext.project}]
    assert ok(v1, "list-containers-object-filter") == [v1.ext.container_id]
    assert ok(v1, "list-containers-none") == []


def test_v1_list_images(v1: Session):
    images = ok(v1, "list-images")
    assert [i["id"] for i in images] == [v1.ext.image_id]
    assert spellings(v1) & set(images[0]["repoTags"]), images
    assert ok(v1, "list-images-all") == {"isArray": True, "hasOwnImage": True}


# --------------------------------------------------------------------------- v1: dialogs (the user picks)


def dashboard_dialog(page: Page):
    return page.get_by_role("dialog")


def test_v1_dialog_open_file_with_filters(v1: Session):
    press_enter(v1.page, v1.page.frame_locator("#extension-frame").locator("#dialog-file"))
    d = dashboard_dialog(v1.page)
    expect(d.get_by_role("heading")).to_have_text("Conformance: pick a JSON file")
    expect(d).to_contain_text("Conformance v1 asks you to choose a file")
    names = d.locator('[role="option"]')
    expect(names).to_have_count(3)
    assert names.evaluate_all("els => els.map(e => e.dataset.name)") == ["sub", "data.json", "other.json"]
    d.locator('[data-name="data.json"]').click()
    d.get_by_role("button", name="Pick").click()
    assert v1.result_of("dialog-file") == {"ok": {"keys": ["canceled", "filePaths"], "canceled": False,
                                                  "filePaths": [str(v1.conf.files / "data.json")]}}


def test_v1_dialog_multi_selections(v1: Session):
    press_enter(v1.page, v1.page.frame_locator("#extension-frame").locator("#dialog-multi"))
    d = dashboard_dialog(v1.page)
    d.locator('[data-name="other.json"]').click()
    d.locator('[data-name="data.json"]').click(modifiers=["Control"])
    d.get_by_role("button", name="Open").click()
    assert v1.result_of("dialog-multi") == {"ok": {"keys": ["canceled", "filePaths"], "canceled": False,
                                                   "filePaths": [str(v1.conf.files / n) for n in
                                                                 ("data.json", "other.json")]}}


def test_v1_dialog_open_directory_with_the_keyboard(v1: Session):
    press_enter(v1.page, v1.page.frame_locator("#extension-frame").locator("#dialog-dir"))
    d = dashboard_dialog(v1.page)
    expect(d.locator('[data-name="sub"]')).to_be_visible()
    v1.page.keyboard.press("Home")
    v1.page.keyboard.press("Enter")  # into sub/
    expect(d.locator('[aria-current="location"]')).to_have_text("sub")
    v1.page.keyboard.press("Control+Enter")  # choose this folder
    assert v1.result_of("dialog-dir") == {"ok": {"keys": ["canceled", "filePaths"], "canceled": False,
                                                 "filePaths": [str(v1.conf.files / "sub")]}}


def test_v1_dialog_cancel(v1: Session):
    press_enter(v1.page, v1.page.frame_locator("#extension-frame").locator("#dialog-cancel"))
    expect(dashboard_dialog(v1.page)).to_be_visible()
    v1.page.keyboard.press("Escape")
    assert v1.result_of("dialog-cancel") == {"ok": {"keys": ["canceled", "filePaths"], "canceled": True,
                                                    "filePaths": []}}


# ------------------------------------------------------------------------------------- v1: navigate, dead


def test_v1_navigate_to_missing_objects_rejects(v1: Session):
    got = v1.click("navigate-missing")
    assert set(got) == {"ok"}, got
    names = ["viewContainer", "viewContainerLogs", "viewContainerInspect", "viewContainerTerminal",
             "viewContainerStats", "viewImage", "viewVolume"]
    assert sorted(got["ok"]) == sorted(names)
    for name in names:
        outcome = got["ok"][name]
        assert set(outcome) == {"rejected"}, (name, outcome)
        assert outcome["rejected"].get("message"), (name, outcome)
    expect(v1.page.locator("#extension-frame")).to_have_count(1)  # still on the extension


def test_v1_service_rejects_when_the_backend_is_down(v1: Session):
    container = v1.conf.engine.client.containers.get(v1.ext.container_id)
    container.stop(timeout=5)
    try:
        err = v1.click("service-dead")["ok"]["rejected"]
        assert (err["name"], err["statusCode"]) == ("BackendError", 502), err
        assert err["message"]
    finally:
        container.start()
        _wait_for_backend(v1.conf.server.home, v1.ext.key)


NAVIGATION_V1 = [
    ("viewContainers", "#/containers"),
    ("viewContainer", "#/containers/{container}"),
    ("viewContainerLogs", "#/containers/{container}/logs"),
    ("viewContainerInspect", "#/containers/{container}/inspect"),
    ("viewContainerTerminal", "#/containers/{container}/terminal"),
    ("viewContainerStats", "#/containers/{container}/stats"),
    ("viewImages", "#/images"),
    ("viewImage", "#/images/{image}"),
    ("viewVolumes", "#/volumes"),
    ("viewVolume", "#/volumes/{volume}"),
]


def check_navigation(session: Session, intent: str, expected: str) -> None:
    if not session.page.locator("#extension-frame").count():
        session.open()
    press_enter(session.page, session.page.frame_locator("#extension-frame").locator(f"#nav-{intent}"),
                removes_frame=True)
    target = expected.format(container=session.ext.container_id, image=session.ext.image_id,
                             volume=session.conf.volume)
    # the dashboard lands on the view of that object, and the extension's UI is gone
    expect(session.page.locator("#extension-frame")).to_have_count(0, timeout=15_000)
    assert wait_until(lambda: urllib.parse.unquote(session.page.evaluate("location.hash")) == target), \
        session.page.evaluate("location.hash")
    panel = session.page.locator("#panels > :not([hidden])")
    expect(panel).to_have_count(1)
    if "{container}" in expected:
        expect(panel).to_contain_text(session.ext.container_name)
    elif "{image}" in expected:
        expect(panel).to_contain_text(session.ext.image_id.removeprefix("sha256:")[:12])
    elif "{volume}" in expected:
        expect(panel).to_contain_text(session.conf.volume)


@pytest.mark.parametrize(("intent", "expected"), NAVIGATION_V1)
def test_v1_navigate(v1: Session, intent: str, expected: str):
    check_navigation(v1, intent, expected)


# ------------------------------------------------------------------------------------------------ v0


def test_v0_backend_members(v0: Session):
    assert ok(v0, "v0-backend-members") == ["function"] * 10


def test_v0_backend_http(v0: Session):
    assert ok(v0, "v0-backend-get") == {"message": "hello from the conformance backend", "method": "GET"}
    assert ok(v0, "v0-backend-post") == echo("POST", {"v0": True})
    assert ok(v0, "v0-backend-put") == echo("PUT", "plain string body", content_type="text/plain;charset=UTF-8")
    assert ok(v0, "v0-backend-patch") == echo("PATCH", {"n": 2})
    assert ok(v0, "v0-backend-delete") == echo("DELETE", None, content_type=None)
    assert ok(v0, "v0-backend-head")["seen"] == ["HEAD"]
    assert ok(v0, "v0-backend-request") == echo("PATCH", {"r": 1}, query="via=v0", header="v0")
    err = rejected(v0, "v0-backend-404")
    assert (err["name"], err["message"], err["statusCode"]) == ("ServiceError", "status 404 from the backend", 404)


def test_v0_exec_in_vm_extension(v0: Session):
    assert ok(v0, "v0-exec-in-vm") == {
        "keys": ["cmd", "stderr", "stdout"], "cmd": "/app/args.sh one 'two three'", "code": "<absent>",
        "stdout": "2: [one] [two three]\n", "stderr": "", "lines": ["2: [one] [two three]"]}
    assert rejected(v0, "v0-exec-in-vm-error") == {
        "killed": False, "code": 9, "signal": None, "cmd": "sh -c 'echo v0 err >&2; exit 9'", "stdout": "",
        "stderr": "v0 err\n", "helpers": EXEC_HELPERS}


def test_v0_exec_in_container(v0: Session):
    assert ok(v0, "v0-exec-in-container") == "2: [x] [y z]\n"


def test_v0_spawn_in_vm_extension(v0: Session):
    got = ok(v0, "v0-spawn-in-vm")
    assert (got["stdout"], got["stderr"]) == ("v0 out\n", "v0 err\n"), got
    assert got["last"]["data"]["code"] == 6 and got["last"]["error"] in (None, "<undefined>"), got


def test_v0_exec_docker_cmd_is_variadic(v0: Session):
    assert ok(v0, "v0-exec-docker") == {
        "keys": ["cmd", "stderr", "stdout"], "cmd": 'docker info --format "{{json .OSType}}"', "code": "<absent>",
        "stdout": '"linux"\n', "stderr": None, "lines": ['"linux"'], "parsed": "linux"}
    err = rejected(v0, "v0-exec-docker-error")
    assert (err["code"], err["killed"], err["cmd"]) == (1, False, f"docker image inspect {MISSING_IMAGE}")


def test_v0_spawn_docker_cmd(v0: Session):
    got = ok(v0, "v0-spawn-docker")
    assert got["stdout"] == f"{v0.conf.api_version}\n", got
    assert got["last"]["data"]["code"] == 0, got


def test_v0_exec_host_cmd(v0: Session):
    assert ok(v0, "v0-exec-host") == {
        "keys": ["cmd", "stderr", "stdout"], "cmd": "conf-host args one 'two three'", "code": "<absent>",
        "stdout": "2: [one] [two three]\n", "stderr": "", "lines": ["2: [one] [two three]"]}
    assert rejected(v0, "v0-exec-host-error") == {
        "killed": False, "code": 3, "signal": None, "cmd": "conf-host fail", "stdout": "to stdout\n",
        "stderr": "to stderr\n", "helpers": EXEC_HELPERS}


def test_v0_spawn_host_cmd(v0: Session):
    got = ok(v0, "v0-spawn-host")
    assert (got["stdout"], got["stderr"]) == ("out 1\nout 2\n", "err 1\nerr 2\n"), got
    assert got["last"]["data"]["code"] == 5, got


def test_v0_toasts(v0: Session):
    assert ok(v0, "v0-toast") == ["<undefined>"] * 3
    shown = toasts_shown(v0)
    for level in ("success", "warning", "error"):
        assert ("toast toast-" + level, "Conformance v0", f"conformance v0: {level} toast", 0) in shown, shown


def test_v0_open_external(v0: Session):
    assert ok(v0, "v0-open-external-http") == {"returned": "<undefined>"}
    assert wait_until(lambda: "http://127.0.0.1:9/opened-by-conformance-v0" in v0.requests), v0.requests
    threw = ok(v0, "v0-open-external-file")
    assert set(threw) == {"threw"} and threw["threw"]["$error"] == "TypeError", threw
    assert not any(u.startswith("file:") for u in v0.requests + [p.url for p in v0.popups])


def test_v0_list_containers_and_images(v0: Session):
    assert ok(v0, "v0-list-containers") == [{"names": [f"/{v0.ext.container_name}"], "state": "running"}]
    assert ok(v0, "v0-list-images") == [v0.ext.image_id]


def test_v0_navigate_to_missing_objects_rejects(v0: Session):
    got = v0.click("navigate-missing")
    assert set(got) == {"ok"}, got
    names = ["navigateToContainer", "navigateToContainerLogs", "navigateToContainerInspect",
             "navigateToContainerStats", "navigateToImage", "navigateToVolume"]
    assert sorted(got["ok"]) == sorted(names)
    for name in names:
        outcome = got["ok"][name]
        assert set(outcome) == {"rejected"} and outcome["rejected"].get("message"), (name, outcome)
    expect(v0.page.locator("#extension-frame")).to_have_count(1)


NAVIGATION_V0 = [
    ("navigateToContainers", "#/containers"),
    ("navigateToContainer", "#/containers/{container}"),
    ("navigateToContainerLogs", "#/containers/{container}/logs"),
    ("navigateToContainerInspect", "#/containers/{container}/inspect"),
    ("navigateToContainerStats", "#/containers/{container}/stats"),
    ("navigateToImages", "#/images"),
    ("navigateToImage", "#/images/{image}"),
    ("navigateToVolumes", "#/volumes"),
    ("navigateToVolume", "#/volumes/{volume}"),
]


@pytest.mark.parametrize(("intent", "expected"), NAVIGATION_V0)
def test_v0_navigate(v0: Session, intent: str, expected: str):
    check_navigation(v0, intent, expected)
