"""The Marketplace: sources and their settings file, extensions.txt, the allow-list, and the registry client
(against httpx.MockTransport fakes of the Distribution API)."""

from __future__ import annotations

import hashlib
import json
import re
import stat
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from dockext import marketplace, registry
from dockext.errors import InvalidImageReference, InvalidSource, NotListed, RegistryError, SourceNotFound, StateError
from dockext.installer import Installer
from dockext.paths import Layout

EXT_LABELS = {
    "org.opencontainers.image.title": "My Ext",
    "org.opencontainers.image.vendor": "Acme, Inc.",
    "org.opencontainers.image.description": "Does things.",
    "com.docker.desktop.extension.api.version": ">= 0.3.3",
    "com.docker.extension.categories": "utility-tools,security",
    "com.docker.extension.publisher-url": "https://acme.example",
}


@pytest.fixture(autouse=True)
def _fresh_cache():
    marketplace.clear_cache()
    yield
    marketplace.clear_cache()


@pytest.fixture
def lay(tmp_path) -> Layout:
    return Layout(tmp_path / "home")


# ------------------------------------------------------------------------------------------------------------
# A fake registry (Distribution API v2) for httpx.MockTransport
# ------------------------------------------------------------------------------------------------------------


class FakeRegistry:
    """``images[repo][tag]`` = labels (a single-platform image) or ``{"arch": labels, ...}`` with
    ``multi=True`` (an OCI index). ``token`` set: every /v2/ request needs ``Bearer <token>``."""

    def __init__(self, host: str = "127.0.0.1:5000", *, page: int = 100, token: str | None = None) -> None:
        self.host = host
        self.page = page
        self.token = token
        self.images: dict[str, dict[str, Any]] = {}
        self.multi: set[tuple[str, str]] = set()
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, bytes] = {}
        self.requests: list[httpx.Request] = []
        self.token_requests: list[httpx.Request] = []
        self.fail: dict[str, int] = {}  # path suffix -> status

    def add(self, repo: str, tag: str, labels: dict[str, str] | None, *, platforms: dict[str, Any] | None = None):
        if platforms is not None:
            self.images.setdefault(repo, {})[tag] = platforms
            self.multi.add((repo, tag))
        else:
            self.images.setdefault(repo, {})[tag] = labels

    def _manifest_for(self, labels: dict[str, str] | None, arch: str = "amd64") -> bytes:
        config = json.dumps({"architecture": arch, "os": "linux", "config": {"Labels": labels}}).encode()
        digest = "sha256:" + hashlib.sha256(config).hexdigest()
        self.blobs[digest] = config
        return json.dumps({
            "schemaVersion": 2, "mediaType": registry.DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": digest,
                       "size": len(config)},
            "layers": [],
        }).encode()

    def _index_for(self, platforms: dict[str, Any]) -> bytes:
        items = []
        for arch, labels in platforms.items():
            body = self._manifest_for(labels, arch)
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            self.manifests[digest] = body
            os_name = "unknown" if arch == "unknown" else "linux"
            items.append({"mediaType": registry.OCI_MANIFEST, "digest": digest, "size": len(body),
                          "platform": {"os": os_name, "architecture": arch}})
        return json.dumps({"schemaVersion": 2, "mediaType": registry.OCI_INDEX, "manifests": items}).encode()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example":
            self.token_requests.append(request)
            return httpx.Response(200, json={"token": self.token})
        self.requests.append(request)
        assert request.url.host == self.host.split(":")[0]
        path = request.url.path
        for suffix, status in self.fail.items():
            if path.endswith(suffix):
                return httpx.Response(status, json={"errors": [{"code": "X"}]})
        if self.token and request.headers.get("authorization") != f"Bearer {self.token}":
            scope = "registry:catalog:*" if path.endswith("_catalog") else "repository:" + path.split("/v2/")[1].rsplit(
                "/", 2)[0] + ":pull"
            return httpx.Response(401, headers={
                "WWW-Authenticate": f'Bearer realm="https://auth.example/token",service="reg",scope="{scope}"'})
        if path == "/v2/_catalog":
            names = sorted(self.images)
            last = request.url.params.get("last")
            if last:
                names = [n for n in names if n > last]
            n = int(request.url.params.get("n", "100"))
            page = names[: min(n, self.page)]
            headers = {}
            if len(names) > len(page):
                headers["Link"] = f'</v2/_catalog?last={page[-1]}&n={n}>; rel="next"'
            return httpx.Response(200, json={"repositories": page}, headers=headers)
        repo, _, rest = path.removeprefix("/v2/").rpartition("/")
        if rest == "list" and repo.endswith("/tags"):
            repo = repo.removesuffix("/tags")
            if repo not in self.images:
                return httpx.Response(404, json={"errors": [{"code": "NAME_UNKNOWN"}]})
            return httpx.Response(200, json={"name": repo, "tags": list(self.images[repo])})
        repo, kind, ref = path.removeprefix("/v2/").rpartition("/")[0].rpartition("/")[0], "", ""
        parts = path.removeprefix("/v2/").split("/")
        repo, kind, ref = "/".join(parts[:-2]), parts[-2], parts[-1]
        if kind == "manifests":
            if ref in self.manifests:
                return httpx.Response(200, content=self.manifests[ref],
                                      headers={"Content-Type": registry.OCI_MANIFEST})
            if ref not in self.images.get(repo, {}):
                return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN"}]})
            value = self.images[repo][ref]
            if (repo, ref) in self.multi:
                return httpx.Response(200, content=self._index_for(value), headers={"Content-Type": registry.OCI_INDEX})
            return httpx.Response(200, content=self._manifest_for(value),
                                  headers={"Content-Type": registry.DOCKER_MANIFEST})
        if kind == "blobs" and ref in self.blobs:
            return httpx.Response(200, content=self.blobs[ref])
        return httpx.Response(404, json={"errors": [{"code": "BLOB_UNKNOWN"}]})


