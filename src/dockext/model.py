"""Image references, extension identity, ``metadata.json`` and image-label parsing (pure, no I/O).

Everything here reads attacker-controlled data (a published image's ``metadata.json`` and labels), so the
parsers are strict about what dockext acts on (paths, socket and binary names) and tolerant about everything
else: unknown and legacy fields are ignored, exactly as Docker Desktop does (reference §1.3, §2).
"""

from __future__ import annotations

import ipaddress
import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

from dockext.errors import InvalidImageReference, MetadataError

__all__ = [
    "HOST_OSES",
    "DashboardTab",
    "HostBinary",
    "ImagePath",
    "ImageRef",
    "Labels",
    "Metadata",
    "MetadataCheck",
    "VmSpec",
    "canonical_ref",
    "check_metadata",
    "compose_project",
    "extension_key",
    "is_loopback",
    "origin_slug",
    "parse_labels",
    "parse_metadata",
]

# ----------------------------------------------------------------------------------------------------------
# Image references
# ----------------------------------------------------------------------------------------------------------

# The grammar of github.com/distribution/reference (what the docker CLI and the Engine accept).
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE: Final = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
)
_PATH_COMPONENT_RE: Final = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST_RE: Final = re.compile(r"([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*):([0-9a-fA-F]{32,})")
_DIGEST_HEX_LEN: Final = {"sha256": 64, "sha384": 96, "sha512": 128}
_NAME_MAX_LEN: Final = 255  # distribution/reference NameTotalLengthMax
#: an image ID, full (``sha256:<64 hex>``) or bare (64 hex), as `docker images --no-trunc` and `docker inspect` show it
_IMAGE_ID_RE: Final = re.compile(r"(?:sha256:)?[0-9a-fA-F]{64}")
_REF_HINT: Final = 'expected IMAGE[:TAG] or IMAGE@DIGEST, e.g. "docker/volumes-backup-extension:1.0.0"'


def _q(text: str) -> str:
    """Quote untrusted text for an error message: control characters and quotes escaped, so a hostile
    value cannot forge terminal escapes or extra lines in what the CLI prints."""
    quoted = json.dumps(text, ensure_ascii=False)
    try:
        quoted.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        quoted = json.dumps(text)
    return quoted


def _bad_ref(text: str, problem: str) -> InvalidImageReference:
    return InvalidImageReference(f"invalid image reference {_q(text)}: {problem}", hint=_REF_HINT)


