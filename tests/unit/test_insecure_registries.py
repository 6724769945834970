"""Insecure registries (dockext/registry.py): the engine's ``insecure-registries`` as GET /info reports them, and
how the registry client reaches one (https without verification first, then plain http), against
httpx.MockTransport registries. A real TLS registry on loopback is in tests/engine/test_private_registry.py."""

from __future__ import annotations

import ipaddress
import socket

import httpx
import pytest

from dockext import registry
from dockext.errors import RegistryError
from dockext.registry import Insecure

# what GET /info says with daemon.json {"insecure-registries": ["registry.lan:5000", "10.20.0.0/16"]}
INFO = {
    "InsecureRegistryCIDRs": ["10.20.0.0/16", "127.0.0.0/8"],
    "IndexConfigs": {
        "docker.io": {"Name": "docker.io", "Mirrors": [], "Secure": True, "Official": True},
        "registry.lan:5000": {"Name": "registry.lan:5000", "Mirrors": [], "Secure": False, "Official": False},
    },
    "Mirrors": [],
}


def test_the_engines_list_is_read_from_its_registry_config():
    insecure = Insecure.of(INFO)
    assert insecure.names == frozenset({"registry.lan:5000"})
    assert insecure.networks == (ipaddress.ip_network("10.20.0.0/16"), ipaddress.ip_network("127.0.0.0/8"))
    assert Insecure.of(None) == Insecure.of({"IndexConfigs": [], "InsecureRegistryCIDRs": ["nonsense"]}) == Insecure()


@pytest.mark.parametrize(("name", "covered"), [
    ("registry.lan:5000", True),
    ("REGISTRY.lan:5000", True),
    ("registry.lan:5001", False),  # the engine's names carry their port
    ("10.20.3.4:5000", True),
    ("10.21.3.4:5000", False),
    ("127.0.0.1:5000", True),  # loopback: always, as Docker adds it
    ("localhost:5000", True),
    ("[::1]:5000", True),
    ("ghcr.io", False),
])
def test_a_registry_is_insecure_by_name_or_by_address(name, covered, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [])  # names resolve to nothing here
    assert Insecure.of(INFO).covers(name) is covered


def test_a_name_is_matched_against_the_networks_by_its_addresses(monkeypatch):
    answers = {"build.corp": "10.20.9.9", "ext.corp": "192.0.2.1"}

    def resolve(host, *args, **kwargs):
        if host not in answers:
            raise socket.gaierror("no such host")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], 0))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    insecure = Insecure.of(INFO)
    assert insecure.covers("build.corp:5000")
    assert not insecure.covers("ext.corp:5000")
    assert not insecure.covers("unknown.corp")


class Registry:
    """A registry at ``host`` that speaks ``scheme`` only: the other gets what a client meets there."""

    def __init__(self, host: str, scheme: str) -> None:
        self.host, self.scheme = host, scheme
        self.seen: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(str(request.url))
        if request.url.scheme != self.scheme:
            if request.url.scheme == "https":  # TLS hello to a plain-http server
                raise httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1000)")
            return httpx.Response(400, text="Client sent an HTTP request to an HTTPS server.")
        return httpx.Response(200, json={"name": "acme/x", "tags": ["1.0.0"]})


def client(fake: Registry, insecure: Insecure | None) -> registry.RegistryClient:
    return registry.RegistryClient(fake.host, transport=httpx.MockTransport(fake), insecure=insecure)


def test_an_insecure_registry_in_plain_http_is_found_once_and_then_spoken_to_in_http():
    fake = Registry("registry.lan:5000", "http")
    with client(fake, Insecure.of(INFO)) as c:
        assert c.tags("acme/x") == ["1.0.0"]
        assert c.tags("acme/y") == ["1.0.0"]
        assert c.base == "http://registry.lan:5000"
    assert fake.seen == ["https://registry.lan:5000/v2/acme/x/tags/list", "http://registry.lan:5000/v2/acme/x/tags/list",
                         "http://registry.lan:5000/v2/acme/y/tags/list"]


def test_an_insecure_registry_with_tls_stays_on_https():
    fake = Registry("registry.lan:5000", "https")
    with client(fake, Insecure.of(INFO)) as c:
        assert c.tags("acme/x") == ["1.0.0"]
        assert c.tags("acme/y") == ["1.0.0"]
    assert all(url.startswith("https://") for url in fake.seen) and len(fake.seen) == 2


def test_a_registry_the_engine_does_not_list_gets_verified_https_only_and_a_hint():
    fake = Registry("registry.lan:5001", "http")
    with client(fake, Insecure.of(INFO)) as c, pytest.raises(RegistryError) as exc:
        c.tags("acme/x")
    assert fake.seen == ["https://registry.lan:5001/v2/acme/x/tags/list"]  # no plain http tried
    assert exc.value.message.startswith("cannot reach registry.lan:5001: TLS failed")
    assert '"insecure-registries" of the engine\'s daemon.json' in str(exc.value.hint)


def test_docker_hub_is_never_insecure():
    hub = registry.RegistryClient(None, transport=httpx.MockTransport(Registry("x", "https")),
                                  insecure=Insecure(frozenset({"docker.io", "registry-1.docker.io"})))
    assert not hub.insecure


@pytest.mark.parametrize(("to", "followed"), [
    ("http://registry.lan:5000/v2/acme/x/tags/list?page=2", True),  # the insecure registry's own host
    ("http://registry.lan:8080/blobs", True),
    ("http://10.20.0.9/v2/acme/x/tags/list", False),  # another host, even an insecure one
    ("http://127.0.0.1:2375/containers/json", False),
])
def test_plain_http_goes_to_an_insecure_registrys_own_host_only(to, followed):
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if str(request.url) == to:
            return httpx.Response(200, json={"name": "acme/x", "tags": ["2.0.0"]})
        return httpx.Response(307, headers={"Location": to})

    c = registry.RegistryClient("registry.lan:5000", transport=httpx.MockTransport(handler),
                                insecure=Insecure.of(INFO))
    with c:
        if followed:
            assert c.tags("acme/x") == ["2.0.0"]
        else:
            with pytest.raises(RegistryError, match="does not follow"):
                c.tags("acme/x")
    assert (to in seen) is followed
