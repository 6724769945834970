"""The images in a ``docker save`` file or an OCI layout (directory or tar), and their labels, read without an
engine: what a Marketplace folder source shows before anything is loaded.

Files are attacker data, read through :mod:`.ocilayout`'s readers (regular members by name only, extended
headers and member counts capped, JSON documents at most 4 MiB, OCI blobs checked against their digests). A
``docker save`` file names its images in ``manifest.json`` (``RepoTags``, ``Config``); an OCI layout in its
index's annotations (only named images are listed: a Marketplace entry needs a name).
"""

from __future__ import annotations

import json
import platform as platform_
from dataclasses import dataclass
from pathlib import Path

from .errors import DockextError, InvalidImageReference
from .model import ImageRef
from .ocilayout import HINT, Layout, LayoutError, config_labels, is_layout_tar, labels_of, open_layout, open_tar
from .ocilayout import images as layout_images

__all__ = ["SUFFIXES", "SavedImage", "host_platform", "is_candidate", "read"]

SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.bz2")
MAX_IMAGES = 50  # images listed from one file


@dataclass(frozen=True)
class SavedImage:
    name: str  # repository:tag, as the file names it
    labels: dict[str, str]


def host_platform() -> str:
    """This machine's platform as an image index names it (``linux/amd64``): the platform a card is read for
    (the install itself uses the engine's)."""
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm"}.get(
        platform_.machine().lower(), platform_.machine().lower()
    )
    return f"linux/{arch}"


def is_candidate(path: Path) -> bool:
    """A file or directory a folder source looks into: a tar by its name, or a directory holding oci-layout."""
    if path.is_dir():
        return (path / "oci-layout").is_file()
    return path.is_file() and path.name.lower().endswith(SUFFIXES)


def read(path: Path, what: str, platform: str | None = None) -> list[SavedImage]:
    """The named images in the file or layout at ``path``, with their labels."""
    layout = open_layout(path, what) if path.is_dir() else open_tar(path, what)
    try:
        if path.is_dir() or is_layout_tar(set(layout.names())):
            if not path.is_dir():
                layout.close()
                layout = open_layout(path, what)
            found = layout_images(layout, platform or host_platform())
            return [SavedImage(i.name, labels_of(layout, i)) for i in found if i.name is not None][:MAX_IMAGES]
        return _docker_save(layout, what)
    finally:
        layout.close()


def _docker_save(layout: Layout, what: str) -> list[SavedImage]:
    try:
        entries = json.loads(layout.read("manifest.json"))
    except LayoutError:
        raise
    except (ValueError, RecursionError) as exc:
        raise LayoutError(f"{what}: manifest.json is not valid JSON ({exc})", hint=HINT) from None
    if not isinstance(entries, list):
        raise LayoutError(f"{what}: manifest.json is not a list of images", hint=HINT)
    out: list[SavedImage] = []
    for entry in entries[:MAX_IMAGES]:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            continue
        tags = [t for t in entry.get("RepoTags") or [] if isinstance(t, str)]
        names = []
        for tag in tags:
            try:
                ImageRef.parse(tag)
            except InvalidImageReference:
                continue
            names.append(tag)
        if not names:
            continue  # saved by ID: not installable by name
        try:
            config = json.loads(layout.read(str(entry["Config"]).removeprefix("./")))
        except DockextError:
            raise
        except (ValueError, RecursionError) as exc:
            raise LayoutError(f"{what}: {entry['Config']} is not valid JSON ({exc})", hint=HINT) from None
        out.extend(SavedImage(name, config_labels(config)) for name in names)
    return out
