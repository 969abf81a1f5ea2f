"""The distribution spec's auth for one registry: Basic, or a Bearer token per set of scopes, with
credentials sent only where the registry itself asked for them."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from yarl import URL

from docker_mirror.probe.access import Routes, authority
from docker_mirror.probe.challenge import Challenge
from docker_mirror.probe.credentials import Credentials, CredentialStore
from docker_mirror.probe.retry import RETRYABLE_STATUSES, parse_retry_after
from docker_mirror.probe.secrets import SECRETS, Secrets
from docker_mirror.probe.transport import HttpClient, Request

CLIENT_ID = "docker-mirror-probe"
# A token lives 60 s unless the token server says otherwise (distribution token spec); renew it
# a little before it runs out. A longer life than a day is taken as a day.
DEFAULT_TOKEN_LIFETIME = 60.0
MAX_TOKEN_LIFETIME = 86400.0
TOKEN_RENEWAL_MARGIN = 5.0
_MAX_TOKEN_LENGTH = 64 * 1024
_VISIBLE_ASCII = re.compile(r"[!-~]+", re.ASCII)


@dataclass(frozen=True)
class Scope:
    """`repository:<name>:<actions>`: `pull`, or `pull,push` to write."""

    repository: str
    actions: str = "pull"

    def __str__(self) -> str:
        return f"repository:{self.repository}:{self.actions}"


def scope_text(scopes: Sequence[Scope], extra: Optional[str] = None) -> str:
    """The scopes as the token server is asked for them, space-separated, each once, in order;
    `extra`: a challenge's own `scope`, added where it asks for more."""
    names: List[str] = []
    for name in [str(s) for s in scopes] + (extra or "").split():
        if name not in names:
            names.append(name)
    return " ".join(names)


