"""The delaying proxy adds latency per round trip, not per chunk, and forwards bytes intact."""

from __future__ import annotations

import http.server
import threading
import time
import urllib.request
from typing import Iterator

import pytest
from docker_mirror_testutil.tcp_proxy import DelayingProxy

BODY = bytes(range(256)) * 8192  # 2 MiB: many reads of the proxy's 64 KiB


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def fetch(address: str) -> tuple[float, bytes]:
    started = time.monotonic()
    with urllib.request.urlopen(f"http://{address}/blob", timeout=30) as response:
        body = response.read()
    return time.monotonic() - started, body


def test_a_round_trip_takes_twice_the_delay_more_and_a_large_answer_no_longer(server: str) -> None:
    direct, body = fetch(server)
    assert body == BODY
    proxy = DelayingProxy(server, delay_seconds=0.2).start()
    try:
        delayed, proxied_body = fetch(proxy.address)
    finally:
        proxy.stop()
    assert proxied_body == BODY
    # Connect (no delay: the proxy accepts at once), request up 0.2 s, answer down 0.2 s.
    assert delayed >= 0.4, delayed
    # Chunks are not delayed one after another: 32 of them would take 6.4 s.
    assert delayed < direct + 2.0, (delayed, direct)
    assert proxy.stats.connections == 1 and proxy.stats.bytes_down >= len(BODY)