def client_for(fake: FakeRegistry, name: str | None = None) -> registry.RegistryClient:
    return registry.RegistryClient(name or fake.host, transport=httpx.MockTransport(fake))


# ------------------------------------------------------------------------------------------------------------
# Settings file
# ------------------------------------------------------------------------------------------------------------


def test_settings_round_trip_through_the_file(lay, tmp_path):
    assert marketplace.load(lay) == marketplace.Settings()
    reg = marketplace.add_registry(lay, "127.0.0.1:5000/acme")
    assert reg == marketplace.Source(kind="registry", registry="127.0.0.1:5000", namespace="acme")
    assert reg.label == "127.0.0.1:5000/acme"
    whole = marketplace.add_registry(lay, "registry.example.com/")
    assert whole.label == "registry.example.com" and whole.namespace is None
    listing = tmp_path / "extensions.txt"
    listing.write_text("127.0.0.1:5000/acme/x:1.2.0\n")
    lst = marketplace.add_list(lay, listing)
    assert lst.label == str(listing) and lst.images == ("127.0.0.1:5000/acme/x:1.2.0",)
    on = marketplace.set_only_listed(lay, True)
    assert on == marketplace.Settings(sources=(reg, whole, lst), only_listed=True)
    assert marketplace.load(lay) == on

    path = lay.root / "marketplace.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    body = json.loads(path.read_text())
    assert body["schema"] == 1 and body["only_listed"] is True
    assert body["sources"][0] == {"kind": "registry", "registry": "127.0.0.1:5000", "namespace": "acme"}

    assert marketplace.remove(lay, "127.0.0.1:5000/acme") == reg
    assert marketplace.remove(lay, str(listing)) == lst
    assert marketplace.load(lay) == marketplace.Settings(sources=(whole,), only_listed=True)
    assert marketplace.set_only_listed(lay, False).only_listed is False


def test_duplicates_and_unknown_sources_are_refused(lay, tmp_path):
    marketplace.add_registry(lay, "127.0.0.1:5000/acme")
    with pytest.raises(InvalidSource, match=re.escape("127.0.0.1:5000/acme is already there")):
        marketplace.add_registry(lay, "127.0.0.1:5000/acme/")
    listing = tmp_path / "l.txt"
    listing.write_text("acme/x\n")
    marketplace.add_list(lay, listing)
    with pytest.raises(InvalidSource, match="already there") as exc:
        marketplace.add_list(lay, listing)
    assert "dockext marketplace rm" in str(exc.value.hint)
    with pytest.raises(SourceNotFound, match=re.escape("no marketplace source 127.0.0.1:5000/other")) as missing:
        marketplace.remove(lay, "127.0.0.1:5000/other")
    assert missing.value.http_status == 404
    assert "127.0.0.1:5000/acme" in missing.value.message


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("acme", "does not start with a registry"),
        ("acme/x", "does not start with a registry"),
        ("http://127.0.0.1:5000", "without a scheme"),
        ("docker.io/acme", "Docker Hub has no catalog API"),
        ("127.0.0.1:5000/Acme", "lower case"),
        ("127.0.0.1:5000/acme:1.0", "is not REGISTRY"),
        ("127.0.0.1:5000/acme x", "whitespace"),
        ("", "is not REGISTRY"),
    ],
)
def test_bad_registry_specs_are_refused_with_the_reason(lay, spec, problem):
    with pytest.raises(InvalidSource, match=problem):
        marketplace.add_registry(lay, spec)
    assert marketplace.load(lay) == marketplace.Settings()


