"""A proxy on loopback in front of a real registry that refuses monolithic blob uploads, as a
front end with a request body limit does (Cloudflare's is 100 MB): a `PUT` to an upload session
with a body larger than `max_body` gets 413, while the chunked upload's `PATCH`es (each within
the limit) and its closing `PUT` (no body) pass. With `early`, it answers as soon as it has
read the request's head and closes the connection, the body unread (as a front end that checks
`Content-Length` does). It counts what it refused and passed.

Standard library only; the relaying itself is `relay.HttpRelay`'s.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter

from docker_mirror_testutil.relay import Connection, Head, HttpRelay, stream_body

_UPLOAD = re.compile(r"/v2/.+/blobs/uploads/")


class ChunkedOnlyProxy(HttpRelay):
    def __init__(self, upstream: str, max_body: int = 0, early: bool = False) -> None:
        super().__init__(upstream)
        self.max_body = max_body
        self.early = early
        self.counts: Counter = Counter()
        self._lock = threading.Lock()

    @classmethod
    def start(cls, upstream: str, max_body: int = 0, early: bool = False) -> "ChunkedOnlyProxy":
        proxy = cls(upstream, max_body, early)
        proxy._start()
        return proxy

    def seen(self) -> Counter:
        """Requests by kind: "refused" (a monolithic `PUT`), "PATCH", "PUT" (passed on)."""
        with self._lock:
            return Counter(self.counts)

    def _count(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] += 1

    async def _serve(self, head: Head, connection: Connection) -> bool:
        method, path = head.request_line()
        length = int(head.get("Content-Length") or 0)
        chunked = "chunked" in (head.get("Transfer-Encoding") or "").lower()
        if method == "PUT" and _UPLOAD.search(path) and (length > self.max_body or chunked):
            if not self.early:
                async for _ in stream_body(head, connection.reader, request=True, method="", status=0):
                    pass
            self._count("refused")
            body = json.dumps({"errors": [{"code": "SIZE_INVALID", "message": "request body too large"}]}).encode()
            connection.writer.write(
                b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await connection.writer.drain()
            return not self.early
        if _UPLOAD.search(path) and method in ("PATCH", "PUT"):
            self._count(method)
        status, keep_alive = await self._relay(head, method, connection)
        return keep_alive
