"""What a failed pull tells a person to do, decided without an engine (src/dockext/engine.py)."""

from __future__ import annotations

import pytest

from dockext.engine import Engine, is_loopback
from dockext.model import ImageRef

LOCAL_REGISTRY = ImageRef.parse("127.0.0.1:5000/acme/ext:1.0.0")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1:5000", True), ("localhost:5000", True), ("LOCALHOST", True), ("[::1]:5000", True),
     ("127.8.9.1", True), ("::1", True), ("10.0.0.5:5000", False), ("registry.example.com", False),
     ("localhost.example.com:5000", False), (None, False), ("", False)],
)
def test_loopback_hosts(host: str | None, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("engine", "remote_env", "told"),
    [
        ("tcp://10.1.2.3:2376", None, True),  # another machine pulls from its own loopback
        ("ssh://me@build-box", None, True),
        ("unix:///run/forwarded.sock", "1", True),  # a socket that leads elsewhere (ssh -L)
        ("tcp://127.0.0.1:2375", None, False),  # an engine on this machine reaches this registry
        ("ssh://me@localhost", None, False),
        ("unix:///var/run/docker.sock", None, False),
    ],
)
def test_a_loopback_registry_seen_from_an_engine_elsewhere_gets_its_own_hint(
    monkeypatch: pytest.MonkeyPatch, engine: str, remote_env: str | None, told: bool
) -> None:
    if remote_env is None:
        monkeypatch.delenv("DOCKEXT_REMOTE_ENGINE", raising=False)
    else:
        monkeypatch.setenv("DOCKEXT_REMOTE_ENGINE", remote_env)
    hint = Engine(engine)._pull_hint(LOCAL_REGISTRY)
    if told:
        assert hint.startswith(f"127.0.0.1:5000 is a loopback address, and the engine at {engine} pulls from its own")
        assert "`docker save 127.0.0.1:5000/acme/ext:1.0.0 -o ext.tar` here, then `dockext install ./ext.tar`" in hint
    else:
        assert hint == "Check the image name and tag, and that you are logged in to its registry."
    # a registry elsewhere: the usual words, whatever the engine
    assert Engine(engine)._pull_hint(ImageRef.parse("registry.example.com/acme/ext:1")).startswith("Check the image")
