"""Offline install from a `docker save` file, with the real CLI, engine and Compose (reference §5.1, R21).

The fixture images are built as ``dockext-offline/<name>:1.0.0`` (their own names, so no other test run can
be affected), saved to a file, and their tag removed, so that only the file can bring them back.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from tests.engine.test_install import assert_nothing_left, get_over_socket, labelled, record
from tests.support import oci
from tests.support.cli import run_dockext

pytestmark = pytest.mark.engine

PREFIX = "dockext-offline"
UI = f"{PREFIX}/ui-only:1.0.0"
VM = f"{PREFIX}/vm-image:1.0.0"
UI_KEY, VM_KEY = f"{PREFIX}_ui-only", f"{PREFIX}_vm-image"


def tagged(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
    except docker.errors.ImageNotFound:
        return False
    return True


def untag(client: docker.DockerClient, ref: str) -> None:
    """Remove the tag (the image goes too when nothing else names it; images of other runs are never forced)."""
    if tagged(client, ref):
        client.images.remove(ref)


def ls_json(home: Path) -> list[dict[str, str]]:
    return json.loads(run_dockext("ls", "--format", "json", home=home).stdout)


def comparable(rec: dict[str, object]) -> dict[str, object]:
    """A record without what differs between any two installs (time, random origin and guest-services dir)."""
    out = {k: v for k, v in rec.items() if k not in ("installed_at", "origin_slug")}
    if isinstance(out.get("vm"), dict):
        out["vm"] = {k: v for k, v in out["vm"].items() if k != "gs_key"}  # type: ignore[union-attr]
    return out


@pytest.fixture(scope="module")
def files(
    fixture_image: Callable[..., str], docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Path]]:
    """`docker save` files of the fixtures, made while they are tagged; then the tags go.

    Also the by-name installs' records, for comparison: ``by-name-ui.json``, ``by-name-vm.json``.
    """
    d = tmp_path_factory.mktemp("offline")
    made: dict[str, Path] = {}
    for name, ref in (("ui", UI), ("vm", VM)):
        assert fixture_image(ref.split("/")[1].split(":")[0], repo_prefix=PREFIX) == ref
        image = docker_client.images.get(ref)
        with open(d / f"{name}.tar", "wb") as f:
            for chunk in image.save(named=ref):
                f.write(chunk)
        made[name] = d / f"{name}.tar"
        # the record an install by name makes, to compare with the offline one
        home = d / f"home-{name}"
        run_dockext("install", "-f", ref, home=home)
        made[f"by-name-{name}"] = d / f"by-name-{name}.json"
        made[f"by-name-{name}"].write_text(json.dumps(record(home, UI_KEY if name == "ui" else VM_KEY)))
        run_dockext("rm", ref, home=home)
    # a file holding both images
    subprocess.run(["docker", "save", "-o", str(d / "two.tar"), UI, VM], check=True, capture_output=True)
    made["two"] = d / "two.tar"
    # saved by ID: no name inside
    ui_id = docker_client.images.get(UI).id
    subprocess.run(["docker", "save", "-o", str(d / "by-id.tar"), ui_id], check=True, capture_output=True)
    made["by-id"] = d / "by-id.tar"
    for ref in (UI, VM):
        untag(docker_client, ref)
    yield made
    for ref in (UI, VM):
        untag(docker_client, ref)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The directory the CLI runs in (so that ``./ext.tar`` means what a user means)."""
    d = tmp_path / "work"
    d.mkdir()
    monkeypatch.chdir(d)
    return d


@pytest.fixture(autouse=True)
def untagged_before_and_after(files: dict[str, Path], docker_client: docker.DockerClient) -> Iterator[None]:
    for ref in (UI, VM):
        untag(docker_client, ref)
    yield
    for ref in (UI, VM):
        untag(docker_client, ref)


