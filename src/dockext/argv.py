"""Exec argument semantics and exec policy for ``ddClient.*.cli.exec`` (pure, no I/O).

Docker Desktop runs a non-streaming ``exec(cmd, args)`` as if ``cmd`` and ``args`` were joined with spaces
and re-tokenised by a POSIX shell *without any expansion* (reference §4.4.6): quotes are removed, backslash
escapes processed, but ``$(...)``, backticks, globs and ``~`` stay literal. Extensions depend on it
(``'"{{json .}}"'`` must reach docker as ``{{json .}}``). dockext reproduces that with :func:`shlex.split`
and never runs a shell.

The policy half decides what a web page may make dockext run (security reference A4): no global ``docker``
flags (the CLI only reads ``-H``/``--context``/``--config`` before the subcommand), only the extension's own
declared host binaries, and an environment without loader, interpreter or engine-redirecting variables.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from dockext.errors import ExecRefused

__all__ = [
    "ENV_DENY",
    "ENV_DOCKER_ALLOW",
    "docker_argv",
    "host_binary",
    "joined",
    "sanitize_env",
    "split_command_line",
]


def _q(text: str) -> str:
    """Quote untrusted text for an error message (``repr`` escapes control characters)."""
    return repr(text)


def joined(cmd: str, args: Sequence[str]) -> str:
    """The command line Docker Desktop builds: ``" ".join([cmd, *args])``; also the result's ``cmd``."""
    if not isinstance(cmd, str):
        raise ExecRefused(f"the command must be a string, not {type(cmd).__name__}")
    if isinstance(args, str | bytes) or not isinstance(args, Sequence):
        raise ExecRefused("the arguments must be an array of strings")
    for arg in args:
        if not isinstance(arg, str):
            raise ExecRefused(f"every argument must be a string, got {type(arg).__name__}")
    return " ".join([cmd, *args])


def split_command_line(cmd: str, args: Sequence[str]) -> list[str]:
    """Tokenise like Docker Desktop's non-streaming exec: join, then ``shlex.split(line, posix=True)``.

    ``("stop", ['$(docker ps -q)'])`` gives ``["stop", "$(docker", "ps", "-q)"]``: nothing is expanded, and
    no shell ever sees the line. Unbalanced quotes and NUL characters raise :class:`ExecRefused`.
    """
    line = joined(cmd, args)
    if "\x00" in line:
        raise ExecRefused(f"cannot parse the command line {_q(line)}: it contains a NUL character")
    try:
        return shlex.split(line, comments=False, posix=True)
    except ValueError as exc:
        raise ExecRefused(f"cannot parse the command line {line}: {exc}") from None


def docker_argv(tokens: Sequence[str]) -> list[str]:
    """Check the tokens of ``docker.cli.exec`` (dockext runs ``docker <tokens>`` with ``DOCKER_HOST`` pinned).

    The docker CLI parses global flags only before the subcommand (cobra ``SetInterspersed(false)``), so
    refusing a first token that starts with ``-`` is enough to stop ``-H``/``--host``, ``--context`` and
    ``--config`` from pointing the command at another engine or another CLI configuration (plugins,
    credentials).
    """
    if not tokens:
        raise ExecRefused("no docker command given")
    first = tokens[0]
    if first.startswith("-"):
        raise ExecRefused(
            f"the docker command may not start with the option {_q(first)}: global flags such as "
            "-H/--host, --context or --config are not allowed; start with a subcommand"
        )
    return list(tokens)


def host_binary(name: str, declared: Iterable[str]) -> str:
    """Check the first token of ``extension.host.cli.exec``: it must be exactly the base name of a binary
    this extension declared in ``host.binaries``. Never a path (no ``/``, no ``..``): dockext runs
    ``<ext>/host/<name>`` and nothing else, as Docker Desktop documents ("only executables shipped as part of
    the extension can be invoked")."""
    names = sorted(set(declared))
    listing = ", ".join(names) if names else "none"
    if not isinstance(name, str) or not name:
        raise ExecRefused(f"no host binary named (this extension declares: {listing})")
    if "\x00" in name or "/" in name or "\\" in name or name in (".", ".."):
        raise ExecRefused(
            f"host binary {_q(name)} must be a plain file name, not a path "
            f"(this extension declares: {listing})"
        )
    if name not in names:
        raise ExecRefused(f"{_q(name)} is not a host binary of this extension (it declares: {listing})")
    return name


