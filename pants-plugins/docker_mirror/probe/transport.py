"""HTTP on aiohttp, one client per run; redirects are followed here, one hop at a time, each with
its own host's TLS and proxy, since aiohttp would keep the first request's."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ssl
from dataclasses import dataclass, field
from typing import AsyncIterable, AsyncIterator, Callable, Dict, Iterator, Optional, Sequence, Tuple, Union


@contextlib.contextmanager
def _no_default_cas() -> Iterator[None]:
    """aiohttp builds two TLS contexts as it is imported, loading the system's CA certificates
    into each: about a fifth of the probe's start-up (docs/performance.md), paid by every
    process. The probe passes its own context (`Routes.ssl_context`) to every HTTPS request and
    never uses theirs. While aiohttp is imported, a context's default CA paths load nothing: one
    of its contexts used by mistake trusts no server, and so fails closed."""
    own = ssl.SSLContext.__dict__.get("set_default_verify_paths")
    ssl.SSLContext.set_default_verify_paths = lambda self: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        if own is None:
            del ssl.SSLContext.set_default_verify_paths
        else:
            ssl.SSLContext.set_default_verify_paths = own  # type: ignore[method-assign]


with _no_default_cas():
    import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from docker_mirror.probe.access import ProxyError, Routes, TlsSetupError, authority

USER_AGENT = "docker-mirror-probe/1"
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024

# A request body: bytes, or a function that makes an iterable of its chunks afresh (a streamed
# upload is sent again after a 401 or on a retry).
Body = Union[bytes, Callable[[], AsyncIterable[bytes]]]


class HttpError(Exception):
    """An exchange that came to no answer. `kind`: "unreachable" (the network, a timeout, a
    broken answer: worth retrying), "tls" (verification or handshake), "refused" (an answer
    the probe will not follow or read: not retried)."""

    kind = "unreachable"

    def __init__(self, reason: str, host: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.host = host


class Unreachable(HttpError):
    kind = "unreachable"


class TlsFailure(HttpError):
    kind = "tls"

    def __init__(self, reason: str, host: str, error: ssl.SSLError) -> None:
        super().__init__(reason, host)
        self.error = error


class Refused(HttpError):
    kind = "refused"


class BodyFailed(Exception):
    """What a streamed request body raised (its source failed, not the connection), for the
    stream to raise: passed on to the caller as it is, never retried."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _body_failure(error: Optional[BaseException]) -> Optional[BodyFailed]:
    """The `BodyFailed` behind an exception aiohttp raised for a request whose body failed."""
    for _ in range(8):
        if error is None or isinstance(error, BodyFailed):
            return error
        error = error.__cause__ or error.__context__
    return None


@dataclass(frozen=True)
class Request:
    method: str
    url: URL
    headers: Tuple[Tuple[str, str], ...] = ()
    # Sent only to `url`'s origin, never to a host a redirect leads to.
    authorization: Optional[str] = None
    body: Optional[Body] = None
    # For a streamed body: sent as `Content-Length` (otherwise it goes chunked).
    content_length: Optional[int] = None

    def with_authorization(self, authorization: Optional[str]) -> Request:
        return Request(self.method, self.url, self.headers, authorization, self.body, self.content_length)


