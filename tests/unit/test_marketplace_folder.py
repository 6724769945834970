"""A Marketplace folder source: an offline catalog of `docker save` files and OCI layouts, read without an
engine (src/dockext/savedimages.py, marketplace.folder_images). Installing from it is proven with the real
engine in tests/engine/test_marketplace_folder.py."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from dockext import marketplace, savedimages
from dockext.errors import InvalidSource, NotListed
from dockext.paths import Layout
from tests.support import oci
from tests.support.cli import run_dockext

API = "com.docker.desktop.extension.api.version"


def saved(*images: tuple[str, dict[str, str]]) -> bytes:
    """A `docker save` file of one small image per (name, labels), as the engine writes them."""
    files: dict[str, bytes] = {}
    manifest = []
    for i, (name, labels) in enumerate(images):
        layer = oci.tar_of({f"file{i}": b""})
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": labels},
                             "rootfs": {"type": "layers", "diff_ids": [oci.digest_of(layer)]}}).encode()
        files[f"layer{i}/layer.tar"] = layer
        files[f"config{i}.json"] = config
        manifest.append({"Config": f"config{i}.json", "RepoTags": [name] if name else None,
                         "Layers": [f"layer{i}/layer.tar"]})
    files["manifest.json"] = json.dumps(manifest).encode()
    return oci.tar_of(files)


def ext_labels(title: str) -> dict[str, str]:
    return {API: ">= 0.3.3", "org.opencontainers.image.title": title, "org.opencontainers.image.vendor": "Acme"}


@pytest.fixture(autouse=True)
def _fresh_cache():
    marketplace.clear_cache()
    yield
    marketplace.clear_cache()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "offline"
    d.mkdir()
    (d / "ext-1.0.0.tar").write_bytes(saved(("acme/ext:1.0.0", ext_labels("Ext"))))
    (d / "ext-1.2.0.tar.gz").write_bytes(gzip.compress(saved(("acme/ext:1.2.0", ext_labels("Ext")))))
    (d / "not-an-extension.tar").write_bytes(saved(("acme/plain:1", {"a": "b"})))
    oci.single(saved(("x:1", ext_labels("Layout Ext"))), "acme/layout-ext:2.0.0").write_dir(d / "layout-ext")
    (d / "notes.txt").write_text("not looked at")
    (d / "broken.tar").write_bytes(b"\0" * 100)
    return d


def test_a_docker_save_file_names_its_images_and_their_labels(tmp_path: Path) -> None:
    labels = {"com.docker.extension.x": "1", "other": "not the Marketplace's"}
    (tmp_path / "two.tar").write_bytes(saved(("acme/a:1", labels), ("", {"y": "2"}), ("acme/b:2", {})))
    images = savedimages.read(tmp_path / "two.tar", "two.tar")
    assert [(i.name, i.labels) for i in images] == [("acme/a:1", {"com.docker.extension.x": "1"}), ("acme/b:2", {})]
    # the image saved by ID is left out: an extension is installed by name


def test_a_folder_lists_its_extensions_at_their_greatest_version_with_the_file_to_install(folder, tmp_path):
    source = marketplace.add_folder(Layout(tmp_path / "home"), folder)
    assert (source.kind, source.label) == ("folder", str(folder))
    catalog = marketplace.browse(marketplace.Settings(sources=(source,)))
    got = {e.image: (e.tag, e.tags, e.title, Path(e.file or "").name) for e in catalog.entries}
    assert got == {
        "acme/ext": ("1.2.0", ("1.2.0", "1.0.0"), "Ext", "ext-1.2.0.tar.gz"),
        "acme/layout-ext": ("2.0.0", ("2.0.0",), "Layout Ext", "layout-ext"),
    }  # acme/plain has no extension label: skipped, as in a registry
    [(where, problem)] = catalog.errors
    assert where == str(folder) and problem.startswith("broken.tar")
    settings = marketplace.Settings(sources=(source,), only_listed=True)
    assert marketplace.listed(settings, "acme/ext:1.0.0") and marketplace.listed(settings, "acme/layout-ext:2.0.0")
    assert not marketplace.listed(settings, "acme/ext:9.9.9") and not marketplace.listed(settings, "acme/other:1")
    path, image = marketplace.file_for(settings, "acme/ext:1.0.0") or (None, None)
    assert path == folder / "ext-1.0.0.tar" and image is not None and image.image_id.startswith("sha256:")
    assert (marketplace.file_for(settings, "docker.io/acme/ext:1.2.0") or (None,))[0] == folder / "ext-1.2.0.tar.gz"
    assert marketplace.file_for(settings, "acme/ext") is None  # :latest is not there
    assert marketplace.file_for(settings, "acme/ext:1.0.0", source="/elsewhere") is None  # another folder


def test_a_file_is_read_again_when_it_changes(folder, tmp_path):
    source = marketplace.Source(kind="folder", path=str(folder))
    assert marketplace.file_for(marketplace.Settings(sources=(source,)), "acme/ext:1.0.0") is not None
    (folder / "ext-1.0.0.tar").write_bytes(saved(("acme/ext:1.0.1", ext_labels("Ext"))))
    os.utime(folder / "ext-1.0.0.tar", ns=(1, 1))  # another mtime for sure
    settings = marketplace.Settings(sources=(source,))
    assert marketplace.file_for(settings, "acme/ext:1.0.0") is None
    assert (marketplace.file_for(settings, "acme/ext:1.0.1") or (None,))[0] == folder / "ext-1.0.0.tar"


def test_a_file_replaced_with_the_same_size_and_mtime_is_read_again(folder):
    """Found in review: cp -p / rsync -t keep size and mtime; the inode and ctime change."""
    source = marketplace.Source(kind="folder", path=str(folder))
    settings = marketplace.Settings(sources=(source,))
    before = marketplace.file_for(settings, "acme/ext:1.0.0")
    assert before is not None and before[1].labels["org.opencontainers.image.title"] == "Ext"
    path = folder / "ext-1.0.0.tar"
    st = path.stat()
    other = saved(("acme/ext:1.0.0", ext_labels("Exu")))
    assert len(other) == st.st_size
    path.unlink()
    path.write_bytes(other)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = marketplace.file_for(settings, "acme/ext:1.0.0")
    assert after is not None and after[1].labels["org.opencontainers.image.title"] == "Exu"
    assert after[1].image_id != before[1].image_id


def test_links_and_unreadable_entries_do_not_sink_the_folder(folder, tmp_path):
    outside = tmp_path / "outside.tar"
    outside.write_bytes(saved(("acme/outside:1.0.0", ext_labels("Outside"))))
    (folder / "link.tar").symlink_to(outside)
    (folder / "twin.tar").write_bytes(saved(("acme/ext:1.0.0", ext_labels("Twin"))))
    source = marketplace.Source(kind="folder", path=str(folder))
    found, problems = marketplace.folder_images(source)
    names = {(image.name, path.name) for image, path in found}
    assert ("acme/outside:1.0.0", "link.tar") not in names  # a link is never followed out of the folder
    assert "acme/ext:1.0.0 is in ext-1.0.0.tar and twin.tar: ext-1.0.0.tar is used" in problems
    assert (marketplace.file_for(marketplace.Settings(sources=(source,)), "acme/ext:1.0.0") or (None,))[0] == (
        folder / "ext-1.0.0.tar")


@pytest.mark.parametrize("tags", ["acme/ext:1.0", 5, {"acme/ext:1.0": True}])
def test_repo_tags_that_are_not_a_list_name_nothing(tmp_path: Path, tags: object) -> None:
    """Found by a bug hunt: a string was iterated, one bogus image per character (cards named "a", "c"...)."""
    data = saved(("acme/ext:1.0", ext_labels("Ext")))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]
    [entry] = json.loads(files["manifest.json"])
    files["manifest.json"] = json.dumps([dict(entry, RepoTags=tags)]).encode()
    (tmp_path / "odd.tar").write_bytes(oci.tar_of(files))
    assert savedimages.read(tmp_path / "odd.tar", "odd.tar") == []


def test_many_entries_naming_one_config_read_it_once_and_keep_only_marketplace_labels(tmp_path):
    big = {f"x.{i}": "v" * 1000 for i in range(500)} | ext_labels("Ext")
    data = saved(("acme/ext:1.0.0", big))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]
    entries = json.loads(files["manifest.json"])
    entries = [dict(entries[0], RepoTags=[f"acme/ext:1.{i}.0"]) for i in range(80)]
    files["manifest.json"] = json.dumps(entries).encode()
    (tmp_path / "many.tar").write_bytes(oci.tar_of(files))
    images = savedimages.read(tmp_path / "many.tar", "many.tar")
    assert len(images) == savedimages.MAX_IMAGES
    assert images[0].labels == ext_labels("Ext")  # the x.* labels are not the Marketplace's: not kept
    assert all(i.labels is images[0].labels for i in images)  # one config, read and kept once


def test_files_gone_from_the_folder_are_forgotten(folder):
    source = marketplace.Source(kind="folder", path=str(folder))
    marketplace.folder_images(source)
    kept = {k[0] for k in marketplace._files}
    assert str(folder / "ext-1.0.0.tar") in kept
    (folder / "ext-1.0.0.tar").unlink()
    marketplace.folder_images(source)
    assert str(folder / "ext-1.0.0.tar") not in {k[0] for k in marketplace._files}


def test_a_folder_source_survives_the_settings_file_and_is_removed_by_its_path(folder, tmp_path, monkeypatch):
    lay = Layout(tmp_path / "home")
    marketplace.add_folder(lay, folder)
    assert marketplace.load(lay).sources == (marketplace.Source(kind="folder", path=str(folder)),)
    with pytest.raises(InvalidSource, match="is already there"):
        marketplace.add_folder(lay, folder)
    with pytest.raises(InvalidSource, match="is not a directory"):
        marketplace.add_folder(lay, folder / "ext-1.0.0.tar")
    monkeypatch.chdir(folder.parent)
    marketplace.remove(lay, "offline/")
    assert marketplace.load(lay).sources == ()


def test_a_refusal_names_a_folder_source_that_cannot_be_read(folder, tmp_path):
    """A folder that is gone (an unmounted share, a USB stick taken out) lists nothing: the refusal says so."""
    lay = Layout(tmp_path / "home")
    marketplace.add_folder(lay, folder)
    marketplace.set_only_listed(lay, True)
    marketplace.check_allowed(lay, "acme/ext:1.0.0")
    folder.rename(folder.with_name("unplugged"))
    with pytest.raises(NotListed) as exc:
        marketplace.check_allowed(lay, "acme/ext:1.0.0")
    assert exc.value.message.endswith(f"only listed extensions may be installed; cannot read the folder {folder}: "
                                      "No such file or directory")


# ----------------------------------------------------------------------------------------------------------
# What a folder's files hold is remembered between processes (<home>/cache/folder-files.json): a gzipped or xz
# file of a real extension takes about a second to read, and every CLI command that checks only-listed or
# lists the Marketplace would read every file of the folder again.
# ----------------------------------------------------------------------------------------------------------


def opened_by(home: Path, *args: str) -> tuple[str, set[str]]:
    """(stdout, the paths opened) of ``dockext ARGS`` run under strace: a new process, its memory empty. (It
    exits 1 here: broken.tar is a problem of the source, named on stderr.)"""
    trace = home.parent / "trace"
    proc = subprocess.run(
        ["strace", "-f", "-qq", "-s", "400", "-e", "trace=open,openat", "-o", str(trace),
         sys.executable, "-m", "dockext.cli", *args],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "DOCKEXT_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200"},
    )
    assert "broken.tar" in proc.stderr, proc.stderr
    return proc.stdout, set(re.findall(r'open(?:at)?\([^"]*"([^"]+)"', trace.read_text()))


def test_a_new_process_reads_only_the_files_that_changed_since_one_read_them(folder, tmp_path):
    home = tmp_path / "home"
    run_dockext("marketplace", "add", "--folder", str(folder), home=home)
    first, opened = opened_by(home, "marketplace", "ls")
    assert str(folder / "ext-1.2.0.tar.gz") in opened  # read once
    again, opened = opened_by(home, "marketplace", "ls")
    assert again == first  # the same catalog: acme/ext 1.2.0, acme/layout-ext 2.0.0
    assert "acme/layout-ext" in again and "1.2.0" in again
    # no file of the folder is read again, but the one that could not be read (it may be readable now)
    assert {p for p in opened if p.startswith(str(folder) + "/")} == {str(folder / "broken.tar")}
    (folder / "ext-1.2.0.tar.gz").write_bytes(gzip.compress(saved(("acme/ext:1.3.0", ext_labels("Ext")))))
    changed, opened = opened_by(home, "marketplace", "ls")
    assert "1.3.0" in changed and "1.2.0" not in changed
    assert {p for p in opened if p.startswith(str(folder) + "/")} == {str(folder / "ext-1.2.0.tar.gz"),
                                                                     str(folder / "broken.tar")}


def memo_of(home: Path) -> dict:
    return json.loads((home / marketplace.MEMO).read_text())


def test_the_memo_keeps_what_each_folder_holds_and_forgets_files_gone(folder, tmp_path, monkeypatch):
    lay = Layout(tmp_path / "home")
    marketplace.add_folder(lay, folder)
    other = tmp_path / "other"
    other.mkdir()
    (other / "o.tar").write_bytes(saved(("acme/o:1.0.0", ext_labels("O"))))
    marketplace.add_folder(lay, other)
    settings = marketplace.load(lay)
    catalog = marketplace.browse(settings)
    assert {e.image for e in catalog.entries} == {"acme/ext", "acme/layout-ext", "acme/o"}
    problems = [m for _, m in catalog.errors]
    assert any(m.startswith("broken.tar") for m in problems)
    remembered = {Path(f["key"][0]).name: f for f in memo_of(lay.root)["files"]}
    # broken.tar is not remembered: a file that could not be read is tried again (an I/O error passes)
    assert set(remembered) == {"ext-1.0.0.tar", "ext-1.2.0.tar.gz", "not-an-extension.tar", "layout-ext", "o.tar"}
    assert (lay.root / marketplace.MEMO).stat().st_mode & 0o777 == 0o600

    # a new process: nothing read again, the same catalog and the same problems
    marketplace.clear_cache()
    marketplace._files.clear()
    real_read, reads = savedimages.read, []
    monkeypatch.setattr(savedimages, "read", lambda path, *a: reads.append(path.name) or real_read(path, *a))
    again = marketplace.browse(marketplace.load(lay))
    assert again.entries == catalog.entries and again.errors == catalog.errors
    assert reads == ["broken.tar"]
    monkeypatch.undo()

    (folder / "ext-1.0.0.tar").unlink()  # gone: forgotten; the other folder's entries stay
    marketplace._files.clear()
    marketplace.folder_images(marketplace.load(lay).sources[0])
    names = {Path(f["key"][0]).name for f in memo_of(lay.root)["files"]}
    assert "ext-1.0.0.tar" not in names and "o.tar" in names


ODD = b'{"schema": 1, "reader": 1, "platform": "%s", "files": [{"key": ["x"]}, 7, {"key": [1, 2, 3, 4, 5]}]}' % (
    savedimages.host_platform().encode())


@pytest.mark.parametrize("memo", [b"{not json", b'{"schema": 99, "reader": 1, "files": []}', b"[]", ODD],
                         ids=["torn", "other-schema", "not-an-object", "odd-entries"])
def test_a_memo_that_cannot_be_vouched_for_is_read_past_and_written_again(folder, tmp_path, memo):
    lay = Layout(tmp_path / "home")
    marketplace.add_folder(lay, folder)
    (lay.root / marketplace.MEMO).parent.mkdir(parents=True)
    (lay.root / marketplace.MEMO).write_bytes(memo)
    assert marketplace.file_for(marketplace.load(lay), "acme/ext:1.2.0") is not None
    assert len(memo_of(lay.root)["files"]) == 4  # the readable files: all but broken.tar


def test_a_memo_naming_other_images_for_a_file_is_not_trusted_after_the_file_changes(folder, tmp_path):
    """The memo is keyed by the file's size, mtime, inode and ctime, as the in-memory cache: a file replaced
    (even with cp -p) is read again rather than believed."""
    lay = Layout(tmp_path / "home")
    marketplace.add_folder(lay, folder)
    assert marketplace.file_for(marketplace.load(lay), "acme/ext:1.0.0") is not None
    path = folder / "ext-1.0.0.tar"
    st = path.stat()
    path.unlink()
    path.write_bytes(saved(("acme/ext:1.0.0", ext_labels("Exu"))))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    marketplace._files.clear()
    got = marketplace.file_for(marketplace.load(lay), "acme/ext:1.0.0")
    assert got is not None and got[1].labels["org.opencontainers.image.title"] == "Exu"


def test_a_layout_given_a_new_image_in_place_is_read_again_by_a_new_process(folder, tmp_path):
    """`skopeo copy ... oci:DIR:TAG` onto a layout that exists rewrites its index.json in place and adds blobs
    under blobs/sha256: the layout directory itself keeps its size, mtime, inode and ctime. The memo must not
    keep naming the image it held before (install would then refuse the new one as 'replaced', for ever)."""
    lay = Layout(tmp_path / "home")
    marketplace.add_folder(lay, folder)
    before = marketplace.file_for(marketplace.load(lay), "acme/layout-ext:2.0.0")
    assert before is not None
    st = (folder / "layout-ext").stat()
    oci.single(saved(("x:1", ext_labels("Layout Exu"))), "acme/layout-ext:2.0.0").write_dir(folder / "layout-ext")
    assert (folder / "layout-ext").stat().st_ctime_ns == st.st_ctime_ns  # what made the memo believe it
    marketplace._files.clear()  # a new process
    got = marketplace.file_for(marketplace.load(lay), "acme/layout-ext:2.0.0")
    assert got is not None and got[1].labels["org.opencontainers.image.title"] == "Layout Exu"
    assert got[1].image_id != before[1].image_id
    assert got[1].image_id == savedimages.read(folder / "layout-ext", "layout-ext")[0].image_id


def test_a_full_memo_makes_room_for_the_folder_being_read(folder, tmp_path, monkeypatch):
    """Entries of other folders' files stay while the files exist, even once their folder is no longer a source.
    When they fill the memo, the folder being read replaces them, rather than never being remembered again (every
    process would read its files again)."""
    lay = Layout(tmp_path / "home")
    old = tmp_path / "old"
    old.mkdir()
    for i in range(6):
        (old / f"o{i}.tar").write_bytes(saved((f"acme/o{i}:1.0.0", ext_labels("O" * 3000))))
    marketplace.add_folder(lay, old)
    marketplace.folder_images(marketplace.load(lay).sources[0])
    size = (lay.root / marketplace.MEMO).stat().st_size
    marketplace.remove(lay, str(old))  # no longer a source; its files are still there
    monkeypatch.setattr(marketplace, "_MEMO_MAX", size + 1000)  # room for the old folder, not for both
    marketplace.add_folder(lay, folder)
    marketplace.folder_images(marketplace.load(lay).sources[0])
    names = {Path(f["key"][0]).name for f in memo_of(lay.root)["files"]}
    assert {"ext-1.0.0.tar", "ext-1.2.0.tar.gz", "not-an-extension.tar", "layout-ext"} <= names


def test_a_memo_written_on_another_platform_is_not_believed(folder, tmp_path, monkeypatch):
    """A home shared by machines of two architectures (an NFS home): what a multi-platform layout holds for one
    is not what it holds for the other (its image ID is the platform's config digest, checked at install)."""
    oci.multi_platform(saved(("x:1", ext_labels("Multi"))), "acme/multi:1.0.0").write_dir(folder / "multi")
    lay = Layout(tmp_path / "home")
    marketplace.add_folder(lay, folder)
    monkeypatch.setattr(savedimages, "host_platform", lambda: "linux/amd64")
    amd64 = marketplace.file_for(marketplace.load(lay), "acme/multi:1.0.0")
    monkeypatch.setattr(savedimages, "host_platform", lambda: "linux/arm64")
    marketplace._files.clear()  # a process on the arm64 machine
    arm64 = marketplace.file_for(marketplace.load(lay), "acme/multi:1.0.0")
    assert amd64 is not None and arm64 is not None
    assert arm64[1].image_id == savedimages.read(folder / "multi", "multi")[0].image_id != amd64[1].image_id
