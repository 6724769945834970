"""Adapter for container registries (the Distribution HTTP API v2), read-only.

What the Marketplace needs, without pulling anything: the repositories of a registry (``GET /v2/_catalog``,
following ``Link`` headers), the tags of a repository, and the labels of one tag (its manifest, the manifest of
the ``linux/<host arch>`` image when the tag is a multi-platform index, then its config blob, whose
``config.Labels`` are the labels ``docker image inspect`` shows).

* Scheme, as the Docker engine chooses it: ``https`` with a verified certificate, except for the registries the
  engine is told are insecure (:class:`Insecure`: daemon.json's ``insecure-registries``, and loopback, which
  Docker adds itself): those get ``https`` without verifying the certificate first and, if that is no TLS
  server, plain ``http``. The engine's own list is followed so that what the Marketplace lists, the engine can
  pull.
* Authentication, only when the registry asks (a ``401`` and its ``WWW-Authenticate`` challenge), as the
  Docker CLI does it, with the login ``docker login`` saved for the registry (:mod:`dockext.logins`) if there is
  one, else anonymously:

  - ``Bearer realm=...,service=...,scope=...`` (Docker Hub, GHCR, Harbor, GitLab, ...): a token from the realm,
    asked for with the user and password in Basic auth (or, for an identity token, with an OAuth2
    ``refresh_token`` grant posted to the realm), or anonymously; one token per scope, kept for the client.
  - ``Basic`` (a registry behind htpasswd, ECR): the user and password, then sent with every request.

  A registry that asks for a login dockext has not got, or refuses the one it sent, is an error that says which
  and how to log in. Credentials go only to the registry and the token service it names, in https (or in plain
  http to an insecure registry's own host, as the engine sends them there), and never follow a redirect to
  another host.
* Docker Hub (a reference without a registry, or ``docker.io/...``) is ``registry-1.docker.io``, official images
  under ``library/``. It has no catalog API.
* Every failure becomes a :class:`~dockext.errors.RegistryError` whose message names the registry and what
  failed (``cannot reach 127.0.0.1:5001: connection refused``, ``127.0.0.1:5000 answered 404 for acme/x tags``).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import platform
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urljoin, urlsplit

import httpx

from .errors import RegistryError
from .logins import Login, login_command, login_for
from .model import is_loopback

__all__ = [
    "ACCEPT_MANIFESTS",
    "DOCKER_HUB",
    "ImageLabels",
    "Insecure",
    "RegistryClient",
    "host_architecture",
    "is_loopback",
    "parse_challenge",
]

DOCKER_HUB: Final = "docker.io"  # how Docker Hub is named in messages
_HUB_API: Final = "registry-1.docker.io"

OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
ACCEPT_MANIFESTS: Final = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))

_MAX_JSON: Final = 4 * 1024 * 1024  # a manifest, a config blob or a catalog page larger than this is refused
#: an OCI content digest (algorithm:encoded): the only thing from a registry's answer that goes into a URL path
_DIGEST: Final = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,256}$")
_MAX_PAGES: Final = 100  # catalog pages followed at most (100 repositories each)

#: Tests (and nothing else) may set this to an ``httpx.MockTransport``; every client then uses it.
TRANSPORT: httpx.BaseTransport | None = None
_ANSWER_SECONDS: Final = 30.0  # one answer (manifest, blob, catalog page, token) must arrive whole within this


def host_architecture() -> str:
    """The host's architecture as image platforms name it (``amd64``, ``arm64``...)."""
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
            "i386": "386", "i686": "386"}.get(machine, machine)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Insecure:
    """The registries an engine reaches without verified TLS: daemon.json's ``insecure-registries`` as ``GET
    /info`` reports them in ``RegistryConfig`` (names in ``IndexConfigs`` with ``Secure: false``, networks in
    ``InsecureRegistryCIDRs``), loopback always (Docker adds ``127.0.0.0/8`` itself)."""

    names: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = ()

    @classmethod
    def of(cls, registry_config: Any) -> Insecure:
        """From the ``RegistryConfig`` of ``GET /info`` (anything unexpected in it is left out)."""
        config = registry_config if isinstance(registry_config, dict) else {}
        raw = config.get("IndexConfigs")
        indexes: dict[str, Any] = raw if isinstance(raw, dict) else {}
        names = frozenset(str(name).lower() for name, index in indexes.items()
                          if isinstance(index, dict) and index.get("Secure") is False)
        networks: list[Network] = []
        for cidr in config.get("InsecureRegistryCIDRs") or []:
            try:
                networks.append(ipaddress.ip_network(str(cidr), strict=False))
            except ValueError:
                continue
        return cls(names, tuple(networks))

    def covers(self, registry: str) -> bool:
        """Whether ``host[:port]`` is one of them: by name, or by an address of its host in one of the networks
        (the engine resolves a name to match it against the networks, and so does this)."""
        if is_loopback(registry) or registry.lower() in self.names:
            return True
        host = urlsplit(f"//{registry}").hostname or ""
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            if not self.networks or not host:
                return False
            try:
                addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0])
                             for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)]
            except (OSError, ValueError):
                return False
        return any(address in network for address in addresses for network in self.networks)


