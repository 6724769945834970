"""A Marketplace folder source with the real engine and CLI: an offline catalog of `docker save` files and OCI
layouts, whose extensions install and update from their files by name when their registry does not have them
(peers.md §4.3). The images are named after the local registry, which does not hold them: a pull is tried
there (loopback only) and fails, as it would on a machine cut off from its registry."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import docker
import docker.errors
import pytest

from dockext import marketplace, offline
from dockext.engine import Engine
from dockext.errors import DockextError
from dockext.installer import Installer, Silent
from dockext.paths import Layout
from tests.support import oci
from tests.support.cli import run_dockext
from tests.support.images import build_fixture

from .test_install import assert_nothing_left, get_over_socket, ls_json, record

pytestmark = pytest.mark.engine

PREFIX = "127.0.0.1:5000/dockext-folder"
VM1, VM2 = f"{PREFIX}/vm-image:1.0.0", f"{PREFIX}/vm-image:2.0.0"
UI = f"{PREFIX}/ui-only:1.0.0"
VM_KEY = "127_0_0_1_5000_dockext-folder_vm-image"


def untag(client: docker.DockerClient, ref: str) -> None:
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.remove(ref)


def save(client: docker.DockerClient, ref: str, path: Path) -> Path:
    with open(path, "wb") as f:
        for chunk in client.images.get(ref).save(named=ref):
            f.write(chunk)
    return path


@pytest.fixture
def folder(tmp_path, docker_client: docker.DockerClient):
    """vm-image 1.0.0 and 2.0.0 as `docker save` files, ui-only as an OCI layout directory; then the tags go,
    so that only the folder can bring them back (built here, not by ``fixture_image``, which remembers them
    built for the whole session)."""
    d = tmp_path / "offline"
    d.mkdir()
    for ref in (VM1, VM2, UI):
        name, tag = ref.rsplit("/", 1)[1].split(":")
        assert build_fixture(docker_client, name, tag=tag, repo_prefix=PREFIX) == ref
    save(docker_client, VM1, d / "vm-image-1.0.0.tar")
    save(docker_client, VM2, d / "vm-image-2.0.0.tar")
    oci.single(save(docker_client, UI, tmp_path / "ui.tar").read_bytes(), UI).write_dir(d / "ui-only-oci")
    for ref in (VM1, VM2, UI):
        untag(docker_client, ref)
    yield d
    for ref in (VM1, VM2, UI):
        untag(docker_client, ref)


def test_a_folder_is_an_offline_marketplace_installing_and_updating_by_name(tmp_path, folder, docker_client):
    home = tmp_path / "home"
    out = run_dockext("marketplace", "add", "--folder", str(folder), home=home)
    assert f"Added the folder {folder}." in out.stdout
    [*rows] = json.loads(run_dockext("marketplace", "ls", "--format", "json", home=home).stdout)["extensions"]
    assert sorted((r["image"], r["version"]) for r in rows) == [(f"{PREFIX}/ui-only", "1.0.0"),
                                                                (f"{PREFIX}/vm-image", "2.0.0")]
    try:
        # installed by name: its registry does not have it, the folder's file does
        out = run_dockext("install", "-f", VM1, home=home)
        assert f"Image not available locally, pulling {VM1}" in out.stdout
        assert f"Loading {VM1} from the Marketplace folder {folder}: vm-image-1.0.0.tar" in out.stdout
        assert out.stdout.rstrip().endswith("installed successfully")
        rec = record(home, VM_KEY)
        status, body = get_over_socket(home / "gs" / rec["vm"]["gs_key"] / "backend.sock", "/hello")
        assert (status, json.loads(body)["message"]) == (200, "hello from vm-image")
        out = run_dockext("install", "-f", UI, home=home)
        assert "from the OCI layout ui-only-oci" in out.stdout and "installed successfully" in out.stdout
        # only-listed: the folder lists what its files hold, and nothing else
        run_dockext("marketplace", "only-listed", "on", home=home)
        refused = run_dockext("install", "-f", f"{PREFIX}/vm-image:9.9.9", home=home, check=False)
        assert refused.returncode == 1 and "is not listed by the marketplace sources" in refused.stderr
        # update to the folder's 2.0.0, with the update's rollback, the backend's volume kept
        out = run_dockext("update", "-f", VM2, home=home)
        assert f"Loading {VM2} from the Marketplace folder {folder}: vm-image-2.0.0.tar" in out.stdout
        versions = {r["id"]: r["version"] for r in ls_json(home)}
        assert versions == {f"{PREFIX}/vm-image": "2.0.0", f"{PREFIX}/ui-only": "1.0.0"}
        # and back to 1.0.0 from the file itself (`dockext update FILE`)
        untag(docker_client, VM1)
        out = run_dockext("update", "-f", str(folder / "vm-image-1.0.0.tar"), home=home)
        assert f"Loaded image: {VM1}" in out.stdout
        assert record(home, VM_KEY)["version"] == "1.0.0"
    finally:
        for ref in (VM1, UI):
            run_dockext("rm", ref, home=home, check=False)
        for volume in docker_client.volumes.list(filters={"name": f"{VM_KEY}-desktop-extension_"}):
            volume.remove()
    assert_nothing_left(home, docker_client, VM_KEY, f"{VM_KEY}-desktop-extension")


@pytest.mark.parametrize("store", ["classic", "containerd"])
def test_a_file_replaced_after_the_marketplace_read_it_is_refused_and_its_load_undone(
    tmp_path, folder, docker_client, monkeypatch, store
):
    """A folder's card installs what the Marketplace read of its file. A file replaced between that read and the
    load (another image under the same name) is refused once the engine has it, and the load is undone; the file
    as read installs. On the containerd image store an image's ID is its manifest's digest, not the config's that
    the file names (docker/cli#5526): there the config's is read from the engine's export of the image. This
    engine keeps the classic store; ``containerd`` runs the same install with the engine taken for one."""
    home = tmp_path / "home"
    run_dockext("marketplace", "add", "--folder", str(folder), home=home)
    layout = Layout(home)
    if store == "containerd":
        monkeypatch.setattr(Engine, "containerd_images", property(lambda self: True))
        exported: list[str] = []
        real_export = Engine.config_digest
        monkeypatch.setattr(Engine, "config_digest", lambda self, ref: exported.append(ref) or real_export(self, ref))
    path, read = marketplace.file_for(marketplace.load(layout), VM1) or (None, None)
    assert path == folder / "vm-image-1.0.0.tar" and read is not None
    original = path.read_bytes()
    # what the file holds now: 2.0.0's image under 1.0.0's name
    [other] = docker_client.images.load((folder / "vm-image-2.0.0.tar").read_bytes())
    other.tag(VM1)
    try:
        path.write_bytes(b"".join(docker_client.images.get(VM1).save(named=VM1)))
    finally:
        untag(docker_client, VM1)
        untag(docker_client, VM2)
    monkeypatch.setattr(marketplace, "file_for", lambda *a, **k: (path, read))  # as read before the swap
    installer = Installer(layout)
    source = marketplace.load(layout).sources[0].label
    with pytest.raises(DockextError) as refused:
        offline.from_folder(installer, VM1, Silent(), source=source)
    assert refused.value.message.startswith(f"vm-image-1.0.0.tar changed since the Marketplace read it: it now holds "
                                            f"another {VM1} (sha256:")
    assert not docker_client.images.list(VM1) and installer.store.records() == []  # the load undone, nothing in
    if store == "containerd":
        assert exported == [VM1]  # the check read the config's digest from the export

    path.write_bytes(original)  # the file as the Marketplace read it
    try:
        record = offline.from_folder(installer, VM1, Silent(), source=source)
        assert record is not None and record.version == "1.0.0"
        assert docker_client.images.get(VM1).id == read.image_id
    finally:
        run_dockext("rm", VM1, home=home, check=False)
        for volume in docker_client.volumes.list(filters={"name": f"{VM_KEY}-desktop-extension_"}):
            volume.remove()
    assert_nothing_left(home, docker_client, VM_KEY, f"{VM_KEY}-desktop-extension")


def test_a_load_whose_config_cannot_be_told_is_refused_with_a_way_to_install_the_file(
    tmp_path, folder, docker_client, monkeypatch
):
    """On the containerd image store the export of an image loaded with several platforms names several configs,
    and which one the engine would run cannot be told: the folder's card refuses it (the load undone) and says how
    to install the file anyway. The engine's export is taken to answer so; the load and its undoing are real."""
    home = tmp_path / "home"
    run_dockext("marketplace", "add", "--folder", str(folder), home=home)
    layout = Layout(home)
    monkeypatch.setattr(Engine, "containerd_images", property(lambda self: True))
    monkeypatch.setattr(Engine, "config_digest", lambda self, ref: None)
    installer = Installer(layout)
    source = marketplace.load(layout).sources[0].label
    with pytest.raises(DockextError) as refused:
        offline.from_folder(installer, VM1, Silent(), source=source)
    path = folder / "vm-image-1.0.0.tar"
    assert refused.value.message == (
        f"dockext cannot check that the {VM1} loaded from vm-image-1.0.0.tar is the image the Marketplace read: the "
        "engine's export of it names several configs (a multi-platform image?)"
    )
    assert refused.value.hint == f"To install it anyway, as a file you trust: dockext install {path} --image {VM1}"
    assert not docker_client.images.list(VM1) and installer.store.records() == []  # the load undone, nothing in
    assert_nothing_left(home, docker_client, VM_KEY, f"{VM_KEY}-desktop-extension")
