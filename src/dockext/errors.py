"""The one error hierarchy of dockext.

Every failure a user can act on is a :class:`DockextError`. Adapters (engine, compose, file system,
HTTP) translate what they catch into one of these at their boundary; the CLI prints ``Error: <message>``
(plus the hint) and exits 1, the server answers with ``{"error": {"type", "message"}}``.
"""

from __future__ import annotations


def reason(exc: BaseException) -> str:
    """What ``exc`` says, for a person: a :class:`DockextError`'s message, an interrupt's signal, or the text
    (else the name) of anything else."""
    if isinstance(exc, DockextError):
        return exc.message
    if isinstance(exc, KeyboardInterrupt):
        return f"stopped by {exc}" if str(exc).startswith("SIG") else "interrupted"
    return str(exc) or type(exc).__name__


class DockextError(Exception):
    """Base class: ``message`` is for a person; ``hint`` says what to do about it."""

    exit_code = 1
    http_status = 400

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n{self.hint}"

    @property
    def type(self) -> str:
        return type(self).__name__


class InvalidToken(DockextError):
    """``DOCKEXT_TOKEN`` is too short to stand for a password, or has characters a URL would change."""

    exit_code = 2


class InvalidImageReference(DockextError):
    """The IMAGE[:TAG] argument cannot be parsed as an image reference."""


class MetadataError(DockextError):
    """``metadata.json`` or an image label is missing or wrong. ``field`` names it (e.g. ``ui.dashboard-tab.root``)."""

    def __init__(self, field: str, problem: str, *, hint: str | None = None) -> None:
        super().__init__(f"invalid extension metadata: {field}: {problem}", hint=hint)
        self.field = field
        self.problem = problem


class UnsafeArchive(DockextError):
    """A file tree copied out of an image tries to leave its root, or breaks a size limit."""


class EngineUnavailable(DockextError):
    """The Docker engine cannot be reached."""

    http_status = 503


class ImageNotFound(DockextError):
    """The image is neither local nor pullable."""

    http_status = 404


class EngineError(DockextError):
    """The engine refused an operation (other than the cases above)."""

    http_status = 502


class OtherEngine(DockextError):
    """An extension's backend is on another engine than the one dockext reaches now (``DOCKER_HOST`` or the
    docker context changed since it was installed)."""

    http_status = 409


class ComposeError(DockextError):
    """``docker compose`` failed (the message carries its output)."""

    http_status = 502


class BackendNotReady(DockextError):
    """The backend did not expose its socket in time, or it cannot be reached."""

    http_status = 502


class WebRequestError(DockextError):
    """A cross-origin web request of an extension UI that dockext could not make for it (``web`` permission)."""

    http_status = 502


class NotInstalled(DockextError):
    http_status = 404


class AlreadyInstalled(DockextError):
    http_status = 409


class UpdateFailed(DockextError):
    """An update did not complete; the message says whether the previous version was restored."""

    http_status = 502


class Busy(DockextError):
    """Another dockext process holds the lock for this operation."""

    http_status = 409


class ExecRefused(DockextError):
    """An exec request from an extension was refused by policy before anything ran."""

    http_status = 403


class PermissionDenied(ExecRefused):
    """The user denied this extension a permission (``dockext permissions``); a refusal before anything ran."""

    http_status = 403


class StateError(DockextError):
    """dockext's own state on disk is unreadable or from a newer version."""


class StorageError(DockextError):
    """dockext could not write its files (a full disk, a read-only or unwritable home); nothing was changed."""

    http_status = 507


class RegistryError(DockextError):
    """A registry could not be reached or answered with an error; the message names the registry and what failed."""

    http_status = 502


class InvalidSource(DockextError):
    """A marketplace source (``REGISTRY[/NAMESPACE]`` or an extensions.txt) is malformed or already added."""


class SourceNotFound(DockextError):
    """No marketplace source has that name."""

    http_status = 404


class NotListed(DockextError):
    """Only listed extensions may be installed (``dockext marketplace only-listed on``), and this one is not."""

    http_status = 403