_DOCKER_HUB = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (``name``, ``name:port``, ``[v6]:port``, a bare IPv6 address) names this machine's loopback:
    ``localhost`` or an address of 127.0.0.0/8 or ::1, as the Docker engine reads a registry's or an engine's
    host. Not a guard: the legacy spellings a connection also takes (``127.1``) are for the web-request guard
    (server/webfetch.py)."""
    if not host:
        return False
    if host.startswith("["):
        name = host[1:].split("]", 1)[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ImageRef:
    """A parsed ``[REGISTRY/]REPOSITORY[:TAG][@DIGEST]``.

    Nothing is normalised away: ``x`` stays ``x`` (no ``library/``), ``docker.io/acme/x`` keeps its
    registry. The extension ID (:attr:`name`) is what the user wrote without tag or digest, as in
    ``docker extension ls``.
    """

    registry: str | None
    repository: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """Parse with the grammar of ``github.com/distribution/reference``.

        Raises :class:`InvalidImageReference` naming the problem (empty, whitespace, upper case in the
        repository, bad tag or digest, too long, an image ID rather than a name...).
        """
        if not isinstance(text, str):
            raise InvalidImageReference(
                f"invalid image reference: expected a string, got {type(text).__name__}"
            )
        if not text:
            raise _bad_ref(text, "it is empty")
        if any(ch.isspace() for ch in text):
            raise _bad_ref(text, "it contains whitespace")
        if any(unicodedata.category(ch) == "Cc" for ch in text):
            raise _bad_ref(text, "it contains control characters")
        if _IMAGE_ID_RE.fullmatch(text):
            # distribution/reference refuses 64 hex digits as a name; "sha256:<hex>" would parse as the image
            # "sha256" tagged <hex>: an extension called sha256, whose version is the ID
            raise InvalidImageReference(
                f"{_q(text)} is an image ID, not an image name",
                hint="An extension is installed by name: give IMAGE[:TAG] (as `docker image ls` shows it), or "
                "`docker tag` the image with a name first.",
            )

        rest = text
        digest: str | None = None
        if "@" in rest:
            rest, _, digest = rest.partition("@")
            if "@" in digest:
                raise _bad_ref(text, 'it contains more than one "@"')
            match = _DIGEST_RE.fullmatch(digest)
            if match is None:
                raise _bad_ref(
                    text, f"digest {_q(digest)} is not ALGORITHM:HEX (e.g. sha256:<64 hex digits>)"
                )
            algorithm, hexpart = match.groups()
            expected = _DIGEST_HEX_LEN.get(algorithm)
            if expected is not None and (len(hexpart) != expected or hexpart != hexpart.lower()):
                raise _bad_ref(text, f"a {algorithm} digest needs {expected} lower-case hex digits")

        tag: str | None = None
        colon = rest.rfind(":")
        if colon > rest.rfind("/"):
            rest, tag = rest[:colon], rest[colon + 1 :]
            if not tag:
                raise _bad_ref(text, 'the tag after ":" is empty')
            if _TAG_RE.fullmatch(tag) is None:
                raise _bad_ref(
                    text,
                    f"tag {_q(tag)} is not valid (up to 128 characters among letters, digits, '_', '.' "
                    "and '-', not starting with '.' or '-')",
                )
        if not rest:
            raise _bad_ref(text, "the repository name is empty")
        if len(rest) > _NAME_MAX_LEN:
            raise _bad_ref(text, f"the name is longer than {_NAME_MAX_LEN} characters")

        registry: str | None = None
        first, slash, remainder = rest.partition("/")
        # Same rule as the docker CLI (splitDockerDomain): the first component is a registry when it looks
        # like a host name (a dot, a port, "localhost", or upper case, which a repository cannot have).
        if slash and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
            if _DOMAIN_RE.fullmatch(first) is None:
                raise _bad_ref(text, f"registry {_q(first)} is not a valid host[:port]")
            registry, rest = first, remainder
        if not rest:
            raise _bad_ref(text, "the repository name is empty")
        for component in rest.split("/"):
            if not component:
                raise _bad_ref(
                    text, 'the repository name has an empty path component ("//" or a "/" at an end)'
                )
            if component != component.lower():
                raise _bad_ref(text, "the repository name must be lower case")
            if _PATH_COMPONENT_RE.fullmatch(component) is None:
                raise _bad_ref(
                    text,
                    f"repository path component {_q(component)} is not valid (lower-case letters and digits, "
                    "separated by '.', '_', '__' or '-')",
                )
        if registry in _DOCKER_HUB:
            # Docker Hub spelled out: the same extension as the short name Docker Desktop uses as its ID
            registry = None
            if rest.startswith("library/") and rest.count("/") == 1:
                rest = rest.removeprefix("library/")
        return cls(registry=registry, repository=rest, tag=tag, digest=digest)

    @property
    def name(self) -> str:
        """The reference without tag or digest, e.g. ``127.0.0.1:5000/acme/my-ext``: the extension ID."""
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    @property
    def pull_ref(self) -> str:
        """What to pull: ``name:tag``, ``name@digest``, ``name:tag@digest``, or ``name:latest``."""
        ref = self.name
        if self.tag:
            ref += f":{self.tag}"
        if self.digest:
            ref += f"@{self.digest}"
        if not self.tag and not self.digest:
            ref += ":latest"
        return ref

    @property
    def version(self) -> str:
        """The tag, else the digest when only a digest is given, else ``latest``."""
        return self.tag or self.digest or "latest"


def canonical_ref(ref: str) -> str:
    """``ubuntu``, ``ubuntu:latest``, ``docker.io/library/ubuntu:latest``: one spelling, to compare names (the
    text itself when it is no valid reference)."""
    try:
        parsed = ImageRef.parse(ref)
    except InvalidImageReference:
        return ref
    name = parsed.name
    for prefix in ("docker.io/", "index.docker.io/"):
        name = name.removeprefix(prefix)
    name = name.removeprefix("library/")
    return f"{name}:{parsed.tag or 'latest'}" + (f"@{parsed.digest}" if parsed.digest else "")


def extension_key(ref: ImageRef) -> str:
    """Docker Desktop's directory / project key: ``docker/volumes-backup-extension`` ->
    ``docker_volumes-backup-extension``.

    Lower case, every character outside ``[a-z0-9_-]`` (``/``, ``.``, ``:``...) becomes ``_``. A leading
    ``_``/``-`` (only possible for an IPv6 registry ``[::1]``) is dropped, because Compose project names must
    start with a letter or digit. Distinct references can share a key (``a/b.c`` and ``a/b_c``), as in
    Docker Desktop; the installer must treat a key owned by another ID as taken.
    """
    key = re.sub(r"[^a-z0-9_-]", "_", ref.name.lower()).lstrip("_-")
    if not key:  # pragma: no cover - a parsed repository always has a letter or digit
        raise InvalidImageReference(f"cannot derive an extension key from {_q(ref.name)}")
    return key


def compose_project(key: str) -> str:
    """The Compose project of an extension's backend, as Docker Desktop names it."""
    return f"{key}-desktop-extension"


