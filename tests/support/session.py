"""Talk to a running ``dockext serve`` over HTTP as the dashboard and an extension page do (no browser).

Shared by the reliability tests and ``bench/``: log in with the token, open an extension UI instance (its
capability), and address that extension's host API (``/i/<cap>/__dockext__/...`` under the extension's own
``Host``), the way ``ddclient.js`` does from inside the frame.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.support.server import Server


@dataclass
class Ui:
    """One opened extension UI: where its capability URLs live and which Host header reaches them."""

    instance: str
    cap: str
    origin: str  # http://<slug>.dockext.localhost:<port>
    host: str  # <slug>.dockext.localhost:<port>

    @property
    def api(self) -> str:
        return f"/i/{self.cap}/__dockext__"


class Session:
    """A logged-in dashboard session on ``server``."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.cookie, self.key = self._login()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def _login(self) -> tuple[str, str]:
        """What a browser does with the printed URL: ``/?token=`` answers 303, sets the session cookie and gives
        the session's key in the fragment (which the dashboard's script keeps and sends as ``X-Dockext-Key``)."""
        with httpx.Client(base_url=self.base_url, timeout=30) as c:
            r = c.get("/", params={"token": self.server.token},
                      headers={"Host": f"dockext.localhost:{self.server.port}"})
        name = f"dockext-{self.server.port}"
        _, _, key = r.headers.get("location", "").partition("#dockext-key=")
        if r.status_code != 303 or name not in r.cookies or not key:
            raise RuntimeError(f"login with the token failed: {r.status_code} {r.text[:200]}")
        return f"{name}={r.cookies[name]}", key

    def dashboard(self) -> httpx.Client:
        """A client of the dashboard's own API (``X-Dockext`` sent, as the dashboard's script does)."""
        return httpx.Client(
            base_url=self.base_url, timeout=30,
            headers={"Host": f"dockext.localhost:{self.server.port}", "Cookie": self.cookie, "X-Dockext": "1",
                     "X-Dockext-Key": self.key},
        )

    def open_ui(self, key: str) -> Ui:
        """A new UI instance of the installed extension ``key`` (what opening its tab does)."""
        with self.dashboard() as c:
            r = c.post("/api/ui-instances", json={"extension": key})
        if r.status_code != 201:
            raise RuntimeError(f"POST /api/ui-instances: {r.status_code} {r.text[:300]}")
        body = r.json()
        url = urlsplit(body["url"])
        return Ui(body["instance"], url.path.split("/")[2], body["origin"], url.netloc)

    def close_ui(self, ui: Ui) -> None:
        with contextlib.suppress(httpx.HTTPError), self.dashboard() as c:
            c.delete(f"/api/ui-instances/{ui.instance}")

    def page(self, ui: Ui, **kwargs: Any) -> httpx.Client:
        """A client of ``ui``'s host API as its page reaches it: its own Host, Origin, and ``X-Dockext``."""
        return httpx.Client(
            base_url=self.base_url, timeout=kwargs.pop("timeout", 30),
            headers={"Host": ui.host, "Origin": ui.origin, "X-Dockext": "1"}, **kwargs,
        )

    def async_page(self, ui: Ui, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url, timeout=kwargs.pop("timeout", 30),
            headers={"Host": ui.host, "Origin": ui.origin, "X-Dockext": "1"}, **kwargs,
        )

    def wait_backend(self, ui: Ui, path: str = "/hello", timeout: float = 60) -> None:
        """Until the proxied ``GET path`` answers 200 (the backend container may still be starting)."""
        deadline = time.monotonic() + timeout
        last = ""
        with self.page(ui, timeout=10) as c:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    r = c.get(f"{ui.api}/vm{path}")
                    if r.status_code == 200:
                        return
                    last = f"{r.status_code} {r.text[:200]}"
                time.sleep(0.2)
        raise RuntimeError(f"the backend did not answer {path} within {timeout:.0f} s: {last}")


def backend_socket(home: Path, record: dict[str, Any]) -> Path:
    """Where the host side of an installed extension's backend socket is (from its ``extension.json``)."""
    vm = record["vm"]
    return home / "gs" / str(vm["gs_key"]) / str(vm.get("socket", "backend.sock"))


def open_fds(pid: int) -> int:
    """How many file descriptors process ``pid`` has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))
