"""``dockext validate`` (``docker extension validate``): check an extension image or a bare ``metadata.json``.

Docker Desktop's validator (reference §1.5) checks the image labels, ``metadata.json``, the image tag, the
API version the extension asks for, and optionally installs and removes the extension. This module does the
same and reports **every** problem it finds, each with the field it concerns and what to do about it, as
errors (the extension is refused, or cannot be published) and warnings (it works, but something is missing
or will be ignored).

The checks are pure (:func:`check`: labels + ``metadata.json`` bytes + a "what is at this path" callable,
unit-tested without an engine); :func:`validate_image` and :func:`validate_file` are the adapters that read
an image through the engine, or a file.
"""

from __future__ import annotations

import base64
import contextlib
import json
import posixpath
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from . import API_VERSION, backendpolicy, marketplace, model, permissions
from . import compose as composefile
from .composecli import Compose
from .engine import Engine, ImageFiles
from .engineapi import APIError, TransportError
from .errors import DockextError, EngineError, ImageNotFound, InvalidImageReference, MetadataError
from .installer import Installer, Reporter, Silent, write_compose
from .paths import Layout, layout

__all__ = [
    "CATEGORIES",
    "Finding",
    "ImageConfig",
    "PathInfo",
    "Report",
    "Step",
    "Version",
    "check",
    "check_api_version",
    "check_labels",
    "greatest_semver",
    "render",
    "satisfies",
    "validate_file",
    "validate_image",
]

Severity = Literal["error", "warning"]

LABELS_DOC: Final = "https://docs.docker.com/extensions/extensions-sdk/extensions/labels/"
METADATA_DOC: Final = "https://docs.docker.com/extensions/extensions-sdk/architecture/metadata/"
#: ``com.docker.extension.categories`` values the Marketplace knows (reference §2)
CATEGORIES: Final = (
    "ci-cd", "container-orchestration", "cloud-deployment", "cloud-development", "database", "kubernetes",
    "networking", "image-registry", "security", "testing-tools", "utility-tools", "volumes",
)
METADATA_LIMIT: Final = 4 << 20  # as install reads it


@dataclass(frozen=True)
class Finding:
    """One problem: ``field`` names what it concerns (``ui.dashboard-tab.root``, ``label "..."``, ``tag``)."""

    severity: Severity
    field: str
    message: str
    hint: str | None = None


@dataclass(frozen=True)
class Step:
    """One check, printed as ``Checked <title>`` (or ``Skipped <title>: <skipped>``), and what it found."""

    title: str
    findings: tuple[Finding, ...] = ()
    skipped: str | None = None


@dataclass
class Report:
    """The result of a validation. ``kind`` is ``"image"`` or ``"file"``."""

    target: str
    kind: str
    steps: list[Step] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        return [f for s in self.steps for f in s.findings]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def valid(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class PathInfo:
    """What is at a path of the image: ``kind`` ``"file"``, ``"dir"``, ``"symlink"`` (``target``) or ``"other"``;
    ``mode`` the permission bits."""

    kind: str
    mode: int = 0o644
    target: str = ""


@dataclass(frozen=True)
class ImageConfig:
    """The parts of the image's config the checks use."""

    os: str = "linux"
    architecture: str = ""
    has_command: bool = True  # a CMD or an ENTRYPOINT


Stat = Callable[[str], PathInfo | None]
Read = Callable[[str], bytes | None]
#: ``compose_check(doc)``: Compose's own reading of the file install would write from ``doc`` (the parsed compose
#: file), vetted as install vets it (:func:`backendpolicy.check_resolved`); raises MetadataError where it fails
ComposeCheck = Callable[[dict[str, Any]], None]


# ----------------------------------------------------------------------------------------------------------
# Semantic versions and constraints (Masterminds/semver style, as Docker Desktop's labels use them, §2.1)
# ----------------------------------------------------------------------------------------------------------

_SEMVER_RE: Final = re.compile(
    r"v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z.-]+)?"
)


@dataclass(frozen=True, order=False)
class Version:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Version | None:
        """A full semantic version ``MAJOR.MINOR.PATCH[-PRE][+BUILD]`` (a leading ``v`` allowed), else None."""
        m = _SEMVER_RE.fullmatch(text.strip())
        if m is None:
            return None
        pre = tuple(m.group(4).split(".")) if m.group(4) else ()
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)), pre)

    @property
    def key(self) -> tuple[Any, ...]:
        """Precedence (semver §11): a pre-release sorts before its release; numeric identifiers numerically."""
        pre: tuple[Any, ...] = (1,) if not self.prerelease else (
            0, tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        )
        return (self.major, self.minor, self.patch, pre)

    def __str__(self) -> str:
        base = f"{self.major}.{self.minor}.{self.patch}"
        return f"{base}-{'.'.join(self.prerelease)}" if self.prerelease else base


_TERM_RE: Final = re.compile(r"(!=|>=|=>|<=|=<|~>|>|<|=|~|\^)?\s*v?([0-9]+|[xX*])(?:\.([0-9]+|[xX*]))?"
                             r"(?:\.([0-9]+|[xX*]))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?")
_HYPHEN_RE: Final = re.compile(r"(v?[0-9][0-9A-Za-z.+-]*)\s+-\s+(v?[0-9][0-9A-Za-z.+-]*)")
_WILD: Final = ("x", "X", "*")

