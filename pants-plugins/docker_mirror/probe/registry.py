"""One registry, as the probe speaks to it: manifests by HEAD (GET only when needed), the
distribution spec's auth, retries, and what each answer means.

Per registry and run: one `transport.HttpClient` (its connections kept alive), at most
`max_concurrency_per_registry` requests at a time, one token per scope. The first reference of
a registry goes alone: its answer teaches the others whether to use HTTPS or plain HTTP (for
insecure registries) and which challenge the registry sends, so each later reference sends its
token (or Basic credentials) with its first request instead of collecting a 401 first.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import urllib.parse
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from docker_mirror.probe import transport
from docker_mirror.probe.transport import Headers, Request, Response, URL
from docker_mirror.probe.access import is_loopback
from docker_mirror.probe.challenge import Challenge, parse_challenges, pick
from docker_mirror.probe.credentials import CredentialError, Credentials, CredentialStore
from docker_mirror.probe.protocol import ReferenceResult, RequestCounts
from docker_mirror.probe.reference import DIGEST, Reference
from docker_mirror.probe.retry import RETRYABLE_STATUSES, RetryPolicy, parse_retry_after
from docker_mirror.probe.secrets import SECRETS, Secrets

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ACCEPT = ", ".join([OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST])
USER_AGENT = "docker-mirror-probe/1"
CLIENT_ID = "docker-mirror-probe"
# A token lives 60 s unless the token server says otherwise (distribution token spec); renew it
# a little before it runs out.
DEFAULT_TOKEN_LIFETIME = 60.0
TOKEN_RENEWAL_MARGIN = 5.0
_MAX_TOKEN_LENGTH = 64 * 1024
_VISIBLE_ASCII = re.compile(r"[!-~]+", re.ASCII)
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")
_MANIFEST_PATH = re.compile(r"/v2/(?P<name>.+)/manifests/[^/]+")
# An insecure registry is tried over HTTPS first; a plain-HTTP one answers that at once, so
# this bounds the wait on one that never answers the TLS handshake.
_TLS_PROBE_TIMEOUT = 10.0


def one_line(text: str, limit: int = 300) -> str:
    """Visible ASCII and spaces only, on one line, at most `limit` characters."""
    cleaned = "".join(c if " " <= c <= "~" else " " for c in text)
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


def _seconds(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() or value >= 10 else f"{value:.1f}"


def default_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def repository_of(path: str) -> str:
    match = _MANIFEST_PATH.fullmatch(path)
    return match["name"] if match else ""


class TokenError(Exception):
    """The token server did not hand out a token."""

    def __init__(
        self, outcome: str, message: str, *, status: Optional[int] = None, retry_after: Optional[float] = None
    ) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.message = message
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.outcome == "retry"


@dataclass
class _Token:
    authorization: str
    expires_at: float


@dataclass(frozen=True)
class _Answer:
    """What one exchange with the registry came to."""

    status: int
    headers: Headers
    body: Optional[bytes]
    method: str


@dataclass(frozen=True)
class _Attempt:
    """One attempt's outcome: a final result, or a transient failure to retry."""

    result: Optional[ReferenceResult] = None
    retry_reason: Optional[str] = None  # what went wrong, when it can be retried
    outcome_if_final: str = "error"  # the outcome if no attempt is left
    status: Optional[int] = None
    retry_after: Optional[float] = None
    method: Optional[str] = None
    need_get: bool = False


