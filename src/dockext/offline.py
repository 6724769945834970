"""Offline install: an extension image from a ``docker save`` tarball (``dockext install ./ext.tar``) or an
OCI image layout (a directory or a tar of one, sent as a ``docker save`` archive by :mod:`.ocilayout`).

A ``docker save`` file goes to the engine as it is (``POST /images/load``, streamed from disk); dockext never
unpacks it itself. It looks at the first tar header (through the compression, if any) to tell a person at
once that a file is not a tar at all; it walks the member headers of a plain tar to tell an OCI layout; and,
when a load fails for want of a manifest, it walks them to tell a file cut short (which the engine reads as
a shorter archive) from one that never had one. The engine's answer names what was loaded; exactly one
tagged image, or the one ``--image`` names, is then installed by name with :meth:`Installer.install`, which
finds it locally. ``docker save`` keeps an image's labels and files, so the record is the one an install by
name makes.

If anything fails after the load, the engine's tags are put back as they were before it (a tag the file moved
goes back to its old image, a tag it created goes, with the image when the file brought it), so a failed
offline install leaves nothing tagged behind, and a retry starts from the same state. After a successful one,
the other names the file brought stay (as with ``docker load``), but a name it moved goes back to its image.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import re
import shlex
import stat
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from . import ocilayout
from .engine import LoadOutput
from .errors import DockextError, EngineError, ImageNotFound, InvalidImageReference
from .installer import Installer, Reporter
from .model import ImageRef, canonical_ref
from .store import Record

__all__ = [
    "Loaded", "by_name", "check_tarball", "choose", "ends_early", "from_folder", "install_tarball", "parse_load_output",
    "tarball_argument",
]

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
SAVE_HINT = "Make the file with `docker save IMAGE -o FILE` (compressed with gzip if you like) where the image is."
_LOADED = re.compile(r"^Loaded image: (\S+)$")
_LOADED_ID = re.compile(r"^Loaded image ID: (\S+)$")
_SNIFF = 64 << 10  # compressed bytes read to find the first tar header


def tarball_argument(arg: str) -> Path | None:
    """The file that the IMAGE argument of ``install`` names, or None when it is an image reference.

    A tarball is an existing file, or an argument that looks like a path (it starts with ``/``, ``./`` or
    ``../``, or it ends with ``.tar``, ``.tar.gz`` or ``.tgz``), which must then exist. A directory holding
    an ``oci-layout`` file is an OCI image layout, which is installed the same way.
    """
    path = Path(arg)
    looks_like_path = _looks_like_path(arg)
    try:
        st = path.stat()
    except FileNotFoundError:
        if looks_like_path:
            raise DockextError(
                f"no such file: {arg}",
                hint="Give the path of a file made with `docker save IMAGE -o FILE`, or an image reference.",
            ) from None
        return None
    except OSError as exc:
        if looks_like_path:
            raise DockextError(f"cannot read {arg}: {exc.strerror}") from None
        return None
    if stat.S_ISDIR(st.st_mode):
        if (path / "oci-layout").is_file():
            return path  # an OCI image layout
        if looks_like_path:
            raise DockextError(
                f"{arg} is a directory, but not an OCI image layout (it has no oci-layout file)",
                hint="Give an OCI image layout directory (such as `skopeo copy` makes), or a tar file. " + SAVE_HINT,
            )
        return None
    if not stat.S_ISREG(st.st_mode):
        raise DockextError(f"{arg} is not a regular file", hint=SAVE_HINT)
    return path


def check_tarball(path: Path, arg: str | None = None, label: str | None = None) -> str:
    """What the file is (``tar``, ``gzip``, ``bzip2``, ``xz``, ``zstd``): the formats ``docker load`` takes;
    ``oci`` for an OCI layout directory.

    Raises DockextError when it is empty, unreadable, or clearly not a tar (compressed or not). Reads the
    first 64 KiB at most. ``arg`` is the argument as the user wrote it, to explain a file shadowing an image.
    """
    name = label or arg or str(path)
    if path.is_dir():
        return "oci"  # tarball_argument checked it holds oci-layout; ocilayout.open_layout reads it
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF)
    except OSError as exc:
        raise DockextError(f"cannot read {name}: {exc.strerror}") from None
    hint = SAVE_HINT
    if arg is not None and not _looks_like_path(arg):
        try:
            ImageRef.parse(arg)
            hint += f" ({arg} is the name of a file here: to install the image {arg}, run dockext elsewhere.)"
        except InvalidImageReference:
            pass
    if not head:
        raise DockextError(f"{name} is empty, not a tar file", hint=hint)
    kind, is_tar = _sniff(head)
    if kind is None:
        raise DockextError(f"{name} is not a tar file (nor a gzip, bzip2 or xz compressed one)", hint=hint)
    if is_tar is False:
        raise DockextError(f"{name} is {kind} compressed, but what it holds is not a tar file", hint=hint)
    return kind


def _sniff(head: bytes) -> tuple[str | None, bool | None]:
    """(format, whether a tar is inside) from the start of a file. Format None: not one the engine loads;
    ``None`` for the inside: cannot tell from the start (the engine will)."""
    decompressor: zlib._Decompress | bz2.BZ2Decompressor | lzma.LZMADecompressor
    if head.startswith(b"\x1f\x8b"):
        kind, decompressor = "gzip", zlib.decompressobj(wbits=31)
    elif head.startswith(b"BZh"):
        kind, decompressor = "bzip2", bz2.BZ2Decompressor()
    elif head.startswith(b"\xfd7zXZ\x00"):
        kind, decompressor = "xz", lzma.LZMADecompressor()
    elif head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd", None
    else:
        return ("tar", True) if len(head) >= 512 and _is_tar_header(head[:512]) else (None, None)
    try:
        inner = decompressor.decompress(head, 512)
    except (zlib.error, OSError, lzma.LZMAError, EOFError, ValueError):
        return kind, False
    if len(inner) >= 512:
        return kind, _is_tar_header(inner[:512])
    return kind, (False if decompressor.eof else None)


@dataclass
class Scan:
    """What a walk over a tar's member headers found: the names (of the plain header field: enough for the
    short names of a layout's top level) and, when the file stops before its end, why."""

    names: set[str] = field(default_factory=set)
    cut: str | None = None


