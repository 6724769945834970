"""Which Docker engine dockext uses, and how to reach it: resolved once, the way the Docker CLI does.

1. ``DOCKER_HOST``, with ``DOCKER_TLS_VERIFY`` / ``DOCKER_TLS`` and ``DOCKER_CERT_PATH`` (``ca.pem``,
   ``cert.pem``, ``key.pem``; default: the Docker config directory);
2. else the docker context named by ``DOCKER_CONTEXT`` or ``currentContext`` in ``$DOCKER_CONFIG/config.json``
   (``docker context use NAME``): its ``meta.json`` endpoint and its TLS files, in the CLI's own layout;
3. else ``unix:///var/run/docker.sock``.

Every client of the engine is built from the one :class:`DockerHost`: the Engine API client of the CLI and the
installer (:mod:`dockext.engineapi`), the async one (the dashboard, the relay), and every ``docker`` / ``docker
compose`` process (their environment from :meth:`DockerHost.cli_env`, so they talk to the same engine with the
same certificates whatever context the user switches to meanwhile). No I/O but reading the CLI's files.
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .errors import DockextError

__all__ = ["CLI_VARIABLES", "DEFAULT_HOST", "DockerHost", "config_dir", "resolve"]

DEFAULT_HOST = "unix:///var/run/docker.sock"
#: The variables that choose a docker CLI's engine: replaced in every process dockext starts.
CLI_VARIABLES = ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")
#: What the Docker CLI tells the plugin it runs (``docker extension``: dockext) in its environment. Passed on,
#: ``DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND`` makes ``docker-compose`` take itself for ``docker compose`` and refuse
#: its own arguments ("unknown shorthand flag: 'p' in -p"): dropped from every process dockext starts.
PLUGIN_PREFIX = "DOCKER_CLI_PLUGIN_"
#: What of dockext's environment the docker and docker compose processes it runs for extensions get: what they
#: need to reach the engine (ssh's agent and configuration for ssh://), the registries' logins and credential
#: helpers, and nothing else. An extension names variables of that environment: ``environment: [NAME]`` in its
#: compose file and ``docker run -e NAME`` take the value from it, ``${NAME}`` too; so tokens and keys in
#: dockext's own environment (DOCKEXT_TOKEN, a cloud key) must never be there (found in a review).
CLIENT_ENV = ("PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SSH_AUTH_SOCK",
              "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "DOCKER_CONFIG")


def config_dir(env: Mapping[str, str]) -> Path:
    """The Docker CLI's configuration directory: ``$DOCKER_CONFIG`` or ``~/.docker``."""
    value = env.get("DOCKER_CONFIG")
    return Path(value) if value else Path(env.get("HOME") or Path.home()) / ".docker"


