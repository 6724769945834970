"""The Marketplace: a catalog of the extensions found in registries and lists, and the install allow-list.

Docker Desktop's Marketplace lists the extensions of Docker Hub, reading each card from the image labels of the
greatest semver tag (reference §8.1); an administrator can restrict it to the extensions of an
``extensions.txt`` file, and ``OnlyMarketplaceExtensions`` refuses the installs of anything else (§8.2, §8.3).
dockext has no Docker Hub search API to lean on, so the user names the *sources* instead:

* a registry, or a namespace of it (``127.0.0.1:5000/acme``): every repository under it whose image carries the
  ``com.docker.desktop.extension.api.version`` label is an extension (others are skipped silently);
* a list in Docker Desktop's ``extensions.txt`` format: one image per line, ``REPOSITORY[:TAG]`` (a tag pins
  that version; without one the greatest semver tag is offered), ``#`` comments, blank lines. This is how
  Docker Hub's extensions are listed: Docker Hub has no catalog API;
* a folder of ``docker save`` files and OCI layouts: an offline catalog, read from the files at each look
  (:mod:`dockext.savedimages`); its entries carry the file they install from (:func:`file_for`).

With ``only_listed`` on, :func:`check_allowed` (called first by install and update) refuses an image that no
source lists. Deciding that needs no network: a registry source lists every image of its registry under its
namespace; a list source lists its repositories, at the pinned tag only when it pins one.

Settings live in ``<home>/marketplace.json`` (atomic, versioned, 0600). A list source keeps the images read when
it was added: add the file again (``rm`` then ``add --list``) after changing it. :func:`browse` does the
network through :mod:`dockext.registry`; this module knows nothing of HTTP.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from . import model, savedimages
from .errors import DockextError, InvalidImageReference, InvalidSource, NotListed, SourceNotFound, StateError
from .paths import Layout
from .store import Store, atomic_write, read_settings

if TYPE_CHECKING:  # imported when browsing only: the installer imports this module for check_allowed
    from . import registry

__all__ = [
    "CACHE_SECONDS",
    "FILE",
    "REPOSITORY_LIMIT",
    "SCHEMA",
    "Catalog",
    "Entry",
    "Settings",
    "Source",
    "add_folder",
    "add_list",
    "add_registry",
    "browse",
    "check_allowed",
    "clear_cache",
    "file_for",
    "folder_images",
    "listed",
    "load",
    "parse_list",
    "parse_registry_spec",
    "remove",
    "set_only_listed",
]

SCHEMA: Final = 1
FILE: Final = "marketplace.json"
MEMO: Final = "cache/folder-files.json"  # under the home: what folder sources' files hold (deletable)
REPOSITORY_LIMIT: Final = 200  # repositories read per registry source
CACHE_SECONDS: Final = 60.0  # how long browse() reuses what a source answered
_WORKERS: Final = 8  # requests in flight at once
API_LABEL: Final = "com.docker.desktop.extension.api.version"
_SPEC_HINT: Final = "Give REGISTRY[/NAMESPACE], e.g. 127.0.0.1:5000/acme or registry.example.com"


@dataclass(frozen=True)
class Source:
    """Where extensions are listed: a registry (and namespace), or the images of an ``extensions.txt``."""

    kind: Literal["registry", "list", "folder"]
    registry: str | None = None  # "127.0.0.1:5000" (kind registry)
    namespace: str | None = None  # "acme" or None = the whole registry (kind registry)
    images: tuple[str, ...] = ()  # "127.0.0.1:5000/acme/x" or "127.0.0.1:5000/acme/x:1.2.0" (kind list)
    path: str | None = None  # the extensions.txt it was read from (kind list), the folder (kind folder)
    # kind folder, as load() gives it: the file that remembers what the folder's files hold between processes
    # (not part of the source's identity, never saved in the settings)
    memo: Path | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        """How it is shown, and named in ``dockext marketplace rm``."""
        if self.kind in ("list", "folder"):
            return self.path or f"({self.kind})"
        return f"{self.registry}/{self.namespace}" if self.namespace else str(self.registry)

    def to_json(self) -> dict[str, Any]:
        if self.kind == "list":
            return {"kind": "list", "path": self.path, "images": list(self.images)}
        if self.kind == "folder":
            return {"kind": "folder", "path": self.path}
        return {"kind": "registry", "registry": self.registry, "namespace": self.namespace}


@dataclass(frozen=True)
class Settings:
    sources: tuple[Source, ...] = ()
    only_listed: bool = False  # refuse installs of extensions no source lists


@dataclass(frozen=True)
class Entry:
    """One extension of the catalog, as a Marketplace card shows it (everything comes from its labels)."""

    image: str  # repository without tag, as one installs it: "127.0.0.1:5000/acme/x"
    tag: str  # the version offered: greatest semver tag (or the pinned tag of a list entry; "latest" if no semver)
    tags: tuple[str, ...]  # semver tags, greatest first
    labels: dict[str, str]  # the image config's labels for `tag`
    title: str  # model.parse_labels' title, else the repository's last path component
    vendor: str
    description: str
    source: str  # Source.label it came from
    file: str | None = None  # a folder source's file (or OCI layout) holding `tag`: installed from there

    @property
    def ref(self) -> str:
        return f"{self.image}:{self.tag}"

    @property
    def details(self) -> model.Labels:
        """Every Marketplace label, parsed (categories, screenshots, publisher URL, changelog, icon URL...)."""
        return model.parse_labels(self.labels)


@dataclass
class Catalog:
    entries: list[Entry]  # sorted by title (case-insensitive), one per image (first source wins)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (source label, message) for sources that failed


# ----------------------------------------------------------------------------------------------------------
# Parsing sources (pure)
# ----------------------------------------------------------------------------------------------------------


def parse_registry_spec(spec: str) -> Source:
    """``REGISTRY[/NAMESPACE]`` -> a registry source. The registry must look like a host (a dot, a port or
    ``localhost``), as in an image reference; Docker Hub is refused (it has no catalog API)."""
    text = spec.strip().rstrip("/")
    if "://" in text:
        raise InvalidSource(f"{spec!r}: give the registry without a scheme (http:// or https://)", hint=_SPEC_HINT)
    first = text.split("/", 1)[0]
    if first.lower() in ("docker.io", "index.docker.io", "registry-1.docker.io", "hub.docker.com"):
        raise InvalidSource(
            "Docker Hub has no catalog API, so it cannot be a registry source",
            hint="List its extensions in an extensions.txt file (one image per line, e.g. "
                 "docker/volumes-backup-extension) and add it with: dockext marketplace add --list FILE",
        )
    try:
        ref = model.ImageRef.parse(f"{text}/x")  # the grammar of image references does the checking
    except InvalidImageReference as exc:
        raise InvalidSource(f"{spec!r} is not REGISTRY[/NAMESPACE]: {exc.message}", hint=_SPEC_HINT) from None
    if ref.registry is None or ref.tag is not None or ref.digest is not None:
        raise InvalidSource(
            f"{spec!r} does not start with a registry (a host name with a dot or a port, or localhost)",
            hint=_SPEC_HINT,
        )
    namespace = ref.repository.removesuffix("/x") if ref.repository != "x" else None
    return Source(kind="registry", registry=ref.registry, namespace=namespace)


def parse_list(text: str, path: str) -> tuple[str, ...]:
    """The images of an ``extensions.txt`` (Docker Desktop's format), each as ``NAME[:TAG]``.

    Raises :class:`InvalidSource` naming the file and line of the first bad line."""
    images: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            ref = model.ImageRef.parse(line)
        except InvalidImageReference as exc:
            raise InvalidSource(f"{path}, line {number}: {exc.message}", hint=exc.hint) from None
        if ref.digest is not None:
            raise InvalidSource(
                f"{path}, line {number}: {line!r} names a digest; pin a version with a tag (REPOSITORY:TAG)"
            )
        item = f"{ref.name}:{ref.tag}" if ref.tag else ref.name
        if item not in images:
            images.append(item)
    if not images:
        raise InvalidSource(f"{path} lists no image", hint="One image per line, e.g. acme/my-extension:1.0.0")
    return tuple(images)


# ----------------------------------------------------------------------------------------------------------
# The settings file
# ----------------------------------------------------------------------------------------------------------


def _path(layout: Layout) -> Path:
    return layout.root / FILE


def _source_from_json(value: Any, memo: Path | None = None) -> Source:
    if not isinstance(value, dict):
        raise ValueError("a source is not an object")
    kind = value.get("kind")
    if kind == "registry":
        reg, ns = value.get("registry"), value.get("namespace")
        if not isinstance(reg, str) or not (ns is None or isinstance(ns, str)):
            raise ValueError("a registry source needs a registry string")
        return parse_registry_spec(f"{reg}/{ns}" if ns else reg)
    if kind == "list":
        path, images = value.get("path"), value.get("images")
        if not isinstance(path, str) or not isinstance(images, list) or not all(isinstance(i, str) for i in images):
            raise ValueError("a list source needs a path and a list of images")
        return Source(kind="list", path=path, images=parse_list("\n".join(images), path))
    if kind == "folder":
        path = value.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError("a folder source needs an absolute path")
        return Source(kind="folder", path=path, memo=memo)
    raise ValueError(f"unknown source kind {kind!r}")


def load(layout: Layout) -> Settings:
    """The Marketplace settings of this home; a missing file is ``Settings()``.

    An unreadable file raises :class:`StateError` rather than reading as "no restriction"."""
    path = _path(layout)
    data = read_settings(path, SCHEMA, "the Marketplace settings",
                         "deleting it removes every source and turns only-listed off")
    if data is None:
        return Settings()
    try:
        listed = data.get("sources") or []
        if not isinstance(listed, list):
            raise ValueError("sources is not a list")
        sources = tuple(_source_from_json(s, layout.root / MEMO) for s in listed)
        only_listed = data.get("only_listed", False)
        if not isinstance(only_listed, bool):
            raise ValueError("only_listed is not true or false")
    except (ValueError, DockextError) as exc:
        raise StateError(f"the Marketplace settings {path} are invalid: {exc}",
                         hint="Fix or delete the file (deleting it removes every source and turns only-listed off).",
                         ) from None
    return Settings(sources=sources, only_listed=only_listed)


def _save(layout: Layout, settings: Settings) -> None:
    body = {"schema": SCHEMA, "only_listed": settings.only_listed,
            "sources": [s.to_json() for s in settings.sources]}
    atomic_write(_path(layout), (json.dumps(body, indent=2) + "\n").encode(), mode=0o600)


def _add(layout: Layout, source: Source, again_hint: str) -> Source:
    with Store(layout).lock():
        settings = load(layout)
        if any(s.label == source.label for s in settings.sources):
            raise InvalidSource(f"the marketplace source {source.label} is already there", hint=again_hint)
        _save(layout, replace(settings, sources=(*settings.sources, source)))
    return source


def add_registry(layout: Layout, spec: str) -> Source:
    """Add the registry source ``REGISTRY[/NAMESPACE]``; refused when it is malformed or already there."""
    source = parse_registry_spec(spec)
    return _add(layout, source, "List the sources with: dockext marketplace ls")


def add_list(layout: Layout, path: Path) -> Source:
    """Add the images of an ``extensions.txt`` (read now: add it again after changing it)."""
    full = path.expanduser().absolute()
    try:
        text = full.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidSource(f"{full}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidSource(f"cannot read {full}: {exc}") from None
    source = Source(kind="list", path=str(full), images=parse_list(text, str(full)))
    return _add(layout, source, f"To read it again after a change: dockext marketplace rm {full}, then add it.")


def add_folder(layout: Layout, path: Path) -> Source:
    """Add a folder of extension files (``docker save`` files, OCI layouts or archives): an offline catalog,
    read at each browse (files added later appear; installs load the file)."""
    full = path.expanduser().absolute()
    if not full.is_dir():
        raise InvalidSource(f"{full} is not a directory",
                            hint="Give a folder holding `docker save` files or OCI layouts of extensions.")
    source = Source(kind="folder", path=str(full))
    return _add(layout, source, "List the sources with: dockext marketplace ls")


def remove(layout: Layout, label: str) -> Source:
    """Remove the source shown as ``label`` (a list may also be named by a relative path to its file)."""
    wanted = label.strip().rstrip("/") or label
    with Store(layout).lock():
        settings = load(layout)
        for source in settings.sources:
            if source.label == wanted or (
                source.kind in ("list", "folder") and str(Path(wanted).expanduser().absolute()) == source.path
            ):
                _save(layout, replace(settings, sources=tuple(s for s in settings.sources if s is not source)))
                return source
    names = ", ".join(s.label for s in settings.sources) or "none"
    raise SourceNotFound(f"no marketplace source {label} (the sources: {names})",
                         hint="List them with: dockext marketplace ls")


def set_only_listed(layout: Layout, on: bool) -> Settings:
    with Store(layout).lock():
        settings = replace(load(layout), only_listed=on)
        _save(layout, settings)
    return settings


# ----------------------------------------------------------------------------------------------------------
# The allow-list (no network)
# ----------------------------------------------------------------------------------------------------------


def _wanted_tag(ref: model.ImageRef) -> str | None:
    """The tag an install of ``ref`` gets: its tag, ``latest`` without one, None for a bare digest."""
    return ref.tag or (None if ref.digest else "latest")


def _lists(source: Source, ref: model.ImageRef) -> bool:
    if source.kind == "folder":  # the versions its files hold (read from the files: no network)
        tag = _wanted_tag(ref)
        return ref.digest is None and any(
            model.canonical_ref(image.name) == model.canonical_ref(f"{ref.name}:{tag}")
            for image, _path in folder_images(source)[0]
        )
    if source.kind == "registry":
        if ref.registry is None or source.registry is None or ref.registry.lower() != source.registry.lower():
            return False
        return source.namespace is None or ref.repository.startswith(f"{source.namespace}/")
    for item in source.images:
        try:
            allowed = model.ImageRef.parse(item)
        except InvalidImageReference:  # an image ID, which an older dockext let into a list: names nothing
            continue
        if allowed.name != ref.name:
            continue
        if allowed.tag is None and allowed.digest is None:
            return True  # the repository, any version
        # a pinned version: the engine pulls by digest when one is given and ignores the tag, so a digest is
        # listed only when the list names that very digest
        if ref.digest is not None:
            return allowed.digest == ref.digest
        if allowed.digest is None and allowed.tag == _wanted_tag(ref):
            return True
    return False


def listed(settings: Settings, image: str) -> bool:
    """Whether ``IMAGE[:TAG]`` is allowed by the sources: a registry source lists the images of its registry
    under its namespace; a list source its repositories, at the pinned tag when it pins one."""
    try:
        ref = model.ImageRef.parse(image)
    except InvalidImageReference:
        return False
    ordered = sorted(settings.sources, key=lambda s: s.kind == "folder")  # folders read files: last
    return any(_lists(source, ref) for source in ordered)


def check_allowed(layout: Layout, image: str) -> None:
    """Raise :class:`NotListed` when only listed extensions may be installed and ``image`` is not listed."""
    settings = load(layout)
    if not settings.only_listed or listed(settings, image):
        return
    ref = model.ImageRef.parse(image)
    shown = ref.pull_ref
    if not settings.sources:
        message = f"{shown} cannot be installed: only extensions listed by a marketplace source may be, and " \
                  "there is no source"
    else:
        pinned = [r.tag for s in settings.sources if s.kind == "list" for item in s.images
                  if (r := model.ImageRef.parse(item)).name == ref.name and r.tag]
        versions = f" (the listed versions: {', '.join(pinned)})" if pinned else ""
        # a folder that cannot be read lists nothing: say so, or the user looks for the wrong cause
        unread = [problem for s in settings.sources if s.kind == "folder" for problem in folder_images(s)[1]
                  if problem.startswith("cannot read the folder")]
        message = (f"{shown} is not listed by the marketplace sources ({', '.join(s.label for s in settings.sources)})"
                   f"{versions}, and only listed extensions may be installed"
                   + "".join(f"; {problem}" for problem in unread))
    raise NotListed(
        message,
        hint="Install a listed extension (dockext marketplace ls), add a source that lists it (dockext marketplace "
             "add), turn the restriction off with `dockext marketplace only-listed off`, or ask your administrator.",
    )


# ----------------------------------------------------------------------------------------------------------
# The catalog (network, through registry.py)
# ----------------------------------------------------------------------------------------------------------

_cache: dict[Source, tuple[float, list[Entry]]] = {}
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Forget what sources answered (the next :func:`browse` asks them again)."""
    with _cache_lock:
        _cache.clear()
    with _files_lock:
        _files.clear()


class _Clients:
    """One registry client per registry, shared by every source of one browse."""

    def __init__(self, timeout: float, insecure: Callable[[], registry.Insecure | None] | None) -> None:
        self.timeout = timeout
        self._insecure_of = insecure
        self._insecure: registry.Insecure | None = None
        self._insecure_asked = False
        self._clients: dict[str, registry.RegistryClient] = {}
        self._lock = threading.Lock()

    def get(self, name: str | None) -> registry.RegistryClient:
        from . import registry

        key = (name or registry.DOCKER_HUB).lower()
        with self._lock:
            if key not in self._clients:
                # the engine is asked once a browse, and only for a registry read now that is not on loopback
                # (always insecure) or Docker Hub (never)
                if name and not registry.is_loopback(name) and not self._insecure_asked and self._insecure_of:
                    self._insecure, self._insecure_asked = self._insecure_of(), True
                self._clients[key] = registry.RegistryClient(name, timeout=self.timeout, insecure=self._insecure)
            return self._clients[key]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


def _message(exc: DockextError) -> str:
    return f"{exc.message}. {exc.hint}" if exc.hint else exc.message


_MAX_LABEL: Final = 64 * 1024  # characters kept of one label
_MAX_TAGS: Final = 100  # versions offered per extension (the greatest first)


class _NotAnExtension(Exception):
    """The image has no extension API label (skipped in registry sources, reported in lists)."""


def _entry(client: registry.RegistryClient, image: model.ImageRef, pinned: str | None, source: Source) -> Entry | None:
    """The catalog entry of one repository, or None when it has no tag to offer."""
    from .validate import Version, greatest_semver  # validate imports the installer, which imports this module

    tags: tuple[str, ...]
    if pinned is not None:
        tag, tags = pinned, ((pinned,) if Version.parse(pinned) else ())
    else:
        all_tags = client.tags(image.repository)
        chosen = greatest_semver(all_tags)
        semver = [t for t in all_tags if Version.parse(t) is not None]
        tags = tuple(semver)  # _make_entry sorts them, greatest first
        if chosen is None:
            if "latest" not in all_tags:
                return None
            chosen = "latest"
        tag = chosen
    entry = _make_entry(image.name, tag, tags, client.labels(image.repository, tag).labels, source)
    if entry is None:
        raise _NotAnExtension(f"{image.name}:{tag}")
    return entry


def _make_entry(image: str, tag: str, tags: Iterable[str], raw: dict[str, str], source: Source,
                file: str | None = None) -> Entry | None:
    """A catalog entry from an image's labels; None when they do not make it an extension."""
    # only the labels the Marketplace reads, each bounded: a catalog keeps hundreds of entries in memory
    labels = {k: v[:_MAX_LABEL] for k, v in raw.items() if k.startswith(("com.docker.", "org.opencontainers."))}
    info = model.parse_labels(labels)
    if info.api_version is None:
        return None
    return Entry(
        image=image, tag=tag, tags=tuple(sorted(tags, key=lambda t: (_version_key(t), t), reverse=True))[:_MAX_TAGS],
        labels=labels, title=(info.title or image.rsplit("/", 1)[-1])[:200], vendor=(info.vendor or "")[:200],
        description=(info.description or "")[:2000], source=source.label, file=file,
    )


def _version_key(tag: str) -> tuple[Any, ...]:
    from .validate import Version

    version = Version.parse(tag)
    return version.key if version is not None else ()


def _scan_registry(source: Source, clients: _Clients, pool: ThreadPoolExecutor) -> tuple[list[Entry], list[str]]:
    client = clients.get(source.registry)
    prefix = f"{source.namespace}/" if source.namespace else ""
    repositories, more = client.catalog(prefix=prefix, limit=REPOSITORY_LIMIT)
    refs: list[model.ImageRef] = []
    for repo in repositories:
        try:  # a name the registry invents is never used in a URL or shown unless it is a valid reference
            ref = model.ImageRef.parse(f"{source.registry}/{repo}")
        except InvalidImageReference:
            continue
        if ref.tag is None and ref.digest is None and ref.registry == source.registry:
            refs.append(ref)
    futures = [pool.submit(_entry, client, ref, None, source) for ref in refs]
    entries: list[Entry] = []
    failed: list[str] = []
    for future in futures:
        try:
            entry = future.result()
        except _NotAnExtension:
            continue
        except DockextError as exc:
            failed.append(_message(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - one odd answer must not sink the catalog
            failed.append(f"{source.label} answered something dockext cannot read ({type(exc).__name__}: {exc})")
            continue
        if entry is not None:
            entries.append(entry)
    problems = []
    if failed:
        others = f" (and {len(failed) - 1} more repositories failed)" if len(failed) > 1 else ""
        problems.append(failed[0] + others)
    if more:
        problems.append(f"there are more than {REPOSITORY_LIMIT} repositories under {source.label}; only the "
                        f"first {REPOSITORY_LIMIT} were read. Add narrower namespaces (REGISTRY/NAMESPACE) instead")
    return entries, problems


def _scan_list(source: Source, clients: _Clients, pool: ThreadPoolExecutor) -> tuple[list[Entry], list[str]]:
    refs = [model.ImageRef.parse(item) for item in source.images]
    futures = [pool.submit(_entry, clients.get(ref.registry), ref, ref.tag, source) for ref in refs]
    entries: list[Entry] = []
    problems: list[str] = []
    for ref, future in zip(refs, futures, strict=True):
        try:
            entry = future.result()
        except _NotAnExtension as exc:
            problem = f"{exc} is not a Docker extension: its image has no {API_LABEL} label"
        except DockextError as exc:
            problem = _message(exc)
        except Exception as exc:  # noqa: BLE001 - one odd answer must not sink the catalog
            problem = f"{ref.name}: an answer dockext cannot read ({type(exc).__name__}: {exc})"
        else:
            if entry is not None:
                entries.append(entry)
                continue
            problem = f"{ref.name} has no semver tag and no latest tag to offer"
        if problem not in problems:
            problems.append(problem)
    return entries, problems


FOLDER_LIMIT: Final = 200  # files and layouts read per folder source
_FileKey = tuple[str, int, int, int, int]  # (path, size, mtime, inode, ctime)
_Held = list[savedimages.SavedImage] | DockextError
# what each file holds, by its key: read once while the file is unchanged
_files: dict[_FileKey, _Held] = {}
_files_lock = threading.Lock()
_memo_lock = threading.Lock()
MEMO_SCHEMA: Final = 1  # and savedimages.READER: a new reader reads every file again
_MEMO_MAX: Final = 16 << 20  # bytes: a memo larger than this is neither written nor read
_MEMO_ENTRY: Final = 1 << 20  # bytes: a file whose labels take more is read again each time


_Memo = dict[_FileKey, list[savedimages.SavedImage]]


def _memo_read(path: Path) -> _Memo:
    """What the memo file remembers; an entry it cannot vouch for, or a memo that is missing, unreadable, too
    large, from another reader or read for another platform (what a multi-platform layout holds depends on it), is
    simply not there (the file is read again: never an error)."""
    try:
        with path.open("rb") as fh:
            data = json.loads(fh.read()) if os.fstat(fh.fileno()).st_size <= _MEMO_MAX else None
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict) or data.get("schema") != MEMO_SCHEMA or data.get("reader") != savedimages.READER:
        return {}
    if data.get("platform") != savedimages.host_platform():  # a home shared by machines of two architectures
        return {}
    out: _Memo = {}
    files = data.get("files")
    for item in files if isinstance(files, list) else []:
        try:
            key = item["key"]
            if not (isinstance(key, list) and len(key) == 5 and isinstance(key[0], str)
                    and all(type(n) is int for n in key[1:])):
                continue
            images = [savedimages.SavedImage.from_json(i) for i in item["images"]]
            out[(key[0], key[1], key[2], key[3], key[4])] = images
        except (KeyError, TypeError, ValueError):
            continue
    return out


def _memo_write(path: Path, root: Path, now: _Memo) -> None:
    """Remember what ``root``'s files hold (``now``: each of its files that could be read; one that could not
    is tried again next time), keeping the entries of other folders' files that are still there. Best effort:
    a memo that cannot be written costs a read next time, nothing else; two processes writing at once lose one's
    update. A file whose entry would take over _MEMO_ENTRY (labels at their bounds) is not remembered."""
    with _memo_lock:
        kept = {k: v for k, v in _memo_read(path).items() if Path(k[0]).parent != root and os.path.lexists(k[0])}
        kept.update(now)
        # too large: other folders' entries give way (a folder no longer a source keeps them while its files last)
        for remembered in (kept, now):
            entries = [e for k, v in remembered.items()
                       if len(e := json.dumps({"key": list(k), "images": [i.to_json() for i in v]})) <= _MEMO_ENTRY]
            body = (f'{{"schema": {MEMO_SCHEMA}, "reader": {savedimages.READER}, '
                    f'"platform": {json.dumps(savedimages.host_platform())}, "files": [{", ".join(entries)}]}}')
            if len(body) <= _MEMO_MAX:
                break
        else:
            return
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write(path, body.encode(), mode=0o600)
        except OSError:
            pass


def folder_images(source: Source) -> tuple[list[tuple[savedimages.SavedImage, Path]], list[str]]:
    """The named images of a folder source's files and layouts (each file read once while unchanged: in this
    process, and across processes through ``source.memo``), and what could not be read."""
    assert source.path is not None
    root = Path(source.path)
    problems = []
    try:
        entries = sorted(root.iterdir())
    except OSError as exc:
        return [], [f"cannot read the folder {root}: {exc.strerror or exc}"]
    candidates = []
    for entry in entries:
        try:
            if savedimages.is_candidate(entry):
                candidates.append(entry)
        except OSError as exc:  # one entry that cannot be looked at (lost+found...) does not hide the others
            problems.append(f"{entry.name}: {exc.strerror or exc}")
    if len(candidates) > FOLDER_LIMIT:
        problems.append(f"{root} holds more than {FOLDER_LIMIT} files; only the first {FOLDER_LIMIT} were read")
    found: list[tuple[savedimages.SavedImage, Path]] = []
    memo: _Memo | None = None  # read at the first file this process has not read
    now: _Memo = {}  # what this folder's readable files hold
    for path in candidates[:FOLDER_LIMIT]:
        try:
            st = path.lstat()  # a file replaced keeps neither its inode nor its ctime, even with cp -p
            if stat.S_ISDIR(st.st_mode):
                # a layout changes through its index.json (skopeo rewrites it in place and adds blobs under
                # blobs/sha256): the directory itself keeps its size, mtime, inode and ctime
                with contextlib.suppress(OSError):  # none: the read says so, and a problem is never kept
                    st = (path / "index.json").lstat()
            key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
        except OSError:
            continue
        with _files_lock:
            got = _files.get(key)
        if got is None and source.memo is not None:
            if memo is None:
                memo = _memo_read(source.memo)
            got = memo.get(key)
        if got is None:
            try:
                got = savedimages.read(path, path.name)
            except DockextError as exc:
                got = exc
            except Exception as exc:  # noqa: BLE001 - one odd file must not sink the folder
                got = DockextError(f"{path.name}: cannot be read ({type(exc).__name__}: {exc})")
        with _files_lock:
            if _files.get(key) is not got:
                for old in [k for k in _files if k[0] == key[0]]:
                    del _files[old]  # an older version of the same file
                _files[key] = got
        if isinstance(got, DockextError):
            problems.append(_message(got))
        else:
            now[key] = got
            found.extend((image, path) for image in got)
    with _files_lock:  # files gone from the folder are forgotten
        kept = {str(p) for p in candidates[:FOLDER_LIMIT]}
        for old in [k for k in _files if Path(k[0]).parent == root and k[0] not in kept]:
            del _files[old]
    # memo is None when this process has read every file already (and written the memo then)
    if source.memo is not None and memo is not None and set(now) != {k for k in memo if Path(k[0]).parent == root}:
        _memo_write(source.memo, root, now)  # a file read, changed or gone
    first: dict[str, Path] = {}
    for image, path in found:
        name = model.canonical_ref(image.name)
        if name in first and first[name] != path:
            problems.append(f"{image.name} is in {first[name].name} and {path.name}: {first[name].name} is used")
        first.setdefault(name, path)
    return found, problems


def _scan_folder(source: Source, clients: _Clients, pool: ThreadPoolExecutor) -> tuple[list[Entry], list[str]]:
    from .validate import Version, greatest_semver

    found, problems = folder_images(source)
    by_repo: dict[str, dict[str, tuple[savedimages.SavedImage, Path]]] = {}
    for image, path in found:
        ref = model.ImageRef.parse(image.name)
        by_repo.setdefault(ref.name, {}).setdefault(ref.tag or "latest", (image, path))
    entries = []
    for repo, versions in by_repo.items():
        tag = greatest_semver(list(versions)) or ("latest" if "latest" in versions else sorted(versions)[-1])
        image, path = versions[tag]
        semver = [t for t in versions if Version.parse(t) is not None]
        entry = _make_entry(repo, tag, semver, image.labels, source, file=str(path))
        if entry is not None:  # else not an extension: skipped, as in a registry source
            entries.append(entry)
    return entries, problems


def file_for(settings: Settings, image: str, source: str | None = None
             ) -> tuple[Path, savedimages.SavedImage] | None:
    """The file of a folder source (the one labelled ``source``, or any) that holds ``IMAGE[:TAG]``
    (``:latest`` without a tag), and what it says of that image; None when none does."""
    try:
        ref = model.ImageRef.parse(image)
    except InvalidImageReference:
        return None
    if ref.digest is not None:
        return None
    wanted = model.canonical_ref(f"{ref.name}:{ref.tag or 'latest'}")
    for candidate in settings.sources:
        if candidate.kind == "folder" and (source is None or candidate.label == source):
            for saved, path in folder_images(candidate)[0]:
                if model.canonical_ref(saved.name) == wanted:
                    return path, saved
    return None


def _scan(source: Source, clients: _Clients, pool: ThreadPoolExecutor) -> tuple[list[Entry], list[str]]:
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(source)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1], []
    try:
        scan = {"list": _scan_list, "folder": _scan_folder}.get(source.kind, _scan_registry)
        entries, problems = scan(source, clients, pool)
    except DockextError as exc:
        return [], [_message(exc)]
    except Exception as exc:  # noqa: BLE001 - one odd source must not sink the others
        return [], [f"an answer dockext cannot read ({type(exc).__name__}: {exc})"]
    if not problems:
        with _cache_lock:
            for old in [s for s, (at, _) in _cache.items() if now - at >= CACHE_SECONDS]:
                del _cache[old]  # removed sources' entries do not stay for the life of the server
            _cache[source] = (now, entries)
    return entries, problems


def browse(settings: Settings, *, timeout: float = 10.0,
           insecure: Callable[[], registry.Insecure | None] | None = None) -> Catalog:
    """Every extension the sources list (blocking; requests run in parallel). A source that fails is named in
    ``errors`` with what went wrong; the others are still listed. What a source answered is reused for 60 s.
    ``insecure`` asks the engine which registries it reaches without verified TLS (loopback ones alone when it
    is not given or answers None), only when a registry it could name is read."""
    clients = _Clients(timeout, insecure)
    results: list[tuple[list[Entry], list[str]]] = []
    try:
        with ThreadPoolExecutor(_WORKERS, thread_name_prefix="dockext-registry") as pool, \
                ThreadPoolExecutor(max(1, min(4, len(settings.sources))), thread_name_prefix="dockext-source") as per:
            futures: list[Future[tuple[list[Entry], list[str]]]] = [
                per.submit(_scan, source, clients, pool) for source in settings.sources
            ]
            results = [f.result() for f in futures]
    finally:
        clients.close()
    return _merge(settings.sources, results)


def _merge(sources: Iterable[Source], results: list[tuple[list[Entry], list[str]]]) -> Catalog:
    seen: set[str] = set()
    entries: list[Entry] = []
    errors: list[tuple[str, str]] = []
    for source, (found, problems) in zip(sources, results, strict=True):
        for entry in found:
            if entry.image not in seen:
                seen.add(entry.image)
                entries.append(entry)
        errors.extend((source.label, problem) for problem in problems)
    entries.sort(key=lambda e: (e.title.casefold(), e.image))
    return Catalog(entries=entries, errors=errors)
