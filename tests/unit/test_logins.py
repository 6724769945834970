"""Logins saved by the Docker CLI (dockext/logins.py) and how the registry client uses them (dockext/registry.py),
against httpx.MockTransport registries: Basic and Bearer challenges, identity tokens, refusals, redirects. The
real registries (htpasswd and token auth) are in tests/engine/test_private_registry.py."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest

from dockext import logins, registry
from dockext.errors import RegistryError
from dockext.logins import Login

REG = "registry.example.com"
ALICE = Login(REG, "alice", "s3cret", identity_token=False, where="/home/a/.docker/config.json")
TOKEN = Login(REG, "", "refresh-me", identity_token=True, where="/home/a/.docker/config.json")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def write_config(directory: Path, config: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    return directory / "config.json"


# -- logins.login_for: what the Docker CLI saved ---------------------------------------------------------------


def test_a_user_and_password_saved_by_docker_login(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    path = write_config(tmp_path, {"auths": {REG: {"auth": base64.b64encode(b"alice:s3:cret").decode()}}})
    login = logins.login_for(REG)
    assert login == Login(REG, "alice", "s3:cret", identity_token=False, where=str(path))
    assert "s3:cret" not in repr(login)
    assert login.who == 'the login of "alice"'
    assert logins.login_for("other.example.com") is None


def test_an_identity_token_wins_over_the_username_beside_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    write_config(tmp_path, {"auths": {REG: {"auth": base64.b64encode(b"alice:").decode(), "identitytoken": "rt"}}})
    login = logins.login_for(REG)
    assert login is not None and login.identity_token and login.secret == "rt" and login.username == ""
    assert login.who == "the saved identity token"


def test_docker_hub_is_found_under_the_cli_s_key_for_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    write_config(tmp_path, {"auths": {"https://index.docker.io/v1/": {"auth": base64.b64encode(b"bob:pw").decode()}}})
    for name in (None, "docker.io", "index.docker.io"):
        found = logins.login_for(name)
        assert found is not None and (found.registry, found.username) == ("docker.io", "bob")
    assert logins.login_command(None) == "docker login"
    assert logins.login_command("127.0.0.1:5001") == "docker login 127.0.0.1:5001"


def test_no_file_or_an_empty_entry_is_no_login(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert logins.login_for(REG) is None
    write_config(tmp_path, {"auths": {REG: {}}})
    assert logins.login_for(REG) is None


def test_a_credential_helper_is_asked_and_named(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    write_config(tmp_path, {"credHelpers": {REG: "unit"}, "auths": {}})
    helper = tmp_path / "bin" / "docker-credential-unit"
    helper.parent.mkdir()
    helper.write_text('#!/bin/sh\nread -r s\nprintf \'{"ServerURL":"%s","Username":"carol","Secret":"pw"}\' "$s"\n')
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{helper.parent}:{os.environ['PATH']}")
    assert logins.login_for(REG) == Login(REG, "carol", "pw", identity_token=False, where="docker-credential-unit")
    assert logins.login_for("elsewhere.example.com") is None  # no helper for it, nothing in auths
    # every registry's helper; one that has nothing says so, and config.json's entry is taken (as by the CLI)
    write_config(tmp_path, {"credsStore": "unit", "auths": {"other.example.com": {
        "auth": base64.b64encode(b"dave:pw2").decode()}}})
    helper.write_text('#!/bin/sh\nread -r s\ncase "$s" in https://index.docker.io/v1/) '
                      'printf \'{"ServerURL":"%s","Username":"<token>","Secret":"idt"}\' "$s";; '
                      '*) echo "credentials not found in native keychain"; exit 1;; esac\n')
    hub = logins.login_for(None)
    assert hub == Login("docker.io", "", "idt", identity_token=True, where="docker-credential-unit")
    assert logins.login_for("other.example.com") == Login("other.example.com", "dave", "pw2", identity_token=False,
                                                          where=str(tmp_path / "config.json"))
    assert logins.login_for(REG) is None


def test_a_missing_helper_and_a_broken_file_are_errors_that_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    write_config(tmp_path, {"credsStore": "nothere"})
    with pytest.raises(RegistryError) as exc:
        logins.login_for(REG)
    assert exc.value.message == (f"the login saved for {REG} cannot be read from its credential helper: "
                                 "docker-credential-nothere is not installed or not on PATH")
    path = tmp_path / "config.json"
    assert exc.value.hint == f"Install it, or remove it from {path} and log in again: docker login {REG}"
    helper = tmp_path / "bin" / "docker-credential-nothere"  # there, but failing
    helper.parent.mkdir()
    helper.write_text("#!/bin/sh\necho 'the keyring is locked' >&2\nexit 1\n")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", str(helper.parent))
    with pytest.raises(RegistryError) as exc:
        logins.login_for(REG)
    assert exc.value.message == (f"the login saved for {REG} cannot be read from its credential helper: "
                                 "docker-credential-nothere failed (the keyring is locked)")
    assert exc.value.hint == f"Check the helper named in {path}, or log in again: docker login {REG}"
    helper.write_text("#!/bin/sh\nexec sleep 30\n")  # waiting for a passphrase nobody types
    monkeypatch.setenv("PATH", f"{helper.parent}:/usr/bin:/bin")
    monkeypatch.setattr(logins, "HELPER_SECONDS", 0.3)
    with pytest.raises(RegistryError) as exc:
        logins.login_for(REG)
    assert exc.value.message == (f"the login saved for {REG} cannot be read: docker-credential-nothere did not "
                                 "answer within 0.3 s (is it waiting for a passphrase or an unlocked keyring?)")
    for broken in ("not an object", {"auth": "Zm9v"}, {"auth": "%%%%"}, {"auth": 5}, {"username": ["alice"]}):
        write_config(tmp_path, {"auths": {REG: broken}})  # "Zm9v" is "foo": no ":" between a user and a password
        with pytest.raises(RegistryError) as exc:
            logins.login_for(REG)
        assert exc.value.message == (f"the login saved for {REG} in {path} cannot be read: it is not a login the "
                                     "Docker CLI writes"), broken
        assert exc.value.hint == f"Fix it, or log in again: docker login {REG}"
    path.write_text("[1]")
    with pytest.raises(RegistryError, match=r"the Docker CLI configuration .*config\.json cannot be read: it is not a "
                                            "JSON object"):
        logins.login_for(REG)
    path.write_text("{not json")
    with pytest.raises(RegistryError, match=r"the Docker CLI configuration .*config\.json cannot be read: Expecting"):
        logins.login_for(REG)


def test_entries_are_read_as_the_docker_cli_reads_them(tmp_path, monkeypatch):
    """Found by a bug hunt: the Docker SDK's reader decoded every entry and refused the file for an empty
    ``auth`` (the Docker CLI: no login) or for another registry's broken entry, so every pull failed with a
    ValueError. Now only the entry asked for is decoded, as the CLI decodes it."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    other = base64.b64encode(b"bob:pw").decode()
    write_config(tmp_path, {"auths": {REG: {"auth": ""}, "other.example.com": {"auth": "%%%%"}},
                            "credHelpers": ["not", "a", "mapping"]})
    assert logins.login_for(REG) is None
    write_config(tmp_path, {"auths": {REG: {"auth": other}, "other.example.com": {"auth": "%%%%"}}})
    found = logins.login_for(REG)
    assert found is not None and (found.username, found.secret, found.identity_token) == ("bob", "pw", False)
    write_config(tmp_path, {"auths": {REG: {"IdentityToken": "tok"}}})  # Go's JSON ignores the case of names
    found = logins.login_for(REG)
    assert found is not None and (found.username, found.secret, found.identity_token) == ("", "tok", True)
    write_config(tmp_path, {"auths": {REG: {"username": "carol", "password": "pw2"}}})
    found = logins.login_for(REG)
    assert found is not None and (found.username, found.secret) == ("carol", "pw2")