@dataclass(frozen=True)
class DockerHost:
    url: str  # unix:///path, tcp://host:port, ...
    tls: bool = False  # speak TLS to a tcp:// engine
    verify: bool = False  # check the engine's certificate (against ca.pem when there is one)
    cert_dir: str | None = None  # where ca.pem, cert.pem and key.pem are (any may be missing)
    source: str = "default"  # "DOCKER_HOST", "context NAME" or "default": where the choice came from

    @property
    def scheme(self) -> str:
        return urlparse(self.url).scheme

    def _file(self, name: str) -> str | None:
        if self.cert_dir is None:
            return None
        path = Path(self.cert_dir) / name
        return str(path) if path.is_file() else None

    @property
    def ca_file(self) -> str | None:
        return self._file("ca.pem")

    @property
    def client_cert(self) -> tuple[str, str] | None:
        cert, key = self._file("cert.pem"), self._file("key.pem")
        return (cert, key) if cert and key else None

    def cli_env(self) -> dict[str, str]:
        """What a ``docker`` or ``docker compose`` process needs to reach this engine as dockext does."""
        env = {"DOCKER_HOST": self.url}
        if self.tls:
            env["DOCKER_TLS_VERIFY" if self.verify else "DOCKER_TLS"] = "1"
            if self.cert_dir:
                env["DOCKER_CERT_PATH"] = self.cert_dir
        return env

    def client_env(self, env: Mapping[str, str]) -> dict[str, str]:
        """The environment of a docker or docker compose process run for an extension: :data:`CLIENT_ENV` of
        ``env``, and this engine's variables."""
        return self.apply({k: env[k] for k in CLIENT_ENV if k in env})

    def apply(self, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` with its engine-choosing variables replaced by this engine's, and without what the Docker CLI
        tells a plugin (:data:`PLUGIN_PREFIX`)."""
        out = {k: v for k, v in env.items() if k not in CLI_VARIABLES and not k.startswith(PLUGIN_PREFIX)}
        out.update(self.cli_env())
        return out

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS settings for a connection to a tcp:// engine, or None for plain TCP / a unix socket."""
        if not self.tls:
            return None
        try:
            if self.verify:
                ctx = ssl.create_default_context(cafile=self.ca_file)
            else:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if self.client_cert:
                ctx.load_cert_chain(*self.client_cert)
        except (OSError, ssl.SSLError) as exc:
            raise DockextError(
                f"cannot load the TLS files in {self.cert_dir} for {self.url}: {exc}",
                hint="Check ca.pem, cert.pem and key.pem there (DOCKER_CERT_PATH or the context's TLS files).",
            ) from None
        return ctx

    def describe(self) -> str:
        """``tcp://h:2376 (TLS, from context prod)``: for messages."""
        notes = ["TLS" if self.verify else "TLS, certificate not verified"] if self.tls else []
        if self.source != "default":
            notes.append(f"from {self.source}")
        return self.url + (f" ({', '.join(notes)})" if notes else "")


def _flag(value: str | None) -> bool:
    """As the Docker CLI reads DOCKER_TLS and DOCKER_TLS_VERIFY: set to anything (even 0) means on."""
    return bool(value)


def resolve(env: Mapping[str, str] | None = None) -> DockerHost:
    """The engine the Docker CLI would use with ``env`` (``os.environ`` by default). A DockextError for an address
    no client could use (``tcp://[::1``, a port out of range), naming where it came from."""
    env = os.environ if env is None else env
    found = _resolve(env)
    try:
        parts = urlparse(found.url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as exc:
        where = "DOCKER_HOST" if found.source == "DOCKER_HOST" else found.source
        raise DockextError(f"the engine address {found.url!r} ({where}) is not one a client can use: {exc}",
                           hint="Set DOCKER_HOST to unix:///path/to/docker.sock, tcp://HOST:PORT or ssh://USER@HOST, "
                                "or choose another context with `docker context use`.") from None
    return found


def _resolve(env: Mapping[str, str]) -> DockerHost:
    cfg = config_dir(env)
    host = env.get("DOCKER_HOST")
    if host:
        verify = _flag(env.get("DOCKER_TLS_VERIFY"))
        tls = verify or _flag(env.get("DOCKER_TLS"))
        cert_dir = env.get("DOCKER_CERT_PATH") or str(cfg)
        return DockerHost(host, tls=tls, verify=verify, cert_dir=cert_dir if tls else None, source="DOCKER_HOST")
    name = env.get("DOCKER_CONTEXT") or _current_context(cfg)
    if not name or name == "default":
        return DockerHost(DEFAULT_HOST)
    return _context(cfg, name)


def _current_context(cfg: Path) -> str | None:
    try:
        data = json.loads((cfg / "config.json").read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DockextError(f"cannot read the Docker CLI's configuration {cfg / 'config.json'}: {exc}",
                           hint="Fix the file, or set DOCKER_HOST to choose the engine.") from None
    name = data.get("currentContext") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None


def _context(cfg: Path, name: str) -> DockerHost:
    """A context in the CLI's store: ``contexts/meta/<sha256(name)>/meta.json`` and ``contexts/tls/<same>/docker``."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta_file = cfg / "contexts" / "meta" / digest / "meta.json"
    try:
        meta = json.loads(meta_file.read_bytes())
    except FileNotFoundError:
        raise DockextError(f"the docker context {name!r} does not exist (in {cfg})",
                           hint="`docker context ls` lists them; `docker context use default` goes back to the "
                           "local engine.") from None
    except (OSError, ValueError) as exc:
        raise DockextError(f"cannot read docker context {name!r} ({meta_file}): {exc}") from None
    endpoint = ((meta.get("Endpoints") or {}).get("docker") or {}) if isinstance(meta, dict) else {}
    host = endpoint.get("Host") if isinstance(endpoint, dict) else None
    if not isinstance(host, str) or not host:
        raise DockextError(f"the docker context {name!r} has no docker endpoint",
                           hint=f"docker context update {name} --docker host=...")
    tls_dir = cfg / "contexts" / "tls" / digest / "docker"
    has_files = any((tls_dir / f).is_file() for f in ("ca.pem", "cert.pem", "key.pem"))
    skip_verify = bool(endpoint.get("SkipTLSVerify"))
    tls = urlparse(host).scheme == "tcp" and (has_files or skip_verify)
    return DockerHost(host, tls=tls, verify=tls and not skip_verify, cert_dir=str(tls_dir) if has_files else None,
                      source=f"context {name}")
