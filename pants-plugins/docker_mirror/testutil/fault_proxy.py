"""An HTTP proxy on loopback in front of a real registry that injects faults, for tests.

For each request the `plan` decides: answer with a fault (a status and headers, e.g. 503, or
429 with `Retry-After`), or pass the request on to the registry and relay its answer (minus the
headers listed in `strip_headers`). Every request is logged. A TLS handshake (a client trying
HTTPS first) gets the connection closed at once, as a plain-HTTP registry would refuse it.
"""

from __future__ import annotations

import http.client
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, List, Optional, Sequence, Tuple

# (index of the request, method, path) -> a fault to answer with, or None to pass it on.
Fault = Tuple[int, Dict[str, str]]
Plan = Callable[[int, str, str], Optional[Fault]]

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


def first(count: int, status: int, headers: Optional[Dict[str, str]] = None) -> Plan:
    """Answers the first `count` requests with `status`, then passes the rest on."""
    return lambda index, method, path: (status, dict(headers or {})) if index < count else None


def always(status: int, headers: Optional[Dict[str, str]] = None) -> Plan:
    return lambda index, method, path: (status, dict(headers or {}))


def passthrough() -> Plan:
    return lambda index, method, path: None


@dataclass
class Logged:
    method: str
    path: str
    status: int
    injected: bool


@dataclass
class FaultProxy:
    address: str
    upstream: str
    plan: Plan
    strip_headers: Sequence[str] = ()
    log: List[Logged] = field(default_factory=list)
    _server: Optional[ThreadingHTTPServer] = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _count: int = 0

    @classmethod
    def start(cls, upstream: str, plan: Plan, *, strip_headers: Sequence[str] = ()) -> FaultProxy:
        proxy = cls(address="", upstream=upstream, plan=plan, strip_headers=strip_headers)
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
        httpd.daemon_threads = True
        proxy._server = httpd
        proxy.address = f"127.0.0.1:{httpd.server_address[1]}"
        threading.Thread(target=httpd.serve_forever, name="fault-proxy", daemon=True).start()
        return proxy

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def requests(self) -> List[Logged]:
        with self._lock:
            return list(self.log)

    def _next(self, method: str, path: str) -> Optional[Fault]:
        with self._lock:
            index = self._count
            self._count += 1
        return self.plan(index, method, path)

    def _record(self, entry: Logged) -> None:
        with self._lock:
            self.log.append(entry)


def _handler(proxy: FaultProxy) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 10

        def log_message(self, format: str, *args: object) -> None:
            pass

        def handle(self) -> None:
            try:
                first_byte = self.connection.recv(1, socket.MSG_PEEK)
            except OSError:
                return
            if first_byte in (b"", b"\x16"):
                return
            super().handle()

        def _serve(self) -> None:
            fault = proxy._next(self.command, self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if fault is not None:
                status, headers = fault
                payload = b'{"errors":[{"code":"FAULT","message":"injected"}]}'
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
                proxy._record(Logged(self.command, self.path, status, True))
                return
            upstream = http.client.HTTPConnection(proxy.upstream, timeout=10)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                headers["Host"] = proxy.upstream
                upstream.request(self.command, self.path, body=body or None, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                self.send_response(response.status)
                stripped = {h.lower() for h in proxy.strip_headers} | _HOP_HEADERS | {"content-length"}
                for name, value in response.getheaders():
                    if name.lower() not in stripped:
                        self.send_header(name, value)
                length_header = response.getheader("Content-Length")
                self.send_header(
                    "Content-Length", length_header if self.command == "HEAD" and length_header else str(len(data))
                )
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                proxy._record(Logged(self.command, self.path, response.status, False))
            finally:
                upstream.close()

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    return Handler