def scan(path: Path) -> Scan:
    """Walk the member headers of the tar in ``path`` (compressed or not) to the end-of-archive block.

    A plain file is seeked through (only headers are read); a compressed one is read through once. zstd,
    which the standard library cannot read, gives an empty scan."""
    found = Scan()
    try:
        with open(path, "rb") as raw:
            magic = raw.read(6)
            raw.seek(0)
            if magic.startswith(b"\x28\xb5\x2f\xfd"):
                return found
            decompress = _DECOMPRESSORS.get(magic[:3])
            if decompress is None:
                found.cut = _walk(raw, os.fstat(raw.fileno()).st_size, found.names)
            else:
                with decompress(raw) as inner:
                    found.cut = _walk(inner, None, found.names)
    except (EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        found.cut = f"its compressed data ends early or is damaged: {exc}"
    return found


def ends_early(path: Path) -> str | None:
    """Why the tar in ``path`` stops before its end, or None when it is whole (or when that cannot be told).
    Used after a failed load only, so reading a large compressed file once costs a good install nothing."""
    return scan(path).cut


_DECOMPRESSORS: dict[bytes, Callable[[IO[bytes]], io.BufferedIOBase]] = {
    b"\x1f\x8b\x08": lambda f: gzip.GzipFile(fileobj=f),
    b"BZh": bz2.BZ2File,
    b"\xfd7z": lzma.LZMAFile,
}


def _walk(f: io.BufferedIOBase, size: int | None, names: set[str]) -> str | None:
    """The reason the tar stream ``f`` is cut short, or None (whole, or cannot be told); adds the members'
    names to ``names``. ``size``: the file's length when ``f`` seeks.

    Sizes are octal digits only (the engine's Go reader also takes base-256 and pax sizes: a pax ``size``
    record is read here too; base-256 ends the walk with no judgement)."""
    offset = 0
    pax_size: int | None = None
    while True:
        block = f.read(512)
        if not block:
            return f"it ends after {offset} bytes without the end-of-archive block"
        if len(block) < 512:
            return f"it ends inside a tar header at byte {offset}"
        if not any(block):
            while size is None and f.read(1 << 20):  # a compressed stream is checked to its end too
                pass
            return None
        if not _is_tar_header(block):
            return f"the tar header at byte {offset} is damaged"
        names.add(block[:100].split(b"\0", 1)[0].decode("utf-8", "replace").removeprefix("./"))
        field_ = block[124:136].split(b"\0", 1)[0].strip()
        if not re.fullmatch(rb"[0-7]{1,12}", field_):
            return None  # base-256 or damaged: leave the judgement to the engine
        length = int(field_, 8) if pax_size is None else pax_size
        pax_size = None
        padded = (length + 511) // 512 * 512
        offset += 512 + padded
        if block[156:157] in (b"x", b"g") and length <= 1 << 20:  # pax: its records may give the next size
            data = f.read(length)
            if len(data) < length:
                return "a member's data runs past the end of the file"
            if block[156:157] == b"x" and (m := re.search(rb"(?:^|\n)\d+ size=(\d{1,20})\n", data)):
                pax_size = int(m.group(1))
            padded -= length
        if size is not None:
            if offset > size:
                return f"a member's data runs past the end of the file ({size} bytes)"
            f.seek(offset)
        else:
            while padded:
                got = len(f.read(min(padded, 1 << 20)))
                if not got:
                    return "a member's data runs past the end of the compressed data"
                padded -= got


def _looks_like_path(arg: str) -> bool:
    """Whether ``arg`` names a file or directory rather than an image: ``.``, ``..``, what starts with ``/``,
    ``./`` or ``../``, ends with ``.tar``, ``.tar.gz`` or ``.tgz``, and an existing directory whose name is no
    image reference (``dir/``, ``My Dir``; a directory named like an image, ``acme``, leaves it an image)."""
    if arg in (".", "..") or arg.startswith(("/", "./", "../")) or arg.lower().endswith(TAR_SUFFIXES):
        return True
    if not os.path.isdir(arg):
        return False
    try:
        ImageRef.parse(arg)
    except InvalidImageReference:
        return True
    return False


def _is_tar_header(block: bytes) -> bool:
    """A valid first tar header (its checksum matches), or the all-zero block of an empty archive."""
    if not any(block):
        return True
    field_ = block[148:156].split(b"\0", 1)[0].strip()
    try:
        expected = int(field_, 8)
    except ValueError:
        return False
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:512])
    signed = sum((b - 256 if b > 127 else b) for b in block[:148] + b" " * 8 + block[156:512])
    return expected in (unsigned, signed)


