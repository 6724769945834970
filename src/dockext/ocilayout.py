"""Offline install from an OCI image layout: a directory, or a tar of one (``skopeo copy ... oci:DIR:TAG``,
``docker buildx build -o type=oci,dest=ext.tar``, ``podman save --format oci-archive``).

An engine before Docker 25 loads only ``docker save`` archives, so the layout is sent to ``POST /images/load``
as one: its blobs (stored under ``blobs/<algorithm>/<hex>``, as in the layout) and a ``manifest.json`` naming
the config and layers of the one image chosen. Nothing is unpacked or written on this host; the archive is
made as it is sent, and its size is known in advance.

The layout is attacker data: every blob is named by a digest of the right form (``sha256:<64 hex>`` or
``sha512:<128 hex>``), so no path comes from the layout; a blob is a regular file in the layout (no link is
followed, in a directory or a tar); its size must be the one its descriptor gives; the JSON documents
(``index.json``, indexes, manifests, configs) are capped in size and nesting; and every blob's digest is
checked as it is read, so a blob that does not match stops the upload before the engine sees a whole archive.
The engine itself checks each layer against the config's ``diff_ids``.

Which image: the index's manifests (nested indexes followed, attestation manifests skipped) for the engine's
platform. An image is named by its descriptor's ``io.containerd.image.name`` annotation, or by
``org.opencontainers.image.ref.name`` when that is a full reference; a layout holding one image without a
name (``skopeo copy`` into ``oci:DIR`` with no tag) needs the name from ``--image``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import lzma
import os
import re
import stat
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from . import archive
from .errors import DockextError, InvalidImageReference
from .model import ImageRef, canonical_ref

__all__ = ["DockerArchive", "Image", "Layout", "config_labels", "labels_of", "open_layout", "open_tar", "plan"]

HINT = (
    "Make the layout again (for example `skopeo copy docker://REF oci:DIR:TAG`), or make a `docker save` file "
    "where the image is."
)
MAX_JSON = 4 << 20  # an index, a manifest or a config
MAX_DEPTH = 4  # indexes within indexes
MAX_MANIFESTS = 1000  # descriptors in all the indexes together
MAX_INDEXES = 100  # index documents read (each digest once)
MAX_MEMBERS = 10_000  # entries of a layout tar
MAX_META = 64 << 10  # bytes of a pax or GNU long-name header in a layout tar
_TAR_MODES = ((b"\x1f\x8b", "r:gz"), (b"BZh", "r:bz2"), (b"\xfd7zXZ\x00", "r:xz"))
#: what reading a hostile or damaged tar raises: tarfile's own errors, and a bare ValueError (OverflowError) from
#: the int() it runs on pax numbers (``GNU.sparse.size=abc``)
_READ_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError, ValueError, OverflowError)
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")
_INDEX_TYPES = {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"}
_MANIFEST_TYPES = {"application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"}
_NAME_KEYS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")


class LayoutError(DockextError):
    """An OCI layout that cannot be installed; the message names the part and what is wrong with it."""


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int

    @property
    def path(self) -> str:
        algorithm, hex_ = self.digest.split(":", 1)
        return f"blobs/{algorithm}/{hex_}"


@dataclass
class Image:
    """One image of the layout: its name (None when the layout gives none), platform, config and layers."""

    name: str | None
    platform: str
    manifest: Blob
    config: Blob | None = None
    layers: list[Blob] = field(default_factory=list)


class Layout:
    """Read access to a layout's files by their names in the layout; only regular files are ever read."""

    what: str

    def size(self, name: str) -> int | None:
        raise NotImplementedError

    def chunks(self, name: str) -> Iterator[bytes]:
        raise NotImplementedError

    def close(self) -> None:
        """Nothing to release by default."""

    def in_order(self, names: list[str]) -> list[str]:
        """``names`` in the order they are best read (a tar's: no seeking back through a compressed stream)."""
        return names

    def shared(self, name: str) -> bool:
        """True when the file may also be something outside the layout (a hard link): check before sending."""
        return False

    def names(self) -> list[str]:
        """The regular files' names, where they can be listed at once (a tar); empty otherwise."""
        return []

    def read(self, name: str, cap: int = MAX_JSON) -> bytes:
        size = self.size(name)
        if size is None:
            raise LayoutError(f"{self.what}: {name} is missing (or is not a regular file)", hint=HINT)
        if size > cap:
            raise LayoutError(f"{self.what}: {name} is {size} bytes, more than the limit of {cap}", hint=HINT)
        return b"".join(self.chunks(name))