def assert_refused(home: Path, docker_client: docker.DockerClient, *args: str) -> str:
    """The install fails with exit 1: nothing installed, nothing tagged. Returns stderr."""
    proc = run_dockext("install", "-f", *args, home=home, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "pulling" not in proc.stdout
    assert "installed successfully" not in proc.stdout
    assert ls_json(home) == []
    assert not tagged(docker_client, UI) and not tagged(docker_client, VM)
    assert_nothing_left(home, docker_client, UI_KEY)
    return proc.stderr


def test_a_vm_extension_installs_from_a_saved_file_as_it_does_by_name(
    home: Path, cwd: Path, files: dict[str, Path], docker_client: docker.DockerClient
) -> None:
    shutil.copy(files["vm"], cwd / "ext.tar")
    out = run_dockext("install", "./ext.tar", "-f", home=home)
    lines = out.stdout.splitlines()
    assert lines[0].startswith("Loading ./ext.tar (") and lines[0].endswith(" MB) into the engine...")
    assert f"Loaded image: {VM}" in lines
    assert "pulling" not in out.stdout
    assert "Starting service in Desktop VM" in out.stdout
    assert out.stdout.rstrip().endswith("installed successfully")
    project = f"{VM_KEY}-desktop-extension"
    try:
        rec = record(home, VM_KEY)
        assert comparable(rec) == comparable(json.loads(files["by-name-vm"].read_text()))
        assert rec["image"] == VM and rec["labels"]["org.opencontainers.image.title"]
        [row] = ls_json(home)
        assert (row["id"], row["image"], row["vm"], row["ui"]) == (f"{PREFIX}/vm-image", VM, "Running(1)", row["ui"])
        assert row["ui"].startswith("1 tab(")
        status, body = get_over_socket(home / "gs" / rec["vm"]["gs_key"] / "backend.sock", "/hello")
        assert (status, json.loads(body)["message"]) == (200, "hello from vm-image")
        assert (home / "extensions" / VM_KEY / "ui" / "index.html").is_file()
        [ctr] = labelled(docker_client, f"com.docker.compose.project={project}")
        assert VM in ctr.image.tags
    finally:
        out = run_dockext("rm", VM, home=home)
    assert "removed" in out.stdout
    assert ls_json(home) == []
    assert_nothing_left(home, docker_client, VM_KEY, project)


def test_a_gzipped_file_installs_too_and_a_second_install_is_refused_without_changing_tags(
    home: Path, cwd: Path, files: dict[str, Path], docker_client: docker.DockerClient
) -> None:
    with open(files["ui"], "rb") as src, gzip.open(cwd / "ext.tar.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    (cwd / "link.tar.gz").symlink_to(cwd / "ext.tar.gz")  # a path of the user's own may be a link
    out = run_dockext("install", "-f", "link.tar.gz", home=home)
    assert f"Loaded image: {UI}" in out.stdout and "installed successfully" in out.stdout
    assert comparable(record(home, UI_KEY)) == comparable(json.loads(files["by-name-ui"].read_text()))
    image_id = docker_client.images.get(UI).id
    again = run_dockext("install", "-f", "ext.tar.gz", home=home, check=False)
    assert again.returncode == 1
    assert f"Error: extension {PREFIX}/ui-only is already installed" in again.stderr
    assert docker_client.images.get(UI).id == image_id  # the installed extension's tag is left alone
    [row] = ls_json(home)
    assert row["image"] == UI
    run_dockext("rm", UI, home=home)
    assert ls_json(home) == []
    assert_nothing_left(home, docker_client, UI_KEY)


def test_a_truncated_file_is_refused_and_a_retry_with_the_whole_file_succeeds(
    home: Path, cwd: Path, files: dict[str, Path], docker_client: docker.DockerClient
) -> None:
    data = files["ui"].read_bytes()
    (cwd / "ext.tar").write_bytes(data[: len(data) * 2 // 3])
    stderr = assert_refused(home, docker_client, "./ext.tar")
    assert "Error: ./ext.tar is truncated or damaged: the engine could not read it" in stderr
    assert "Copy the file again completely" in stderr
    # cut exactly before manifest.json: the engine reads a shorter, regular archive and finds no manifest
    with tarfile.open(files["ui"]) as tar:
        boundary = next(m.offset for m in tar.getmembers() if m.name == "manifest.json")
    (cwd / "ext.tar").write_bytes(data[:boundary])
    stderr = assert_refused(home, docker_client, "./ext.tar")
    assert (
        f"Error: ./ext.tar is truncated or damaged: the engine could not read it (it ends after {boundary} "
        "bytes without the end-of-archive block)"
    ) in stderr
    (cwd / "ext.tar.gz").write_bytes(gzip.compress(data)[:3000])
    stderr = assert_refused(home, docker_client, "./ext.tar.gz")
    assert "Error: ./ext.tar.gz is truncated or damaged" in stderr
    # R21: the same command with a good file works
    shutil.copy(files["ui"], cwd / "ext.tar")
    out = run_dockext("install", "-f", "./ext.tar", home=home)
    assert "installed successfully" in out.stdout
    assert [r["id"] for r in ls_json(home)] == [f"{PREFIX}/ui-only"]
    run_dockext("rm", UI, home=home)
    assert_nothing_left(home, docker_client, UI_KEY)


def test_files_that_are_not_docker_save_output_are_refused_clearly(
    home: Path, cwd: Path, files: dict[str, Path], docker_client: docker.DockerClient
) -> None:
    (cwd / "notes.tar").write_text("these are notes, not an image\n")
    stderr = assert_refused(home, docker_client, "notes.tar")
    assert "Error: notes.tar is not a tar file (nor a gzip, bzip2 or xz compressed one)" in stderr
    assert "docker save IMAGE -o FILE" in stderr

    with tarfile.open(cwd / "files.tar", "w") as tar:
        tar.add(cwd / "notes.tar", arcname="notes.txt")
    stderr = assert_refused(home, docker_client, "./files.tar")
    assert "Error: ./files.tar holds no image: it is a tar file, but not one made by `docker save`" in stderr

    stderr = assert_refused(home, docker_client, "./missing.tar")
    assert "Error: no such file: ./missing.tar" in stderr
    assert "Traceback" not in stderr

    stderr = assert_refused(home, docker_client, str(files["by-id"]))
    assert "holds an image without a name" in stderr and "save it by name" in stderr


def test_a_file_with_two_images_needs_image_and_leaves_nothing_tagged_when_refused(
    home: Path, files: dict[str, Path], docker_client: docker.DockerClient
) -> None:
    stderr = assert_refused(home, docker_client, str(files["two"]))
    assert f"holds 2 images: {UI}, {VM}" in stderr or f"holds 2 images: {VM}, {UI}" in stderr
    assert "Choose the extension to install with --image" in stderr
    stderr = assert_refused(home, docker_client, str(files["two"]), "--image", f"{PREFIX}/other:1")
    assert f"does not hold the image {PREFIX}/other:1" in stderr
    out = run_dockext("install", "-f", str(files["two"]), "--image", UI, home=home)
    assert f"Loaded image: {UI}" in out.stdout and "installed successfully" in out.stdout
    assert [r["image"] for r in ls_json(home)] == [UI]
    run_dockext("rm", UI, home=home)
    assert_nothing_left(home, docker_client, UI_KEY)


# -- OCI image layouts (skopeo, buildx -o type=oci, podman oci-archive): sent as `docker save` archives ----------


def test_a_vm_extension_installs_from_a_multi_platform_oci_layout_directory_as_it_does_by_name(
    home: Path, cwd: Path, files: dict[str, Path], docker_client: docker.DockerClient
) -> None:
    oci.multi_platform(files["vm"].read_bytes(), VM).write_dir(cwd / "ext-oci")
    out = run_dockext("install", "-f", "ext-oci", home=home)
    assert f"Loading {VM} (linux/amd64) from the OCI layout ext-oci into the engine..." in out.stdout
    assert f"Loaded image: {VM}" in out.stdout and "pulling" not in out.stdout
    assert out.stdout.rstrip().endswith("installed successfully")
    try:
        rec = record(home, VM_KEY)
        assert comparable(rec) == comparable(json.loads(files["by-name-vm"].read_text()))
        status, body = get_over_socket(home / "gs" / rec["vm"]["gs_key"] / "backend.sock", "/hello")
        assert (status, json.loads(body)["message"]) == (200, "hello from vm-image")
        # the engine has the image the layout's amd64 manifest describes: the same ID as the saved one
        assert docker_client.images.get(VM).id == json.loads(files["by-name-vm"].read_text())["image_id"]
    finally:
        run_dockext("rm", VM, home=home)
    assert ls_json(home) == []
    assert_nothing_left(home, docker_client, VM_KEY, f"{VM_KEY}-desktop-extension")


def test_an_oci_archive_without_a_name_needs_image_then_installs_plain_or_gzipped(
    home: Path, cwd: Path, files: dict[str, Path], docker_client: docker.DockerClient
) -> None:
    layout = oci.single(files["ui"].read_bytes(), None)  # `skopeo copy ... oci-archive:ext.tar` with no tag
    layout.write_tar(cwd / "ext.tar")
    stderr = assert_refused(home, docker_client, "./ext.tar")
    assert "Error: ./ext.tar holds an image without a name" in stderr and "--image" in stderr
    (cwd / "oci-link.tar").symlink_to(cwd / "ext.tar")  # the user's own link is followed (a layout's are not)
    out = run_dockext("install", "-f", "./oci-link.tar", "--image", UI, home=home)
    assert f"Loaded image: {UI}" in out.stdout and "installed successfully" in out.stdout
    assert comparable(record(home, UI_KEY)) == comparable(json.loads(files["by-name-ui"].read_text()))
    run_dockext("rm", UI, home=home)
    untag(docker_client, UI)
    # gzipped, the engine is tried first (it finds no manifest), then the layout is read through the compression
    with open(cwd / "ext.tar", "rb") as src, gzip.open(cwd / "ext.tar.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    out = run_dockext("install", "-f", "ext.tar.gz", "--image", UI, home=home)
    assert "from the OCI layout ext.tar.gz" in out.stdout and "installed successfully" in out.stdout
    run_dockext("rm", UI, home=home)
    assert ls_json(home) == []
    assert_nothing_left(home, docker_client, UI_KEY)


def test_a_layout_with_a_damaged_layer_loads_nothing_and_says_which_blob(
    home: Path, cwd: Path, files: dict[str, Path], docker_client: docker.DockerClient
) -> None:
    layout = oci.single(files["ui"].read_bytes(), UI)
    root = layout.write_dir(cwd / "ext-oci")
    manifest = json.loads(layout.blobs[layout.manifests[0]["digest"]])
    layer = manifest["layers"][-1]["digest"]
    blob = root / "blobs" / layer.replace(":", "/")
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    blob.write_bytes(bytes(data))
    images_before = {i["Id"] for i in docker_client.api.images(all=True)}
    stderr = assert_refused(home, docker_client, "./ext-oci")
    assert f"Error: ./ext-oci: blob {layer} does not match its digest (the layout is damaged)" in stderr
    # the engine loaded nothing of it (the other part of the suite, sharing the engine, builds images meanwhile)
    assert manifest["config"]["digest"] not in {i["Id"] for i in docker_client.api.images(all=True)} - images_before
    # a directory that is no layout is named as such
    (cwd / "not-a-layout").mkdir()
    stderr = assert_refused(home, docker_client, "./not-a-layout")
    assert "Error: ./not-a-layout is a directory, but not an OCI image layout (it has no oci-layout file)" in stderr


def padded(saved: Path, dest: Path, size: int) -> Path:
    """``saved`` with a big file first: the engine ignores it, and sending it takes a while."""
    with tarfile.open(dest, "w") as out, tarfile.open(saved) as src:
        info = tarfile.TarInfo("padding.bin")
        info.size = size
        with open("/dev/zero", "rb") as zero:
            out.addfile(info, zero)
        for member in src.getmembers():
            out.addfile(member, src.extractfile(member) if member.isfile() else None)
    return dest


def fd_position(pid: int, path: Path) -> int | None:
    """Where process ``pid`` is reading ``path`` (None when it does not have it open)."""
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                        return int(f.readline().split()[1])
            except (FileNotFoundError, ProcessLookupError):
                continue
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def peak_rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def test_killed_while_loading_leaves_no_image_and_memory_stays_flat(
    home: Path, tmp_path: Path, files: dict[str, Path], docker_client: docker.DockerClient
) -> None:
    """R21: `kill -9` mid-load; the retry works. A file much bigger than dockext's memory loads in small blocks."""
    size = 384 << 20
    big = padded(files["ui"], tmp_path / "big.tar", size)
    env = {**os.environ, "DOCKEXT_HOME": str(home), "NO_COLOR": "1"}
    argv = [sys.executable, "-m", "dockext.cli", "install", "-f", str(big)]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    position = None
    while proc.poll() is None:
        position = fd_position(proc.pid, big)
        if position is not None and 16 << 20 < position < size:
            proc.send_signal(signal.SIGKILL)
            break
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"not killed mid-load (at {position}): {proc.returncode}"
    assert ls_json(home) == []
    assert not tagged(docker_client, UI)
    assert_nothing_left(home, docker_client, UI_KEY)

    # the retry, with the same big file: it works, and dockext's memory does not grow with the file
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, peak_rss_kib(proc.pid))
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stdout + stderr
    assert "installed successfully" in stdout
    print(f"peak RSS of `dockext install` of a {size >> 20} MiB file: {peak / 1024:.1f} MiB")
    assert 0 < peak < (size >> 10) // 4
    assert [r["image"] for r in ls_json(home)] == [UI]
    run_dockext("rm", UI, home=home)
    assert_nothing_left(home, docker_client, UI_KEY)
