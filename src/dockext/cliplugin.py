"""dockext as a Docker CLI plugin: ``docker extension init|install|update|ls|rm|uninstall|validate|dev|share|version``
are dockext's (``uninstall``, Docker Desktop's documented name, is ``rm``).

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


def docker_globals(options: list[str]) -> dict[str, str | None]:
    """The environment changes that docker's global ``options`` (given before ``extension``) mean for dockext
    (None: unset the variable), so that :func:`dockext.dockerhost.resolve` picks the engine the CLI would.

    ``-H``/``--host`` and ``-c``/``--context`` select the engine (as in the CLI, not both, ``-H`` once, and the
    context wins over ``$DOCKER_HOST``); ``--tls``, ``--tlsverify`` and the certificate files give its TLS
    settings; ``--config`` is the CLI's own directory; ``--debug`` and ``--log-level`` do not concern dockext.
    Options come as the Docker CLI takes them (it passes its own on unchanged): ``--name value``, ``--name=value``,
    ``-Xvalue``, ``-X=value`` and bundled shorthands (``-DH value``); booleans as Go reads them (``=t``, ``=0``)."""
    env: dict[str, str | None] = {}
    files: dict[str, str] = {}
    for name, value in _options(options):
        if name in ("-H", "--host"):
            if "DOCKER_HOST" in env:
                raise DockextError("specify only one -H (dockext reaches one engine)")
            env["DOCKER_HOST"] = value
        elif name in ("-c", "--context"):
            env["DOCKER_CONTEXT"] = value
        elif name == "--config":
            env["DOCKER_CONFIG"] = value
        elif name in ("-D", "--debug", "-l", "--log-level"):
            pass
        elif name == "--tls":
            env["DOCKER_TLS"] = "1" if _go_bool(name, value) else None
        elif name == "--tlsverify":
            # as in the CLI: --tlsverify given at all turns TLS on; =false only skips the verification
            env["DOCKER_TLS"] = "1"
            env["DOCKER_TLS_VERIFY"] = "1" if _go_bool(name, value) else None
        elif name in _TLS_FILES:
            files[name] = str(value)
        else:
            raise DockextError(f"unknown docker option {name!r} before `{NAME}`")
    if "DOCKER_HOST" in env and "DOCKER_CONTEXT" in env:
        raise DockextError("conflicting options: either specify --host or --context, not both")
    if "DOCKER_CONTEXT" in env and env["DOCKER_CONTEXT"] != "default":
        env["DOCKER_HOST"] = None  # a context named on the command line wins over $DOCKER_HOST
    # "default" stays named: the engine of $DOCKER_HOST, or the local socket, never docker's current context
    if files:
        env["DOCKER_CERT_PATH"] = _cert_dir(files)
    return env


#: docker's boolean shorthands (which a bundle such as -DH may hold) and its shorthands that take a value
_SHORT_BOOLEANS = {"-D"}
_SHORT_VALUED = {name for name in _VALUED if not name.startswith("--")}


def _options(options: list[str]) -> list[tuple[str, str | None]]:
    """(name, value) for each option, as pflag reads them; value None for a boolean given without one."""
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(options):
        arg = options[i]
        i += 1
        if arg.startswith("--") or not arg.startswith("-") or len(arg) <= 2 or arg[2] == "=":
            name, eq, value = arg.partition("=")
            if name in _VALUED and not eq:
                if i >= len(options):
                    raise DockextError(f"docker option {name} needs a value")
                value, i = options[i], i + 1
            out.append((name, value if eq or name in _VALUED else None))
            continue
        for j, letter in enumerate(arg[1:], start=1):  # a bundle: -DH VALUE, -Hunix:///x, -cprod
            name = "-" + letter
            if name in _SHORT_VALUED:
                value = arg[j + 1:]
                if not value:
                    if i >= len(options):
                        raise DockextError(f"docker option {name} needs a value")
                    value, i = options[i], i + 1
                out.append((name, value))
                break
            if name not in _SHORT_BOOLEANS:
                raise DockextError(f"unknown docker option {arg!r} before `{NAME}`")
            out.append((name, None))
    return out


def _go_bool(name: str, value: str | None) -> bool:
    """A boolean option's value as Go's strconv.ParseBool reads it (the Docker CLI's flags); given alone, true."""
    if value is None:
        return True
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise DockextError(f"invalid value {value!r} for docker option {name}: true or false")


#: docker's certificate options and the file name each must have in DOCKER_CERT_PATH
_TLS_FILES = {"--tlscacert": "ca.pem", "--tlscert": "cert.pem", "--tlskey": "key.pem"}


def _cert_dir(files: dict[str, str]) -> str:
    """The one directory the given certificate files are in under their usual names (all dockext reads)."""
    # the directory each is named in (its links not followed: they may lead anywhere, the names count here)
    dirs = {os.path.dirname(os.path.abspath(os.path.expanduser(path))) for path in files.values()}
    wrong = [f"{opt} {path}" for opt, path in files.items() if Path(path).name != _TLS_FILES[opt]]
    if len(dirs) != 1 or wrong:
        raise DockextError(
            "dockext reads an engine's TLS files from one directory, as ca.pem, cert.pem and key.pem",
            hint="Put them in one directory under those names and pass --tlscacert DIR/ca.pem (and so on), or "
            "set DOCKER_CERT_PATH=DIR.",
        )
    return dirs.pop()


def _command_index(args: list[str]) -> int | None:
    """Where ``extension`` is in ``args``, past docker's global options and their values (read as pflag does)."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == NAME:
            return i
        if not arg.startswith("-"):
            return None
        i += 2 if _takes_the_next(arg) else 1
    return None


def _takes_the_next(arg: str) -> bool:
    """Whether option ``arg`` takes the argument after it as its value (``--host``, ``-H``, ``-DH``)."""
    if arg.startswith("--") or len(arg) <= 2:
        return arg in _VALUED
    if arg[2] == "=":
        return False
    for j, letter in enumerate(arg[1:], start=1):
        if "-" + letter in _SHORT_VALUED:
            return j == len(arg) - 1
    return False


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
            for name, value in docker_globals(args[:at]).items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        except DockextError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            sys.exit(exc.exit_code)
        args = args[at + 1:]
    from .cli import cli, unwind_on_termination  # late: the metadata answer (on every `docker --help`) stays quick

    unwind_on_termination()
    cli.main(args=args, prog_name=f"docker {NAME}")


if __name__ == "__main__":
    main()
