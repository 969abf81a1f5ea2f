"""Blob uploads (`Distribution.put_blob`) as the distribution spec defines them, against a scripted
registry on loopback that records each request: monolithic, chunked with `Content-Range`, the
fall back to chunks after a refused monolithic `PUT`, a 416 resumed where the session says, and
a retried `PUT` in a session that its cut-short first attempt broke. Real registries run the same
in `transfer_integration_test.py`."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import AsyncIterator, Callable, List, Optional

import pytest

from docker_mirror.probe import distribution
from docker_mirror.probe.access import Routes
from docker_mirror.probe.credentials import CredentialStore
from docker_mirror.probe.distribution import Distribution
from docker_mirror.probe.registry import RegistryError, RegistrySession
from docker_mirror.probe.retry import RetryPolicy
from docker_mirror.probe.secrets import Secrets
from docker_mirror.probe.transport import HttpClient
from docker_mirror_testutil.fault_proxy import FaultProxy, Reset, Rule, rules
from docker_mirror_testutil.hostile_registry import HostileServer, Reply, Request

Handler = Callable[[Request], Optional[Reply]]


class UploadRegistry:
    """Upload sessions as docker-registry keeps them: `POST` opens one, `PATCH` appends (416 out
    of order), `PUT ?digest=` appends its body and closes it when the digest matches. `refuse`
    answers a monolithic `PUT` (one with a body) with that status; `before` may answer first."""

    def __init__(self, refuse: Optional[int] = None, before: Optional[Handler] = None) -> None:
        self.refuse = refuse
        self.before = before
        self.sessions: List[bytearray] = []
        self.stored: dict = {}

    def __call__(self, request: Request) -> Reply:
        if self.before is not None:
            answer = self.before(request)
            if answer is not None:
                return answer
        if request.method == "POST":
            self.sessions.append(bytearray())
            return Reply(202, [("Location", f"/v2/app/blobs/uploads/{len(self.sessions) - 1}?_state=x"),
                               ("Range", "0-0")])  # fmt: skip
        number = int(request.path.rsplit("/", 1)[1])
        held = self.sessions[number]
        if request.method == "GET":
            return Reply(204, [("Location", request.target), ("Range", f"0-{len(held) - 1}")])
        if request.method == "PATCH":
            start, _, end = (request.header("Content-Range") or "").partition("-")
            if int(start) != len(held) or int(end) != len(held) + len(request.body) - 1:
                return Reply(416)
            held += request.body
            return Reply(202, [("Location", request.target), ("Range", f"0-{len(held) - 1}")])
        if request.method == "PUT":
            if request.body and self.refuse:
                return Reply(self.refuse)
            held += request.body
            digest = request.target.partition("digest=")[2].replace("%3A", ":")
            if f"sha256:{hashlib.sha256(held).hexdigest()}" != digest:
                return Reply(400)
            self.stored[digest] = bytes(held)
            return Reply(201)
        return Reply(405)


def upload(server: HostileServer, data: bytes, *, times: int = 1, address: Optional[str] = None,
           streams: Optional[List[str]] = None) -> None:
    """Uploads `data` `times` to `server` (or through a proxy at `address` in front of it);
    `streams` records each source stream's "open" and "closed"."""
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    address = address or server.address
    events: List[str] = [] if streams is None else streams

    async def chunks() -> AsyncIterator[bytes]:
        events.append("open")
        try:
            for start in range(0, len(data), 1000):
                yield data[start : start + 1000]
                await asyncio.sleep(0)
        finally:
            events.append("closed")

    async def main() -> None:
        session = RegistrySession(
            address, address, http=HttpClient(Routes({}, directories=()), timeout=5),
            credentials=CredentialStore({}, files=[]), policy=RetryPolicy(attempts=3, random=lambda: 0.0),
            max_concurrency=8, timeout=5, secrets=Secrets(), sleep=lambda seconds: asyncio.sleep(0),
        )  # fmt: skip
        registry = Distribution(session)
        try:
            for _ in range(times):
                await registry.put_blob("app", digest, len(data), chunks)
        finally:
            await session._http.aclose()

    asyncio.run(main())


def sent(server: HostileServer) -> List[str]:
    return [f"{r.method} {r.header('Content-Range') or len(r.body)}" for r in server.seen()]


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distribution, "CHUNK_BYTES", 4000)
    monkeypatch.setattr(distribution, "CHUNKED_ABOVE", 10_000)


DATA = bytes(range(256)) * 40  # 10,240 bytes


def test_monolithic_up_to_the_threshold(small_chunks: None) -> None:
    registry = UploadRegistry()
    with HostileServer.start(registry) as server:
        upload(server, DATA[:10_000])
    assert sent(server) == ["POST 0", "PUT 10000"]
    assert list(registry.stored.values()) == [DATA[:10_000]]


def test_chunked_above_it(small_chunks: None) -> None:
    registry = UploadRegistry()
    with HostileServer.start(registry) as server:
        upload(server, DATA)
    # Chunks of at least 4,000 bytes, made of the source's 1,000-byte pieces; a closing `PUT`.
    assert sent(server) == ["POST 0", "PATCH 0-3999", "PATCH 4000-7999", "PATCH 8000-10239", "PUT 0"]
    assert list(registry.stored.values()) == [DATA]