# -- the registry client with a login ----------------------------------------------------------------------


class Recorder:
    """A registry at REG: ``challenge`` is what a request without the right Authorization gets."""

    def __init__(self, challenge: str, accepted: set[str | None]) -> None:
        self.challenge = challenge
        self.accepted = accepted  # Authorization values the registry (or its token service) takes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host == "auth.example.com":
            if request.method == "POST":
                form = parse_qs(request.content.decode())
                good = form.get("refresh_token") == ["refresh-me"]
            else:
                good = request.headers.get("authorization") in self.accepted | {None}
            return httpx.Response(200, json={"token": "T"}) if good else httpx.Response(401, json={})
        if request.headers.get("authorization") in self.accepted:
            return httpx.Response(200, json={"name": "acme/x", "tags": ["1.0.0"]})
        return httpx.Response(401, headers={"WWW-Authenticate": self.challenge})


BEARER = 'Bearer realm="https://auth.example.com/token",service="reg",scope="repository:acme/x:pull"'


def client(fake: Recorder, login: Login | None, asked: list[str | None] | None = None) -> registry.RegistryClient:
    def lookup(name: str | None) -> Login | None:
        if asked is not None:
            asked.append(name)
        return login

    return registry.RegistryClient(REG, transport=httpx.MockTransport(fake), logins=lookup)


