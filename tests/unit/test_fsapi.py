"""The dashboard's file listing (server/fsapi.py) behind showOpenDialog: shapes, errors, and who may call it.

Reference security-reliability.md S18: only the dashboard origin, logged in, gets listings; an extension origin
(its own router, or a request sent from its pages to the dashboard) gets nothing.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from dockext.paths import Layout
from dockext.server import HostState, create_app
from dockext.server.fsapi import FsError, list_directory
from dockext.store import Store

from . import test_server
from .test_store import make_record

PORT = 7683
TOKEN = "t0ken-" + "f" * 42
DASH = f"http://dockext.localhost:{PORT}"
H = {"X-Dockext": "1"}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """dirs Beta/ alpha/, files b.txt A.json .hidden big.bin, links to a dir, a file, nowhere, and a FIFO."""
    root = tmp_path / "tree"
    (root / "Beta").mkdir(parents=True)
    (root / "alpha").mkdir()
    (root / "alpha" / "inner.txt").write_text("x")
    (root / "b.txt").write_text("hello")
    (root / "A.json").write_text("{}")
    (root / ".hidden").write_text("")
    (root / "big.bin").write_bytes(b"\0" * 4096)
    (root / "link-to-dir").symlink_to(root / "alpha")
    (root / "link-to-file").symlink_to(root / "b.txt")
    (root / "dangling").symlink_to(root / "nowhere")
    os.mkfifo(root / "fifo")
    return root


@pytest.fixture
def client(tmp_path: Path):
    layout = Layout(tmp_path / "home")
    layout.ensure()
    rec = make_record("acme_a")
    d = layout.extension_dir(rec.key)
    (d / "ui").mkdir(parents=True)
    (d / "ui" / "index.html").write_text("<html><head></head><body>hi</body></html>")
    Store(layout).write(rec)
    state = HostState(layout, port=PORT, token=TOKEN)
    with TestClient(create_app(state), base_url=DASH, follow_redirects=False) as c:
        c.state_ = state  # type: ignore[attr-defined]
        c.record_ = rec  # type: ignore[attr-defined]
        yield c


def login(client: TestClient) -> None:
    test_server.login(client, TOKEN)


# ------------------------------------------------------------------------------------------ the listing


def test_listing_shape_order_and_types(tree: Path):
    out = list_directory(str(tree))
    assert out["path"] == str(tree)
    assert out["parent"] == str(tree.parent)
    assert out["truncated"] is False
    names = [e["name"] for e in out["entries"]]
    # directories first (a link to a directory counts as one), then files, case-insensitively by name
    assert names == ["alpha", "Beta", "link-to-dir", ".hidden", "A.json", "b.txt", "big.bin", "dangling", "fifo",
                     "link-to-file"]
    by_name = {e["name"]: e for e in out["entries"]}
    assert by_name["alpha"] == {"name": "alpha", "type": "dir", "size": None, "hidden": False,
                                "mtime": by_name["alpha"]["mtime"]}
    assert isinstance(by_name["alpha"]["mtime"], int)
    assert by_name["link-to-dir"]["type"] == "dir"  # reported as what it points to
    assert by_name["link-to-file"] == {**by_name["link-to-file"], "type": "file", "size": 5}
    assert by_name["big.bin"]["size"] == 4096
    assert by_name["dangling"] == {"name": "dangling", "type": "other", "size": None, "mtime": None, "hidden": False}
    assert by_name["fifo"]["type"] == "other" and by_name["fifo"]["size"] is None
    assert by_name[".hidden"]["hidden"] is True and by_name["b.txt"]["hidden"] is False


def test_a_symlinked_directory_keeps_the_name_it_was_opened_by(tree: Path):
    out = list_directory(str(tree / "link-to-dir"))
    assert out["path"] == str(tree / "link-to-dir")
    assert out["parent"] == str(tree)
    assert [e["name"] for e in out["entries"]] == ["inner.txt"]


def test_paths_are_normalised_lexically_and_root_has_no_parent(tree: Path):
    out = list_directory(f"{tree}/alpha/..//Beta/.")
    assert out["path"] == str(tree / "Beta") and out["entries"] == []
    root = list_directory("/")
    assert root["path"] == "/" and root["parent"] is None
    assert list_directory("//")["path"] == "/"
    # POSIX keeps exactly two leading slashes; they name the same folder here (found by a review: it became "/")
    assert list_directory(f"/{tree}/alpha")["path"] == str(tree / "alpha")
    assert any(e["name"] == "tmp" and e["type"] == "dir" for e in root["entries"])


def test_a_name_too_long_and_a_link_loop_are_the_requests_fault(tree: Path):
    """Found by a review: ENAMETOOLONG and ELOOP were 500s, as if the server had failed."""
    (tree / "loop").symlink_to(tree / "loop")
    for path in (f"{tree}/{'n' * 300}", f"{tree}/loop"):
        with pytest.raises(FsError) as info:
            list_directory(path)
        assert (info.value.status, info.value.type) == (400, "BadRequest"), path


def test_names_that_are_not_utf8_are_counted_not_listed_and_hide_nothing_else(tree: Path):
    """Found by a review: one such name (a Latin-1 archive's) made the whole folder a 500, since no JSON carries it."""
    (tree / "alpha").joinpath(os.fsdecode(b"caf\xe9.txt")).write_text("x")
    (tree / "alpha" / "fine.txt").write_text("x")
    out = list_directory(str(tree / "alpha"))
    assert [e["name"] for e in out["entries"]] == ["fine.txt", "inner.txt"] and out["unnamed"] == 1
    json.dumps(out).encode()  # what the route sends


def test_listing_is_capped(tree: Path):
    out = list_directory(str(tree), limit=3)
    assert out["truncated"] is True and len(out["entries"]) == 3


@pytest.mark.parametrize(
    ("path", "status", "type_"),
    [("", 400, "BadRequest"), ("relative/dir", 400, "BadRequest"), ("/tmp/\0x", 400, "BadRequest"),
     ("{tree}/missing", 404, "NotFound"), ("{tree}/b.txt", 400, "NotADirectory"),
     ("{tree}/dangling", 404, "NotFound")],
)
def test_errors_say_what_is_wrong(tree: Path, path: str, status: int, type_: str):
    with pytest.raises(FsError) as info:
        list_directory(path.format(tree=tree))
    assert (info.value.status, info.value.type) == (status, type_)
    if status == 404:
        assert str(info.value) == f"No such directory: {path.format(tree=tree)}"


def test_unreadable_directory_is_permission_denied(tree: Path, monkeypatch):
    """scandir failing with EACCES (the tests run as root in CI, and root reads every directory)."""

    def refuse(path):
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr("dockext.server.fsapi.os.scandir", refuse)
    with pytest.raises(FsError) as info:
        list_directory(str(tree))
    assert (info.value.status, info.value.type, str(info.value)) == (403, "PermissionDenied",
                                                                     f"Permission denied: {tree}")


# --------------------------------------------------------------------------------------------- HTTP API


def test_http_listing_and_home(client: TestClient, tree: Path):
    login(client)
    r = client.get("/api/fs/list", params={"path": str(tree)}, headers=H)
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    assert r.json() == list_directory(str(tree))
    r = client.get("/api/fs/home", headers=H)
    assert r.status_code == 200 and r.json() == {"path": os.path.expanduser("~")}


def test_http_errors_use_the_api_error_body(client: TestClient, tree: Path):
    login(client)
    r = client.get("/api/fs/list", params={"path": str(tree / "missing")}, headers=H)
    assert r.status_code == 404
    assert r.json() == {"error": {"type": "NotFound", "message": f"No such directory: {tree / 'missing'}"}}
    r = client.get("/api/fs/list", params={"path": "etc"}, headers=H)
    assert r.status_code == 400 and r.json()["error"]["type"] == "BadRequest"
    r = client.get("/api/fs/list", params={"path": str(tree / "b.txt")}, headers=H)
    assert r.status_code == 400 and r.json()["error"]["type"] == "NotADirectory"


def test_http_needs_the_session(client: TestClient, tree: Path):
    for path in ("/api/fs/home", f"/api/fs/list?path={tree}"):
        r = client.get(path, headers=H)
        assert r.status_code == 401 and r.json()["error"]["type"] == "Unauthorized"


def test_http_needs_the_dashboard_header_and_origin(client: TestClient, tree: Path):
    """A page on an extension origin is same-site with the dashboard, so the cookie alone is not enough."""
    login(client)
    rec = client.record_  # type: ignore[attr-defined]
    ext_origin = f"http://{rec.origin_slug}.dockext.localhost:{PORT}"
    for path in ("/api/fs/home", f"/api/fs/list?path={tree}"):
        assert client.get(path).status_code == 403  # no X-Dockext: a plain fetch or <img> from elsewhere
        r = client.get(path, headers={**H, "Origin": ext_origin})
        assert r.status_code == 403 and r.json()["error"]["type"] == "Forbidden"
        assert "entries" not in r.text and str(tree) not in r.text
        assert client.get(path, headers={**H, "Origin": DASH}).status_code == 200


def test_http_only_get(client: TestClient, tree: Path):
    login(client)
    r = client.post(f"/api/fs/list?path={tree}", headers=H)
    assert r.status_code == 405


def test_extension_origins_never_see_the_file_routes(client: TestClient, tree: Path):
    """The extension router has no /api/fs: not at the root, not under a live capability of that extension."""
    login(client)
    rec = client.record_  # type: ignore[attr-defined]
    r = client.post("/api/ui-instances", json={"extension": rec.key}, headers=H)
    assert r.status_code == 201, r.text
    url = r.json()["url"]
    cap_prefix = url.split("/i/", 1)[1].split("/", 1)[0]
    ext_host = f"{rec.origin_slug}.dockext.localhost:{PORT}"
    ext_origin = f"http://{ext_host}"
    for path in (f"/api/fs/list?path={tree}", "/api/fs/home", f"/i/{cap_prefix}/api/fs/list?path={tree}",
                 f"/i/{cap_prefix}/__dockext__/fs/list?path={tree}", f"/i/{cap_prefix}/../../api/fs/home"):
        # the session cookie is in the client's jar: even with it, the extension origin answers nothing
        r = client.get(path, headers={**H, "Host": ext_host, "Origin": ext_origin})
        assert r.status_code == 404, (path, r.status_code)
        assert "entries" not in r.text and '"path"' not in r.text