_Bound = tuple[str, tuple[Any, ...]]  # (operator, version key)


def _key(major: int, minor: int, patch: int, pre: str | None = None) -> tuple[Any, ...]:
    return Version(major, minor, patch, tuple(pre.split(".")) if pre else ()).key


def _term(op: str, parts: list[str | None], pre: str | None, strict: bool) -> list[_Bound] | None:
    """One term as bounds that must all hold (``[]``: anything)."""
    nums: list[int] = []
    for p in parts:
        if p is None or p in _WILD:
            break
        nums.append(int(p))
    given = len(nums)
    major, minor, patch = [*nums, 0, 0, 0][:3]
    low = _key(major, minor, patch, pre if given == 3 else None)

    def up(level: int) -> tuple[Any, ...]:  # the first version past the given prefix
        return _key(major + 1, 0, 0) if level == 1 else _key(major, minor + 1, 0) if level == 2 else low

    if op == "" and not strict:
        return [(">=", low)] if given else []
    if op in ("", "="):
        if given == 0:
            return []
        if given == 3:
            return [("==", low)]
        return [(">=", low), ("<", up(given))]
    if op == "!=":
        return [("!=", low)] if given == 3 else None
    if op in (">=", "=>"):
        return [(">=", low)]
    if op in ("<=", "=<"):
        return [("<=", low)] if given == 3 else [("<", up(given))]
    if op == ">":
        return [(">", low)] if given == 3 else [(">=", up(max(given, 1)))]
    if op == "<":
        return [("<", low)]
    if op in ("~", "~>"):
        return [(">=", low), ("<", up(1 if given == 1 else 2))]
    if op == "^":
        level = 1 if major > 0 or given == 1 else 2 if minor > 0 or given == 2 else 3
        if level == 3:
            return [(">=", low), ("<", _key(major, minor, patch + 1))]
        return [(">=", low), ("<", up(level))]
    return None  # pragma: no cover - the regex admits no other operator


def parse_constraint(text: str, *, strict: bool) -> list[list[_Bound]] | None:
    """``>= 0.3.3``, ``>=1.4.7, <2.0``, ``^0.4``, ``1.2.x``, ``1.0 - 2.0``, ``a || b``: the alternatives, each a
    list of bounds; None when it is not a constraint. A bare version (``0.3.3``) means exactly that version
    when ``strict`` (Docker Desktop's ``validate --sdk-compatibility``), else that version or newer."""
    groups: list[list[_Bound]] = []
    for group in text.split("||"):
        group = _HYPHEN_RE.sub(lambda m: f">= {m.group(1)}, <= {m.group(2)}", group)
        bounds: list[_Bound] = []
        pos, terms = 0, 0
        for m in _TERM_RE.finditer(group):
            gap = group[pos:m.start()]
            if gap.strip(" \t,") or (terms and not gap):
                return None
            term = _term(m.group(1) or "", [m.group(2), m.group(3), m.group(4)], m.group(5), strict)
            if term is None:
                return None
            bounds.extend(term)
            pos, terms = m.end(), terms + 1
        if not terms or group[pos:].strip(" \t,"):
            return None
        groups.append(bounds)
    return groups


def satisfies(constraint: str, version: str, *, strict: bool = False) -> bool | None:
    """Whether ``version`` meets ``constraint``; None when the constraint cannot be parsed."""
    groups = parse_constraint(constraint, strict=strict)
    parsed = Version.parse(version)
    if groups is None or parsed is None:
        return None
    have = parsed.key
    compare: dict[str, Callable[[tuple[Any, ...]], bool]] = {
        "==": lambda k: have == k, "!=": lambda k: have != k, ">=": lambda k: have >= k, ">": lambda k: have > k,
        "<=": lambda k: have <= k, "<": lambda k: have < k,
    }
    return any(all(compare[op](k) for op, k in bounds) for bounds in groups)


def greatest_semver(tags: list[str]) -> str | None:
    """The tag with the greatest semantic version among ``tags`` (others are ignored), or None."""
    versions = [(v.key, t) for t in tags if (v := Version.parse(t)) is not None]
    return max(versions)[1] if versions else None


# ----------------------------------------------------------------------------------------------------------
# The checks (pure)
# ----------------------------------------------------------------------------------------------------------

def _label(name: str) -> str:
    return f'label "{name}"'


def _missing_label(name: str, example: str, why: str, severity: Severity = "error") -> Finding:
    return Finding(
        severity, _label(name), f"is missing or empty{why}", f"Add to the Dockerfile: LABEL {name}={example}"
    )


_REQUIRED: Final = (
    ("org.opencontainers.image.title", '"My Extension"', " (the name shown in Docker Desktop)"),
    ("org.opencontainers.image.description", '"What my extension does."', " (the Marketplace card)"),
    ("org.opencontainers.image.vendor", '"Acme, Inc."', " (the publisher, PROVIDER in `ls`)"),
    ("com.docker.desktop.extension.api.version", '">= 0.3.3"', " (the extension API version it needs)"),
)
_RECOMMENDED: Final = (
    ("com.docker.extension.screenshots",
     "'[{\"alt\": \"Main view\", \"url\": \"https://example.com/screenshot1.png\"}]'",
     ": the Marketplace page shows no screenshots (2400x1600 recommended)"),
    ("com.docker.extension.detailed-description", '"<p>What it does, in detail.</p>"',
     ": the Marketplace details page is empty"),
    ("com.docker.extension.publisher-url", '"https://example.com"', ": the Marketplace shows no publisher link"),
    ("com.docker.extension.changelog", '"<ul><li>What changed in this version</li></ul>"',
     ": the Marketplace shows no changes for this version"),
    ("com.docker.extension.categories", '"utility-tools"',
     ": the Marketplace cannot file it (its validator requires it, although the labels page says optional)"),
)
_LEGACY: Final = (
    ("com.docker.desktop.plugin.api.version", "com.docker.desktop.extension.api.version"),
    ("com.docker.desktop.plugin.icon", "com.docker.desktop.extension.icon"),
    ("org.opencontainers.image.authors", "org.opencontainers.image.vendor"),
)