_DNS_LABEL_MAX: Final = 63


def origin_slug(key: str, suffix: str) -> str:
    """A DNS label for the extension's browser origin ``http://<slug>.localhost:<port>``.

    ``_`` becomes ``-``, runs of ``-`` collapse (labels with ``--`` in positions 3-4, like ``xn--``, mean
    punycode to browsers), and the key part is truncated so that ``<key>-<suffix>`` fits in 63 characters.
    ``suffix`` (6 random hex characters chosen at install) makes every install a fresh origin.
    """
    if not re.fullmatch(r"[a-z0-9]{1,32}", suffix):
        raise ValueError(f"origin suffix must be 1-32 lower-case letters or digits, got {suffix!r}")
    base = re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", key.lower())).strip("-")
    base = base[: _DNS_LABEL_MAX - 1 - len(suffix)].rstrip("-") or "ext"
    return f"{base}-{suffix}"


# ----------------------------------------------------------------------------------------------------------
# metadata.json
# ----------------------------------------------------------------------------------------------------------

HOST_OSES: Final = ("linux", "darwin", "windows")

# A backend binds "/run/guest-services/<socket>" inside its container; sun_path holds 108 bytes with the NUL,
# so a longer name could never be bound there.
_GUEST_SERVICES_DIR: Final = "/run/guest-services/"
_SOCKET_NAME_MAX: Final = 107 - len(_GUEST_SERVICES_DIR)
_FILE_NAME_MAX: Final = 255  # NAME_MAX, in UTF-8 bytes


@dataclass(frozen=True)
class DashboardTab:
    """``ui.dashboard-tab``: ``root`` is absolute in the image (``ui`` and ``/ui`` -> ``/ui``); ``src`` is a
    normalised path relative to it (``index.html``, ``sub/page.html``)."""

    title: str
    root: str
    src: str
    backend_socket: str | None


@dataclass(frozen=True)
class VmSpec:
    """``vm``: exactly one of ``image`` and ``composefile`` is set. When metadata.json gives both, ``image``
    wins and ``composefile`` is ``None`` (Rancher Desktop checks ``image`` first; Docker Desktop's choice is
    undocumented). ``composefile`` is an absolute in-image path; ``socket`` a plain file name."""

    image: str | None
    composefile: str | None
    socket: str | None