def test_a_basic_registry_gets_the_login_after_its_challenge_and_with_every_request_after():
    fake = Recorder('Basic realm="r"', {basic("alice", "s3cret")})
    asked: list[str | None] = []
    with client(fake, ALICE, asked) as c:
        assert c.tags("acme/x") == ["1.0.0"]
        assert c.tags("acme/x") == ["1.0.0"]
    assert [r.headers.get("authorization") for r in fake.requests] == [None, *[basic("alice", "s3cret")] * 2]
    assert asked == [REG]  # looked up once, when asked for


def test_a_refusal_after_the_login_was_taken_names_the_login_not_anonymous_access():
    taken: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != basic("alice", "s3cret"):
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        taken.append(request.url.path)
        if len(taken) == 1:
            return httpx.Response(200, json={"name": "acme/x", "tags": ["1.0.0"]})
        return httpx.Response(403, json={})  # the login may list acme/x, not acme/y

    with registry.RegistryClient(REG, transport=httpx.MockTransport(handler), logins=lambda _: ALICE) as c:
        assert c.tags("acme/x") == ["1.0.0"]
        with pytest.raises(RegistryError) as exc:
            c.tags("acme/y")
    assert exc.value.message == f'{REG} refused the login of "alice" (from {ALICE.where}) access to acme/y tags (403)'


def test_a_bearer_registry_gets_a_token_asked_for_with_the_login():
    fake = Recorder(BEARER, {"Bearer T", basic("alice", "s3cret")})
    with client(fake, ALICE) as c:
        assert c.tags("acme/x") == ["1.0.0"]
    token_request = fake.requests[1]
    assert token_request.headers["authorization"] == basic("alice", "s3cret")
    assert parse_qs(token_request.url.query.decode()) == {
        "service": ["reg"], "scope": ["repository:acme/x:pull"], "account": ["alice"]}
    assert fake.requests[2].headers["authorization"] == "Bearer T"


def test_an_identity_token_is_traded_with_an_oauth_refresh_grant():
    fake = Recorder(BEARER, {"Bearer T"})
    with client(fake, TOKEN) as c:
        assert c.tags("acme/x") == ["1.0.0"]
    token_request = fake.requests[1]
    assert token_request.method == "POST" and "authorization" not in token_request.headers
    assert parse_qs(token_request.content.decode()) == {
        "grant_type": ["refresh_token"], "refresh_token": ["refresh-me"], "client_id": ["dockext"],
        "service": ["reg"], "scope": ["repository:acme/x:pull"]}


def test_a_public_registry_never_looks_a_login_up():
    fake = Recorder("", {None})  # answers a request without a login
    asked: list[str | None] = []
    with client(fake, ALICE, asked) as c:
        assert c.tags("acme/x") == ["1.0.0"]
    assert asked == []


