"""A registry token service (the Docker Registry v2 token spec) for the private-registry tests: stdlib only,
run as its own process (``python tokenservice.py PORT KEY CERT USER PASSWORD LOG``) next to a real
``docker-registry`` configured with ``auth: token`` and ``rootcertbundle: CERT``.

* ``GET /token?service=..&scope=..`` with Basic auth (what the Docker engine and dockext send with a user and
  password) or without (anonymous: a token granting nothing). With ``offline_token=true`` (what ``docker login``
  asks) the answer also carries a ``refresh_token``, which the Docker CLI then saves as the login's
  ``identitytoken`` instead of the password, as with Docker Hub.
* ``POST /token`` with a form: ``grant_type=refresh_token`` (what a client holding that identity token sends)
  or ``grant_type=password``.

Tokens are JWTs signed RS256 with ``KEY`` (the ``openssl`` command signs; the certificate goes in ``x5c``).
Every request is appended to ``LOG`` as a JSON line (method, grant, client_id, account, scopes, whether it was
granted), never with a password or token.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SERVICE = "dockext-test-registry"
ISSUER = "dockext-test-issuer"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Service:
    def __init__(self, key: str, cert: str, user: str, password: str, log: str) -> None:
        self.key, self.user, self.password, self.log = key, user, password, log
        der = subprocess.run(["openssl", "x509", "-in", cert, "-outform", "der"], check=True,
                             capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.refresh_tokens: set[str] = set()

    def token(self, account: str | None, scopes: list[str]) -> str:
        access = []
        for scope in scopes if account else []:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": account or "", "aud": SERVICE, "exp": now + 300, "nbf": now - 10,
                  "iat": now, "jti": secrets.token_hex(8), "access": access}
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key], input=signing_input.encode(),
                                   check=True, capture_output=True).stdout
        return f"{signing_input}.{_b64url(signature)}"

    def refresh_token(self) -> str:
        token = secrets.token_urlsafe(24)
        self.refresh_tokens.add(token)
        return token

    def record(self, **entry: object) -> None:
        with open(self.log, "a") as f:
            f.write(json.dumps(entry) + "\n")


def handler(service: Service) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            scopes = query.get("scope", [])
            auth = self.headers.get("Authorization", "")
            account: str | None = None
            if auth.startswith("Basic "):
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                if (user, password) != (service.user, service.password):
                    service.record(method="GET", grant="basic", account=user, scopes=scopes, granted=False)
                    self._answer(401, {"details": "wrong user or password"})
                    return
                account = user
            service.record(method="GET", grant="basic" if account else "anonymous", account=account,
                           client_id=query.get("client_id", [None])[0], scopes=scopes, granted=True)
            answer: dict[str, object] = {"token": service.token(account, scopes), "expires_in": 300}
            if account and query.get("offline_token") == ["true"]:  # `docker login` asks for one to keep
                answer["refresh_token"] = service.refresh_token()
            self._answer(200, answer)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            grant = form.get("grant_type", [""])[0]
            scopes = " ".join(form.get("scope", [])).split()
            client_id = form.get("client_id", [None])[0]
            account: str | None = None
            answer: dict[str, object] = {}
            if grant == "password" and (form.get("username", [""])[0], form.get("password", [""])[0]) == (
                    service.user, service.password):
                account = service.user
                answer["refresh_token"] = service.refresh_token()
            elif grant == "refresh_token" and form.get("refresh_token", [""])[0] in service.refresh_tokens:
                account = service.user
            service.record(method="POST", grant=grant, client_id=client_id, account=account, scopes=scopes,
                           granted=account is not None)
            if account is None:
                self._answer(401, {"error": "invalid_grant"})
                return
            self._answer(200, {**answer, "access_token": service.token(account, scopes), "expires_in": 300})

    return Handler


def main() -> None:
    port, key, cert, user, password, log = sys.argv[1:7]
    server = ThreadingHTTPServer(("127.0.0.1", int(port)), handler(Service(key, cert, user, password, log)))
    server.serve_forever()


if __name__ == "__main__":
    main()
