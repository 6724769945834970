"""Developer mode, per extension (``dockext dev``, as ``docker extension dev``): where its UI comes from, and
whether ddClient calls are traced.

* ``ui-source EXT URL``: the UI is loaded from a dev server (``http://localhost:3000``, a Vite or webpack dev
  server) instead of the files copied out of the image. The server proxies it on the extension's own origin,
  so the page keeps its origin, its capability and ``window.ddClient`` (injected into the HTML as for the
  packaged UI), and hot reload works (its WebSocket is proxied too).
* ``debug EXT``: Docker Desktop opens Chrome's DevTools with the tab. A browser dashboard cannot open them;
  instead every ddClient call, and how it ended, is logged to the page's console (``console.debug``,
  ``[ddClient] ...``), and the tab is marked.
* ``reset EXT``: both off.

Settings are read when a tab is opened: reopen the tab after a change (Docker Desktop says the same). They are
kept in ``<home>/dev.json`` (atomic, versioned) by extension key, and stay until ``reset``: through updates, and
through a remove and reinstall while developing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from .errors import DockextError
from .paths import Layout
from .store import Store, atomic_write, read_settings, settings_part

__all__ = ["FILE", "SCHEMA", "DevSettings", "check_url", "forget", "load", "reset", "set_debug", "set_ui_source"]

SCHEMA = 1
FILE = "dev.json"


@dataclass(frozen=True)
class DevSettings:
    ui_source: str | None = None  # base URL of a dev server serving the UI
    debug: bool = False  # trace ddClient calls to the console

    @property
    def active(self) -> bool:
        return self.ui_source is not None or self.debug

    def to_json(self) -> dict[str, Any]:
        return {"ui_source": self.ui_source, "debug": self.debug}


def check_url(url: str) -> str:
    """A dev server's base URL: http or https, with a host; returned without a trailing slash."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DockextError(
            f"{url!r} is not an http(s) URL of a dev server",
            hint="For example: dockext dev ui-source my/extension http://localhost:3000",
        )
    if parts.username or parts.password:
        raise DockextError("a dev server URL cannot carry a user name or password")
    if "?" in url or "#" in url:  # also an empty query or fragment ("http://h:5173#"), which urlsplit drops
        raise DockextError(f"{url!r}: give the dev server's base URL, without ? or #")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError as exc:
        raise DockextError(f"{url!r}: {exc}") from None
    return url.strip().rstrip("/")


def load(layout: Layout) -> dict[str, DevSettings]:
    """Settings by extension key; extensions without any are absent."""
    what, delete_hint = "the developer settings", "deleting it turns dev mode off"
    data = read_settings(layout.root / FILE, SCHEMA, what, delete_hint)
    if data is None:
        return {}
    out: dict[str, DevSettings] = {}
    for key, value in settings_part(data, "extensions", dict, layout.root / FILE, what, delete_hint).items():
        if isinstance(value, dict):
            source = value.get("ui_source")
            out[str(key)] = DevSettings(
                ui_source=source if isinstance(source, str) else None, debug=value.get("debug") is True
            )
    return out


def set_ui_source(layout: Layout, key: str, url: str) -> DevSettings:
    return _change(layout, key, ui_source=check_url(url))


def set_debug(layout: Layout, key: str) -> DevSettings:
    return _change(layout, key, debug=True)


def reset(layout: Layout, key: str) -> DevSettings:
    return _change(layout, key, ui_source=None, debug=False)


def forget(layout: Layout, key: str) -> None:
    """Drop an extension's settings (it was removed: installed again, it must not load a developer's UI source
    unasked). The caller holds the store's lock; a file that cannot be read is left to say so where it is used."""
    try:
        settings = load(layout)
    except DockextError:
        return
    if settings.pop(key, None) is not None:
        _save(layout, settings)


def _change(layout: Layout, key: str, **changes: Any) -> DevSettings:
    with Store(layout).lock():
        settings = load(layout)
        new = replace(settings.get(key, DevSettings()), **changes)
        if new.active:
            settings[key] = new
        else:
            settings.pop(key, None)
        _save(layout, settings)
        return new


def _save(layout: Layout, settings: dict[str, DevSettings]) -> None:
    body = {"schema": SCHEMA, "extensions": {k: v.to_json() for k, v in sorted(settings.items())}}
    atomic_write(layout.root / FILE, json.dumps(body, indent=2).encode() + b"\n", mode=0o600)
