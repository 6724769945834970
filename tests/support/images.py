"""Test images, built locally through the Engine API (no public registry is reachable).

* ``dockext-test/pybase:latest``: Debian's python3.11 + trimmed stdlib + libs + busybox, FROM scratch
  (``tests/fixtures/pybase/``).
* ``dockext-test/<name>:<tag>``: the fixture extension ``tests/fixtures/extensions/<name>/``.
* ``conformance-v1`` and ``conformance-v0`` are built from a copy of their folder (links resolved) plus the UI
  scripts that ``tsc`` compiles from ``tests/conformance/src`` (:func:`compile_conformance`: ``npm ci`` when the
  lock file changed, then ``tsc -p tests/conformance``; a type error fails the build, loudly).

Each image carries a label with the hash of its inputs; a build is skipped when an image with that tag and
that hash exists, so only the first session after a change pays for it. Builds hold a file lock, so parallel
test sessions do not build the same thing twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import docker
import docker.errors

from tests.support.locks import locked

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "extensions"
CONFORMANCE_DIR = FIXTURES_DIR.parent.parent / "conformance"
#: Fixtures whose UI scripts tsc compiles: fixture name -> files of tests/conformance/build/ copied into ui/
COMPILED_UI = {"conformance-v1": ("common.js", "v1.js"), "conformance-v0": ("common.js", "v0.js")}
PYBASE_DIR = FIXTURES_DIR.parent / "pybase"
PYBASE = "dockext-test/pybase:latest"
HASH_LABEL = "dockext.test.input-hash"
#: On every image built here (to list or remove them all: docker image prune -af --filter label=dockext.test)
TEST_LABEL = "dockext.test"

# Host files that go into pybase (mkroot.sh copies them): their size + mtime stand for the content.
_PYBASE_HOST_FILES = (
    "/usr/bin/python3.11",
    "/usr/lib/python3.11/os.py",
    "/usr/lib/python3.11/lib-dynload",
    "/bin/busybox",
    "/lib/x86_64-linux-gnu/libc.so.6",
    "/lib/aarch64-linux-gnu/libc.so.6",
)
_LOCK = Path(tempfile.gettempdir()) / "dockext-test-images.lock"


def fixture_names() -> list[str]:
    return sorted(p.name for p in FIXTURES_DIR.iterdir() if (p / "Dockerfile").is_file())


def ensure_pybase(client: docker.DockerClient) -> str:
    """Build ``dockext-test/pybase:latest`` unless it is up to date; return its tag."""
    h = hashlib.sha256()
    for name in ("mkroot.sh", "Dockerfile"):
        h.update((PYBASE_DIR / name).read_bytes())
    for f in _PYBASE_HOST_FILES:
        with contextlib.suppress(FileNotFoundError):
            st = os.stat(f)
            h.update(f"{f} {st.st_size} {st.st_mtime_ns}\n".encode())
    digest = h.hexdigest()
    with locked(_LOCK):
        if _current_hash(client, PYBASE) == digest:
            return PYBASE
        with tempfile.TemporaryDirectory(prefix="dockext-pybase-") as tmp:
            shutil.copy(PYBASE_DIR / "Dockerfile", tmp)
            mkroot = subprocess.run(
                ["bash", str(PYBASE_DIR / "mkroot.sh"), f"{tmp}/rootfs"], capture_output=True, text=True
            )
            if mkroot.returncode != 0:
                raise RuntimeError(f"mkroot.sh failed ({mkroot.returncode}): {mkroot.stderr[-3000:]}")
            _build(client, Path(tmp), PYBASE, digest)
    return PYBASE


def _run(argv: list[str], cwd: Path, what: str) -> None:
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)
    except FileNotFoundError as exc:
        raise RuntimeError(f"{what}: {argv[0]} is not installed (Node.js is needed: bash scripts/setup.sh)") from exc
    if proc.returncode != 0:
        output = proc.stdout[-6000:] + proc.stderr[-3000:]
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {' '.join(argv)} in {cwd}\n{output}")


def _tree_hash(paths: list[Path], base: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(f"{path.relative_to(base).as_posix()}\n".encode() + path.read_bytes() + b"\n")
    return h.hexdigest()


def compile_conformance() -> Path:
    """Type-check and compile ``tests/conformance`` with its pinned tsc; return its ``build/`` folder.

    ``npm ci`` runs when ``package-lock.json`` changed since the last one (or ``node_modules`` is missing),
    ``tsc -p`` when a source, the tsconfig or the lock changed; each leaves a stamp with the hash of its inputs.
    A type error raises RuntimeError with tsc's report, so the tests that need these fixtures fail with it.
    """
    d = CONFORMANCE_DIR
    lock_hash = hashlib.sha256((d / "package-lock.json").read_bytes()).hexdigest()  # scripts/setup.sh: the same
    src_hash = _tree_hash([d / "tsconfig.json", *(d / "src").rglob("*.ts")], d) + lock_hash
    modules_stamp = d / "node_modules" / ".dockext-lock-hash"
    build_stamp = d / "build" / ".dockext-src-hash"
    with locked(_LOCK):
        tsc = d / "node_modules" / "typescript" / "bin" / "tsc"
        if not tsc.is_file() or not modules_stamp.is_file() or modules_stamp.read_text() != lock_hash:
            _run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], d, "npm ci in tests/conformance")
            modules_stamp.write_text(lock_hash)
        if not build_stamp.is_file() or build_stamp.read_text() != src_hash:
            build_stamp.unlink(missing_ok=True)
            _run(["node", str(d / "node_modules" / "typescript" / "bin" / "tsc"), "-p", str(d)], d,
                 "tsc (type-checking tests/conformance against @docker/extension-api-client-types)")
            build_stamp.write_text(src_hash)
    return d / "build"


def build_fixture(
    client: docker.DockerClient, name: str, *, tag: str = "1.0.0", repo_prefix: str = "dockext-test",
    labels: dict[str, str] | None = None,
) -> str:
    """Build fixture ``name`` as ``<repo_prefix>/<name>:<tag>`` unless it is up to date; return the ref.

    Different tags give different images (the tag is a label), as a new version of an extension would be; so do
    different prefixes (the repository is a label too), so that no two test names share an image ID. ``labels``
    are set on the image over the Dockerfile's (``docker build --label``), e.g. other Marketplace categories.
    """
    if name not in COMPILED_UI:
        return _build_fixture_from(client, FIXTURES_DIR / name, name, tag=tag, repo_prefix=repo_prefix,
                                   labels=labels)
    build = compile_conformance()
    with tempfile.TemporaryDirectory(prefix=f"dockext-{name}-") as tmp:
        context = Path(tmp) / name
        shutil.copytree(FIXTURES_DIR / name, context, symlinks=False)  # resolves the links to conformance-v1
        for file in COMPILED_UI[name]:
            shutil.copy(build / file, context / "ui" / file)
        return _build_fixture_from(client, context, name, tag=tag, repo_prefix=repo_prefix, labels=labels)


def _build_fixture_from(client: docker.DockerClient, context: Path, name: str, *, tag: str, repo_prefix: str,
                        labels: dict[str, str] | None = None) -> str:
    dockerfile = (context / "Dockerfile").read_text()
    h = hashlib.sha256(f"tag={tag}\nrepository={repo_prefix}/{name}\n".encode())
    for label, value in sorted((labels or {}).items()):
        h.update(f"label {label}={value}\n".encode())
    if re.search(rf"^FROM\s+{re.escape(PYBASE.split(':')[0])}\b", dockerfile, re.MULTILINE):
        ensure_pybase(client)
        h.update(f"base={client.images.get(PYBASE).id}\n".encode())
    for path in sorted(p for p in context.rglob("*") if "__pycache__" not in p.parts):
        rel = path.relative_to(context).as_posix()
        if path.is_symlink():
            h.update(f"L {rel} {os.readlink(path)}\n".encode())
        elif path.is_file():
            h.update(f"F {rel} {os.access(path, os.X_OK)} ".encode() + path.read_bytes() + b"\n")
    ref = f"{repo_prefix}/{name}:{tag}"
    with locked(_LOCK):
        if _current_hash(client, ref) != h.hexdigest():
            # the name is a label too: two names never share an image ID (views list an image under each name)
            _build(client, context, ref, h.hexdigest(),
                   extra_labels={**(labels or {}), "dockext.test.tag": tag,
                                 "dockext.test.repository": f"{repo_prefix}/{name}"})
    return ref


def push_fixture(client: docker.DockerClient, ref: str, registry: str = "127.0.0.1:5000") -> str:
    """Push the local image ``ref`` to ``registry``; return the registry ref.

    The registry tag is removed locally afterwards, so that installing the registry ref must pull it.
    """
    remote = f"{registry}/{ref}"
    repository, _, tag = remote.rpartition(":")
    client.images.get(ref).tag(repository, tag)
    try:
        for event in client.images.push(repository, tag, stream=True, decode=True):
            if "error" in event:
                raise RuntimeError(f"push {remote}: {event['error']}")
    finally:
        client.images.remove(remote)
    return remote


def _current_hash(client: docker.DockerClient, ref: str) -> str | None:
    try:
        labels = client.images.get(ref).labels
    except docker.errors.ImageNotFound:
        return None
    return labels.get(HASH_LABEL)


def _build(
    client: docker.DockerClient,
    context: Path,
    ref: str,
    digest: str,
    extra_labels: dict[str, str] | None = None,
) -> None:
    labels = {HASH_LABEL: digest, TEST_LABEL: "1", **(extra_labels or {})}
    try:
        client.images.build(path=str(context), tag=ref, labels=labels, rm=True, forcerm=True)
    except docker.errors.BuildError as exc:
        log = "".join(str(e.get("stream") or e.get("error") or "") for e in exc.build_log)
        raise RuntimeError(f"building {ref} from {context} failed: {exc}\n{log[-3000:]}") from exc


def read_image_path(client: docker.DockerClient, ref: str, path: str) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    """The tree at ``path`` in image ``ref``, as ``{name in the archive: (TarInfo, content)}``.

    Works for FROM scratch images (create, never start, get_archive). Missing path: docker.errors.NotFound.
    """
    container = client.containers.create(ref, command=["/nonexistent"], labels={TEST_LABEL: "1"})
    try:
        chunks, _ = container.get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
            return {m.name: (m, _read_member(tar, m)) for m in tar.getmembers()}
    finally:
        container.remove(force=True)


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(member) if member.isfile() else None
    return f.read() if f is not None else b""


def copy_image(src: docker.DockerClient, dst: docker.DockerClient, ref: str) -> None:
    """``docker save REF | docker load`` from one engine to another (by name: the tag goes with it), unless
    ``dst`` has that very image under that name already."""
    image = src.images.get(ref)
    with contextlib.suppress(docker.errors.ImageNotFound):
        if dst.images.get(ref).id == image.id:
            return
    # The SDK streams any iterable of bytes to the engine; its annotation names only bytes and files.
    dst.images.load(image.save(chunk_size=1 << 20, named=ref))  # type: ignore[arg-type]