@dataclass
class Loaded:
    """What a load gave, from the engine's messages."""

    refs: list[str] = field(default_factory=list)  # "Loaded image: repo:tag"
    ids: list[str] = field(default_factory=list)  # "Loaded image ID: sha256:..." (saved by ID: untagged)


def parse_load_output(messages: list[str]) -> Loaded:
    loaded = Loaded()
    for line in messages:
        line = line.strip()
        if m := _LOADED_ID.match(line):
            found = loaded.ids
        elif m := _LOADED.match(line):
            found = loaded.refs
        else:
            continue
        if m.group(1) not in found:
            found.append(m.group(1))
    return loaded


def choose(loaded: Loaded, wanted: str | None, name: str) -> str:
    """The reference to install: the one tagged image, or ``wanted`` among several."""
    if wanted is not None:
        for ref in loaded.refs:
            if canonical_ref(ref) == canonical_ref(wanted):
                return ref
        if loaded.refs:
            raise DockextError(
                f"{name} does not hold the image {wanted}",
                hint="It holds: " + ", ".join(loaded.refs) + ". Give one of these with --image.",
            )
    if len(loaded.refs) == 1 and wanted is None:
        return loaded.refs[0]
    if len(loaded.refs) > 1:
        raise DockextError(
            f"{name} holds {len(loaded.refs)} images: " + ", ".join(loaded.refs),
            hint=f"Choose the extension to install with --image, e.g. --image {loaded.refs[0]}",
        )
    if loaded.ids:
        raise DockextError(
            f"{name} holds an image without a name ({', '.join(i[:19] for i in loaded.ids)}): "
            "it was saved by ID",
            hint="An extension is installed by name: save it by name, e.g. `docker save acme/my-extension:1.0 -o "
            "FILE`, or `docker tag` the image with a name first.",
        )
    raise DockextError(f"{name} holds no image", hint=SAVE_HINT)


