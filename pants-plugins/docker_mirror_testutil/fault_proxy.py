"""An HTTP/1.1 proxy on loopback in front of a real registry that injects faults, for tests.

Clients (the registry probe, `skopeo`, a Docker engine) are pointed at the proxy's address as if
it were the registry; the `Host` header is passed on unchanged, so the upload URLs the registry
hands out point at the proxy too, and every request of a push goes through it. Bodies are
streamed in both directions (Content-Length, chunked, or up to the end of the connection), so a
fault can hit the middle of a blob upload.

For each request the `plan` decides (it is called with the request's index, method and path):

- `None`: pass it on to the registry and relay the answer (minus `strip_headers`);
- `Respond(status, headers)`, or a `(status, headers)` tuple: answer it without asking the
  registry (429 with `Retry-After`, 500, 503, 401, 403...), with a registry-style error body;
- `Reset(after_bytes)`: forward the request head and the first `after_bytes` of its body (of
  the answer's body, with `answer=True`), then reset both connections (a TCP RST);
- `Stall(seconds, after_bytes)`: forward that much, then hold the connection (until `release()`
  or `seconds`), then reset it, or go on with `then="continue"`;
- `Then(fault, hook)`: `fault` (None: pass on), then call `hook()` once the answer was relayed
  and before the connection's next request is read (e.g. "someone else pushes now").

`rules(Rule(...), ...)` builds a plan from rules matched on method and path, each for a number
of requests. `refuse()` stops listening (the port stays bound, so connections are refused, as
by a host with nothing listening) and `accept()` listens again. Every request is logged, and
`injected` counts the faults by kind. A TLS handshake (a client trying HTTPS first) gets the
connection closed at once, as a plain-HTTP registry would refuse it.

A subclass can serve some requests itself, or add headers to the answers it relays, through
`_pass_on` and `_relay(answer_headers=...)`: `referrers_proxy.ReferrersProxy` adds the OCI 1.1
referrers API to a registry that lacks it.

Standard library only; the proxy runs on an asyncio loop in a thread of its own.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable, Dict, List, Optional, Sequence, Tuple, Type, TypeVar, Union

_HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "upgrade"}
_MAX_HEAD = 64 * 1024
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Respond:
    """Answer with `status` (and `headers`) without asking the registry."""

    status: int
    headers: Tuple[Tuple[str, str], ...] = ()
    body: Optional[bytes] = None

    @property
    def kind(self) -> str:
        return str(self.status)


@dataclass(frozen=True)
class Reset:
    """Reset both connections after `after_bytes` of the request body (`answer=True`: of the
    answer's body) were passed on."""

    after_bytes: int = 0
    answer: bool = False

    @property
    def kind(self) -> str:
        return "reset"


@dataclass(frozen=True)
class Stall:
    """Pass on `after_bytes` of the request body, then hold the connection `seconds` (or until
    `FaultProxy.release()`), then reset it; with `then="continue"`, go on as if nothing
    happened."""

    seconds: float = 3600.0
    after_bytes: int = 0
    then: str = "reset"

    @property
    def kind(self) -> str:
        return "stall"


@dataclass(frozen=True)
class Then:
    """`fault` (None: pass the request on), then `hook()` once the answer was relayed."""

    fault: Optional["Fault"]
    hook: Callable[[], None]

    @property
    def kind(self) -> str:
        return self.fault.kind if self.fault is not None else "hook"


Fault = Union[Respond, Reset, Stall, Then]
PlanAnswer = Union[None, Fault, Tuple[int, Dict[str, str]]]
# (index of the request, method, path) -> what to do with it.
Plan = Callable[[int, str, str], PlanAnswer]


def respond(status: int, headers: Optional[Dict[str, str]] = None) -> Respond:
    return Respond(status, tuple((headers or {}).items()))


def first(count: int, status: int, headers: Optional[Dict[str, str]] = None) -> Plan:
    """Answers the first `count` requests with `status`, then passes the rest on."""
    fault = respond(status, headers)
    return lambda index, method, path: fault if index < count else None


def always(status: int, headers: Optional[Dict[str, str]] = None) -> Plan:
    fault = respond(status, headers)
    return lambda index, method, path: fault


def passthrough() -> Plan:
    return lambda index, method, path: None


PUSH_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BLOB_UPLOAD = r"/blobs/uploads/"
MANIFEST = r"/manifests/"


@dataclass
class Rule:
    """`fault` for the requests whose method is in `methods` (None: any) and whose path matches
    `path` (a regular expression, searched), after `skip` such requests were let through, for
    `times` requests (None: every one)."""

    fault: Fault
    methods: Optional[frozenset] = None
    path: Optional[str] = None
    times: Optional[int] = None
    skip: int = 0
    matched: int = 0

    def applies(self, method: str, path: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        return self.path is None or re.search(self.path, path) is not None


def rules(*all_rules: Rule) -> Plan:
    """A plan: the first rule that matches a request and has requests left decides it; a
    request no rule decides is passed on. (The proxy calls the plan from one thread.)"""

    def plan(index: int, method: str, path: str) -> Optional[Fault]:
        for rule in all_rules:
            if not rule.applies(method, path):
                continue
            rule.matched += 1
            if rule.matched <= rule.skip:
                return None
            if rule.times is not None and rule.matched > rule.skip + rule.times:
                continue
            return rule.fault
        return None

    return plan


def _error_body(status: int) -> bytes:
    """What a registry answers with that status (the distribution spec's error document)."""
    code, message = {
        401: ("UNAUTHORIZED", "authentication required"),
        403: ("DENIED", "requested access to the resource is denied"),
        429: ("TOOMANYREQUESTS", "too many requests"),
    }.get(status, ("UNAVAILABLE", f"injected fault: {status}"))
    return json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()


_REASONS = {
    200: "OK", 201: "Created", 202: "Accepted", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests",
    413: "Payload Too Large", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass
class Logged:
    method: str
    path: str
    status: int  # 0: no answer (the connection was reset)
    injected: bool
    fault: Optional[str] = None


class _ConnectionReset(Exception):
    pass


@dataclass
class _Head:
    first_line: bytes
    headers: List[Tuple[str, str]]

    def get(self, name: str) -> Optional[str]:
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)

    def encode(self, drop: Sequence[str] = (), add: Sequence[Tuple[str, str]] = ()) -> bytes:
        dropped = {d.lower() for d in drop}
        lines = [self.first_line] + [
            f"{k}: {v}".encode("latin-1")
            for k, v in [*self.headers, *add]
            if k.lower() not in dropped
        ]
        return b"\r\n".join(lines) + b"\r\n\r\n"


async def _read_head(reader: asyncio.StreamReader, *, first: bytes = b"") -> Optional[_Head]:
    """A message's head (start line and headers); None at the end of the connection."""
    try:
        data = first + await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not first and not e.partial:
            return None
        raise _ConnectionReset() from None
    except asyncio.LimitOverrunError:
        raise _ConnectionReset() from None
    lines = data[:-4].split(b"\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    return _Head(lines[0], headers)


def _abort(writer: Optional[asyncio.StreamWriter]) -> None:
    """Closes a connection with a TCP RST."""
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


# A function of an answer's status: headers to add to that answer (see `FaultProxy._relay`).
AnswerHeaders = Callable[[int], Sequence[Tuple[str, str]]]
_Upstream = List[Optional[Tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
_Proxy = TypeVar("_Proxy", bound="FaultProxy")


class FaultProxy:
    def __init__(self, upstream: str, plan: Plan, strip_headers: Sequence[str] = ()) -> None:
        self.upstream = upstream
        self.plan = plan
        self.strip_headers = tuple(strip_headers)
        self.log: List[Logged] = []
        self.injected: Counter = Counter()
        # Set while a `Stall` holds a connection; `release()` ends the stalls.
        self.stalled = threading.Event()
        self._release: Optional[asyncio.Event] = None
        self._lock = threading.Lock()
        self._count = 0
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._server: Optional[asyncio.base_events.Server] = None
        self._reservation: Optional[socket.socket] = None
        self._connections: set = set()
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls: Type[_Proxy], upstream: str, plan: Plan, *, strip_headers: Sequence[str] = ()
    ) -> _Proxy:
        proxy = cls(upstream, plan, strip_headers)
        started = threading.Event()
        loop = asyncio.new_event_loop()
        proxy._loop = loop

        async def serve() -> None:
            proxy._release = asyncio.Event()
            proxy._server = await asyncio.start_server(proxy._connect, "127.0.0.1", 0)
            proxy.port = proxy._server.sockets[0].getsockname()[1]
            started.set()

        def run() -> None:
            loop.run_until_complete(serve())
            loop.run_forever()

        proxy._thread = threading.Thread(target=run, name=f"fault-proxy-{upstream}", daemon=True)
        proxy._thread.start()
        if not started.wait(10):
            raise RuntimeError(f"the fault proxy in front of {upstream} did not start")
        return proxy

    def _call(self, coroutine_function: Callable[[], object]) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(coroutine_function(), self._loop).result(10)  # type: ignore[arg-type]

    def stop(self) -> None:
        """Stops listening, resets every open connection, and ends the proxy's thread."""
        if self._loop is None or self._thread is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            if self._release is not None:
                self._release.set()
            for writer in list(self._connections):
                _abort(writer)
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self._call(shutdown)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        if self._reservation is not None:
            self._reservation.close()
        self._loop, self._thread = None, None

    def __enter__(self: _Proxy) -> _Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def refuse(self) -> None:
        """Stops listening: new connections are refused (the port stays bound, so no other
        process can take it). Open connections go on."""

        async def close() -> None:
            assert self._server is not None
            self._server.close()
            await self._server.wait_closed()
            reservation = socket.socket()
            reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            reservation.bind(("127.0.0.1", self.port))
            self._reservation = reservation

        self._call(close)
        self.injected["refused"] += 1

    def accept(self) -> None:
        """Listens again, on the same port, after `refuse()`."""

        async def listen() -> None:
            if self._reservation is not None:
                self._reservation.close()
                self._reservation = None
            self._server = await asyncio.start_server(
                self._connect, "127.0.0.1", self.port, reuse_address=True
            )

        self._call(listen)

    def release(self) -> None:
        """Ends every stall now (each resets its connection, or goes on)."""

        async def release() -> None:
            assert self._release is not None
            self._release.set()

        self._call(release)

    def requests(self) -> List[Logged]:
        with self._lock:
            return list(self.log)

    def faults(self) -> Counter:
        with self._lock:
            return Counter(self.injected)

    def _next(self, method: str, path: str) -> Optional[Fault]:
        with self._lock:
            index = self._count
            self._count += 1
        answer = self.plan(index, method, path)
        if isinstance(answer, tuple):
            status, headers = answer
            return respond(status, headers)
        return answer

    def _record(self, entry: Logged) -> None:
        with self._lock:
            self.log.append(entry)

    def _count_fault(self, kind: str) -> None:
        with self._lock:
            self.injected[kind] += 1

    # -- serving ---------------------------------------------------------------------------

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        upstream: _Upstream = [None]
        try:
            first_bytes = await reader.read(1)
            if first_bytes in (b"", b"\x16"):  # closed, or a TLS handshake
                writer.close()
                return
            pending = first_bytes
            while True:
                head = await _read_head(reader, first=pending)
                pending = b""
                if head is None:
                    break
                if not await self._serve(head, reader, writer, upstream):
                    break
        except (_ConnectionReset, ConnectionError, OSError, asyncio.IncompleteReadError):
            _abort(writer)
            if upstream[0] is not None:
                _abort(upstream[0][1])
            upstream[0] = None
        except asyncio.CancelledError:
            _abort(writer)
            raise
        finally:
            self._connections.discard(writer)
            if upstream[0] is not None:
                upstream[0][1].close()
            if not writer.is_closing():
                writer.close()

    async def _serve(
        self,
        head: _Head,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: _Upstream,
    ) -> bool:
        """Serves one request; False when the client connection is to be closed."""
        method, path = self._request_line(head)
        fault = self._next(method, path)
        hook: Optional[Callable[[], None]] = None
        if isinstance(fault, Then):
            hook = fault.hook
            fault = fault.fault
        if isinstance(fault, Respond):
            await self._drain_body(head, reader)
            self._count_fault(fault.kind)
            await self._respond(fault, method, writer)
            self._record(Logged(method, path, fault.status, True, fault.kind))
            keep_alive = True
        else:
            fired: List[str] = []
            status, keep_alive = await self._pass_on(
                head, method, path, fault, reader, writer, upstream, fired
            )
            self._record(Logged(method, path, status, bool(fired), fired[0] if fired else None))
        if hook is not None:
            await asyncio.get_running_loop().run_in_executor(None, hook)
        return keep_alive and (head.get("Connection") or "").lower() != "close"

    async def _pass_on(
        self,
        head: _Head,
        method: str,
        path: str,
        fault: Optional[Fault],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: _Upstream,
        fired: List[str],
    ) -> Tuple[int, bool]:
        """Serves a request that no `Respond` fault answered: relays it to the registry (with
        `fault`, a Reset or Stall, if any). A subclass that serves some requests itself (a
        registry API the registry lacks) overrides this; what `_relay` returns."""
        return await self._relay(head, method, fault, reader, writer, upstream, fired)

    @staticmethod
    def _request_line(head: _Head) -> Tuple[str, str]:
        parts = head.first_line.decode("latin-1").split()
        return (parts[0] if parts else ""), (parts[1] if len(parts) > 1 else "")

    async def _respond(self, fault: Respond, method: str, writer: asyncio.StreamWriter) -> None:
        body = fault.body if fault.body is not None else _error_body(fault.status)
        lines = [f"HTTP/1.1 {fault.status} {_REASONS.get(fault.status, 'Error')}"]
        lines += [f"{k}: {v}" for k, v in fault.headers]
        if not any(k.lower() == "content-type" for k, _ in fault.headers):
            lines.append("Content-Type: application/json")
        lines += [f"Content-Length: {len(body)}", "Docker-Distribution-Api-Version: registry/2.0"]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if method != "HEAD":
            writer.write(body)
        await writer.drain()

    async def _drain_body(self, head: _Head, reader: asyncio.StreamReader) -> None:
        async for _ in _body(head, reader, request=True, method="", status=0):
            pass

    async def _copy_body(
        self, head: _Head, source: asyncio.StreamReader, target: asyncio.StreamWriter, *,
        request: bool, method: str, status: int, fault: Optional[Fault], fired: List[str],
    ) -> bool:
        """Streams a body; False if `fault` cut it (the caller then resets the connections)."""
        limit = None
        if isinstance(fault, Reset) and fault.answer != request:
            limit = fault.after_bytes
        elif isinstance(fault, Stall) and request:
            limit = fault.after_bytes
        sent = 0
        async for data in _body(head, source, request=request, method=method, status=status):
            if limit is not None and sent + len(data) >= limit:
                cut = max(0, limit - sent)
                target.write(data[:cut])
                await target.drain()
                limit = None
                if await self._fires(fault, fired):
                    return False
                data = data[cut:]
            target.write(data)
            sent += len(data)
            await target.drain()
        if limit is not None and await self._fires(fault, fired):
            return False  # a body shorter than the limit: the fault hits at its end
        return True

    async def _fires(self, fault: Optional[Fault], fired: List[str]) -> bool:
        """Carries out a Reset (True: reset now) or a Stall (True, unless it goes on after)."""
        assert fault is not None
        fired.append(fault.kind)
        self._count_fault(fault.kind)
        if isinstance(fault, Stall):
            assert self._release is not None
            self.stalled.set()
            try:
                await asyncio.wait_for(self._release.wait(), fault.seconds)
            except asyncio.TimeoutError:
                pass
            return fault.then != "continue"
        return True

    async def _relay(
        self,
        head: _Head,
        method: str,
        fault: Optional[Fault],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: _Upstream,
        fired: List[str],
        answer_headers: Optional[AnswerHeaders] = None,
    ) -> Tuple[int, bool]:
        """Passes one request on and relays its answer: (the answer's status, or 0 when there
        was none; whether the client connection can serve another request). `answer_headers`
        is called with the final answer's status before its head is relayed, and adds headers
        to it."""

        def reset() -> Tuple[int, bool]:
            _abort(writer)
            if upstream[0] is not None:
                _abort(upstream[0][1])
            upstream[0] = None
            return 0, False

        if upstream[0] is None or upstream[0][1].is_closing():
            host, port = self.upstream.rsplit(":", 1)
            try:
                upstream[0] = await asyncio.open_connection(host, int(port))
            except OSError:
                return reset()  # as a host whose registry died: the connection drops
        connection = upstream[0]
        assert connection is not None
        up_reader, up_writer = connection
        try:
            up_writer.write(head.encode(drop=("Proxy-Connection",)))
            if not await self._copy_body(head, reader, up_writer, request=True, method=method,
                                         status=0, fault=fault, fired=fired):
                return reset()
            await up_writer.drain()
            while True:
                answer = await _read_head(up_reader)
                if answer is None:
                    return reset()
                parts = answer.first_line.split()
                status = int(parts[1]) if len(parts) > 1 else 0
                final = not 100 <= status < 200
                added = answer_headers(status) if final and answer_headers is not None else ()
                writer.write(answer.encode(drop=self.strip_headers, add=added))
                await writer.drain()
                if final:
                    break
            if not await self._copy_body(answer, up_reader, writer, request=False,
                                         method=method, status=status, fault=fault,
                                         fired=fired):
                return reset()
            await writer.drain()
        except (_ConnectionReset, ConnectionError, OSError, asyncio.IncompleteReadError):
            return reset()
        framed = (
            method == "HEAD"
            or status in (204, 304)
            or answer.get("Content-Length") is not None
            or "chunked" in (answer.get("Transfer-Encoding") or "").lower()
        )
        if not framed or (answer.get("Connection") or "").lower() == "close":
            up_writer.close()
            upstream[0] = None
        return status, framed


async def _exactly(reader: asyncio.StreamReader, count: int) -> AsyncIterator[bytes]:
    """The next `count` bytes, as they arrive; a connection that ends first is a reset."""
    remaining = count
    while remaining:
        data = await reader.read(min(remaining, _CHUNK))
        if not data:
            raise _ConnectionReset()
        remaining -= len(data)
        yield data


async def _body(head: _Head, reader: asyncio.StreamReader, *, request: bool, method: str,
                status: int) -> AsyncIterator[bytes]:
    """The raw bytes of a message's body (chunked framing kept), as they arrive."""
    if not request and (method == "HEAD" or status in (204, 304) or 100 <= status < 200):
        return
    if "chunked" in (head.get("Transfer-Encoding") or "").lower():
        while True:
            size_line = await reader.readuntil(b"\r\n")
            yield size_line
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, up to an empty line
                    line = await reader.readuntil(b"\r\n")
                    yield line
                    if line == b"\r\n":
                        return
            async for data in _exactly(reader, size + 2):  # the chunk and its CRLF
                yield data
    length = head.get("Content-Length")
    if length is not None:
        async for data in _exactly(reader, int(length)):
            yield data
        return
    if request:
        return
    while True:  # an answer without framing ends with its connection
        data = await reader.read(_CHUNK)
        if not data:
            return
        yield data


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Polls `condition` every 20 ms; raises if it is still false after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.02)
