"""A registry session's retries, timing and auth flow, and what the manifest probe makes of the
answers: real HTTP to scripted servers on loopback (`testutil/hostile_registry.py`), with an
injected clock, so retries and `Retry-After` are checked without sleeping. Real registries are
in probe_integration_test.py and registry_integration_test.py."""

from __future__ import annotations

import asyncio
import hashlib
import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import pytest
from yarl import URL

from docker_mirror.probe.access import Routes
from docker_mirror.probe.auth import Scope
from docker_mirror.probe.credentials import Credentials, CredentialStore
from docker_mirror.probe.manifests import probe_manifest
from docker_mirror.oci.probe_protocol import ManifestResult
from docker_mirror.oci.reference import parse_reference
from docker_mirror.probe.registry import RegistrySession
from docker_mirror.probe.retry import RetryPolicy
from docker_mirror.probe.secrets import Secrets
from docker_mirror.probe.transport import HttpClient
from docker_mirror_testutil.hostile_registry import HostileServer, Reply, Request

DIGEST = "sha256:" + "ab" * 32
MANIFEST = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
MANIFEST_DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
Handler = Callable[[Request], Reply]


@dataclass
class Clock:
    now: float = 1000.0
    sleeps: List[float] = field(default_factory=list)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class FixedCredentials(CredentialStore):
    def __init__(self, credentials: Optional[Credentials]) -> None:
        super().__init__({}, files=[])
        self.credentials = credentials

    async def lookup(self, registry: str, repository: str) -> Optional[Credentials]:
        return self.credentials


def _session(
    address: str, clock: Clock, *, credentials: Optional[Credentials] = None, attempts: int = 4,
    max_retry_after: float = 60, secrets: Optional[Secrets] = None,
) -> RegistrySession:
    return RegistrySession(
        address, address, http=HttpClient(Routes({}, directories=()), timeout=5),
        credentials=FixedCredentials(credentials),
        policy=RetryPolicy(attempts=attempts, max_retry_after_seconds=max_retry_after, random=lambda: 0.5),
        max_concurrency=8, timeout=5, secrets=secrets or Secrets(), sleep=clock.sleep,
        monotonic=lambda: clock.now, wall_clock=lambda: clock.now,
    )


def _probe(address: str, references: List[str], clock: Optional[Clock] = None, need_body: bool = False,
           **options: object) -> Tuple[List[ManifestResult], RegistrySession]:
    clock = clock or Clock()

    async def main() -> Tuple[List[ManifestResult], RegistrySession]:
        session = _session(address, clock, **options)  # type: ignore[arg-type]
        try:
            results = await asyncio.gather(
                *(probe_manifest(session, parse_reference(f"{address}/{r}"), need_body) for r in references)
            )
        finally:
            await session._http.aclose()
        return list(results), session

    return asyncio.run(main())


def ok(request: Request) -> Reply:
    return Reply(200, [("Docker-Content-Digest", DIGEST), ("Content-Length", "123"),
                       ("Content-Type", "application/vnd.oci.image.index.v1+json")])


def scripted(*answers: Reply, then: Handler = ok) -> Handler:
    queue = list(answers)
    return lambda request: queue.pop(0) if queue else then(request)


@pytest.fixture
def server() -> Iterator[HostileServer]:
    with HostileServer.start(ok) as started:
        yield started


# ---------------------------------------------------------------------------------------------
# HEAD, and GET only when needed


def test_head_reads_digest_type_and_size(server: HostileServer) -> None:
    (result,), session = _probe(server.address, ["app:1"])
    assert (result.outcome, result.digest, result.media_type, result.size, result.method, result.body) == (
        "ok", DIGEST, "application/vnd.oci.image.index.v1+json", 123, "HEAD", None)
    (seen,) = server.seen()
    assert (seen.method, seen.path, (seen.header("accept") or "").split(", ")) == (
        "HEAD", "/v2/app/manifests/1", [
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
        ])
    assert seen.header("accept-encoding") is None  # the exact bytes, never compressed
    assert seen.header("user-agent") == "docker-mirror-probe/1"
    assert session.counts.to_json() == {"HEAD": 1, "GET": 0, "token": 0}