def _no_manifest(error: str) -> bool:
    """The engine's words for an archive without the `docker save` manifest."""
    low = error.lower()
    return "manifest.json" in low or "/repositories:" in low or ("no such file" in low and "docker-import" in low)


def explain_load_error(error: str, name: str, path: Path | None = None) -> DockextError:
    """The engine's message for a failed load, as something a person can act on.

    A file cut at a member boundary reads as a shorter, regular archive to the engine, which then finds no
    manifest; with ``path`` given, such a file is told apart from one that never had a manifest."""
    no_manifest = _no_manifest(error)
    if no_manifest and path is not None and (cut := ends_early(path)) is not None:
        return EngineError(
            f"{name} is truncated or damaged: the engine could not read it ({cut})",
            hint="Copy the file again completely (compare its size or checksum with the original), "
            "or make it again with `docker save IMAGE -o FILE`.",
        )
    if no_manifest:
        return DockextError(
            f"{name} holds no image: it is a tar file, but not one made by `docker save` (it has no manifest)",
            hint=SAVE_HINT,
        )
    damaged = ("unexpected eof", "invalid tar header", "error processing tar file", "gzip", "checksum")
    if any(s in error.lower() for s in damaged):
        return EngineError(
            f"{name} is truncated or damaged: the engine could not read it ({error})",
            hint="Copy the file again completely (compare its size or checksum with the original), "
            "or make it again with `docker save IMAGE -o FILE`.",
        )
    return EngineError(f"the engine could not load {name}: {error}", hint=SAVE_HINT)


def install_tarball(installer: Installer, path: Path, wanted: str | None, reporter: Reporter,
                    arg: str | None = None, deny: tuple[str, ...] = (), label: str | None = None,
                    update: bool = False, expect_id: str | None = None) -> Record:
    """Load the tarball at ``path`` into the engine and install the extension image it holds (``update``:
    update the installed extension to it, with the update's rollback).

    ``arg`` is the argument as the user typed it; ``label`` names the file in messages instead (an upload's
    own file name). ``expect_id``: the config digest the chosen image must have (what a Marketplace folder read).

    On any failure once the engine has answered the load (and on Ctrl-C from then on), what the load tagged
    is put back as it was. Interrupted while the file is sent, the engine gets a short body and loads nothing.
    """
    name = label or arg or str(path)
    if arg is not None:
        path = path.resolve()  # the user's own path: a link to the file is fine (a layout's are not followed)
    kind = check_tarball(path, arg, label)
    engine = installer.engine
    engine.ping()
    before = engine.tag_snapshot()
    output: LoadOutput | None = None
    done = False
    try:
        # An OCI layout is sent as the `docker save` archive of one of its images. A plain tar is told by
        # its headers (cheap); a compressed one only if the engine finds no manifest in it (read once more).
        if kind == "oci" or (kind == "tar" and ocilayout.is_layout_tar(scan(path).names)):
            output = _load_layout(installer, path, name, wanted, reporter)
        else:
            reporter.step(f"Loading {describe(path, name)} into the engine...")
            output = engine.load_image(path, reporter.pull)
            if output.error and _no_manifest(output.error) and kind != "tar":
                found = scan(path)
                if found.cut is None and ocilayout.is_layout_tar(found.names):
                    output = _load_layout(installer, path, name, wanted, reporter)
        loaded = parse_load_output(output.messages)
        if output.error is not None:
            raise explain_load_error(output.error, name, path)
        ref = choose(loaded, wanted, name)
        reporter.step(f"Loaded image: {ref}")
        if expect_id is not None and expect_id.startswith("sha256:"):
            loaded_id = engine.image_config(ref)
            if loaded_id is None:
                # the engine's export names no single config (several platforms, on the containerd image store),
                # so which image the engine would run cannot be told: not installed as the Marketplace's
                raise DockextError(
                    f"dockext cannot check that the {ref} loaded from {name} is the image the Marketplace read: "
                    "the engine's export of it names several configs (a multi-platform image?)",
                    hint="To install it anyway, as a file you trust: "
                    f"dockext install {shlex.quote(str(path))} --image {ref}",
                )
            if loaded_id != expect_id:
                raise DockextError(
                    f"{name} changed since the Marketplace read it: it now holds another {ref} ({loaded_id})",
                    hint="Refresh the Marketplace (or run `dockext marketplace ls`), then install again.",
                )
        record = installer.update(ref) if update else installer.install(ref, deny=deny)
        done = True
        # Other tags the file carried stay, as with `docker load`, except those it moved: a file must not
        # repoint a name that was there (another extension's image, say) to an image of its own.
        moved = [r for r in loaded.refs if r != ref and r in before.tags]
        if moved:
            engine.undo_load(before, moved, [], set())
        return record
    finally:
        if not done and output is not None:
            loaded = parse_load_output(output.messages)
            if loaded.refs or loaded.ids:
                keep = _in_use(installer, loaded.refs)
                engine.undo_load(before, loaded.refs, loaded.ids, keep)