def _text(labels: Mapping[str, str], name: str) -> str | None:
    value = labels.get(name)
    return value.strip() if isinstance(value, str) and value.strip() else None


def check_labels(labels: Mapping[str, str] | None) -> list[Finding]:
    """The extension labels (reference §2): the ones Docker Desktop needs to list an extension are errors, the
    other Marketplace labels warnings; legacy names, malformed JSON and non-http(s) URLs are reported."""
    labels = labels or {}
    found: list[Finding] = []
    for name, example, why in _REQUIRED:
        if _text(labels, name) is None:
            legacy = next((old for old, new in _LEGACY if new == name and _text(labels, old)), None)
            if legacy is None:
                found.append(_missing_label(name, example, why))
    icon = "com.docker.desktop.extension.icon"
    icon_value = _text(labels, icon)
    if icon_value is None and _text(labels, "com.docker.desktop.plugin.icon") is None:
        found.append(_missing_label(icon, '"https://example.com/icon.svg"', " (the icon the Marketplace shows)"))
    elif icon_value is not None and not _is_http_url(icon_value):
        found.append(Finding("error", _label(icon), f"{_quote(icon_value)} is not an http(s) URL",
                             "Give the URL of an svg, png or jpg file, e.g. https://example.com/icon.svg"))
    for old, new in _LEGACY:
        if _text(labels, old) is not None:
            found.append(Finding("warning", _label(old), f"is a legacy name of {_label(new)}",
                                 f"Rename it to {new}" if _text(labels, new) is None else f"Remove it: {new} is set"))
    for name, example, why in _RECOMMENDED:
        if _text(labels, name) is None:
            found.append(_missing_label(name, example, why, "warning"))
    found += _json_list_label(labels, "com.docker.extension.screenshots", "url", "alt")
    found += _json_list_label(labels, "com.docker.extension.additional-urls", "url", "title")
    publisher = _text(labels, "com.docker.extension.publisher-url")
    if publisher is not None and not _is_http_url(publisher):
        found.append(Finding("warning", _label("com.docker.extension.publisher-url"),
                             f"{_quote(publisher)} is not an http(s) URL", "e.g. https://example.com"))
    categories = [c.strip() for c in (_text(labels, "com.docker.extension.categories") or "").split(",") if c.strip()]
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown:
        found.append(Finding("warning", _label("com.docker.extension.categories"),
                             f"unknown categories: {', '.join(_quote(c) for c in unknown)}",
                             f"Use a comma-separated list of: {', '.join(CATEGORIES)}"))
    account = _text(labels, "com.docker.extension.account-info")
    if account is not None and account != "required":
        found.append(Finding("warning", _label("com.docker.extension.account-info"),
                             f"{_quote(account)} is neither \"required\" nor empty",
                             'Set it to "required" when users need an account, else leave it out'))
    return found


def _json_list_label(labels: Mapping[str, str], name: str, url_key: str, text_key: str) -> list[Finding]:
    value = _text(labels, name)
    if value is None:
        return []
    example = f'[{{"{text_key}": "...", "{url_key}": "https://example.com/..."}}]'
    try:
        doc = json.loads(value)
    except (ValueError, RecursionError):
        return [Finding("warning", _label(name), "is not valid JSON", f"Use a JSON array: {example}")]
    if not isinstance(doc, list):
        return [Finding("warning", _label(name), "is not a JSON array", f"Use a JSON array: {example}")]
    if not doc and name.endswith("screenshots"):
        return [Finding("warning", _label(name), "is an empty array: the Marketplace page shows no screenshots",
                        f"List them: {example}")]
    bad = [str(i) for i, item in enumerate(doc)
           if not isinstance(item, dict) or not _is_http_url(item.get(url_key))]
    if bad:
        return [Finding("warning", _label(name), f"entries {', '.join(bad)} have no http(s) \"{url_key}\": ignored",
                        f"Each entry is an object: {example}")]
    return []


def _quote(text: str) -> str:
    """Quote label or metadata text for the terminal (control characters escaped, at most 200 characters)."""
    return json.dumps(text[:200], ensure_ascii=not text.isprintable())


def _is_http_url(value: object) -> bool:
    """An absolute http(s) URL, by the rule the label parser applies to every URL label."""
    url_label = "com.docker.extension.publisher-url"
    return isinstance(value, str) and model.parse_labels({url_label: value}).publisher_url is not None


