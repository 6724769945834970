"""Offline install, the parts without an engine: which argument is a file, what a file is, what a load gave."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dockext import engineapi, offline
from dockext.cli import cli
from dockext.engine import _FileShrank, _UploadBody
from dockext.errors import DockextError, EngineError
from dockext.installer import Silent


def tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


SAVED = tar_bytes({"manifest.json": b"[]", "repositories": b"{}"})


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- which argument is a file ------------------------------------------------------------------------------


@pytest.mark.parametrize("arg", ["acme/my-ext:1.0", "acme/my-ext", "127.0.0.1:5000/acme/x:1", "alpine"])
def test_image_references_stay_references(here: Path, arg: str) -> None:
    assert offline.tarball_argument(arg) is None


@pytest.mark.parametrize("arg", ["ext.tar", "./ext.tar", "dir/ext.tar.gz", "x.tgz", "EXT.TAR", "/abs/ext.tar"])
def test_an_existing_file_is_a_tarball(here: Path, arg: str) -> None:
    path = here / arg.lstrip("/") if arg.startswith("/") else here / arg
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(SAVED)
    given = str(path) if arg.startswith("/") else arg
    assert offline.tarball_argument(given) == Path(given)


def test_an_existing_file_named_like_an_image_is_a_tarball(here: Path) -> None:
    (here / "alpine").write_bytes(SAVED)
    assert offline.tarball_argument("alpine") == Path("alpine")


@pytest.mark.parametrize("arg", ["./ext.tar", "missing/ext.tar.gz", "ext.tgz", "/nonexistent/x.tar", "../x"])
def test_a_path_that_does_not_exist_is_an_error_not_a_pull(here: Path, arg: str) -> None:
    with pytest.raises(DockextError) as info:
        offline.tarball_argument(arg)
    assert info.value.message == f"no such file: {arg}"
    assert "docker save" in (info.value.hint or "")


def test_a_directory_is_an_image_name_unless_it_looks_like_a_path(here: Path) -> None:
    (here / "acme" / "my-ext").mkdir(parents=True)
    assert offline.tarball_argument("acme/my-ext") is None
    (here / "layout.tar").mkdir()
    with pytest.raises(DockextError, match="is a directory, but not an OCI image layout"):
        offline.tarball_argument("./layout.tar")


@pytest.mark.parametrize("arg", [".", "..", "{here}", "project/", "My Project", "./project"])
def test_dot_dotdot_absolute_paths_and_directories_no_image_could_name_are_paths(here: Path, arg: str) -> None:
    """`dockext install .` says what a directory is not, rather than that "." is no valid repository name."""
    (here / "project").mkdir()
    (here / "My Project").mkdir()
    arg = arg.format(here=here)
    assert offline._looks_like_path(arg)
    with pytest.raises(DockextError) as info:
        offline.tarball_argument(arg)
    assert info.value.message == f"{arg} is a directory, but not an OCI image layout (it has no oci-layout file)"
    assert not offline._looks_like_path("project")  # a directory named like an image leaves it an image
    assert not offline._looks_like_path("missing-dir")


def test_a_directory_holding_oci_layout_is_an_oci_layout(here: Path) -> None:
    (here / "ext").mkdir()
    (here / "ext" / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    assert offline.tarball_argument("ext") == Path("ext")
    assert offline.check_tarball(Path("ext")) == "oci"


def test_a_device_is_not_a_tarball() -> None:
    with pytest.raises(DockextError, match=r"/dev/null is not a regular file"):
        offline.tarball_argument("/dev/null")


# -- what the file is (its first bytes only) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "compress"),
    [("tar", lambda b: b), ("gzip", gzip.compress), ("bzip2", bz2.compress), ("xz", lzma.compress)],
)
def test_tar_files_plain_or_compressed_as_docker_load_takes_them(
    tmp_path: Path, kind: str, compress: Callable[[bytes], bytes]
) -> None:
    path = tmp_path / "ext.tar"
    path.write_bytes(compress(SAVED))
    assert offline.check_tarball(path) == kind


def test_an_empty_tar_archive_passes_the_check_the_engine_then_finds_no_image(tmp_path: Path) -> None:
    path = tmp_path / "empty.tar"
    path.write_bytes(tar_bytes({}))
    assert offline.check_tarball(path) == "tar"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "x.tar is empty, not a tar file"),
        (b"hello\n", "x.tar is not a tar file (nor a gzip, bzip2 or xz compressed one)"),
        (b"PK\x03\x04" + os.urandom(2000), "x.tar is not a tar file (nor a gzip, bzip2 or xz compressed one)"),
        (b'{"not": "a tar"}' * 100, "x.tar is not a tar file (nor a gzip, bzip2 or xz compressed one)"),
        (gzip.compress(b"just text\n"), "x.tar is gzip compressed, but what it holds is not a tar file"),
        (gzip.compress(b"x" * 4096), "x.tar is gzip compressed, but what it holds is not a tar file"),
        (b"\x1f\x8b" + os.urandom(600), "x.tar is gzip compressed, but what it holds is not a tar file"),
    ],
)
def test_what_is_not_a_tar_is_refused_before_the_engine_sees_it(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "x.tar"
    path.write_bytes(content)
    with pytest.raises(DockextError) as info:
        offline.check_tarball(path, "x.tar")
    assert info.value.message == message
    assert "docker save IMAGE -o FILE" in (info.value.hint or "")


def test_a_damaged_header_checksum_is_not_a_tar(tmp_path: Path) -> None:
    data = bytearray(SAVED)
    data[0] ^= 0x01  # the name changes, the checksum no longer matches
    path = tmp_path / "x.tar"
    path.write_bytes(bytes(data))
    with pytest.raises(DockextError, match="is not a tar file"):
        offline.check_tarball(path)


def test_a_truncated_gzip_whose_start_is_fine_is_left_to_the_engine(tmp_path: Path) -> None:
    whole = gzip.compress(tar_bytes({"a": os.urandom(200_000), "manifest.json": b"[]"}))
    path = tmp_path / "x.tar.gz"
    path.write_bytes(whole[: len(whole) // 2])
    assert offline.check_tarball(path) == "gzip"


def test_a_file_shadowing_an_image_name_says_so(here: Path) -> None:
    (here / "alpine").write_text("not a tar\n")
    with pytest.raises(DockextError) as info:
        offline.check_tarball(Path("alpine"), "alpine")
    assert "alpine is the name of a file here: to install the image alpine, run dockext elsewhere" in str(info.value)


# -- what the engine answered ---------------------------------------------------------------------------------


def test_load_output_is_parsed_into_tagged_and_untagged_images() -> None:
    loaded = offline.parse_load_output(
        [
            "The image acme/x:1 already exists, renaming the old one with ID sha256:aa to empty string",
            "Loaded image: acme/x:1",
            "Loaded image: 127.0.0.1:5000/acme/y:2.0",
            "Loaded image: acme/x:1",
            "Loaded image ID: sha256:" + "b" * 64,
            "something else",
        ]
    )
    assert loaded.refs == ["acme/x:1", "127.0.0.1:5000/acme/y:2.0"]
    assert loaded.ids == ["sha256:" + "b" * 64]


def test_one_tagged_image_is_chosen() -> None:
    assert offline.choose(offline.Loaded(refs=["acme/x:1"]), None, "ext.tar") == "acme/x:1"


def test_several_images_need_a_choice_and_the_choice_is_matched_loosely() -> None:
    loaded = offline.Loaded(refs=["acme/x:1", "ubuntu:latest", "127.0.0.1:5000/acme/y:2"])
    with pytest.raises(DockextError) as info:
        offline.choose(loaded, None, "ext.tar")
    assert info.value.message == "ext.tar holds 3 images: acme/x:1, ubuntu:latest, 127.0.0.1:5000/acme/y:2"
    assert info.value.hint == "Choose the extension to install with --image, e.g. --image acme/x:1"
    assert offline.choose(loaded, "acme/x:1", "ext.tar") == "acme/x:1"
    assert offline.choose(loaded, "docker.io/library/ubuntu", "ext.tar") == "ubuntu:latest"
    assert offline.choose(loaded, "127.0.0.1:5000/acme/y:2", "ext.tar") == "127.0.0.1:5000/acme/y:2"
    with pytest.raises(DockextError) as info:
        offline.choose(loaded, "acme/x:2", "ext.tar")
    assert info.value.message == "ext.tar does not hold the image acme/x:2"
    assert "It holds: acme/x:1, ubuntu:latest, 127.0.0.1:5000/acme/y:2" in (info.value.hint or "")


def test_an_image_saved_by_id_is_refused_with_what_to_do() -> None:
    with pytest.raises(DockextError) as info:
        offline.choose(offline.Loaded(ids=["sha256:" + "c" * 64]), None, "ext.tar")
    assert info.value.message == "ext.tar holds an image without a name (sha256:cccccccccccc): it was saved by ID"
    assert "save it by name" in (info.value.hint or "")


def test_nothing_loaded_is_an_error() -> None:
    with pytest.raises(DockextError, match=r"ext\.tar holds no image"):
        offline.choose(offline.Loaded(), None, "ext.tar")


@pytest.mark.parametrize(
    ("engine_says", "kind", "message"),
    [
        ("Error processing tar file(exit status 1): unexpected EOF", EngineError,
         "ext.tar is truncated or damaged: the engine could not read it "
         "(Error processing tar file(exit status 1): unexpected EOF)"),
        ("Error processing tar file(exit status 1): archive/tar: invalid tar header", EngineError,
         "ext.tar is truncated or damaged"),
        ("open /var/lib/docker/tmp/docker-import-1/repositories: no such file or directory", DockextError,
         "ext.tar holds no image: it is a tar file, but not one made by `docker save` (it has no manifest)"),
        ("no space left on device", EngineError, "the engine could not load ext.tar: no space left on device"),
    ],
)
def test_engine_errors_become_messages_a_person_can_act_on(engine_says: str, kind: type, message: str) -> None:
    error = offline.explain_load_error(engine_says, "ext.tar")
    assert type(error) is kind
    assert error.message.startswith(message)
    assert error.hint


MISSING = "open /var/lib/docker/tmp/docker-import-1/manifest.json: no such file or directory"
WHOLE = tar_bytes({"layer/layer.tar": os.urandom(3000), "manifest.json": b"[]", "repositories": b"{}"})
COMPRESSORS: list[Callable[[bytes], bytes]] = [lambda b: b, gzip.compress, bz2.compress, lzma.compress]


@pytest.mark.parametrize("compress", COMPRESSORS)
def test_a_whole_archive_does_not_end_early(tmp_path: Path, compress: Callable[[bytes], bytes]) -> None:
    (tmp_path / "ext.tar").write_bytes(compress(WHOLE))
    assert offline.ends_early(tmp_path / "ext.tar") is None


@pytest.mark.parametrize("compress", COMPRESSORS)
def test_a_file_cut_between_members_is_truncated_not_manifestless(
    tmp_path: Path, compress: Callable[[bytes], bytes]
) -> None:
    """The engine reads a file cut at a member boundary as a shorter archive and finds no manifest: dockext
    tells the person the file is cut short, not that it was never made by `docker save`."""
    cut = WHOLE[: 512 + 3072]  # the layer's header and data, nothing after
    (tmp_path / "ext.tar").write_bytes(compress(cut))
    assert offline.ends_early(tmp_path / "ext.tar") == "it ends after 3584 bytes without the end-of-archive block"
    error = offline.explain_load_error(MISSING, "ext.tar", tmp_path / "ext.tar")
    assert type(error) is EngineError
    assert error.message.startswith("ext.tar is truncated or damaged: the engine could not read it (it ends after")
    assert error.hint and "Copy the file again completely" in error.hint


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (WHOLE[:700], "a member's data runs past the end of the file (700 bytes)"),
        (WHOLE[: 512 + 3072 + 100], "it ends inside a tar header at byte 3584"),
        (WHOLE[:512] + b"x" * 3072 + b"y" * 512, "the tar header at byte 3584 is damaged"),
        (gzip.compress(WHOLE)[:-20], "its compressed data ends early or is damaged: Compressed file ended"),
    ],
)
def test_how_a_file_ends_early_is_named(tmp_path: Path, data: bytes, reason: str) -> None:
    (tmp_path / "ext.tar").write_bytes(data)
    found = offline.ends_early(tmp_path / "ext.tar")
    assert found is not None and found.startswith(reason)


def test_a_whole_archive_without_a_manifest_still_says_so(tmp_path: Path) -> None:
    (tmp_path / "ext.tar").write_bytes(tar_bytes({"etc/hostname": b"x"}))
    error = offline.explain_load_error(MISSING, "ext.tar", tmp_path / "ext.tar")
    assert type(error) is DockextError and "holds no image" in error.message


# -- the request body: streamed from the file, never read whole ----------------------------------------------


def sent(body: _UploadBody) -> list[bytes]:
    """What ``http.client`` sends of a body that is a file: ``read(blocksize)`` until it gives nothing."""
    return list(iter(lambda: body.read(engineapi.BLOCK), b""))


def test_the_upload_body_reads_in_bounded_blocks_with_progress(tmp_path: Path) -> None:
    path = tmp_path / "big.tar"
    size = 9 * _UploadBody.BLOCK + 123
    path.write_bytes(os.urandom(size))
    events: list[dict[str, Any]] = []
    with open(path, "rb") as f:
        body = _UploadBody(f, os.fstat(f.fileno()).st_size, "big.tar", events.append)
        assert len(body.read(1 << 30)) == _UploadBody.BLOCK  # never more than a block, even when asked for all
        sizes = [_UploadBody.BLOCK, *(len(chunk) for chunk in sent(body))]
        assert max(sizes) <= _UploadBody.BLOCK and sum(sizes) == size
        assert len(body.read(1 << 30)) == 0
    assert events[-1] == {"id": "big.tar", "status": "Sending", "progressDetail": {"current": size, "total": size}}
    currents = [e["progressDetail"]["current"] for e in events]
    assert currents == sorted(currents) and len(events) >= 2


def test_a_small_file_sends_no_progress(tmp_path: Path) -> None:
    path = tmp_path / "small.tar"
    path.write_bytes(SAVED)
    events: list[dict[str, object]] = []
    with open(path, "rb") as f:
        assert b"".join(sent(_UploadBody(f, os.fstat(f.fileno()).st_size, "small.tar", events.append))) == SAVED
    assert events == []


def test_a_file_that_shrinks_while_sent_stops_the_upload(tmp_path: Path) -> None:
    path = tmp_path / "x.tar"
    path.write_bytes(b"x" * 3 * _UploadBody.BLOCK)
    with open(path, "rb") as f:
        body = _UploadBody(f, os.fstat(f.fileno()).st_size, "x.tar", None)
        os.truncate(path, _UploadBody.BLOCK)
        assert len(body.read(_UploadBody.BLOCK)) == _UploadBody.BLOCK
        with pytest.raises(_FileShrank):
            body.read(_UploadBody.BLOCK)


# -- the CLI, before any engine is asked -----------------------------------------------------------------------


def test_cli_missing_file_and_image_option_without_a_file(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKEXT_HOME", str(here / "home"))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")  # nothing here may reach an engine
    runner = CliRunner()
    result = runner.invoke(cli, ["install", "-f", "./ext.tar"])
    assert result.exit_code == 1
    assert "Error: no such file: ./ext.tar" in result.output
    result = runner.invoke(cli, ["install", "-f", "acme/x:1", "--image", "acme/x:1"])
    assert result.exit_code == 1
    assert "--image chooses an image inside a tar file, and acme/x:1 is not a file" in result.output
    (here / "notes.tar").write_text("hello\n")
    result = runner.invoke(cli, ["install", "-f", "notes.tar"])
    assert result.exit_code == 1
    assert "Error: notes.tar is not a tar file" in result.output
    assert not (here / "home" / "extensions").exists()


class _FakeEngine:
    """Just what install_tarball asks of the engine; records what it undoes."""

    def __init__(self, before: dict[str, str], loaded: list[str]) -> None:
        self.before, self.loaded, self.undone = before, loaded, []

    def ping(self) -> None:
        pass

    def tag_snapshot(self):
        from dockext.engine import TagSnapshot

        return TagSnapshot(tags=dict(self.before), ids=set(self.before.values()))

    def load_image(self, path, on_event):
        from dockext.engine import LoadOutput

        return LoadOutput(messages=[f"Loaded image: {r}" for r in self.loaded])

    def undo_load(self, before, refs, ids, keep):
        self.undone.append(list(refs))


class _FakeInstaller:
    def __init__(self, engine: _FakeEngine) -> None:
        self.engine = engine
        self.installed: list[str] = []

    def install(self, ref: str, deny: tuple[str, ...] = ()):
        self.installed.append(ref)
        return ref


def test_after_a_successful_install_a_name_the_file_moved_goes_back(tmp_path: Path) -> None:
    """Found in review: a file holding the extension and `acme/other:2.0` (a name already here, another
    extension's image) must not leave that name on an image of its own."""
    tar = tmp_path / "ext.tar"
    tar.write_bytes(b"\0" * 1024)  # an empty tar archive: passes the sniffing, the fake engine does the rest
    engine = _FakeEngine(before={"acme/other:2.0": "sha256:theirs"}, loaded=["acme/ext:1.0", "acme/other:2.0",
                                                                            "acme/new:1.0"])
    installer = _FakeInstaller(engine)
    offline.install_tarball(installer, tar, "acme/ext:1.0", Silent(), arg=str(tar))  # type: ignore[arg-type]
    assert installer.installed == ["acme/ext:1.0"]
    assert engine.undone == [["acme/other:2.0"]]  # moved back; acme/new:1.0 stays, as with docker load


def test_a_negative_or_base_256_size_ends_the_walk_without_a_judgement(tmp_path: Path) -> None:
    """Found in review: `int(..., 8)` takes "-1000", and a walk that does not move on never ends."""
    block = bytearray(tar_bytes({"a": b"x"})[:512])
    block[124:136] = b"-0000001000\0"
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    (tmp_path / "neg.tar").write_bytes(bytes(block) + b"\0" * 1024)
    assert offline.scan(tmp_path / "neg.tar").cut is None


def test_a_pax_size_record_is_followed(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("big")
        info.size = 3000
        info.pax_headers = {"size": "3000"}
        tar.addfile(info, io.BytesIO(b"y" * 3000))
        for name in ("oci-layout", "index.json"):
            tar.addfile(tarfile.TarInfo(name))
    data = bytearray(buf.getvalue())
    # the pax header says 3000; the ustar field of the member says 0 (as for members of 8 GiB and more)
    start = 1024 if data[156:157] == b"x" else 0
    data[start + 124:start + 136] = b"00000000000\0"
    data[start + 148:start + 156] = b" " * 8
    data[start + 148:start + 156] = b"%06o\0 " % sum(data[start:start + 512])
    (tmp_path / "pax.tar").write_bytes(bytes(data))
    found = offline.scan(tmp_path / "pax.tar")
    assert found.cut is None and {"oci-layout", "index.json"} <= found.names
