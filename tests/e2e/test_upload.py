"""Install from a file in the dashboard (`dockext install FILE` for a file the browser has), with the real
engine and Chromium: a `docker save` file and an unnamed OCI archive install; a wrong file is refused in the
dialog; refused, cut-off or hostile uploads leave nothing on the server."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
from playwright.sync_api import Page, expect

from dockext import permissions
from dockext.paths import Layout
from tests.support import oci
from tests.support.cli import run_dockext
from tests.support.session import Session

from .test_dashboard import open_tab, tab

pytestmark = [pytest.mark.engine, pytest.mark.browser]

PREFIX = "dockext-upload"
UI = f"{PREFIX}/ui-only:1.0.0"
VM = f"{PREFIX}/vm-image:1.0.0"


def untag(client: docker.DockerClient, ref: str) -> None:
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.remove(ref)


@pytest.fixture(scope="module")
def saved(fixture_image, docker_client: docker.DockerClient, tmp_path_factory) -> Iterator[dict[str, Path]]:
    """`docker save` files of two fixtures (then untagged, so only the files bring them back), and an OCI
    archive of the UI-only one without a name, as `skopeo copy ... oci-archive:FILE` makes it."""
    d = tmp_path_factory.mktemp("upload")
    files = {}
    for name, ref in (("ui", UI), ("vm", VM)):
        assert fixture_image(ref.split("/")[1].split(":")[0], repo_prefix=PREFIX) == ref
        files[name] = d / f"{name}-only.tar"
        with open(files[name], "wb") as f:
            for chunk in docker_client.images.get(ref).save(named=ref):
                f.write(chunk)
    files["oci"] = oci.single(files["ui"].read_bytes(), None).write_tar(d / "ui-oci.tar")
    for ref in (UI, VM):
        untag(docker_client, ref)
    yield files
    for ref in (UI, VM):
        untag(docker_client, ref)


def uploads_left(server, files_only: bool = True) -> list[Path]:
    """The files under <home>/uploads (a server keeps its own, empty, directory there)."""
    root = server.home / "uploads"
    return sorted(p for p in root.rglob("*") if p.is_file() or not files_only) if root.exists() else []


def wait_until(check, timeout: float = 30.0) -> None:
    """Until ``check()`` is true (the server notices a closed connection on its next read): not a speed test."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time limit"
        time.sleep(0.05)