@pytest.mark.parametrize(("challenge", "login", "message", "hint"), [
    ('Basic realm="r"', None, f"{REG} asks for a login to read acme/x tags (Basic)",
     f"Log in with `docker login {REG}`: dockext reads registries with the logins the Docker CLI saved "
     "(config.json or its credential helper)."),
    ('Basic realm="r"', ALICE, f'{REG} refused the login of "alice" (from {ALICE.where}) access to acme/x tags (401)',
     f"Log in again with an account that may read it: docker login {REG}"),
    ('Basic realm="r"', TOKEN, f"{REG} asks for a login to read acme/x tags (Basic)",
     f"The login saved for {REG} ({TOKEN.where}) is an identity token, which this registry does not take (it "
     f"asks for a user and password): docker login {REG}"),
    (BEARER, None, f"{REG} refused anonymous access to acme/x tags (401)",
     f"If the repository is private, log in with `docker login {REG}`: dockext reads registries with the logins "
     "the Docker CLI saved (config.json or its credential helper)."),
])
def test_refusals_say_which_login_was_tried_and_how_to_log_in(challenge, login, message, hint):
    fake = Recorder(challenge, set())  # takes nothing
    with client(fake, login) as c, pytest.raises(RegistryError) as exc:
        c.tags("acme/x")
    assert (exc.value.message, exc.value.hint) == (message, hint)
    assert "s3cret" not in str(exc.value) and "refresh-me" not in str(exc.value)


def test_a_refusal_without_a_challenge_says_the_saved_login_was_not_sent():
    fake = Recorder("", set())

    def forbidden(request: httpx.Request) -> httpx.Response:
        fake.requests.append(request)
        return httpx.Response(403, json={})

    c = registry.RegistryClient(REG, transport=httpx.MockTransport(forbidden), logins=lambda _: ALICE)
    with c, pytest.raises(RegistryError) as exc:
        c.tags("acme/x")
    assert exc.value.message == f"{REG} refused anonymous access to acme/x tags (403)"
    assert exc.value.hint == (f'{REG} refused without asking for a login, so the login of "alice" saved for it '
                              f"({ALICE.where}) was not sent: check the name, and that the repository may be read.")
    assert "authorization" not in fake.requests[0].headers


def test_a_token_service_refusing_the_login_is_named():
    fake = Recorder(BEARER, {"Bearer T"})  # the token service takes no Basic login
    with client(fake, ALICE) as c, pytest.raises(RegistryError) as exc:
        c.tags("acme/x")
    assert exc.value.message == f'the token service of {REG} refused the login of "alice" (from {ALICE.where}): 401'
    assert exc.value.hint == f"Log in again: docker login {REG}"


def test_a_login_that_cannot_be_read_is_said_when_the_registry_asks_for_one():
    def broken(name: str | None) -> Login | None:
        raise RegistryError("the login saved for registry.example.com cannot be read from its credential helper: x")

    fake = Recorder('Basic realm="r"', set())
    c = registry.RegistryClient(REG, transport=httpx.MockTransport(fake), logins=broken)
    with c, pytest.raises(RegistryError) as exc:
        c.tags("acme/x")
    assert exc.value.message == f"{REG} asks for a login to read acme/x tags (Basic)"
    assert str(exc.value.hint).startswith(f"The login saved for {REG} could not be read (the login saved for")


def test_the_login_does_not_follow_a_redirect_to_another_host():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "cdn.example.net":
            return httpx.Response(200, json={"name": "acme/x", "tags": ["1.0.0"]})
        if request.headers.get("authorization") == basic("alice", "s3cret"):
            return httpx.Response(307, headers={"Location": "https://cdn.example.net/blob"})
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})

    with registry.RegistryClient(REG, transport=httpx.MockTransport(handler), logins=lambda _: ALICE) as c:
        assert c.tags("acme/x") == ["1.0.0"]
    assert [(r.url.host, r.headers.get("authorization")) for r in seen] == [
        (REG, None), (REG, basic("alice", "s3cret")), ("cdn.example.net", None)]