_CHALLENGE_PARAM_RE: Final = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="https://auth",service="reg",scope="repository:x:pull"`` -> ``("bearer", {...})``."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3) or "").replace('\\"', '"')
              for m in _CHALLENGE_PARAM_RE.finditer(rest)}
    return scheme.lower(), params


@dataclass(frozen=True)
class ImageLabels:
    """What the config of one image says: its labels and platform, and where it was read."""

    repository: str
    reference: str  # the tag (or digest) asked for
    labels: dict[str, str]
    os: str
    architecture: str


def _reason(exc: BaseException) -> str:
    """A short, lower-case reason from an httpx / OS error (``[Errno 111] Connection refused`` -> ``connection
    refused``)."""
    text = ""
    cause: BaseException | None = exc
    while cause is not None and not text:
        text = str(cause)
        cause = cause.__cause__ or cause.__context__
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", text.strip()) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text or "WRONG_VERSION_NUMBER" in text or "SSL" in text:
        return f"TLS failed ({text})"
    return text[:1].lower() + text[1:]


#: where a client finds the login for its registry (None: no login); tests give their own
Logins = Callable[[str | None], Login | None]


class RegistryClient:
    """Read-only client of one registry. Safe to use from several threads at once."""

    def __init__(
        self, registry: str | None, *, timeout: float = 10.0, transport: httpx.BaseTransport | None = None,
        logins: Logins = login_for, insecure: Insecure | None = None,
    ) -> None:
        #: the registry as the user wrote it (``127.0.0.1:5000``, ``ghcr.io``); ``docker.io`` for Docker Hub
        self.name = DOCKER_HUB if registry in (None, DOCKER_HUB, "index.docker.io", _HUB_API) else str(registry)
        self.hub = self.name == DOCKER_HUB
        host = _HUB_API if self.hub else self.name
        #: reached as the engine reaches an insecure registry: https unverified, else plain http
        self.insecure = not self.hub and (insecure or Insecure()).covers(host)
        self.base = self._https_base = f"https://{host}"
        self._host = urlsplit(self.base).hostname or ""
        self._scheme_known = not self.insecure  # whether https or http is known to be the one
        self.timeout = timeout
        given = transport or TRANSPORT
        # the certificate is not verified for an insecure registry's own host alone (not its token service's or a
        # CDN's elsewhere): as the engine does
        mounts = {f"https://{host}": httpx.HTTPTransport(verify=False)} if self.insecure and given is None else None
        self._client = httpx.Client(
            timeout=timeout, follow_redirects=True, transport=given, mounts=mounts,
            headers={"User-Agent": "dockext (marketplace)"},
            event_hooks={"request": [self._check_destination]},  # every request, redirects included
        )
        self._tokens: dict[str, str] = {}  # scope -> bearer token
        self._basic: str | None = None  # the Authorization header a Basic registry took, sent from then on
        self._logins = logins
        self._login: Login | None = None
        self._login_error: RegistryError | None = None  # why the saved login could not be read
        self._login_read = False
        self._lock = threading.Lock()

    def _check_destination(self, request: httpx.Request) -> None:
        """Requests go to https anywhere (registries send blobs to CDNs), or to plain http only on an insecure
        registry's own host (loopback: on loopback): a registry cannot redirect dockext, or name a token service,
        on the LAN, a metadata address or anything else in plain http."""
        if request.url.scheme == "https":
            return
        if request.url.scheme == "http" and self.insecure and (
                request.url.host == self._host or (is_loopback(self.name) and is_loopback(request.url.host))):
            return
        raise RegistryError(f"{self.name} sent dockext to {request.url.scheme}://{request.url.host}, which it "
                            "does not follow (https only, plain http only to an insecure registry's own host)")

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def repository_path(self, repository: str) -> str:
        """The repository as the registry's API names it (Docker Hub's official images live in ``library/``)."""
        return f"library/{repository}" if self.hub and "/" not in repository else repository

    # -- the API ------------------------------------------------------------------------------------------
    def catalog(self, *, prefix: str = "", limit: int = 200) -> tuple[list[str], bool]:
        """Repository names starting with ``prefix`` (``"acme/"``; ``""`` for all), at most ``limit`` of them;
        the flag says whether there were more (or more pages than dockext reads)."""
        if self.hub:
            raise RegistryError(
                "Docker Hub has no catalog API: its extensions cannot be listed by namespace",
                hint="List them in an extensions.txt file (one image per line) and add it with: "
                     "dockext marketplace add --list FILE",
            )
        url = f"{self.base}/v2/_catalog?n=100"
        found: list[str] = []
        seen_urls: set[str] = set()
        for _ in range(_MAX_PAGES):
            seen_urls.add(url)
            response, _, body = self._get_json(url, "the catalog", scope="registry:catalog:*")
            repositories = body.get("repositories") if isinstance(body, dict) else None
            if not isinstance(repositories, list):
                raise RegistryError(f"{self.name} answered a catalog without a repositories list")
            for repo in repositories:
                if isinstance(repo, str) and repo.startswith(prefix):
                    if len(found) >= limit:
                        return found, True
                    found.append(repo)
            following = self._next_link(url, response.headers.get("link", ""))
            if following is None or following in seen_urls:
                return found, False
            url = following
        return found, True

    def tags(self, repository: str) -> list[str]:
        """The tags of ``repository`` (``[]`` when it has none left, as after its manifests were deleted)."""
        path = self.repository_path(repository)
        _, _, body = self._get_json(f"{self.base}/v2/{path}/tags/list", f"{repository} tags", scope=_pull(path))
        tags = body.get("tags") if isinstance(body, dict) else None
        return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []

    def labels(self, repository: str, reference: str, *, architecture: str | None = None) -> ImageLabels:
        """The labels of ``repository:reference`` for ``linux/<architecture>`` (the host's by default)."""
        arch = architecture or host_architecture()
        path = self.repository_path(repository)
        what = f"{repository}:{reference}"
        manifest = self._manifest(path, reference, what)
        if _media_type(manifest) in (OCI_INDEX, DOCKER_LIST):
            manifest = self._manifest(path, _pick_platform(manifest, arch, what, self.name), what)
        kind = _media_type(manifest)
        if kind not in (OCI_MANIFEST, DOCKER_MANIFEST):
            raise RegistryError(
                f"{self.name} answered a manifest of type {kind or 'unknown'} for {what}, which dockext cannot read",
                hint="Push the image again with a current docker or buildx (image manifest v2 or OCI).",
            )
        config = manifest.get("config")
        digest = config.get("digest") if isinstance(config, dict) else None
        if not isinstance(digest, str) or not _DIGEST.match(digest):
            raise RegistryError(f"{self.name} answered a manifest without a valid config digest for {what}")
        url = f"{self.base}/v2/{path}/blobs/{digest}"
        _, content, blob = self._get_json(url, f"{repository} config blob", scope=_pull(path))
        algorithm, _, expected = digest.partition(":")
        if algorithm == "sha256" and hashlib.sha256(content).hexdigest() != expected.lower():
            raise RegistryError(f"{self.name} answered a config blob for {what} that does not match its digest")
        if not isinstance(blob, dict):
            raise RegistryError(f"{self.name} answered a config blob for {what} that is not a JSON object")
        inner = blob.get("config") if isinstance(blob.get("config"), dict) else {}
        raw = inner.get("Labels") if isinstance(inner, dict) else None
        labels = {str(k): v for k, v in raw.items() if isinstance(v, str)} if isinstance(raw, dict) else {}
        return ImageLabels(
            repository=repository, reference=reference, labels=labels,
            os=str(blob.get("os") or ""), architecture=str(blob.get("architecture") or ""),
        )

    # -- HTTP ---------------------------------------------------------------------------------------------
    def _manifest(self, path: str, reference: str, what: str) -> dict[str, Any]:
        url = f"{self.base}/v2/{path}/manifests/{reference}"
        response, _, body = self._get_json(url, f"{what} manifest", scope=_pull(path), accept=ACCEPT_MANIFESTS)
        if not isinstance(body, dict):
            raise RegistryError(f"{self.name} answered a manifest for {what} that is not a JSON object")
        if "mediaType" not in body:  # OCI manifests may leave it out; the header says it then
            body = {**body, "mediaType": response.headers.get("content-type", "").split(";")[0].strip()}
        return body

    def _next_link(self, current: str, header: str) -> str | None:
        """The ``rel="next"`` URL of a ``Link`` header, resolved against ``current``; only on this registry."""
        for part in header.split(","):
            m = re.match(r'\s*<([^>]*)>\s*;(.*)', part)
            if m and re.search(r'rel\s*=\s*"?next"?', m.group(2)):
                try:
                    url: str = urljoin(current, str(m.group(1)))
                    netloc = urlsplit(url).netloc
                except ValueError:
                    raise RegistryError(f"{self.name} sent a next catalog page that is not a URL") from None
                if netloc != urlsplit(self.base).netloc:
                    raise RegistryError(f"{self.name} sent the next catalog page to another host ({url})")
                return url
        return None

    def _get_json(
        self, url: str, what: str, *, scope: str, accept: str = "application/json"
    ) -> tuple[httpx.Response, bytes, Any]:
        response, content = self._get(url, what, scope=scope, accept=accept)
        try:
            return response, content, json.loads(content)
        except (ValueError, RecursionError):
            raise RegistryError(f"{self.name} answered something that is not JSON for {what}") from None

    def _get(self, url: str, what: str, *, scope: str, accept: str) -> tuple[httpx.Response, bytes]:
        headers = {"Accept": accept}
        authorization = self._tokens.get(scope) or self._basic
        if authorization:
            headers["Authorization"] = authorization
        response, content = self._send(url, headers, what)
        login = self._login if authorization else None  # what a kept token or Basic header was got with
        if response.status_code == 401:  # no token yet, or an expired one: one challenge, one retry
            challenge = response.headers.get("www-authenticate", "")
            scheme, params = parse_challenge(challenge)
            login = self._saved_login()
            if scheme == "bearer" and params.get("realm"):
                headers["Authorization"] = self._token(params, scope, login)
            elif scheme == "basic" and login is not None and not login.identity_token:
                basic = base64.b64encode(f"{login.username}:{login.secret}".encode()).decode("ascii")
                with self._lock:
                    self._basic = headers["Authorization"] = f"Basic {basic}"
            else:
                kind = challenge.split(" ")[0] or "no challenge"
                raise RegistryError(f"{self.name} asks for a login to read {what} ({kind})",
                                    hint=self._login_hint(login, private=False))
            response, content = self._send(url, headers, what)
        if response.status_code in (401, 403):
            if login is None:
                login = self._saved_login()  # an answer without a challenge: say what there is to know
                raise RegistryError(f"{self.name} refused anonymous access to {what} ({response.status_code})",
                                    hint=self._login_hint(login, private=True))
            raise RegistryError(
                f"{self.name} refused {login.who} (from {login.where}) access to {what} ({response.status_code})",
                hint=f"Log in again with an account that may read it: {login_command(self._login_name)}",
            )
        if response.status_code >= 400:
            raise RegistryError(f"{self.name} answered {response.status_code} for {what}")
        return response, content

    # -- logins -------------------------------------------------------------------------------------------
    @property
    def _login_name(self) -> str | None:
        return None if self.hub else self.name

    def _saved_login(self) -> Login | None:
        """The login saved for this registry, looked up once (when the registry first asks for one)."""
        with self._lock:
            if not self._login_read:
                try:
                    self._login = self._logins(self._login_name)
                except RegistryError as exc:
                    self._login_error = exc
                self._login_read = True
            return self._login

    def _login_hint(self, login: Login | None, *, private: bool) -> str:
        command = login_command(self._login_name)
        if self._login_error is not None:
            return f"The login saved for {self.name} could not be read ({self._login_error.message}): {command}"
        if login is not None and login.identity_token:  # saved, but not what a Basic registry takes
            return (f"The login saved for {self.name} ({login.where}) is an identity token, which this registry does "
                    f"not take (it asks for a user and password): {command}")
        if login is not None:  # a refusal without a challenge: the login was never asked for
            return (f"{self.name} refused without asking for a login, so {login.who} saved for it ({login.where}) "
                    "was not sent: check the name, and that the repository may be read.")
        lead = "If the repository is private, log" if private else "Log"
        return (f"{lead} in with `{command}`: dockext reads registries with the logins the Docker CLI saved "
                "(config.json or its credential helper).")

    def _token(self, params: dict[str, str], scope: str, login: Login | None) -> str:
        """A token for ``scope`` from the challenge's realm (with the saved login, if any), as the header value."""
        realm = params["realm"]
        if urlsplit(realm).scheme not in ("http", "https"):
            raise RegistryError(f"{self.name} names a token service that is not an http(s) URL: {realm!r}")
        query = {"service": params.get("service", ""), "scope": params.get("scope") or scope}
        query = {k: v for k, v in query.items() if v}
        request: httpx.Request
        if login is not None and login.identity_token:  # OAuth2, as the Docker engine does with one
            form = {**query, "grant_type": "refresh_token", "refresh_token": login.secret, "client_id": "dockext"}
            request = self._client.build_request("POST", realm, data=form, headers={"Accept": "application/json"})
        elif login is not None:
            basic = base64.b64encode(f"{login.username}:{login.secret}".encode()).decode("ascii")
            request = self._client.build_request("GET", realm, params={**query, "account": login.username},
                                                 headers={"Accept": "application/json",
                                                          "Authorization": f"Basic {basic}"})
        else:
            request = self._client.build_request("GET", realm, params=query, headers={"Accept": "application/json"})
        try:
            response = self._client.send(request, stream=True)
            try:
                content = _read_limited(response, f"the token of {self.name}") if response.is_success else b""
            finally:
                response.close()
        except httpx.TimeoutException:
            raise RegistryError(f"the token service of {self.name} did not answer within {self.timeout:g} s") from None
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            raise RegistryError(f"cannot reach the token service of {self.name} ({realm}): {_reason(exc)}") from None
        if response.status_code in (400, 401, 403) and login is not None:
            raise RegistryError(
                f"the token service of {self.name} refused {login.who} (from {login.where}): "
                f"{response.status_code}",
                hint=f"Log in again: {login_command(self._login_name)}",
            )
        if response.status_code >= 400:
            raise RegistryError(f"the token service of {self.name} answered {response.status_code} ({realm})")
        try:
            body = json.loads(content)
        except ValueError:
            body = None
        token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"the token service of {self.name} answered without a token ({realm})")
        with self._lock:
            self._tokens[scope] = f"Bearer {token}"
        return f"Bearer {token}"

    def _send(self, url: str, headers: dict[str, str], what: str) -> tuple[httpx.Response, bytes]:
        """GET ``url``; the body is read (at most 4 MiB) only for a successful answer. An insecure registry's
        first request tries https; if no TLS server answers there, this one and every later one go in plain
        http (as the engine falls back)."""
        https = self._https_base
        if self.base != https and url.startswith(https):  # an insecure registry that turned out to speak http
            url = "http" + url[len("https"):]
        if self._scheme_known or not url.startswith(https):
            return self._send_once(url, headers, what)
        try:
            result = self._send_once(url, headers, what, fall_back=True)
        except _NotTls:
            with self._lock:
                self._scheme_known = True
                self.base = "http" + self.base[len("https"):]
            return self._send_once("http" + url[len("https"):], headers, what)
        self._scheme_known = True
        return result

    def _send_once(self, url: str, headers: dict[str, str], what: str, *,
                   fall_back: bool = False) -> tuple[httpx.Response, bytes]:
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                return response, _read_limited(response, f"{what} from {self.name}") if response.is_success else b""
        except httpx.ConnectTimeout:
            raise RegistryError(f"cannot reach {self.name}: no connection within {self.timeout:g} s") from None
        except httpx.TimeoutException:
            raise RegistryError(f"{self.name} did not answer within {self.timeout:g} s for {what}") from None
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            if fall_back:  # a plain-http server answers a TLS hello with garbage, or hangs up
                raise _NotTls from None
            if not isinstance(exc, httpx.ConnectError):
                raise RegistryError(
                    f"the connection to {self.name} failed while reading {what}: {_reason(exc)}") from None
            reason = _reason(exc)
            hint = None
            if reason.startswith("TLS") and not self.insecure:
                hint = ("dockext speaks https with a verified certificate to this registry, as the Docker engine "
                        "does. If it speaks plain http, or has a certificate this machine does not trust, list it "
                        "in \"insecure-registries\" of the engine's daemon.json and restart the engine: dockext "
                        "follows the engine's list, as `docker pull` does.")
            raise RegistryError(f"cannot reach {self.name}: {reason}", hint=hint) from None
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            raise RegistryError(f"the connection to {self.name} failed while reading {what}: {_reason(exc)}") from None


