"""The images in a ``docker save`` file or an OCI layout (directory or tar), and their labels, read without an
engine: what a Marketplace folder source shows before anything is loaded.

Files are attacker data, read through :mod:`.ocilayout`'s readers (regular members by name only, no link
followed, never waiting on a FIFO, extended headers and member counts capped, JSON documents at most 4 MiB, OCI
blobs checked against their digests). A ``docker save`` file names its images in ``manifest.json``
(``RepoTags``, ``Config``); an OCI layout in its index's annotations (only named images are listed: a
Marketplace entry needs a name). At most :data:`MAX_IMAGES` per file, each config read once, and only the
Marketplace's labels kept (bounded), with the config's digest: the image ID the engine gives it once loaded,
to check that what is installed is what was read.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform as platform_
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidImageReference
from .model import ImageRef
from .ocilayout import HINT, Layout, LayoutError, config_labels, is_layout_tar, labels_of, open_layout, open_tar
from .ocilayout import images as layout_images

__all__ = ["READER", "SUFFIXES", "SavedImage", "host_platform", "is_candidate", "read"]

SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.bz2")
MAX_IMAGES = 50  # images listed from one file
READER = 1  # bump when what read() gives for the same bytes changes: what was remembered of files is read again


MAX_LABELS = 64  # labels kept per image: the Marketplace's own (com.docker.*, org.opencontainers.*)
MAX_LABEL = 64 << 10  # characters kept of one label


@dataclass(frozen=True)
class SavedImage:
    name: str  # repository:tag, as the file names it
    labels: dict[str, str]  # the Marketplace's labels only, bounded
    image_id: str  # sha256 of its config: the ID the engine gives it once loaded

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "labels": self.labels, "image_id": self.image_id}

    @classmethod
    def from_json(cls, data: object) -> SavedImage:
        """The inverse of :meth:`to_json`; ValueError for anything else."""
        if not isinstance(data, dict):
            raise ValueError("not an object")
        name, labels, image_id = data.get("name"), data.get("labels"), data.get("image_id")
        if not (isinstance(name, str) and isinstance(image_id, str) and isinstance(labels, dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())):
            raise ValueError("not a saved image")
        return cls(name, dict(labels), image_id)


def _kept(labels: dict[str, str]) -> dict[str, str]:
    wanted = [(k, v) for k, v in labels.items() if k.startswith(("com.docker.", "org.opencontainers."))]
    return {k: v[:MAX_LABEL] for k, v in wanted[:MAX_LABELS]}


def host_platform() -> str:
    """This machine's platform as an image index names it (``linux/amd64``): the platform a card is read for
    (the install itself uses the engine's)."""
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm"}.get(
        platform_.machine().lower(), platform_.machine().lower()
    )
    return f"linux/{arch}"


def is_candidate(path: Path) -> bool:
    """A file or directory a folder source looks into: a regular file named like a tar, or a directory holding
    oci-layout; never a link (a folder's entries are its own). Raises OSError when it cannot be looked at."""
    mode = os.lstat(path).st_mode
    if stat.S_ISDIR(mode):
        return (path / "oci-layout").is_file()
    return stat.S_ISREG(mode) and path.name.lower().endswith(SUFFIXES)


def read(path: Path, what: str, platform: str | None = None) -> list[SavedImage]:
    """The named images in the file or layout at ``path``, with their labels."""
    layout = open_layout(path, what) if path.is_dir() else open_tar(path, what)
    try:
        if path.is_dir() or is_layout_tar(set(layout.names())):
            if not path.is_dir():
                layout.close()
                layout = open_layout(path, what)
            named = [i for i in layout_images(layout, platform or host_platform()) if i.name is not None]
            out = []
            for image in named[:MAX_IMAGES]:
                assert image.name is not None
                config, labels = labels_of(layout, image)
                out.append(SavedImage(image.name, _kept(labels), config))
            return out
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
    configs: dict[str, tuple[str, dict[str, str]]] = {}  # each config read once, however many entries name it
    for entry in entries[:MAX_IMAGES]:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            continue
        listed = entry.get("RepoTags")  # a list of names; anything else names nothing (a string is not iterated)
        tags = [t for t in listed if isinstance(t, str)] if isinstance(listed, list) else []
        names = []
        for tag in tags:
            try:
                ImageRef.parse(tag)
            except InvalidImageReference:
                continue
            names.append(tag)
        if not names:
            continue  # saved by ID: not installable by name
        where = str(entry["Config"]).removeprefix("./")
        if where not in configs:
            raw = layout.read(where)
            try:
                config = json.loads(raw)
            except (ValueError, RecursionError) as exc:
                raise LayoutError(f"{what}: {where} is not valid JSON ({exc})", hint=HINT) from None
            configs[where] = ("sha256:" + hashlib.sha256(raw).hexdigest(), _kept(config_labels(config)))
        image_id, labels = configs[where]
        out.extend(SavedImage(name, labels, image_id) for name in names)
    return out[:MAX_IMAGES]