def from_folder(installer: Installer, image: str, reporter: Reporter, *, deny: tuple[str, ...] = (),
                update: bool = False, source: str | None = None) -> Record | None:
    """Install (or update to) ``IMAGE[:TAG]`` from the file of a Marketplace folder source that holds it: the
    folder labelled ``source`` (its card's Install), or any folder (``None``: after a pull failed). None when no
    folder holds it, or when the engine already has that very image (then it is installed by name as usual).

    What is loaded must be what the folder was read as: its config's digest (the image ID on the classic image
    store; read from the engine's export of the image on the containerd store) is checked once loaded, so a file
    replaced since the Marketplace read it is refused, and its load undone."""
    from . import marketplace

    found = marketplace.file_for(marketplace.load(installer.layout), image, source)
    if found is None:
        return None
    path, saved = found
    if installer.engine.image_config(image) == saved.image_id:
        return None
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        mode = 0
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # a file, or a layout directory; never a link
        raise DockextError(f"{path} is no longer a file or layout directory",
                           hint="Refresh the Marketplace and try again.")
    reporter.step(f"Loading {image} from the Marketplace folder {path.parent}: {path.name}")
    return install_tarball(installer, path, image, reporter, deny=deny, label=path.name, update=update,
                           expect_id=saved.image_id)


def by_name(installer: Installer, image: str, reporter: Reporter, *, deny: tuple[str, ...] = (),
            update: bool = False, source: str | None = None) -> Record:
    """Install (or update to) ``IMAGE[:TAG]`` by name, as ``dockext install|update IMAGE`` does: from the file of
    the Marketplace folder ``source`` when one is given (its card's button), else from the engine or its
    registry, and from any folder that holds it only when it can be neither found nor pulled."""
    if source is not None:
        record = from_folder(installer, image, reporter, deny=deny, update=update, source=source)
        if record is not None:
            return record
    try:
        return installer.update(image) if update else installer.install(image, deny=deny)
    except ImageNotFound:
        if source is not None:
            raise
        record = from_folder(installer, image, reporter, deny=deny, update=update)
        if record is None:
            raise
        return record


def _load_layout(installer: Installer, path: Path, name: str, wanted: str | None, reporter: Reporter) -> LoadOutput:
    """Send one image of the OCI layout at ``path`` to the engine as a `docker save` archive."""
    layout = ocilayout.open_layout(path, name)
    try:
        image = ocilayout.plan(layout, installer.engine.platform(), wanted)
        archive = ocilayout.DockerArchive(layout, image)
        reporter.step(f"Loading {image.name} ({image.platform}) from the OCI layout {name} into the engine...")
        return installer.engine.load_image(path, reporter.pull, made=(io.BufferedReader(archive), archive.size))
    finally:
        layout.close()


def _in_use(installer: Installer, refs: list[str]) -> set[str]:
    """The refs among ``refs`` that an installed extension was installed from."""
    try:
        used = {canonical_ref(r.image) for r in installer.store.records()}
    except (DockextError, OSError):
        return set(refs)  # cannot tell: touch nothing
    return {ref for ref in refs if canonical_ref(ref) in used}


def describe(path: Path, name: str) -> str:
    """``./ext.tar (12.3 MB)``, for messages."""
    try:
        size: float = os.stat(path).st_size
    except OSError:
        return name
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            break
        size /= 1000
    return f"{name} ({size:.0f} {unit})" if unit == "bytes" else f"{name} ({size:.1f} {unit})"