class _DirLayout(Layout):
    """A layout directory. Each name is opened one component at a time, refusing links (``O_NOFOLLOW``)."""

    def __init__(self, root: Path, what: str) -> None:
        self.what = what
        self.root = os.open(root, os.O_RDONLY | os.O_DIRECTORY)

    def _open(self, name: str) -> int | None:
        *dirs, leaf = name.split("/")
        fd = os.dup(self.root)
        try:
            for part in dirs:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = nxt
            leaf_fd = os.open(leaf, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
        except OSError:
            return None
        finally:
            os.close(fd)
        if not stat.S_ISREG(os.fstat(leaf_fd).st_mode):
            os.close(leaf_fd)
            return None
        return leaf_fd

    def size(self, name: str) -> int | None:
        fd = self._open(name)
        if fd is None:
            return None
        try:
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def shared(self, name: str) -> bool:
        fd = self._open(name)
        if fd is None:
            return False
        try:
            return os.fstat(fd).st_nlink > 1
        finally:
            os.close(fd)

    def chunks(self, name: str) -> Iterator[bytes]:
        fd = self._open(name)
        if fd is None:
            raise LayoutError(f"{self.what}: {name} is missing (or is not a regular file)", hint=HINT)
        with os.fdopen(fd, "rb") as f:
            while data := f.read(1 << 20):
                yield data

    def close(self) -> None:
        os.close(self.root)


class _TarLayout(Layout):
    """A tar of a layout (plain or compressed). Only regular members count; a name found twice is refused."""

    def __init__(self, path: Path, what: str) -> None:
        self.what = what
        try:
            # a regular file, not followed through a link, and never waited on (a FIFO put in its place)
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            self.file = os.fdopen(fd, "rb")
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                self.file.close()
                raise LayoutError(f"{what} is not a regular file", hint=HINT)
            magic = self.file.read(6)
            self.file.seek(0)
            # the compression told by its magic, not by trying each (a guessed one can read as an empty tar)
            mode = next((m for prefix, m in _TAR_MODES if magic.startswith(prefix)), "r:")
            guarded = archive.guarded_tarinfo(what, MAX_META)
            self.tar = tarfile.open(fileobj=self.file, mode=mode, tarinfo=guarded)  # type: ignore[call-overload]  # noqa: SIM115
        except DockextError:
            raise
        except _READ_ERRORS as exc:
            if hasattr(self, "file"):
                self.file.close()
            raise LayoutError(f"{what} cannot be read as a tar file: {exc}", hint=HINT) from None
        self.members: dict[str, tarfile.TarInfo] = {}
        seen: set[str] = set()
        try:
            for info in self.tar:
                name = info.name.removeprefix("./")
                if name in seen:
                    raise LayoutError(f"{what}: {name} appears twice in the tar file", hint=HINT)
                seen.add(name)
                if len(seen) > MAX_MEMBERS:
                    raise LayoutError(f"{what} has more than {MAX_MEMBERS} entries: not an image layout", hint=HINT)
                if info.isreg():
                    self.members[name] = info
                cast(Any, self.tar).members.clear()  # only the regular files are kept, here
        except DockextError:
            self.close()
            raise
        except _READ_ERRORS as exc:
            self.close()
            raise LayoutError(f"{what} is truncated or damaged: {exc}", hint=HINT) from None

    def in_order(self, names: list[str]) -> list[str]:
        return sorted(names, key=lambda n: self.members[n].offset_data if n in self.members else -1)

    def names(self) -> list[str]:
        return list(self.members)

    def size(self, name: str) -> int | None:
        info = self.members.get(name)
        return None if info is None else info.size

    def chunks(self, name: str) -> Iterator[bytes]:
        info = self.members.get(name)
        src = None if info is None else self.tar.extractfile(info)
        if src is None:
            raise LayoutError(f"{self.what}: {name} is missing (or is not a regular file)", hint=HINT)
        try:
            while data := src.read(1 << 20):
                yield data
        except _READ_ERRORS as exc:
            raise LayoutError(f"{self.what} is truncated or damaged: {exc}", hint=HINT) from None

    def close(self) -> None:
        self.tar.close()
        self.file.close()


def is_layout_tar(names: set[str]) -> bool:
    """A tar holding an OCI layout and no ``manifest.json`` (which the engine would read as a ``docker save``
    archive: Docker 25 and later save both)."""
    return "oci-layout" in names and "index.json" in names and "manifest.json" not in names


def open_tar(path: Path, what: str) -> Layout:
    """Any tar (plain or compressed) read as a layout reads: regular members by name, with the same caps."""
    return _TarLayout(path, what)


def labels_of(layout: Layout, image: Image) -> tuple[str, dict[str, str]]:
    """The config digest (the image ID once loaded) and labels of ``image`` (its manifest and config read and
    checked against their digests)."""
    manifest = _json(layout, image.manifest, "manifest")
    blob = _blob(layout, manifest.get("config"), f"manifest {image.manifest.digest[:19]}, config")
    return blob.digest, config_labels(_json(layout, blob, "config"))


def config_labels(config: object) -> dict[str, str]:
    """The ``config.Labels`` of an image config document (string values only)."""
    inner = config.get("config") if isinstance(config, dict) else None
    labels = inner.get("Labels") if isinstance(inner, dict) else None
    if not isinstance(labels, dict):
        return {}
    return {str(k): str(v) for k, v in labels.items() if isinstance(v, str)}


def open_layout(path: Path, what: str) -> Layout:
    """The layout at ``path`` (a directory holding ``oci-layout``, or a tar of one), checked to be one."""
    layout: Layout = _DirLayout(path, what) if path.is_dir() else _TarLayout(path, what)
    try:
        marker = layout.read("oci-layout", 64 << 10)
        try:
            version = json.loads(marker).get("imageLayoutVersion")
        except (ValueError, AttributeError, RecursionError):
            version = None
        if not isinstance(version, str) or not version.startswith("1."):
            raise LayoutError(
                f"{what}: oci-layout does not name a layout version this host reads (1.x): {marker[:80]!r}",
                hint=HINT,
            )
    except BaseException:
        layout.close()
        raise
    return layout


def _json(layout: Layout, blob: Blob | None, name: str) -> dict[str, Any]:
    """A JSON document of the layout: a blob (its size and digest checked) or a file such as index.json."""
    if blob is not None:
        data = layout.read(blob.path)
        if len(data) != blob.size:
            raise LayoutError(
                f"{layout.what}: {name} {blob.digest} is {len(data)} bytes, its descriptor says {blob.size}",
                hint=HINT,
            )
        if _hash(blob.digest, data) != blob.digest:
            raise LayoutError(f"{layout.what}: {name} {blob.digest} does not match its digest", hint=HINT)
    else:
        data = layout.read(name)
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise LayoutError(f"{layout.what}: {name} is not valid JSON ({exc})", hint=HINT) from None
    except RecursionError:
        raise LayoutError(f"{layout.what}: {name} nests its JSON too deep", hint=HINT) from None
    if not isinstance(doc, dict):
        raise LayoutError(f"{layout.what}: {name} is not a JSON object", hint=HINT)
    return doc


def _hash(digest: str, data: bytes) -> str:
    algorithm = digest.split(":", 1)[0]
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def _blob(layout: Layout, desc: object, where: str) -> Blob:
    if not isinstance(desc, dict):
        raise LayoutError(f"{layout.what}: {where} is not a descriptor", hint=HINT)
    digest, size = desc.get("digest"), desc.get("size")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise LayoutError(f"{layout.what}: {where} has no valid digest: {str(digest)[:100]!r}", hint=HINT)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise LayoutError(f"{layout.what}: {where} has no valid size", hint=HINT)
    return Blob(digest, size)


def _name(annotations: object) -> str | None:
    """The image name a descriptor's annotations give: a full reference, or None (a bare tag is no name)."""
    if not isinstance(annotations, dict):
        return None
    for key in _NAME_KEYS:
        value = annotations.get(key)
        if isinstance(value, str) and ("/" in value or ":" in value):
            with contextlib.suppress(InvalidImageReference):
                return tagged_name(value)
    return None


def tagged_name(ref: str) -> str:
    """``ref`` as the tag a loaded image gets: ``:latest`` added when it has no tag; a digest cannot be one."""
    parsed = ImageRef.parse(ref)
    if parsed.digest is not None:
        raise InvalidImageReference(f"{ref} names a digest, and a loaded image gets a tag")
    return ref if parsed.tag else f"{ref}:latest"


def _platform(desc: dict[str, Any]) -> str | None:
    p = desc.get("platform")
    if not isinstance(p, dict):
        return None
    parts = [str(p.get("os", "")), str(p.get("architecture", ""))] + ([str(p["variant"])] if p.get("variant") else [])
    return "/".join(parts)


def images(layout: Layout, engine_platform: str) -> list[Image]:
    """The images of the layout that run on ``engine_platform`` (``linux/amd64``): for each name (and for the
    unnamed), the manifest that fits the platform best (see :func:`_fit`).

    Each index is read once however often it is referred to, and the descriptors of all indexes together
    are capped, so a small layout cannot describe an endless tree."""
    index = _json(layout, None, "index.json")
    found: list[tuple[tuple[int, str], Image]] = []
    platforms: set[str] = set()
    visited: set[tuple[str, str | None]] = set()
    counted = [0, 0]  # descriptors, indexes read

    def walk(doc: dict[str, Any], name: str | None, depth: int, where: str) -> None:
        manifests = doc.get("manifests")
        if not isinstance(manifests, list):
            raise LayoutError(f"{layout.what}: {where} lists no manifests", hint=HINT)
        counted[0] += len(manifests)
        if counted[0] > MAX_MANIFESTS:
            raise LayoutError(f"{layout.what}: its indexes list more than {MAX_MANIFESTS} manifests", hint=HINT)
        for i, desc in enumerate(manifests):
            here = f"{where}, manifest {i + 1}"
            blob = _blob(layout, desc, here)
            assert isinstance(desc, dict)
            annotations = desc.get("annotations") or {}
            if isinstance(annotations, dict) and annotations.get("vnd.docker.reference.type") == "attestation-manifest":
                continue
            own = name if depth else _name(annotations)
            media = desc.get("mediaType")
            if not isinstance(media, str | None):
                raise LayoutError(f"{layout.what}: {here} has a mediaType that is not a string", hint=HINT)
            if media in _INDEX_TYPES:
                if depth + 1 >= MAX_DEPTH:
                    raise LayoutError(f"{layout.what}: indexes are nested more than {MAX_DEPTH} deep", hint=HINT)
                if (blob.digest, own) in visited:
                    continue
                visited.add((blob.digest, own))
                counted[1] += 1
                if counted[1] > MAX_INDEXES:
                    raise LayoutError(f"{layout.what}: it has more than {MAX_INDEXES} indexes", hint=HINT)
                walk(_json(layout, blob, "index"), own, depth + 1, f"index {blob.digest[:19]}")
                continue
            if media is not None and media not in _MANIFEST_TYPES:
                continue  # an artifact, a signature...
            platform = _platform(desc)
            if platform is not None:
                platforms.add(platform)
            fit = _fit(platform, engine_platform)
            if fit is not None:
                found.append((fit, Image(own, platform or engine_platform, blob)))

    walk(index, None, 0, "index.json")
    if not found:
        seen = ", ".join(sorted(platforms)) or "none"
        raise LayoutError(
            f"{layout.what} holds no image for the engine's platform {engine_platform} (platforms in it: {seen})",
            hint=HINT,
        )
    best: dict[str | None, tuple[tuple[int, str], Image]] = {}
    for fit, image in found:
        if image.name is None or image.name not in best or fit < best[image.name][0]:
            # unnamed images are merged only with the same manifest (several others cannot be told apart)
            best[image.name if image.name is not None else f"\0{image.manifest.digest}"] = (fit, image)
    return [image for _, image in best.values()]


def _fit(platform: str | None, engine: str) -> tuple[int, str] | None:
    """How well a manifest's platform fits the engine's (lower is better), or None when it does not run there.

    The engine names no variant (``GET /version`` gives ``Os`` and ``Arch``): the same variant, if it named
    one, fits best, then a manifest without one, then the lowest variant (``arm/v6`` runs where ``arm/v7``
    does, not the other way round)."""
    if platform is None:
        return (1, "")
    want, have = engine.split("/"), platform.split("/")
    if have[:2] != want[:2]:
        return None
    if len(have) < 3:
        return (1, "")
    if len(want) >= 3:
        return (0, "") if have[2] == want[2] else None
    return (2, have[2])


def plan(layout: Layout, engine_platform: str, wanted: str | None) -> Image:
    """The image to send: the one named ``wanted``, or the only one; its manifest read and checked."""
    found = images(layout, engine_platform)
    named = [i for i in found if i.name is not None]
    if wanted is not None:
        matches = [i for i in named if canonical_ref(i.name or "") == canonical_ref(wanted)]
        if not matches and len(found) > 1 and not named:
            raise LayoutError(
                f"{layout.what} holds {len(found)} images without names: which one is the extension cannot be "
                "told", hint="Make a layout of the extension alone.",
            )
        if not matches and len(found) == 1 and found[0].name is None:
            try:
                wanted = tagged_name(wanted)
            except InvalidImageReference as exc:
                raise LayoutError(f"--image {wanted}: {exc.message}") from None
            matches = found  # a layout without names: --image gives the name
        if not matches:
            names = ", ".join(sorted({i.name for i in named if i.name})) or "no named image"
            raise LayoutError(f"{layout.what} does not hold the image {wanted}", hint=f"It holds: {names}.")
        image = matches[0]
        image.name = wanted if image.name is None else image.name
    elif len(found) > 1 and not named:
        raise LayoutError(
            f"{layout.what} holds {len(found)} images without names: which one is the extension cannot be told",
            hint="Make a layout of the extension alone.",
        )
    elif len(found) > 1 and any(i.name is None for i in found):
        raise LayoutError(
            f"{layout.what} holds {len(found)} images, not all of them named: which one is the extension cannot "
            "be told", hint="Give the name of a named one with --image, or make a layout of the extension alone.",
        )
    elif len(found) > 1:
        names = ", ".join(sorted(i.name or "" for i in found))
        raise LayoutError(
            f"{layout.what} holds {len(found)} images: {names}",
            hint="Choose the extension to install with --image NAME:TAG.",
        )
    elif found[0].name is None:
        raise LayoutError(
            f"{layout.what} holds an image without a name",
            hint="An extension is installed by name: give it with --image, e.g. --image acme/my-extension:1.0.0.",
        )
    else:
        image = found[0]
    manifest = _json(layout, image.manifest, "manifest")
    image.config = _blob(layout, manifest.get("config"), f"manifest {image.manifest.digest[:19]}, config")
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise LayoutError(f"{layout.what}: manifest {image.manifest.digest[:19]} lists no layers", hint=HINT)
    image.layers = [_blob(layout, d, f"manifest {image.manifest.digest[:19]}, layer {i + 1}")
                    for i, d in enumerate(layers)]
    for blob in [image.config, *image.layers]:
        size = layout.size(blob.path)
        if size is None:
            raise LayoutError(
                f"{layout.what}: blob {blob.digest} is missing (or is not a regular file)",
                hint="A layout with foreign or non-distributable layers cannot be installed offline. " + HINT,
            )
        if size != blob.size:
            raise LayoutError(
                f"{layout.what}: blob {blob.digest} is {size} bytes, its descriptor says {blob.size}", hint=HINT
            )
        if layout.shared(blob.path):  # a hard link may be any file of the host: not a byte of it is sent unchecked
            h = hashlib.new(blob.digest.split(":", 1)[0])
            for chunk in layout.chunks(blob.path):
                h.update(chunk)
            if f"{h.name}:{h.hexdigest()}" != blob.digest:
                raise LayoutError(f"{layout.what}: blob {blob.digest} does not match its digest", hint=HINT)
    return image


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    return info.tobuf(tarfile.PAX_FORMAT)


def _pad(size: int) -> int:
    return -size % tarfile.BLOCKSIZE


class DockerArchive(io.RawIOBase):
    """The ``docker save`` archive of one image of a layout, made as it is read.

    ``size`` is its exact length. Reading a blob whose bytes do not match its digest raises
    :class:`LayoutError` before the archive's end, so the engine never gets a whole archive."""

    def __init__(self, layout: Layout, image: Image) -> None:
        super().__init__()
        assert image.config is not None and image.name is not None
        unique = {b.path: b for b in [image.config, *image.layers]}
        blobs = [unique[path] for path in layout.in_order(list(unique))]
        manifest = json.dumps(
            [{"Config": image.config.path, "RepoTags": [image.name], "Layers": [b.path for b in image.layers]}]
        ).encode()
        self.layout = layout
        self.size = sum(len(_header(b.path, b.size)) + b.size + _pad(b.size) for b in blobs)
        self.size += len(_header("manifest.json", len(manifest))) + len(manifest) + _pad(len(manifest))
        self.size += 2 * tarfile.BLOCKSIZE
        self._parts = self._generate(blobs, manifest)
        self._pending = b""

    def _generate(self, blobs: list[Blob], manifest: bytes) -> Iterator[bytes]:
        for blob in blobs:
            yield _header(blob.path, blob.size)
            algorithm = blob.digest.split(":", 1)[0]
            h, n = hashlib.new(algorithm), 0
            for chunk in self.layout.chunks(blob.path):
                n += len(chunk)
                if n > blob.size:
                    break
                h.update(chunk)
                yield chunk
            if n != blob.size or f"{algorithm}:{h.hexdigest()}" != blob.digest:
                raise LayoutError(
                    f"{self.layout.what}: blob {blob.digest} does not match its digest (the layout is damaged)",
                    hint=HINT,
                )
            yield b"\0" * _pad(blob.size)
        yield _header("manifest.json", len(manifest)) + manifest + b"\0" * _pad(len(manifest))
        yield b"\0" * (2 * tarfile.BLOCKSIZE)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = next(self._parts)
            except StopIteration:
                return 0
        view = memoryview(buffer).cast("B")
        n = min(len(view), len(self._pending))
        view[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n
