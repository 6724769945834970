"""Safe extraction of the tar streams the Engine API returns for ``GET /containers/{id}/archive?path=P``.

The content of an extension image is attacker data, and tar extraction has a long history of escapes:
``../`` and absolute names, a symlink followed by a file written through it (GNU tar CVE-2025-45582), hard
links to outside or to a symlink, device nodes, setuid bits, a directory replaced by a link, tar bombs, and
six bypasses of CPython's own ``tarfile`` filters in about a year (CVE-2025-4517 and friends; security
reference A3). So this module does not use ``TarFile.extract*`` nor ``tarfile.data_filter`` (Debian's 3.11.2
has none). It reads the stream member by member and materialises **only regular files and directories**:

* no symlink, hard link, device or FIFO is ever created; a link that stays inside the tree and names a
  regular file becomes a copy of that file, a link that leaves the tree refuses the whole archive;
* every name is checked (no absolute path, no ``..``, no NUL or backslash, under ``member/``), duplicates
  and entries "inside" a file or link are refused;
* files are created with ``O_CREAT|O_EXCL|O_NOFOLLOW`` relative to directory descriptors opened with
  ``O_NOFOLLOW``, so nothing can be written through a link even if one appeared on disk;
* modes are ``0o755``/``0o644`` (owner execute bit kept), never setuid/setgid/sticky; owners are ignored;
* sizes, entry count, depth and name length are capped while streaming: a 10 GiB entry fails on its header.

On any error everything created is removed and :class:`UnsafeArchive` is raised (a damaged or truncated
stream is refused the same way, so an install never proceeds with half a tree). Exceptions raised by the
chunk iterator itself (the engine connection) propagate unchanged.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, Self, cast

from dockext.errors import UnsafeArchive

__all__ = ["ChunkReader", "Limits", "extract_file", "extract_tree", "guarded_tarinfo"]


@dataclass(frozen=True)
class Limits:
    """Caps against tar bombs. ``max_bytes``: all file data written (copies of links included);
    ``max_file``: one file; ``max_entries``: archive members; ``max_depth``: path components below the root;
    ``max_name``: bytes of a member name or link target."""

    max_bytes: int = 1 << 30
    max_entries: int = 100_000
    max_depth: int = 64
    max_name: int = 4096
    max_file: int = 512 << 20


_COPY_BUFSIZE: Final = 1 << 20
_NAME_MAX: Final = 255  # one path component, in bytes
_SYMLINK_HOPS: Final = 40  # Linux MAXSYMLINKS
_META_TYPES: Final = frozenset(
    {
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
    }
)
# Not in typeshed's stubs: the "zero block" header that ends an archive.
_EOF_HEADER_ERROR: Final[type[Exception]] = cast(Any, tarfile).EOFHeaderError
_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _q(text: str) -> str:
    """Quote an untrusted name for a message: quotes and control characters escaped (no terminal tricks)."""
    quoted = json.dumps(text, ensure_ascii=False)
    try:
        quoted.encode("utf-8")
    except UnicodeEncodeError:  # names that are not UTF-8 arrive as lone surrogates
        quoted = json.dumps(text)
    return quoted


def _file_mode(tar_mode: int, executable_ok: bool = True) -> int:
    return 0o755 if executable_ok and tar_mode & stat.S_IXUSR else 0o644


# ----------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------


class ChunkReader(io.RawIOBase):
    """A read-only file over the byte chunks of an HTTP response, with a hard cap on the bytes consumed
    (a backstop: per-member caps normally trigger first; None for none). Never holds more than one chunk."""

    def __init__(self, chunks: Iterable[bytes], cap: int | None, what: str) -> None:
        super().__init__()
        self._chunks: Iterator[bytes] = iter(chunks)
        self._pending = memoryview(b"")
        self._consumed = 0
        self._cap = cap
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                return 0
            self._pending = memoryview(chunk).cast("B")
        target = memoryview(buffer).cast("B")
        n = min(len(target), len(self._pending))
        target[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self._consumed += n
        if self._cap is not None and self._consumed > self._cap:
            raise UnsafeArchive(f"{self._what}: the archive exceeds the limit of {self._cap} bytes")
        return n


def guarded_tarinfo(what: str, meta_cap: int) -> type[tarfile.TarInfo]:
    """A TarInfo class that refuses oversized pax / GNU long-name headers before ``tarfile`` reads their data
    into memory, and that reports a truncated or damaged header instead of ``tarfile``'s silent end."""

    class _GuardedTarInfo(tarfile.TarInfo):
        @classmethod
        def fromtarfile(cls, tarfile_: tarfile.TarFile) -> Self:
            try:
                return super().fromtarfile(tarfile_)
            except _EOF_HEADER_ERROR:
                raise  # a zero block: the regular end of the archive
            except tarfile.HeaderError as exc:  # truncated, empty (no end marker), bad checksum...
                raise UnsafeArchive(f"{what}: the archive is damaged or truncated ({exc})") from None

        def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
            if self.type in _META_TYPES and not 0 <= self.size <= meta_cap:
                raise UnsafeArchive(
                    f"{what}: an extended tar header of {self.size} bytes exceeds the limit "
                    f"of {meta_cap} bytes"
                )
            return cast(tarfile.TarInfo, cast(Any, super())._proc_member(tarfile_))

    return _GuardedTarInfo