def parse_json(body: bytes) -> Any:
    """A JSON document from a registry or token server; None if it is not one (including
    nesting too deep for the parser)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


@dataclass(frozen=True)
class TokenError(Exception):
    """The token server did not hand out a token (`outcome` "retry": it may next time)."""

    outcome: str
    message: str
    status: Optional[int] = None
    retry_after: Optional[float] = None

    def __str__(self) -> str:
        return self.message

    @property
    def retryable(self) -> bool:
        return self.outcome == "retry"


@dataclass
class _Token:
    authorization: str
    expires_at: float


class Authenticator:
    """What one registry asked for, and the credentials and tokens that answer it."""

    def __init__(
        self, registry: str, *, http: HttpClient, credentials: CredentialStore,
        secrets: Secrets = SECRETS, count_token: Callable[[], None] = lambda: None,
        monotonic: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self._http = http
        self._routes: Routes = http.routes
        self._store = credentials
        self._secrets = secrets
        self._count_token = count_token
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self.challenge: Optional[Challenge] = None
        self._tokens: Dict[str, _Token] = {}
        self._token_locks: Dict[str, asyncio.Lock] = {}
        self._credentials: Dict[str, Optional[Credentials]] = {}

    async def credentials(self, repository: str) -> Optional[Credentials]:
        if repository not in self._credentials:
            self._credentials[repository] = await self._store.lookup(self.registry, repository)
        return self._credentials[repository]

    def looked_up(self, repository: str) -> Optional[Credentials]:
        """The credentials found for `repository` so far (None: none, or not looked up)."""
        return self._credentials.get(repository)

    def _valid_token(self, key: str) -> Optional[str]:
        token = self._tokens.get(key)
        if token is None or token.expires_at <= self._monotonic():
            return None
        return token.authorization

    async def up_front(self, scopes: Sequence[Scope]) -> Tuple[Optional[str], bool]:
        """What to send with a first request, from what the registry asked before; and whether
        it is a token fetched just now."""
        challenge = self.challenge
        if challenge is None:
            return None, False
        if challenge.scheme == "basic":
            credentials = await self.credentials(scopes[0].repository)
            return (credentials.basic_authorization(self._secrets) if credentials else None), False
        key = scope_text(scopes)
        current = self._valid_token(key)
        if current is not None:
            return current, False
        return await self._token(challenge, scopes, key, key, stale=None), True

    async def answer(
        self, challenge: Challenge, scopes: Sequence[Scope], *, sent: Optional[str], fresh: bool
    ) -> Optional[str]:
        """What to send after a 401 from the registry with `challenge`; None to give up."""
        if challenge.scheme == "basic":
            self.challenge = challenge
            credentials = await self.credentials(scopes[0].repository)
            return credentials.basic_authorization(self._secrets) if credentials else None
        if not challenge.realm:
            raise TokenError("error", "its Bearer challenge names no realm")
        self.challenge = challenge
        # The challenge's own scope, where it asks for more than the request's (a registry
        # names what this very request needs).
        key, asked = scope_text(scopes), scope_text(scopes, challenge.scope)
        if fresh and asked == key:
            return None  # the token fetched for this very request is not enough
        return await self._token(challenge, scopes, key, asked, stale=sent)

    async def _token(
        self, challenge: Challenge, scopes: Sequence[Scope], key: str, scope: str, *,
        stale: Optional[str],
    ) -> str:
        """A token for `scope`, kept as the one for the request's scopes (`key`)."""
        lock = self._token_locks.setdefault(key, asyncio.Lock())
        async with lock:
            current = self._valid_token(key)
            if current is not None and current != stale:
                return current
            authorization, lifetime = await self._fetch_token(challenge, scopes[0].repository, scope)
            self._tokens[key] = _Token(
                authorization, self._monotonic() + max(0.0, lifetime - TOKEN_RENEWAL_MARGIN)
            )
            return authorization

    def _realm(self, challenge: Challenge) -> URL:
        try:
            realm = URL(challenge.realm or "")
            if realm.scheme in ("http", "https") and realm.raw_host:
                return realm
        except (ValueError, TypeError):
            pass
        raise TokenError("error", "its token realm is not an http(s) URL")

    async def _fetch_token(self, challenge: Challenge, repository: str, scope: str) -> Tuple[str, float]:
        realm = self._realm(challenge)
        realm_host = authority(realm)
        credentials = await self.credentials(repository)
        if credentials is not None and realm.scheme == "http" and self._routes.verifies(realm_host):
            raise TokenError(
                "error", f"refusing to send credentials to its token realm on {realm_host} over plain HTTP"
            )
        service = challenge.service
        headers: List[Tuple[str, str]] = [("Accept", "application/json")]
        authorization = body = None
        if credentials is not None and credentials.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": credentials.identity_token,
                    "client_id": CLIENT_ID, "scope": scope}
            if service:
                form["service"] = service
            headers.append(("Content-Type", "application/x-www-form-urlencoded"))
            method, url, body = "POST", realm, urllib.parse.urlencode(form).encode()
        else:
            params = ([("service", service)] if service else []) + [("scope", s) for s in scope.split()]
            method, url = "GET", realm.extend_query(params)
            authorization = credentials.basic_authorization(self._secrets) if credentials else None
        response = await self._http.fetch(
            Request(method, url, tuple(headers), authorization=authorization, body=body),
            on_response=lambda *_: self._count_token(),
        )
        status = response.status
        who = f"its token server {realm.raw_host}"
        if status == 200:
            return self._read_token(response.body or b"", who)
        if status in RETRYABLE_STATUSES:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), now=self._wall_clock)
            raise TokenError("retry", f"{who} answered {status}", status=status, retry_after=retry_after)
        if status == 401:
            if credentials is None:
                raise TokenError("unauthorized", f"{who} refused an anonymous token (401)", status=401)
            raise TokenError(
                "unauthorized", f"{who} refused the credentials from {credentials.source} (401)", status=401
            )
        if status == 403:
            raise TokenError("denied", f"{who} denied a token for {scope} (403)", status=403)
        raise TokenError("error", f"{who} answered {status}", status=status)

    def _read_token(self, body: bytes, who: str) -> Tuple[str, float]:
        document = parse_json(body)
        if not isinstance(document, dict):
            raise TokenError("error", f"{who} answered with something that is not a JSON object")
        token = document.get("token") or document.get("access_token")
        if not isinstance(token, str) or not token:
            raise TokenError("error", f"{who} answered without a token")
        for key in ("token", "access_token", "refresh_token"):
            value = document.get(key)
            if isinstance(value, str):
                self._secrets.add(value)
        if len(token) > _MAX_TOKEN_LENGTH or not _VISIBLE_ASCII.fullmatch(token):
            raise TokenError("error", f"{who} answered with a token that cannot be sent")
        lifetime = document.get("expires_in")
        if isinstance(lifetime, bool) or not isinstance(lifetime, (int, float)) or not lifetime > 0:
            lifetime = DEFAULT_TOKEN_LIFETIME
        authorization = f"Bearer {token}"
        self._secrets.add(authorization)
        # Compared before any conversion: an int of 4,000 digits is no float.
        return authorization, float(min(lifetime, MAX_TOKEN_LIFETIME))
