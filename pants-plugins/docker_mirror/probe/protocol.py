"""The probe's request and result files (version 1).

A read (`pants package`)::

    {"version": 1,
     "requests": [{"reference": "python:3.12", "need_body": false}, ...],
     "referrers": [{"reference": "python:3.12", "platform": null,
                    "destinations": ["registry.example.com/mirror/python"]}, ...],
     "insecure_registries": ["registry.lan:5000", "10.0.0.0/8"],
     "max_concurrency_per_registry": 8, "attempts": 4, "timeout_seconds": 30,
     "max_retry_after_seconds": 60, "deadline_seconds": 600}

Only `version` and `requests` are required; the others default to the values above. Unknown
keys are ignored. Result: one entry per request, in the same order (see `ReferenceResult`), one
per `referrers` read (`ReferrersResult`), and the requests sent to each registry.

A copy of referrers (`pants publish`) has, instead of `requests` and `referrers`, one `copy`
(`CopyRequest`): the source repository, the image digest, the destination repository, what to
copy (`items`, `listing`) and the keys of `require_signature`; its result is one `copy`
(`CopyResult`).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from docker_mirror.oci.media_types import DIGEST
from docker_mirror.probe.referrers import CopyItem, Listing, Plan, ReferrersError

VERSION = 1
OUTCOMES = ("ok", "not_found", "unauthorized", "denied", "rate_limited", "unreachable", "tls", "error")


class RequestError(ValueError):
    """A request file the probe cannot act on."""


@dataclass(frozen=True)
class ReferenceRequest:
    reference: str
    need_body: bool = False


@dataclass(frozen=True)
class ReferrersRead:
    """What refers to the digest `reference` resolves to (with `platform`, that platform's
    manifest in its index), and what each of `destinations` (`registry/repository`) lacks."""

    reference: str
    platform: Optional[str]
    destinations: Tuple[str, ...]


@dataclass(frozen=True)
class CopyRequest:
    """Copy `plan` for the image `subject` from `source` to `destination` (each
    `registry/repository`), after checking its signature against `keys` ((name, PEM)) if any."""

    source: str
    subject: str
    destination: str
    plan: Plan
    keys: Tuple[Tuple[str, str], ...] = ()


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
    referrers: Tuple[ReferrersRead, ...] = ()
    copy: Optional[CopyRequest] = None


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


def _strings(value: Any, what: str) -> Tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(e, str) for e in value):
        raise RequestError(f"{what} must be a list of strings")
    return tuple(value)


def _referrers_read(index: int, entry: Any) -> ReferrersRead:
    what = f"referrers[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("reference"), str):
        raise RequestError(f"{what} must be an object with a string reference")
    platform = entry.get("platform")
    if platform is not None and not isinstance(platform, str):
        raise RequestError(f"{what}.platform must be a string or null")
    return ReferrersRead(entry["reference"], platform, _strings(entry.get("destinations"), f"{what}.destinations"))


def parse_plan(document: Mapping[str, Any], what: str) -> Plan:
    """`items` and `listing` of a plan, as the plugin hands them back."""
    try:
        items = tuple(CopyItem.from_json(item) for item in document.get("items") or ())
        listing = document.get("listing")
        read = None
        if listing is not None:
            read = Listing.of(base64.b64decode(listing["body"], validate=True))
            if read.digest != listing["digest"]:
                raise RequestError(f"{what}.listing is not the bytes of its digest")
    except (KeyError, TypeError, ValueError, ReferrersError) as e:
        if isinstance(e, RequestError):
            raise
        raise RequestError(f"{what} is not a plan of referrers to copy ({e})") from None
    if not all(DIGEST.fullmatch(item.digest) for item in items):
        raise RequestError(f"{what} has an item without a sha256 digest")
    return Plan(items, read)


def _copy_request(entry: Any) -> CopyRequest:
    if not isinstance(entry, dict):
        raise RequestError("copy must be an object")
    for key in ("source", "subject", "destination"):
        if not isinstance(entry.get(key), str):
            raise RequestError(f"copy.{key} must be a string")
    if not DIGEST.fullmatch(entry["subject"]):
        raise RequestError("copy.subject must be a sha256 digest")
    keys = entry.get("require_signature") or []
    if not isinstance(keys, list) or not all(
        isinstance(k, dict) and isinstance(k.get("name"), str) and isinstance(k.get("pem"), str) for k in keys
    ):
        raise RequestError("copy.require_signature must be a list of {name, pem} objects")
    return CopyRequest(
        entry["source"], entry["subject"], entry["destination"], parse_plan(entry, "copy"),
        tuple((k["name"], k["pem"]) for k in keys),
    )


def parse_request(document: Any) -> ProbeRequest:
    if not isinstance(document, dict):
        raise RequestError("the request is not a JSON object")
    if document.get("version") != VERSION:
        raise RequestError(f"unsupported request version (this probe reads version {VERSION})")
    copy = _copy_request(document["copy"]) if "copy" in document else None
    entries = document.get("requests", [] if copy else None)
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
    referrers = document.get("referrers", [])
    if not isinstance(referrers, list):
        raise RequestError("referrers must be a list")
    return ProbeRequest(
        requests=tuple(requests),
        referrers=tuple(_referrers_read(i, entry) for i, entry in enumerate(referrers)),
        copy=copy,
        insecure_registries=_strings(document.get("insecure_registries", []), "insecure_registries"),
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


def plan_json(plan: Plan) -> Dict[str, Any]:
    listing = plan.listing
    return {
        "items": [item.to_json() for item in plan.items],
        "listing": (
            {"digest": listing.digest, "body": base64.b64encode(listing.raw).decode("ascii")}
            if listing is not None
            else None
        ),
    }


@dataclass(frozen=True)
class ReferrersResult:
    """What refers to a source digest (`found`: counts by kind), and a plan per destination
    repository; or `error`, one line, and `error_kind`, one of `OUTCOMES` (what went wrong, so
    that the plugin can say what to do about it)."""

    reference: str
    platform: Optional[str]
    subject: Optional[str] = None
    found: Tuple[Tuple[str, int], ...] = ()
    plans: Tuple[Tuple[str, Plan], ...] = ()
    error: Optional[str] = None
    error_kind: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        return {
            "reference": self.reference,
            "platform": self.platform,
            "subject": self.subject,
            "found": dict(self.found),
            "destinations": {repository: plan_json(plan) for repository, plan in self.plans},
            "error": self.error,
            "error_kind": self.error_kind,
        }


@dataclass(frozen=True)
class CopyResult:
    """`outcome`: `ok`, `unsigned` (the gate refused the image; nothing written) or `error`
    (with `error_kind`, one of `OUTCOMES`); what was copied, and the key that verified the
    image's signature."""

    outcome: str
    message: Optional[str] = None
    copied: Tuple[CopyItem, ...] = ()
    verified_by: Optional[str] = None
    error_kind: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        return {
            "outcome": self.outcome,
            "message": self.message,
            "copied": [item.to_json() for item in self.copied],
            "verified_by": self.verified_by,
            "error_kind": self.error_kind,
        }


@dataclass
class ProbeResult:
    results: List[ReferenceResult]
    requests_sent: Dict[str, RequestCounts] = field(default_factory=dict)
    referrers: List[ReferrersResult] = field(default_factory=list)
    copy: Optional[CopyResult] = None

    def to_json(self) -> Dict[str, Any]:
        document: Dict[str, Any] = {
            "version": VERSION,
            "results": [r.to_json() for r in self.results],
            "requests_sent": {
                registry: counts.to_json() for registry, counts in sorted(self.requests_sent.items())
            },
        }
        if self.referrers:
            document["referrers"] = [r.to_json() for r in self.referrers]
        if self.copy is not None:
            document["copy"] = self.copy.to_json()
        return document
