"""The probe's HTTP client (aiohttp, and the redirect rules written here) against scripted
servers on loopback: kept-alive connections, bodies read to a cap or streamed, uploads streamed
with a `Content-Length`, redirects hop by hop (each with its own host's TLS), failures named,
proxies (plain, and CONNECT into verified TLS)."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path
from typing import AsyncIterator, Awaitable, Dict, List, Optional, Sequence, Tuple, TypeVar

import aiohttp
import pytest
from yarl import URL

from docker_mirror.probe import transport
from docker_mirror.probe.access import Routes, proxy_for
from docker_mirror.probe.secrets import Secrets
from docker_mirror.probe.transport import HttpClient, Request, Response
from docker_mirror_testutil.hostile_registry import Answer, Hold, HostileServer, Raw, Reply, digest_reply
from docker_mirror_testutil.hostile_registry import Request as Served
from docker_mirror_testutil.tls import make_certificates

DIGEST = "sha256:" + "ab" * 32
T = TypeVar("T")


def run(coroutine: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, 60)

    return asyncio.run(bounded())


async def using(routes: Routes, requests: Sequence[Request], *, timeout: float = 5.0,
                limit: int = transport.MAX_BODY_BYTES) -> Tuple[List[Response], List[Tuple[str, int]]]:
    """Each request fetched in turn by one client; the responses, and every hop's (method,
    status)."""
    hops: List[Tuple[str, int]] = []
    http = HttpClient(routes, timeout=timeout)
    try:
        responses = [
            await http.fetch(r, limit=limit, on_response=lambda m, u, s: hops.append((m, s)))
            for r in requests
        ]
    finally:
        await http.aclose()
    return responses, hops


def fetch(request: Request, *, env: Optional[Dict[str, str]] = None, timeout: float = 5.0,
          limit: int = transport.MAX_BODY_BYTES, routes: Optional[Routes] = None) -> Response:
    responses, _ = run(using(routes or Routes(env or {}, directories=()), [request], timeout=timeout,
                             limit=limit))
    return responses[0]


def get(url: str, method: str = "GET", **fields: object) -> Request:
    return Request(method, URL(url), **fields)  # type: ignore[arg-type]


def test_requests_reuse_one_kept_alive_connection() -> None:
    with HostileServer.start(lambda r: digest_reply(DIGEST)) as server:
        responses, _ = run(using(Routes({}, directories=()),
                                 [get(server.url("/v2/a/manifests/1"), "HEAD")] * 5))
    assert [r.status for r in responses] == [200] * 5 and server.connections == 1
    assert {r.headers["Docker-Content-Digest"] for r in responses} == {DIGEST}


def test_bodies_sized_chunked_capped_and_streamed() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    answers: Dict[str, Answer] = {"/sized": Reply(200, body=b"hello"), "/chunked": Raw(chunked),
               "/big": Reply(200, body=b"x" * 2000), "/liar": Raw(b"HTTP/1.1 200 OK\r\n\r\n" + b"y" * 3000)}
    with HostileServer.start(lambda r: answers[r.path]) as server:
        assert fetch(get(server.url("/sized"))).body == b"hello"
        assert fetch(get(server.url("/chunked"))).body == b"abcde"
        for path in ("/big", "/liar"):  # declared too large, or found too large while read
            with pytest.raises(transport.Refused, match="larger than 1000 bytes"):
                fetch(get(server.url(path)), limit=1000)

        async def streamed() -> List[bytes]:
            http = HttpClient(Routes({}, directories=()), timeout=5)
            try:
                response = await http.open(get(server.url("/big")), stream=True)
                return [chunk async for chunk in response.iter_chunks()]
            finally:
                await http.aclose()

        assert b"".join(run(streamed())) == b"x" * 2000


def test_an_upload_is_streamed_with_its_content_length() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"first ", b"second ", b"third"):
            yield part

    with HostileServer.start(lambda r: Reply(201, [("Location", "/v2/a/blobs/sha256:x")])) as server:
        response = fetch(get(server.url("/v2/a/blobs/uploads/1"), "PUT", body=chunks, content_length=18))
        (seen,) = server.seen()
    assert (response.status, seen.body, seen.header("content-length"), seen.header("transfer-encoding")) == (
        201, b"first second third", "18", None)
    assert response.location == URL(server.url("/v2/a/blobs/sha256:x"))


def test_a_silent_server_times_out_and_nothing_listening_is_refused() -> None:
    with HostileServer.start(lambda r: Hold(10)) as server:
        with pytest.raises(transport.Unreachable, match="timed out"):
            fetch(get(server.url("/v2/")), timeout=0.3)
        port = server.port
    with pytest.raises(transport.Unreachable, match="connection refused"):
        fetch(get(f"http://127.0.0.1:{port}/v2/"))


def test_authorization_only_to_its_own_origin_and_every_hop_counted() -> None:
    with HostileServer.start(lambda r: Reply(200, body=b"ok")) as elsewhere:

        def origin(request: Served) -> Reply:
            path = request.path
            if path == "/v2/a/manifests/1":
                return Reply(301, [("Location", "/v2/b/manifests/1")])
            if path == "/v2/b/manifests/1":
                return Reply(307, [("Location", elsewhere.url("/blob"))])
            return Reply(404)

        with HostileServer.start(origin) as server:
            (response,), hops = run(using(Routes({}, directories=()), [
                get(server.url("/v2/a/manifests/1"), authorization="Bearer secret-token")]))
    assert (response.body, hops) == (b"ok", [("GET", 301), ("GET", 307), ("GET", 200)])
    assert [r.header("authorization") for r in server.seen()] == ["Bearer secret-token"] * 2
    assert [r.header("authorization") for r in elsewhere.seen()] == [None]


def test_redirects_that_are_refused() -> None:
    def answer(request: Served) -> Reply:
        path = request.path
        return {
            "/loop": Reply(302, [("Location", "/loop")]),
            "/away": Reply(307, [("Location", "http://127.0.0.2:9/token")]),
            "/here": Reply(307, [("Location", "/there")]),
            "/see-other": Reply(303, [("Location", "/there")]),
            "/there": Reply(200, body=request.body or request.method.encode()),
            "/nowhere": Reply(302, [("Location", "file:///etc/passwd")]),
        }[path]

    with HostileServer.start(answer) as server:
        with pytest.raises(transport.Refused, match="more than 5 times"):
            fetch(get(server.url("/loop")))
        assert len(server.seen()) == 6
        with pytest.raises(transport.Refused, match="a POST with a body to another host"):
            fetch(get(server.url("/away"), "POST", body=b"refresh_token=secret"))
        # The same origin may have the body again; a 303 turns the request into a GET.
        assert fetch(get(server.url("/here"), "POST", body=b"refresh_token=secret")).body == b"refresh_token=secret"
        assert fetch(get(server.url("/see-other"), "POST", body=b"x=1")).body == b"GET"
        with pytest.raises(transport.Refused, match="not an http"):
            fetch(get(server.url("/nowhere")))


def test_each_hop_gets_its_own_hosts_tls_and_https_never_goes_to_plain_http(tmp_path: Path) -> None:
    ca, cert, key = make_certificates(tmp_path, "127.1")
    certs_d = tmp_path / "certs.d"
    with HostileServer.start(lambda r: Reply(200, body=b"verified"), tls=(cert, key)) as tls_host:
        (certs_d / f"127.1:{tls_host.port}").mkdir(parents=True)
        (certs_d / f"127.1:{tls_host.port}" / "ca.crt").write_bytes(ca.read_bytes())
        secure = tls_host.url("/x", host="127.1")
        with HostileServer.start(lambda r: Reply(307, [("Location", secure)])) as loopback:
            # A loopback host is not verified; the host it redirects to is, with its own CAs.
            with pytest.raises(transport.TlsFailure) as failed:
                fetch(get(loopback.url("/v2/")))
            assert failed.value.host == f"127.1:{tls_host.port}" and tls_host.seen() == []
            assert fetch(get(loopback.url("/v2/")), routes=Routes({}, directories=[certs_d])).body == b"verified"
        with HostileServer.start(lambda r: Reply(200, body=b"forged"), host="127.0.0.2") as plain:
            tls_host.handler = lambda r: Reply(307, [("Location", plain.url("/x"))])
            with pytest.raises(transport.Refused, match="from HTTPS to plain HTTP"):
                fetch(get(secure), routes=Routes({}, directories=[certs_d]))
            assert plain.seen() == []


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
    chosen = proxy_for(scheme, address, env, loopback=False)
    assert (chosen[1] if chosen else None) == expected


def test_loopback_is_never_proxied_and_a_malformed_proxy_is_named_not_shown() -> None:
    assert proxy_for("http", "127.0.0.1:5000", {"HTTP_PROXY": "http://p:1"}, loopback=True) is None
    secrets = Secrets()
    routes = Routes({"HTTPS_PROXY": "http://u:s3cret-pw@proxy:notaport"}, directories=(), secrets=secrets)
    assert routes.proxy("https", "127.0.0.1:5000") is None
    with pytest.raises(transport.Refused, match="HTTPS_PROXY is not a usable proxy URL") as refused:
        fetch(get("https://registry.test/v2/"), routes=routes)
    assert "s3cret" not in secrets.scrub(str(refused.value))


def test_a_plain_http_proxy_gets_absolute_targets_and_its_credentials() -> None:
    secrets = Secrets()
    with HostileServer.start(lambda r: Reply(200)) as proxy:
        routes = Routes({"HTTP_PROXY": f"http://u:pr0xy-pw@127.0.0.1:{proxy.port}"}, directories=(),
                        secrets=secrets)
        fetch(get("http://registry.test:5000/v2/a/manifests/1", "HEAD"), routes=routes)
        (seen,) = proxy.seen()
    assert seen.target == "http://registry.test:5000/v2/a/manifests/1"
    assert seen.header("proxy-authorization") == "Basic dTpwcjB4eS1wdw=="
    assert secrets.scrub("pr0xy-pw") == "<redacted>"


def test_https_through_a_connect_tunnel_with_verified_tls(tmp_path: Path) -> None:
    ca, cert, key = make_certificates(tmp_path, "127.1")
    certs_d = tmp_path / "certs.d"
    with HostileServer.start(lambda r: digest_reply(DIGEST), tls=(cert, key)) as registry, \
            HostileServer.start(lambda r: Reply(400), proxy=True) as proxy:
        url = registry.url("/v2/a/manifests/1", host="127.1")
        # Through the tunnel, TLS is the registry's own, verified: refused until its CA is trusted.
        with pytest.raises(transport.TlsFailure):
            fetch(get(url, "HEAD"), env={"HTTPS_PROXY": proxy.url()})
        (certs_d / f"127.1:{registry.port}").mkdir(parents=True)
        (certs_d / f"127.1:{registry.port}" / "ca.crt").write_bytes(ca.read_bytes())
        response = fetch(get(url, "HEAD"), routes=Routes({"HTTPS_PROXY": proxy.url()}, directories=[certs_d]))
    assert response.status == 200 and response.headers["Docker-Content-Digest"] == DIGEST
    assert [(r.method, r.target) for r in proxy.seen()] == [("CONNECT", f"127.1:{registry.port}")] * 2
    assert len(registry.seen()) == 1


UPLOAD = "http://registry.lan:5000/v2/app/blobs/uploads/7c0ffee?_state=c2lnbmVk&digest=sha256:ab"


@pytest.mark.parametrize(
    "error, reason",
    [
        # What aiohttp raises when the connection breaks while it writes a body: its text names
        # the request's URL, the upload session's signed `_state` with it.
        (aiohttp.ClientOSError(None, f"Can not write request body for {UPLOAD}"), "connection reset"),
        (aiohttp.ClientOSError(errno.ECONNRESET, "Connection reset by peer"), "connection reset"),
        (aiohttp.ClientOSError(errno.EPIPE, "Broken pipe"), "connection reset"),
        (aiohttp.ClientConnectionError(f"Failed to send bytes into the underlying connection {UPLOAD}"),
         "the connection broke"),
        (aiohttp.ClientPayloadError(f"Response payload is not completed for {UPLOAD}"), "the answer was cut short"),
        (aiohttp.InvalidURL(UPLOAD), "cannot send the request (InvalidURL)"),
    ],
    ids=["write", "reset", "pipe", "send", "payload", "url"],
)
def test_a_failure_is_named_without_the_text_of_the_exception(error: Exception, reason: str) -> None:
    if "Can not write" in str(error):
        error.__cause__ = aiohttp.ClientConnectionResetError("Cannot write to closing transport")
    failed = transport.failure(error, "registry.lan:5000")
    assert (failed.reason, failed.host) == (reason, "registry.lan:5000")
    assert "/blobs/uploads/" not in str(failed) and "_state" not in str(failed)
