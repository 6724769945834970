"""OCI image layouts for the tests, made from `docker save` archives as the OCI image-layout spec describes
them (what `skopeo copy docker-archive:X oci:DIR:TAG` or `buildx -o type=oci` produce): ``oci-layout``,
``index.json`` and content-addressed ``blobs/sha256/<hex>``, layers gzip-compressed.

No tool that makes layouts can be installed here (no network), so this module writes them; it is kept apart
from dockext's reader (src/dockext/ocilayout.py) and goes the other way (docker-archive -> OCI).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def tar_of(files: dict[str, bytes]) -> bytes:
    """A tar of ``files`` (name -> content), in that order: regular files only."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Layout:
    """A layout being made in memory: blobs by digest, and the top-level index's descriptors."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: list[dict[str, Any]] = field(default_factory=list)

    def add(self, data: bytes, media_type: str, **extra: Any) -> dict[str, Any]:
        digest = digest_of(data)
        self.blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data), **extra}

    def index_json(self) -> bytes:
        return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.manifests}).encode()

    def files(self) -> dict[str, bytes]:
        out = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}', "index.json": self.index_json()}
        for digest, data in self.blobs.items():
            out["blobs/" + digest.replace(":", "/")] = data
        return out

    def write_dir(self, root: Path) -> Path:
        for name, data in self.files().items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        return root

    def write_tar(self, path: Path) -> Path:
        path.write_bytes(tar_of(dict(sorted(self.files().items()))))  # blobs first, as buildx writes them
        return path


def image_from_docker_archive(layout: Layout, saved: bytes) -> dict[str, Any]:
    """Add the (first) image of a `docker save` archive to ``layout``: its config and gzip-compressed layers
    as blobs, and its OCI manifest; returns the manifest's descriptor (not yet listed in the index)."""
    with tarfile.open(fileobj=io.BytesIO(saved)) as tar:
        def read(name: str) -> bytes:
            member = tar.extractfile(name)
            assert member is not None, name
            return member.read()

        [entry] = json.loads(read("manifest.json"))[:1]
        config = read(entry["Config"])
        layers = [gzip.compress(read(name), mtime=0) for name in entry["Layers"]]
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": layout.add(config, OCI_CONFIG),
        "layers": [layout.add(layer, OCI_LAYER_GZIP) for layer in layers],
    }
    platform = json.loads(config)
    return layout.add(
        json.dumps(manifest).encode(),
        OCI_MANIFEST,
        platform={"os": platform.get("os", "linux"), "architecture": platform.get("architecture", "amd64")},
    )


def other_platform_image(layout: Layout, architecture: str = "arm64") -> dict[str, Any]:
    """A small, complete image for another platform (a one-file layer), as a multi-platform layout holds."""
    layer_tar = io.BytesIO()
    with tarfile.open(fileobj=layer_tar, mode="w") as tar:
        info = tarfile.TarInfo("only-on-" + architecture)
        tar.addfile(info, io.BytesIO(b""))
    raw = layer_tar.getvalue()
    config = json.dumps({
        "architecture": architecture, "os": "linux",
        "config": {"Labels": {"org.opencontainers.image.title": "not this one"}},
        "rootfs": {"type": "layers", "diff_ids": [digest_of(raw)]},
    }).encode()
    manifest = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": layout.add(config, OCI_CONFIG),
        "layers": [layout.add(gzip.compress(raw, mtime=0), OCI_LAYER_GZIP)],
    }
    return layout.add(
        json.dumps(manifest).encode(), OCI_MANIFEST, platform={"os": "linux", "architecture": architecture}
    )


def attestation(layout: Layout, subject: dict[str, Any]) -> dict[str, Any]:
    """An attestation manifest as buildx adds to an index (platform unknown/unknown)."""
    statement = layout.add(b'{"_type": "https://in-toto.io/Statement/v0.1"}', "application/vnd.in-toto+json")
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": layout.add(b"{}", OCI_CONFIG), "layers": [statement]}
    return layout.add(
        json.dumps(manifest).encode(), OCI_MANIFEST,
        platform={"os": "unknown", "architecture": "unknown"},
        annotations={"vnd.docker.reference.type": "attestation-manifest",
                     "vnd.docker.reference.digest": subject["digest"]},
    )


def single(saved: bytes, name: str | None, key: str = "io.containerd.image.name") -> Layout:
    """The layout `skopeo copy docker-archive:FILE oci:DIR[:TAG]` makes: one manifest in the index."""
    layout = Layout()
    desc = image_from_docker_archive(layout, saved)
    if name is not None:
        desc["annotations"] = {key: name}
    layout.manifests.append(desc)
    return layout


def multi_platform(saved: bytes, name: str) -> Layout:
    """What `buildx build --platform linux/amd64,linux/arm64 -o type=oci` makes: a nested image index with a
    manifest per platform and an attestation, named on the top-level descriptor."""
    layout = Layout()
    here = image_from_docker_archive(layout, saved)
    there = other_platform_image(layout)
    nested = {"schemaVersion": 2, "mediaType": OCI_INDEX,
              "manifests": [there, here, attestation(layout, here)]}
    desc = layout.add(json.dumps(nested).encode(), OCI_INDEX,
                      annotations={"io.containerd.image.name": name,
                                   "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1]})
    layout.manifests.append(desc)
    return layout
