"""The probe's request and result files (version 1).

Request::

    {"version": 1,
     "requests": [{"reference": "python:3.12", "need_body": false}, ...],
     "insecure_registries": ["registry.lan:5000", "10.0.0.0/8"],
     "max_concurrency_per_registry": 8, "attempts": 4, "timeout_seconds": 30,
     "max_retry_after_seconds": 60, "deadline_seconds": 600}

Only `version` and `requests` are required; the others default to the values above. Unknown
keys are ignored. Result: one entry per request, in the same order (see `ReferenceResult`),
and the requests sent to each registry.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

VERSION = 1
OUTCOMES = ("ok", "not_found", "unauthorized", "denied", "rate_limited", "unreachable", "tls", "error")


class RequestError(ValueError):
    """A request file the probe cannot act on."""


@dataclass(frozen=True)
class ReferenceRequest:
    reference: str
    need_body: bool = False


@dataclass(frozen=True)
class ProbeRequest:
    requests: Tuple[ReferenceRequest, ...]
    insecure_registries: Tuple[str, ...] = ()
    max_concurrency_per_registry: int = 8
    attempts: int = 4
    timeout_seconds: float = 30.0
    max_retry_after_seconds: float = 60.0
    # Whatever happens, the probe writes its result by then; what is left gets "unreachable".
    deadline_seconds: float = 600.0


def _number(document: Mapping[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = document.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise RequestError(f"{key} must be a number from {low:g} to {high:g}")
    return float(value)


def _integer(document: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = document.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(f"{key} must be an integer from {low} to {high}")
    return value


def parse_request(document: Any) -> ProbeRequest:
    if not isinstance(document, dict):
        raise RequestError("the request is not a JSON object")
    if document.get("version") != VERSION:
        raise RequestError(f"unsupported request version (this probe reads version {VERSION})")
    entries = document.get("requests")
    if not isinstance(entries, list):
        raise RequestError("requests must be a list")
    requests = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("reference"), str):
            raise RequestError(f"requests[{index}] must be an object with a string reference")
        need_body = entry.get("need_body", False)
        if not isinstance(need_body, bool):
            raise RequestError(f"requests[{index}].need_body must be true or false")
        requests.append(ReferenceRequest(entry["reference"], need_body))
    insecure = document.get("insecure_registries", [])
    if not isinstance(insecure, list) or not all(isinstance(e, str) for e in insecure):
        raise RequestError("insecure_registries must be a list of strings")
    return ProbeRequest(
        requests=tuple(requests),
        insecure_registries=tuple(insecure),
        max_concurrency_per_registry=_integer(document, "max_concurrency_per_registry", 8, 1, 256),
        attempts=_integer(document, "attempts", 4, 1, 20),
        timeout_seconds=_number(document, "timeout_seconds", 30.0, 0.1, 3600.0),
        max_retry_after_seconds=_number(document, "max_retry_after_seconds", 60.0, 0.0, 86400.0),
        deadline_seconds=_number(document, "deadline_seconds", 600.0, 1.0, 86400.0),
    )


@dataclass(frozen=True)
class ReferenceResult:
    reference: str
    outcome: str
    digest: Optional[str] = None
    media_type: Optional[str] = None
    size: Optional[int] = None
    body: Optional[bytes] = None
    method: Optional[str] = None
    http_status: Optional[int] = None
    retry_after_seconds: Optional[float] = None
    message: Optional[str] = None

    def __post_init__(self) -> None:
        assert self.outcome in OUTCOMES, self.outcome

    def to_json(self) -> Dict[str, Any]:
        retry_after = self.retry_after_seconds
        if retry_after is not None and float(retry_after).is_integer():
            retry_after = int(retry_after)
        return {
            "reference": self.reference,
            "outcome": self.outcome,
            "digest": self.digest,
            "media_type": self.media_type,
            "size": self.size,
            "body": base64.b64encode(self.body).decode("ascii") if self.body is not None else None,
            "method": self.method,
            "http_status": self.http_status,
            "retry_after_seconds": retry_after,
            "message": self.message,
        }


@dataclass
class RequestCounts:
    HEAD: int = 0
    GET: int = 0
    token: int = 0

    def to_json(self) -> Dict[str, int]:
        return {"HEAD": self.HEAD, "GET": self.GET, "token": self.token}


@dataclass
class ProbeResult:
    results: List[ReferenceResult]
    requests_sent: Dict[str, RequestCounts] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        return {
            "version": VERSION,
            "results": [r.to_json() for r in self.results],
            "requests_sent": {
                registry: counts.to_json() for registry, counts in sorted(self.requests_sent.items())
            },
        }