class RegistrySession:
    """Everything the probe knows about one registry during a run."""

    def __init__(
        self,
        registry: str,
        endpoint: str,
        *,
        verify: bool,
        context: Optional[ssl.SSLContext],
        setup_error: Optional[str] = None,
        credentials: CredentialStore,
        policy: RetryPolicy,
        env: Mapping[str, str],
        max_concurrency: int,
        timeout: float,
        secrets: Secrets = SECRETS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        client: Optional[transport.Client] = None,
    ) -> None:
        self.registry = registry
        self.endpoint = endpoint
        self.verify = verify
        self.counts = RequestCounts()
        self._setup_error = setup_error
        self._credential_store = credentials
        self._policy = policy
        self._timeout = timeout
        self._secrets = secrets
        self._sleep = sleep
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._scheme: Optional[str] = None if not verify else "https"
        self._challenge: Optional[Challenge] = None
        self._tokens: Dict[str, _Token] = {}
        self._token_locks: Dict[str, asyncio.Lock] = {}
        self._credentials: Dict[str, Optional[Credentials]] = {}
        self._blocked: Optional[ReferenceResult] = None
        self._not_before = 0.0
        self._contacted = False
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._first_contact = asyncio.Lock()
        if client is None and context is not None:
            client = transport.HttpClient(
                context=context, env=env, loopback=is_loopback(endpoint), timeout=timeout,
                secrets=secrets,
            )
        self._client = client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def _count_manifest(self, response: Response) -> None:
        if response.request.method == "HEAD":
            self.counts.HEAD += 1
        elif response.request.method == "GET":
            self.counts.GET += 1

    def _count_token(self, response: Response) -> None:
        self.counts.token += 1

    # -----------------------------------------------------------------------------------------
    # Credentials and tokens

    async def credentials(self, repository: str) -> Optional[Credentials]:
        if repository not in self._credentials:
            self._credentials[repository] = await self._credential_store.lookup(
                self.registry, repository
            )
        return self._credentials[repository]

    def _valid_token(self, scope: str) -> Optional[str]:
        token = self._tokens.get(scope)
        if token is None or token.expires_at <= self._monotonic():
            return None
        return token.authorization

    async def authorization(self, repository: str) -> Tuple[Optional[str], bool]:
        """What to send with a first request for `repository`, from what the registry asked
        before; and whether it is a token fetched just now."""
        challenge = self._challenge
        if challenge is None:
            return None, False
        if challenge.scheme == "basic":
            credentials = await self.credentials(repository)
            return (credentials.basic_authorization(self._secrets) if credentials else None), False
        scope = default_scope(repository)
        current = self._valid_token(scope)
        if current is not None:
            return current, False
        return await self._token(challenge, scope, repository, stale=None), True

    async def answer(
        self, challenge: Challenge, repository: str, *, sent: Optional[str], fresh: bool
    ) -> Optional[str]:
        """What to send after a 401 with `challenge`; None to give up."""
        if challenge.scheme == "basic":
            self._challenge = challenge
            credentials = await self.credentials(repository)
            return credentials.basic_authorization(self._secrets) if credentials else None
        if not challenge.realm:
            raise TokenError("error", "its Bearer challenge names no realm")
        self._challenge = challenge
        scope = challenge.scope or default_scope(repository)
        if fresh and scope == default_scope(repository):
            return None  # the token fetched for this very request is not enough
        return await self._token(challenge, scope, repository, stale=sent)

    async def _token(
        self, challenge: Challenge, scope: str, repository: str, *, stale: Optional[str]
    ) -> str:
        lock = self._token_locks.setdefault(scope, asyncio.Lock())
        async with lock:
            current = self._valid_token(scope)
            if current is not None and current != stale:
                return current
            authorization, lifetime = await self._fetch_token(challenge, scope, repository)
            self._tokens[scope] = _Token(
                authorization, self._monotonic() + max(0.0, lifetime - TOKEN_RENEWAL_MARGIN)
            )
            return authorization

    async def _fetch_token(
        self, challenge: Challenge, scope: str, repository: str
    ) -> Tuple[str, float]:
        assert self._client is not None and challenge.realm
        try:
            realm = URL.parse(challenge.realm)
        except ValueError:
            raise TokenError("error", "its token realm is not an http(s) URL") from None
        realm_host = realm.host
        credentials = await self.credentials(repository)
        if credentials is not None and realm.scheme == "http":
            if not (self.verify is False or is_loopback(realm_host)):
                raise TokenError(
                    "error",
                    f"refusing to send credentials to its token realm on {realm_host} "
                    "over plain HTTP",
                )
        scopes = scope.split()
        service = challenge.service
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if credentials is not None and credentials.identity_token:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": credentials.identity_token,
                "client_id": CLIENT_ID,
                "scope": " ".join(scopes),
            }
            if service:
                form["service"] = service
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            request = Request(
                "POST", realm, Headers(headers.items()), urllib.parse.urlencode(form).encode()
            )
        else:
            params: List[Tuple[str, str]] = [("service", service)] if service else []
            params += [("scope", s) for s in scopes]
            basic = credentials.basic_authorization(self._secrets) if credentials else None
            if basic:
                headers["Authorization"] = basic
            request = Request("GET", realm.with_query(params), Headers(headers.items()))
        response = await self._client.send(request, on_response=self._count_token)
        status = response.status_code
        who = f"its token server {realm_host}"
        if status == 200:
            return self._read_token(response, who)
        if status in RETRYABLE_STATUSES:
            retry_after = parse_retry_after(response.headers.get("retry-after"), now=self._wall_clock)
            raise TokenError("retry", f"{who} answered {status}", status=status, retry_after=retry_after)
        if status == 401:
            if credentials is None:
                raise TokenError("unauthorized", f"{who} refused an anonymous token (401)", status=401)
            raise TokenError(
                "unauthorized",
                f"{who} refused the credentials from {credentials.source} (401)",
                status=401,
            )
        if status == 403:
            raise TokenError("denied", f"{who} denied a token for {scope} (403)", status=403)
        raise TokenError("error", f"{who} answered {status}", status=status)

    def _read_token(self, response: Response, who: str) -> Tuple[str, float]:
        try:
            document = json.loads(response.content)
        except ValueError:
            raise TokenError("error", f"{who} answered with something that is not JSON") from None
        if not isinstance(document, dict):
            raise TokenError("error", f"{who} answered with JSON that holds no token")
        token = document.get("token") or document.get("access_token")
        if not isinstance(token, str) or not token:
            raise TokenError("error", f"{who} answered without a token")
        self._secrets.add(token)
        for key in ("token", "access_token", "refresh_token"):
            value = document.get(key)
            if isinstance(value, str):
                self._secrets.add(value)
        if len(token) > _MAX_TOKEN_LENGTH or not _VISIBLE_ASCII.fullmatch(token):
            raise TokenError("error", f"{who} answered with a token that cannot be sent")
        lifetime = document.get("expires_in")
        if isinstance(lifetime, bool) or not isinstance(lifetime, (int, float)) or lifetime <= 0:
            lifetime = DEFAULT_TOKEN_LIFETIME
        authorization = f"Bearer {token}"
        self._secrets.add(authorization)
        return authorization, float(lifetime)

    # -----------------------------------------------------------------------------------------
    # Manifests

    async def probe(self, reference: Reference, need_body: bool) -> ReferenceResult:
        async with self._semaphore:
            if not self._contacted:
                async with self._first_contact:
                    if not self._contacted:
                        try:
                            return await self._resolve(reference, need_body)
                        finally:
                            self._contacted = True
            return await self._resolve(reference, need_body)

    def _blocked_result(self, reference: Reference) -> Optional[ReferenceResult]:
        if self._blocked is None:
            return None
        blocked = self._blocked
        return ReferenceResult(
            reference=reference.text,
            outcome=blocked.outcome,
            method=None,
            http_status=blocked.http_status,
            retry_after_seconds=blocked.retry_after_seconds,
            message=f"{blocked.message} (so {reference.shown} was not asked for)",
        )

    async def _resolve(self, reference: Reference, need_body: bool) -> ReferenceResult:
        if self._setup_error is not None:
            return self._result(reference, "error", message=self._setup_error)
        method = "GET" if need_body else "HEAD"
        failures = 0
        switched = False
        while True:
            blocked = self._blocked_result(reference)
            if blocked is not None:
                return blocked
            wait = self._not_before - self._monotonic()
            if wait > 0:
                await self._sleep(wait)
            attempt = await self._attempt(reference, method)
            if attempt.need_get and not switched:
                method, switched = "GET", True
                continue
            if attempt.result is not None:
                if attempt.result.outcome == "tls":
                    self._blocked = attempt.result
                return attempt.result
            failures += 1
            delay = self._policy.delay(failures, attempt.retry_after)
            if delay is None:
                result = self._give_up(reference, attempt, failures)
                if result.outcome in ("rate_limited", "unreachable"):
                    self._blocked = result
                return result
            if attempt.retry_after is not None:
                self._not_before = max(self._not_before, self._monotonic() + attempt.retry_after)
            await self._sleep(delay)

    def _result(self, reference: Reference, outcome: str, **fields: object) -> ReferenceResult:
        message = fields.pop("message", None)
        if isinstance(message, str):
            message = self._secrets.scrub(one_line(message))
        return ReferenceResult(reference=reference.text, outcome=outcome, message=message, **fields)  # type: ignore[arg-type]

    def _give_up(self, reference: Reference, attempt: _Attempt, failures: int) -> ReferenceResult:
        tries = f"{failures} attempt{'s' if failures != 1 else ''}"
        retry_after = attempt.retry_after
        if attempt.status == 429:
            if retry_after is not None:
                message = f"rate limited by {self.registry} (429), retry after {_seconds(retry_after)} s"
            else:
                message = f"rate limited by {self.registry} (429), {tries}"
            outcome = "rate_limited"
        elif attempt.outcome_if_final == "unreachable":
            message = f"registry {self.registry} unreachable: {attempt.retry_reason} ({tries})"
            outcome = "unreachable"
        else:
            message = f"{self.registry}: {attempt.retry_reason} ({tries})"
            if retry_after is not None:
                message += f", retry after {_seconds(retry_after)} s"
            outcome = attempt.outcome_if_final
        return self._result(
            reference,
            outcome,
            method=attempt.method,
            http_status=attempt.status,
            retry_after_seconds=retry_after,
            message=message,
        )

    async def _authorized(self, request: Request, timeout: Optional[float]) -> Response:
        """Sends `request` with what the registry asked for before, if anything; after a 401,
        answers its challenge (a token for the challenge's scope, or Basic credentials) and
        sends it once more."""
        assert self._client is not None
        repository = repository_of(request.url.path)
        sent, fresh = await self.authorization(repository)
        if sent is not None:
            request = Request(request.method, request.url,
                              Headers(request.headers.items() + [("Authorization", sent)]))
        response = await self._client.send(request, on_response=self._count_manifest, timeout=timeout)
        if response.status_code != 401:
            return response
        challenge = pick(parse_challenges(response.headers.get_list("www-authenticate")))
        if challenge is None:
            return response
        answer = await self.answer(challenge, repository, sent=sent, fresh=fresh)
        if answer is None or answer == sent:
            return response
        headers = request.headers.without("authorization").items() + [("Authorization", answer)]
        request = Request(request.method, request.url, Headers(headers))
        return await self._client.send(request, on_response=self._count_manifest, timeout=timeout)

    async def _exchange(self, reference: Reference, method: str) -> _Answer:
        """Sends `method` for the manifest (over HTTPS, or plain HTTP where that is allowed and
        HTTPS fails) and reads the answer."""
        schemes = [self._scheme] if self._scheme else ["https", "http"]
        for index, scheme in enumerate(schemes):
            url = URL.parse(f"{scheme}://{self.endpoint}{reference.manifest_path}")
            request = Request(method, url, Headers([("Accept", ACCEPT), ("User-Agent", USER_AGENT)]))
            timeout = None
            if scheme == "https" and self._scheme is None:
                timeout = min(self._timeout, _TLS_PROBE_TIMEOUT)
            try:
                response = await self._authorized(request, timeout)
            except (transport.ConnectError, transport.Timeout):
                if index + 1 < len(schemes):
                    continue
                raise
            self._scheme = scheme
            body = response.content if method == "GET" else None
            return _Answer(response.status_code, response.headers, body, method)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(self, reference: Reference, method: str) -> _Attempt:
        budget = 2 * self._timeout + 1
        try:
            answer = await asyncio.wait_for(self._exchange(reference, method), budget)
        except asyncio.TimeoutError:
            return _Attempt(retry_reason=f"no answer within {_seconds(budget)} s",
                            outcome_if_final="unreachable", method=method)
        except TokenError as e:
            if e.retryable:
                return _Attempt(retry_reason=e.message, status=e.status, retry_after=e.retry_after,
                                method=method)
            return _Attempt(result=self._result(
                reference, e.outcome, method=method, http_status=e.status,
                message=f"{self._what(e.outcome)} {self.registry} for {reference.shown}: {e.message}"))
        except CredentialError as e:
            return _Attempt(result=self._result(
                reference, "error", method=method,
                message=f"no credentials for {self.registry}: {e}"))
        except transport.ResponseTooLarge as e:
            return _Attempt(result=self._result(
                reference, "error", method=method, message=f"{self.registry}: {e}"))
        except transport.TooManyRedirects:
            return _Attempt(result=self._result(
                reference, "error", method=method,
                message=f"{self.registry} redirected {reference.shown} too many times"))
        except (transport.TransportError, OSError) as e:
            tls = _ssl_error(e)
            if tls is not None and self.verify:
                return _Attempt(result=self._result(
                    reference, "tls", method=method, message=self._tls_message(tls)))
            return _Attempt(retry_reason=_network_reason(e), outcome_if_final="unreachable",
                            method=method)
        return self._classify(reference, answer)

    def _what(self, outcome: str) -> str:
        return {"unauthorized": "unauthorized by", "denied": "access denied by"}.get(
            outcome, "failed at"
        )

    def _tls_message(self, error: ssl.SSLError) -> str:
        if isinstance(error, ssl.SSLCertVerificationError):
            reason = error.verify_message or error.reason or "certificate verification failed"
            return (
                f"TLS verification of {self.registry} failed: {reason}; trust its CA in "
                f"/etc/docker/certs.d/{self.registry}/ca.crt, /etc/containers/certs.d/"
                f"{self.registry}/ or the system's CA bundle, or list it in "
                "[docker-mirror].insecure_registries"
            )
        reason = error.reason or str(error)
        return (
            f"TLS with {self.registry} failed: {reason}; if it serves plain HTTP, list it in "
            "[docker-mirror].insecure_registries"
        )

    def _classify(self, reference: Reference, answer: _Answer) -> _Attempt:
        status, headers, method = answer.status, answer.headers, answer.method
        retry_after = parse_retry_after(headers.get("retry-after"), now=self._wall_clock)
        if status == 200:
            return self._found(reference, answer)
        if status in RETRYABLE_STATUSES:
            phrase = _reason_phrase(status)
            return _Attempt(retry_reason=f"answered {status} {phrase}".rstrip(), status=status,
                            retry_after=retry_after, method=method)
        detail = _error_detail(answer.body)
        if status == 404:
            return _Attempt(result=self._result(
                reference, "not_found", method=method, http_status=404,
                message=f"{reference.shown} not found at {self.registry} (404{detail})"))
        if status == 401:
            credentials = self._credentials.get(reference.remote_name)
            if credentials is None:
                why = f"no credentials for {self.registry} in the Docker config or containers auth files"
            else:
                why = f"it refused the credentials from {credentials.source}"
            return _Attempt(result=self._result(
                reference, "unauthorized", method=method, http_status=401,
                message=f"unauthorized by {self.registry} (401{detail}) for {reference.shown}: {why}"))
        if status == 403:
            return _Attempt(result=self._result(
                reference, "denied", method=method, http_status=403,
                message=f"access denied by {self.registry} (403{detail}) to {reference.shown}"))
        return _Attempt(result=self._result(
            reference, "error", method=method, http_status=status,
            message=f"{self.registry} answered {status} {_reason_phrase(status)}{detail} for {reference.shown}"))

    def _found(self, reference: Reference, answer: _Answer) -> _Attempt:
        headers, method = answer.headers, answer.method
        header_digest = (headers.get("docker-content-digest") or "").strip()
        if not DIGEST.fullmatch(header_digest):
            header_digest = ""
        media_type = _media_type(headers.get("content-type"))
        if method == "HEAD":
            if not header_digest:
                return _Attempt(need_get=True, method=method)
            length = (headers.get("content-length") or "").strip()
            size = int(length) if length.isdigit() else None
            digest = header_digest
            body = None
        else:
            body = answer.body or b""
            digest = f"sha256:{hashlib.sha256(body).hexdigest()}"
            if header_digest and header_digest != digest:
                return _Attempt(result=self._result(
                    reference, "error", method=method, http_status=200,
                    message=f"{self.registry} served {reference.shown} with a body whose digest "
                    f"{digest} is not the {header_digest} it announced"))
            size = len(body)
            if media_type is None:
                media_type = _body_media_type(body)
        if reference.digest and digest != reference.digest:
            return _Attempt(result=self._result(
                reference, "error", method=method, http_status=200,
                message=f"{self.registry} answered {reference.shown} with another manifest, {digest}"))
        return _Attempt(result=self._result(
            reference, "ok", digest=digest, media_type=media_type, size=size, body=body,
            method=method, http_status=200))


