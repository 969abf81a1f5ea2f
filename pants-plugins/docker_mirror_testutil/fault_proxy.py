"""An HTTP/1.1 proxy on loopback in front of a real registry that injects faults, for tests.

Clients (the registry probe, `skopeo`, a Docker engine) are pointed at the proxy's address as if
it were the registry; the `Host` header is passed on unchanged, so the upload URLs the registry
hands out point at the proxy too, and every request of a push goes through it. Bodies are
streamed in both directions (Content-Length, chunked, or up to the end of the connection), so a
fault can hit the middle of a blob upload.

For each request the `plan` decides (it is called with the request's index, method and path):

- `None`: pass it on to the registry and relay the answer (minus `strip_headers`);
- `Respond(status, headers)`, or a `(status, headers)` tuple: answer it without asking the
  registry (429 with `Retry-After`, 500, 503, 401, 403...), with a registry-style error body;
- `Reset(after_bytes)`: forward the request head and the first `after_bytes` of its body (of
  the answer's body, with `answer=True`), then reset both connections (a TCP RST);
- `Stall(seconds, after_bytes)`: forward that much, then hold the connection (until `release()`
  or `seconds`), then reset it, or go on with `then="continue"`;
- `Corrupt(at_byte)`: relay the answer with one byte's bits flipped (a blob that is not its
  digest);
- `Then(fault, hook)`: `fault` (None: pass on), then call `hook()` once the answer was relayed
  and before the connection's next request is read (e.g. "someone else pushes now").

`rules(Rule(...), ...)` builds a plan from rules matched on method and path, each for a number
of requests. `refuse()` stops listening (the port stays bound, so connections are refused, as
by a host with nothing listening) and `accept()` listens again. Every request is logged, and
`injected` counts the faults by kind. A TLS handshake (a client trying HTTPS first) gets the
connection closed at once, as a plain-HTTP registry would refuse it.

A subclass can serve some requests itself, or add headers to the answers it relays, through
`_pass_on` and `_relay(answer_headers=...)`: `referrers_proxy.ReferrersProxy` adds the OCI 1.1
referrers API to a registry that lacks it.

Standard library only; the relaying itself is `relay.HttpRelay`'s.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Type, TypeVar, Union

from docker_mirror_testutil.relay import Connection, Cut, Head, HttpRelay, stream_body


@dataclass(frozen=True)
class Respond:
    """Answer with `status` (and `headers`) without asking the registry."""

    status: int
    headers: Tuple[Tuple[str, str], ...] = ()
    body: Optional[bytes] = None

    @property
    def kind(self) -> str:
        return str(self.status)


@dataclass(frozen=True)
class Reset:
    """Reset both connections after `after_bytes` of the request body (`answer=True`: of the
    answer's body) were passed on."""

    after_bytes: int = 0
    answer: bool = False

    @property
    def kind(self) -> str:
        return "reset"


@dataclass(frozen=True)
class Stall:
    """Pass on `after_bytes` of the request body, then hold the connection `seconds` (or until
    `FaultProxy.release()`), then reset it; with `then="continue"`, go on as if nothing
    happened."""

    seconds: float = 3600.0
    after_bytes: int = 0
    then: str = "reset"

    @property
    def kind(self) -> str:
        return "stall"


@dataclass(frozen=True)
class Corrupt:
    """Pass the answer on with the bits of its byte at `at_byte` flipped (a blob served with
    other bytes than its digest); the connection goes on."""

    at_byte: int = 0

    @property
    def kind(self) -> str:
        return "corrupt"


@dataclass(frozen=True)
class Then:
    """`fault` (None: pass the request on), then `hook()` once the answer was relayed."""

    fault: Optional["Fault"]
    hook: Callable[[], None]

    @property
    def kind(self) -> str:
        return self.fault.kind if self.fault is not None else "hook"


Fault = Union[Respond, Reset, Stall, Corrupt, Then]
PlanAnswer = Union[None, Fault, Tuple[int, Dict[str, str]]]
# (index of the request, method, path) -> what to do with it.
Plan = Callable[[int, str, str], PlanAnswer]


def respond(status: int, headers: Optional[Dict[str, str]] = None) -> Respond:
    return Respond(status, tuple((headers or {}).items()))


def first(count: int, status: int, headers: Optional[Dict[str, str]] = None) -> Plan:
    """Answers the first `count` requests with `status`, then passes the rest on."""
    fault = respond(status, headers)
    return lambda index, method, path: fault if index < count else None


def always(status: int, headers: Optional[Dict[str, str]] = None) -> Plan:
    fault = respond(status, headers)
    return lambda index, method, path: fault


def passthrough() -> Plan:
    return lambda index, method, path: None


PUSH_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BLOB_UPLOAD = r"/blobs/uploads/"
MANIFEST = r"/manifests/"


@dataclass
class Rule:
    """`fault` for the requests whose method is in `methods` (None: any) and whose path matches
    `path` (a regular expression, searched), after `skip` such requests were let through, for
    `times` requests (None: every one)."""

    fault: Fault
    methods: Optional[frozenset] = None
    path: Optional[str] = None
    times: Optional[int] = None
    skip: int = 0
    matched: int = 0

    def applies(self, method: str, path: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        return self.path is None or re.search(self.path, path) is not None


def rules(*all_rules: Rule) -> Plan:
    """A plan: the first rule that matches a request and has requests left decides it; a
    request no rule decides is passed on. (The proxy calls the plan from one thread.)"""

    def plan(index: int, method: str, path: str) -> Optional[Fault]:
        for rule in all_rules:
            if not rule.applies(method, path):
                continue
            rule.matched += 1
            if rule.matched <= rule.skip:
                return None
            if rule.times is not None and rule.matched > rule.skip + rule.times:
                continue
            return rule.fault
        return None

    return plan


def _error_body(status: int) -> bytes:
    """What a registry answers with that status (the distribution spec's error document)."""
    code, message = {
        401: ("UNAUTHORIZED", "authentication required"),
        403: ("DENIED", "requested access to the resource is denied"),
        429: ("TOOMANYREQUESTS", "too many requests"),
    }.get(status, ("UNAVAILABLE", f"injected fault: {status}"))
    return json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()


_REASONS = {
    200: "OK", 201: "Created", 202: "Accepted", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests",
    413: "Payload Too Large", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass
class Logged:
    method: str
    path: str
    status: int  # 0: no answer (the connection was reset)
    injected: bool
    fault: Optional[str] = None


_Proxy = TypeVar("_Proxy", bound="FaultProxy")


class FaultProxy(HttpRelay):
    def __init__(self, upstream: str, plan: Plan, strip_headers: Sequence[str] = ()) -> None:
        super().__init__(upstream, strip_headers)
        self.plan = plan
        self.log: List[Logged] = []
        self.injected: Counter = Counter()
        # Set while a `Stall` holds a connection; `release()` ends the stalls.
        self.stalled = threading.Event()
        self._release: Optional[asyncio.Event] = None
        self._lock = threading.Lock()
        self._count = 0
        # Requests being served, and those of them a `Stall` holds: `requests()` waits for the
        # others, whose answer the client may have read before their entry was logged.
        self._serving = 0
        self._held = 0
        self._settled = threading.Condition(self._lock)

    @classmethod
    def start(
        cls: Type[_Proxy], upstream: str, plan: Plan, *, strip_headers: Sequence[str] = ()
    ) -> _Proxy:
        proxy = cls(upstream, plan, strip_headers)
        proxy._start()
        return proxy

    async def _starting(self) -> None:
        self._release = asyncio.Event()

    async def _stopping(self) -> None:
        if self._release is not None:
            self._release.set()
        await super()._stopping()

    def refuse(self) -> None:
        super().refuse()
        self._count_fault("refused")

    def release(self) -> None:
        """Ends every stall now (each resets its connection, or goes on)."""

        async def release() -> None:
            assert self._release is not None
            self._release.set()

        self._call(release)

    def requests(self) -> List[Logged]:
        """Every request answered so far. It waits (up to 5 s) for those still being logged: a
        client can read an answer before the proxy has noted it."""
        with self._settled:
            self._settled.wait_for(lambda: self._serving <= self._held, timeout=5)
            return list(self.log)

    def faults(self) -> Counter:
        with self._lock:
            return Counter(self.injected)

    def _next(self, method: str, path: str) -> Optional[Fault]:
        with self._lock:
            index = self._count
            self._count += 1
        answer = self.plan(index, method, path)
        if isinstance(answer, tuple):
            status, headers = answer
            return respond(status, headers)
        return answer

    def _record(self, entry: Logged) -> None:
        with self._lock:
            self.log.append(entry)

    def _count_fault(self, kind: str) -> None:
        with self._lock:
            self.injected[kind] += 1

    # -- serving ---------------------------------------------------------------------------

    def _being_served(self, change: int, *, held: int = 0) -> None:
        with self._settled:
            self._serving += change
            self._held += held
            self._settled.notify_all()

    async def _serve(self, head: Head, connection: Connection) -> bool:
        method, path = head.request_line()
        fault = self._next(method, path)
        hook: Optional[Callable[[], None]] = None
        if isinstance(fault, Then):
            hook = fault.hook
            fault = fault.fault
        self._being_served(+1)
        try:
            keep_alive = await self._answer(fault, head, method, path, connection)
        finally:
            self._being_served(-1)
        if hook is not None:
            await asyncio.get_running_loop().run_in_executor(None, hook)
        return keep_alive

    async def _answer(
        self, fault: Optional[Fault], head: Head, method: str, path: str, connection: Connection
    ) -> bool:
        """Answers one request as `fault` says, and logs it; whether the connection stays open."""
        if isinstance(fault, Respond):
            async for _ in stream_body(head, connection.reader, request=True, method="", status=0):
                pass
            self._count_fault(fault.kind)
            await self._respond(fault, method, connection.writer)
            self._record(Logged(method, path, fault.status, True, fault.kind))
            keep_alive = True
        else:
            fired: List[str] = []
            cut = self._cut(fault, fired)
            status, keep_alive = await self._pass_on(head, method, path, cut, connection)
            self._record(Logged(method, path, status, bool(fired), fired[0] if fired else None))
        return keep_alive

    async def _pass_on(
        self, head: Head, method: str, path: str, cut: Optional[Cut], connection: Connection
    ) -> Tuple[int, bool]:
        """Serves a request that no `Respond` fault answered: relays it to the registry, cut
        where a Reset or Stall says (`cut`). A subclass that serves some requests itself (a
        registry API the registry lacks) overrides this; what `_relay` returns."""
        return await self._relay(head, method, connection, cut=cut)

    def _cut(self, fault: Optional[Fault], fired: List[str]) -> Optional[Cut]:
        """Where a Reset or Stall hits: it carries it out there, and notes its kind in `fired`."""
        if fault is None:
            return None
        if isinstance(fault, Corrupt):

            async def corrupt() -> bool:
                fired.append("corrupt")
                self._count_fault("corrupt")
                return False

            return Cut(fault.at_byte, True, corrupt, flip=True)
        assert isinstance(fault, (Reset, Stall)), fault

        async def act() -> bool:
            """Carries out a Reset (True: reset now) or a Stall (True, unless it goes on after)."""
            fired.append(fault.kind)
            self._count_fault(fault.kind)
            if isinstance(fault, Stall):
                assert self._release is not None
                self.stalled.set()
                self._being_served(0, held=+1)
                try:
                    await asyncio.wait_for(self._release.wait(), fault.seconds)
                except asyncio.TimeoutError:
                    pass
                finally:
                    self._being_served(0, held=-1)
                return fault.then != "continue"
            return True

        return Cut(fault.after_bytes, isinstance(fault, Reset) and fault.answer, act)

    async def _respond(self, fault: Respond, method: str, writer: asyncio.StreamWriter) -> None:
        body = fault.body if fault.body is not None else _error_body(fault.status)
        lines = [f"HTTP/1.1 {fault.status} {_REASONS.get(fault.status, 'Error')}"]
        lines += [f"{k}: {v}" for k, v in fault.headers]
        if not any(k.lower() == "content-type" for k, _ in fault.headers):
            lines.append("Content-Type: application/json")
        lines += [f"Content-Length: {len(body)}", "Docker-Distribution-Api-Version: registry/2.0"]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if method != "HEAD":
            writer.write(body)
        await writer.drain()

def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Polls `condition` every 20 ms; raises if it is still false after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.02)
