"""``dockext init DIR``: a new extension project, from the template shipped in ``templates/extension/``.

Docker Desktop's ``docker extension init`` generates a React + Go project that needs Node and Go toolchains
(in containers). dockext's template needs neither: the UI is plain HTML + an ES module using
``window.ddClient``, the backend a Python standard-library HTTP server on ``/run/guest-services/backend.sock``,
and the ``Dockerfile`` takes its base image as a build argument, so ``docker build .`` is the whole build.

Pure parts (values, defaults, :func:`render`) are separate from the one that writes (:func:`write_project`):
a new directory is filled under a temporary name next to it and renamed into place; an existing one (empty,
or any with ``force``) gets each file written to a temporary name and renamed over its target, through
directory descriptors opened without following links, so nothing outside DIR is ever written.
"""

from __future__ import annotations

import contextlib
import getpass
import html
import json
import os
import re
import secrets
import shutil
import stat
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Final

import click

from .errors import DockextError, InvalidImageReference
from .model import ImageRef

__all__ = [
    "API_VERSION_LABEL",
    "DEFAULT_BASE_IMAGE",
    "Project",
    "check_description",
    "check_name",
    "check_repository",
    "check_target",
    "default_description",
    "default_name",
    "default_repository",
    "existing_files",
    "placeholders",
    "project_values",
    "render",
    "template_files",
    "write_project",
]

#: The base image of the generated Dockerfile (``ARG BASE_IMAGE``): any image with ``python3`` on PATH.
DEFAULT_BASE_IMAGE: Final = "python:3.12-alpine"
#: ``com.docker.desktop.extension.api.version`` of the generated extension: what Docker Desktop's validator
#: suggests (reference §1.5); the template calls nothing newer than that.
API_VERSION_LABEL: Final = ">= 0.3.3"

_PLACEHOLDER: Final = re.compile(r"\{\{([a-z_]+)\}\}")
_SLUG_BAD: Final = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Project:
    """What the template is filled with (each already checked by the ``check_*`` functions)."""

    name: str
    description: str
    repository: str

    @property
    def vendor(self) -> str:
        """The publisher (``org.opencontainers.image.vendor``): the repository's namespace."""
        repository = ImageRef.parse(self.repository).repository
        return repository.split("/")[0]


# ----------------------------------------------------------------------------------------------------------
# Values: checks and defaults
# ----------------------------------------------------------------------------------------------------------


