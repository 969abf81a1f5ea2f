"""A scripted HTTP/1.1 server on loopback, for tests of clients facing a hostile registry.

`HostileServer.start(handler)` listens on `host` (any address of 127.0.0.0/8, or ::1) and answers
every request with what `handler(request)` returns:

- `Reply(status, headers, body)`: a well-formed answer (a `Content-Length` is added unless
  given; a `HEAD` gets none of the body). Header names and values may be `bytes`, to send bytes
  no well-behaved server would;
- `Raw(data)`: these bytes as they are, then the connection is closed (malformed answers);
- `Hold(seconds, head)`: send `head` (maybe nothing), then say nothing more for `seconds` (or
  until `stop()`), then close.

With `tls=(certificate, key)` it speaks HTTPS. With `proxy=True` it is also an HTTP proxy: a
`CONNECT host:port` is logged and tunnelled, but only to an address that resolves to loopback.
Every request is logged (`requests`) with its head and body, so tests can check which secret
reached which host. Standard library only; each connection runs in a thread of its own.
"""

from __future__ import annotations

import ipaddress
import socket
import socketserver
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

HeaderValue = Union[str, bytes]
_MAX_HEAD = 1024 * 1024
_MAX_BODY = 64 * 1024 * 1024


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: Tuple[Tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> Optional[str]:
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    def text(self) -> str:
        """The whole request as text, to search for a secret."""
        head = "\n".join(f"{k}: {v}" for k, v in self.headers)
        return f"{self.method} {self.target}\n{head}\n\n{self.body.decode('utf-8', 'replace')}"


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Sequence[Tuple[HeaderValue, HeaderValue]] = ()
    body: bytes = b""


@dataclass(frozen=True)
class Raw:
    data: bytes


@dataclass(frozen=True)
class Hold:
    seconds: float
    head: bytes = b""


Answer = Union[Reply, Raw, Hold]
Handler = Callable[[Request], Answer]


def _bytes(value: HeaderValue) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def encode(reply: Reply, method: str) -> bytes:
    names = {_bytes(k).lower() for k, _ in reply.headers}
    lines = [f"HTTP/1.1 {reply.status} Status".encode()]
    lines += [_bytes(k) + b": " + _bytes(v) for k, v in reply.headers]
    if b"content-length" not in names and b"transfer-encoding" not in names:
        lines.append(f"Content-Length: {len(reply.body)}".encode())
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    return head if method == "HEAD" else head + reply.body


def digest_reply(digest: str, media_type: str = "application/vnd.oci.image.manifest.v1+json") -> Reply:
    """A registry's answer to a `HEAD` of a manifest that exists."""
    return Reply(200, [("Docker-Content-Digest", digest), ("Content-Type", media_type),
                       ("Content-Length", "100")])


def _resolves_to_loopback(host: str, port: int) -> bool:
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(addresses) and all(_is_local(ipaddress.ip_address(a[4][0])) for a in addresses)


def _is_local(ip: Union[ipaddress.IPv4Address, ipaddress.IPv6Address]) -> bool:
    """Loopback, 0.0.0.0 (this host), or IPv4 loopback written as IPv6."""
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or ip.is_unspecified or (mapped is not None and mapped.is_loopback)


class _Connection(socketserver.BaseRequestHandler):
    server: "_Server"

    def handle(self) -> None:
        owner = self.server.owner
        owner.connections += 1
        self.connection: socket.socket = self.request
        if owner.context is not None:
            try:
                self.connection = owner.context.wrap_socket(self.connection, server_side=True)
            except (ssl.SSLError, OSError):
                owner.handshake_failures += 1
                return
        elif self.connection.recv(1, socket.MSG_PEEK) == b"\x16":
            return  # a TLS handshake on plain HTTP: closed at once, as a plain-HTTP registry does
        self.rfile: Any = self.connection.makefile("rb")
        self.wfile: Any = self.connection.makefile("wb", buffering=0)
        while not owner.stopped.is_set():
            request = self._read_request()
            if request is None:
                return
            owner.log(request)
            if owner.proxy and request.method == "CONNECT":
                self._tunnel(request)
                return
            answer = owner.handler(request)
            if isinstance(answer, Reply):
                self.wfile.write(encode(answer, request.method))
                continue
            if isinstance(answer, Raw):
                self.wfile.write(answer.data)
                return
            self.wfile.write(answer.head)
            owner.stopped.wait(answer.seconds)
            return

    def _read_request(self) -> Optional[Request]:
        head = b""
        try:
            while not head.endswith(b"\r\n\r\n"):
                line = self.rfile.readline(_MAX_HEAD)
                if not line or len(head) > _MAX_HEAD:
                    return None
                head += line
        except (OSError, ValueError):
            return None
        lines = head[:-4].decode("latin-1").split("\r\n")
        method, target = (lines[0].split(" ") + ["", ""])[:2]
        headers = tuple(
            (name.strip(), value.strip())
            for name, _, value in (line.partition(":") for line in lines[1:])
        )
        request = Request(method, target, headers, b"")
        body = self._read_body(request)
        return Request(method, target, headers, body)

    def _read_body(self, request: Request) -> bytes:
        length = request.header("content-length")
        if length is not None and length.isdigit():
            return self.rfile.read(min(int(length), _MAX_BODY))
        if (request.header("transfer-encoding") or "").lower() == "chunked":
            chunks: List[bytes] = []
            while True:
                size = int(self.rfile.readline(64).strip().split(b";")[0] or b"0", 16)
                if size == 0:
                    self.rfile.readline(64)
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(64)
        return b""

    def _tunnel(self, request: Request) -> None:
        host, _, port = request.target.rpartition(":")
        host = host.strip("[]")
        if not port.isdigit() or not _resolves_to_loopback(host, int(port)):
            self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        try:
            upstream = socket.create_connection((host, int(port)), timeout=10)
        except OSError:
            self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        client = self.connection

        def pipe(source: socket.socket, sink: socket.socket) -> None:
            try:
                while True:
                    data = source.recv(65536)
                    if not data:
                        break
                    sink.sendall(data)
            except OSError:
                pass
            finally:
                try:
                    sink.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        other = threading.Thread(target=pipe, args=(upstream, client), daemon=True)
        other.start()
        pipe(client, upstream)
        other.join(30)
        upstream.close()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: "HostileServer"


class _Server6(_Server):
    address_family = socket.AF_INET6


@dataclass
class HostileServer:
    handler: Handler
    host: str = "127.0.0.1"
    port: int = 0
    tls: Optional[Tuple[Path, Path]] = None
    proxy: bool = False
    requests: List[Request] = field(default_factory=list)
    connections: int = 0
    handshake_failures: int = 0
    stopped: threading.Event = field(default_factory=threading.Event)
    context: Optional[ssl.SSLContext] = None
    _server: Optional[_Server] = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(
        cls, handler: Handler, *, host: str = "127.0.0.1", port: int = 0,
        tls: Optional[Tuple[Path, Path]] = None, proxy: bool = False,
    ) -> "HostileServer":
        server = cls(handler, host, port, tls, proxy)
        if tls is not None:
            server.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            server.context.load_cert_chain(str(tls[0]), str(tls[1]))
        kind = _Server6 if ":" in host else _Server
        assert ipaddress.ip_address(host).is_loopback, "serve on loopback only"
        server._server = kind((host, port), _Connection)
        server._server.owner = server
        server.port = server._server.server_address[1]
        threading.Thread(target=server._server.serve_forever, args=(0.05,), daemon=True).start()
        return server

    def log(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    @property
    def address(self) -> str:
        """`host:port` as a reference names it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def url(self, path: str = "", *, host: Optional[str] = None) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host or self.address.rpartition(':')[0]}:{self.port}{path}"

    def seen(self) -> List[Request]:
        with self._lock:
            return list(self.requests)

    def stop(self) -> None:
        self.stopped.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> "HostileServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def on_paths(routes: Dict[str, Handler], default: Optional[Handler] = None) -> Handler:
    """A handler that picks by the first route (a path prefix) the request's path starts with."""

    def handler(request: Request) -> Answer:
        for prefix, route in routes.items():
            if request.path.startswith(prefix):
                return route(request)
        return default(request) if default else Reply(404)

    return handler
