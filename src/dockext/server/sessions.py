"""Dashboard sessions that survive a restart of ``dockext serve``.

Logging in with the token gives the browser a cookie whose value is signed with a secret kept in
``<home>/cookie_secret`` (32 random bytes, mode 0600, in the 0700 home): ``<expiry>.<nonce>.<hmac>``. Any
server started on that home accepts it until it expires, so a restart (or a crash) does not log the browser
out, while the token, which only serves to log in, may be new at each start. This is what Jupyter does with
its ``jupyter_cookie_secret``.

Deleting the file logs every browser out at the next start (a new secret is made); so does a value that is
not exactly as issued, or an expired one.

Logging out (the dashboard's "Log out", ``POST /api/logout``) revokes that one session: its nonce is kept in
``<home>/revoked_sessions`` (JSON, atomic, 0600) until the session would have expired, so a copy of the cookie
is refused too, by every server on that home, after a restart as well. Servers logging out at the same moment
take turns (``flock`` on ``<home>/.revoked_sessions.lock``), so none undoes another's logout.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path

from ..errors import StateError
from ..store import atomic_write, file_lock, file_stamp, read_settings

__all__ = ["FILE", "MAX_AGE", "REVOKED_FILE", "Sessions"]

FILE = "cookie_secret"
REVOKED_FILE = "revoked_sessions"
REVOKED_SCHEMA = 1
MAX_AGE = 30 * 86400  # seconds a login lasts


class Sessions:
    def __init__(self, secret: bytes, max_age: int = MAX_AGE, revoked: Path | None = None) -> None:
        if len(secret) < 32:
            raise ValueError("the session secret must have at least 32 bytes")
        self._secret = secret
        self.max_age = max_age
        self._revoked_path = revoked  # None: revocations live in memory only
        self._revoked: dict[str, int] = {}  # nonce -> expiry
        self._revoked_stamp: tuple[int, int] | None = None

    @classmethod
    def for_home(cls, home: Path) -> Sessions:
        """The secret of this dockext home, made on first use."""
        path = home / FILE
        try:
            return cls(bytes.fromhex(path.read_text().strip()), revoked=home / REVOKED_FILE)
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            raise StateError(
                f"the session secret {path} is unreadable: {exc}",
                hint="Delete it: a new one is made (browsers then log in again with the token).",
            ) from exc
        secret = secrets.token_bytes(32)
        tmp = home / f".{FILE}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secret.hex() + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)  # never replaces a secret another server made meanwhile
            except FileExistsError:
                return cls.for_home(home)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return cls(secret, revoked=home / REVOKED_FILE)

    def issue(self, now: float | None = None) -> str:
        expiry = int(now if now is not None else time.time()) + self.max_age
        body = f"{expiry}.{secrets.token_hex(16)}"
        return f"{body}.{self._mac(body)}"

    def valid(self, value: str, now: float | None = None) -> bool:
        if not value.isascii():  # a planted cookie can hold anything; compare_digest takes ASCII str only
            return False
        body, _, mac = value.rpartition(".")
        expiry, _, nonce = body.partition(".")
        if not (expiry.isdigit() and nonce and mac) or not hmac.compare_digest(mac, self._mac(body)):
            return False
        return int(expiry) > (now if now is not None else time.time()) and nonce not in self._revocations()

    def revoke(self, value: str) -> bool:
        """Log the session ``value`` out for good (if it is valid): kept until it would have expired."""
        if not self.valid(value):
            return False
        expiry, nonce, _ = value.split(".")
        path = self._revoked_path
        if path is None:
            self._revoked = self._add_revocation(nonce, int(expiry))
            return True
        # another server on the home may be logging out at the same moment: each reads what the other wrote
        with file_lock(path.with_name(f".{path.name}.lock")):
            self._revoked_stamp = None  # read the file as it is now
            table = self._add_revocation(nonce, int(expiry))
            atomic_write(path, json.dumps({"schema": REVOKED_SCHEMA, "revoked": table}).encode() + b"\n", mode=0o600)
            self._revoked, self._revoked_stamp = table, file_stamp(path)
        return True

    def _add_revocation(self, nonce: str, expiry: int) -> dict[str, int]:
        now = time.time()
        table = {n: e for n, e in self._revocations().items() if e > now}
        table[nonce] = expiry
        return table

    def _revocations(self) -> dict[str, int]:
        """The revoked nonces, read again whenever the file changed (another server on the home logged out)."""
        path = self._revoked_path
        if path is None:
            return self._revoked
        stamp = file_stamp(path)
        if stamp != self._revoked_stamp:
            try:
                data = read_settings(path, REVOKED_SCHEMA, "the revoked sessions", "") or {}
                self._revoked = {str(n): int(e) for n, e in (data.get("revoked") or {}).items()}
            except (StateError, ValueError, TypeError, AttributeError):
                # unreadable: keep what was known (a torn file cannot happen: atomic_write); never "none revoked"
                pass
            else:
                self._revoked_stamp = stamp
        return self._revoked

    def key(self, session: str) -> str:
        """The API key of one session (its cookie's value): what the dashboard's script sends with every API call
        (``X-Dockext-Key``), kept in the origin's own storage. A cookie is sent to every port of its host, so a
        process listening on another port of ``dockext.localhost`` can be sent it; this key it cannot be sent,
        nor compute from the cookie (it needs the secret)."""
        return self._mac(f"api-key:{session}")

    def _mac(self, body: str) -> str:
        return hmac.new(self._secret, body.encode(), hashlib.sha256).hexdigest()
