"""A registry session's retries, timing and auth flow, against scripted answers (a `Client`
that replies without a network) with an injected clock. The real registries are in
probe_integration_test.py, the real HTTP client in transport_test.py."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import pytest

from docker_mirror.probe import transport
from docker_mirror.probe.credentials import Credentials, CredentialStore
from docker_mirror.probe.protocol import ReferenceResult
from docker_mirror.probe.reference import Reference
from docker_mirror.probe.registry import RegistrySession
from docker_mirror.probe.retry import RetryPolicy
from docker_mirror.probe.secrets import Secrets

REGISTRY = "r.test:5000"
DIGEST = "sha256:" + "ab" * 32
MANIFEST = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
MANIFEST_DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()



@dataclass
class Reply:
    status: int
    headers: Optional[Dict[str, str]] = None
    content: bytes = b""
    json: object = None


Handler = Callable[[transport.Request], Reply]


class Scripted(transport.Client):
    """Answers each request with what `handler` says (or raises what it raises)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    async def send(self, request: transport.Request, *, on_response: Optional[transport.OnResponse] = None,
                   timeout: Optional[float] = None, follow_redirects: bool = True) -> transport.Response:
        await asyncio.sleep(0)
        reply = self.handler(request)
        content = json.dumps(reply.json).encode() if reply.json is not None else reply.content
        response = transport.Response(reply.status, transport.Headers((reply.headers or {}).items()), content, request)
        if on_response is not None:
            on_response(response)
        return response


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
        self.lookups = 0

    async def lookup(self, registry: str, repository: str) -> Optional[Credentials]:
        self.lookups += 1
        return self.credentials


def _session(
    handler: Handler, clock: Clock, *, credentials: Optional[Credentials] = None,
    attempts: int = 4, max_retry_after: float = 60, verify: bool = True, secrets: Optional[Secrets] = None,
) -> RegistrySession:
    return RegistrySession(
        REGISTRY, REGISTRY, verify=verify, context=None, credentials=FixedCredentials(credentials),
        policy=RetryPolicy(attempts=attempts, max_retry_after_seconds=max_retry_after, random=lambda: 0.5),
        env={}, max_concurrency=8, timeout=30, secrets=secrets or Secrets(), sleep=clock.sleep,
        monotonic=lambda: clock.now, wall_clock=lambda: clock.now,
        client=Scripted(handler),
    )


def _probe(handler: Handler, references: List[str], clock: Optional[Clock] = None, need_body: bool = False,
           **options: object) -> Tuple[List[ReferenceResult], RegistrySession]:
    clock = clock or Clock()

    async def main() -> Tuple[List[ReferenceResult], RegistrySession]:
        session = _session(handler, clock, **options)  # type: ignore[arg-type]
        try:
            results = await asyncio.gather(
                *(session.probe(Reference.parse(f"{REGISTRY}/{r}"), need_body) for r in references)
            )
        finally:
            await session.aclose()
        return list(results), session

    return asyncio.run(main())


def ok(request: transport.Request) -> Reply:
    headers = {"Docker-Content-Digest": DIGEST, "Content-Type": "application/vnd.oci.image.index.v1+json",
               "Content-Length": "123"}
    return Reply(200, headers=headers)


def scripted(*answers: Reply, then: Handler = ok) -> Tuple[Handler, List[transport.Request]]:
    seen: List[transport.Request] = []
    queue = list(answers)

    def handler(request: transport.Request) -> Reply:
        seen.append(request)
        return queue.pop(0) if queue else then(request)

    return handler, seen


# ---------------------------------------------------------------------------------------------
# HEAD, and GET only when needed


def test_head_reads_digest_type_and_size() -> None:
    handler, seen = scripted()
    (result,), session = _probe(handler, ["app:1"])
    assert (result.outcome, result.digest, result.media_type, result.size, result.method, result.body) == (
        "ok", DIGEST, "application/vnd.oci.image.index.v1+json", 123, "HEAD", None)
    assert [(r.method, r.url.path, (r.headers.get("accept") or "").split(", ")) for r in seen] == [
        ("HEAD", "/v2/app/manifests/1", [
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
        ])]
    assert session.counts.to_json() == {"HEAD": 1, "GET": 0, "token": 0}