def check_api_version(labels: Mapping[str, str] | None, *, strict: bool, server: str = API_VERSION) -> list[Finding]:
    """Whether the API version the extension asks for (``com.docker.desktop.extension.api.version``) is met by
    the version dockext implements. ``strict`` (``--sdk-compatibility``): a bare version must be exactly it and
    a mismatch is an error; otherwise a bare version means "or newer" (as install reads it) and a mismatch is a
    warning (install does not enforce it)."""
    labels = labels or {}
    name = "com.docker.desktop.extension.api.version"
    value = _text(labels, name) or _text(labels, "com.docker.desktop.plugin.api.version")
    if value is None:
        return []  # reported by check_labels
    ok = satisfies(value, server, strict=strict)
    if ok is None:
        return [Finding("error", _label(name), f"{_quote(value)} is not a version or a version constraint",
                        'e.g. ">= 0.3.3", "0.4.2" or ">= 1.4.7, < 2.0"')]
    if ok:
        return []
    floor, current = Version.parse(value.lstrip("=v ").strip()), Version.parse(server)
    keep_floor = floor is not None and current is not None and floor.key <= current.key
    suggestion = f">= {floor}" if keep_floor else f">= {server}"
    message = f"({_quote(value)}) is incompatible with the current API version {_quote(server)}"
    if strict:
        return [Finding("error", _label(name), message, f'Consider changing it to "{suggestion}"')]
    return [Finding("warning", _label(name), message + " (dockext installs it anyway; some calls may be missing)",
                    f'Consider "{suggestion}" if the extension works with API {server}')]


def check_tag(tag: str | None, digest: str | None) -> list[Finding]:
    if tag is None and digest is not None:
        return []
    shown = tag or "latest"
    if Version.parse(shown) is None:
        return [Finding("warning", "tag", f"{_quote(shown)} is not a semantic version (MAJOR.MINOR.PATCH)",
                        "The Marketplace publishes semver tags only: tag the image e.g. 1.0.0")]
    return []


_OBSOLETE: Final = {
    "": ("name", "provider", "desktop-plugin-version", "desktop-plugin-name"),
    "vm": ("isolation",),
    "vm.exposes": ("host-socket", "named-pipe"),
    "ui.dashboard-tab.backend": ("host-socket", "named-pipe"),
}
_KNOWN: Final = {
    "": ("icon", "ui", "vm", "host"),
    "ui": ("dashboard-tab",),
    "ui.dashboard-tab": ("title", "root", "src", "backend"),
    "ui.dashboard-tab.backend": ("socket",),
    "vm": ("image", "composefile", "exposes"),
    "vm.exposes": ("socket",),
    "host": ("binaries",),
}
_IMAGE_SUFFIXES: Final = (".svg", ".png", ".jpg", ".jpeg")


def _metadata_warnings(doc: dict[str, Any]) -> list[Finding]:
    """Obsolete, unknown and legacy fields, and declarations that do nothing (all tolerated by install)."""
    found: list[Finding] = []

    def at(path: str) -> Any:
        node: Any = doc
        for part in path.split(".") if path else []:
            node = node.get(part) if isinstance(node, dict) else None
        return node

    for where, known in _KNOWN.items():
        node = at(where)
        if not isinstance(node, dict):
            continue
        for key in node:
            name = f"{where}.{key}" if where else key
            if key in _OBSOLETE.get(where, ()):
                found.append(Finding("warning", name, "is obsolete and ignored", "Remove it"))
            elif key not in known:
                found.append(Finding("warning", name, "is not a metadata.json field: ignored",
                                     f"Check the spelling against {METADATA_DOC}"))
    binaries = at("host.binaries")
    if isinstance(binaries, list):
        for i, element in enumerate(binaries):
            if isinstance(element, dict):
                for key in element:
                    if key not in model.HOST_OSES:
                        found.append(Finding("warning", f"host.binaries[{i}].{key}", "is not an OS: ignored",
                                             'The keys are "linux", "darwin" and "windows"'))
        declared = [e for e in binaries if isinstance(e, dict)]
        if declared and not any(isinstance(e.get("linux"), list) and e["linux"] for e in declared):
            found.append(Finding("warning", "host.binaries", "has no linux entry: nothing is copied on Linux",
                                 'Add {"linux": [{"path": "/linux/<binary>"}]}'))
    vm = at("vm")
    if isinstance(vm, dict) and vm.get("image") is not None and vm.get("composefile") is not None:
        found.append(Finding("warning", "vm", 'declares both "image" and "composefile": "image" is used',
                             "Keep one of them"))
    exposed = at("vm.exposes.socket")
    legacy = at("ui.dashboard-tab.backend.socket")
    if legacy is not None and exposed is None:
        found.append(Finding("warning", "ui.dashboard-tab.backend.socket", "is the legacy place of the socket name",
                             'Declare it as "vm": {"exposes": {"socket": ...}}'))
    elif legacy is not None and legacy != exposed:
        found.append(Finding("warning", "ui.dashboard-tab.backend.socket",
                             f"differs from vm.exposes.socket: {_quote(str(exposed))} is used", "Remove it"))
    if (exposed is not None or legacy is not None) and not isinstance(vm, dict):
        found.append(Finding("warning", "vm", "is missing: no backend runs to create the socket",
                             'Add "vm": {"image": "${DESKTOP_PLUGIN_IMAGE}", ...}'))
    icon = doc.get("icon")
    if icon is None or (isinstance(icon, str) and not icon.strip()):
        found.append(Finding("warning", "icon", "is missing: the dashboard shows a generic icon",
                             'Add "icon": "icon.svg" (an svg, png or jpg file in the image)'))
    elif isinstance(icon, str) and not icon.lower().endswith(_IMAGE_SUFFIXES):
        found.append(Finding("warning", "icon", f"{_quote(icon)} is not an .svg, .png or .jpg file name",
                             "Use an svg, png or jpg image"))
    return found