def _media_type(value: Optional[str]) -> Optional[str]:
    if not value:
        return None
    media_type = value.split(";", 1)[0].strip()
    return media_type if _MEDIA_TYPE.fullmatch(media_type) else None


def _body_media_type(body: bytes) -> Optional[str]:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    value = document.get("mediaType") if isinstance(document, dict) else None
    return _media_type(value) if isinstance(value, str) else None


def _error_detail(body: Optional[bytes]) -> str:
    """`: <code>: <message>` from a registry's JSON error body, when it has one."""
    if not body:
        return ""
    try:
        errors = json.loads(body).get("errors")
        first = errors[0]
        code, message = str(first.get("code") or ""), str(first.get("message") or "")
    except (ValueError, AttributeError, TypeError, IndexError, KeyError):
        return ""
    text = one_line(": ".join(part for part in (code, message) if part), 120)
    return f": {text}" if text else ""


def _reason_phrase(status: int) -> str:
    try:
        from http import HTTPStatus

        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen = set()
    pending = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for nested in (current.__cause__, current.__context__, *current.args):
            if isinstance(nested, BaseException):
                pending.append(nested)


def _ssl_error(error: BaseException) -> Optional[ssl.SSLError]:
    found = [e for e in _causes(error) if isinstance(e, ssl.SSLError)]
    verification = [e for e in found if isinstance(e, ssl.SSLCertVerificationError)]
    if verification:
        return verification[0]
    return found[0] if found else None


def _network_reason(error: BaseException) -> str:
    for cause in _causes(error):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
        if isinstance(cause, socket.gaierror):
            return "cannot resolve its host name"
    if isinstance(error, transport.Timeout):
        return "timed out"
    if isinstance(error, transport.ProtocolError):
        return f"broken HTTP answer ({one_line(str(error), 120) or 'connection closed'})"
    text = one_line(str(error), 160)
    return text or type(error).__name__
