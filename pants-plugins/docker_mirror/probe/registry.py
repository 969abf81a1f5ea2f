"""One registry as the probe speaks to it: the one request path (auth with scopes, bounded
concurrency, retries, time limits, credentials only to the registry's origin)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import Counter
from dataclasses import dataclass
from http import HTTPStatus
from typing import AsyncIterator, Awaitable, Callable, Iterator, Optional, Sequence, Tuple, TypeVar, Union

from multidict import CIMultiDictProxy
from yarl import URL

from docker_mirror.probe.access import Routes, authority
from docker_mirror.probe.auth import Authenticator, Scope, TokenError
from docker_mirror.probe.challenge import parse_challenges, pick
from docker_mirror.probe.credentials import CredentialError, Credentials, CredentialStore
from docker_mirror.oci.probe_protocol import RequestCounts
from docker_mirror.probe.retry import RETRYABLE_STATUSES, RetryPolicy, parse_retry_after
from docker_mirror.probe.secrets import SECRETS, Secrets
from docker_mirror.probe.transport import (
    MAX_BODY_BYTES,
    Body,
    HttpClient,
    HttpError,
    Request,
    Response,
    TlsFailure,
    redirect_target,
)

# An insecure registry is tried over HTTPS first; a plain-HTTP one answers that at once, so
# this bounds the wait on one that never answers the TLS handshake.
_TLS_PROBE_TIMEOUT = 10.0
T = TypeVar("T")


def seconds(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() or value >= 10 else f"{value:.1f}"


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


@dataclass(frozen=True)
class RegistryError(Exception):
    """A request that came to no answer to act on. `message` is one line naming the registry
    and what was asked for; `outcome` one of the probe's outcomes."""

    outcome: str
    message: str
    method: Optional[str] = None
    status: Optional[int] = None
    retry_after: Optional[float] = None

    def __str__(self) -> str:
        return self.message


class ConnectionCut(RegistryError):
    """A request of `cut_is_final` whose connection broke (or timed out) before its answer: tried
    once, and the registry not blocked for it."""


@dataclass(frozen=True)
class _Transient(Exception):
    """An attempt's failure that another attempt may not have."""

    reason: str
    outcome_if_final: str = "error"
    status: Optional[int] = None
    retry_after: Optional[float] = None


@dataclass(frozen=True)
class Answer:
    """The registry's answer to `request`, after redirects and auth, its body read."""

    method: str
    url: URL  # where it came from
    status: int
    headers: "CIMultiDictProxy[str]"
    body: bytes

    @property
    def location(self) -> Optional[URL]:
        """`Location` resolved against `url` (a 202's upload session), or None."""
        value = self.headers.get("Location")
        return None if value is None else redirect_target(self.url, value)


Target = Union[str, URL]


class _Turn:
    """`RegistrySession._turn` (a class, not a generator: it runs for every request)."""

    def __init__(self, session: "RegistrySession") -> None:
        self._session = session
        self._first = False

    async def __aenter__(self) -> None:
        session = self._session
        await session._semaphore.acquire()
        if not session._contacted:
            try:
                await session._first_contact.acquire()
            except BaseException:
                session._semaphore.release()
                raise
            self._first = True

    async def __aexit__(self, *exc: object) -> None:
        session = self._session
        if self._first:
            session._contacted = True
            session._first_contact.release()
        session._semaphore.release()