_HINTS: Final = (
    ("metadata.json", "Fix the JSON: `python3 -m json.tool metadata.json` shows where it breaks", "is not valid JSON"),
    ("metadata.json", 'Declare at least one of "ui": {"dashboard-tab": ...}, "vm" or "host": {"binaries": ...}',
     "declares no"),
    ("metadata.json", "The top level of metadata.json is an object: {\"ui\": ..., \"vm\": ...}", ""),
    ("icon", 'The path of an svg/png/jpg file in the image, e.g. "icon.svg" (COPY icon.svg /)', ""),
    ("ui.dashboard-tab.title", 'The name of the tab, e.g. "My Extension"', ""),
    ("ui.dashboard-tab.root", 'The directory of the UI in the image, e.g. "/ui" (COPY ui /ui)', ""),
    ("ui.dashboard-tab.src", 'The entry page, relative to root, e.g. "index.html"', ""),
    ("ui.dashboard-tab", 'An object: {"title": "My Extension", "root": "/ui", "src": "index.html"}', ""),
    ("vm.image", 'Usually "${DESKTOP_PLUGIN_IMAGE}": the extension image runs as the backend', ""),
    ("vm.composefile", 'The path of a compose file in the image, e.g. "docker-compose.yaml"', ""),
    ("vm", 'Declare "image": "${DESKTOP_PLUGIN_IMAGE}" or "composefile": "docker-compose.yaml"', ""),
    ("socket", 'A plain file name such as "backend.sock": the backend listens on /run/guest-services/<name>', ""),
    ("host.binaries", 'An absolute path in the image, e.g. {"path": "/linux/mytool"}; '
     "the binaries of one OS need distinct file names", "["),
    ("host", 'e.g. "host": {"binaries": [{"linux": [{"path": "/linux/mytool"}], "darwin": [...], "windows": [...]}]}',
     ""),
)


_PROBLEM_HINTS: Final = (
    ('".." is not allowed', 'Give the absolute path in the image, without ".." (e.g. "/linux/mytool")'),
    ("backslash", "Separate directories with /"),
    ("has the same file name as", "Give each binary of one OS its own file name: they are copied to one directory"),
    ("remote URLs are not supported", 'Name a file under root, e.g. "index.html"'),
    ("is required", f"Add it (see {METADATA_DOC})"),
    ("must not be empty", f"Give it a value (see {METADATA_DOC})"),
)


def _hint(exc: MetadataError) -> str | None:
    if exc.hint:
        return exc.hint
    for needle, hint in _PROBLEM_HINTS:
        if needle in exc.problem:
            return hint
    for prefix, hint, needle in _HINTS:
        name = exc.field
        if prefix == "socket":
            if name.endswith(".socket"):
                return hint
            continue
        if (name == prefix or name.startswith(prefix + ".") or name.startswith(prefix + "[")) and needle in (
            exc.problem if needle != "[" else name
        ):
            return hint
    return None


def _metadata_finding(exc: MetadataError) -> Finding:
    return Finding("error", exc.field, exc.problem, _hint(exc))


def check_metadata(data: bytes | None) -> tuple[list[Finding], model.MetadataCheck | None]:
    """Every problem of ``metadata.json`` (errors) and its obsolete, unknown or ineffective fields (warnings)."""
    if data is None:
        return [Finding("error", "metadata.json", "the image has no /metadata.json: it is not a Docker extension",
                        f"Add COPY metadata.json / to the Dockerfile (see {METADATA_DOC})")], None
    result = model.check_metadata(data)
    found = [_metadata_finding(p) for p in result.problems]
    if result.document is not None:
        found += _metadata_warnings(result.document)
    return found, result


def _describe(info: PathInfo) -> str:
    if info.kind == "symlink":
        return f"a symbolic link (to {_quote(info.target)})"
    return {"file": "a file", "dir": "a directory"}.get(info.kind, "a special file")


