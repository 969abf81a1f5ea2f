"""A token server for `docker-registry`'s `auth: token`, on loopback, for tests.

It issues the JWTs of the distribution token spec, signed (RS256) with a key made at start-up
and certified by a CA made at start-up (the registry trusts that CA through `rootcertbundle`),
so no key is ever stored. `GET /token?service=..&scope=..` with Basic credentials or none;
`POST /token` with `grant_type=refresh_token` (an identity token) or `password`. Who may do
what: a known user gets every action asked for, anyone gets `pull` on repositories under
`public/`. Each request is logged (never a secret), so tests count tokens per scope.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

SERVICE = "docker-mirror-test-registry"
ISSUER = "docker-mirror-test-token-issuer"
TOKEN_LIFETIME = 300


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class TokenRequest:
    method: str
    user: Optional[str]  # None: anonymous
    scopes: List[str]
    grant_type: Optional[str]
    status: int


def _make_keys(directory: Path) -> Any:
    """A CA certificate (written to `directory/ca.pem`) and a signing key certified by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "docker-mirror test token CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "token-ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return key, leaf.public_bytes(serialization.Encoding.DER), ca_path


@dataclass
class TokenServer:
    """Start with `TokenServer.start(directory, users={...})`; `stop()` at the end."""

    address: str
    ca_path: Path
    users: Dict[str, str]
    identity_tokens: Dict[str, str]
    log: List[TokenRequest] = field(default_factory=list)
    _server: Optional[ThreadingHTTPServer] = None
    _key: object = None
    _leaf_der: bytes = b""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def realm(self) -> str:
        return f"http://{self.address}/token"

    def registry_env(self) -> Dict[str, str]:
        """The `docker-registry` settings (as environment overrides) that make it trust us."""
        return {
            "REGISTRY_AUTH": "token",
            "REGISTRY_AUTH_TOKEN_REALM": self.realm,
            "REGISTRY_AUTH_TOKEN_SERVICE": SERVICE,
            "REGISTRY_AUTH_TOKEN_ISSUER": ISSUER,
            "REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE": str(self.ca_path),
        }

    @classmethod
    def start(
        cls,
        directory: Path,
        *,
        users: Mapping[str, str],
        identity_tokens: Optional[Mapping[str, str]] = None,
    ) -> TokenServer:
        key, leaf_der, ca_path = _make_keys(directory)
        server = cls(
            address="",
            ca_path=ca_path,
            users=dict(users),
            identity_tokens=dict(identity_tokens or {}),
        )
        server._key, server._leaf_der = key, leaf_der
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
        httpd.daemon_threads = True
        server._server = httpd
        server.address = f"127.0.0.1:{httpd.server_address[1]}"
        threading.Thread(target=httpd.serve_forever, name="token-server", daemon=True).start()
        return server

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def issue(self, user: Optional[str], scopes: List[str]) -> str:
        """A signed token for `user` with what it may do of `scopes`."""
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind != "repository" or not name:
                continue
            asked = [a for a in actions.split(",") if a]
            if user is not None:
                granted = asked
            else:
                granted = [a for a in asked if a == "pull" and name.startswith("public/")]
            access.append({"type": "repository", "name": name, "actions": granted})
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": user or "",
            "aud": SERVICE,
            "exp": now + TOKEN_LIFETIME,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self._leaf_der).decode()]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        signature = self._key.sign(  # type: ignore[attr-defined]
            signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        return f"{signing_input}.{_b64url(signature)}"

    def requests(self) -> List[TokenRequest]:
        with self._lock:
            return list(self.log)

    def _record(self, entry: TokenRequest) -> None:
        with self._lock:
            self.log.append(entry)


def _handler(server: TokenServer) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 10

        def log_message(self, format: str, *args: object) -> None:
            pass

        def handle(self) -> None:
            # A TLS handshake (a client trying HTTPS first) gets the connection closed at once.
            try:
                first = self.connection.recv(1, socket.MSG_PEEK)
            except OSError:
                return
            if first in (b"", b"\x16"):
                return
            super().handle()

        def _answer(self, status: int, document: dict) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="token"')
            self.end_headers()
            self.wfile.write(body)

        def _grant(self, method: str, user: Optional[str], scopes: List[str], grant: Optional[str], ok: bool) -> None:
            if not ok:
                server._record(TokenRequest(method, user, scopes, grant, 401))
                self._answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
                return
            token = server.issue(user, scopes)
            server._record(TokenRequest(method, user, scopes, grant, 200))
            issued = datetime.datetime.now(datetime.timezone.utc).isoformat()
            self._answer(
                200,
                {"token": token, "access_token": token, "expires_in": TOKEN_LIFETIME, "issued_at": issued},
            )

        def do_GET(self) -> None:
            url = urllib.parse.urlparse(self.path)
            query = urllib.parse.parse_qs(url.query)
            scopes = query.get("scope", [])
            header = self.headers.get("Authorization", "")
            if not header:
                self._grant("GET", None, scopes, None, True)
                return
            user = None
            ok = False
            if header.startswith("Basic "):
                try:
                    name, _, password = base64.b64decode(header[6:]).decode().partition(":")
                except ValueError:
                    name, password = "", ""
                ok = name in server.users and secrets.compare_digest(server.users[name], password)
                user = name if ok else None
            self._grant("GET", user, scopes, None, ok)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            grant = (form.get("grant_type") or [""])[0]
            scopes = " ".join(form.get("scope", [])).split()
            user = None
            if grant == "refresh_token":
                user = server.identity_tokens.get((form.get("refresh_token") or [""])[0])
            elif grant == "password":
                name = (form.get("username") or [""])[0]
                password = (form.get("password") or [""])[0]
                if name in server.users and secrets.compare_digest(server.users[name], password):
                    user = name
            self._grant("POST", user, scopes, grant, user is not None)

    return Handler