def test_an_unreadable_or_newer_settings_file_is_an_error_not_no_restriction(lay):
    lay.root.mkdir(parents=True)
    path = lay.root / "marketplace.json"
    path.write_text("{not json")
    with pytest.raises(StateError, match="unreadable"):
        marketplace.load(lay)
    with pytest.raises(StateError):
        marketplace.check_allowed(lay, "acme/x:1.0")
    path.write_text(json.dumps({"schema": 2, "only_listed": True, "sources": []}))
    with pytest.raises(StateError, match="schema 2"):
        marketplace.load(lay)
    path.write_text(json.dumps({"schema": 1, "only_listed": "yes", "sources": []}))
    with pytest.raises(StateError, match="invalid"):
        marketplace.load(lay)
    for odd in (5, {"kind": "registry"}, "127.0.0.1:5000", [5]):  # hand edits of another shape: named, no crash
        path.write_text(json.dumps({"schema": 1, "only_listed": True, "sources": odd}))
        with pytest.raises(StateError, match="invalid"):
            marketplace.check_allowed(lay, "acme/x:1.0")


# ------------------------------------------------------------------------------------------------------------
# extensions.txt
# ------------------------------------------------------------------------------------------------------------


def test_extensions_txt_lines_comments_and_tags(lay, tmp_path):
    listing = tmp_path / "extensions.txt"
    listing.write_text(
        "# allowed extensions\n"
        "\n"
        "docker/volumes-backup-extension:1.1.4\n"
        "   127.0.0.1:5000/acme/x     # the latest version\n"
        "#127.0.0.1:5000/acme/commented-out\n"
        "docker.io/portainer/portainer-docker-extension:2.19.4\n"
        "docker/volumes-backup-extension:1.1.4\n"
    )
    source = marketplace.add_list(lay, listing)
    assert source.kind == "list" and source.path == str(listing)
    assert source.images == (
        "docker/volumes-backup-extension:1.1.4",
        "127.0.0.1:5000/acme/x",
        "portainer/portainer-docker-extension:2.19.4",
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("acme/x\n\n# c\nAcme/Y:1\n", r"line 4: invalid image reference \"Acme/Y:1\""),
        ("acme/x:\n", "line 1: .*the tag after \":\" is empty"),
        ("acme/x\nacme/y@sha256:" + "a" * 64 + "\n", "line 2: .*names a digest"),
        ("# nothing\n\n", "lists no image"),
    ],
)
def test_extensions_txt_errors_name_the_line(lay, tmp_path, text, problem):
    listing = tmp_path / "extensions.txt"
    listing.write_text(text)
    with pytest.raises(InvalidSource, match=problem) as exc:
        marketplace.add_list(lay, listing)
    assert str(listing) in exc.value.message
    assert marketplace.load(lay) == marketplace.Settings()


def test_a_missing_list_file_is_named(lay, tmp_path):
    with pytest.raises(InvalidSource, match=re.escape("no-such.txt: no such file")):
        marketplace.add_list(lay, tmp_path / "no-such.txt")


# ------------------------------------------------------------------------------------------------------------
# listed() and check_allowed()
# ------------------------------------------------------------------------------------------------------------


def settings_of(*sources: marketplace.Source, on: bool = True) -> marketplace.Settings:
    return marketplace.Settings(sources=sources, only_listed=on)


def reg(spec: str) -> marketplace.Source:
    return marketplace.parse_registry_spec(spec)


def lst(*images: str) -> marketplace.Source:
    return marketplace.Source(kind="list", images=marketplace.parse_list("\n".join(images), "l.txt"), path="l.txt")


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("127.0.0.1:5000/acme/x", True),
        ("127.0.0.1:5000/acme/x:2.0.0", True),
        ("127.0.0.1:5000/acme/sub/x:1", True),
        ("127.0.0.1:5000/acme/x@sha256:" + "b" * 64, True),
        ("127.0.0.1:5000/acme2/x:1", False),
        ("127.0.0.1:5000/acmex:1", False),
        ("127.0.0.1:5000/acme:1", False),
        ("127.0.0.1:5001/acme/x:1", False),
        ("localhost:5000/acme/x:1", False),
        ("acme/x:1", False),
        ("not an image", False),
    ],
)
def test_a_registry_source_lists_its_namespace(image, expected):
    assert marketplace.listed(settings_of(reg("127.0.0.1:5000/acme")), image) is expected