def check_files(
    meta: model.MetadataCheck, stat: Stat, read: Read | None = None, config: ImageConfig | None = None,
    *, project: str = "\0", compose_check: ComposeCheck | None = None,
) -> list[Finding]:
    """That the files and directories ``metadata.json`` names are in the image, and are what install copies:
    regular files (links are not followed) and a UI root directory; the compose file is valid (``project``: its
    Compose project, when the image's name is known; ``compose_check``: Compose's reading of it, see
    :data:`ComposeCheck`); a backend made of the extension image itself has a command."""
    found: list[Finding] = []
    infos: dict[str, PathInfo | None] = {}
    for item in meta.paths:
        if item.field == "ui.dashboard-tab.src":
            root = next(p for p in meta.paths if p.field == "ui.dashboard-tab.root")
            if (infos.get(root.field) or PathInfo("none")).kind != "dir":
                continue  # reported on the root
        info = stat(item.path)
        infos[item.field] = info
        what = "directory" if item.kind == "dir" else "file"
        if info is None:
            where = "in the UI root" if item.field == "ui.dashboard-tab.src" else "in the image"
            found.append(Finding("error", item.field, f"{item.path} does not exist {where}",
                                 f"Copy the {what} there in the Dockerfile, or fix the path"))
        elif info.kind == "symlink" and item.field == "ui.dashboard-tab.src":
            base = posixpath.dirname(item.path)
            target = posixpath.normpath(posixpath.join(base, info.target))
            root_dir = next(p.path for p in meta.paths if p.field == "ui.dashboard-tab.root")
            if not (target + "/").startswith(root_dir.rstrip("/") + "/"):
                found.append(Finding("error", item.field,
                                     f"{item.path} is {_describe(info)}, which leaves the UI root {root_dir}",
                                     "Copy the page itself into the UI root"))
        elif info.kind != item.kind:
            found.append(Finding("error", item.field, f"{item.path} is {_describe(info)}, not a {what}",
                                 f"Install copies only a regular {what} here: copy the {what} itself to {item.path}"))
        elif item.field.startswith("host.binaries") and ".linux[" in item.field and not info.mode & 0o111:
            found.append(Finding("warning", item.field, f"{item.path} is not executable: running it will fail",
                                 f"chmod +x it before COPY (or RUN chmod +x {item.path})"))
    compose = infos.get("vm.composefile")
    if compose is not None and compose.kind == "file" and read is not None:
        path = next(p.path for p in meta.paths if p.field == "vm.composefile")
        text = read(path)
        if text is not None:
            found += _check_compose(text, config, project=project, compose_check=compose_check)
    vm = (meta.document or {}).get("vm")
    if (config is not None and not config.has_command and isinstance(vm, dict)
            and vm.get("image") in (composefile.PLACEHOLDER, "$DESKTOP_PLUGIN_IMAGE")):
        found.append(Finding("error", "vm.image", "the backend is the extension image, which has no CMD or ENTRYPOINT",
                             'Add CMD ["/service", "-socket", "/run/guest-services/backend.sock"] (or your own)'))
    return found


#: services dockext adds to a backend's project (the socket-permission helper, a remote engine's relay)
RESERVED_SERVICES = backendpolicy.RESERVED_SERVICES


def _check_compose(text: bytes, config: ImageConfig | None, *, project: str,
                   compose_check: ComposeCheck | None) -> list[Finding]:
    try:
        doc = composefile.parse(text)
    except MetadataError as exc:
        return [Finding("error", exc.field, exc.problem, "See https://docs.docker.com/compose/compose-file/")]
    found: list[Finding] = []
    services: dict[str, Any] = doc["services"]
    for reserved in RESERVED_SERVICES:
        if reserved in services:
            found.append(Finding("error", "vm.composefile", f"service name {reserved!r} is reserved by dockext",
                                 "Rename the service"))
    volumes = doc.get("volumes")
    if isinstance(volumes, dict) and composefile.GS_VOLUME in volumes:
        found.append(Finding("error", "vm.composefile", f"volume name {composefile.GS_VOLUME!r} is reserved by dockext",
                             "Rename the volume"))
    try:  # the isolation every backend gets (backendpolicy.py)
        backendpolicy.check_isolation(doc, project=project)
    except MetadataError as exc:
        if exc.problem not in {f.message for f in found}:  # a reserved name, said above already
            found.append(Finding("error", exc.field, exc.problem,
                                 "A backend may only use its own services, volumes and networks"))
    for name, svc in services.items():
        image = svc.get("image")
        if not isinstance(image, str) or not image.strip():
            found.append(Finding("error", "vm.composefile", f"service {name!r} has no image (extensions cannot build)",
                                 "Set image: ${DESKTOP_PLUGIN_IMAGE} (the extension image) or another image"))
        elif (config is not None and not config.has_command and isinstance(image, str)
              and composefile.PLACEHOLDER in image and not svc.get("command") and not svc.get("entrypoint")):
            found.append(Finding("error", "vm.composefile",
                                 f"service {name!r} runs the extension image, which has no CMD or ENTRYPOINT",
                                 "Add a CMD to the image, or a command: to the service"))
    if compose_check is not None and not any(f.severity == "error" for f in found):
        try:  # what install does next: Docker Compose reads the file it writes (after the checks above only)
            compose_check(doc)
        except MetadataError as exc:
            found.append(Finding("error", exc.field, exc.problem,
                                 "Install reads the file with `docker compose config` first: make it accept it"))
    return found


def check_platform(config: ImageConfig) -> list[Finding]:
    if config.os and config.os != "linux":
        return [Finding("error", "image", f"is a {config.os} image: extensions are Linux images",
                        "Build it for linux/amd64 and linux/arm64")]
    return []


def check(
    labels: Mapping[str, str] | None,
    metadata: bytes | None,
    stat: Stat | None,
    *,
    read: Read | None = None,
    config: ImageConfig | None = None,
    tag: str | None = None,
    digest: str | None = None,
    sdk_compatibility: bool = False,
    target: str = "",
    project: str = "\0",
    compose_check: ComposeCheck | None = None,
) -> Report:
    """Validate an extension from what was read of it. ``stat`` None: a bare metadata.json (labels, files,
    tag and platform are not checked). ``project`` and ``compose_check``: see :func:`check_files`."""
    if stat is None:
        report = Report(target=target, kind="file")
        found, _ = check_metadata(metadata)
        report.steps.append(Step("metadata.json", tuple(found)))
        return report
    report = Report(target=target, kind="image")
    report.steps.append(Step("image labels", tuple(check_labels(labels))))
    found, meta = check_metadata(metadata)
    report.steps.append(Step("metadata.json", tuple(found)))
    if meta is None:
        report.steps.append(Step("the files metadata.json names", skipped="the image has no metadata.json"))
    elif meta.document is None:
        report.steps.append(Step("the files metadata.json names", skipped="metadata.json cannot be read"))
    else:
        report.steps.append(Step("the files metadata.json names", tuple(check_files(
            meta, stat, read, config, project=project, compose_check=compose_check))))
    report.steps.append(Step("image tag is semver", tuple(check_tag(tag, digest))))
    if config is not None:
        platform = f"{config.os}/{config.architecture}" if config.architecture else config.os
        report.steps.append(Step(f"image platform ({platform})", tuple(check_platform(config))))
    report.steps.append(Step(
        f"extension is compatible with API version {API_VERSION}" + (" (strict)" if sdk_compatibility else ""),
        tuple(check_api_version(labels, strict=sdk_compatibility)),
    ))
    return report