@dataclass
class Response:
    """An answer, after redirects, its body not yet read. `release()` it (reading the whole
    body does)."""

    method: str
    url: URL  # where the answer came from
    status: int
    headers: "CIMultiDictProxy[str]"
    _raw: aiohttp.ClientResponse = field(repr=False)
    # The whole body, once `HttpClient.fetch` read it.
    body: Optional[bytes] = None

    async def read(self, limit: int = MAX_BODY_BYTES) -> bytes:
        """The whole body, at most `limit` bytes (`Refused` beyond)."""
        try:
            declared = self.headers.get("Content-Length", "")
            if declared.isascii() and declared.isdigit() and int(declared) > limit:
                raise Refused(f"the answer is larger than {limit} bytes", self.host)
            chunks = []
            size = 0
            async for chunk in self.iter_chunks():
                size += len(chunk)
                if size > limit:
                    raise Refused(f"the answer is larger than {limit} bytes", self.host)
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            self.release()

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, in chunks of at most 64 KiB."""
        try:
            async for chunk in self._raw.content.iter_chunked(_CHUNK):
                yield chunk
        except Exception as e:  # noqa: BLE001 - every failure becomes an HttpError
            raise failure(e, self.host) from e

    def release(self) -> None:
        self._raw.release()

    @property
    def host(self) -> str:
        return authority(self.url)

    @property
    def location(self) -> Optional[URL]:
        """The `Location` header resolved against this answer's URL (an upload session of a
        202), or None without one; `Refused` if it is not an http(s) URL."""
        value = self.headers.get("Location")
        return None if value is None else redirect_target(self.url, value)


def redirect_target(base: URL, location: str) -> URL:
    try:
        target = base.join(URL(location))
        usable = target.scheme in ("http", "https") and bool(target.raw_host)
    except (ValueError, TypeError):
        usable = False
    if not usable:
        raise Refused("it redirected to something that is not an http(s) URL", authority(base))
    return target


def failure(error: BaseException, host: str) -> HttpError:
    """What an exception of aiohttp (or below it) means."""
    if isinstance(error, HttpError):
        return error
    if isinstance(error, (ProxyError, TlsSetupError)):
        return Refused(str(error), host)
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        certificate = error.certificate_error
        reason = getattr(certificate, "verify_message", None) or "certificate verification failed"
        return TlsFailure(reason, host, certificate)  # type: ignore[arg-type]
    if isinstance(error, aiohttp.ClientSSLError) and isinstance(error.os_error, ssl.SSLError):
        return TlsFailure(error.os_error.reason or str(error.os_error), host, error.os_error)
    if isinstance(error, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return Unreachable("timed out", host)
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return Unreachable("cannot resolve its host name", host)
    if isinstance(error, aiohttp.ClientConnectorError):
        cause = error.os_error
        reason = {ConnectionRefusedError: "connection refused", ConnectionResetError: "connection reset"}
        return Unreachable(reason.get(type(cause)) or cause.strerror or str(cause), host)
    if isinstance(error, aiohttp.ClientResponseError):  # a broken head: bad framing, huge headers
        return Unreachable(f"broken HTTP answer ({error.message or error.status})", host)
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return Unreachable("the server closed the connection", host)
    if isinstance(error, (aiohttp.ClientError, OSError)):  # a body cut short, a reset
        return Unreachable(_broken(error), host)
    # A URL or a host name no request can be made of (a label of 64 characters, ...).
    return Refused(f"cannot send the request ({type(error).__name__})", host)


_RESETS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})


def _broken(error: BaseException) -> str:
    """How a connection broke, never in the words of the exception: aiohttp's name the request's
    URL ("Can not write request body for <url>"), an upload session's signed `_state` with it."""
    cause: Optional[BaseException] = error
    for _ in range(8):
        if cause is None:
            break
        if isinstance(cause, ConnectionResetError) or (
            isinstance(cause, OSError) and cause.errno in _RESETS
        ):  # fmt: skip
            return "connection reset"
        cause = cause.__cause__ or cause.__context__
    if isinstance(error, aiohttp.ClientPayloadError):
        return "the answer was cut short"
    if not isinstance(error, (aiohttp.ClientConnectionError, OSError)):  # InvalidURL, ...
        return f"cannot send the request ({type(error).__name__})"
    if isinstance(error, OSError) and error.errno is not None and error.strerror:
        return error.strerror.lower()
    return "the connection broke"


OnResponse = Callable[[str, URL, int], None]