def test_a_whole_registry_source_lists_every_repository_there():
    s = settings_of(reg("127.0.0.1:5000"))
    assert marketplace.listed(s, "127.0.0.1:5000/x:1")
    assert marketplace.listed(s, "127.0.0.1:5000/a/b/c")
    assert not marketplace.listed(s, "127.0.0.2:5000/x:1")


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("127.0.0.1:5000/acme/x:1.0.0", True),
        ("127.0.0.1:5000/acme/x:2.0.0", False),  # the list pins 1.0.0: "only the version you've listed"
        ("127.0.0.1:5000/acme/x", False),  # = :latest
        ("127.0.0.1:5000/acme/any:0.1.0", True),  # no tag in the list: any version
        ("127.0.0.1:5000/acme/any", True),
        ("127.0.0.1:5000/acme/pinned-latest", True),
        ("127.0.0.1:5000/acme/pinned-latest:latest", True),
        ("docker.io/docker/volumes-backup-extension:1.1.4", True),  # Docker Hub spelled out
        ("docker/volumes-backup-extension:1.1.4", True),
        ("docker/volumes-backup-extension:1.1.5", False),
        ("127.0.0.1:5000/acme/other:1.0.0", False),
    ],
)
def test_a_list_source_lists_its_repositories_at_the_pinned_tag(image, expected):
    s = settings_of(lst("127.0.0.1:5000/acme/x:1.0.0", "127.0.0.1:5000/acme/any",
                        "127.0.0.1:5000/acme/pinned-latest:latest", "docker/volumes-backup-extension:1.1.4"))
    assert marketplace.listed(s, image) is expected


def test_an_image_id_an_older_dockext_let_into_a_list_names_nothing_and_breaks_nothing():
    """Image IDs are no longer names (`sha256:<hex>` parsed as the image "sha256"): a list saved before holds one."""
    saved = marketplace.Source(kind="list", images=("sha256:" + "ab" * 32, "127.0.0.1:5000/acme/x"), path="l.txt")
    assert marketplace.listed(settings_of(saved), "127.0.0.1:5000/acme/x:1.0.0") is True
    assert marketplace.listed(settings_of(saved), "127.0.0.1:5000/acme/y:1.0.0") is False


def test_check_allowed_only_when_only_listed_is_on(lay, tmp_path):
    marketplace.check_allowed(lay, "anything/at-all:1")  # no settings: anything goes
    marketplace.add_registry(lay, "127.0.0.1:5000/acme")
    listing = tmp_path / "extensions.txt"
    listing.write_text("127.0.0.1:5000/other/x:1.0.0\n")
    marketplace.add_list(lay, listing)
    marketplace.check_allowed(lay, "anything/at-all:1")  # off: anything goes
    marketplace.set_only_listed(lay, True)
    marketplace.check_allowed(lay, "127.0.0.1:5000/acme/x:3.0.0")
    marketplace.check_allowed(lay, "127.0.0.1:5000/other/x:1.0.0")
    with pytest.raises(NotListed) as exc:
        marketplace.check_allowed(lay, "127.0.0.1:5000/other/x:2.0.0")
    err = exc.value
    assert err.http_status == 403 and err.type == "NotListed"
    assert err.message == (
        f"127.0.0.1:5000/other/x:2.0.0 is not listed by the marketplace sources (127.0.0.1:5000/acme, {listing}) "
        "(the listed versions: 1.0.0), and only listed extensions may be installed"
    )
    assert "`dockext marketplace only-listed off`" in str(err.hint) and "administrator" in str(err.hint)
    with pytest.raises(NotListed, match=r"^hub/x:latest is not listed"):
        marketplace.check_allowed(lay, "hub/x")
    with pytest.raises(InvalidImageReference):
        marketplace.check_allowed(lay, "Bad Ref")


def test_check_allowed_without_any_source_says_there_is_none(lay):
    marketplace.set_only_listed(lay, True)
    with pytest.raises(NotListed, match="there is no source"):
        marketplace.check_allowed(lay, "acme/x:1")


def test_install_and_update_refuse_an_unlisted_image_before_anything_else(lay):
    marketplace.set_only_listed(lay, True)
    installer = Installer(lay, engine=cast(Any, object()), compose=cast(Any, object()))
    lock_existed = lay.lock_file.exists()
    with pytest.raises(NotListed, match=re.escape("acme/x:1.0 cannot be installed")):
        installer.install("acme/x:1.0")
    with pytest.raises(NotListed):
        installer.update("acme/x:2.0")
    assert lay.lock_file.exists() == lock_existed
    assert not lay.extensions.exists() or list(lay.extensions.iterdir()) == []


