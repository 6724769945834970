"""Registries that ask for a login, for the private-registry tests: the real ``docker-registry`` (distribution,
as on 127.0.0.1:5000) on another loopback port, behind

* ``htpasswd`` (``Basic`` auth, a bcrypt password file), as a registry behind a plain password or ECR, or
* ``token`` auth (``Bearer``), with :mod:`tests.support.tokenservice` as its token service, as Docker Hub, GHCR
  or Harbor.

They run in the host's network namespace (the engine pulls from there) and are bridged into the tests' own
(dockext reads them from there), like the registry on 127.0.0.1:5000 (tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import httpx

from tests.support.bridge import bridge
from tests.support.tlscert import make_cert

USER = "alice"
PASSWORD = "wonderland-" + "".join(random.choices("abcdefghijklmnop", k=8))


@dataclass(frozen=True)
class AuthRegistry:
    address: str  # 127.0.0.1:PORT
    kind: str  # "basic" or "token"
    token_log: Path | None  # the token service's requests, one JSON object a line

    def token_requests(self) -> list[dict[str, object]]:
        if self.token_log is None or not self.token_log.exists():
            return []
        return [json.loads(line) for line in self.token_log.read_text().splitlines()]


def _in_host_netns() -> list[str]:
    host_ns = os.environ.get("DOCKEXT_TEST_HOST_NETNS")
    return ["nsenter", f"--net={host_ns}"] if host_ns else []


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([*_in_host_netns(), *argv], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path, expected: int) -> bool:
    """True once ``url`` answers ``expected`` (through the bridge); False if the process died (a taken port)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2, verify=False).status_code == expected:
                return True
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after 20 s:\n{log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@contextlib.contextmanager
def auth_registry(directory: Path, kind: str, *, tls: bool = False) -> Iterator[AuthRegistry]:
    """A registry asking for :data:`USER` and :data:`PASSWORD` (``kind``: ``basic`` or ``token``); with ``tls``,
    in https only, with a self-signed certificate nothing trusts (the engine and dockext take it as they take any
    certificate of a registry on loopback: unverified)."""
    directory.mkdir(parents=True, exist_ok=True)
    for _attempt in range(5):
        port = random.randint(20000, 29999)
        token_port = port + 10000
        auth: dict[str, object]
        token_log: Path | None = None
        service: subprocess.Popen[bytes] | None = None
        if kind == "basic":
            hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
            (directory / "htpasswd").write_text(f"{USER}:{hashed}\n")
            auth = {"htpasswd": {"realm": "dockext-test", "path": str(directory / "htpasswd")}}
        else:
            key, cert = directory / "signer.key", directory / "signer.crt"
            if not key.exists():
                subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                                "-subj", "/CN=dockext-test-token-signer", "-keyout", str(key), "-out", str(cert)],
                               check=True, capture_output=True)
            token_log = directory / "token-requests.jsonl"
            auth = {"token": {"realm": f"http://127.0.0.1:{token_port}/token",
                              "service": "dockext-test-registry", "issuer": "dockext-test-issuer",
                              "rootcertbundle": str(cert)}}
            service = _start([sys.executable, str(Path(__file__).with_name("tokenservice.py")), str(token_port),
                              str(key), str(cert), USER, PASSWORD, str(token_log)], directory / "tokenservice.log")
        http: dict[str, object] = {"addr": f"127.0.0.1:{port}", "secret": "dockext-test"}
        if tls:
            cert = make_cert(directory / "tls", "registry.dockext.test")
            http["tls"] = {"certificate": str(cert.cert), "key": str(cert.key)}
        config = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(directory / "data")}, "delete": {"enabled": True}},
            "http": http,
            "auth": auth,
        }
        (directory / "registry.yml").write_text(json.dumps(config))  # JSON is YAML
        registry = _start(["docker-registry", "serve", str(directory / "registry.yml")], directory / "registry.log")
        with contextlib.ExitStack() as stack:
            stack.callback(_stop, registry)
            if service is not None:
                stack.callback(_stop, service)
                stack.enter_context(bridge(token_port))
            stack.enter_context(bridge(port))
            if service is not None and not _wait(f"http://127.0.0.1:{token_port}/token", service,
                                                 directory / "tokenservice.log", 200):
                continue
            if not _wait(f"{'https' if tls else 'http'}://127.0.0.1:{port}/v2/", registry, directory / "registry.log",
                         401):
                continue
            if token_log is not None:
                token_log.unlink(missing_ok=True)  # the readiness probe's request
            yield AuthRegistry(f"127.0.0.1:{port}", kind, token_log)
            return
    raise RuntimeError(f"no free port for a registry after 5 tries: {(directory / 'registry.log').read_text()}")