class _Stream:
    """``tarfile`` in streaming mode (``r|``) over the chunks; translates ``tarfile``'s own errors."""

    def __init__(self, chunks: Iterable[bytes], what: str, limits: Limits) -> None:
        self.what = what
        meta_cap = max(1 << 20, 2 * limits.max_name + (64 << 10))
        raw_cap = (
            limits.max_bytes
            + limits.max_entries * (3 * tarfile.BLOCKSIZE + 2 * limits.max_name)
            + 4 * meta_cap
        )
        reader = io.BufferedReader(ChunkReader(chunks, raw_cap, what), buffer_size=64 << 10)
        with self._translate():
            self.tar = tarfile.open(  # noqa: SIM115 - closed by close()
                fileobj=reader,
                mode="r|",
                tarinfo=guarded_tarinfo(what, meta_cap),
                encoding="utf-8",
                errors="surrogateescape",
            )

    def _translate(self) -> _Translate:
        return _Translate(self.what)

    def members(self) -> Iterator[tarfile.TarInfo]:
        while True:
            with self._translate():
                info = self.tar.next()
            if info is None:
                return
            # Stream mode never looks back, so do not keep 100k TarInfo objects around.
            cast(Any, self.tar).members.clear()
            yield info

    def copy_data(self, info: tarfile.TarInfo, out: IO[bytes]) -> None:
        with self._translate():
            src = self.tar.extractfile(info)
            if src is None:  # pragma: no cover - only for links, which never get here
                raise UnsafeArchive(f"{self.what}: entry {_q(info.name)} has no data")
            shutil.copyfileobj(src, out, _COPY_BUFSIZE)

    def close(self) -> None:
        self.tar.close()


