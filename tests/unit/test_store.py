"""Installed-state records: atomic writes, versioning, the lock."""

from __future__ import annotations

import json
import multiprocessing
import os
import time

import pytest

from dockext.errors import Busy, NotInstalled, StateError
from dockext.paths import Layout
from dockext.store import RECORD_FILE, Record, Store, UiInfo, VmInfo, atomic_write


def make_record(key: str = "acme_ext", **kw) -> Record:
    base = dict(
        key=key, id=f"acme/{key}", image=f"acme/{key}:1.0", image_id="sha256:" + "0" * 64, version="1.0",
        title="Acme", provider="Acme Inc.", origin_slug=f"{key.replace('_', '-')}-abc123", installed_at=1.0,
        ui=UiInfo(title="Acme", src="index.html"),
        vm=VmInfo(project=f"{key}-desktop-extension", first_service="api", container="c", socket="b.sock",
                  gs_key="deadbeef"),
        host_binaries=("kubectl",),
    )
    base.update(kw)
    return Record(**base)


def test_record_round_trip(tmp_path):
    store = Store(Layout(tmp_path))
    store.layout.ensure()
    (tmp_path / "extensions" / "acme_ext").mkdir()
    rec = make_record()
    store.write(rec)
    assert store.read("acme_ext") == rec
    assert store.keys() == ["acme_ext"]
    data = json.loads((tmp_path / "extensions" / "acme_ext" / RECORD_FILE).read_text())
    assert data["schema"] == 2


def test_the_schema_number_changes_with_the_records_fields():
    """A dockext refuses records of a newer schema (it cannot know what their fields mean) and an older one
    cannot read fields it does not know: so the fields of each schema are pinned here, and changing them
    without raising store.SCHEMA_VERSION (and this list) fails."""
    import dataclasses

    from dockext.store import SCHEMA_VERSION

    fields = {cls.__name__: [f.name for f in dataclasses.fields(cls)] for cls in (Record, UiInfo, VmInfo)}
    assert (SCHEMA_VERSION, fields) == (2, {
        "Record": ["key", "id", "image", "image_id", "version", "title", "provider", "origin_slug", "installed_at",
                   "ui", "vm", "icon", "host_binaries", "labels", "metadata"],
        "UiInfo": ["title", "src"],
        "VmInfo": ["project", "first_service", "container", "socket", "gs_key", "sockperm", "relay", "withheld",
                   "engine", "engine_at", "policy"],
    })


def test_newer_schema_is_refused_with_a_hint(tmp_path):
    store = Store(Layout(tmp_path))
    d = tmp_path / "extensions" / "x"
    d.mkdir(parents=True)
    (d / RECORD_FILE).write_text(json.dumps({"schema": 99}))
    with pytest.raises(StateError, match="newer dockext"):
        store.read("x")
    assert store.records() == []  # an unreadable record does not break listing


def test_missing_record_and_incomplete_dirs(tmp_path):
    store = Store(Layout(tmp_path))
    (tmp_path / "extensions" / "half").mkdir(parents=True)
    with pytest.raises(NotInstalled):
        store.read("half")
    assert store.incomplete() == ["half"]
    assert store.keys() == []


@pytest.mark.parametrize("failing", ["fsync", "chmod", "replace"])
def test_atomic_write_keeps_old_content_when_any_step_fails(tmp_path, monkeypatch, failing):
    """R7: ENOSPC (or any error) at each step before the rename leaves the old bytes and no temp file."""
    target = tmp_path / "f.json"
    target.write_bytes(b"old")

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(OSError):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]  # no temp file left behind


def test_atomic_write_failing_after_the_rename_leaves_the_whole_new_content(tmp_path, monkeypatch):
    """The directory's fsync comes after the rename: the file is then the new one, whole (never torn)."""
    target = tmp_path / "f.json"
    target.write_bytes(b"old")
    real, calls = os.fsync, []

    def second_fails(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        real(fd)

    monkeypatch.setattr(os, "fsync", second_fails)
    with pytest.raises(OSError):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def _hold_lock(root: str, ready, release) -> None:
    with Store(Layout(__import__("pathlib").Path(root))).lock():
        ready.set()
        release.wait(10)


def test_lock_is_exclusive_and_dies_with_its_holder(tmp_path):
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    holder.start()
    assert ready.wait(10)
    store = Store(Layout(tmp_path))
    with pytest.raises(Busy), store.lock(timeout=0.3):
        pass
    holder.kill()  # kill -9: the kernel releases the flock
    holder.join()
    started = time.monotonic()
    with store.lock(timeout=5):
        pass
    assert time.monotonic() - started < 5
