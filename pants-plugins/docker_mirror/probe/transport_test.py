"""The probe's HTTP client against small servers on loopback: keep-alive, framing, limits,
redirects, proxies (plain and CONNECT, the latter into real TLS)."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable, List, Optional, Tuple, TypeVar

import pytest

from docker_mirror.probe import access, transport
from docker_mirror.probe.secrets import Secrets
from docker_mirror.probe.transport import URL, Headers, HttpClient, Request, proxy_for
from docker_mirror.testutil.tls import make_certificates

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]


@dataclass
class Server:
    """A loopback server running `script` for each connection; logs request heads."""

    script: Script
    connections: int = 0
    heads: List[bytes] = field(default_factory=list)
    port: int = 0
    _server: Optional[asyncio.AbstractServer] = None

    async def __aenter__(self) -> Server:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.script(reader, writer, self)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self._server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def read_head(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        return head

    def url(self, path: str = "/v2/a/manifests/1", scheme: str = "http") -> URL:
        return URL.parse(f"{scheme}://127.0.0.1:{self.port}{path}")


def keep_alive(*answers: bytes) -> Script:
    """Answers each request on the connection with the next of `answers` (the last repeats)."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        index = 0
        while True:
            await server.read_head(reader)
            writer.write(answers[min(index, len(answers) - 1)])
            await writer.drain()
            index += 1

    return script


def client(**options: object) -> HttpClient:
    settings = {"context": access.ssl_context(verify=False), "env": {}, "loopback": True, "timeout": 5.0}
    settings.update(options)
    return HttpClient(**settings)  # type: ignore[arg-type]


OK_HEAD = b"HTTP/1.1 200 OK\r\nDocker-Content-Digest: sha256:x\r\nContent-Length: 412\r\n\r\n"


T = TypeVar("T")


def run(coroutine: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, 30)

    return asyncio.run(bounded())


def test_heads_reuse_one_connection() -> None:
    async def main() -> Tuple[int, List[int], List[Optional[str]]]:
        async with Server(keep_alive(OK_HEAD)) as server:
            http = client()
            statuses, digests = [], []
            for _ in range(5):
                response = await http.send(Request("HEAD", server.url()))
                statuses.append(response.status_code)
                digests.append(response.headers.get("docker-content-digest"))
            await http.aclose()
            return server.connections, statuses, digests

    connections, statuses, digests = run(main())
    assert (connections, statuses, set(digests)) == (1, [200] * 5, {"sha256:x"})


def test_sized_and_chunked_bodies() -> None:
    sized = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"

    async def main() -> Tuple[bytes, bytes, int]:
        async with Server(keep_alive(sized, chunked)) as server:
            http = client()
            first = await http.send(Request("GET", server.url()))
            second = await http.send(Request("GET", server.url()))
            await http.aclose()
            return first.content, second.content, server.connections

    assert run(main()) == (b"hello", b"abcde", 1)


