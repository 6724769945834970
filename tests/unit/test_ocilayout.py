"""OCI image layouts read and sent as `docker save` archives, without an engine (src/dockext/ocilayout.py).

The engine tests (tests/engine/test_offline_install.py) install layouts made from real images."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from dockext import ocilayout
from dockext.errors import DockextError
from tests.support import oci

LAYER = b"layer-data " * 300


def saved_archive() -> bytes:
    """A small `docker save` archive: one config, one layer."""
    layer_bytes = oci.tar_of({"hello.txt": LAYER})
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {"Labels": {"a": "b"}},
        "rootfs": {"type": "layers", "diff_ids": [oci.digest_of(layer_bytes)]},
    }).encode()
    files = {
        "abc/layer.tar": layer_bytes,
        "cfg.json": config,
        "manifest.json": json.dumps(
            [{"Config": "cfg.json", "RepoTags": ["x:1"], "Layers": ["abc/layer.tar"]}]
        ).encode(),
    }
    return oci.tar_of(files)


SAVED = saved_archive()
NAME = "acme/my-ext:1.0.0"


def send(layout: ocilayout.Layout, image: ocilayout.Image) -> tuple[bytes, int]:
    archive = ocilayout.DockerArchive(layout, image)
    return io.BufferedReader(archive).read(), archive.size


def members(data: bytes) -> dict[str, bytes]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for info in tar:
            f = tar.extractfile(info)
            assert f is not None
            out[info.name] = f.read()
    return out


@pytest.fixture(params=["dir", "tar"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(request.param)


def write(layout: oci.Layout, tmp_path: Path, where: str) -> Path:
    if where == "dir":
        (tmp_path / "layout").mkdir()
        return layout.write_dir(tmp_path / "layout")
    return layout.write_tar(tmp_path / "layout.tar")


def test_one_named_image_becomes_a_docker_save_archive_of_the_right_size(tmp_path: Path, where: str) -> None:
    src = oci.single(SAVED, NAME)
    layout = ocilayout.open_layout(write(src, tmp_path, where), "ext")
    image = ocilayout.plan(layout, "linux/amd64", None)
    assert (image.name, image.platform) == (NAME, "linux/amd64")
    data, size = send(layout, image)
    layout.close()
    assert len(data) == size
    files = members(data)
    [manifest] = json.loads(files.pop("manifest.json"))
    assert manifest["RepoTags"] == [NAME]
    assert manifest["Config"] == image.config.path if image.config else False
    # every blob named in it is in the archive, byte for byte as in the layout
    for name in [manifest["Config"], *manifest["Layers"]]:
        assert files.pop(name) == src.blobs[name.removeprefix("blobs/").replace("/", ":", 1)]
    assert files == {}


def test_the_reference_name_annotation_names_the_image_when_it_is_a_full_reference(tmp_path: Path) -> None:
    layout = ocilayout.open_layout(
        oci.single(SAVED, "acme/ext", key="org.opencontainers.image.ref.name").write_dir(tmp_path), "ext"
    )
    assert ocilayout.plan(layout, "linux/amd64", None).name == "acme/ext:latest"


def test_a_multi_platform_index_gives_the_engines_platform_and_skips_attestations(tmp_path: Path, where: str) -> None:
    path = write(oci.multi_platform(SAVED, NAME), tmp_path, where)
    layout = ocilayout.open_layout(path, "ext")
    assert [(i.name, i.platform) for i in ocilayout.images(layout, "linux/amd64")] == [(NAME, "linux/amd64")]
    arm = ocilayout.plan(layout, "linux/arm64", None)
    assert arm.platform == "linux/arm64" and arm.name == NAME
    with pytest.raises(DockextError, match=r"holds no image for the engine's platform linux/s390x "
                       r"\(platforms in it: linux/amd64, linux/arm64\)"):
        ocilayout.plan(layout, "linux/s390x", None)


def test_an_image_without_a_name_needs_one_from_image(tmp_path: Path) -> None:
    layout = ocilayout.open_layout(oci.single(SAVED, None).write_dir(tmp_path), "./ext")
    with pytest.raises(DockextError, match=r"\./ext holds an image without a name") as caught:
        ocilayout.plan(layout, "linux/amd64", None)
    assert "--image" in (caught.value.hint or "")
    assert ocilayout.plan(layout, "linux/amd64", "acme/named").name == "acme/named:latest"
    with pytest.raises(DockextError, match="--image Acme/X: invalid image reference"):
        ocilayout.plan(layout, "linux/amd64", "Acme/X")


def test_several_images_need_a_choice(tmp_path: Path) -> None:
    src = oci.single(SAVED, NAME)
    other = oci.other_platform_image(src, "amd64")
    other["annotations"] = {"io.containerd.image.name": "acme/other:2"}
    src.manifests.append(other)
    layout = ocilayout.open_layout(src.write_dir(tmp_path), "ext")
    with pytest.raises(DockextError, match=f"ext holds 2 images: {NAME}, acme/other:2"):
        ocilayout.plan(layout, "linux/amd64", None)
    assert ocilayout.plan(layout, "linux/amd64", "acme/other:2").manifest.digest == other["digest"]
    with pytest.raises(DockextError, match="does not hold the image acme/third:1"):
        ocilayout.plan(layout, "linux/amd64", "acme/third:1")


def test_a_docker_25_save_file_is_not_taken_for_a_layout() -> None:
    assert ocilayout.is_layout_tar({"oci-layout", "index.json", "blobs/sha256/x"})
    assert not ocilayout.is_layout_tar({"oci-layout", "index.json", "manifest.json"})  # docker 25+: load it as is
    assert not ocilayout.is_layout_tar({"manifest.json", "repositories"})


# -- hostile or broken layouts: a clear error naming the part, nothing read outside the layout ---------------


def layout_dir(tmp_path: Path, src: oci.Layout | None = None) -> tuple[oci.Layout, Path]:
    src = src or oci.single(SAVED, NAME)
    (tmp_path / "l").mkdir()
    return src, src.write_dir(tmp_path / "l")


def manifest_blob(src: oci.Layout) -> dict[str, object]:
    return json.loads(src.blobs[str(src.manifests[0]["digest"])])


@pytest.mark.parametrize("digest", ["sha256:../../../../etc/passwd", "sha256:" + "A" * 64, "md5:abc", 12])
def test_a_digest_that_could_name_a_path_is_refused(tmp_path: Path, digest: object) -> None:
    src = oci.single(SAVED, NAME)
    src.manifests[0]["digest"] = digest
    _, root = layout_dir(tmp_path, src)
    with pytest.raises(DockextError, match=r"index.json, manifest 1 has no valid digest"):
        ocilayout.plan(ocilayout.open_layout(root, "ext"), "linux/amd64", None)


def test_a_blob_that_is_a_link_is_not_followed(tmp_path: Path) -> None:
    src, root = layout_dir(tmp_path)
    layer = manifest_blob(src)["layers"][0]["digest"]  # type: ignore[index]
    blob = root / "blobs" / layer.replace(":", "/")
    (tmp_path / "outside").write_bytes(blob.read_bytes())
    blob.unlink()
    blob.symlink_to(tmp_path / "outside")
    with pytest.raises(DockextError, match=f"blob {layer} is missing \\(or is not a regular file\\)"):
        ocilayout.plan(ocilayout.open_layout(root, "ext"), "linux/amd64", None)


def test_a_blobs_directory_that_is_a_link_is_not_followed(tmp_path: Path) -> None:
    _, root = layout_dir(tmp_path)
    (root / "blobs").rename(tmp_path / "elsewhere")
    (root / "blobs").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(DockextError, match="is missing \\(or is not a regular file\\)"):
        ocilayout.plan(ocilayout.open_layout(root, "ext"), "linux/amd64", None)


def test_a_tar_member_that_is_a_link_is_not_a_blob(tmp_path: Path) -> None:
    src = oci.single(SAVED, NAME)
    index = src.files()
    config = manifest_blob(src)["config"]["digest"]  # type: ignore[index]
    with tarfile.open(tmp_path / "l.tar", "w") as tar:
        for name, data in index.items():
            info = tarfile.TarInfo(name)
            if name == "blobs/" + config.replace(":", "/"):
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(info)
                continue
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DockextError, match=f"blob {config} is missing"):
        ocilayout.plan(ocilayout.open_layout(tmp_path / "l.tar", "ext"), "linux/amd64", None)


def test_a_name_found_twice_in_a_tar_is_refused(tmp_path: Path) -> None:
    files = oci.single(SAVED, NAME).files()
    with tarfile.open(tmp_path / "l.tar", "w") as tar:
        for name, data in [*files.items(), ("index.json", files["index.json"])]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DockextError, match=r"index\.json appears twice in the tar file"):
        ocilayout.open_layout(tmp_path / "l.tar", "ext")


def test_a_blob_of_another_size_than_its_descriptor_is_refused(tmp_path: Path) -> None:
    src, root = layout_dir(tmp_path)
    layer = manifest_blob(src)["layers"][0]["digest"]  # type: ignore[index]
    with open(root / "blobs" / layer.replace(":", "/"), "ab") as f:
        f.write(b"more")
    with pytest.raises(DockextError, match=f"blob {layer} is [0-9]+ bytes, its descriptor says"):
        ocilayout.plan(ocilayout.open_layout(root, "ext"), "linux/amd64", None)


def test_a_blob_whose_bytes_do_not_match_its_digest_stops_the_archive_before_its_end(tmp_path: Path) -> None:
    src, root = layout_dir(tmp_path)
    layer = manifest_blob(src)["layers"][0]["digest"]  # type: ignore[index]
    path = root / "blobs" / layer.replace(":", "/")
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    layout = ocilayout.open_layout(root, "ext")
    image = ocilayout.plan(layout, "linux/amd64", None)
    archive = ocilayout.DockerArchive(layout, image)
    reader = io.BufferedReader(archive)
    sent = 0
    with pytest.raises(DockextError, match=f"blob {layer} does not match its digest"):
        while chunk := reader.read(4096):
            sent += len(chunk)
    assert sent < archive.size - 1024  # no manifest.json, no end-of-archive: the engine loads nothing


def test_a_manifest_that_does_not_match_its_digest_is_refused(tmp_path: Path) -> None:
    src, root = layout_dir(tmp_path)
    digest = str(src.manifests[0]["digest"])
    path = root / "blobs" / digest.replace(":", "/")
    path.write_bytes(path.read_bytes().replace(b"schemaVersion", b"schemaVersioN"))
    with pytest.raises(DockextError, match=f"manifest {digest} does not match its digest"):
        ocilayout.plan(ocilayout.open_layout(root, "ext"), "linux/amd64", None)


def test_an_absurd_index_is_refused_before_it_is_read(tmp_path: Path) -> None:
    _, root = layout_dir(tmp_path)
    with open(root / "index.json", "wb") as f:
        f.truncate(64 << 20)  # sparse: costs nothing on disk
    with pytest.raises(DockextError, match=r"index\.json is 67108864 bytes, more than the limit of 4194304"):
        ocilayout.plan(ocilayout.open_layout(root, "ext"), "linux/amd64", None)


def test_indexes_nested_too_deep_are_refused(tmp_path: Path) -> None:
    src = oci.Layout()
    desc = oci.image_from_docker_archive(src, SAVED)
    for _ in range(6):
        desc = src.add(json.dumps({"schemaVersion": 2, "manifests": [desc]}).encode(), oci.OCI_INDEX)
    src.manifests.append(desc)
    _, root = layout_dir(tmp_path, src)
    with pytest.raises(DockextError, match="indexes are nested more than 4 deep"):
        ocilayout.plan(ocilayout.open_layout(root, "ext"), "linux/amd64", None)


@pytest.mark.parametrize(
    ("marker", "message"),
    [(b'{"imageLayoutVersion": "2.0.0"}', "oci-layout does not name a layout version"),
     (b"not json", "oci-layout does not name a layout version")],
)
def test_an_unknown_layout_version_is_refused(tmp_path: Path, marker: bytes, message: str) -> None:
    _, root = layout_dir(tmp_path)
    (root / "oci-layout").write_bytes(marker)
    with pytest.raises(DockextError, match=message):
        ocilayout.open_layout(root, "ext")


def test_index_json_that_is_not_json_is_named(tmp_path: Path) -> None:
    _, root = layout_dir(tmp_path)
    (root / "index.json").write_text("{")
    with pytest.raises(DockextError, match=r"ext: index\.json is not valid JSON"):
        ocilayout.plan(ocilayout.open_layout(root, "ext"), "linux/amd64", None)


def test_a_truncated_layout_tar_is_named(tmp_path: Path) -> None:
    path = oci.single(SAVED, NAME).write_tar(tmp_path / "l.tar")
    with tarfile.open(path) as tar:
        second = tar.getmembers()[1].offset
    path.write_bytes(path.read_bytes()[: second + 600])  # inside the second blob's data
    with pytest.raises(DockextError, match="ext is truncated or damaged: unexpected end of data"):
        ocilayout.open_layout(path, "ext")


def test_sha512_blobs_are_read_too(tmp_path: Path) -> None:
    src = oci.single(SAVED, NAME)
    config = src.blobs[manifest_blob(src)["config"]["digest"]]  # type: ignore[index]
    digest = "sha512:" + hashlib.sha512(config).hexdigest()
    src.blobs[digest] = config
    manifest = manifest_blob(src)
    manifest["config"] = {"mediaType": oci.OCI_CONFIG, "digest": digest, "size": len(config)}
    desc = src.add(json.dumps(manifest).encode(), oci.OCI_MANIFEST, annotations={"io.containerd.image.name": NAME})
    src.manifests = [desc]
    _, root = layout_dir(tmp_path, src)
    layout = ocilayout.open_layout(root, "ext")
    data, size = send(layout, ocilayout.plan(layout, "linux/amd64", None))
    assert len(data) == size
    assert f"blobs/sha512/{digest[7:]}" in members(data)
    assert os.path.exists(root / "blobs" / "sha512")


# -- found in review: what a hostile layout must not do ---------------------------------------------------------


def test_one_index_referred_to_many_times_is_read_once_and_descriptors_are_capped(tmp_path: Path) -> None:
    src = oci.Layout()
    image = oci.image_from_docker_archive(src, SAVED)
    inner = src.add(json.dumps({"schemaVersion": 2, "manifests": [image] * 20}).encode(), oci.OCI_INDEX)
    middle = src.add(json.dumps({"schemaVersion": 2, "manifests": [inner] * 20}).encode(), oci.OCI_INDEX)
    src.manifests = [middle] * 20  # 8000 images if each reference were walked
    _, root = layout_dir(tmp_path, src)
    layout = ocilayout.open_layout(root, "ext")
    assert len(ocilayout.images(layout, "linux/amd64")) == 1
    wide = oci.Layout()
    image = oci.image_from_docker_archive(wide, SAVED)
    parts = [wide.add(json.dumps({"schemaVersion": 2, "manifests": [image] * (400 + i)}).encode(), oci.OCI_INDEX)
             for i in range(3)]
    wide.manifests = parts
    (tmp_path / "w").mkdir()
    layout = ocilayout.open_layout(wide.write_dir(tmp_path / "w"), "ext")
    with pytest.raises(DockextError, match="its indexes list more than 1000 manifests"):
        ocilayout.images(layout, "linux/amd64")


@pytest.mark.parametrize("where_", ["oci-layout", "index.json"])
def test_json_nested_too_deep_is_an_error_not_a_crash(tmp_path: Path, where_: str) -> None:
    _, root = layout_dir(tmp_path)
    (root / where_).write_bytes(b"[" * 60_000)
    with pytest.raises(DockextError):
        ocilayout.plan(ocilayout.open_layout(root, "ext"), "linux/amd64", None)


def test_a_media_type_that_is_not_a_string_is_named(tmp_path: Path) -> None:
    src = oci.single(SAVED, NAME)
    src.manifests[0]["mediaType"] = ["x"]
    _, root = layout_dir(tmp_path, src)
    with pytest.raises(DockextError, match="has a mediaType that is not a string"):
        ocilayout.plan(ocilayout.open_layout(root, "ext"), "linux/amd64", None)


def test_without_a_variant_from_the_engine_the_lowest_variant_is_chosen(tmp_path: Path) -> None:
    src = oci.Layout()
    for variant in ("v7", "v6"):
        desc = oci.other_platform_image(src, "arm")
        desc["platform"]["variant"] = variant
        desc["annotations"] = {"io.containerd.image.name": NAME}
        src.manifests.append(desc)
    _, root = layout_dir(tmp_path, src)
    layout = ocilayout.open_layout(root, "ext")
    assert ocilayout.plan(layout, "linux/arm", None).platform == "linux/arm/v6"
    assert ocilayout.plan(layout, "linux/arm/v7", None).platform == "linux/arm/v7"


def test_a_hard_linked_blob_is_checked_before_a_byte_of_it_is_sent(tmp_path: Path) -> None:
    src, root = layout_dir(tmp_path)
    layer = manifest_blob(src)["layers"][0]["digest"]  # type: ignore[index]
    blob = root / "blobs" / layer.replace(":", "/")
    size = blob.stat().st_size
    (tmp_path / "secret").write_bytes(b"s" * size)  # same size, other bytes: a file of the host
    blob.unlink()
    os.link(tmp_path / "secret", blob)
    with pytest.raises(DockextError, match=f"blob {layer} does not match its digest"):
        ocilayout.plan(ocilayout.open_layout(root, "ext"), "linux/amd64", None)


def test_a_layout_tar_with_too_many_entries_is_refused(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "many.tar", "w") as tar:
        for i in range(10_001):
            tar.addfile(tarfile.TarInfo(f"f{i}"))
    with pytest.raises(DockextError, match="has more than 10000 entries"):
        ocilayout.open_layout(tmp_path / "many.tar", "ext")


def test_blobs_of_a_tar_are_sent_in_the_tar_s_order(tmp_path: Path) -> None:
    src = oci.single(SAVED, NAME)
    path = src.write_tar(tmp_path / "l.tar")
    layout = ocilayout.open_layout(path, "ext")
    image = ocilayout.plan(layout, "linux/amd64", None)
    data, size = send(layout, image)
    assert len(data) == size
    with tarfile.open(path) as tar:
        stored = [m.name for m in tar.getmembers() if m.name.startswith("blobs/")]
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        sent = [m.name for m in tar.getmembers() if m.name != "manifest.json"]
    assert sent == [n for n in stored if n in sent]


def test_a_tar_with_a_pax_number_that_is_not_one_is_a_layout_error(tmp_path: Path) -> None:
    """Found by a bug hunt: a bare ValueError from tarfile (``GNU.sparse.size=abc``), not the layout's error."""
    with tarfile.open(tmp_path / "l.tar", "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, pax in (("oci-layout", b'{"imageLayoutVersion":"1.0.0"}', {}),
                                ("index.json", b'{"manifests":[]}', {"GNU.sparse.size": "abc"})):
            info = tarfile.TarInfo(name)
            info.size, info.pax_headers = len(data), pax
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DockextError, match=r"l\.tar is truncated or damaged: invalid literal for int\(\)"):
        ocilayout.open_layout(tmp_path / "l.tar", "l.tar")
