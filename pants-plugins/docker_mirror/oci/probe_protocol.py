"""The registry probe's request and result files, for both sides: the plugin writes a `ProbeRequest`
and reads a `ProbeResult` leniently (`parse_result`: an entry it cannot read is left out, so what
it asked for fails); the probe reads the request strictly (`parse_request`). Format: probe/README.md.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from docker_mirror.oci.manifests import digest_of
from docker_mirror.oci.media_types import DIGEST

VERSION = 1
OUTCOMES = ("ok", "not_found", "unauthorized", "denied", "rate_limited", "unreachable", "tls", "error")

# What a tag copy ends as, and why one failed (for "failed"; one of OUTCOMES but "ok" and "not_found").
TAG_OUTCOMES = ("copied", "up_to_date", "changed", "failed", "not_attempted")
TAG_ERROR_KINDS = ("unauthorized", "denied", "rate_limited", "unreachable", "tls", "error")
# A tag as the distribution spec allows it (the plugin's reference grammar has the same).
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", re.ASCII)

# What refers to an image, by kind, in the order the summary names them.
KINDS = ("signature", "attestation", "SBOM", "artifact")


class RequestError(ValueError):
    """A request file the probe cannot act on."""


class ResultError(ValueError):
    """A result file the plugin cannot read at all."""


def counted(counts: Mapping[str, int]) -> str:
    """`1 signature, 2 SBOMs`, in `KINDS` order; empty for no count."""
    parts = []
    for kind in KINDS:
        count = counts.get(kind, 0)
        if count:
            parts.append(f"{count} {kind}{'s' if count != 1 else ''}")
    return ", ".join(parts)


def _text(value: object) -> Optional[str]:
    return value if isinstance(value, str) else None


def _base64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


# ---------------------------------------------------------------------------------------------
# What to copy of an image's referrers


@dataclass(frozen=True)
class CopyItem:
    """One manifest to copy from the source repository to a destination repository: a cosign
    tag-scheme manifest (written under `tag`) or a referrer (written by digest)."""

    kind: str  # one of KINDS
    digest: str
    media_type: str
    tag: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        return {"kind": self.kind, "digest": self.digest, "media_type": self.media_type, "tag": self.tag}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> CopyItem:
        return cls(str(value["kind"]), str(value["digest"]), str(value["media_type"]), _text(value.get("tag")))


@dataclass(frozen=True)
class Listing:
    """How the source lists an image's referrers: the image index to keep at the destination
    under its digest (the sha256 of `raw`)."""

    digest: str
    raw: bytes

    @classmethod
    def of(cls, raw: bytes) -> Listing:
        return cls(digest_of(raw), raw)


@dataclass(frozen=True)
class Plan:
    """What one destination repository lacks of an image's referrers: manifests to copy, and
    the source's listing to write after them (or None). For an image index, its platform
    manifests' referrers too: `children` are the platform manifests that have any (whose
    digests the copied manifests may name as their `subject`), `child_listings` the listing of
    each, to write under its own fallback tag."""

    items: Tuple[CopyItem, ...] = ()
    listing: Optional[Listing] = None
    children: Tuple[str, ...] = ()
    child_listings: Tuple[Tuple[str, Listing], ...] = ()
    # The destination lacks the mirror's own provenance attestation (`provenance_key`).
    attest: bool = False

    @property
    def empty(self) -> bool:
        return not self.items and self.listing is None and not self.child_listings and not self.attest

    @property
    def summary(self) -> str:
        counts: Dict[str, int] = {}
        for item in self.items:
            counts[item.kind] = counts.get(item.kind, 0) + 1
        if self.attest and not counts and self.listing is None and not self.child_listings:
            return "the mirror's provenance attestation"
        return counted(counts) or "the referrers listing"

    def to_json(self) -> Dict[str, Any]:
        document: Dict[str, Any] = {
            "items": [item.to_json() for item in self.items],
            "listing": _listing_json(self.listing),
            "children": list(self.children),
            "child_listings": {child: _listing_json(listing) for child, listing in self.child_listings},
        }
        if self.attest:
            document["attest"] = True
        return document

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Plan:
        """Raises KeyError, TypeError or ValueError for what is no plan."""
        return cls(
            tuple(CopyItem.from_json(item) for item in value.get("items") or ()),
            _listing_from_json(value.get("listing")),
            tuple(str(child) for child in value.get("children") or ()),
            tuple(
                (str(child), listing)
                for child, raw in (value.get("child_listings") or {}).items()
                for listing in [_listing_from_json(raw)]
                if listing is not None
            ),
            value.get("attest") is True,
        )


def _listing_json(listing: Optional[Listing]) -> Optional[Dict[str, str]]:
    return {"digest": listing.digest, "body": _base64(listing.raw)} if listing else None


def _listing_from_json(value: Optional[Mapping[str, Any]]) -> Optional[Listing]:
    if value is None:
        return None
    return Listing(str(value["digest"]), base64.b64decode(value["body"], validate=True))


# ---------------------------------------------------------------------------------------------
# The request


@dataclass(frozen=True)
class ManifestRead:
    """Read the manifest `reference` names: its digest (a `HEAD`), and with `need_body` its bytes."""

    reference: str
    need_body: bool = False

    def to_json(self) -> Dict[str, Any]:
        return {"reference": self.reference, "need_body": self.need_body}


@dataclass(frozen=True)
class ReferrersRead:
    """Find what refers to the digest `reference` resolves to (with `platform`, that platform's
    manifest in its index; with `platforms`, the manifests of those platforms in its index and
    nothing of the index itself, whose filtered copy has another digest), and what each of
    `destinations` (`registry/repository`) lacks."""

    reference: str
    platform: Optional[str]
    destinations: Tuple[str, ...]
    platforms: Tuple[str, ...] = ()

    @property
    def key(self) -> Tuple[str, Optional[str], Tuple[str, ...]]:
        return (self.reference, self.platform, self.platforms)

    def to_json(self) -> Dict[str, Any]:
        document = {"reference": self.reference, "platform": self.platform, "destinations": list(self.destinations)}
        if self.platforms:
            document["platforms"] = list(self.platforms)
        return document


@dataclass(frozen=True)
class TagCopy:
    """A tag of the destination repository to point at the image, if it still serves `seen`:
    the digest it served when `package` checked it (None: nothing, a 404)."""

    tag: str
    seen: Optional[str]

    def to_json(self) -> Dict[str, Any]:
        return {"tag": self.tag, "seen": self.seen}


@dataclass(frozen=True)
class CopyRequest:
    """Copy `plan` for the image `subject` from `source` to `destination` (each
    `registry/repository`), after checking its signature against `keys` ((name, PEM)) if any;
    with `tags`, also the image graph of `subject` (blobs, platform manifests, the plan's
    referrers, the index, then each tag that still serves its `seen`)."""

    source: str
    subject: str
    destination: str
    plan: Plan
    keys: Tuple[Tuple[str, str], ...] = ()
    tags: Tuple[TagCopy, ...] = ()
    # A filtered index: `subject` is the source's index `index_digest` with only `platforms`
    # (`narrowed_index`), which the probe makes again from the source's bytes and checks; the
    # signature gate verifies `index_digest`.
    platforms: Tuple[str, ...] = ()
    index_digest: Optional[str] = None
    # With `keys`: the repository (`registry/repository`, `ImageReference.archive_repository`)
    # a verifying signature must have been signed for (`critical.identity.docker-reference`).
    identity: Optional[str] = None
    # With `plan.attest`: the source reference as written, which the mirror's attestation names.
    provenance_source: Optional[str] = None

    @property
    def signed(self) -> str:
        """The digest whose signature `keys` must verify."""
        return self.index_digest or self.subject

    def to_json(self) -> Dict[str, Any]:
        document: Dict[str, Any] = {
            "source": self.source,
            "subject": self.subject,
            "destination": self.destination,
            **self.plan.to_json(),
            "require_signature": [{"name": name, "pem": pem} for name, pem in self.keys],
        }
        if self.tags:
            document["tags"] = [tag.to_json() for tag in self.tags]
        if self.platforms:
            document["platforms"] = list(self.platforms)
            document["index_digest"] = self.index_digest
        if self.identity is not None:
            document["identity"] = self.identity
        if self.provenance_source is not None:
            document["provenance_source"] = self.provenance_source
        return document


@dataclass(frozen=True)
class ExportImage:
    """An image to write into an archive: `reference` as written, with `platform` or `platforms`
    as its target has them, what refers to it with `referrers`, behind `keys` ((name, PEM)) if
    any; named in the archive by its source `registry/repository:tag` (or `@digest`)."""

    reference: str
    platform: Optional[str] = None
    platforms: Tuple[str, ...] = ()
    referrers: bool = True
    keys: Tuple[Tuple[str, str], ...] = ()
    identity: Optional[str] = None  # as `CopyRequest.identity`

    def to_json(self) -> Dict[str, Any]:
        return {
            "reference": self.reference, "platform": self.platform, "platforms": list(self.platforms),
            "referrers": self.referrers, "require_signature": [{"name": n, "pem": p} for n, p in self.keys],
            "identity": self.identity,
        }  # fmt: skip


@dataclass(frozen=True)
class ExportRequest:
    """Copy `images` into the OCI layout whose blobs are kept in the directory `store`."""

    store: str
    images: Tuple[ExportImage, ...]

    def to_json(self) -> Dict[str, Any]:
        return {"store": self.store, "images": [image.to_json() for image in self.images]}


@dataclass(frozen=True)
class ProbeRequest:
    """One request file: manifests and referrers to read, or one copy; and the settings."""

    requests: Tuple[ManifestRead, ...]
    insecure_registries: Tuple[str, ...] = ()
    max_concurrency_per_registry: int = 8
    attempts: int = 4
    timeout_seconds: float = 30.0
    max_retry_after_seconds: float = 60.0
    # Whatever happens, the probe writes its result by then; what is left gets "unreachable".
    deadline_seconds: float = 600.0
    referrers: Tuple[ReferrersRead, ...] = ()
    copy: Optional[CopyRequest] = None
    # Sources read from an archive (an OCI layout's tar) instead of their registries: `archived`
    # names their `registry/repository`.
    archive: Optional[str] = None
    archived: Tuple[str, ...] = ()
    export: Optional[ExportRequest] = None
    # The mirror's provenance key (a path the probe reads itself; never its bytes): what the
    # reads check each destination for, and what a copy signs its attestation with.
    provenance_key: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        document: Dict[str, Any] = {"version": VERSION, "requests": [r.to_json() for r in self.requests]}
        if self.referrers:
            document["referrers"] = [read.to_json() for read in self.referrers]
        if self.copy is not None:
            document["copy"] = self.copy.to_json()
        if self.archive is not None:
            document.update(archive=self.archive, archived=list(self.archived))
        if self.export is not None:
            document["export"] = self.export.to_json()
        if self.provenance_key is not None:
            document["provenance_key"] = self.provenance_key
        document.update(
            insecure_registries=list(self.insecure_registries),
            max_concurrency_per_registry=self.max_concurrency_per_registry,
            attempts=self.attempts,
            timeout_seconds=self.timeout_seconds,
            max_retry_after_seconds=self.max_retry_after_seconds,
            deadline_seconds=self.deadline_seconds,
        )
        return document


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


def _manifest_read(index: int, entry: Any) -> ManifestRead:
    if not isinstance(entry, dict) or not isinstance(entry.get("reference"), str):
        raise RequestError(f"requests[{index}] must be an object with a string reference")
    need_body = entry.get("need_body", False)
    if not isinstance(need_body, bool):
        raise RequestError(f"requests[{index}].need_body must be true or false")
    return ManifestRead(entry["reference"], need_body)


def _referrers_read(index: int, entry: Any) -> ReferrersRead:
    what = f"referrers[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("reference"), str):
        raise RequestError(f"{what} must be an object with a string reference")
    platform = entry.get("platform")
    if platform is not None and not isinstance(platform, str):
        raise RequestError(f"{what}.platform must be a string or null")
    return ReferrersRead(
        entry["reference"], platform, _strings(entry.get("destinations"), f"{what}.destinations"),
        _strings(entry.get("platforms", []), f"{what}.platforms"),
    )  # fmt: skip


def _checked_plan(document: Mapping[str, Any], what: str) -> Plan:
    """`items`, `listing`, `children` and `child_listings` of a plan, as the plugin hands them
    back."""
    try:
        plan = Plan.from_json(document)
    except (KeyError, TypeError, ValueError) as e:
        raise RequestError(f"{what} is not a plan of referrers to copy ({e})") from None
    if plan.listing is not None and Listing.of(plan.listing.raw) != plan.listing:
        raise RequestError(f"{what}.listing is not the bytes of its digest")
    for child, listing in plan.child_listings:
        if child not in plan.children or Listing.of(listing.raw) != listing:
            raise RequestError(f"{what}.child_listings[{child!r}] is not the bytes of its digest of a child")
    if not all(DIGEST.fullmatch(child) for child in plan.children):
        raise RequestError(f"{what} has a child without a sha256 digest")
    if not all(DIGEST.fullmatch(item.digest) for item in plan.items):
        raise RequestError(f"{what} has an item without a sha256 digest")
    return plan


def _copy_request(entry: Any) -> CopyRequest:
    if not isinstance(entry, dict):
        raise RequestError("copy must be an object")
    for key in ("source", "subject", "destination"):
        if not isinstance(entry.get(key), str):
            raise RequestError(f"copy.{key} must be a string")
    if not DIGEST.fullmatch(entry["subject"]):
        raise RequestError("copy.subject must be a sha256 digest")
    keys = _keys(entry.get("require_signature"), "copy.require_signature")
    platforms = _strings(entry.get("platforms", []), "copy.platforms")
    index_digest = entry.get("index_digest")
    if platforms and not (isinstance(index_digest, str) and DIGEST.fullmatch(index_digest)):
        raise RequestError("copy.index_digest must be a sha256 digest with copy.platforms")
    return CopyRequest(
        entry["source"], entry["subject"], entry["destination"], _checked_plan(entry, "copy"),
        keys, _tag_copies(entry.get("tags", [])),
        platforms, index_digest if platforms else None, _optional_string(entry, "identity"),
        _optional_string(entry, "provenance_source"),
    )


def _optional_string(document: Mapping[str, Any], key: str) -> Optional[str]:
    value = document.get(key)
    if value is not None and not (isinstance(value, str) and value):
        raise RequestError(f"{key} must be a non-empty string or absent")
    return value


def _keys(value: Any, what: str) -> Tuple[Tuple[str, str], ...]:
    keys = value or []
    if not isinstance(keys, list) or not all(
        isinstance(k, dict) and isinstance(k.get("name"), str) and isinstance(k.get("pem"), str) for k in keys
    ):
        raise RequestError(f"{what} must be a list of {{name, pem}} objects")
    return tuple((k["name"], k["pem"]) for k in keys)


def _export_request(entry: Any) -> ExportRequest:
    if not isinstance(entry, dict) or not isinstance(entry.get("store"), str) or not entry["store"]:
        raise RequestError("export must be an object with a store directory")
    images = entry.get("images")
    if not isinstance(images, list):
        raise RequestError("export.images must be a list")
    exported = []
    for index, image in enumerate(images):
        what = f"export.images[{index}]"
        if not isinstance(image, dict) or not isinstance(image.get("reference"), str):
            raise RequestError(f"{what} must be an object with a string reference")
        platform = image.get("platform")
        if platform is not None and not isinstance(platform, str):
            raise RequestError(f"{what}.platform must be a string or null")
        referrers = image.get("referrers", True)
        if not isinstance(referrers, bool):
            raise RequestError(f"{what}.referrers must be true or false")
        exported.append(ExportImage(
            image["reference"], platform, _strings(image.get("platforms", []), f"{what}.platforms"), referrers,
            _keys(image.get("require_signature"), f"{what}.require_signature"),
            _optional_string(image, "identity"),
        ))  # fmt: skip
    return ExportRequest(entry["store"], tuple(exported))


def _tag_copies(entries: Any) -> Tuple[TagCopy, ...]:
    if not isinstance(entries, list):
        raise RequestError("copy.tags must be a list")
    tags = []
    for index, entry in enumerate(entries):
        what = f"copy.tags[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("tag"), str) or not _TAG.fullmatch(entry["tag"]):
            raise RequestError(f"{what} must be an object with a valid tag")
        seen = entry.get("seen")
        if seen is not None and not (isinstance(seen, str) and DIGEST.fullmatch(seen)):
            raise RequestError(f"{what}.seen must be a sha256 digest or null")
        tags.append(TagCopy(entry["tag"], seen))
    if len({tag.tag for tag in tags}) != len(tags):
        raise RequestError("copy.tags names a tag twice")
    return tuple(tags)


def parse_request(document: Any) -> ProbeRequest:
    """The probe's reading of a request file's JSON: anything it cannot act on is a `RequestError`."""
    if not isinstance(document, dict):
        raise RequestError("the request is not a JSON object")
    if document.get("version") != VERSION:
        raise RequestError(f"unsupported request version (this probe reads version {VERSION})")
    copy = _copy_request(document["copy"]) if "copy" in document else None
    export = _export_request(document["export"]) if "export" in document else None
    entries = document.get("requests", [] if copy or export else None)
    if not isinstance(entries, list):
        raise RequestError("requests must be a list")
    referrers = document.get("referrers", [])
    if not isinstance(referrers, list):
        raise RequestError("referrers must be a list")
    return ProbeRequest(
        requests=tuple(_manifest_read(i, entry) for i, entry in enumerate(entries)),
        referrers=tuple(_referrers_read(i, entry) for i, entry in enumerate(referrers)),
        copy=copy,
        archive=_optional_string(document, "archive"),
        archived=_strings(document.get("archived", []), "archived"),
        export=export,
        provenance_key=_optional_string(document, "provenance_key"),
        insecure_registries=_strings(document.get("insecure_registries", []), "insecure_registries"),
        max_concurrency_per_registry=_integer(document, "max_concurrency_per_registry", 8, 1, 256),
        attempts=_integer(document, "attempts", 4, 1, 20),
        timeout_seconds=_number(document, "timeout_seconds", 30.0, 0.1, 3600.0),
        max_retry_after_seconds=_number(document, "max_retry_after_seconds", 60.0, 0.0, 86400.0),
        deadline_seconds=_number(document, "deadline_seconds", 600.0, 1.0, 86400.0),
    )


# ---------------------------------------------------------------------------------------------
# The result


@dataclass(frozen=True)
class ManifestResult:
    """What a registry served for one `ManifestRead`: `outcome` is one of `OUTCOMES`; `body` the
    raw manifest when it was fetched (`need_body`, or no digest header)."""

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

    @property
    def found(self) -> bool:
        return self.outcome == "ok" and self.digest is not None

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
            "body": _base64(self.body) if self.body is not None else None,
            "method": self.method,
            "http_status": self.http_status,
            "retry_after_seconds": retry_after,
            "message": self.message,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ManifestResult:
        outcome, message = str(value.get("outcome") or "error"), _text(value.get("message"))
        if outcome not in OUTCOMES:  # from another version of the probe: a failure, still named
            outcome, message = "error", message or outcome
        body, size, status = value.get("body"), value.get("size"), value.get("http_status")
        retry_after = value.get("retry_after_seconds")
        if not isinstance(value["reference"], str):
            raise TypeError("no reference")
        return cls(
            value["reference"], outcome, _text(value.get("digest")), _text(value.get("media_type")),
            size if isinstance(size, int) else None,
            base64.b64decode(body) if isinstance(body, str) else None,
            _text(value.get("method")), status if isinstance(status, int) else None,
            float(retry_after) if isinstance(retry_after, (int, float)) else None, message,
        )


@dataclass
class RequestCounts:
    HEAD: int = 0
    GET: int = 0
    token: int = 0

    def to_json(self) -> Dict[str, int]:
        return {"HEAD": self.HEAD, "GET": self.GET, "token": self.token}


@dataclass(frozen=True)
class ReferrersResult:
    """What refers to a source digest (`found`: counts by kind; `on_platforms`: what refers to
    the platform manifests of an image index), and a plan per destination repository; or
    `error`, one line, and `error_kind`, one of `OUTCOMES` (what went wrong, so that the plugin
    can say what to do about it)."""

    reference: str
    platform: Optional[str]
    subject: Optional[str] = None
    found: Tuple[Tuple[str, int], ...] = ()
    plans: Tuple[Tuple[str, Plan], ...] = ()
    error: Optional[str] = None
    error_kind: Optional[str] = None
    on_platforms: Tuple[Tuple[str, int], ...] = ()
    platforms: Tuple[str, ...] = ()

    @property
    def key(self) -> Tuple[str, Optional[str], Tuple[str, ...]]:
        return (self.reference, self.platform, self.platforms)

    @property
    def summary(self) -> str:
        """`1 signature, 1 SBOM`, `1 signature; of its platform manifests: 2 signatures`, or
        `none`."""
        own = counted(dict(self.found))
        platforms = counted(dict(self.on_platforms))
        if not platforms:
            return own or "none"
        return f"{own or 'none'}; of its platform manifests: {platforms}"

    def plan_for(self, destination_repository: str) -> Plan:
        return dict(self.plans).get(destination_repository) or Plan()

    def to_json(self) -> Dict[str, Any]:
        return {
            "reference": self.reference,
            "platform": self.platform,
            "subject": self.subject,
            "found": dict(self.found),
            "on_platforms": dict(self.on_platforms),
            "destinations": {repository: plan.to_json() for repository, plan in self.plans},
            "error": self.error,
            "error_kind": self.error_kind,
            **({"platforms": list(self.platforms)} if self.platforms else {}),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ReferrersResult:
        platform = value.get("platform")
        return cls(
            str(value["reference"]),
            str(platform) if platform is not None else None,
            _text(value.get("subject")),
            _counts(value.get("found")),
            tuple(
                (str(repository), Plan.from_json(plan))
                for repository, plan in (value.get("destinations") or {}).items()
            ),
            _text(value.get("error")),
            _text(value.get("error_kind")),
            _counts(value.get("on_platforms")),
            tuple(str(platform) for platform in value.get("platforms") or ()),
        )


def _counts(value: Optional[Mapping[str, Any]]) -> Tuple[Tuple[str, int], ...]:
    return tuple((str(kind), int(count)) for kind, count in (value or {}).items())


@dataclass(frozen=True)
class TagOutcome:
    """What became of one `TagCopy`: `outcome` is one of `TAG_OUTCOMES`; `message` one line
    naming the registry (no "copy from X to Y" prefix: the plugin adds it); `error_kind` (for
    "failed") one of `TAG_ERROR_KINDS`; `platforms` those of the index the tag now serves
    ("copied", "up_to_date"; attestation manifests left out), None for a single manifest."""

    tag: str
    outcome: str
    message: Optional[str] = None
    error_kind: Optional[str] = None
    platforms: Optional[Tuple[str, ...]] = None

    def to_json(self) -> Dict[str, Any]:
        return {
            "tag": self.tag,
            "outcome": self.outcome,
            "message": self.message,
            "error_kind": self.error_kind,
            "platforms": list(self.platforms) if self.platforms is not None else None,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> TagOutcome:
        """An outcome from another version of the probe is "failed", still named."""
        outcome, message = str(value["outcome"]), _text(value.get("message"))
        if not isinstance(value["tag"], str):
            raise TypeError("no tag")
        if outcome not in TAG_OUTCOMES:
            outcome, message = "failed", message or outcome
        error_kind = _text(value.get("error_kind"))
        if outcome == "failed" and error_kind not in TAG_ERROR_KINDS:
            error_kind = "error"
        platforms = value.get("platforms")
        return cls(
            value["tag"], outcome, message, error_kind if outcome == "failed" else None,
            tuple(str(p) for p in platforms) if isinstance(platforms, list) else None,
        )


@dataclass(frozen=True)
class CopyResult:
    """`outcome`: `ok`, `unsigned` (the gate refused the image; nothing written) or `error`
    (with `message`, one line, and `error_kind`, one of `OUTCOMES`); what was copied, and the
    key that verified the image's signature. `outcome` is the gate's and the referrers'; the
    image's copy is in `tags`, one `TagOutcome` per requested tag, in order."""

    outcome: str
    message: Optional[str] = None
    copied: Tuple[CopyItem, ...] = ()
    verified_by: Optional[str] = None
    error_kind: Optional[str] = None
    tags: Tuple[TagOutcome, ...] = ()
    # The mirror's provenance attestation was written.
    attested: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def to_json(self) -> Dict[str, Any]:
        document: Dict[str, Any] = {
            "outcome": self.outcome,
            "message": self.message,
            "copied": [item.to_json() for item in self.copied],
            "verified_by": self.verified_by,
            "error_kind": self.error_kind,
        }
        if self.tags:
            document["tags"] = [tag.to_json() for tag in self.tags]
        if self.attested:
            document["attested"] = True
        return document

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> CopyResult:
        """A tag outcome it cannot read is left out (the plugin fails the tag it asked for)."""
        return cls(
            str(value["outcome"]),
            _text(value.get("message")),
            tuple(CopyItem.from_json(item) for item in value.get("copied") or ()),
            _text(value.get("verified_by")),
            _text(value.get("error_kind")),
            tuple(_readable(value.get("tags"), TagOutcome.from_json)),
            value.get("attested") is True,
        )

    def tag_outcome(self, tag: str) -> Optional[TagOutcome]:
        """The outcome for `tag`, or None if the probe reported none."""
        return next((t for t in self.tags if t.tag == tag), None)


