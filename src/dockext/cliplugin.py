"""dockext as a Docker CLI plugin: ``docker extension init|install|update|ls|rm|validate|dev|version`` are dockext's.

The Docker CLI finds plugins as executables named ``docker-<name>`` in ``$DOCKER_CONFIG/cli-plugins``
(``~/.docker/cli-plugins`` by default). It asks each for its metadata (``docker-extension
docker-cli-plugin-metadata``: one JSON object) and runs ``docker extension ARGS`` as
``docker-extension [DOCKER OPTIONS] extension ARGS``, with the user's environment (so ``DOCKER_HOST`` and
``DOCKEXT_HOME`` reach dockext as they would from ``dockext ARGS``); ``docker -H HOST extension ...`` selects
the engine as it does for docker's own commands.

``dockext plugin install`` writes that executable: a two-line shell script that runs this module with the
Python that dockext is installed in. It refuses to replace a ``docker-extension`` it did not write (Docker
Desktop's own, for instance) unless told to. This module is the one place that knows the plugin protocol;
the commands themselves are ``cli.py``'s.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

from . import __version__
from .errors import DockextError
from .store import atomic_write

__all__ = ["MARKER", "METADATA", "docker_globals", "install", "main", "plugin_path", "remove"]

NAME = "extension"  # docker <NAME> ...
MARKER = "# dockext: the Docker CLI plugin (written by `dockext plugin install`)"
METADATA = {
    "SchemaVersion": "0.1.0",
    "Vendor": "dockext",
    "Version": __version__,
    "ShortDescription": "Manages Docker extensions (dockext)",
}


def plugin_path() -> Path:
    """Where the Docker CLI looks for the ``docker extension`` plugin of this user."""
    config = os.environ.get("DOCKER_CONFIG")
    base = Path(config).expanduser() if config else Path.home() / ".docker"
    return base / "cli-plugins" / f"docker-{NAME}"


def script(python: str = sys.executable) -> str:
    return f"#!/bin/sh\n{MARKER}\nexec {shlex.quote(python)} -m dockext.cliplugin \"$@\"\n"


def install(*, force: bool = False) -> Path:
    """Write the plugin for this user; DockextError if another program's plugin is there (unless ``force``)."""
    path = plugin_path()
    if path.exists() and not force and not _ours(path):
        raise DockextError(
            f"{path} exists and was not written by dockext (Docker Desktop's extension CLI?)",
            hint="Run `dockext plugin install --force` to replace it, or use `dockext` directly.",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, script().encode(), mode=0o755)
    return path


def remove() -> Path | None:
    """Remove the plugin if dockext wrote it; the path removed, or None if there was none of ours."""
    path = plugin_path()
    if not path.exists():
        return None
    if not _ours(path):
        raise DockextError(f"{path} was not written by dockext: left as it is")
    path.unlink()
    return path


def _ours(path: Path) -> bool:
    try:
        return MARKER in path.read_text(errors="replace").splitlines()[:2]
    except OSError:
        return False


#: docker's global options that take a value (``docker -H x extension ls``)
_VALUED = {"-H", "--host", "-c", "--context", "--config", "-l", "--log-level", "--tlscacert", "--tlscert", "--tlskey"}


def docker_globals(options: list[str]) -> dict[str, str]:
    """The environment that docker's global ``options`` (given before ``extension``) mean for dockext.

    ``-H``/``--host`` selects the engine (``DOCKER_HOST``); ``--config`` is the CLI's own directory;
    ``--debug`` and ``--log-level`` do not concern dockext. A context other than ``default`` and TLS
    options are refused (dockext reads ``DOCKER_HOST`` only), rather than silently used on another engine."""
    env: dict[str, str] = {}
    i = 0
    while i < len(options):
        name, eq, value = options[i].partition("=")
        if name in _VALUED and not eq:
            if i + 1 >= len(options):
                raise DockextError(f"docker option {name} needs a value")
            value = options[i + 1]
            i += 1
        i += 1
        if name in ("-H", "--host"):
            env["DOCKER_HOST"] = value
        elif name in ("-c", "--context"):
            if value != "default":
                raise DockextError(
                    f"dockext does not read docker contexts (--context {value})",
                    hint="Set DOCKER_HOST to the context's engine: "
                    "docker context inspect NAME --format '{{.Endpoints.docker.Host}}'",
                )
        elif name == "--config":
            env["DOCKER_CONFIG"] = value
        elif name in ("-D", "--debug", "-l", "--log-level"):
            pass
        elif name.startswith("--tls"):
            raise DockextError(f"dockext does not support TLS engine options yet ({name})")
        else:
            raise DockextError(f"unknown docker option {options[i - 1]!r} before `{NAME}`")
    return env


def _command_index(args: list[str]) -> int | None:
    """Where ``extension`` is in ``args``, past docker's global options and their values."""
    i = 0
    while i < len(args):
        if args[i] == NAME:
            return i
        if not args[i].startswith("-"):
            return None
        i += 2 if args[i] in _VALUED else 1
    return None


def main(argv: list[str] | None = None) -> None:
    """The plugin's entry point: what the Docker CLI runs as ``docker-extension [DOCKER OPTIONS] extension ARGS``
    (docker passes its own global options, given before the command name, on to the plugin)."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["docker-cli-plugin-metadata"]:
        print(json.dumps(METADATA))
        return
    at = _command_index(args)
    if at is not None:
        try:
            os.environ.update(docker_globals(args[:at]))
        except DockextError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            sys.exit(exc.exit_code)
        args = args[at + 1:]
    from .cli import cli, unwind_on_termination  # late: the metadata answer (on every `docker --help`) stays quick

    unwind_on_termination()
    cli.main(args=args, prog_name=f"docker {NAME}")


if __name__ == "__main__":
    main()