def test_no_digest_header_means_get_and_hash_the_body() -> None:
    def handler(request: transport.Request) -> Reply:
        content = MANIFEST if request.method == "GET" else b""
        return Reply(200, headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
                              content=content)

    (result,), session = _probe(handler, ["app:1"])
    assert (result.outcome, result.method, result.digest, result.body, result.size) == (
        "ok", "GET", MANIFEST_DIGEST, MANIFEST, len(MANIFEST))
    assert session.counts.to_json() == {"HEAD": 1, "GET": 1, "token": 0}


def test_need_body_is_one_get() -> None:
    handler, seen = scripted(then=lambda r: Reply(
        200, headers={"Docker-Content-Digest": MANIFEST_DIGEST}, content=MANIFEST))
    (result,), _ = _probe(handler, ["app:1"], need_body=True)
    assert [r.method for r in seen] == ["GET"]
    assert (result.body, result.digest, result.media_type) == (
        MANIFEST, MANIFEST_DIGEST, "application/vnd.oci.image.manifest.v1+json")


def test_a_body_that_is_not_its_digest_is_refused() -> None:
    handler, _ = scripted(then=lambda r: Reply(200, headers={"Docker-Content-Digest": DIGEST},
                                                       content=MANIFEST))
    (result,), _ = _probe(handler, ["app:1"], need_body=True)
    assert result.outcome == "error" and "is not the" in (result.message or "")


def test_a_pinned_reference_must_be_served_as_pinned() -> None:
    handler, seen = scripted()
    (same, other), _ = _probe(handler, [f"app@{DIGEST}", f"app:1@sha256:{'cd' * 32}"])
    assert same.outcome == "ok" and seen[0].url.path == f"/v2/app/manifests/{DIGEST}"
    assert other.outcome == "error" and "another manifest" in (other.message or "")


# ---------------------------------------------------------------------------------------------
# Retries and their timing


def test_503_twice_then_ok() -> None:
    clock = Clock()
    handler, seen = scripted(Reply(503), Reply(503))
    (result,), session = _probe(handler, ["app:1"], clock)
    assert result.outcome == "ok" and len(seen) == 3
    # 0.5 s then 1 s of backoff, half fixed and half random (random() is 0.5 here).
    assert clock.sleeps == [0.375, 0.75]
    assert session.counts.HEAD == 3


def test_retry_after_is_honoured() -> None:
    clock = Clock()
    handler, _ = scripted(Reply(429, headers={"Retry-After": "7"}))
    (result,), _ = _probe(handler, ["app:1"], clock)
    assert result.outcome == "ok" and clock.sleeps == [7]


def test_retry_after_as_a_date() -> None:
    clock = Clock(now=1_700_000_000.0)
    handler, _ = scripted(Reply(503, headers={"Retry-After": "Tue, 14 Nov 2023 22:13:50 GMT"}))
    (result,), _ = _probe(handler, ["app:1"], clock)
    assert result.outcome == "ok" and clock.sleeps == [30.0]


def test_a_rate_limit_beyond_the_cap_fails_at_once_and_for_the_whole_registry() -> None:
    clock = Clock()
    handler, seen = scripted(then=lambda r: Reply(429, headers={"Retry-After": "3600"}))
    results, _ = _probe(handler, ["app:1", "app:2", "other:1"], clock)
    assert clock.sleeps == [] and len(seen) == 1
    first = results[0]
    assert (first.outcome, first.http_status, first.retry_after_seconds, first.message) == (
        "rate_limited", 429, 3600, f"rate limited by {REGISTRY} (429), retry after 3600 s")
    assert all(r.outcome == "rate_limited" and r.retry_after_seconds == 3600 for r in results)
    assert first.to_json()["retry_after_seconds"] == 3600


def test_a_rate_limit_that_outlasts_the_attempts() -> None:
    clock = Clock()
    handler, seen = scripted(then=lambda r: Reply(429))
    (result,), _ = _probe(handler, ["app:1"], clock, attempts=3)
    assert len(seen) == 3 and len(clock.sleeps) == 2
    assert (result.outcome, result.message) == ("rate_limited", f"rate limited by {REGISTRY} (429), 3 attempts")