class HttpClient:
    """One aiohttp session for the whole run; `Routes` decides TLS and proxy per host."""

    def __init__(self, routes: Routes, *, timeout: float) -> None:
        self.routes = routes
        self.timeout = timeout
        self._session: Optional[aiohttp.ClientSession] = None
        self._timeouts: Dict[Tuple[float, bool], aiohttp.ClientTimeout] = {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Made in the running loop. The registries' semaphores bound the connections.
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=("Accept-Encoding",),
                headers={"User-Agent": USER_AGENT},
                trust_env=False,
            )
            # aiohttp sends a `PUT` (any idempotent method) once more by itself when its
            # connection breaks, with the same `data`: a streamed blob's iterator then goes on from
            # where the broken attempt left it, under the whole blob's `Content-Length`, and the
            # registry waits for bytes that never come until the timeout. Retrying is the
            # `RegistrySession`'s, by its policy, each attempt with its body made afresh. (aiohttp
            # has no public switch; its own test client turns it off so.)
            session._retry_connection = False
            self._session = session
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def open(
        self, request: Request, *, timeout: Optional[float] = None, stream: bool = False,
        on_response: Optional[OnResponse] = None,
    ) -> Response:
        """Sends `request`, following redirects by the rules above; the final answer, its body
        unread. Each hop has `timeout` (the client's by default) up to its answer's head, and,
        unless `stream`, to the end of its body."""
        method, url, body = request.method, request.url, request.body
        for _ in range(MAX_REDIRECTS + 1):
            headers = list(request.headers)
            if request.authorization is not None and url.origin() == request.url.origin():
                headers.append(("Authorization", request.authorization))
            if body is not None and request.content_length is not None:
                headers.append(("Content-Length", str(request.content_length)))
            response = await self._send(method, url, headers, body, timeout, stream)
            if on_response is not None:
                on_response(method, url, response.status)
            location = response.headers.get("Location")
            if response.status not in _REDIRECTS or location is None:
                return response
            response.release()
            target = redirect_target(url, location)
            if url.scheme == "https" and target.scheme == "http":
                raise Refused(f"it redirected from HTTPS to plain HTTP ({authority(target)})", authority(url))
            if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                method, body = ("HEAD" if method == "HEAD" else "GET"), None
            elif body is not None and target.origin() != url.origin():
                raise Refused(
                    f"it redirected a {method} with a body to another host ({authority(target)})",
                    authority(url),
                )
            url = target
        raise Refused(f"it redirected more than {MAX_REDIRECTS} times", authority(request.url))

    async def fetch(self, request: Request, *, timeout: Optional[float] = None,
                    limit: int = MAX_BODY_BYTES, on_response: Optional[OnResponse] = None,
                    ) -> Response:
        """`open`, then the whole body into `body` (none for a HEAD), at most `limit` bytes."""
        response = await self.open(request, timeout=timeout, on_response=on_response)
        try:
            response.body = b"" if response.method == "HEAD" else await response.read(limit)
        finally:
            response.release()
        return response

    def _limits(self, seconds: float, stream: bool) -> aiohttp.ClientTimeout:
        """Per hop: the whole exchange, or for a stream each connect and read."""
        key = (seconds, stream)
        if key not in self._timeouts:
            self._timeouts[key] = (
                aiohttp.ClientTimeout(total=None, sock_connect=seconds, sock_read=seconds)
                if stream else aiohttp.ClientTimeout(total=seconds)
            )
        return self._timeouts[key]

    async def _send(
        self, method: str, url: URL, headers: Sequence[Tuple[str, str]], body: Optional[Body],
        timeout: Optional[float], stream: bool,
    ) -> Response:
        host = authority(url)
        limits = self._limits(self.timeout if timeout is None else timeout, stream)
        try:
            context = self.routes.ssl_context(host) if url.scheme == "https" else True
            proxy = self.routes.proxy(url.scheme, host)
            data = body() if callable(body) else body
            raw = await self._client().request(
                method, url, headers=headers, data=data, allow_redirects=False, ssl=context,
                proxy=proxy, timeout=limits,
            )
        except Exception as e:  # noqa: BLE001 - every failure becomes an HttpError
            failed = _body_failure(e)
            if failed is not None:
                raise failed from None
            raise failure(e, host) from e
        return Response(method, url, raw.status, raw.headers, raw)
