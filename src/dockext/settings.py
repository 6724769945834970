"""dockext's own settings: ``<home>/settings.json``, atomic and versioned.

The file holds ``{"schema": 1, <name>: <value>, ...}``. Reading is tolerant: a missing or unreadable file gives
the defaults, unknown names are ignored (and kept: a newer dockext may have written them). Writing refuses a
file of a newer schema rather than silently dropping what that version knows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from .errors import DockextError, StateError
from .store import atomic_write

__all__ = ["SCHEMA_VERSION", "SETTINGS_FILE", "InvalidSetting", "Settings", "load", "save", "settings_path", "update"]

SCHEMA_VERSION = 1
SETTINGS_FILE = "settings.json"


class InvalidSetting(DockextError):
    """A settings change names an unknown setting or gives a value of the wrong type."""

    http_status = 400


@dataclass(frozen=True)
class Settings:
    #: Show the containers of extension backends (label ``com.docker.desktop.extension=true``) in the
    #: dashboard's container list, like Docker Desktop's ``ShowExtensionsSystemContainers``. Extensions always
    #: see them through ``ddClient.docker.listContainers``.
    show_extension_containers: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_TYPES: dict[str, type] = {f.name: bool for f in fields(Settings)}


def settings_path(home: Path) -> Path:
    return home / SETTINGS_FILE


def _read_raw(home: Path) -> dict[str, Any]:
    try:
        data = json.loads(settings_path(home).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load(home: Path) -> Settings:
    """The settings in ``home``; defaults for anything missing, unreadable or of the wrong type."""
    raw = _read_raw(home)
    known: dict[str, Any] = {}
    for name, kind in _TYPES.items():
        value = raw.get(name)
        if isinstance(value, kind):
            known[name] = value
    return Settings(**known)


def save(home: Path, settings: Settings) -> None:
    raw = _read_raw(home)
    schema = raw.get("schema", SCHEMA_VERSION)
    if not isinstance(schema, int) or schema > SCHEMA_VERSION:
        raise StateError(
            f"{settings_path(home)} has schema {schema!r}, this dockext understands up to {SCHEMA_VERSION}",
            hint="It was probably written by a newer dockext: upgrade dockext.",
        )
    body = {**raw, "schema": SCHEMA_VERSION, **settings.to_json()}
    home.mkdir(parents=True, exist_ok=True)
    atomic_write(settings_path(home), (json.dumps(body, indent=2, sort_keys=True) + "\n").encode(), mode=0o600)


def update(home: Path, changes: Mapping[str, Any]) -> Settings:
    """Apply ``changes`` (a partial object) to the stored settings, save and return them."""
    values: dict[str, Any] = {}
    for name, value in changes.items():
        kind = _TYPES.get(name)
        if kind is None:
            raise InvalidSetting(f"unknown setting {name!r}", hint=f"Known settings: {', '.join(sorted(_TYPES))}.")
        if not isinstance(value, kind):
            raise InvalidSetting(f"setting {name!r} must be a {kind.__name__}, not {type(value).__name__}")
        values[name] = value
    current = load(home)
    new = replace(current, **values)
    if new != current or not settings_path(home).exists():
        save(home, new)
    return new