@dataclass(frozen=True)
class ExportedImage:
    """What an export did with one image: `name` and `digest` in the archive once it is there,
    and the copy's result (its gate, referrers and tag)."""

    reference: str
    result: CopyResult
    name: Optional[str] = None
    digest: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        return {"reference": self.reference, "name": self.name, "digest": self.digest, "result": self.result.to_json()}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ExportedImage:
        if not isinstance(value["reference"], str):
            raise TypeError("no reference")
        return cls(value["reference"], CopyResult.from_json(value["result"]), _text(value.get("name")),
                   _text(value.get("digest")))  # fmt: skip


@dataclass(frozen=True)
class ExportResult:
    """An export: the archive's `index.json` (every image written, by name), and each image's."""

    index: str
    images: Tuple[ExportedImage, ...] = ()

    def to_json(self) -> Dict[str, Any]:
        return {"index": self.index, "images": [image.to_json() for image in self.images]}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ExportResult:
        if not isinstance(value["index"], str):
            raise TypeError("no index")
        return cls(value["index"], tuple(_readable(value.get("images"), ExportedImage.from_json)))


@dataclass
class ProbeResult:
    """One result file: a `ManifestResult` per request, in order, a `ReferrersResult` per
    referrers read, or the `CopyResult`; and the requests sent to each registry."""

    results: List[ManifestResult]
    requests_sent: Dict[str, RequestCounts] = field(default_factory=dict)
    referrers: List[ReferrersResult] = field(default_factory=list)
    copy: Optional[CopyResult] = None
    export: Optional[ExportResult] = None
    # The process's peak resident memory (KiB) and CPU time (user + system, seconds): what tests
    # and benchmarks hold a probe process to.
    peak_rss_kib: Optional[int] = None
    cpu_seconds: Optional[float] = None

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
        if self.export is not None:
            document["export"] = self.export.to_json()
        if self.peak_rss_kib is not None:
            document["peak_rss_kib"] = self.peak_rss_kib
        if self.cpu_seconds is not None:
            document["cpu_seconds"] = round(self.cpu_seconds, 3)
        return document