def test_request_head_and_body() -> None:
    async def main() -> bytes:
        async with Server(keep_alive(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")) as server:
            http = client()
            url = server.url("/token").with_query([("service", "s v"), ("scope", "repository:a:pull")])
            await http.send(Request("POST", url, Headers([("Authorization", "Basic eA==")]), b"a=1"))
            await http.aclose()
            return server.heads[0]

    head = run(main())
    assert head.startswith(b"POST /token?service=s+v&scope=repository%3Aa%3Apull HTTP/1.1\r\n")
    assert b"\r\nhost: 127.0.0.1:" in head.lower() and b"\r\ncontent-length: 3\r\n" in head.lower()


def test_connection_close_and_a_closed_kept_alive_connection() -> None:
    async def close_after_each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        await server.read_head(reader)
        # No `Connection: close`: the client only learns when it tries to reuse the connection.
        writer.write(OK_HEAD)
        await writer.drain()

    async def main() -> Tuple[List[int], int]:
        async with Server(close_after_each) as server:
            http = client()
            statuses = []
            for _ in range(3):
                statuses.append((await http.send(Request("HEAD", server.url()))).status_code)
                await asyncio.sleep(0.05)
            await http.aclose()
            return statuses, server.connections

    assert run(main()) == ([200, 200, 200], 3)


def test_answers_are_capped() -> None:
    endless = b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n" + b" " * 2_000_000

    async def main() -> None:
        async with Server(keep_alive(endless)) as server:
            http = client(limit=1_000_000)
            with pytest.raises(transport.ResponseTooLarge):
                await http.send(Request("GET", server.url()))
            await http.aclose()

    run(main())


def test_a_silent_server_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        await asyncio.sleep(10)

    async def main() -> float:
        async with Server(silent) as server:
            http = client(timeout=0.3)
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(transport.Timeout):
                await http.send(Request("HEAD", server.url()))
            await http.aclose()
            return loop.time() - started

    assert run(main()) < 2


def test_nothing_listening_is_a_connect_error() -> None:
    async def main() -> None:
        async with Server(keep_alive(OK_HEAD)) as server:
            port = server.port
        http = client()
        with pytest.raises(transport.ConnectError) as raised:
            await http.send(Request("HEAD", URL.parse(f"http://127.0.0.1:{port}/v2/")))
        assert isinstance(raised.value.__cause__, ConnectionRefusedError)

    run(main())


def test_redirects_keep_authorization_on_the_same_origin_only() -> None:
    async def main() -> Tuple[List[bytes], List[bytes], int]:
        async with Server(keep_alive(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")) as elsewhere:
            moved = (f"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{elsewhere.port}/blob\r\n"
                     "Content-Length: 0\r\n\r\n").encode()
            relative = b"HTTP/1.1 301 Moved\r\nLocation: /v2/b/manifests/1\r\nContent-Length: 0\r\n\r\n"
            async with Server(keep_alive(relative, moved)) as origin:
                http = client()
                seen: List[int] = []
                response = await http.send(
                    Request("GET", origin.url(), Headers([("Authorization", "Bearer secret-token")])),
                    on_response=lambda r: seen.append(r.status_code),
                )
                await http.aclose()
                assert response.content == b"ok" and seen == [301, 307, 200]
                return origin.heads, elsewhere.heads, len(seen)

    origin_heads, elsewhere_heads, _ = run(main())
    assert all(b"secret-token" in head for head in origin_heads)
    assert origin_heads[1].startswith(b"GET /v2/b/manifests/1 ")
    assert b"secret-token" not in elsewhere_heads[0] and elsewhere_heads[0].startswith(b"GET /blob ")


def test_too_many_redirects() -> None:
    loop_forever = b"HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n"

    async def main() -> None:
        async with Server(keep_alive(loop_forever)) as server:
            http = client()
            with pytest.raises(transport.TooManyRedirects):
                await http.send(Request("GET", server.url()))
            await http.aclose()

    run(main())


@pytest.mark.parametrize(
    "scheme, address, env, expected",
    [
        ("https", "ghcr.io", {"HTTPS_PROXY": "http://p:3128"}, "http://p:3128"),
        ("https", "ghcr.io", {"https_proxy": "p:3128"}, "http://p:3128"),
        ("http", "r.lan:5000", {"HTTPS_PROXY": "http://p:3128"}, None),
        ("http", "r.lan:5000", {"ALL_PROXY": "http://p:3128"}, "http://p:3128"),
        ("https", "ghcr.io", {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "ghcr.io"}, None),
        ("https", "eu.ghcr.io", {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": ".ghcr.io"}, None),
        ("https", "eu.ghcr.io", {"HTTPS_PROXY": "http://p:3128", "no_proxy": "*.ghcr.io,x"}, None),
        ("https", "10.1.2.3:5000", {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "10.0.0.0/8"}, None),
        ("https", "ghcrxio", {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "ghcr.io"}, "http://p:3128"),
        ("https", "ghcr.io", {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "*"}, None),
    ],
)
def test_proxy_for(scheme: str, address: str, env: dict, expected: Optional[str]) -> None:
    assert proxy_for(scheme, address, env, loopback=False) == expected


def test_loopback_is_never_proxied() -> None:
    assert proxy_for("http", "127.0.0.1:5000", {"HTTP_PROXY": "http://p:1"}, loopback=True) is None


def test_a_plain_http_proxy_gets_absolute_targets_and_its_credentials() -> None:
    async def main() -> bytes:
        async with Server(keep_alive(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")) as proxy:
            secrets = Secrets()
            http = client(loopback=False, env={"HTTP_PROXY": f"http://u:pr0xy-pw@127.0.0.1:{proxy.port}"},
                          secrets=secrets)
            await http.send(Request("HEAD", URL.parse("http://registry.test:5000/v2/a/manifests/1")))
            await http.aclose()
            assert secrets.scrub("pr0xy-pw") == "<redacted>"
            return proxy.heads[0]

    head = run(main())
    assert head.startswith(b"HEAD http://registry.test:5000/v2/a/manifests/1 HTTP/1.1\r\n")
    assert b"proxy-authorization: basic dtpwcjb4es1wdw==" in head.lower()


def test_https_through_a_connect_tunnel_with_verified_tls(tmp_path: Path) -> None:
    ca, cert, key = make_certificates(tmp_path, "registry.test")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(str(cert), str(key))

    async def main() -> Tuple[int, bytes]:
        async def registry(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(OK_HEAD)
            await writer.drain()
            writer.close()

        tls_server = await asyncio.start_server(registry, "127.0.0.1", 0, ssl=server_context)
        tls_port = tls_server.sockets[0].getsockname()[1]

        async def tunnel(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
            head = await server.read_head(reader)
            assert head.startswith(f"CONNECT registry.test:{tls_port} HTTP/1.1".encode())
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", tls_port)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()

            async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
                while True:
                    data = await source.read(65536)
                    if not data:
                        break
                    sink.write(data)
                    await sink.drain()
                sink.close()

            await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer),
                                 return_exceptions=True)

        async with Server(tunnel) as proxy:
            cas, _ = [ca], []
            http = client(context=access.ssl_context(verify=True, cas=cas), loopback=False,
                          env={"HTTPS_PROXY": f"http://127.0.0.1:{proxy.port}"})
            response = await http.send(Request("HEAD", URL.parse(f"https://registry.test:{tls_port}/v2/a/manifests/1")))
            await http.aclose()
            tls_server.close()
            await tls_server.wait_closed()
            return response.status_code, proxy.heads[0]

    status, head = run(main())
    assert status == 200 and head.startswith(b"CONNECT registry.test:")