def test_no_digest_header_means_get_and_hash_the_body(server: HostileServer) -> None:
    server.handler = lambda r: Reply(200, [("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
                                     MANIFEST)
    (result,), session = _probe(server.address, ["app:1"])
    assert (result.outcome, result.method, result.digest, result.body, result.size) == (
        "ok", "GET", MANIFEST_DIGEST, MANIFEST, len(MANIFEST))
    assert session.counts.to_json() == {"HEAD": 1, "GET": 1, "token": 0}


def test_need_body_is_one_get(server: HostileServer) -> None:
    server.handler = lambda r: Reply(200, [("Docker-Content-Digest", MANIFEST_DIGEST)], MANIFEST)
    (result,), _ = _probe(server.address, ["app:1"], need_body=True)
    assert [r.method for r in server.seen()] == ["GET"]
    assert (result.body, result.digest, result.media_type) == (
        MANIFEST, MANIFEST_DIGEST, "application/vnd.oci.image.manifest.v1+json")


def test_a_body_that_is_not_its_digest_is_refused(server: HostileServer) -> None:
    server.handler = lambda r: Reply(200, [("Docker-Content-Digest", DIGEST)], MANIFEST)
    (result,), _ = _probe(server.address, ["app:1"], need_body=True)
    assert result.outcome == "error" and "is not the" in (result.message or "")


def test_a_pinned_reference_must_be_served_as_pinned(server: HostileServer) -> None:
    (same, other), _ = _probe(server.address, [f"app@{DIGEST}", f"app:1@sha256:{'cd' * 32}"])
    assert same.outcome == "ok" and server.seen()[0].path == f"/v2/app/manifests/{DIGEST}"
    assert other.outcome == "error" and "another manifest" in (other.message or "")


# ---------------------------------------------------------------------------------------------
# Retries and their timing


def test_503_twice_then_ok(server: HostileServer) -> None:
    clock = Clock()
    server.handler = scripted(Reply(503), Reply(503))
    (result,), session = _probe(server.address, ["app:1"], clock)
    assert result.outcome == "ok" and len(server.seen()) == 3
    # 0.5 s then 1 s of backoff, half fixed and half random (random() is 0.5 here).
    assert clock.sleeps == [0.375, 0.75]
    assert session.counts.HEAD == 3


def test_retry_after_is_honoured(server: HostileServer) -> None:
    clock = Clock()
    server.handler = scripted(Reply(429, [("Retry-After", "7")]))
    (result,), _ = _probe(server.address, ["app:1"], clock)
    assert result.outcome == "ok" and clock.sleeps == [7]


def test_retry_after_as_a_date(server: HostileServer) -> None:
    clock = Clock(now=1_700_000_000.0)
    server.handler = scripted(Reply(503, [("Retry-After", "Tue, 14 Nov 2023 22:13:50 GMT")]))
    (result,), _ = _probe(server.address, ["app:1"], clock)
    assert result.outcome == "ok" and clock.sleeps == [30.0]


def test_a_rate_limit_beyond_the_cap_fails_at_once_and_for_the_whole_registry(server: HostileServer) -> None:
    clock = Clock()
    server.handler = lambda r: Reply(429, [("Retry-After", "3600")])
    results, _ = _probe(server.address, ["app:1", "app:2", "other:1"], clock)
    assert clock.sleeps == [] and len(server.seen()) == 1
    first = results[0]
    assert (first.outcome, first.http_status, first.retry_after_seconds, first.message) == (
        "rate_limited", 429, 3600, f"rate limited by {server.address} (429), retry after 3600 s")
    assert all(r.outcome == "rate_limited" and r.retry_after_seconds == 3600 for r in results)
    assert "so app:2 was not asked for" in (results[1].message or "")


def test_a_rate_limit_that_outlasts_the_attempts(server: HostileServer) -> None:
    clock = Clock()
    server.handler = lambda r: Reply(429)
    (result,), _ = _probe(server.address, ["app:1"], clock, attempts=3)
    assert len(server.seen()) == 3 and len(clock.sleeps) == 2
    assert (result.outcome, result.message) == ("rate_limited", f"rate limited by {server.address} (429), 3 attempts")


def test_persistent_5xx(server: HostileServer) -> None:
    clock = Clock()
    server.handler = lambda r: Reply(502)
    (result,), _ = _probe(server.address, ["app:1"], clock)
    assert len(server.seen()) == 4 and clock.sleeps == [0.375, 0.75, 1.5]
    assert (result.outcome, result.http_status) == ("error", 502)
    assert result.message == f"{server.address}: answered 502 Bad Gateway (4 attempts)"


@pytest.mark.parametrize("status, outcome", [(404, "not_found"), (401, "unauthorized"), (403, "denied"), (400, "error")])
def test_not_retried(server: HostileServer, status: int, outcome: str) -> None:
    clock = Clock()
    server.handler = lambda r: Reply(status)
    (result,), _ = _probe(server.address, ["app:1"], clock)
    assert (result.outcome, result.http_status, len(server.seen()), clock.sleeps) == (outcome, status, 1, [])
    assert server.address in (result.message or "")


def test_connection_errors_then_the_registry_is_skipped(server: HostileServer) -> None:
    clock = Clock()
    server.stop()
    results, _ = _probe(server.address, ["app:1", "app:2"], clock)
    # Each attempt tries HTTPS, then plain HTTP (a loopback registry); 4 attempts.
    assert len(clock.sleeps) == 3
    assert results[0].outcome == "unreachable"
    assert results[0].message == f"registry {server.address} unreachable: connection refused (4 attempts)"
    assert results[1].outcome == "unreachable" and "so app:2 was not asked for" in (results[1].message or "")


def test_loopback_registries_fall_back_to_plain_http_once(server: HostileServer) -> None:
    results, _ = _probe(server.address, ["a:1", "a:2", "a:3"])
    assert all(r.outcome == "ok" for r in results)
    # One connection tried TLS and was closed; one plain-HTTP connection served the three.
    assert (server.connections, len(server.seen())) == (2, 3)


def test_verified_registries_never_fall_back(server: HostileServer) -> None:
    (result,), _ = _probe(f"127.1:{server.port}", ["a:1"], attempts=2)
    # Each attempt's TLS handshake is cut by the plain-HTTP server; no plain HTTP is tried.
    assert result.outcome == "unreachable" and server.seen() == [] and server.connections == 2


# ---------------------------------------------------------------------------------------------
# Auth


@dataclass
class BearerRegistry:
    """A registry whose token server is another loopback server; `tokens` logs each scope."""

    accept: Callable[[str], bool] = lambda name: True
    token_status: int = 200
    tokens: List[str] = field(default_factory=list)
    realm: Optional[HostileServer] = None

    def token(self, request: Request) -> Reply:
        query = urllib.parse.parse_qs(request.target.partition("?")[2])
        scope = " ".join(query.get("scope", []))
        self.tokens.append(scope)
        if self.token_status != 200:
            return Reply(self.token_status)
        token = f"tok.{scope}".replace(" ", "+")
        return Reply(200, body=json.dumps({"token": token, "expires_in": 300}).encode())

    def registry(self, request: Request) -> Reply:
        assert self.realm is not None
        name = request.path.split("/manifests/")[0][len("/v2/"):]
        if request.header("authorization") == f"Bearer tok.repository:{name}:pull" and self.accept(name):
            return ok(request)
        return Reply(401, [("WWW-Authenticate", f'Bearer realm="{self.realm.url("/token")}",service="svc",'
                                                f'scope="repository:{name}:pull"')])


@pytest.fixture
def bearer(server: HostileServer) -> Iterator[BearerRegistry]:
    setup = BearerRegistry()
    with HostileServer.start(setup.token) as realm:
        setup.realm = realm
        server.handler = setup.registry
        yield setup


def test_one_token_per_scope_and_one_401_per_registry(server: HostileServer, bearer: BearerRegistry) -> None:
    references = [f"{repo}:{tag}" for repo in ("a", "b/c") for tag in range(10)]
    results, session = _probe(server.address, references)
    assert all(r.outcome == "ok" for r in results)
    assert sorted(bearer.tokens) == ["repository:a:pull", "repository:b/c:pull"]
    assert len(server.seen()) == 21  # 20 references and the first one's 401
    assert session.counts.to_json() == {"HEAD": 21, "GET": 0, "token": 2}
    assert bearer.realm is not None
    token_request = bearer.realm.seen()[0]
    assert token_request.header("authorization") is None  # anonymous: no credentials exist
    assert "service=svc" in token_request.target


def test_tokens_are_renewed_when_they_expire(server: HostileServer, bearer: BearerRegistry) -> None:
    clock = Clock()

    async def main() -> List[str]:
        session = _session(server.address, clock)
        outcomes = [(await probe_manifest(session, parse_reference(f"{server.address}/a:1"), False)).outcome]
        clock.now += 400  # past the 300 s the token lives
        outcomes.append((await probe_manifest(session, parse_reference(f"{server.address}/a:2"), False)).outcome)
        await session._http.aclose()
        return outcomes

    assert asyncio.run(main()) == ["ok", "ok"]
    assert bearer.tokens == ["repository:a:pull", "repository:a:pull"]


def test_token_with_basic_credentials_and_refused_credentials(server: HostileServer, bearer: BearerRegistry) -> None:
    secrets = Secrets()
    bearer.token_status = 401
    credentials = Credentials("alice", "pa55word", None, "/home/a/.docker/config.json")
    (result,), _ = _probe(server.address, ["a:1"], credentials=credentials, secrets=secrets)
    assert bearer.realm is not None
    assert bearer.realm.seen()[0].header("authorization") == "Basic YWxpY2U6cGE1NXdvcmQ="
    assert result.outcome == "unauthorized"
    assert result.message == (
        f"unauthorized by {server.address} for a:1: its token server 127.0.0.1 refused the credentials "
        "from /home/a/.docker/config.json (401)")
    assert "pa55word" not in json.dumps(result.to_json())
    assert secrets.scrub("Basic YWxpY2U6cGE1NXdvcmQ=") == "Basic <redacted>"


def test_identity_tokens_are_exchanged_by_oauth(server: HostileServer) -> None:
    posted: List[Dict[str, str]] = []

    def token(request: Request) -> Reply:
        posted.append(dict(urllib.parse.parse_qsl(request.body.decode())))
        return Reply(200, body=b'{"access_token": "acc", "refresh_token": "new-refresh"}')

    with HostileServer.start(token) as realm:
        server.handler = lambda r: ok(r) if r.header("authorization") == "Bearer acc" else Reply(
            401, [("WWW-Authenticate", f'Bearer realm="{realm.url("/token")}",service="svc",scope="repository:a:pull"')])
        (result,), _ = _probe(server.address, ["a:1"], credentials=Credentials(None, None, "refresh-me", "helper"))
    assert result.outcome == "ok"
    assert posted == [{"grant_type": "refresh_token", "refresh_token": "refresh-me", "client_id": "docker-mirror-probe",
                       "scope": "repository:a:pull", "service": "svc"}]


def test_a_scope_the_token_does_not_cover_is_unauthorized_after_one_token(
    server: HostileServer, bearer: BearerRegistry
) -> None:
    bearer.accept = lambda name: name != "private"
    (public, private), _ = _probe(server.address, ["public:1", "private:1"])
    assert (public.outcome, private.outcome) == ("ok", "unauthorized")
    assert bearer.tokens.count("repository:private:pull") == 1
    assert f"no credentials for {server.address}" in (private.message or "")


def test_basic_challenge(server: HostileServer) -> None:
    server.handler = lambda r: ok(r) if r.header("authorization") == "Basic dTpw" else Reply(
        401, [("WWW-Authenticate", 'Basic realm="registry"')])
    results, _ = _probe(server.address, ["a:1", "a:2", "b:1"], credentials=Credentials("u", "p", None, "f"))
    assert all(r.outcome == "ok" for r in results)
    assert [r.header("authorization") for r in server.seen()] == [None, "Basic dTpw", "Basic dTpw", "Basic dTpw"]


def test_no_credentials_over_plain_http_to_a_token_realm_on_a_verified_host(server: HostileServer) -> None:
    with HostileServer.start(lambda r: Reply(200, body=b'{"token": "t"}')) as realm:
        server.handler = lambda r: Reply(401, [("WWW-Authenticate", f'Bearer realm="http://127.1:{realm.port}/token"')])
        (result,), _ = _probe(server.address, ["a:1"], credentials=Credentials("u", "p", None, "f"))
    assert realm.seen() == []
    assert result.outcome == "error" and "over plain HTTP" in (result.message or "")


# ---------------------------------------------------------------------------------------------
# The generic request path: scopes, absolute URLs, locations


def test_scopes_for_a_push_and_a_cross_repository_mount(server: HostileServer, bearer: BearerRegistry) -> None:
    server.handler = lambda r: Reply(201, [("Location", "/v2/b/blobs/sha256:x")]) if r.header(
        "authorization") else Reply(401, [("WWW-Authenticate", f'Bearer realm="{bearer.realm.url("/token")}",'  # type: ignore[union-attr]
                                           'service="svc",scope="repository:b:pull,push"')])

    async def main() -> Tuple[int, Optional[URL]]:
        session = _session(server.address, Clock())
        try:
            answer = await session.request(
                "POST", f"/v2/b/blobs/uploads/?mount={DIGEST}&from=a", subject="a blob",
                scopes=[Scope("b", "pull,push"), Scope("a")], body=b"",
            )
            return answer.status, answer.location
        finally:
            await session._http.aclose()

    status, location = asyncio.run(main())
    assert (status, location) == (201, URL(server.url("/v2/b/blobs/sha256:x")))
    assert bearer.tokens == ["repository:b:pull,push repository:a:pull"]


def test_credentials_go_to_an_absolute_url_only_on_the_registrys_own_origin(server: HostileServer) -> None:
    server.handler = lambda r: Reply(200) if r.header("authorization") else Reply(
        401, [("WWW-Authenticate", 'Basic realm="r"')])
    with HostileServer.start(lambda r: Reply(200)) as elsewhere:

        async def main() -> None:
            session = _session(server.address, Clock(), credentials=Credentials("u", "p", None, "f"))
            try:
                for target in (server.url("/v2/a/blobs/uploads/1"), elsewhere.url("/upload/1")):
                    answer = await session.request("PUT", URL(target), subject="a blob",
                                                   scopes=[Scope("a", "pull,push")], body=b"data")
                    assert answer.status == 200
            finally:
                await session._http.aclose()

        asyncio.run(main())
        assert [r.header("authorization") for r in elsewhere.seen()] == [None]
    assert [r.header("authorization") for r in server.seen()] == [None, "Basic dTpw"]