_UNREADABLE = (KeyError, TypeError, ValueError, AttributeError, binascii.Error)


def _readable(entries: object, read: Any) -> List[Any]:
    """Each entry `read` can read; the others left out."""
    readable = []
    for entry in entries if isinstance(entries, list) else ():
        try:
            readable.append(read(entry))
        except _UNREADABLE:
            continue
    return readable


def parse_result(content: bytes) -> ProbeResult:
    """The plugin's reading of a result file: a `ResultError` if it holds no list of results;
    an entry it cannot read is left out (the plugin fails what it asked for and did not get)."""
    try:
        document = json.loads(content)
        if not isinstance(document, dict) or not isinstance(document["results"], list):
            raise TypeError("no list of results")
    except (ValueError, KeyError, TypeError) as e:
        raise ResultError(str(e)) from None
    copy, export = document.get("copy"), document.get("export")
    peak, cpu = document.get("peak_rss_kib"), document.get("cpu_seconds")
    return ProbeResult(
        results=_readable(document["results"], ManifestResult.from_json),
        referrers=_readable(document.get("referrers"), ReferrersResult.from_json),
        copy=next(iter(_readable([copy], CopyResult.from_json)), None) if copy is not None else None,
        export=next(iter(_readable([export], ExportResult.from_json)), None) if export is not None else None,
        peak_rss_kib=peak if isinstance(peak, int) and not isinstance(peak, bool) else None,
        cpu_seconds=float(cpu) if isinstance(cpu, (int, float)) and not isinstance(cpu, bool) else None,
    )


def encoded(message: Union[ProbeRequest, ProbeResult]) -> bytes:
    """A request or result file's bytes."""
    return (json.dumps(message.to_json(), indent=1) + "\n").encode()
