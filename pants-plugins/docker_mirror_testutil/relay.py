"""The one relay under the test kit's proxies: a listener on loopback, run on an asyncio loop in a
thread of its own, that relays each connection to an upstream `host:port`; and HTTP/1.1 relaying
on it, a request at a time with bodies streamed, for the proxies that act on requests.

Each proxy adds only what makes it different: `fault_proxy` faults, `referrers_proxy` the OCI 1.1
referrers API, `tcp_proxy` latency, `upload_proxy` a body limit that refuses monolithic uploads. Standard library only.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from dataclasses import dataclass
from typing import (
    AsyncIterator,
    Awaitable,
    Callable,
    List,
    Optional,
    Sequence,
    Set,
    Tuple,
    TypeVar,
)

CHUNK = 64 * 1024

_Relay = TypeVar("_Relay", bound="Relay")


def abort(writer: Optional[asyncio.StreamWriter]) -> None:
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


class Relay:
    """Listens on `127.0.0.1:<port>` for clients of `upstream` ("host:port"); a subclass serves
    each connection (`_serve_connection`). `stop()` (or `with`) ends it all."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = 0
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._server: Optional[asyncio.base_events.Server] = None
        self._reservation: Optional[socket.socket] = None
        # The tasks serving connections: asyncio holds them only weakly, and a task waiting on
        # an upstream connection (whose reader asyncio holds weakly too) is otherwise garbage.
        self._tasks: Set[asyncio.Task] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _start(self) -> None:
        """Starts the loop's thread; returns once the relay listens."""
        started = threading.Event()
        loop = asyncio.new_event_loop()
        self._loop = loop

        async def serve() -> None:
            await self._starting()
            self._server = await asyncio.start_server(self._connect, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            started.set()

        def run() -> None:
            loop.run_until_complete(serve())
            loop.run_forever()

        name = type(self).__name__
        self._thread = threading.Thread(target=run, name=f"{name}-{self.upstream}", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError(f"the {name} in front of {self.upstream} did not start")

    async def _starting(self) -> None:
        """Runs on the loop before it listens (for what must be made on the loop)."""

    async def _stopping(self) -> None:
        """Runs on the loop once `stop()` stopped listening, before the connections' tasks are
        cancelled (each then closes its connection)."""

    def _call(self, coroutine_function: Callable[[], Awaitable[None]]) -> None:
        """Runs `coroutine_function()` on the loop and waits for it."""
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(coroutine_function(), self._loop).result(10)

    def stop(self) -> None:
        """Stops listening, ends every open connection, and ends the relay's thread."""
        if self._loop is None or self._thread is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            await self._stopping()
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

    def __enter__(self: _Relay) -> _Relay:
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

    async def _open_upstream(self) -> Tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port = self.upstream.rsplit(":", 1)
        return await asyncio.open_connection(host, int(port))

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve_connection(reader, writer)
        except asyncio.CancelledError:
            # `stop` with the connection open. Ending quietly: Python 3.11's asyncio logs a
            # cancelled client_connected_cb task as an unhandled exception.
            pass
        finally:
            self._tasks.discard(task)
            if not writer.is_closing():
                writer.close()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Serves one client connection, up to its end (the relay then closes it)."""
        raise NotImplementedError


# -- HTTP/1.1 ----------------------------------------------------------------------------------


class ConnectionReset(Exception):
    """A connection ended in the middle of a message."""


@dataclass
class Head:
    """A message's start line and headers."""

    first_line: bytes
    headers: List[Tuple[str, str]]

    def get(self, name: str) -> Optional[str]:
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)

    def request_line(self) -> Tuple[str, str]:
        """A request's method and path."""
        parts = self.first_line.decode("latin-1").split()
        return (parts[0] if parts else ""), (parts[1] if len(parts) > 1 else "")

    def encode(self, drop: Sequence[str] = (), add: Sequence[Tuple[str, str]] = ()) -> bytes:
        dropped = {d.lower() for d in drop}
        lines = [self.first_line] + [
            f"{k}: {v}".encode("latin-1")
            for k, v in [*self.headers, *add]
            if k.lower() not in dropped
        ]
        return b"\r\n".join(lines) + b"\r\n\r\n"


async def read_head(reader: asyncio.StreamReader, *, first: bytes = b"") -> Optional[Head]:
    """A message's head (start line and headers); None at the end of the connection."""
    try:
        data = first + await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not first and not e.partial:
            return None
        raise ConnectionReset() from None
    except asyncio.LimitOverrunError:
        raise ConnectionReset() from None
    lines = data[:-4].split(b"\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    return Head(lines[0], headers)


async def _exactly(reader: asyncio.StreamReader, count: int) -> AsyncIterator[bytes]:
    """The next `count` bytes, as they arrive; a connection that ends first is a reset."""
    remaining = count
    while remaining:
        data = await reader.read(min(remaining, CHUNK))
        if not data:
            raise ConnectionReset()
        remaining -= len(data)
        yield data


async def stream_body(
    head: Head, reader: asyncio.StreamReader, *, request: bool, method: str, status: int
) -> AsyncIterator[bytes]:
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
        data = await reader.read(CHUNK)
        if not data:
            return
        yield data


@dataclass(frozen=True)
class Cut:
    """Where a relayed request is cut: once `after_bytes` of the request's body (`answer=True`:
    of the answer's) were passed on, or at its end if it is shorter, `act()` runs; True from it
    resets both connections, False goes on. With `flip`, the byte at `after_bytes` (if the body
    has one) is passed on with its bits flipped, and the body goes on."""

    after_bytes: int
    answer: bool
    act: Callable[[], Awaitable[bool]]
    flip: bool = False


async def _copy_body(
    head: Head,
    source: asyncio.StreamReader,
    target: asyncio.StreamWriter,
    *,
    request: bool,
    method: str,
    status: int,
    cut: Optional[Cut],
) -> bool:
    """Streams a body; False if `cut` cut it (the caller then resets the connections)."""
    limit = cut.after_bytes if cut is not None and cut.answer != request else None
    sent = 0
    async for data in stream_body(head, source, request=request, method=method, status=status):
        if cut is not None and limit is not None and cut.flip and sent + len(data) > limit:
            at = limit - sent
            limit = None
            await cut.act()
            data = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
        elif cut is not None and limit is not None and not cut.flip and sent + len(data) >= limit:
            at = max(0, limit - sent)
            target.write(data[:at])
            await target.drain()
            limit = None
            if await cut.act():
                return False
            data = data[at:]
        target.write(data)
        sent += len(data)
        await target.drain()
    if cut is not None and limit is not None and not cut.flip and await cut.act():
        return False  # a body shorter than the limit: the cut is at its end
    return True


@dataclass
class Connection:
    """A client's connection, and the one to the upstream its requests go over (opened at the
    first request, kept while the upstream's answers allow it)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    upstream: Optional[Tuple[asyncio.StreamReader, asyncio.StreamWriter]] = None

    def reset(self) -> None:
        """Resets both connections (a TCP RST)."""
        abort(self.writer)
        if self.upstream is not None:
            abort(self.upstream[1])
        self.upstream = None


# A function of an answer's status: headers to add to that answer (see `HttpRelay._relay`).
AnswerHeaders = Callable[[int], Sequence[Tuple[str, str]]]


class HttpRelay(Relay):
    """Relays HTTP/1.1 requests to `upstream`, each client connection over one of its own;
    answers go back without `strip_headers`. A TLS handshake (a client trying HTTPS first) gets
    the connection closed at once, as a plain-HTTP server would refuse it. A subclass decides
    what to do with each request (`_serve`), `_relay` passing one on. `stop()` resets the
    connections still open, as a server that dies would."""

    def __init__(self, upstream: str, strip_headers: Sequence[str] = ()) -> None:
        super().__init__(upstream)
        self.strip_headers = tuple(strip_headers)
        self._connections: Set[asyncio.StreamWriter] = set()

    async def _stopping(self) -> None:
        for writer in list(self._connections):
            abort(writer)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._connections.add(writer)
        connection = Connection(reader, writer)
        try:
            first_bytes = await reader.read(1)
            if first_bytes in (b"", b"\x16"):  # closed, or a TLS handshake
                return
            pending = first_bytes
            while True:
                head = await read_head(reader, first=pending)
                pending = b""
                if head is None:
                    break
                keep_alive = await self._serve(head, connection)
                if not keep_alive or (head.get("Connection") or "").lower() == "close":
                    break
        except (ConnectionReset, ConnectionError, OSError, asyncio.IncompleteReadError):
            connection.reset()
        finally:
            self._connections.discard(writer)
            if connection.upstream is not None:
                connection.upstream[1].close()

    async def _serve(self, head: Head, connection: Connection) -> bool:
        """Serves one request; False when the client connection is to be closed."""
        raise NotImplementedError

    async def _relay(
        self,
        head: Head,
        method: str,
        connection: Connection,
        *,
        body: Optional[asyncio.StreamReader] = None,
        cut: Optional[Cut] = None,
        answer_headers: Optional[AnswerHeaders] = None,
    ) -> Tuple[int, bool]:
        """Passes one request on, its body read from `body` (by default, the client), and relays
        its answer: (the answer's status, or 0 when there was none; whether the client
        connection can serve another request). `answer_headers` is called with the final
        answer's status before its head is relayed, and adds headers to it."""

        def reset() -> Tuple[int, bool]:
            connection.reset()
            return 0, False

        if connection.upstream is None or connection.upstream[1].is_closing():
            try:
                connection.upstream = await self._open_upstream()
            except OSError:
                return reset()  # as a host whose server died: the connection drops
        up_reader, up_writer = connection.upstream
        writer = connection.writer
        try:
            up_writer.write(head.encode(drop=("Proxy-Connection",)))
            request_body = body if body is not None else connection.reader
            if not await _copy_body(head, request_body, up_writer, request=True, method=method,
                                    status=0, cut=cut):
                return reset()
            await up_writer.drain()
            while True:
                answer = await read_head(up_reader)
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
            if not await _copy_body(answer, up_reader, writer, request=False, method=method,
                                    status=status, cut=cut):
                return reset()
            await writer.drain()
        except (ConnectionReset, ConnectionError, OSError, asyncio.IncompleteReadError):
            return reset()
        framed = (
            method == "HEAD"
            or status in (204, 304)
            or answer.get("Content-Length") is not None
            or "chunked" in (answer.get("Transfer-Encoding") or "").lower()
        )
        if not framed or (answer.get("Connection") or "").lower() == "close":
            up_writer.close()
            connection.upstream = None
        return status, framed