# ----------------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------------

def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def render(report: Report, *, errors_only: bool = False) -> list[str]:
    """The lines ``dockext validate`` prints (``errors_only``: without warnings)."""
    lines: list[str] = []
    for step in report.steps:
        if step.skipped:
            lines.append(f"Skipped {step.title}: {step.skipped}")
            continue
        errors = sum(f.severity == "error" for f in step.findings)
        warnings = 0 if errors_only else sum(f.severity == "warning" for f in step.findings)
        counts = ", ".join(c for c in (errors and _count(errors, "error"), warnings and _count(warnings, "warning"))
                           if c)
        lines.append(f"Checked {step.title}" + (f": {counts}" if counts else ""))
    sections: list[tuple[str, list[Finding]]] = [("Errors", report.errors)]
    if not errors_only:
        sections.append(("Warnings", report.warnings))
    for title, items in sections:
        if not items:
            continue
        lines += ["", f"{title} ({len(items)}):"]
        for f in items:
            lines.append(f"  - {f.field}: {f.message}")
            if f.hint:
                lines.append(f"    fix: {f.hint}")
    what = "extension image" if report.kind == "image" else "metadata file"
    lines.append("")
    if report.valid:
        extra = f" ({_count(len(report.warnings), 'warning')})" if report.warnings and not errors_only else ""
        lines.append(f'The {what} "{report.target}" is valid{extra}.')
    else:
        lines.append(f'The {what} "{report.target}" is not valid: {_count(len(report.errors), "error")}.')
        docs = LABELS_DOC if any(f.field.startswith("label") for f in report.errors) else METADATA_DOC
        lines.append(f"Please fix the errors above and run the validate command again (see {docs}).")
    if report.kind == "file":
        lines.append("Only metadata.json itself was checked: validate the image to check its labels and files.")
    return lines


# ----------------------------------------------------------------------------------------------------------
# Adapters
# ----------------------------------------------------------------------------------------------------------

def validate_file(path: Path) -> Report:
    """Validate a bare ``metadata.json`` (Docker Desktop: "only the schema check runs")."""
    try:
        with path.open("rb") as f:
            data = f.read(METADATA_LIMIT + 1)
    except OSError as exc:
        raise DockextError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > METADATA_LIMIT:
        raise DockextError(f"{path} is larger than {METADATA_LIMIT >> 20} MiB: it is not a metadata.json")
    return check(None, data, None, target=str(path))


# Go's os.FileMode type bits, as the engine reports them in X-Docker-Container-Path-Stat
_MODE_DIR: Final = 1 << 31
_MODE_SYMLINK: Final = 1 << 27
_MODE_TYPE: Final = _MODE_DIR | _MODE_SYMLINK | (1 << 26) | (1 << 25) | (1 << 24) | (1 << 21) | (1 << 19)


def _path_info(stat: Mapping[str, Any]) -> PathInfo:
    mode = int(stat.get("mode") or 0)
    if mode & _MODE_DIR:
        kind = "dir"
    elif mode & _MODE_SYMLINK:
        kind = "symlink"
    elif mode & _MODE_TYPE:
        kind = "other"
    else:
        kind = "file"
    return PathInfo(kind=kind, mode=mode & 0o7777, target=str(stat.get("linkTarget") or ""))


def _stat(engine: Engine, files: ImageFiles, path: str) -> PathInfo | None:
    """``HEAD /containers/{id}/archive?path=``: what is at ``path`` (a last-component link is not followed)."""
    with engine.errors(f"look up {path} in the image"), engine.client.open(
            "HEAD", f"/containers/{files.container_id}/archive", {"path": path}, missing_ok=True) as answer:
        if answer.status == 404:
            return None
        if answer.status != 200:
            raise EngineError(f"look up {path} in the image: the engine answered HTTP {answer.status}")
        header = answer.header("X-Docker-Container-Path-Stat")
    try:
        return _path_info(json.loads(base64.b64decode(header)) if header else {})
    except ValueError:
        raise EngineError(f"look up {path} in the image: the engine's X-Docker-Container-Path-Stat is not base64 "
                          "JSON") from None


def resolve_tag(engine: Engine, ref: model.ImageRef) -> str | None:
    """The greatest semver tag among the local images of ``ref``'s repository (no registry is contacted)."""
    with engine.errors("list images"):
        images = engine.client.get("/images/json", {"filters": {"reference": ref.name}})
    tags: list[str] = []
    for image in images:
        for repo_tag in image.get("RepoTags") or []:
            with contextlib.suppress(InvalidImageReference):
                other = model.ImageRef.parse(repo_tag)
                if other.name == ref.name and other.tag:
                    tags.append(other.tag)
    return greatest_semver(tags)