def _one_line(value: str, what: str, option: str) -> str:
    text = value.strip()
    if not text:
        raise DockextError(f"the {what} is empty", hint=f"Give one with {option}.")
    bad = next((ch for ch in text if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")), None)
    if bad is not None:
        raise DockextError(f"the {what} contains a control character or line break (U+{ord(bad):04X})",
                           hint=f"Give a single line of text with {option}.")
    return text


def check_name(value: str) -> str:
    """The extension's name: one line of text (its tab title and ``org.opencontainers.image.title``)."""
    return _one_line(value, "extension name", "--name")


def check_description(value: str) -> str:
    return _one_line(value, "description", "--description")


def check_repository(value: str) -> str:
    """An image repository without tag or digest, e.g. ``acme/my-extension`` (InvalidImageReference if not)."""
    text = value.strip()
    if text != text.lower():  # (parse() would read an upper-case first component as a registry host)
        raise InvalidImageReference(f"the repository {json.dumps(text)} is not lower case",
                                    hint=f"Repository names are lower case: {text.lower()}")
    try:
        ref = ImageRef.parse(text)
    except InvalidImageReference as exc:
        raise InvalidImageReference(exc.message, hint="Give NAMESPACE/REPOSITORY, e.g. acme/my-extension.") from None
    if ref.tag is not None or ref.digest is not None:
        raise InvalidImageReference(
            f"the repository {json.dumps(text)} has a tag or digest",
            hint=f"Give the repository alone ({ref.name}): the Makefile's TAG variable sets the tag.",
        )
    return ref.name


def _slug(text: str) -> str:
    """A valid repository path component made of ``text``: lower case, runs of other characters as ``-``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _SLUG_BAD.sub("-", ascii_text.lower()).strip("-")


def _dir_name(directory: Path) -> str:
    return Path(os.path.abspath(directory)).name


def default_name(directory: Path) -> str:
    """``my-extension`` -> ``My Extension``."""
    words = [w for w in re.split(r"[\s._-]+", _dir_name(directory)) if w]
    name = " ".join(w[:1].upper() + w[1:] for w in words)
    try:
        return check_name(name)
    except DockextError:
        return "My Extension"


def default_description(name: str) -> str:
    return f"{name}: a Docker extension."


def default_repository(directory: Path) -> str:
    """``<login name>/<directory name>``, both made valid repository path components."""
    try:
        user = _slug(getpass.getuser())
    except (KeyError, OSError):  # no login name, no passwd entry
        user = ""
    repository = f"{user or 'my-namespace'}/{_slug(_dir_name(directory)) or 'my-extension'}"
    try:
        return check_repository(repository)
    except DockextError:
        return "my-namespace/my-extension"


def _ask(text: str, default: str, check: Callable[[str], str]) -> str:
    def proc(value: str) -> str:
        try:
            return check(value)
        except DockextError as exc:  # click shows it and asks again
            raise click.UsageError(exc.message + (f" ({exc.hint})" if exc.hint else "")) from None

    return str(click.prompt(text, default=default, value_proc=proc))


def project_values(
    directory: Path, *, name: str | None, description: str | None, repository: str | None, interactive: bool
) -> Project:
    """The values given, checked; those missing asked for (``interactive``, as Docker Desktop's ``init`` does)
    or derived from the directory's name."""
    name = check_name(name) if name is not None else None
    description = check_description(description) if description is not None else None
    repository = check_repository(repository) if repository is not None else None
    if name is None:
        name = _ask("Name", default_name(directory), check_name) if interactive else default_name(directory)
    if description is None:
        fallback = default_description(name)
        description = _ask("Description", fallback, check_description) if interactive else fallback
    if repository is None:
        fallback = default_repository(directory)
        repository = (_ask("Hub repository (eg. namespace/repository on hub)", fallback, check_repository)
                      if interactive else fallback)
    return Project(name=name, description=description, repository=repository)


# ----------------------------------------------------------------------------------------------------------
# Rendering (pure)
# ----------------------------------------------------------------------------------------------------------


def _label(text: str) -> str:
    """Text for a double-quoted Dockerfile LABEL value: ``\\``, ``"`` and ``$`` (variable expansion) escaped."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")


def placeholders(project: Project) -> dict[str, str]:
    """Each ``{{key}}`` of the template and its text, escaped for the file kind it appears in."""
    name_html, description_html = html.escape(project.name), html.escape(project.description)
    return {
        "name": project.name,
        "description": project.description,
        "repository": project.repository,
        "base_image": DEFAULT_BASE_IMAGE,
        "api_version": API_VERSION_LABEL,
        "name_json": json.dumps(project.name),
        "name_html": name_html,
        "description_html": description_html,
        "name_label": _label(project.name),
        "description_label": _label(project.description),
        "vendor_label": _label(project.vendor),
        "detailed_description_label": _label(f"<h1>{name_html}</h1><p>{description_html}</p>"),
    }


def _template_root() -> Traversable:
    return resources.files("dockext") / "templates" / "extension"


def template_files() -> dict[str, bytes]:
    """The template, ``{"ui/app.js": content, ...}`` (caches and hidden files left out)."""
    found: dict[str, bytes] = {}

    def walk(node: Traversable, prefix: str) -> None:
        for child in node.iterdir():
            if child.name.startswith(".") or child.name == "__pycache__" or child.name.endswith(".pyc"):
                continue
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            else:
                found[prefix + child.name] = child.read_bytes()

    walk(_template_root(), "")
    return dict(sorted(found.items()))


def render(project: Project, template: Mapping[str, bytes] | None = None) -> dict[str, bytes]:
    """The project's files: the template with every ``{{key}}`` replaced (an unknown key is a template bug)."""
    values = placeholders(project)

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"dockext's extension template uses an unknown placeholder {{{{{key}}}}}")
        return values[key]

    files = template_files() if template is None else template
    return {path: _PLACEHOLDER.sub(fill, data.decode()).encode() for path, data in files.items()}


# ----------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------


def _absolute(directory: Path) -> Path:
    return Path(os.path.abspath(directory))


def check_target(directory: Path, *, force: bool) -> None:
    """Refuse a DIR that is not a directory, or one that is not empty (unless ``force``)."""
    target = _absolute(directory)
    try:
        st = target.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise DockextError(f"cannot use {directory}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise DockextError(f"{directory} exists and is not a directory",
                           hint="Give the path of a new or empty directory.")
    try:
        entries = os.listdir(target)
    except OSError as exc:
        raise DockextError(f"cannot read {directory}: {exc.strerror}") from None
    if entries and not force:
        raise DockextError(
            f"{directory} is not empty ({len(entries)} entries)",
            hint="Give a new or empty directory, or use --force to write the template's files into it (files of "
            "the same names are replaced, the others are left alone).",
        )


def _conflicts(root: Path, files: Mapping[str, bytes]) -> list[str]:
    """Paths where a template file cannot go: a link or a file where a directory is needed, a directory where
    a file goes."""
    found: set[str] = set()
    for rel in files:
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            where = "/".join(parts[:depth])
            try:
                mode = os.lstat(root / where).st_mode
            except FileNotFoundError:
                break
            if not stat.S_ISDIR(mode):
                found.add(f"{where} (a directory is needed, and it is {'a link' if stat.S_ISLNK(mode) else 'a file'})")
                break
        else:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISDIR(os.lstat(root / rel).st_mode):
                    found.add(f"{rel} (a file is needed, and it is a directory)")
    return sorted(found)


def existing_files(directory: Path, files: Mapping[str, bytes]) -> list[str]:
    """The files of ``files`` that are already in ``directory`` (which a forced init replaces)."""
    root = _absolute(directory)
    return [rel for rel in files if os.path.lexists(root / rel)]


@contextlib.contextmanager
def _dir_fds(root: Path) -> Iterator[dict[str, int]]:
    fds = {"": os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)}
    try:
        yield fds
    finally:
        for fd in fds.values():
            os.close(fd)


def _subdir(fds: dict[str, int], rel_dir: str) -> int:
    """A descriptor of ``rel_dir`` (created if missing), reached without following any link."""
    if rel_dir in fds:
        return fds[rel_dir]
    parent, _, name = rel_dir.rpartition("/")
    parent_fd = _subdir(fds, parent)
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o777, dir_fd=parent_fd)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
    except OSError as exc:
        raise DockextError(f"cannot write into {rel_dir}: it is not a directory ({exc.strerror})") from None
    fds[rel_dir] = fd
    return fd