def test_persistent_5xx() -> None:
    clock = Clock()
    handler, seen = scripted(then=lambda r: Reply(502))
    (result,), _ = _probe(handler, ["app:1"], clock)
    assert len(seen) == 4 and clock.sleeps == [0.375, 0.75, 1.5]
    assert (result.outcome, result.http_status) == ("error", 502)
    assert result.message == f"{REGISTRY}: answered 502 Bad Gateway (4 attempts)"


@pytest.mark.parametrize("status, outcome", [(404, "not_found"), (401, "unauthorized"), (403, "denied"), (400, "error")])
def test_not_retried(status: int, outcome: str) -> None:
    clock = Clock()
    handler, seen = scripted(then=lambda r: Reply(status))
    (result,), _ = _probe(handler, ["app:1"], clock)
    assert (result.outcome, result.http_status, len(seen), clock.sleeps) == (outcome, status, 1, [])
    assert REGISTRY in (result.message or "")


def test_connection_errors_then_the_registry_is_skipped() -> None:
    clock = Clock()
    calls: List[str] = []

    def refuse(request: transport.Request) -> Reply:
        calls.append(request.url.scheme)
        raise transport.ConnectError("[Errno 111] Connection refused")

    results, _ = _probe(refuse, ["app:1", "app:2"], clock, verify=False)
    # Each attempt tries HTTPS, then plain HTTP (an insecure registry); 4 attempts.
    assert calls == ["https", "http"] * 4 and len(clock.sleeps) == 3
    assert results[0].outcome == "unreachable"
    assert results[0].message == f"registry {REGISTRY} unreachable: [Errno 111] Connection refused (4 attempts)"
    assert results[1].outcome == "unreachable" and "so app:2 was not asked for" in (results[1].message or "")


def test_insecure_registries_fall_back_to_plain_http_once() -> None:
    schemes: List[str] = []

    def plain_only(request: transport.Request) -> Reply:
        schemes.append(request.url.scheme)
        if request.url.scheme == "https":
            raise transport.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number")
        return ok(request)

    results, _ = _probe(plain_only, ["a:1", "a:2", "a:3"], verify=False)
    assert all(r.outcome == "ok" for r in results) and schemes == ["https", "http", "http", "http"]


def test_verified_registries_never_fall_back() -> None:
    def refuse(request: transport.Request) -> Reply:
        assert request.url.scheme == "https"
        raise transport.ConnectError("refused")

    (result,), _ = _probe(refuse, ["a:1"], attempts=2)
    assert result.outcome == "unreachable"


# ---------------------------------------------------------------------------------------------
# Auth


def bearer_registry(tokens: List[str], *, accept: Optional[Callable[[str], bool]] = None,
                    token_status: int = 200) -> Tuple[Handler, List[transport.Request]]:
    """A registry whose token server is https://auth.test/token; `tokens` logs each scope."""
    seen: List[transport.Request] = []

    def handler(request: transport.Request) -> Reply:
        seen.append(request)
        if request.url.host == "auth.test":
            scope = request.url.params.get("scope") or ""
            tokens.append(scope)
            if token_status != 200:
                return Reply(token_status)
            return Reply(200, json={"token": f"tok.{scope}", "expires_in": 300})
        name = request.url.path.split("/manifests/")[0][len("/v2/"):]
        if request.headers.get("authorization") == f"Bearer tok.repository:{name}:pull" and (
            accept is None or accept(name)
        ):
            return ok(request)
        return Reply(401, headers={"WWW-Authenticate": (
            f'Bearer realm="https://auth.test/token",service="svc",scope="repository:{name}:pull"')})

    return handler, seen


def test_one_token_per_scope_and_one_401_per_registry() -> None:
    tokens: List[str] = []
    handler, seen = bearer_registry(tokens)
    references = [f"{repo}:{tag}" for repo in ("a", "b/c") for tag in range(10)]
    results, session = _probe(handler, references)
    assert all(r.outcome == "ok" for r in results)
    assert sorted(tokens) == ["repository:a:pull", "repository:b/c:pull"]
    manifest_requests = [r for r in seen if r.url.host != "auth.test"]
    assert len(manifest_requests) == 21  # 20 references and the first one's 401
    assert session.counts.to_json() == {"HEAD": 21, "GET": 0, "token": 2}
    token_request = next(r for r in seen if r.url.host == "auth.test")
    assert "authorization" not in token_request.headers  # anonymous: no credentials exist
    assert token_request.url.params["service"] == "svc"