class _NotTls(Exception):
    """No TLS server where an insecure registry's https was tried."""


def _read_limited(response: httpx.Response, what: str) -> bytes:
    """The body, at most 4 MiB, and within a whole-answer deadline (the client's timeout is per read: a byte now
    and then would otherwise hold a catalog for hours)."""
    chunks: list[bytes] = []
    size = 0
    deadline = time.monotonic() + _ANSWER_SECONDS
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > _MAX_JSON:
            raise RegistryError(f"{what} is larger than {_MAX_JSON // (1024 * 1024)} MiB: refused")
        if time.monotonic() > deadline:
            raise RegistryError(f"{what} took more than {_ANSWER_SECONDS:g} s to arrive: refused")
        chunks.append(chunk)
    return b"".join(chunks)


def _pull(path: str) -> str:
    return f"repository:{path}:pull"


def _media_type(manifest: dict[str, Any]) -> str:
    kind = manifest.get("mediaType")
    if isinstance(kind, str) and kind:
        return kind
    if isinstance(manifest.get("manifests"), list):
        return OCI_INDEX
    return ""


def _pick_platform(index: dict[str, Any], arch: str, what: str, registry: str) -> str:
    """The digest of the ``linux/<arch>`` manifest of a multi-platform index."""
    offered: list[str] = []
    for item in index.get("manifests") or []:
        if not isinstance(item, dict):
            continue
        plat: dict[str, Any] = item["platform"] if isinstance(item.get("platform"), dict) else {}
        os_name, item_arch = str(plat.get("os", "")), str(plat.get("architecture", ""))
        if os_name == "unknown" or not os_name:  # buildx attestations
            continue
        offered.append(f"{os_name}/{item_arch}")
        digest = item.get("digest")
        if os_name == "linux" and item_arch == arch and isinstance(digest, str) and _DIGEST.match(digest):
            return digest
    raise RegistryError(
        f"{what} on {registry} has no linux/{arch} image (it has {', '.join(offered) or 'no platform'})",
        hint="Docker Desktop also shows only the extensions built for the machine's platform.",
    )
