"""A TCP proxy on loopback that adds latency, as a WAN link would: for the benchmarks' rows that
measure mirroring with every request round trip delayed (this kernel has no `netem`).

Data is forwarded after `delay_seconds` in each direction without holding back what follows it,
so the proxy adds latency and not a bandwidth limit: a request and its answer take `2 *
delay_seconds` more, however large. Standard library only; it runs in a thread of its own.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field


@dataclass
class ProxyStats:
    connections: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


@dataclass
class DelayingProxy:
    """Forwards `127.0.0.1:<port>` to `target` ("host:port"), each direction delayed."""

    target: str
    delay_seconds: float
    stats: ProxyStats = field(default_factory=ProxyStats)
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.base_events.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> DelayingProxy:
        started = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def serve() -> None:
            self._server = await asyncio.start_server(self._connect, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            started.set()

        def run() -> None:
            assert self._loop is not None
            self._loop.run_until_complete(serve())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name=f"proxy-{self.target}", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError(f"the proxy in front of {self.target} did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop, self._thread = None, None

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        host, port = self.target.rsplit(":", 1)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(
                self._pump(reader, upstream_writer, up=True),
                self._pump(upstream_reader, writer, up=False),
                return_exceptions=True,
            )
        except asyncio.CancelledError:
            # `stop` with connections still open. Ending quietly: Python 3.11's asyncio logs a
            # cancelled client_connected_cb task as an unhandled exception.
            pass
        finally:
            writer.close()
            upstream_writer.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool
    ) -> None:
        """Copies `reader` to `writer`, each chunk `delay_seconds` after it arrived; an end of
        data is passed on as a half-close, so the other direction can still answer."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    break
                writer.write(data)
                await writer.drain()

        delivering = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(65536)
                if up:
                    self.stats.bytes_up += len(data)
                else:
                    self.stats.bytes_down += len(data)
                await queue.put((time.monotonic() + self.delay_seconds, data))
                if not data:
                    break
            await delivering
        except (OSError, asyncio.CancelledError):
            delivering.cancel()
        finally:
            if writer.can_write_eof():
                try:
                    writer.write_eof()
                except OSError:
                    pass