def validate_image(
    image: str,
    *,
    engine: Engine | None = None,
    reporter: Reporter | None = None,
    auto_resolve_tag: bool = False,
    sdk_compatibility: bool = False,
    install_uninstall: bool = False,
) -> Report:
    """Validate the extension image ``image`` (pulled when it is not local, like install)."""
    engine = engine or Engine()
    report_to: Reporter = reporter or Silent()
    ref = model.ImageRef.parse(image)
    engine.ping()
    if auto_resolve_tag and ref.tag is None and ref.digest is None:
        tag = resolve_tag(engine, ref)
        if tag is None:
            raise ImageNotFound(
                f"no local image of {ref.name} has a semantic-version tag "
                "(--auto-resolve-tag looks at local images only)",
                hint=f"Pull or build a tagged version, or give the tag: dockext validate {ref.name}:1.0.0",
            )
        ref = model.ImageRef(ref.registry, ref.repository, tag, None)
        report_to.step(f"Tag not specified, greatest semver tag resolved: {tag}")
    info = engine.find_image(ref.pull_ref)
    if info is None:
        report_to.step(f"Image not available locally, pulling {ref.pull_ref}...")
        info = engine.pull(ref, report_to.pull)
        report_to.step("Pulled image")
    cfg = info.get("Config") or {}
    labels = dict(cfg.get("Labels") or {})
    config = ImageConfig(
        os=str(info.get("Os") or "linux"),
        architecture=str(info.get("Architecture") or ""),
        has_command=bool(cfg.get("Cmd") or cfg.get("Entrypoint")),
    )
    owner = "validate-" + secrets.token_hex(4)
    with engine.image_files(str(info["Id"]), owner) as files:
        metadata = files.read("/metadata.json", "metadata.json", limit=METADATA_LIMIT)
        cache: dict[str, PathInfo | None] = {}

        def stat(path: str) -> PathInfo | None:
            if path not in cache:
                cache[path] = _stat(engine, files, path)
            return cache[path]

        def read(path: str) -> bytes | None:
            try:
                return files.read(path, path)
            except DockextError:
                return None  # a link or an oversized file: reported by the stat check

        key = model.extension_key(ref)
        project = model.compose_project(key)
        report = check(labels, metadata, stat, read=read, config=config, tag=ref.tag, digest=ref.digest,
                       sdk_compatibility=sdk_compatibility, target=ref.pull_ref, project=project,
                       compose_check=_compose_check(engine, ref.pull_ref, key, project))
    if install_uninstall:
        title = "extension installs and uninstalls (in a temporary dockext home)"
        if not report.valid:
            report.steps.append(Step(title, skipped="the extension has errors"))
        else:
            # the temporary home has no allow-list of its own: the user's applies (it starts the backend)
            marketplace.check_allowed(layout(), ref.pull_ref)
            report.steps.append(Step(title, tuple(_install_uninstall(engine, ref, str(info["Id"]), report_to))))
    return report


def _compose_check(engine: Engine, image: str, key: str, project: str) -> ComposeCheck:
    """Rewrite the compose file as install would for this engine (the extension's own services only), then have
    Docker Compose read it and vet its reading with every grant given: what validate reports is what install would
    refuse whatever the user's permissions."""

    def compose_check(doc: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory(prefix="dockext-validate-") as tmp:
            gs = composefile.guest_services_volume() if engine.remote else composefile.guest_services_bind(tmp)
            write_compose(engine, Compose(engine.target), doc, Path(tmp) / "docker-compose.yaml",
                          key=key, project=project, image=image,
                          title="validate", guest_services=gs, grants=permissions.DEFAULT)

    return compose_check


def _install_uninstall(engine: Engine, ref: model.ImageRef, image_id: str, report_to: Reporter) -> list[Finding]:
    """Install the extension into a temporary dockext home, then remove it; the user's own home and
    installed extensions are not touched. The image is installed under a temporary name, so that its Compose
    project and containers cannot collide with an installed copy of the same extension."""
    alias_repo = f"dockext-validate-{secrets.token_hex(3)}/{ref.repository}"
    alias_tag = ref.tag or "validate"
    alias = f"{alias_repo}:{alias_tag}"
    home = Path(tempfile.mkdtemp(prefix="dockext-validate-"))
    installer = Installer(Layout(home / "home"), engine=engine)
    project = model.compose_project(model.extension_key(model.ImageRef.parse(alias)))
    found: list[Finding] = []
    with engine.errors("tag the image"):
        engine.client.post(f"/images/{image_id}/tag", {"repo": alias_repo, "tag": alias_tag})
    try:
        report_to.step("Installing the extension into a temporary dockext home, then removing it...")
        try:
            installer.install(alias)
        except DockextError as exc:
            return [Finding("error", "install", exc.message, exc.hint)]
        try:
            installer.remove(alias)
        except DockextError as exc:
            found.append(Finding("error", "uninstall", exc.message, exc.hint))
    finally:
        with contextlib.suppress(DockextError):
            engine.remove_volumes(engine.project_volumes(project))
        with contextlib.suppress(APIError, TransportError):
            engine.client.remove_image(alias, noprune=True)
        shutil.rmtree(home, ignore_errors=True)
    return found