def _write_file(dir_fd: int, name: str, data: bytes, shown: str) -> None:
    tmp = f".{name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        if isinstance(exc, OSError):
            raise DockextError(f"cannot write {shown}: {exc.strerror}") from None
        raise


def _write_tree(root: Path, files: Mapping[str, bytes]) -> None:
    with _dir_fds(root) as fds:
        for rel, data in files.items():
            rel_dir, _, name = rel.rpartition("/")
            _write_file(_subdir(fds, rel_dir), name, data, rel)


def write_project(directory: Path, files: Mapping[str, bytes], *, force: bool = False) -> None:
    """Write ``files`` (relative paths with ``/``) into ``directory``, never outside it.

    A new directory (parents created) appears whole: it is filled under a temporary name beside it, then
    renamed. An existing one must be empty unless ``force``; each file is then written to a temporary name
    in its directory and renamed over its target (a link there is replaced, not followed)."""
    check_target(directory, force=force)
    target = _absolute(directory)
    if not target.exists():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.parent / f".{target.name}.dockext-init-{secrets.token_hex(4)}"
            os.mkdir(tmp, 0o777)
        except OSError as exc:
            raise DockextError(f"cannot create {directory}: {exc.strerror}") from None
        try:
            _write_tree(tmp, files)
            try:
                os.rename(tmp, target)
            except OSError as exc:
                raise DockextError(f"cannot create {directory}: {exc.strerror}") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return
    conflicts = _conflicts(target, files)
    if conflicts:
        raise DockextError(f"cannot write the template into {directory}: " + "; ".join(conflicts),
                           hint="Move these out of the way, or choose another directory.")
    _write_tree(target, files)
