"""A TCP proxy on loopback that adds latency, as a WAN link would: for the benchmarks' rows that
measure mirroring with every request round trip delayed (this kernel has no `netem`).

Data is forwarded after `delay_seconds` in each direction without holding back what follows it,
so the proxy adds latency: a request and its answer take `2 * delay_seconds` more. With
`bytes_per_second`, each connection's each direction is also paced to that rate, as one TCP
stream over a long thin link is. Standard library only; the listening is `relay.Relay`'s.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from docker_mirror_testutil.relay import CHUNK, Relay


@dataclass
class ProxyStats:
    connections: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


class DelayingProxy(Relay):
    """Forwards `127.0.0.1:<port>` to `target` ("host:port"), each direction delayed."""

    def __init__(self, target: str, delay_seconds: float, bytes_per_second: float | None = None) -> None:
        super().__init__(target)
        self.delay_seconds = delay_seconds
        self.bytes_per_second = bytes_per_second
        self.stats = ProxyStats()

    @property
    def target(self) -> str:
        return self.upstream

    def start(self) -> DelayingProxy:
        self._start()
        return self

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.stats.connections += 1
        try:
            upstream_reader, upstream_writer = await self._open_upstream()
        except OSError:
            return
        try:
            await asyncio.gather(
                self._pump(reader, upstream_writer, up=True),
                self._pump(upstream_reader, writer, up=False),
                return_exceptions=True,
            )
        finally:
            upstream_writer.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool
    ) -> None:
        """Copies `reader` to `writer`, each chunk `delay_seconds` after it arrived; an end of
        data is passed on as a half-close, so the other direction can still answer."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            free = 0.0  # when the paced link has sent what it was given
            while True:
                due, data = await queue.get()
                wait = max(due, free) - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
                if self.bytes_per_second:
                    free = max(free, time.monotonic()) + len(data) / self.bytes_per_second

        delivering = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(CHUNK)
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