# ------------------------------------------------------------------------------------------------------------
# The registry client
# ------------------------------------------------------------------------------------------------------------


def test_catalog_follows_link_pages_and_filters_by_namespace():
    fake = FakeRegistry(page=2)
    for repo in ("acme/a", "acme/b", "acme2/c", "acme/d", "zeta/e", "acme/f", "acmex"):
        fake.add(repo, "1.0.0", EXT_LABELS)
    with client_for(fake) as client:
        repos, more = client.catalog(prefix="acme/")
        assert (repos, more) == (["acme/a", "acme/b", "acme/d", "acme/f"], False)
        pages = [r for r in fake.requests if r.url.path == "/v2/_catalog"]
        assert len(pages) == 4 and pages[0].url.params["n"] == "100"
        assert pages[1].url.params["last"] == "acme/b"
        assert client.catalog(prefix="acme/", limit=3) == (["acme/a", "acme/b", "acme/d"], True)
        assert client.catalog()[0] == sorted(fake.images)


def test_catalog_refuses_a_next_page_on_another_host():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"repositories": ["a"]},
                              headers={"Link": '<https://evil.example/v2/_catalog?n=100>; rel="next"'})

    client = registry.RegistryClient("127.0.0.1:5000", transport=httpx.MockTransport(handler))
    with client, pytest.raises(RegistryError, match="another host"):
        client.catalog()


def test_labels_of_a_single_platform_image_and_the_scheme():
    fake = FakeRegistry("127.0.0.1:5000")
    fake.add("acme/x", "1.0.0", EXT_LABELS)
    tried: list[str] = []

    def plain_http_only(request: httpx.Request) -> httpx.Response:
        tried.append(request.url.scheme)
        if request.url.scheme == "https":
            raise httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1000)")
        return fake(request)

    with registry.RegistryClient(fake.host, transport=httpx.MockTransport(plain_http_only)) as client:
        got = client.labels("acme/x", "1.0.0")
    assert got.labels == EXT_LABELS and got.os == "linux"
    # loopback is insecure, as for the engine: https tried once, then plain http
    assert tried[0] == "https" and set(tried[1:]) == {"http"} and len(tried) == len(fake.requests) + 1
    manifest_request = next(r for r in fake.requests if "/manifests/" in r.url.path)
    accept = manifest_request.headers["accept"]
    for media in (registry.OCI_INDEX, registry.DOCKER_LIST, registry.OCI_MANIFEST, registry.DOCKER_MANIFEST):
        assert media in accept


def test_other_registries_are_spoken_to_over_https():
    fake = FakeRegistry("registry.example.com")
    fake.add("acme/x", "1.0.0", EXT_LABELS)
    with client_for(fake) as client:
        client.tags("acme/x")
    assert fake.requests[0].url == httpx.URL("https://registry.example.com/v2/acme/x/tags/list")
    assert registry.is_loopback("localhost:5000") and registry.is_loopback("[::1]:5000")
    assert registry.is_loopback("127.0.0.2:5000") and not registry.is_loopback("10.0.0.1:5000")


def test_a_manifest_list_gives_the_linux_image_of_the_host_architecture():
    fake = FakeRegistry()
    fake.add("acme/x", "1.0.0", None, platforms={
        "unknown": {"attestation": "yes"},
        "arm64": {**EXT_LABELS, "arch": "arm64"},
        "amd64": {**EXT_LABELS, "arch": "amd64"},
    })
    with client_for(fake) as client:
        assert client.labels("acme/x", "1.0.0", architecture="arm64").labels["arch"] == "arm64"
        assert client.labels("acme/x", "1.0.0", architecture="amd64").labels["arch"] == "amd64"
        default = client.labels("acme/x", "1.0.0").labels["arch"]
        assert default == registry.host_architecture()
        with pytest.raises(RegistryError) as exc:
            client.labels("acme/x", "1.0.0", architecture="s390x")
    assert exc.value.message == (
        "acme/x:1.0.0 on 127.0.0.1:5000 has no linux/s390x image (it has linux/arm64, linux/amd64)"
    )