def partial_upload(server, session: Session, name: str) -> socket.socket:
    """An upload of 10 MiB of which 1 MiB is sent: the server holds it open, waiting for the rest."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    head = [f"POST /api/marketplace/upload?name={name} HTTP/1.1", f"Host: dockext.localhost:{server.port}",
            f"Cookie: {session.cookie}", f"X-Dockext-Key: {session.key}", "X-Dockext: 1",
            f"Origin: http://dockext.localhost:{server.port}", f"Content-Length: {10 << 20}"]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + b"\0" * (1 << 20))
    return sock


def open_dialog(page: Page, server):
    page.goto(server.login_url)
    page.locator("#marketplace-button").click()
    page.get_by_role("button", name="Install from file").click()
    dialog = page.locator("dialog.mk-file")
    expect(dialog).to_contain_text("Extensions can install binaries")  # the CLI's warning
    return dialog


def ls(server) -> list[dict]:
    return json.loads(run_dockext("ls", "--format", "json", home=server.home).stdout)


def test_a_saved_file_and_an_unnamed_oci_archive_install_from_the_dashboard(
    page: Page, server, saved, docker_client, tmp_path
):
    try:
        dialog = open_dialog(page, server)
        # a file that is no tar: the reason in the dialog, which stays open for another try
        (tmp_path / "notes.txt").write_text("not an image\n")
        dialog.locator("#mk-file-input").set_input_files(tmp_path / "notes.txt")
        dialog.get_by_role("button", name="Install", exact=True).click()
        expect(dialog.get_by_role("alert")).to_contain_text("notes.txt is not a tar file")
        assert ls(server) == [] and uploads_left(server) == []

        # the vm-image's `docker save` file, its backend withheld the engine socket from the start
        dialog.locator("#mk-file-input").set_input_files(saved["vm"])
        dialog.get_by_label("The engine socket").check()
        dialog.get_by_role("button", name="Install", exact=True).click()
        expect(dialog).to_have_count(0, timeout=120_000)
        expect(page.locator(".toast").last).to_contain_text('Extension "VM Image" installed successfully')
        expect(tab(page, f"{PREFIX}_vm-image")).to_have_count(1)
        [row] = ls(server)
        assert (row["image"], row["vm"]) == (VM, "Running(1)")
        grants = permissions.load(Layout(server.home))[f"{PREFIX}_vm-image"]
        assert not grants.allows("engine") and grants.allows("system")  # as chosen in the dialog
        assert uploads_left(server) == []  # the job deleted its file

        # an OCI archive without a name: refused, then installed with the name given in the dialog
        dialog = open_dialog(page, server)
        dialog.locator("#mk-file-input").set_input_files(saved["oci"])
        dialog.get_by_role("button", name="Install", exact=True).click()
        expect(dialog.get_by_role("alert")).to_contain_text("ui-oci.tar holds an image without a name")
        dialog.get_by_label("Image (only for a file with several images, or without a name)").fill(UI)
        dialog.get_by_role("button", name="Install", exact=True).click()
        expect(dialog).to_have_count(0, timeout=120_000)
        expect(tab(page, f"{PREFIX}_ui-only")).to_have_count(1)
        assert sorted(r["image"] for r in ls(server)) == [UI, VM]
        assert uploads_left(server) == []
        # the tab works: the extension's own page from the uploaded image
        expect(open_tab(page, f"{PREFIX}_ui-only").locator("h1")).to_have_text("UI Only")
    finally:
        for ref in (UI, VM):
            run_dockext("rm", ref, home=server.home, check=False)
        for volume in docker_client.volumes.list(filters={"name": f"{PREFIX}_vm-image-desktop-extension_"}):
            volume.remove()
    assert ls(server) == []


def raw_post(server, session: Session, path: str, head: dict[str, str], body: bytes) -> str:
    """A POST on a raw socket (to send what httpx would not: a false length); the whole answer."""
    lines = [f"POST {path} HTTP/1.1", f"Host: dockext.localhost:{server.port}", f"Cookie: {session.cookie}",
             f"X-Dockext-Key: {session.key}", "X-Dockext: 1", f"Origin: http://dockext.localhost:{server.port}",
             "Connection: close"]
    lines += [f"{k}: {v}" for k, v in head.items()]
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer.decode("utf-8", "replace")


def test_refused_cut_off_and_hostile_uploads_leave_nothing(server, saved):
    session = Session(server)
    with session.dashboard() as dash:
        # too large, or no room: refused before a byte is read
        answer = raw_post(server, session, "/api/marketplace/upload?name=big.tar",
                          {"Content-Length": str(17 << 30)}, b"")
        assert answer.startswith("HTTP/1.1 413") and "more than the 16 GiB an upload may be" in answer
        # no length (chunked)
        r = dash.post("/api/marketplace/upload?name=x.tar", content=iter([b"x" * 10]))
        assert r.status_code == 411 and "Content-Length" in r.json()["error"]["message"]
        # not the dashboard (no X-Dockext): refused by the gate
        r = dash.post("/api/marketplace/upload?name=x.tar", content=b"x", headers={"X-Dockext": "0"})
        assert r.status_code == 403
        # a bad --image or --deny
        r = dash.post("/api/marketplace/upload?name=x.tar&image=Bad/Name", content=b"x")
        assert r.status_code == 400 and "invalid image reference" in r.json()["error"]["message"]
        r = dash.post("/api/marketplace/upload?name=x.tar&deny=docker", content=b"x")
        assert r.status_code == 400
        # a client that goes away in the middle of the body: nothing is kept
        cut = partial_upload(server, session, "cut.tar")
        wait_until(lambda: [p.name for p in uploads_left(server)] == ["cut.tar"])  # being received
        cut.close()
        wait_until(lambda: uploads_left(server) == [])  # the server has seen it go, and kept nothing
        # uploads being received count as jobs: with 4 under way a fifth is refused at once
        held = [partial_upload(server, session, f"slow{i}.tar") for i in range(4)]
        try:
            wait_until(lambda: len(uploads_left(server)) == 4)  # each is in once its file is open
            answer = raw_post(server, session, "/api/marketplace/upload?name=fifth.tar",
                              {"Content-Length": "10"}, b"0123456789")
            assert answer.startswith("HTTP/1.1 429") and "installs, updates or removals are running" in answer
        finally:
            for sock in held:
                sock.close()
        # a name that tries to leave the upload's directory stays inside it, as a plain name
        data = saved["ui"].read_bytes()
        r = dash.post("/api/marketplace/upload?name=../../../extensions/evil..tar", content=data[:5000])
        assert r.status_code == 202
        job = r.json()["job"]
        assert job["image"] == "evil..tar"
        while job["state"] == "running":
            job = dash.get(f"/api/marketplace/jobs/{job['id']}").json()["job"]
        assert job["state"] == "failed" and "evil..tar is truncated or damaged" in job["error"]["message"]
    assert not (server.home / "extensions" / "evil..tar").exists()
    # the held uploads' folders go once the server sees their connections closed
    wait_until(lambda: uploads_left(server) == [])
    assert ls(server) == []


def test_a_folder_source_shows_its_extensions_and_installs_one_from_its_file(page: Page, server, saved, tmp_path):
    folder = tmp_path / "offline"
    folder.mkdir()
    (folder / "ui-only.tar").write_bytes(saved["ui"].read_bytes())
    run_dockext("marketplace", "add", "--folder", str(folder), home=server.home)
    page.goto(server.login_url)
    page.locator("#marketplace-button").click()
    card = page.locator(f'.mk-card[data-image="{PREFIX}/ui-only"]')
    expect(card.locator(".mk-title")).to_have_text("UI Only")
    card.locator("summary").click()
    expect(card.locator(".mk-facts")).to_contain_text("ui-only.tar")
    card.get_by_role("button", name="Install").click()
    page.locator("dialog.dx-dialog").get_by_role("button", name="Install", exact=True).click()
    expect(page.locator(".toast").last).to_contain_text("UI Only installed", timeout=120_000)
    expect(tab(page, f"{PREFIX}_ui-only")).to_have_count(1)
    try:
        [row] = ls(server)
        assert row["image"] == UI
        expect(card.locator(".mk-installed")).to_have_text("Installed 1.0.0")
    finally:
        run_dockext("rm", UI, home=server.home, check=False)
    assert (folder / "ui-only.tar").exists()  # the folder's file stays: it is the catalog
