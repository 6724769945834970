"""The dashboard's upload endpoint without an engine (POST /api/marketplace/upload): what is refused before
the body, where files go and when they are deleted. The install itself is proven in tests/e2e/test_upload.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import namedtuple
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from dockext.paths import Layout
from dockext.server import HostState, create_app
from dockext.server import marketplace_api as api
from dockext.server.marketplace_api import upload_name

from .test_server import DASH, PORT, TOKEN, login

HEADERS = {"X-Dockext": "1", "Origin": DASH, "Content-Type": "application/octet-stream"}


@pytest.fixture
def client(tmp_path: Path):
    Layout(tmp_path).ensure()
    state = HostState(Layout(tmp_path), port=PORT, token=TOKEN)
    with TestClient(create_app(state), base_url=DASH, follow_redirects=False) as c:
        login(c)
        yield c


def leftovers(home: Path) -> list[Path]:
    return sorted(p for p in (home / "uploads").rglob("*") if p.is_file()) if (home / "uploads").exists() else []


@pytest.mark.parametrize(
    ("raw", "name"),
    [("ext.tar", "ext.tar"), ("../../x.tar", "x.tar"), ("C:\\\\Users\\\\me\\\\ext.tgz", "ext.tgz"), ("", "upload.tar"),
     ("..", "upload.tar"), (".hidden.tar", "hidden.tar"), ("a b\0c/é.tar", "_.tar"),
     ("a b\0c é.tar", "a_b_c__.tar"), ("x" * 500, "x" * 120)],
)
def test_a_file_name_becomes_one_safe_component(raw: str, name: str) -> None:
    assert upload_name(raw) == name


def test_no_room_on_the_disk_is_refused_before_the_body(client, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(api.shutil, "disk_usage", lambda _p: usage(10 << 30, 9 << 30, 300 << 20))
    r = client.post("/api/marketplace/upload?name=big.tar", content=b"x" * (100 << 20), headers=HEADERS)
    assert r.status_code == 507 and r.headers["connection"] == "close"
    assert r.json()["error"]["message"].startswith("no room for big.tar (104.9 MB) on the server: 315 MB free")
    assert leftovers(tmp_path) == []


def test_an_uploads_directory_that_cannot_be_made_is_a_json_error_not_a_500_page(client, tmp_path):
    shutil.rmtree(tmp_path / "uploads", ignore_errors=True)
    (tmp_path / "uploads").write_text("a file where the directory goes")
    r = client.post("/api/marketplace/upload?name=x.tar", content=b"x", headers=HEADERS)
    assert r.status_code == 500 and r.json()["error"]["type"] == "StorageError"
    assert "cannot keep uploads in" in r.json()["error"]["message"]


def test_a_file_that_is_no_tar_fails_its_job_and_is_deleted(client, tmp_path):
    r = client.post("/api/marketplace/upload?name=notes.txt", content=b"hello\n" * 100, headers=HEADERS)
    assert r.status_code == 202
    job = r.json()["job"]
    assert (job["action"], job["image"]) == ("install", "notes.txt")  # already failed, at times: it is quick
    while job["state"] == "running":
        job = client.get(f"/api/marketplace/jobs/{job['id']}").json()["job"]
    assert job["state"] == "failed"
    assert job["error"]["message"] == "notes.txt is not a tar file (nor a gzip, bzip2 or xz compressed one)"
    assert leftovers(tmp_path) == []


def test_a_new_server_deletes_what_servers_that_are_gone_left_and_keeps_a_running_ones(tmp_path):
    Layout(tmp_path).ensure()
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "60"])
    try:
        for pid in (dead.pid, live.pid):
            (tmp_path / "uploads" / str(pid) / "abc").mkdir(parents=True)
            (tmp_path / "uploads" / str(pid) / "abc" / "ext.tar").write_bytes(b"x")
        (tmp_path / "uploads" / "stray").mkdir()
        create_app(HostState(Layout(tmp_path), port=PORT, token=TOKEN))
        left = sorted(p.name for p in (tmp_path / "uploads").iterdir())
        assert left == [str(live.pid)]
    finally:
        live.kill()
        live.wait()


def test_the_uploads_directory_is_private(client, tmp_path):
    r = client.post("/api/marketplace/upload?name=x.tar", content=b"x", headers=HEADERS)
    assert r.status_code == 202
    mine = tmp_path / "uploads" / str(os.getpid())
    assert (tmp_path / "uploads").stat().st_mode & 0o077 == 0 and mine.stat().st_mode & 0o077 == 0