class _Translate:
    """Context manager: ``tarfile``'s errors about the stream become :class:`UnsafeArchive`."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        # ValueError, OverflowError: tarfile runs int() on pax numbers (GNU.sparse.size=abc) and lets it through
        if isinstance(exc, tarfile.TarError | EOFError | ValueError | OverflowError):
            raise UnsafeArchive(f"{self.what}: the archive is damaged or truncated ({exc})") from None
        if isinstance(exc, RecursionError):  # a long chain of extended headers
            raise UnsafeArchive(f"{self.what}: the archive nests too many extended headers") from None


# ----------------------------------------------------------------------------------------------------------
# Names
# ----------------------------------------------------------------------------------------------------------


def _split_name(name: str, what: str, limits: Limits, *, kind: str = "entry") -> list[str]:
    """Normalise an archive name into components, refusing absolute names, ``..``, NUL and backslash."""
    label = f"{what}: {kind} {_q(name)}"
    if len(name.encode("utf-8", "surrogateescape")) > limits.max_name:
        raise UnsafeArchive(f"{label} exceeds the limit of {limits.max_name} bytes for a name")
    if "\x00" in name:
        raise UnsafeArchive(f"{label} contains a NUL character")
    if "\\" in name:
        raise UnsafeArchive(f"{label} contains a backslash")
    if name.startswith("/"):
        raise UnsafeArchive(f"{label} is an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f'{label} has a ".." component, which could leave the tree')
    for part in parts:
        if len(part.encode("utf-8", "surrogateescape")) > _NAME_MAX:
            raise UnsafeArchive(f"{label} has a component longer than {_NAME_MAX} bytes")
    return parts


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# ----------------------------------------------------------------------------------------------------------
# Writing a tree
# ----------------------------------------------------------------------------------------------------------

_DIR, _FILE, _LINK, _OTHER = "directory", "file", "symlink", "special file"
Rel = tuple[str, ...]


class _Leaves(Exception):
    """A symlink resolves outside the tree."""


class _Tree:
    """The tree being written under ``dest``: what each path is, and the budget spent so far."""

    def __init__(self, root_fd: int, member: str, what: str, limits: Limits) -> None:
        self.root_fd = root_fd
        self.member = member
        self.what = what
        self.limits = limits
        self.kinds: dict[Rel, str] = {(): _DIR}
        self.modes: dict[Rel, int] = {}
        self.links: dict[Rel, tuple[str, str]] = {}  # rel -> (entry name, target), in archive order
        self.seen: set[Rel] = set()
        self.bytes = 0
        self.warnings: list[str] = []

    # -- helpers ---------------------------------------------------------------------------------------------

    def _fail(self, message: str) -> UnsafeArchive:
        return UnsafeArchive(f"{self.what}: {message}")

    def display(self, rel: Rel) -> str:
        return _q("/".join((self.member, *rel)))

    def open_dir(self, rel: Rel) -> int:
        """A descriptor for an existing directory of the tree, walked one component at a time with
        ``O_NOFOLLOW`` so that no symlink on disk can redirect it."""
        fd = os.open(".", _DIR_FLAGS, dir_fd=self.root_fd)
        try:
            for part in rel:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = next_fd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def charge(self, size: int, name: str) -> None:
        if size < 0:
            raise self._fail(f"entry {name} has a negative size")
        if size > self.limits.max_file:
            raise self._fail(
                f"entry {name} ({size} bytes) exceeds the limit of {self.limits.max_file} bytes per file"
            )
        if self.bytes + size > self.limits.max_bytes:
            raise self._fail(
                f"the extracted files exceed the limit of {self.limits.max_bytes} bytes in total"
            )
        self.bytes += size

    def check_parents(self, rel: Rel, name: str) -> None:
        for i in range(1, len(rel)):
            kind = self.kinds.get(rel[:i])
            if kind is not None and kind != _DIR:
                raise self._fail(f"entry {name} is inside {self.display(rel[:i])}, which is a {kind}")

    def claim(self, rel: Rel, name: str, kind: str) -> None:
        """Record a non-directory entry at ``rel``; it must not be a directory already."""
        if self.kinds.get(rel) == _DIR:
            raise self._fail(f"entry {name} ({kind}) conflicts with the directory of the same name")
        self.kinds[rel] = kind

    def make_dirs(self, rel: Rel) -> None:
        """Create ``rel`` and its missing parents as 0o755 directories."""
        for i in range(1, len(rel) + 1):
            sub = rel[:i]
            kind = self.kinds.get(sub)
            if kind == _DIR:
                continue
            if kind is not None:  # pragma: no cover - check_parents and claim keep this from happening
                raise self._fail(f"{self.display(sub)} is a {kind}, not a directory")
            parent_fd = self.open_dir(sub[:-1])
            try:
                try:
                    os.mkdir(sub[-1], 0o755, dir_fd=parent_fd)
                except FileExistsError:  # e.g. "A" vs "a" on a case-insensitive file system
                    raise self._fail(f"entry {self.display(sub)} collides with another entry") from None
                fd = os.open(sub[-1], _DIR_FLAGS, dir_fd=parent_fd)
                try:
                    os.fchmod(fd, 0o755)  # whatever the umask
                finally:
                    os.close(fd)
            finally:
                os.close(parent_fd)
            self.kinds[sub] = _DIR

    def create_file(self, rel: Rel, mode: int) -> IO[bytes]:
        parent_fd = self.open_dir(rel[:-1])
        try:
            try:
                fd = os.open(rel[-1], _NEW_FILE_FLAGS, mode, dir_fd=parent_fd)
            except FileExistsError:
                raise self._fail(f"entry {self.display(rel)} collides with another entry") from None
        finally:
            os.close(parent_fd)
        os.fchmod(fd, mode)
        return os.fdopen(fd, "wb")

    def copy_file(self, src: Rel, dst: Rel, name: str) -> None:
        """Materialise a link as a copy of the regular file ``src`` already written in the tree."""
        mode = self.modes[src]
        parent_fd = self.open_dir(src[:-1])
        try:
            src_fd = os.open(src[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
        finally:
            os.close(parent_fd)
        with os.fdopen(src_fd, "rb") as src_file:
            self.charge(os.fstat(src_file.fileno()).st_size, name)
            self.make_dirs(dst[:-1])
            with self.create_file(dst, mode) as out:
                shutil.copyfileobj(src_file, out, _COPY_BUFSIZE)
        self.kinds[dst] = _FILE
        self.modes[dst] = mode

    # -- symlinks --------------------------------------------------------------------------------------------

    def resolve(self, rel: Rel, target: str) -> tuple[Rel | None, str]:
        """Resolve the symlink at ``rel`` lexically inside the archive, following the archive's other links.

        Returns ``(path, "")`` for a regular file of the tree, ``(None, why)`` for a link to skip
        (directory, dangling, loop). Raises :class:`_Leaves` when the path leaves the tree at any point,
        even through a component that does not exist (a stricter rule than the kernel's, on purpose).
        """
        cur: list[str] | None = list(rel[:-1])  # None: the parent directory of the tree's root
        pending = target.split("/")
        if target.startswith("/"):
            raise _Leaves
        hops = 0
        missing = False
        while pending:
            part = pending.pop(0)
            if part in ("", "."):
                continue
            if cur is None:
                if part != self.member:
                    raise _Leaves
                cur = []  # "../<member>" from the root comes back into the tree
                continue
            if part == "..":
                if cur:
                    cur.pop()
                else:
                    cur = None
                continue
            cand = (*cur, part)
            if not missing and cand in self.links:
                hops += 1
                if hops > _SYMLINK_HOPS:
                    return None, "too many levels of symbolic links"
                link_target = self.links[cand][1]
                if link_target.startswith("/"):
                    raise _Leaves
                pending = link_target.split("/") + pending
                continue
            kind = self.kinds.get(cand)
            if kind is None or (kind != _DIR and pending and any(p not in ("", ".") for p in pending)):
                missing = True  # keep going lexically, only to detect leaving
            cur.append(part)
        if cur is None:
            raise _Leaves
        if missing:
            return None, "its target is not in the archive"
        final = tuple(cur)
        kind = self.kinds.get(final)
        if kind == _FILE:
            return final, ""
        if kind == _DIR:
            return None, "it points to a directory"
        return None, "its target is not a regular file in the archive"

    def materialise_links(self) -> None:
        for rel, (name, target) in self.links.items():
            try:
                src, why = self.resolve(rel, target)
            except _Leaves:
                raise self._fail(f"symlink {_q(name)} -> {_q(target)} leaves the tree") from None
            if src is None:
                self.warnings.append(f"skipped symlink {_q(name)} -> {_q(target)}: {why}")
                continue
            self.kinds[rel] = _LINK  # still a link until copied
            self.copy_file(src, rel, _q(name))


def extract_tree(
    chunks: Iterable[bytes], dest: Path, *, member: str, what: str, limits: Limits = Limits()
) -> list[str]:
    """Materialise the tree ``member/`` of an Engine archive stream into ``dest`` (created, must not exist).

    ``member`` is the base name of the requested path (``ui`` for ``/ui``); ``what`` labels messages
    (``"UI root /ui"``). Returns warnings about skipped entries (devices, FIFOs, links to directories,
    dangling links); raises :class:`UnsafeArchive` and removes ``dest`` on any problem.
    """
    if not member or member in (".", "..") or "/" in member or "\x00" in member:
        raise ValueError(f"member must be a plain file name, got {member!r}")
    dest = Path(dest)
    dest.mkdir(mode=0o755)
    try:
        root_fd = os.open(dest, _DIR_FLAGS)
        try:
            os.fchmod(root_fd, 0o755)
            stream = _Stream(chunks, what, limits)
            try:
                tree = _Tree(root_fd, member, what, limits)
                for count, info in enumerate(stream.members(), 1):
                    if count > limits.max_entries:
                        raise UnsafeArchive(
                            f"{what}: the archive exceeds the limit of {limits.max_entries} entries"
                        )
                    _extract_member(stream, tree, info)
                tree.materialise_links()
            finally:
                stream.close()
        finally:
            os.close(root_fd)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return tree.warnings


def _extract_member(stream: _Stream, tree: _Tree, info: tarfile.TarInfo) -> None:
    what, limits = tree.what, tree.limits
    name = _q(info.name)
    parts = _split_name(info.name, what, limits)
    if not parts or parts[0] != tree.member:
        raise UnsafeArchive(f"{what}: entry {name} is outside {_q(tree.member + '/')}")
    rel: Rel = tuple(parts[1:])
    if len(rel) > limits.max_depth:
        raise UnsafeArchive(f"{what}: entry {name} exceeds the limit of {limits.max_depth} directory levels")
    if rel in tree.seen:
        raise UnsafeArchive(f"{what}: entry {name} appears twice in the archive")
    tree.seen.add(rel)

    if not rel:  # the root itself
        if info.issym():
            raise UnsafeArchive(f"{what} is a symlink to {_q(info.linkname)}, which leaves it")
        if not info.isdir():
            raise UnsafeArchive(f"{what} is not a directory")
        return

    if not _is_utf8(info.name):
        # Not recorded: no valid name can collide with it, and its children are skipped by this same rule.
        tree.warnings.append(f"skipped entry {name}: its name is not valid UTF-8")
        return
    tree.check_parents(rel, name)
    if info.issparse():
        raise UnsafeArchive(f"{what}: entry {name} is a sparse file, which is not supported")

    if info.isdir():
        if tree.kinds.get(rel, _DIR) != _DIR:  # pragma: no cover - duplicates are refused above
            raise UnsafeArchive(f"{what}: entry {name} conflicts with an earlier entry")
        tree.make_dirs(rel)
    elif info.isreg():
        tree.charge(info.size, name)
        tree.claim(rel, name, _FILE)
        tree.make_dirs(rel[:-1])
        mode = _file_mode(info.mode)
        with tree.create_file(rel, mode) as out:
            stream.copy_data(info, out)
        tree.modes[rel] = mode
    elif info.issym():
        target = info.linkname
        if "\x00" in target:
            raise UnsafeArchive(f"{what}: symlink {name} has a target containing a NUL character")
        if len(target.encode("utf-8", "surrogateescape")) > limits.max_name:
            raise UnsafeArchive(
                f"{what}: symlink {name} has a target longer than the limit of {limits.max_name} bytes"
            )
        if target.startswith("/"):
            raise UnsafeArchive(f"{what}: symlink {name} -> {_q(target)} leaves the tree")
        tree.claim(rel, name, _LINK)
        tree.make_dirs(rel[:-1])
        tree.links[rel] = (info.name, target)
    elif info.islnk():
        target_parts = _split_name(info.linkname, what, limits, kind=f"hard link {name} ->")
        source: Rel | None = None
        if target_parts and target_parts[0] == tree.member:
            source = tuple(target_parts[1:])
        if source is None or tree.kinds.get(source) != _FILE or source not in tree.modes:
            raise UnsafeArchive(
                f"{what}: hard link {name} -> {_q(info.linkname)} does not point to an earlier regular file "
                "of the tree"
            )
        tree.claim(rel, name, _LINK)
        tree.copy_file(source, rel, name)
    else:  # character or block device, FIFO, unknown type
        if info.type not in tarfile.SUPPORTED_TYPES:
            tree.charge(info.size, name)  # tarfile streams through its data: cap it like a file
        tree.claim(rel, name, _OTHER)
        tree.make_dirs(rel[:-1])
        tree.warnings.append(f"skipped entry {name}: not a regular file, directory or link")


# ----------------------------------------------------------------------------------------------------------
# A single file
# ----------------------------------------------------------------------------------------------------------


def extract_file(
    chunks: Iterable[bytes],
    dest_file: Path,
    *,
    what: str,
    limits: Limits = Limits(),
    executable_ok: bool = True,
) -> None:
    """Write the single regular file of an Engine archive stream (``GET .../archive?path=/linux/hello``
    gives one entry ``hello``) to ``dest_file``, which must not exist.

    A symlink, directory, hard link or device refuses the archive, as does a second entry. Mode 0o755 if the
    owner may execute it and ``executable_ok``, else 0o644. ``dest_file`` is removed on any error.
    """
    dest_file = Path(dest_file)
    created = False
    try:
        stream = _Stream(chunks, what, limits)
        try:
            members = stream.members()
            info = next(members, None)
            if info is None:
                raise UnsafeArchive(f"{what}: the archive is empty")
            name = _q(info.name)
            parts = _split_name(info.name, what, limits)
            if len(parts) != 1:
                raise UnsafeArchive(f"{what}: entry {name} is not a plain file name")
            if info.issym():
                raise UnsafeArchive(
                    f"{what} is a symlink (to {_q(info.linkname)}); only regular files are copied"
                )
            if info.islnk():
                raise UnsafeArchive(f"{what} is a hard link; only regular files are copied")
            if info.isdir():
                raise UnsafeArchive(f"{what} is a directory, not a file")
            if not info.isreg() or info.issparse():
                raise UnsafeArchive(f"{what} is not a regular file")
            size_cap = min(limits.max_file, limits.max_bytes)
            if not 0 <= info.size <= size_cap:
                raise UnsafeArchive(f"{what} ({info.size} bytes) exceeds the limit of {size_cap} bytes")
            mode = _file_mode(info.mode, executable_ok)
            fd = os.open(dest_file, _NEW_FILE_FLAGS, mode)
            created = True
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as out:
                stream.copy_data(info, out)
            extra = next(members, None)
            if extra is not None:
                raise UnsafeArchive(f"{what}: the archive holds more than one entry ({_q(extra.name)})")
        finally:
            stream.close()
    except BaseException:
        if created:
            dest_file.unlink(missing_ok=True)
        raise
