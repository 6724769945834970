"""Adapter for the Docker CLI's saved logins: what ``docker login REGISTRY`` left for a registry.

The Docker CLI keeps them in its configuration file (``$DOCKER_CONFIG/config.json``, else
``~/.docker/config.json``): in ``auths`` (a user and password, base64-encoded, or an identity token) or in a
credential helper it names (``credsStore`` for every registry, ``credHelpers`` for one; dockext runs
``docker-credential-<name> get`` as the CLI does, within :data:`HELPER_SECONDS`). The file is read as the Docker
CLI reads it (an empty ``auth`` is no login; only the entry of the registry asked for is decoded, so another
registry's broken entry costs nothing), so a registry gets the login ``docker pull`` would send it: the
Marketplace's reads of registries (:mod:`dockext.registry`) and the engine's pulls
(:meth:`dockext.engine.Engine.pull`, which hands the engine the login :func:`login_for` found) both ask here.

A login is looked up only when a registry asks for one, never sent anywhere else, and its secret is kept out of
every message and ``repr``. A configuration or helper that cannot be read is a
:class:`~dockext.errors.RegistryError` naming the file or the helper.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .dockerhost import config_dir
from .errors import RegistryError

__all__ = ["Login", "config_file", "login_command", "login_for"]

_HUB_NAMES = (None, "docker.io", "index.docker.io", "registry-1.docker.io")
_HUB_SERVER = "https://index.docker.io/v1/"  # Docker Hub's name in config.json and to credential helpers
#: how long a credential helper may take to answer
HELPER_SECONDS = 30.0


@dataclass(frozen=True)
class Login:
    """A saved login for one registry: a user and password, or an identity token (``username`` empty)."""

    registry: str  # as the user names it: ``127.0.0.1:5001``, ``docker.io``
    username: str
    secret: str = field(repr=False)  # the password, or the identity token
    identity_token: bool
    where: str  # where it was found, for messages: the config file or the helper's program

    @property
    def who(self) -> str:
        """The login as a message names it (never its secret)."""
        return f'the login of "{self.username}"' if self.username else "the saved identity token"


def config_file() -> str | None:
    """The Docker CLI's configuration file, ``config.json`` in ``$DOCKER_CONFIG`` or ``~/.docker`` (None when there
    is none)."""
    found = config_dir(os.environ) / "config.json"
    return str(found) if found.is_file() else None


def _index_name(key: str) -> str:
    """The registry an ``auths`` key of config.json names: ``https://index.docker.io/v1/`` is ``docker.io``,
    ``http://r.example:5000/v2`` is ``r.example:5000`` (as the docker SDK and the CLI read them)."""
    name = key.replace("http://", "").replace("https://", "").split("/", 1)[0]
    return "docker.io" if name == "index.docker.io" else name


def login_command(registry: str | None) -> str:
    """The command that saves a login for ``registry`` (Docker Hub's is plain ``docker login``)."""
    return "docker login" if registry in _HUB_NAMES else f"docker login {registry}"


def login_for(registry: str | None) -> Login | None:
    """The login saved for ``registry`` (``None`` or ``docker.io`` for Docker Hub), or None if there is none."""
    name = "docker.io" if registry in _HUB_NAMES else str(registry)
    path = config_file()
    fix = f"Fix it, or log in again: {login_command(registry)}"
    config = _read_config(path, fix)
    # credHelpers for this registry (Docker Hub's key is its server URL), else credsStore for every registry
    helpers, store = config.get("credHelpers"), config.get("credsStore")
    helper = helpers.get(_HUB_SERVER if name == "docker.io" else name) if isinstance(helpers, dict) else None
    helper = helper or store
    if helper and isinstance(helper, str):
        found = _ask_helper(helper, name, path)
        if found is not None:
            return found  # else what config.json holds, as the Docker CLI does
    auths = config.get("auths")
    for key, entry in auths.items() if isinstance(auths, dict) else ():
        if key == name or _index_name(key) == name:
            return _login(name, entry, path or "the Docker config", fix)
    return None