# The deny list of sanitize_env, one pattern (fnmatch, upper case; names are compared upper-cased so that
# "ld_preload" or "Path" cannot slip through on a case-insensitive platform) -> why it is refused.
ENV_DENY: Final[Mapping[str, str]] = {
    "LD_*": "dynamic loader (LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT load code into every process)",
    "DYLD_*": "macOS dynamic loader",
    "GCONV_PATH": "glibc loads iconv modules from it",
    "LOCPATH": "glibc locale loading",
    "GLIBC_TUNABLES": "glibc tunables (CVE-2023-4911 class)",
    "PATH": "decides which programs run (host binaries often call docker)",
    "HOME": "selects configuration, CLI plugins and credentials",
    "XDG_CONFIG_HOME": "selects configuration, CLI plugins and credentials",
    "BASH_ENV": "a script every non-interactive bash runs",
    "ENV": "a script every POSIX sh runs",
    "SHELLOPTS": "shell options (xtrace with PS4 runs code)",
    "PS4": "shell code run by xtrace",
    "IFS": "shell word splitting",
    "PROMPT_COMMAND": "shell code",
    "ZDOTDIR": "zsh startup files",
    "PYTHON*": "Python startup code and module paths",
    "NODE_OPTIONS": "Node.js --require",
    "PERL5OPT": "Perl options (-M loads modules)",
    "PERL5LIB": "Perl module path",
    "PERLLIB": "Perl module path",
    "RUBYOPT": "Ruby options (-r loads code)",
    "RUBYLIB": "Ruby module path",
    "JAVA_TOOL_OPTIONS": "JVM agents",
    "_JAVA_OPTIONS": "JVM agents",
    "JDK_JAVA_OPTIONS": "JVM agents",
    "GIT_*": "git runs programs named in GIT_SSH, GIT_EXEC_PATH, GIT_CONFIG_*...",
    "DOCKER_*": "redirects the docker CLI (DOCKER_HOST, DOCKER_CONTEXT, DOCKER_CONFIG, DOCKER_CERT_PATH...)",
}

# DOCKER_* variables that only tune behaviour and stay allowed (security reference A4, Captain's list).
ENV_DOCKER_ALLOW: Final[frozenset[str]] = frozenset(
    {
        "DOCKER_API_VERSION",
        "DOCKER_BUILDKIT",
        "DOCKER_CLI_HINTS",
        "DOCKER_DEFAULT_PLATFORM",
        "DOCKER_HIDE_LEGACY_COMMANDS",
        "DOCKER_SCAN_SUGGEST",
    }
)

_ENV_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _env_refusal(name: str) -> str | None:
    upper = name.upper()
    if upper in ENV_DOCKER_ALLOW:
        return None
    for pattern, why in ENV_DENY.items():
        if fnmatch.fnmatchcase(upper, pattern):
            return why
    return None


def _env_value(name: str, value: Any) -> str:
    # Node's child_process turns values into strings the JavaScript way.
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = str(int(value)) if value.is_integer() else repr(value)
    elif isinstance(value, str):
        text = value
    else:
        raise ExecRefused(f"environment variable {name} must be a string, not {type(value).__name__}")
    if "\x00" in text:
        raise ExecRefused(f"environment variable {name} contains a NUL character")
    return text


def sanitize_env(env: Mapping[str, Any] | None) -> dict[str, str]:
    """Validate ``options.env`` of an exec request; returns the variables to add to dockext's environment.

    ``None`` values are dropped (Node leaves them out too), numbers become strings. Names must be plain
    identifiers and may not match :data:`ENV_DENY` (except :data:`ENV_DOCKER_ALLOW`); ``COMPOSE_*`` is
    allowed. Any refused variable refuses the whole request, naming it.
    """
    if env is None:
        return {}
    if not isinstance(env, Mapping):
        raise ExecRefused("options.env must be an object")
    result: dict[str, str] = {}
    for name, value in env.items():
        if not isinstance(name, str) or _ENV_NAME_RE.fullmatch(name) is None:
            raise ExecRefused(
                f"environment variable name {_q(str(name))} is not allowed: "
                "names must match [A-Za-z_][A-Za-z0-9_]*"
            )
        why = _env_refusal(name)
        if why is not None:
            raise ExecRefused(f"environment variable {name} is not allowed: {why}")
        if value is None:
            continue
        result[name] = _env_value(name, value)
    return result