@pytest.mark.parametrize("status", [405, 411, 413, 501])
def test_a_refused_monolithic_put_means_chunks_for_the_rest_of_the_run(small_chunks: None, status: int) -> None:
    registry = UploadRegistry(refuse=status)
    with HostileServer.start(registry) as server:
        upload(server, DATA[:5000], times=2)
    chunked = ["POST 0", "PATCH 0-3999", "PATCH 4000-4999", "PUT 0"]
    assert sent(server) == ["POST 0", "PUT 5000"] + chunked + chunked
    assert list(registry.stored.values()) == [DATA[:5000]]


def test_a_416_resumes_where_the_session_says(small_chunks: None) -> None:
    patches: List[int] = []

    def half_arrived(request: Request) -> Optional[Reply]:
        """The first `PATCH` keeps 1,500 bytes and answers 416, as one cut short and sent again."""
        if request.method == "PATCH":
            patches.append(1)
            if len(patches) == 1:
                registry.sessions[0] += request.body[:1500]
                return Reply(416)
        return None

    registry = UploadRegistry(before=half_arrived)
    with HostileServer.start(registry) as server:
        upload(server, DATA)
    assert sent(server)[:4] == ["POST 0", "PATCH 0-3999", "GET 0", "PATCH 1500-3999"]
    assert list(registry.stored.values()) == [DATA]


def test_a_put_in_a_broken_session_gets_a_new_one() -> None:
    puts: List[int] = []

    def broken_once(request: Request) -> Optional[Reply]:
        if request.method == "PUT":
            puts.append(1)
            if len(puts) == 1:
                return Reply(400)  # DIGEST_INVALID: the session held part of a cut-short attempt
        return None

    registry = UploadRegistry(before=broken_once)
    with HostileServer.start(registry) as server:
        upload(server, DATA)
    assert sent(server) == ["POST 0", "PUT 10240", "POST 0", "PUT 10240"]
    assert list(registry.stored.values()) == [DATA]


def test_a_refusal_past_that_fails_naming_the_registry() -> None:
    registry = UploadRegistry(before=lambda request: Reply(403) if request.method == "PUT" else None)
    with HostileServer.start(registry) as server:
        with pytest.raises(RegistryError, match=f"{server.address} answered 403 Forbidden for an upload of sha256:"):
            upload(server, DATA)


@pytest.mark.parametrize("chunked", [False, True], ids=["monolithic", "chunked"])
def test_a_connection_reset_in_the_middle_of_the_body_is_retried_at_once_and_named(
    chunked: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every `PUT` and `PATCH` cut 4,000 bytes into its body. aiohttp would send such a `PUT`
    once more by itself, its streamed body going on from where the cut left it under the whole
    `Content-Length`: the registry then waited for the rest until the timeout (5 s here). A cut
    monolithic `PUT` is not sent whole again: the blob goes in chunks. Each chunk's attempts are
    the policy's (3), each seen as a reset at once; the message names the blob and the
    repository, never the upload session's URL (its path, its signed `_state`)."""
    if chunked:
        monkeypatch.setattr(distribution, "CHUNK_BYTES", 6000)
        monkeypatch.setattr(distribution, "CHUNKED_ABOVE", 1000)
    registry = UploadRegistry()
    cut = rules(Rule(Reset(4000), methods=frozenset({"PUT", "PATCH"}), path="/blobs/uploads/"))
    with HostileServer.start(registry) as server, FaultProxy.start(server.address, cut) as proxy:
        started = time.monotonic()
        with pytest.raises(RegistryError) as failed:
            upload(server, DATA, address=proxy.address)
        elapsed = time.monotonic() - started
        sent = [r.method for r in proxy.requests() if r.method != "POST"]
    message = failed.value.message
    digest = f"sha256:{hashlib.sha256(DATA).hexdigest()}"
    assert message == (
        f"registry {proxy.address} unreachable: connection reset, uploading blob {digest[:19]} to "
        f"{proxy.address}/app (3 attempts)"
    ), message
    assert "/blobs/uploads/" not in message and "_state" not in message
    assert sent == ([] if chunked else ["PUT"]) + ["PATCH"] * 3
    assert elapsed < 4, elapsed
    assert registry.stored == {}


def test_a_new_attempt_closes_the_source_stream_that_a_broken_one_left_first() -> None:
    """The first `PUT` cut 4,000 bytes in: its part-read source stream (in a copy, a request to
    the source registry holding one of its slots) is closed before the chunks' opens."""
    registry = UploadRegistry()
    cut = rules(Rule(Reset(4000), methods=frozenset({"PUT"}), path="/blobs/uploads/", times=1))
    streams: List[str] = []
    with HostileServer.start(registry) as server, FaultProxy.start(server.address, cut) as proxy:
        upload(server, DATA, address=proxy.address, streams=streams)
        sent = [r.method for r in proxy.requests()]
    assert streams == ["open", "closed", "open", "closed"]
    assert sent == ["POST", "PUT", "POST", "PATCH", "PUT"]
    assert list(registry.stored.values()) == [DATA]