def _read_config(path: str | None, fix: str) -> dict[str, Any]:
    """The configuration file's object ({} when there is none)."""
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise RegistryError(f"the Docker CLI configuration {path} cannot be read: {exc}", hint=fix) from None
    if not isinstance(data, dict):
        raise RegistryError(f"the Docker CLI configuration {path} cannot be read: it is not a JSON object", hint=fix)
    return data


def _login(name: str, entry: object, where: str, fix: str) -> Login | None:
    """A login from an entry of ``auths``, decoded as the Docker CLI does (its field names in any case):
    ``identitytoken``, else ``auth`` (base64 of ``user:password``; empty is none) or ``username``/``password``."""
    broken = RegistryError(f"the login saved for {name} in {where} cannot be read: it is not a login the Docker CLI "
                           "writes", hint=fix)
    if not isinstance(entry, dict):
        raise broken
    fields = {str(k).lower(): v for k, v in entry.items()}
    token = fields.get("identitytoken")
    if isinstance(token, str) and token:
        return Login(name, "", token, identity_token=True, where=where)
    username, password, auth = fields.get("username") or "", fields.get("password") or "", fields.get("auth") or ""
    if not all(isinstance(v, str) for v in (username, password, auth)):
        raise broken
    if auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise broken from None
        username, sep, password = decoded.partition(":")
        if not sep or not username:
            raise broken
        password = password.strip("\x00")
    if not username and not password:
        return None  # an empty entry: `docker login` left it for a credential helper
    return Login(name, username, password, identity_token=False, where=where)


def _ask_helper(helper: str, name: str, path: str | None) -> Login | None:
    """``docker-credential-<helper> get``, as the Docker CLI runs it (the server on stdin, JSON on stdout), with a
    deadline: a helper waiting for a passphrase nobody will type must not hold a command or the server."""
    program = f"docker-credential-{helper}"
    retry = f"log in again: {login_command(None if name == 'docker.io' else name)}"
    exe = shutil.which(program)
    if exe is None:
        raise RegistryError(f"the login saved for {name} cannot be read from its credential helper: {program} is "
                            "not installed or not on PATH", hint=f"Install it, or remove it from {path} and {retry}")
    server = _HUB_SERVER if name == "docker.io" else name
    try:
        done = subprocess.run([exe, "get"], input=server.encode(), capture_output=True, timeout=HELPER_SECONDS,
                              check=False)
    except subprocess.TimeoutExpired:
        raise RegistryError(f"the login saved for {name} cannot be read: {program} did not answer within "
                            f"{HELPER_SECONDS:g} s (is it waiting for a passphrase or an unlocked keyring?)",
                            hint=f"Unlock it (run `{program} get` to see), or {retry}") from None
    except OSError as exc:
        raise RegistryError(f"the login saved for {name} cannot be read: {program} cannot run: {exc}",
                            hint=f"Check the helper named in {path}, or {retry}") from None
    said = (done.stdout + b" " + done.stderr).decode("utf-8", "replace").strip()
    if done.returncode != 0:
        if "credentials not found" in said.lower():
            return None
        raise RegistryError(
            f"the login saved for {name} cannot be read from its credential helper: {program} failed "
            f"({said[:200] or f'exit status {done.returncode}'})", hint=f"Check the helper named in {path}, or {retry}")
    try:
        answer = json.loads(done.stdout)
        username, secret = str(answer["Username"]), str(answer["Secret"])
    except (ValueError, KeyError, TypeError):
        raise RegistryError(f"the login saved for {name} cannot be read: {program} answered something that is not "
                            "a login", hint=f"Check the helper named in {path}, or {retry}") from None
    if username == "<token>":  # how helpers keep an identity token
        return Login(name, "", secret, identity_token=True, where=program)
    return Login(name, username, secret, identity_token=False, where=program)
