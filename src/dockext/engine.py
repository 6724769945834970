"""Adapter for the Docker Engine API (through the docker SDK). Every engine error is translated here."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import docker
import docker.errors
import requests.exceptions

from . import archive
from .errors import DockextError, EngineError, EngineUnavailable, ImageNotFound
from .model import ImageRef

__all__ = ["Engine", "ImageFiles", "PullEvent"]

PullEvent = dict[str, Any]
COPY_LABEL = "dockext.copy"


def _engine_host() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


class Engine:
    """One connection to the engine dockext manages (``$DOCKER_HOST`` or the default unix socket)."""

    def __init__(self, host: str | None = None) -> None:
        self.host = host or _engine_host()
        self._client: docker.DockerClient | None = None

    # -- connection ----------------------------------------------------------------------------------
    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            try:
                self._client = docker.DockerClient(base_url=self.host, version="auto", timeout=300)
            except docker.errors.DockerException as exc:
                raise self._unavailable(exc) from None
        return self._client

    def _unavailable(self, exc: BaseException) -> EngineUnavailable:
        return EngineUnavailable(
            f"cannot reach the Docker engine at {self.host}: {_short(exc)}",
            hint="Is dockerd running, and may this user use it (member of the 'docker' group)? "
            "Set DOCKER_HOST to use another engine.",
        )

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except DockextError:
            raise
        except (requests.exceptions.ConnectionError, ConnectionError) as exc:
            raise self._unavailable(exc) from None
        except docker.errors.DockerException as exc:
            if "Error while fetching server API version" in str(exc) or "Connection aborted" in str(exc):
                raise self._unavailable(exc) from None
            raise EngineError(f"{doing}: {_short(exc)}") from None

    def ping(self) -> None:
        with self._errors("ping the engine"):
            self.client.ping()

    @property
    def socket_path(self) -> str:
        """The engine's unix socket on the engine's host: what ``/var/run/docker.sock.raw`` maps to."""
        parsed = urlparse(self.host)
        if parsed.scheme == "unix" and parsed.path:
            return parsed.path
        return "/var/run/docker.sock"

    # -- images --------------------------------------------------------------------------------------
    def find_image(self, ref: str) -> dict[str, Any] | None:
        with self._errors(f"inspect image {ref}"):
            try:
                return dict(self.client.api.inspect_image(ref))  # type: ignore[no-untyped-call]
            except docker.errors.ImageNotFound:
                return None

    def pull(self, ref: ImageRef, on_event: Callable[[PullEvent], None] | None = None) -> dict[str, Any]:
        repo = ref.name
        tag = ref.digest or ref.tag or "latest"
        with self._errors(f"pull {ref.pull_ref}"):
            try:
                for event in self.client.api.pull(repo, tag=tag, stream=True, decode=True):
                    if "error" in event:
                        raise ImageNotFound(
                            f"cannot pull {ref.pull_ref}: {event['error']}",
                            hint="Check the image name and tag, and that you are logged in to its registry.",
                        )
                    if on_event:
                        on_event(event)
            except (docker.errors.NotFound, docker.errors.APIError) as exc:
                raise ImageNotFound(
                    f"cannot pull {ref.pull_ref}: {_short(exc)}",
                    hint="Check the image name and tag, and that you are logged in to its registry.",
                ) from None
        found = self.find_image(ref.pull_ref)
        if found is None:
            raise ImageNotFound(f"image {ref.pull_ref} is not available after pulling it")
        return found

    @contextlib.contextmanager
    def image_files(self, image_id: str, owner: str) -> Iterator[ImageFiles]:
        """A never-started container of the image, to copy files out of; removed on exit.

        Images built ``FROM scratch`` have no shell and often no CMD: the container gets a dummy command,
        which is never run.
        """
        with self._errors("create a container to read the image"):
            ctr = self.client.api.create_container(
                image_id, command=["/dockext-copy-only"], labels={COPY_LABEL: owner}, network_disabled=True
            )
        try:
            yield ImageFiles(self, ctr["Id"])
        finally:
            with contextlib.suppress(docker.errors.DockerException, requests.exceptions.RequestException):
                self.client.api.remove_container(ctr["Id"], force=True)

    def gc_copy_containers(self, owner: str) -> None:
        """Remove copy containers left by a dockext process that was killed."""
        with self._errors("list containers"):
            for c in self.client.api.containers(all=True, filters={"label": f"{COPY_LABEL}={owner}"}):
                with contextlib.suppress(docker.errors.DockerException):
                    self.client.api.remove_container(c["Id"], force=True)

    # -- projects ------------------------------------------------------------------------------------
    def project_containers(self, project: str) -> list[dict[str, Any]]:
        with self._errors("list containers"):
            return list(
                self.client.api.containers(
                    all=True, filters={"label": f"com.docker.compose.project={project}"}
                )
            )

    def project_volumes(self, project: str) -> set[str]:
        with self._errors("list volumes"):
            found = self.client.api.volumes(filters={"label": f"com.docker.compose.project={project}"})
        return {v["Name"] for v in (found or {}).get("Volumes") or []}

    def remove_volumes(self, names: set[str]) -> None:
        for name in names:
            with contextlib.suppress(docker.errors.DockerException):
                self.client.api.remove_volume(name, force=True)

    def container_logs(self, container_id: str, tail: int = 20) -> str:
        with contextlib.suppress(docker.errors.DockerException, requests.exceptions.RequestException):
            raw = self.client.api.logs(container_id, tail=tail)
            return bytes(raw).decode(errors="replace")
        return ""


class ImageFiles:
    """Files of one image, read through a created (never started) container."""

    def __init__(self, engine: Engine, container_id: str) -> None:
        self.engine = engine
        self.container_id = container_id

    def _archive(self, path: str, what: str) -> tuple[Iterator[bytes], dict[str, Any]] | None:
        with self.engine._errors(f"read {what} from the image"):
            try:
                chunks, stat = self.engine.client.api.get_archive(self.container_id, path)
            except docker.errors.NotFound:
                return None
        return chunks, stat

    def read(self, path: str, what: str, limit: int = 4 << 20) -> bytes | None:
        """Content of one regular file (through the same checked extraction), or None if it does not exist."""
        with tempfile.TemporaryDirectory(prefix="dockext-read-") as tmp:
            dest = Path(tmp) / "file"
            if not self.copy_file(path, dest, what, executable_ok=False, limits=archive.Limits(max_file=limit)):
                return None
            return dest.read_bytes()

    def copy_tree(self, path: str, dest: Path, what: str) -> bool:
        got = self._archive(path, what)
        if got is None:
            return False
        chunks, _stat = got
        archive.extract_tree(chunks, dest, member=Path(path).name or "/", what=what)
        return True

    def copy_file(
        self, path: str, dest: Path, what: str, *, executable_ok: bool = True, limits: archive.Limits | None = None
    ) -> bool:
        got = self._archive(path, what)
        if got is None:
            return False
        chunks, _stat = got
        archive.extract_file(chunks, dest, what=what, executable_ok=executable_ok, limits=limits or archive.Limits())
        return True


def _short(exc: BaseException) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return str(text).strip().splitlines()[0][:500] if str(text).strip() else type(exc).__name__