def test_bearer_challenge_gets_an_anonymous_token_once_per_scope():
    fake = FakeRegistry("registry.example.com", token="t0k3n")
    fake.add("acme/x", "1.0.0", EXT_LABELS)
    fake.add("acme/x", "1.1.0", EXT_LABELS)
    with client_for(fake) as client:
        assert sorted(client.tags("acme/x")) == ["1.0.0", "1.1.0"]
        assert client.labels("acme/x", "1.1.0").labels == EXT_LABELS
        assert client.catalog() == (["acme/x"], False)
    scopes = [parse_qs(urlsplit(str(r.url)).query) for r in fake.token_requests]
    assert scopes == [
        {"service": ["reg"], "scope": ["repository:acme/x:pull"]},
        {"service": ["reg"], "scope": ["registry:catalog:*"]},
    ]
    assert "authorization" not in fake.token_requests[0].headers  # anonymous
    assert all(r.headers.get("authorization") in (None, "Bearer t0k3n") for r in fake.requests)


def test_the_challenge_parser_reads_quoted_and_bare_values():
    assert registry.parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                                    'scope="repository:library/nginx:pull,push"') == (
        "bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                   "scope": "repository:library/nginx:pull,push"})
    assert registry.parse_challenge('Basic realm=x') == ("basic", {"realm": "x"})


def test_a_basic_auth_registry_is_named_as_needing_a_login():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="Registry Realm"'})

    client = registry.RegistryClient("registry.example.com", transport=httpx.MockTransport(handler))
    with client, pytest.raises(RegistryError) as exc:
        client.tags("acme/x")
    assert exc.value.message == "registry.example.com asks for a login to read acme/x tags (Basic)"
    assert str(exc.value.hint).startswith("Log in with `docker login registry.example.com`")


def test_docker_hub_names_and_official_images():
    fake = FakeRegistry("registry-1.docker.io")
    fake.add("library/nginx", "1.0.0", EXT_LABELS)
    with client_for(fake, name=None) as client:
        assert client.name == "docker.io"
        assert client.tags("nginx") == ["1.0.0"]
        with pytest.raises(RegistryError, match="Docker Hub has no catalog API"):
            client.catalog()
    assert str(fake.requests[0].url) == "https://registry-1.docker.io/v2/library/nginx/tags/list"


def raising(exc: Exception):
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(
    ("transport", "message"),
    [
        (raising(httpx.ConnectError("[Errno 111] Connection refused")),
         "cannot reach 127.0.0.1:5001: connection refused"),
        (raising(httpx.ConnectTimeout("timed out")), "cannot reach 127.0.0.1:5001: no connection within 10 s"),
        (raising(httpx.ReadTimeout("timed out")), "127.0.0.1:5001 did not answer within 10 s for acme/x tags"),
        (raising(httpx.RemoteProtocolError("peer closed connection")),
         "the connection to 127.0.0.1:5001 failed while reading acme/x tags: peer closed connection"),
        (httpx.MockTransport(lambda r: httpx.Response(404, json={"errors": []})),
         "127.0.0.1:5001 answered 404 for acme/x tags"),
        (httpx.MockTransport(lambda r: httpx.Response(500, text="boom")),
         "127.0.0.1:5001 answered 500 for acme/x tags"),
        (httpx.MockTransport(lambda r: httpx.Response(200, text="<html>")),
         "127.0.0.1:5001 answered something that is not JSON for acme/x tags"),
        (httpx.MockTransport(lambda r: httpx.Response(403, json={})),
         "127.0.0.1:5001 refused anonymous access to acme/x tags (403)"),
    ],
)
def test_network_and_http_failures_become_registry_errors(transport, message):
    client = registry.RegistryClient("127.0.0.1:5001", transport=transport)
    with client, pytest.raises(RegistryError) as exc:
        client.tags("acme/x")
    assert exc.value.message == message
    assert exc.value.http_status == 502


def test_a_tls_failure_names_the_engines_insecure_registries():
    client = registry.RegistryClient(
        "registry.example.com:5000",
        transport=raising(httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1000)")),
    )
    with client, pytest.raises(RegistryError) as exc:
        client.tags("acme/x")
    assert exc.value.message.startswith("cannot reach registry.example.com:5000: TLS failed")
    assert '"insecure-registries" of the engine\'s daemon.json' in str(exc.value.hint)


def test_a_config_blob_that_does_not_match_its_digest_is_refused():
    fake = FakeRegistry()
    fake.add("acme/x", "1.0.0", EXT_LABELS)

    def forging(request: httpx.Request) -> httpx.Response:
        if "/blobs/" in request.url.path:
            return httpx.Response(200, content=b'{"config": {"Labels": {"forged": "yes"}}}')
        return fake(request)

    client = registry.RegistryClient(fake.host, transport=httpx.MockTransport(forging))
    with client, pytest.raises(RegistryError) as exc:
        client.labels("acme/x", "1.0.0")
    assert exc.value.message == "127.0.0.1:5000 answered a config blob for acme/x:1.0.0 that does not match its digest"


# ------------------------------------------------------------------------------------------------------------
# browse(): the catalog over sources
# ------------------------------------------------------------------------------------------------------------


@pytest.fixture
def fake(monkeypatch) -> FakeRegistry:
    fake = FakeRegistry()
    monkeypatch.setattr(registry, "TRANSPORT", httpx.MockTransport(fake))
    return fake


def test_browse_lists_the_extensions_of_a_namespace_at_their_greatest_semver_tag(fake):
    fake.add("acme/x", "1.9.0", {**EXT_LABELS, "org.opencontainers.image.title": "old"})
    fake.add("acme/x", "1.10.0", {**EXT_LABELS, "org.opencontainers.image.title": "Zeta Tool"})
    fake.add("acme/x", "v1.2.0", EXT_LABELS)
    fake.add("acme/x", "latest", EXT_LABELS)
    fake.add("acme/rc", "1.0.0", {**EXT_LABELS, "org.opencontainers.image.title": "alpha"})
    fake.add("acme/rc", "2.0.0-rc.1", {**EXT_LABELS, "org.opencontainers.image.title": "Alpha RC"})
    fake.add("acme/untitled", "latest", {"com.docker.desktop.extension.api.version": "0.4.2"})
    fake.add("acme/plain", "1.0.0", {"org.opencontainers.image.title": "Not an extension"})
    fake.add("acme/no-version", "dev", EXT_LABELS)
    fake.add("other/y", "1.0.0", EXT_LABELS)
    catalog = marketplace.browse(settings_of(reg("127.0.0.1:5000/acme")))
    assert catalog.errors == []
    assert [(e.ref, e.title, e.vendor, e.tags) for e in catalog.entries] == [
        ("127.0.0.1:5000/acme/rc:2.0.0-rc.1", "Alpha RC", "Acme, Inc.", ("2.0.0-rc.1", "1.0.0")),
        ("127.0.0.1:5000/acme/untitled:latest", "untitled", "", ()),
        ("127.0.0.1:5000/acme/x:1.10.0", "Zeta Tool", "Acme, Inc.", ("1.10.0", "1.9.0", "v1.2.0")),
    ]
    x = catalog.entries[2]
    assert x.description == "Does things." and x.source == "127.0.0.1:5000/acme"
    assert x.labels["com.docker.extension.categories"] == "utility-tools,security"
    assert x.details.categories == ("utility-tools", "security")
    assert x.details.publisher_url == "https://acme.example"


def test_browse_offers_the_pinned_version_of_a_list_and_the_first_source_wins(fake):
    fake.add("acme/x", "1.0.0", {**EXT_LABELS, "org.opencontainers.image.title": "X"})
    fake.add("acme/x", "2.0.0", {**EXT_LABELS, "org.opencontainers.image.title": "X"})
    fake.add("acme/y", "3.0.0", {**EXT_LABELS, "org.opencontainers.image.title": "y"})
    listing = lst("127.0.0.1:5000/acme/x:1.0.0", "127.0.0.1:5000/acme/y")
    catalog = marketplace.browse(settings_of(listing, reg("127.0.0.1:5000/acme")))
    assert [(e.ref, e.source, e.tags) for e in catalog.entries] == [
        ("127.0.0.1:5000/acme/x:1.0.0", "l.txt", ("1.0.0",)),
        ("127.0.0.1:5000/acme/y:3.0.0", "l.txt", ("3.0.0",)),
    ]
    catalog = marketplace.browse(settings_of(reg("127.0.0.1:5000/acme"), listing))
    assert [(e.ref, e.source) for e in catalog.entries] == [
        ("127.0.0.1:5000/acme/x:2.0.0", "127.0.0.1:5000/acme"),
        ("127.0.0.1:5000/acme/y:3.0.0", "127.0.0.1:5000/acme"),
    ]


def test_browse_names_a_failed_source_and_still_lists_the_others(fake, monkeypatch):
    fake.add("acme/x", "1.0.0", EXT_LABELS)
    fake.add("acme/plain", "1.0.0", {})
    real = registry.TRANSPORT

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.port == 5001:
            raise httpx.ConnectError("[Errno 111] Connection refused")
        return cast(Any, real).handle_request(request)

    monkeypatch.setattr(registry, "TRANSPORT", httpx.MockTransport(handler))
    listing = lst("127.0.0.1:5000/acme/missing:1.0.0", "127.0.0.1:5000/acme/plain:1.0.0", "127.0.0.1:5000/acme/x")
    catalog = marketplace.browse(settings_of(reg("127.0.0.1:5001"), listing, reg("127.0.0.1:5000/acme")))
    assert [e.ref for e in catalog.entries] == ["127.0.0.1:5000/acme/x:1.0.0"]
    assert catalog.errors == [
        ("127.0.0.1:5001", "cannot reach 127.0.0.1:5001: connection refused"),
        ("l.txt", "127.0.0.1:5000 answered 404 for acme/missing:1.0.0 manifest"),
        ("l.txt", "127.0.0.1:5000/acme/plain:1.0.0 is not a Docker extension: its image has no "
                  "com.docker.desktop.extension.api.version label"),
    ]


def test_browse_reuses_what_a_source_answered(fake):
    fake.add("acme/x", "1.0.0", EXT_LABELS)
    settings = settings_of(reg("127.0.0.1:5000/acme"))
    first = marketplace.browse(settings)
    asked = len(fake.requests)
    assert marketplace.browse(settings).entries == first.entries
    assert len(fake.requests) == asked
    marketplace.clear_cache()
    marketplace.browse(settings)
    assert len(fake.requests) == 2 * asked


def test_browse_says_when_a_registry_has_more_repositories_than_it_reads(fake, monkeypatch):
    monkeypatch.setattr(marketplace, "REPOSITORY_LIMIT", 3)
    for i in range(5):
        fake.add(f"acme/x{i}", "1.0.0", EXT_LABELS)
    catalog = marketplace.browse(settings_of(reg("127.0.0.1:5000")))
    assert len(catalog.entries) == 3
    assert catalog.errors == [("127.0.0.1:5000", "there are more than 3 repositories under 127.0.0.1:5000; only the "
                               "first 3 were read. Add narrower namespaces (REGISTRY/NAMESPACE) instead")]


def test_browse_of_no_source_is_empty():
    assert marketplace.browse(marketplace.Settings()) == marketplace.Catalog(entries=[], errors=[])


# -- found in review: hostile or odd answers, and a digest around a pinned tag -------------------------------

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(("image", "expected"), [
    (f"127.0.0.1:5000/acme/x:1.0.0@{DIGEST}", False),  # the engine pulls by digest: the pinned tag means nothing
    (f"127.0.0.1:5000/acme/x@{DIGEST}", False),
    (f"127.0.0.1:5000/acme/any@{DIGEST}", True),  # a repository listed without a version: any version
])
def test_a_digest_never_gets_around_a_pinned_version(image, expected):
    s = settings_of(lst("127.0.0.1:5000/acme/x:1.0.0", "127.0.0.1:5000/acme/any"))
    assert marketplace.listed(s, image) is expected


def test_a_config_digest_that_is_no_digest_is_refused_not_a_crash():
    manifest = {"schemaVersion": 2, "mediaType": registry.DOCKER_MANIFEST, "config": {"digest": "sha256:\x01/../x"}}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=manifest, headers={"Content-Type": registry.DOCKER_MANIFEST})

    with registry.RegistryClient("127.0.0.1:5000", transport=httpx.MockTransport(handler)) as client, \
            pytest.raises(RegistryError, match="without a valid config digest"):
        client.labels("acme/x", "1.0.0")


def test_a_next_page_that_is_no_url_is_refused_not_a_crash():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"repositories": ["a"]}, headers={"Link": '<http://[::1/x>; rel="next"'})

    with registry.RegistryClient("127.0.0.1:5000", transport=httpx.MockTransport(handler)) as client, \
            pytest.raises(RegistryError, match="not a URL"):
        client.catalog()


@pytest.mark.parametrize(("registry_name", "to"), [
    ("registry.example.com", "http://10.0.0.1/v2/acme/x/manifests/1.0.0"),  # a LAN address in plain http
    ("registry.example.com", "http://127.0.0.1:2375/containers/json"),  # even loopback, from a remote registry
    ("127.0.0.1:5000", "http://169.254.169.254/latest/meta-data"),  # a loopback registry, off loopback
])
def test_redirects_in_plain_http_off_loopback_are_not_followed(registry_name, to):
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(307, headers={"Location": to})

    with registry.RegistryClient(registry_name, transport=httpx.MockTransport(handler)) as client, \
            pytest.raises(RegistryError, match="does not follow"):
        client.tags("acme/x")
    assert to not in seen  # refused before it was sent