@dataclass(frozen=True)
class HostBinary:
    """One ``host.binaries[].<os>[].path``: copied flattened to ``<ext>/host/<name>`` (reference §6)."""

    path: str
    name: str


@dataclass(frozen=True)
class Metadata:
    """The parsed ``metadata.json``. ``raw`` is the whole decoded document (including ignored fields)."""

    icon: str | None
    tab: DashboardTab | None
    vm: VmSpec | None
    host_binaries: dict[str, tuple[HostBinary, ...]]
    raw: dict[str, Any]

    @property
    def socket(self) -> str | None:
        """The backend socket: ``vm.exposes.socket``, else the legacy ``ui.dashboard-tab.backend.socket``."""
        if self.vm is not None and self.vm.socket:
            return self.vm.socket
        return self.tab.backend_socket if self.tab is not None else None

    def binaries_for(self, os_name: str = "linux") -> tuple[HostBinary, ...]:
        """The binaries declared for one OS (``linux``, ``darwin``, ``windows``); empty when none."""
        return self.host_binaries.get(os_name, ())


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__  # pragma: no cover - json.loads gives nothing else


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MetadataError(field, f"must be an object, not {_type_name(value)}")
    return value


def _string(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise MetadataError(field, f"must be a string, not {_type_name(value)}")
    if not value.strip():
        raise MetadataError(field, "must not be empty")
    return value


def _path_parts(value: str, field: str) -> list[str]:
    """Split an in-image path, refusing what could make it mean something else: NUL (C strings stop there),
    backslash (a separator on Windows) and ``..`` (escaping the directory it names)."""
    if "\x00" in value:
        raise MetadataError(field, "contains a NUL character")
    if "\\" in value:
        raise MetadataError(field, "contains a backslash; use / to separate directories")
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise MetadataError(field, f'{_q(value)}: ".." is not allowed')
    return parts


def _image_path(value: Any, field: str, *, what: str = "a file") -> str:
    """An absolute, normalised path in the image. Relative paths are relative to ``/`` (reference §1.3)."""
    parts = _path_parts(_string(value, field), field)
    if not parts:
        raise MetadataError(field, f"{_q(value)} does not name {what} below /")
    return "/" + "/".join(parts)


def _file_name(value: str, field: str, *, max_bytes: int = _FILE_NAME_MAX) -> str:
    """A plain file name: no directory part, no control characters, fits NAME_MAX."""
    if value in (".", ".."):
        raise MetadataError(field, f"{_q(value)} is not a file name")
    if "/" in value or "\\" in value:
        raise MetadataError(field, f"{_q(value)} must be a plain file name, without / or \\")
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise MetadataError(field, f"{_q(value)} contains control characters")
    if len(value.encode("utf-8", "surrogatepass")) > max_bytes:
        raise MetadataError(field, f"{_q(value)} is longer than {max_bytes} bytes")
    return value


def _socket_name(value: Any, field: str) -> str:
    return _file_name(_string(value, field), field, max_bytes=_SOCKET_NAME_MAX)


_URL_SCHEME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def _parse_tab(value: Any) -> DashboardTab:
    field = "ui.dashboard-tab"
    tab = _object(value, field)
    for key in ("title", "root", "src"):
        if key not in tab:
            raise MetadataError(f"{field}.{key}", "is required")
    title = _string(tab["title"], f"{field}.title").strip()
    root = _image_path(tab["root"], f"{field}.root", what="a directory")
    src_value = _string(tab["src"], f"{field}.src")
    if _URL_SCHEME_RE.match(src_value):
        raise MetadataError(
            f"{field}.src", f"{_q(src_value)}: remote URLs are not supported, only a file under root"
        )
    src_parts = _path_parts(src_value, f"{field}.src")
    if not src_parts:
        raise MetadataError(f"{field}.src", f"{_q(src_value)} does not name a file under root")
    backend_socket: str | None = None
    if tab.get("backend") is not None:
        backend = _object(tab["backend"], f"{field}.backend")
        if backend.get("socket") is not None:  # legacy "host-socket" / "named-pipe" are ignored
            backend_socket = _socket_name(backend["socket"], f"{field}.backend.socket")
    return DashboardTab(title=title, root=root, src="/".join(src_parts), backend_socket=backend_socket)


def _parse_vm(value: Any) -> VmSpec:
    vm = _object(value, "vm")
    image = vm.get("image")
    composefile = vm.get("composefile")
    if image is None and composefile is None:
        raise MetadataError("vm", 'must declare "image" or "composefile"')
    if image is not None:
        image = _string(image, "vm.image")
    if composefile is not None:
        composefile = _image_path(composefile, "vm.composefile")
    if image is not None:
        composefile = None  # image wins, see VmSpec
    socket: str | None = None
    if vm.get("exposes") is not None:
        exposes = _object(vm["exposes"], "vm.exposes")
        if exposes.get("socket") is not None:  # legacy "host-socket" / "named-pipe" are ignored
            socket = _socket_name(exposes["socket"], "vm.exposes.socket")
    return VmSpec(image=image, composefile=composefile, socket=socket)


def _parse_host(value: Any) -> dict[str, tuple[HostBinary, ...]]:
    host = _object(value, "host")  # x-rd-install & co. are ignored
    binaries = host.get("binaries")
    if binaries is None:
        return {}
    if not isinstance(binaries, list):
        raise MetadataError("host.binaries", f"must be an array, not {_type_name(binaries)}")
    found: dict[str, list[HostBinary]] = {}
    where: dict[tuple[str, str], tuple[str, str]] = {}  # (os, name) -> (field, path) of the first one
    for i, element in enumerate(binaries):
        element = _object(element, f"host.binaries[{i}]")
        for os_name in HOST_OSES:  # other keys are ignored
            entries = element.get(os_name)
            if entries is None:
                continue
            os_field = f"host.binaries[{i}].{os_name}"
            if not isinstance(entries, list):
                raise MetadataError(os_field, f"must be an array, not {_type_name(entries)}")
            for j, entry in enumerate(entries):
                entry = _object(entry, f"{os_field}[{j}]")
                field = f"{os_field}[{j}].path"
                if "path" not in entry:
                    raise MetadataError(field, "is required")
                path = _image_path(entry["path"], field)
                name = _file_name(path.rsplit("/", 1)[1], field)
                first = where.get((os_name, name))
                if first is not None:
                    if first[1] == path:
                        continue  # the same file declared twice: harmless
                    raise MetadataError(
                        field, f"{_q(path)} has the same file name as {first[0]} ({_q(first[1])})"
                    )
                where[(os_name, name)] = (field, path)
                found.setdefault(os_name, []).append(HostBinary(path=path, name=name))
    return {os_name: tuple(items) for os_name, items in found.items()}


def parse_metadata(data: bytes) -> Metadata:
    """Parse and validate ``metadata.json``.

    Every problem raises :class:`MetadataError` naming the exact field (``ui.dashboard-tab.root``,
    ``host.binaries[0].linux[1].path``...). In-image paths refuse NUL, backslash and ``..``, and are
    normalised to absolute paths. An extension must provide something to run: a dashboard tab, a ``vm``, or
    at least one host binary (for any OS); ``"ui": {}`` alone is "no ui".
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MetadataError(
            "metadata.json",
            f"is not valid JSON: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
        ) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MetadataError(
            "metadata.json", f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise MetadataError("metadata.json", "is not valid JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise MetadataError("metadata.json", f"must be a JSON object, not {_type_name(doc)}")

    icon: str | None = None
    raw_icon = doc.get("icon")
    if raw_icon is not None and not (isinstance(raw_icon, str) and not raw_icon.strip()):
        icon = _image_path(raw_icon, "icon")

    tab: DashboardTab | None = None
    if doc.get("ui") is not None:
        ui = _object(doc["ui"], "ui")  # other extension points are ignored
        if ui.get("dashboard-tab") is not None:
            tab = _parse_tab(ui["dashboard-tab"])

    vm = _parse_vm(doc["vm"]) if doc.get("vm") is not None else None
    host_binaries = _parse_host(doc["host"]) if doc.get("host") is not None else {}

    if tab is None and vm is None and not host_binaries:
        raise MetadataError("metadata.json", "declares no ui, vm or host section")
    return Metadata(icon=icon, tab=tab, vm=vm, host_binaries=host_binaries, raw=doc)


# ----------------------------------------------------------------------------------------------------------
# Image labels
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Labels:
    """The extension's image labels (reference §2), parsed tolerantly: a missing, empty or malformed label is
    ``None`` / empty, never an error (official samples ship empty labels).

    URL fields hold only ``http``/``https`` URLs, because they get rendered as links. ``detailed_description``
    and ``changelog`` are the raw text/HTML of the label: render them as text or sanitise them first
    (Docker Desktop's CVE-2023-0625 was RCE through these two labels).
    """

    title: str | None
    description: str | None
    vendor: str | None
    api_version: str | None
    icon_url: str | None
    screenshots: tuple[dict[str, str], ...]  # {"alt", "url"}
    detailed_description: str | None
    publisher_url: str | None
    additional_urls: tuple[dict[str, str], ...]  # {"title", "url"}
    changelog: str | None
    account_info: str | None
    categories: tuple[str, ...]


def _http_url(value: object) -> str | None:
    """``value`` if it is an absolute http(s) URL (no ``javascript:``, ``file:``, ``data:``...), else None."""
    if not isinstance(value, str):
        return None
    url = value.strip()
    if not url or any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url


def _json_list(value: str | None) -> list[Any]:
    if value is None:
        return []
    try:
        doc = json.loads(value)
    except (ValueError, RecursionError):
        return []
    return doc if isinstance(doc, list) else []


def parse_labels(labels: Mapping[str, str] | None) -> Labels:
    """Read the extension labels, with the legacy fallbacks ``com.docker.desktop.plugin.api.version``,
    ``com.docker.desktop.plugin.icon`` and ``org.opencontainers.image.authors`` (for the vendor)."""
    source: Mapping[str, Any] = labels or {}

    def text(*names: str) -> str | None:
        for name in names:
            value: object = source.get(name)
            if isinstance(value, str) and value.strip():
                return value.strip()
        return None

    screenshots: list[dict[str, str]] = []
    for item in _json_list(text("com.docker.extension.screenshots")):
        if isinstance(item, dict) and (url := _http_url(item.get("url"))) is not None:
            alt = item.get("alt")
            screenshots.append({"alt": alt.strip() if isinstance(alt, str) else "", "url": url})

    additional_urls: list[dict[str, str]] = []
    for item in _json_list(text("com.docker.extension.additional-urls")):
        if isinstance(item, dict) and (url := _http_url(item.get("url"))) is not None:
            title = item.get("title")
            title = title.strip() if isinstance(title, str) else ""
            additional_urls.append({"title": title or url, "url": url})

    categories: list[str] = []
    for category in (text("com.docker.extension.categories") or "").split(","):
        category = category.strip()
        if category and category not in categories:
            categories.append(category)

    return Labels(
        title=text("org.opencontainers.image.title"),
        description=text("org.opencontainers.image.description"),
        vendor=text("org.opencontainers.image.vendor", "org.opencontainers.image.authors"),
        api_version=text("com.docker.desktop.extension.api.version", "com.docker.desktop.plugin.api.version"),
        icon_url=_http_url(text("com.docker.desktop.extension.icon"))
        or _http_url(text("com.docker.desktop.plugin.icon")),
        screenshots=tuple(screenshots),
        detailed_description=text("com.docker.extension.detailed-description"),
        publisher_url=_http_url(text("com.docker.extension.publisher-url")),
        additional_urls=tuple(additional_urls),
        changelog=text("com.docker.extension.changelog"),
        account_info=text("com.docker.extension.account-info"),
        categories=tuple(categories),
    )


# ----------------------------------------------------------------------------------------------------------
# metadata.json: every problem at once (for `dockext validate`)
# ----------------------------------------------------------------------------------------------------------

_T = TypeVar("_T")


@dataclass(frozen=True)
class ImagePath:
    """An in-image path that a valid field of ``metadata.json`` names: ``kind`` is ``"file"`` or ``"dir"``."""

    field: str
    path: str
    kind: str


@dataclass(frozen=True)
class MetadataCheck:
    """What :func:`check_metadata` found.

    ``problems`` holds every problem (empty exactly when :func:`parse_metadata` succeeds, and holding the
    error it raises otherwise); ``paths`` the in-image files and directories named by the fields that are
    valid (even when others are not); ``document`` the decoded JSON object, when it is one; ``metadata`` the
    parsed result when there is no problem.
    """

    problems: tuple[MetadataError, ...]
    paths: tuple[ImagePath, ...]
    document: dict[str, Any] | None
    metadata: Metadata | None


class _Problems:
    """Runs one field validator at a time, keeping its error instead of stopping at it."""

    def __init__(self) -> None:
        self.found: list[MetadataError] = []
        self.paths: list[ImagePath] = []

    def attempt(self, check: Callable[..., _T], *args: Any, **kwargs: Any) -> _T | None:
        try:
            return check(*args, **kwargs)
        except MetadataError as exc:
            self.found.append(exc)
            return None

    def add(self, field: str, problem: str) -> None:
        self.found.append(MetadataError(field, problem))


def check_metadata(data: bytes) -> MetadataCheck:
    """Check ``metadata.json`` like :func:`parse_metadata`, but collect every problem instead of the first.

    The rules are :func:`parse_metadata`'s own (the same field validators, the same messages); the fields are
    checked one by one, so that a broken ``host`` section does not hide a broken ``ui`` one.
    """
    try:
        parsed: Metadata | None = parse_metadata(data)
        first: MetadataError | None = None
    except MetadataError as exc:
        parsed, first = None, exc
    doc: Any = None
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict):
        assert first is not None  # parse_metadata refuses anything but a JSON object
        return MetadataCheck(problems=(first,), paths=(), document=None, metadata=None)

    p = _Problems()
    raw_icon = doc.get("icon")
    if raw_icon is not None and not (isinstance(raw_icon, str) and not raw_icon.strip()):
        icon = p.attempt(_image_path, raw_icon, "icon")
        if icon is not None:
            p.paths.append(ImagePath("icon", icon, "file"))
    declared = False
    if doc.get("ui") is not None:
        ui = p.attempt(_object, doc["ui"], "ui")
        if ui is not None and ui.get("dashboard-tab") is not None:
            declared = True
            _check_tab(ui["dashboard-tab"], p)
    if doc.get("vm") is not None:
        declared = True
        _check_vm(doc["vm"], p)
    if doc.get("host") is not None:
        declared = _check_host(doc["host"], p) or declared
    if not p.found and not declared:
        p.add("metadata.json", "declares no ui, vm or host section")
    problems = p.found
    if first is not None and not any(str(found) == str(first) for found in problems):
        problems.insert(0, first)  # cannot happen while these checks mirror parse_metadata; never hide it
    return MetadataCheck(
        problems=tuple(problems), paths=tuple(p.paths), document=doc, metadata=parsed if not problems else None
    )


def _check_tab(value: Any, p: _Problems) -> None:
    field = "ui.dashboard-tab"
    tab = p.attempt(_object, value, field)
    if tab is None:
        return
    for key in ("title", "root", "src"):
        if key not in tab:
            p.add(f"{field}.{key}", "is required")
    if "title" in tab:
        p.attempt(_string, tab["title"], f"{field}.title")
    root = p.attempt(_image_path, tab["root"], f"{field}.root", what="a directory") if "root" in tab else None
    src = p.attempt(_tab_src, tab["src"]) if "src" in tab else None
    if root is not None:
        p.paths.append(ImagePath(f"{field}.root", root, "dir"))
        if src is not None:
            p.paths.append(ImagePath(f"{field}.src", f"{root.rstrip('/')}/{src}", "file"))
    if tab.get("backend") is not None:
        backend = p.attempt(_object, tab["backend"], f"{field}.backend")
        if backend is not None and backend.get("socket") is not None:
            p.attempt(_socket_name, backend["socket"], f"{field}.backend.socket")


def _tab_src(value: Any) -> str:
    """``ui.dashboard-tab.src`` checked as :func:`_parse_tab` checks it."""
    field = "ui.dashboard-tab.src"
    src_value = _string(value, field)
    if _URL_SCHEME_RE.match(src_value):
        raise MetadataError(field, f"{_q(src_value)}: remote URLs are not supported, only a file under root")
    src_parts = _path_parts(src_value, field)
    if not src_parts:
        raise MetadataError(field, f"{_q(src_value)} does not name a file under root")
    return "/".join(src_parts)


def _check_vm(value: Any, p: _Problems) -> None:
    vm = p.attempt(_object, value, "vm")
    if vm is None:
        return
    image, composefile = vm.get("image"), vm.get("composefile")
    if image is None and composefile is None:
        p.add("vm", 'must declare "image" or "composefile"')
    if image is not None:
        p.attempt(_string, image, "vm.image")
    if composefile is not None:
        path = p.attempt(_image_path, composefile, "vm.composefile")
        if path is not None and image is None:  # image wins, see VmSpec
            p.paths.append(ImagePath("vm.composefile", path, "file"))
    if vm.get("exposes") is not None:
        exposes = p.attempt(_object, vm["exposes"], "vm.exposes")
        if exposes is not None and exposes.get("socket") is not None:
            p.attempt(_socket_name, exposes["socket"], "vm.exposes.socket")


def _check_host(value: Any, p: _Problems) -> bool:
    """Check ``host``; True when it declares at least one binary (valid or not) or is broken."""
    host = p.attempt(_object, value, "host")
    if host is None:
        return True
    binaries = host.get("binaries")
    if binaries is None:
        return False
    if not isinstance(binaries, list):
        p.add("host.binaries", f"must be an array, not {_type_name(binaries)}")
        return True
    declared = False
    where: dict[tuple[str, str], tuple[str, str]] = {}  # (os, name) -> (field, path) of the first one
    for i, item in enumerate(binaries):
        element = p.attempt(_object, item, f"host.binaries[{i}]")
        if element is None:
            declared = True
            continue
        for os_name in HOST_OSES:
            entries = element.get(os_name)
            if entries is None:
                continue
            os_field = f"host.binaries[{i}].{os_name}"
            if not isinstance(entries, list):
                declared = True
                p.add(os_field, f"must be an array, not {_type_name(entries)}")
                continue
            for j, raw_entry in enumerate(entries):
                declared = True
                field = f"{os_field}[{j}].path"
                entry = p.attempt(_object, raw_entry, f"{os_field}[{j}]")
                if entry is None:
                    continue
                if "path" not in entry:
                    p.add(field, "is required")
                    continue
                path = p.attempt(_image_path, entry["path"], field)
                name = p.attempt(_file_name, path.rsplit("/", 1)[1], field) if path is not None else None
                if path is None or name is None:
                    continue
                first = where.get((os_name, name))
                if first is not None:
                    if first[1] != path:
                        p.add(field, f"{_q(path)} has the same file name as {first[0]} ({_q(first[1])})")
                    continue
                where[(os_name, name)] = (field, path)
                p.paths.append(ImagePath(field, path, "file"))
    return declared