def test_tokens_are_renewed_when_they_expire() -> None:
    clock = Clock()
    tokens: List[str] = []
    handler, _ = bearer_registry(tokens)

    async def main() -> List[str]:
        session = _session(handler, clock)
        outcomes = [(await session.probe(Reference.parse(f"{REGISTRY}/a:1"), False)).outcome]
        clock.now += 400  # past the 300 s the token lives
        outcomes.append((await session.probe(Reference.parse(f"{REGISTRY}/a:2"), False)).outcome)
        await session.aclose()
        return outcomes

    assert asyncio.run(main()) == ["ok", "ok"]
    assert tokens == ["repository:a:pull", "repository:a:pull"]


def test_token_with_basic_credentials_and_refused_credentials() -> None:
    secrets = Secrets()
    credentials = Credentials("alice", "pa55word", None, "/home/a/.docker/config.json")
    tokens: List[str] = []
    handler, seen = bearer_registry(tokens, token_status=401)
    (result,), _ = _probe(handler, ["a:1"], credentials=credentials, secrets=secrets)
    token_request = next(r for r in seen if r.url.host == "auth.test")
    assert token_request.headers.get("authorization") == "Basic YWxpY2U6cGE1NXdvcmQ="
    assert result.outcome == "unauthorized"
    assert result.message == (
        f"unauthorized by {REGISTRY} for a:1: its token server auth.test refused the credentials "
        "from /home/a/.docker/config.json (401)")
    assert "pa55word" not in json.dumps(result.to_json())
    assert secrets.scrub("Basic YWxpY2U6cGE1NXdvcmQ=") == "Basic <redacted>"


def test_identity_tokens_are_exchanged_by_oauth() -> None:
    posted: List[Dict[str, str]] = []

    def handler(request: transport.Request) -> Reply:
        if request.url.host == "auth.test":
            from urllib.parse import parse_qsl

            posted.append(dict(parse_qsl(request.content.decode())))
            return Reply(200, json={"access_token": "acc", "refresh_token": "new-refresh"})
        if request.headers.get("authorization") == "Bearer acc":
            return ok(request)
        return Reply(401, headers={"WWW-Authenticate": 'Bearer realm="https://auth.test/token",service="svc",scope="repository:a:pull"'})

    (result,), _ = _probe(handler, ["a:1"], credentials=Credentials(None, None, "refresh-me", "helper"))
    assert result.outcome == "ok"
    assert posted == [{"grant_type": "refresh_token", "refresh_token": "refresh-me", "client_id": "docker-mirror-probe",
                       "scope": "repository:a:pull", "service": "svc"}]


def test_a_scope_the_token_does_not_cover_is_unauthorized_after_one_token() -> None:
    tokens: List[str] = []
    handler, seen = bearer_registry(tokens, accept=lambda name: name != "private")
    (public, private), _ = _probe(handler, ["public:1", "private:1"])
    assert (public.outcome, private.outcome) == ("ok", "unauthorized")
    assert tokens.count("repository:private:pull") == 1
    assert "no credentials for r.test:5000" in (private.message or "")


def test_basic_challenge() -> None:
    seen: List[Optional[str]] = []

    def handler(request: transport.Request) -> Reply:
        seen.append(request.headers.get("authorization"))
        if request.headers.get("authorization") == "Basic dTpw":
            return ok(request)
        return Reply(401, headers={"WWW-Authenticate": 'Basic realm="registry"'})

    results, session = _probe(handler, ["a:1", "a:2", "b:1"], credentials=Credentials("u", "p", None, "f"))
    assert all(r.outcome == "ok" for r in results)
    assert seen == [None, "Basic dTpw", "Basic dTpw", "Basic dTpw"]


def test_no_credentials_over_plain_http_to_a_token_realm_of_a_verified_registry() -> None:
    def handler(request: transport.Request) -> Reply:
        assert request.url.host != "auth.test", "credentials were sent"
        return Reply(401, headers={"WWW-Authenticate": 'Bearer realm="http://auth.test/token"'})

    (result,), _ = _probe(handler, ["a:1"], credentials=Credentials("u", "p", None, "f"))
    assert result.outcome == "error" and "over plain HTTP" in (result.message or "")
