"""Safe extraction of Engine archive streams: hostile tars built in memory.

Every hostile case checks three things: UnsafeArchive names ``what`` and the entry, ``dest`` is gone, and
nothing at all changed outside ``dest`` (the whole temp dir is snapshotted, including a decoy ``etc``).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dockext.archive import Limits, extract_file, extract_tree
from dockext.errors import UnsafeArchive

WHAT = "UI root /ui"
DEFAULT = Limits()

# ---------------------------------------------------------------------------------------------------------
# Building tars
# ---------------------------------------------------------------------------------------------------------


@dataclass
class E:
    """One tar entry to write."""

    name: str
    kind: str = "file"  # file, dir, sym, hard, fifo, chr, blk, sparse
    data: bytes = b""
    mode: int | None = None
    target: str = ""
    pax: dict[str, str] = field(default_factory=dict)


def f(name: str, data: bytes = b"x", mode: int = 0o644) -> E:
    return E(name, "file", data, mode)


def d(name: str, mode: int = 0o755) -> E:
    return E(name, "dir", mode=mode)


def sym(name: str, target: str) -> E:
    return E(name, "sym", target=target)


def hard(name: str, target: str) -> E:
    return E(name, "hard", target=target)


_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "sym": tarfile.SYMTYPE,
    "hard": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "chr": tarfile.CHRTYPE,
    "blk": tarfile.BLKTYPE,
    "sparse": tarfile.GNUTYPE_SPARSE,
}


def make_tar(entries: Iterable[E], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8", errors="surrogateescape") as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = _TYPES[e.kind]
            info.mode = e.mode if e.mode is not None else (0o755 if e.kind == "dir" else 0o644)
            info.uid = info.gid = 0
            info.linkname = e.target
            if e.pax:
                info.pax_headers = dict(e.pax)
            if e.kind == "file":
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def chunked(data: bytes, size: int = 777) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def header(name: str, size: int, kind: bytes = tarfile.REGTYPE, mode: int = 0o644) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mode = mode
    return info.tobuf(format=tarfile.GNU_FORMAT)


# ---------------------------------------------------------------------------------------------------------
# Fixtures: a workspace whose every byte outside dest is checked after each test
# ---------------------------------------------------------------------------------------------------------


def snapshot(root: Path, exclude: Path) -> dict[str, tuple[object, ...]]:
    result: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = [n for n in dirnames if here / n != exclude]
        for name in dirnames + filenames:
            path = here / name
            if path == exclude:
                continue
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                extra: object = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                extra = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                extra = None
            result[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, extra)
    return result


@dataclass
class Work:
    root: Path
    dest: Path
    before: dict[str, tuple[object, ...]]

    def outside_unchanged(self) -> None:
        assert snapshot(self.root, self.dest) == self.before

    def tree(self) -> dict[str, tuple[int, bytes | None]]:
        """dest as {relative path: (mode, content or None for dirs)}; fails on anything but files/dirs."""
        out: dict[str, tuple[int, bytes | None]] = {}
        for dirpath, dirnames, filenames in os.walk(self.dest):
            here = Path(dirpath)
            for name in dirnames + filenames:
                path = here / name
                st = path.lstat()
                rel = str(path.relative_to(self.dest))
                if stat.S_ISDIR(st.st_mode):
                    out[rel] = (stat.S_IMODE(st.st_mode), None)
                else:
                    assert stat.S_ISREG(st.st_mode), f"{rel} is not a regular file"
                    assert st.st_nlink == 1, f"{rel} is hard-linked"
                    out[rel] = (stat.S_IMODE(st.st_mode), path.read_bytes())
        return out


@pytest.fixture
def work(tmp_path: Path) -> Iterator[Work]:
    root = tmp_path / "ws"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0\n")
    (root / "etc" / "shadow").write_text("secret\n")
    (root / "dest-evil").mkdir()  # a sibling sharing dest's prefix
    dest = root / "dest"
    w = Work(root, dest, snapshot(root, dest))
    yield w
    w.outside_unchanged()


def refused(work: Work, entries: Iterable[E] | bytes, *match: str, limits: Limits = DEFAULT) -> str:
    data = entries if isinstance(entries, bytes) else make_tar(entries)
    with pytest.raises(UnsafeArchive) as err:
        extract_tree(chunked(data), work.dest, member="ui", what=WHAT, limits=limits)
    message = str(err.value)
    assert WHAT in message
    for m in match:
        assert m in message, message
    assert not work.dest.exists(), "dest must be removed after an error"
    work.outside_unchanged()
    return message


def extracted(work: Work, entries: Iterable[E], limits: Limits = DEFAULT) -> list[str]:
    warnings = extract_tree(chunked(make_tar(entries)), work.dest, member="ui", what=WHAT, limits=limits)
    assert stat.S_IMODE(work.dest.stat().st_mode) == 0o755
    return warnings


# ---------------------------------------------------------------------------------------------------------
# Regular trees
# ---------------------------------------------------------------------------------------------------------


def test_regular_tree(work: Work) -> None:
    warnings = extracted(
        work,
        [
            d("ui"),
            f("ui/index.html", b"<html></html>"),
            d("ui/js"),
            f("ui/js/app.js", b"console.log(1)"),
            f("ui/deep/er/x.css", b"a{}"),  # parents without their own entries
            f("ui/run.sh", b"#!/bin/sh\n", mode=0o750),
            d("ui/empty", mode=0o700),
        ],
    )
    assert warnings == []
    assert work.tree() == {
        "index.html": (0o644, b"<html></html>"),
        "js": (0o755, None),
        "js/app.js": (0o644, b"console.log(1)"),
        "deep": (0o755, None),
        "deep/er": (0o755, None),
        "deep/er/x.css": (0o644, b"a{}"),
        "run.sh": (0o755, b"#!/bin/sh\n"),
        "empty": (0o755, None),
    }


def test_names_are_normalised(work: Work) -> None:
    extracted(work, [d("./ui/"), f("ui//a.txt", b"a"), f("./ui/./b/./c.txt", b"c")])
    assert work.tree() == {"a.txt": (0o644, b"a"), "b": (0o755, None), "b/c.txt": (0o644, b"c")}


def test_empty_root(work: Work) -> None:
    assert extracted(work, [d("ui")]) == []
    assert work.tree() == {}


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (0o4755, 0o755),
        (0o6777, 0o755),
        (0o2644, 0o644),
        (0o1777, 0o755),
        (0o700, 0o755),
        (0o655, 0o644),
        (0, 0o644),
    ],
)
def test_modes_keep_only_owner_exec(work: Work, mode: int, expected: int) -> None:
    extracted(work, [d("ui", mode=0o7777), d("ui/sub", mode=0), f("ui/sub/x", b"x", mode=mode)])
    assert work.tree() == {"sub": (0o755, None), "sub/x": (expected, b"x")}


def test_modes_ignore_umask(work: Work) -> None:
    old = os.umask(0o077)
    try:
        extracted(work, [d("ui"), d("ui/d"), f("ui/d/x", mode=0o755), f("ui/y")])
    finally:
        os.umask(old)
    assert {k: v[0] for k, v in work.tree().items()} == {"d": 0o755, "d/x": 0o755, "y": 0o644}


def test_big_file_tiny_chunks(work: Work) -> None:
    blob = os.urandom(3 << 20)
    data = make_tar([d("ui"), f("ui/blob.bin", blob), f("ui/z", b"z")])
    extract_tree(chunked(data, 4093), work.dest, member="ui", what=WHAT)
    assert (work.dest / "blob.bin").read_bytes() == blob
    work2 = work.dest.parent / "dest2"
    try:
        extract_tree((bytes([b]) for b in make_tar([f("ui/a", b"abc")])), work2, member="ui", what=WHAT)
        assert (work2 / "a").read_bytes() == b"abc"
    finally:
        shutil.rmtree(work2)


def test_gnu_and_ustar_formats(work: Work) -> None:
    long_name = "ui/" + "/".join(["d" * 100] * 3) + "/file.txt"
    for i, fmt in enumerate([tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]):
        dest = work.dest.parent / f"fmt{i}"
        data = make_tar(
            [d("ui"), f(long_name, b"long"), sym("ui/l" + "x" * 120, "index.html"), f("ui/index.html")], fmt
        )
        try:
            extract_tree(chunked(data), dest, member="ui", what=WHAT)
            assert (dest / long_name[3:]).read_bytes() == b"long"
            assert (dest / ("l" + "x" * 120)).read_bytes() == b"x"
        finally:
            import shutil

            shutil.rmtree(dest)


# ---------------------------------------------------------------------------------------------------------
# Names that leave the tree
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("../x", '"../x"'),
        ("ui/../../x", '"ui/../../x"'),
        ("ui/../ui/x", '".."'),
        ("ui/a/../../../etc/passwd", '".."'),
        ("/etc/passwd", "absolute"),
        ("/ui/x", "absolute"),
        ("other/x", "outside"),
        ("uix/y", "outside"),
        ("ui\\..\\x", "backslash"),
        ("..", '".."'),
        ("x", "outside"),
    ],
)
def test_bad_names(work: Work, name: str, match: str) -> None:
    refused(work, [d("ui"), f(name, b"pwned")], match)


def test_nul_in_name(work: Work) -> None:
    refused(work, [d("ui"), E("ui/a", pax={"path": "ui/a\x00/../../x"})], "NUL")


def test_dest_sibling_prefix(work: Work) -> None:
    refused(work, [d("ui"), f("ui/../../dest-evil/x")], '".."')


# ---------------------------------------------------------------------------------------------------------
# Symlinks
# ---------------------------------------------------------------------------------------------------------


def test_root_symlink_to_etc(work: Work) -> None:
    message = refused(work, [sym("ui", "/etc"), f("ui/passwd", b"pwned")])
    assert message == 'UI root /ui is a symlink to "/etc", which leaves it'


def test_root_not_a_directory(work: Work) -> None:
    refused(work, [f("ui", b"x")], "is not a directory")


def test_symlink_then_file_through_it(work: Work) -> None:
    refused(work, [d("ui"), sym("ui/a", "/etc"), f("ui/a/passwd", b"pwned")], '"ui/a"', "leaves")


def test_relative_symlink_then_file_through_it(work: Work) -> None:
    refused(work, [d("ui"), sym("ui/a", "../../etc"), f("ui/a/passwd", b"pwned")], '"ui/a"', "symlink")


def test_inside_symlink_dir_then_file_through_it(work: Work) -> None:
    refused(work, [d("ui"), d("ui/sub"), sym("ui/a", "sub"), f("ui/a/x")], "inside", "symlink")


@pytest.mark.parametrize(
    "entries",
    [
        [d("ui"), sym("ui/a", "../../etc/passwd")],
        [d("ui"), sym("ui/a", "..")],
        [d("ui"), d("ui/s"), sym("ui/s/a", "../../x")],
        [d("ui"), sym("ui/a", "b/../../x"), f("ui/b")],
        [d("ui"), sym("ui/a", "nope/../../x")],
        [d("ui"), sym("ui/a", "b"), sym("ui/b", "../etc")],  # chain, target after the link
        [d("ui"), sym("ui/b", "sub/.."), sym("ui/a", "b/../x"), d("ui/sub")],
        [d("ui"), sym("ui/a", "../uix/passwd")],
        [d("ui"), sym("ui/a", "/ui/index.html"), f("ui/index.html")],
    ],
)
def test_symlinks_leaving_the_tree(work: Work, entries: list[E]) -> None:
    refused(work, entries, "leaves")


def test_symlink_to_file_becomes_copy(work: Work) -> None:
    warnings = extracted(
        work,
        [
            d("ui"),
            sym("ui/before", "index.html"),  # link before its target
            f("ui/index.html", b"<html>", mode=0o755),
            d("ui/sub"),
            sym("ui/sub/up", "../index.html"),
            sym("ui/chain", "sub/up"),
            sym("ui/back-in", "../ui/index.html"),
            sym("ui/dotted", "./sub/../index.html"),
        ],
    )
    assert warnings == []
    tree = work.tree()
    for name in ("before", "sub/up", "chain", "back-in", "dotted"):
        assert tree[name] == (0o755, b"<html>"), name


def test_symlink_skips(work: Work) -> None:
    warnings = extracted(
        work,
        [
            d("ui"),
            d("ui/sub"),
            f("ui/sub/x"),
            sym("ui/to-dir", "sub"),
            sym("ui/to-root", "."),
            sym("ui/dangling", "nope.html"),
            sym("ui/through-file", "sub/x/y"),
            sym("ui/loop1", "loop2"),
            sym("ui/loop2", "loop1"),
            sym("ui/empty", ""),
        ],
    )
    assert set(work.tree()) == {"sub", "sub/x"}
    assert len(warnings) == 7
    assert all(w.startswith("skipped symlink") for w in warnings)


def test_symlinks_copies_count_against_max_bytes(work: Work) -> None:
    entries = [d("ui"), f("ui/big", b"x" * 1000)] + [sym(f"ui/l{i}", "big") for i in range(5)]
    refused(work, entries, "limit of 3000 bytes", limits=Limits(max_bytes=3000))


# ---------------------------------------------------------------------------------------------------------
# Hard links
# ---------------------------------------------------------------------------------------------------------


def test_hardlink_inside_becomes_copy(work: Work) -> None:
    extracted(work, [d("ui"), f("ui/a.js", b"js", mode=0o755), d("ui/sub"), hard("ui/sub/b.js", "ui/a.js")])
    tree = work.tree()  # also checks st_nlink == 1
    assert tree["sub/b.js"] == (0o755, b"js")


@pytest.mark.parametrize(
    "entries",
    [
        [d("ui"), hard("ui/shadow", "/etc/shadow")],
        [d("ui"), hard("ui/shadow", "etc/shadow")],
        [d("ui"), hard("ui/shadow", "ui/../etc/shadow")],
        [d("ui"), hard("ui/shadow", "../etc/shadow")],
        [d("ui"), hard("ui/a", "ui/later"), f("ui/later")],
        [d("ui"), f("ui/t"), sym("ui/s", "t"), hard("ui/a", "ui/s")],  # hard link to a symlink
        [d("ui"), d("ui/dir"), hard("ui/a", "ui/dir")],
        [d("ui"), hard("ui/a", "ui")],
        [d("ui"), hard("ui/a", "ui/a")],
        [d("ui"), d("ui/real"), f("ui/real/f"), sym("ui/l", "real"), hard("ui/a", "ui/l/f")],
    ],
)
def test_hardlinks_refused(work: Work, entries: list[E]) -> None:
    refused(work, entries, "hard link")


# ---------------------------------------------------------------------------------------------------------
# Special files, duplicates, conflicts
# ---------------------------------------------------------------------------------------------------------


def test_devices_and_fifos_skipped(work: Work) -> None:
    warnings = extracted(
        work,
        [
            d("ui"),
            E("ui/fifo", "fifo"),
            E("ui/null", "chr"),
            E("ui/sda", "blk"),
            f("ui/ok"),
            sym("ui/l", "fifo"),
        ],
    )
    assert set(work.tree()) == {"ok"}
    assert len(warnings) == 4


def test_entry_inside_a_special_file(work: Work) -> None:
    refused(work, [d("ui"), E("ui/fifo", "fifo"), f("ui/fifo/x")], "inside")


@pytest.mark.parametrize(
    "entries",
    [
        [d("ui"), f("ui/a", b"1"), f("ui/a", b"2")],
        [d("ui"), f("ui/a"), f("ui/./a")],
        [d("ui"), d("ui/a"), d("ui/a")],
        [d("ui"), d("ui/a"), f("ui/a")],
        [d("ui"), f("ui/a"), d("ui/a")],
        [d("ui"), f("ui/a"), sym("ui/a", "b")],
        [d("ui"), d("ui")],
    ],
)
def test_duplicates_refused(work: Work, entries: list[E]) -> None:
    refused(work, entries, "twice")


@pytest.mark.parametrize(
    "entries",
    [
        [d("ui"), f("ui/a/b"), f("ui/a")],  # implicit directory, then a file of that name
        [d("ui"), f("ui/a/b"), sym("ui/a", "x")],
    ],
)
def test_conflict_with_implicit_directory(work: Work, entries: list[E]) -> None:
    refused(work, entries, "conflicts")


def test_file_then_file_under_it(work: Work) -> None:
    refused(work, [d("ui"), f("ui/f"), f("ui/f/x")], "inside", "file")


def test_non_utf8_name_skipped(work: Work) -> None:
    entries = [
        d("ui"),
        f("ui/ok"),
        f("ui/caf\udce9.txt"),
        d("ui/d\udcff"),
        f("ui/d\udcff/x"),
        f("ui/e\udcff/x"),
    ]
    warnings = extract_tree(chunked(make_tar(entries, tarfile.GNU_FORMAT)), work.dest, member="ui", what=WHAT)
    assert set(work.tree()) == {"ok"}
    assert len(warnings) == 4


def test_unknown_type_skipped_but_capped(work: Work) -> None:
    data = header("ui/", 0, tarfile.DIRTYPE)  # "V" (a GNU volume header) cannot be written by tarfile
    raw = (
        header("ui/v", 10, b"V")
        + b"x" * 10
        + bytes(502)
        + header("ui/ok", 1)
        + b"y"
        + bytes(511)
        + bytes(1024)
    )
    warnings = extract_tree(chunked(data + raw), work.dest, member="ui", what=WHAT)
    assert work.tree() == {"ok": (0o644, b"y")}
    assert len(warnings) == 1
    shutil.rmtree(work.dest)
    feed = Feed(data + header("ui/v", 10 << 30, b"V"))
    with pytest.raises(UnsafeArchive, match="exceeds the limit"):
        extract_tree(iter(feed), work.dest, member="ui", what=WHAT)
    assert feed.pulled <= 256 << 10


def test_sparse_refused(work: Work) -> None:
    refused(work, make_tar([d("ui"), E("ui/s", "sparse")], tarfile.GNU_FORMAT), "sparse")


# ---------------------------------------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------------------------------------


def test_too_many_entries(work: Work) -> None:
    refused(
        work,
        [d("ui")] + [f(f"ui/{i}") for i in range(10)],
        "limit of 5 entries",
        limits=Limits(max_entries=5),
    )


def test_file_too_big(work: Work) -> None:
    refused(
        work,
        [d("ui"), f("ui/big", b"x" * 2000)],
        '"ui/big"',
        "limit of 1000 bytes",
        limits=Limits(max_file=1000),
    )


def test_total_too_big(work: Work) -> None:
    entries = [d("ui")] + [f(f"ui/{i}", b"x" * 400) for i in range(5)]
    refused(work, entries, "limit of 1000 bytes in total", limits=Limits(max_bytes=1000))


def test_too_deep(work: Work) -> None:
    refused(work, [d("ui"), f("ui/a/b/c/d")], "directory levels", limits=Limits(max_depth=3))
    refused(work, [d("ui"), f("ui/" + "a/" * 65 + "x")], "limit of 64 directory levels")


def test_depth_at_the_limit(work: Work) -> None:
    extracted(work, [d("ui"), f("ui/a/b/x")], limits=Limits(max_depth=3))


def test_name_too_long(work: Work) -> None:
    refused(work, [d("ui"), f("ui/" + "a/" * 100 + "x")], "bytes for a name", limits=Limits(max_name=100))
    refused(work, [d("ui"), f("ui/" + "n" * 256)], "longer than 255")


def test_symlink_target_too_long(work: Work) -> None:
    refused(work, [d("ui"), sym("ui/l", "a/" * 100)], "target longer", limits=Limits(max_name=100))


class Feed:
    """Yields ``head``, then zero chunks, failing the test if more than ``budget`` bytes are pulled."""

    def __init__(self, head: bytes, budget: int = 1 << 20) -> None:
        self.head = head
        self.budget = budget
        self.pulled = 0

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        self.pulled = len(self.head)
        while True:
            if self.pulled > self.budget:
                raise AssertionError(f"the extractor kept reading ({self.pulled} bytes)")
            self.pulled += 65536
            yield bytes(65536)


def test_huge_entry_fails_on_its_header(work: Work) -> None:
    feed = Feed(header("ui/", 0, tarfile.DIRTYPE) + header("ui/huge", 10 << 30))
    with pytest.raises(UnsafeArchive) as err:
        extract_tree(iter(feed), work.dest, member="ui", what=WHAT)
    message = str(err.value)
    assert '"ui/huge"' in message and "exceeds the limit" in message
    assert feed.pulled <= 256 << 10
    assert not work.dest.exists()


def test_huge_pax_header_fails_before_reading_it(work: Work) -> None:
    feed = Feed(header("ui/", 0, tarfile.DIRTYPE) + header("././@PaxHeader", 100 << 20, tarfile.XHDTYPE))
    with pytest.raises(UnsafeArchive, match="extended tar header"):
        extract_tree(iter(feed), work.dest, member="ui", what=WHAT)
    assert feed.pulled <= 256 << 10
    assert not work.dest.exists()


def test_huge_gnu_longname_fails_before_reading_it(work: Work) -> None:
    feed = Feed(header("././@LongLink", 100 << 20, tarfile.GNUTYPE_LONGNAME))
    with pytest.raises(UnsafeArchive, match="extended tar header"):
        extract_tree(iter(feed), work.dest, member="ui", what=WHAT)
    assert not work.dest.exists()


def test_endless_stream_is_capped(work: Work) -> None:
    # An endless run of empty-named directory entries would be caught by max_entries; an endless stream of
    # the same entry is caught as a duplicate. Either way the extractor stops.
    feed = Feed(header("ui/", 0, tarfile.DIRTYPE) * 1000, budget=10 << 20)
    with pytest.raises(UnsafeArchive):
        extract_tree(iter(feed), work.dest, member="ui", what=WHAT)


# ---------------------------------------------------------------------------------------------------------
# Damaged streams, engine errors, preconditions
# ---------------------------------------------------------------------------------------------------------


def test_truncated_in_data(work: Work) -> None:
    data = make_tar([d("ui"), f("ui/a", b"x" * 5000)], tarfile.GNU_FORMAT)
    refused(work, data[:1500], "damaged or truncated")


def test_truncated_without_end_marker(work: Work) -> None:
    data = make_tar([d("ui"), f("ui/a", b"x" * 100)], tarfile.GNU_FORMAT)
    refused(work, data[:1536], "damaged or truncated")


def test_not_a_tar(work: Work) -> None:
    refused(work, b"<html>502 Bad Gateway</html>" * 40, "damaged or truncated")


def test_empty_stream(work: Work) -> None:
    refused(work, b"", "damaged or truncated")


def test_engine_error_propagates(work: Work) -> None:
    data = make_tar([d("ui"), f("ui/a", b"x" * 5000), f("ui/b")])

    def broken() -> Iterator[bytes]:
        yield data[:2048]
        raise ConnectionError("engine went away")

    with pytest.raises(ConnectionError):
        extract_tree(broken(), work.dest, member="ui", what=WHAT)
    assert not work.dest.exists()


def test_dest_must_not_exist(work: Work) -> None:
    work.dest.mkdir()
    (work.dest / "keep").write_text("keep")
    work.before = snapshot(work.root, work.root / "nothing")
    with pytest.raises(FileExistsError):
        extract_tree(chunked(make_tar([d("ui"), f("ui/keep", b"new")])), work.dest, member="ui", what=WHAT)
    assert (work.dest / "keep").read_text() == "keep"
    work.dest = work.root / "nothing"


@pytest.mark.parametrize("member", ["", ".", "..", "a/b"])
def test_bad_member_argument(work: Work, member: str) -> None:
    with pytest.raises(ValueError):
        extract_tree([], work.dest, member=member, what=WHAT)


# ---------------------------------------------------------------------------------------------------------
# extract_file
# ---------------------------------------------------------------------------------------------------------

BIN = "host binary /linux/hello"


def out_dir(work: Work) -> Path:
    """extract_file writes outside ``dest``: make ``out/`` the excluded directory instead."""
    work.dest = work.root / "out"
    work.dest.mkdir(exist_ok=True)
    work.before = snapshot(work.root, work.dest)
    return work.dest / "hello"


def one(work: Work, entries: list[E] | bytes, **kwargs: object) -> Path:
    data = entries if isinstance(entries, bytes) else make_tar(entries)
    target = out_dir(work)
    extract_file(chunked(data), target, what=BIN, **kwargs)  # type: ignore[arg-type]
    return target


def one_refused(work: Work, entries: list[E] | bytes, *match: str, **kwargs: object) -> str:
    target = out_dir(work)
    data = entries if isinstance(entries, bytes) else make_tar(entries)
    with pytest.raises(UnsafeArchive) as err:
        extract_file(chunked(data), target, what=BIN, **kwargs)  # type: ignore[arg-type]
    message = str(err.value)
    assert BIN in message
    for m in match:
        assert m in message, message
    assert not target.exists()
    return message


def test_extract_file(work: Work) -> None:
    target = one(work, [f("hello", b"\x7fELF...", mode=0o4755)])
    assert target.read_bytes() == b"\x7fELF..."
    assert stat.S_IMODE(target.stat().st_mode) == 0o755


def test_extract_file_not_executable(work: Work) -> None:
    target = one(work, [f("icon.svg", b"<svg/>", mode=0o755)], executable_ok=False)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    target.unlink()
    target = one(work, [f("hello", b"x", mode=0o644)])
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_extract_file_symlink(work: Work) -> None:
    message = one_refused(work, [sym("hello", "/usr/bin/sudo")])
    assert message.startswith("host binary /linux/hello is a symlink")


@pytest.mark.parametrize(
    ("entries", "match"),
    [
        ([d("hello")], "directory"),
        ([hard("hello", "x")], "hard link"),
        ([E("hello", "fifo")], "not a regular file"),
        ([E("hello", "chr")], "not a regular file"),
        ([f("hello"), f("other")], "more than one entry"),
        ([f("a/hello")], "not a plain file name"),
        ([f("../hello")], '".."'),
        ([f("/hello")], "absolute"),
        ([f("hello", b"x" * 2000)], "limit of 1000 bytes"),
    ],
)
def test_extract_file_refused(work: Work, entries: list[E], match: str) -> None:
    one_refused(work, entries, match, limits=Limits(max_file=1000))


def test_extract_file_empty_or_damaged(work: Work) -> None:
    one_refused(work, make_tar([]), "empty")
    one_refused(work, make_tar([f("hello", b"x" * 3000)], tarfile.GNU_FORMAT)[:1000], "damaged or truncated")


def test_extract_file_huge_fails_fast(work: Work) -> None:
    feed = Feed(header("hello", 10 << 30))
    target = work.root / "hello"
    with pytest.raises(UnsafeArchive, match="exceeds the limit"):
        extract_file(iter(feed), target, what=BIN)
    assert feed.pulled <= 256 << 10
    assert not target.exists()


def test_extract_file_never_follows_or_overwrites(work: Work) -> None:
    target = work.root / "hello"
    target.symlink_to(work.root / "etc" / "passwd")
    work.before = snapshot(work.root, work.dest)
    with pytest.raises(FileExistsError):
        extract_file(chunked(make_tar([f("hello", b"pwned")])), target, what=BIN)
    assert (work.root / "etc" / "passwd").read_text() == "root:x:0:0\n"


def test_extract_file_metadata_json(work: Work) -> None:
    target = work.root / "metadata.json"
    extract_file(
        chunked(make_tar([f("metadata.json", b"{}", mode=0o777)])),
        target,
        what="/metadata.json",
        executable_ok=False,
    )
    assert target.read_bytes() == b"{}"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    target.unlink()


@pytest.mark.parametrize("pax", [{"GNU.sparse.size": "abc"}, {"GNU.sparse.map": "1,x"}])
def test_pax_numbers_that_are_not_numbers_are_refused(work: Work, pax: dict[str, str]) -> None:
    """Found by a bug hunt: tarfile runs int() on these pax values and lets the ValueError through, which reached
    the user as a traceback instead of a refused archive."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        root = tarfile.TarInfo("ui")
        root.type, root.mode = tarfile.DIRTYPE, 0o755
        t.addfile(root)
        page = tarfile.TarInfo("ui/index.html")
        page.size, page.pax_headers = 2, pax
        t.addfile(page, io.BytesIO(b"hi"))
    refused(work, buf.getvalue(), "the archive is damaged or truncated", "invalid literal for int()")