class RegistrySession:
    """Everything the probe knows about one registry during a run."""

    def __init__(
        self,
        registry: str,
        endpoint: str,
        *,
        http: HttpClient,
        credentials: CredentialStore,
        policy: RetryPolicy,
        max_concurrency: int,
        timeout: float,
        secrets: Secrets = SECRETS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.endpoint = endpoint
        self.counts = RequestCounts()
        self._http = http
        self._routes: Routes = http.routes
        # The endpoint as URLs name it (host lower-cased, IPv6 normalised), to compare hosts by.
        self._authority = authority(URL(f"http://{endpoint}/"))
        self._routes.alias(self._authority, endpoint)
        self._routes.alias(self._authority, registry)
        self.verify = self._routes.verifies(endpoint)
        self._policy = policy
        self._timeout = timeout
        self.secrets = secrets
        self._sleep = sleep
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._auth = Authenticator(
            registry, http=http, credentials=credentials, secrets=secrets,
            count_token=self._count_token, monotonic=monotonic, wall_clock=wall_clock,
        )
        self._scheme: Optional[str] = "https" if self.verify else None
        self._blocked: Optional[RegistryError] = None
        self._not_before = 0.0
        self._contacted = False
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._first_contact = asyncio.Lock()
        # What the requests under way are doing (their `doing`), first begun first: for a message
        # that a deadline cut them.
        self.under_way: "Counter[str]" = Counter()

    async def credentials(self, repository: str) -> Optional[Credentials]:
        return await self._auth.credentials(repository)

    def looked_up_credentials(self, repository: str) -> Optional[Credentials]:
        return self._auth.looked_up(repository)

    def _count_token(self) -> None:
        self.counts.token += 1

    def _count(self, method: str, url: URL, status: int) -> None:
        if "/manifests/" in url.path:
            if method == "HEAD":
                self.counts.HEAD += 1
            elif method == "GET":
                self.counts.GET += 1

    # -----------------------------------------------------------------------------------------
    # The one request path

    async def request(
        self, method: str, target: Target, *, scopes: Sequence[Scope], subject: str,
        headers: Sequence[Tuple[str, str]] = (), body: Optional[Body] = None,
        content_length: Optional[int] = None, limit: int = MAX_BODY_BYTES, optional: bool = False,
        doing: Optional[str] = None, cut_is_final: bool = False,
    ) -> Answer:
        """`method` on `target`, its answer read whole (at most `limit` bytes). Retries
        transient failures; `RegistryError` when there is no answer to act on. `subject` names
        what is asked for in messages, and `doing` what the request is for ("uploading blob
        sha256:... to host/repository": never its URL, which may hold an upload session's signed
        state). An `optional` request (one the caller can do without, such as a tag list) is
        tried once, and its failure does not stop the registry's other requests. With
        `cut_is_final`, a connection that breaks before the answer raises `ConnectionCut` at once
        (a monolithic upload then goes in chunks, rather than whole again)."""

        async def attempt() -> Answer:
            response = await self._attempt(method, target, scopes, headers, body, content_length,
                                           subject, stream=False, limit=limit)
            return Answer(response.method, response.url, response.status, response.headers,
                          response.body or b"")

        async with self._turn():
            with self._doing(doing):
                return await self._retrying(method, subject, attempt, optional=optional, doing=doing,
                                            cut_is_final=cut_is_final)  # fmt: skip

    @contextlib.asynccontextmanager
    async def stream(
        self, method: str, target: Target, *, scopes: Sequence[Scope], subject: str,
        headers: Sequence[Tuple[str, str]] = (), body: Optional[Body] = None,
        content_length: Optional[int] = None, doing: Optional[str] = None,
    ) -> AsyncIterator[Response]:
        """`method` on `target`, its answer's body unread: `iter_chunks()` yields it as it
        arrives (each read within `timeout_seconds`; the caller bounds the total). Retried
        until an answer's head comes that is not a transient failure."""

        async def attempt() -> Response:
            return await self._attempt(method, target, scopes, headers, body, content_length,
                                       subject, stream=True)

        async with self._turn():
            with self._doing(doing):
                response = await self._retrying(method, subject, attempt, doing=doing)
                try:
                    yield response
                finally:
                    response.release()

    def _turn(self) -> "_Turn":
        """A slot of the registry's concurrency; the very first request goes alone."""
        return _Turn(self)

    @contextlib.contextmanager
    def _doing(self, doing: Optional[str]) -> Iterator[None]:
        """`doing` counted in `under_way` while the request is."""
        if doing is None:
            yield
            return
        self.under_way[doing] += 1
        try:
            yield
        finally:
            self.under_way[doing] -= 1
            if not self.under_way[doing]:
                del self.under_way[doing]

    async def _retrying(
        self, method: str, subject: str, attempt: Callable[[], Awaitable[T]], *, optional: bool = False,
        doing: Optional[str] = None, cut_is_final: bool = False,
    ) -> T:
        failures = 0
        while True:
            if self._blocked is not None:
                blocked = self._blocked
                raise RegistryError(
                    blocked.outcome, f"{blocked.message} (so {subject} was not asked for)",
                    status=blocked.status, retry_after=blocked.retry_after,
                )
            wait = self._not_before - self._monotonic()
            if wait > 0:
                await self._sleep(wait)
            try:
                return await attempt()
            except _Transient as transient:
                failures += 1
                if cut_is_final and transient.status is None and transient.outcome_if_final == "unreachable":
                    error = self._give_up(transient, failures, method, doing)
                    raise ConnectionCut(error.outcome, error.message, method=method) from None
                delay = None if optional else self._policy.delay(failures, transient.retry_after)
                if delay is None:
                    error = self._give_up(transient, failures, method, doing)
                    if error.outcome in ("rate_limited", "unreachable") and not optional:
                        self._blocked = error
                    raise error from None
                if transient.retry_after is not None:
                    self._not_before = max(self._not_before, self._monotonic() + transient.retry_after)
                await self._sleep(delay)
            except RegistryError as error:
                if error.outcome == "tls":
                    self._blocked = error
                raise

    def _give_up(self, transient: _Transient, failures: int, method: str, doing: Optional[str]) -> RegistryError:
        tries = f"{failures} attempt{'s' if failures != 1 else ''}"
        retry_after = transient.retry_after
        reason = transient.reason if doing is None else f"{transient.reason}, {doing}"
        if transient.status == 429:
            doing_it = "" if doing is None else f", {doing}"
            if retry_after is not None:
                message = f"rate limited by {self.registry} (429){doing_it}, retry after {seconds(retry_after)} s"
            else:
                message = f"rate limited by {self.registry} (429){doing_it}, {tries}"
            outcome = "rate_limited"
        elif transient.outcome_if_final == "unreachable":
            message = f"registry {self.registry} unreachable: {reason} ({tries})"
            outcome = "unreachable"
        else:
            message = f"{self.registry}: {reason} ({tries})"
            if retry_after is not None:
                message += f", retry after {seconds(retry_after)} s"
            outcome = transient.outcome_if_final
        return RegistryError(outcome, message, method=method, status=transient.status,
                             retry_after=retry_after)

    async def _attempt(
        self, method: str, target: Target, scopes: Sequence[Scope], headers: Sequence[Tuple[str, str]],
        body: Optional[Body], content_length: Optional[int], subject: str, *, stream: bool,
        limit: int = MAX_BODY_BYTES,
    ) -> Response:
        """One attempt: an answer, a `_Transient` failure, or a `RegistryError`."""
        budget = 2 * self._timeout + 1
        exchange = self._exchange(method, target, scopes, tuple(headers), body, content_length,
                                  stream=stream, limit=limit)
        try:
            response = await asyncio.wait_for(exchange, budget)
        except asyncio.TimeoutError:
            raise _Transient(f"no answer within {seconds(budget)} s", "unreachable") from None
        except TokenError as e:
            if e.retryable:
                raise _Transient(e.message, status=e.status, retry_after=e.retry_after) from None
            what = {"unauthorized": "unauthorized by", "denied": "access denied by"}.get(e.outcome, "failed at")
            raise RegistryError(e.outcome, f"{what} {self.registry} for {subject}: {e.message}",
                                method=method, status=e.status) from None
        except CredentialError as e:
            raise RegistryError("error", f"no credentials for {self.registry}: {e}", method=method) from None
        except TlsFailure as e:
            if self._routes.verifies(e.host):
                raise RegistryError("tls", self._tls_message(e), method=method) from None
            raise _Transient(f"TLS with {e.host} failed: {e.reason}", "unreachable") from None
        except HttpError as e:
            if e.kind == "refused":
                where = "" if e.host in ("", self._authority) else f" (at {e.host})"
                raise RegistryError("error", f"{self.registry}{where}: {e.reason}", method=method) from None
            reason = e.reason if e.host in ("", self._authority) else f"{e.host}: {e.reason}"
            raise _Transient(reason, "unreachable") from None
        if response.status in RETRYABLE_STATUSES:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), now=self._wall_clock)
            response.release()
            reason = f"answered {response.status} {reason_phrase(response.status)}".rstrip()
            raise _Transient(reason, status=response.status, retry_after=retry_after)
        return response

    def _tls_message(self, error: TlsFailure) -> str:
        host = self.registry if error.host == self._authority else error.host
        about = "" if host == self.registry else f" (reached from {self.registry})"
        if isinstance(error.error, ssl.SSLCertVerificationError):
            return (
                f"TLS verification of {host}{about} failed: {error.reason}; trust its CA in "
                f"/etc/docker/certs.d/{host}/ca.crt, /etc/containers/certs.d/{host}/ or the "
                "system's CA bundle, or list it in [docker-mirror].insecure_registries"
            )
        return (
            f"TLS with {host}{about} failed: {error.reason}; if it serves plain HTTP, list it in "
            "[docker-mirror].insecure_registries"
        )

    # -----------------------------------------------------------------------------------------
    # One exchange: the scheme, auth, redirects

    def _url(self, scheme: str, target: Target) -> URL:
        if isinstance(target, URL):
            return target
        if "://" in target:
            return URL(target)
        return URL(f"{scheme}://{self.endpoint}{target}")

    async def _exchange(
        self, method: str, target: Target, scopes: Sequence[Scope], headers: Tuple[Tuple[str, str], ...],
        body: Optional[Body], content_length: Optional[int], *, stream: bool, limit: int,
    ) -> Response:
        """Sends the request (over HTTPS, or plain HTTP where that is allowed and HTTPS fails)
        with what the registry asks for."""
        absolute = isinstance(target, URL) or "://" in target
        schemes = [""] if absolute else [self._scheme] if self._scheme else ["https", "http"]
        for index, scheme in enumerate(schemes):
            url = self._url(scheme, target)
            timeout = None
            if scheme == "https" and self._scheme is None:
                timeout = min(self._timeout, _TLS_PROBE_TIMEOUT)
            request = Request(method, url, headers, body=body, content_length=content_length)
            try:
                response = await self._authorized(request, scopes, timeout=timeout, stream=stream, limit=limit)
            except HttpError as e:
                if index + 1 < len(schemes) and e.kind != "refused":
                    continue
                raise
            if not absolute:
                self._scheme = scheme
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def is_own(self, url: URL) -> bool:
        """Whether the registry's credentials may go to `url`: its own host and port, over
        HTTPS (or plain HTTP, for a registry spoken to without TLS verification)."""
        return authority(url) == self._authority and (url.scheme == "https" or not self.verify)

    async def _send(self, request: Request, *, timeout: Optional[float], stream: bool, limit: int) -> Response:
        if stream:
            return await self._http.open(request, timeout=timeout, stream=True, on_response=self._count)
        return await self._http.fetch(request, timeout=timeout, limit=limit, on_response=self._count)

    async def _authorized(
        self, request: Request, scopes: Sequence[Scope], *, timeout: Optional[float], stream: bool, limit: int,
    ) -> Response:
        """Sends `request` with what the registry asked for before, if anything; after a 401
        from the registry itself, answers its challenge and sends it once more."""
        own = self.is_own(request.url)
        sent, fresh = await self._auth.up_front(scopes) if own else (None, False)
        request = request.with_authorization(sent)
        response = await self._send(request, timeout=timeout, stream=stream, limit=limit)
        if response.status != 401 or not own or response.url.origin() != request.url.origin():
            return response
        challenge = pick(parse_challenges(response.headers.getall("WWW-Authenticate", [])))
        if challenge is None:
            return response
        answer = await self._auth.answer(challenge, scopes, sent=sent, fresh=fresh)
        if answer is None or answer == sent:
            return response
        response.release()
        return await self._send(request.with_authorization(answer), timeout=timeout, stream=stream,
                                limit=limit)
