"""`WWW-Authenticate` challenges (RFC 7235), as registries send them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_SPACES = re.compile(r"[ \t]*")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower-cased: "bearer", "basic", ...
    params: Dict[str, str] = field(default_factory=dict)  # names lower-cased

    @property
    def realm(self) -> Optional[str]:
        return self.params.get("realm")

    @property
    def service(self) -> Optional[str]:
        return self.params.get("service")

    @property
    def scope(self) -> Optional[str]:
        return self.params.get("scope")


def _skip(text: str, pos: int) -> int:
    return _SPACES.match(text, pos).end()  # type: ignore[union-attr]


def _parse_params(text: str, pos: int, params: Dict[str, str]) -> int:
    """Reads `name=value` pairs from `pos` until the next challenge; returns where it stopped."""
    while pos < len(text):
        pos = _skip(text, pos)
        if text.startswith(",", pos):
            pos += 1
            continue
        name = _TOKEN.match(text, pos)
        if not name:
            return len(text)  # garbage: stop here, keep what was read
        after = _skip(text, name.end())
        if not text.startswith("=", after):
            return pos  # a bare token: the next challenge's scheme
        pos = _skip(text, after + 1)
        quoted = _QUOTED.match(text, pos)
        if quoted:
            value = re.sub(r"\\(.)", r"\1", quoted.group(1))
            pos = quoted.end()
        else:
            token = _TOKEN.match(text, pos)
            value = token.group() if token else ""
            pos = token.end() if token else pos
        params.setdefault(name.group().lower(), value)
    return pos


def parse_challenges(headers: Iterable[str]) -> List[Challenge]:
    challenges: List[Challenge] = []
    for header in headers:
        pos = 0
        while pos < len(header):
            pos = _skip(header, pos)
            if header.startswith(",", pos):
                pos += 1
                continue
            scheme = _TOKEN.match(header, pos)
            if not scheme:
                break
            pos = scheme.end()
            params: Dict[str, str] = {}
            pos = _parse_params(header, pos, params)
            challenges.append(Challenge(scheme.group().lower(), params))
    return challenges


def pick(challenges: Iterable[Challenge]) -> Optional[Challenge]:
    """The challenge the probe answers: Bearer over Basic; None if neither is offered."""
    by_scheme = {c.scheme: c for c in reversed(list(challenges))}
    return by_scheme.get("bearer") or by_scheme.get("basic")
