"""What refers to a mirrored image (signatures, attestations, SBOMs), as the registry probe finds
and copies it; and the `require_signature` gate, which the probe checks before a copy.

`pants package` asks the probe, with the generator's other reads, what refers to each source's
digest and what each destination repository lacks of it (`ReferrersRead` -> `ProbedReferrers`,
a `ReferrersPlan` per destination repository). `pants publish` then runs the probe once more per
destination repository that lacks something, or whose image a gate guards, before `skopeo`
copies the image (`CopyReferrersRequest` -> `CopiedReferrers`): the gate first, then every
missing manifest with its blobs, then the listing. The probe's own side is
`docker_mirror.probe.referrers` and `docker_mirror.probe.signatures`.

The JSON both ways is built and read here (pure functions); the rules that run the probe are in
`docker_mirror.util_rules.probe`.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from pants.util.frozendict import FrozenDict

# How the summary names what was found or copied, in this order.
KINDS = ("signature", "attestation", "SBOM", "artifact")


def counted(counts: Mapping[str, int]) -> str:
    """`1 signature, 2 SBOMs`, in `KINDS` order; empty for no count."""
    parts = []
    for kind in KINDS:
        count = counts.get(kind, 0)
        if count:
            parts.append(f"{count} {kind}{'s' if count != 1 else ''}")
    return ", ".join(parts)


@dataclass(frozen=True)
class ReferrersRead:
    """Find what refers to the digest `reference` resolves to (with `platform`, that platform's
    manifest in its index), and what each of `destinations` (`registry/repository`) lacks."""

    reference: str
    platform: str | None
    destinations: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "platform": self.platform,
            "destinations": list(self.destinations),
        }


def merge_reads(reads: Iterable[ReferrersRead]) -> tuple[ReferrersRead, ...]:
    """One read per (reference, platform), with the destinations of all who ask for it."""
    merged: dict[tuple[str, str | None], set[str]] = {}
    for read in reads:
        merged.setdefault((read.reference, read.platform), set()).update(read.destinations)
    return tuple(
        ReferrersRead(reference, platform, tuple(sorted(destinations)))
        for (reference, platform), destinations in sorted(
            merged.items(), key=lambda item: (item[0][0], item[0][1] or "")
        )
    )


@dataclass(frozen=True)
class ReferrerCopy:
    """One manifest to copy: a cosign tag-scheme manifest (under `tag`), or a referrer."""

    kind: str
    digest: str
    media_type: str
    tag: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "digest": self.digest, "media_type": self.media_type, "tag": self.tag}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ReferrerCopy:
        tag = value.get("tag")
        return cls(
            str(value["kind"]), str(value["digest"]), str(value["media_type"]),
            tag if isinstance(tag, str) else None,
        )


@dataclass(frozen=True)
class ReferrersPlan:
    """What one destination repository lacks of an image's referrers: manifests to copy, and the
    source's listing to write after them (its digest, and its bytes)."""

    items: tuple[ReferrerCopy, ...] = ()
    listing_digest: str | None = None
    listing: bytes | None = None

    @property
    def empty(self) -> bool:
        return not self.items and self.listing_digest is None

    @property
    def summary(self) -> str:
        counts: dict[str, int] = {}
        for item in self.items:
            counts[item.kind] = counts.get(item.kind, 0) + 1
        return counted(counts) or "the referrers listing"

    def to_json(self) -> dict[str, Any]:
        return {
            "items": [item.to_json() for item in self.items],
            "listing": (
                {"digest": self.listing_digest, "body": base64.b64encode(self.listing).decode()}
                if self.listing_digest and self.listing is not None
                else None
            ),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ReferrersPlan:
        listing = value.get("listing")
        return cls(
            tuple(ReferrerCopy.from_json(item) for item in value.get("items") or ()),
            listing["digest"] if isinstance(listing, dict) else None,
            base64.b64decode(listing["body"]) if isinstance(listing, dict) else None,
        )


@dataclass(frozen=True)
class ProbedReferrers:
    """What refers to one source digest, as the probe found it: the counts at the source (by
    kind), and a plan per destination repository; or why it could not be found (`error`, and
    `error_kind`, the probe's outcome for it: `unauthorized`, `unreachable`, `error`...)."""

    reference: str
    platform: str | None
    subject: str | None = None
    at_source: tuple[tuple[str, int], ...] = ()
    plans: FrozenDict[str, ReferrersPlan] = FrozenDict()
    error: str | None = None
    error_kind: str | None = None

    @property
    def found(self) -> str:
        """`1 signature, 1 SBOM`, or `none`."""
        return counted(dict(self.at_source)) or "none"

    def plan_for(self, destination_repository: str) -> ReferrersPlan:
        return self.plans.get(destination_repository) or ReferrersPlan()


def parse_referrers_results(
    results: object,
    reads: Sequence[ReferrersRead],
    problem: str = "the registry probe gave no result for them",
) -> dict[tuple[str, str | None], ProbedReferrers]:
    """The probe's `referrers` results, by (reference, platform); a read it did not answer is an
    error (`problem`), so that a broken probe never lets an image go without what refers to
    it."""
    found: dict[tuple[str, str | None], ProbedReferrers] = {}
    for result in results if isinstance(results, list) else ():
        try:
            key = (str(result["reference"]), result.get("platform"))
            plans = result.get("destinations") or {}
            found[key] = ProbedReferrers(
                key[0],
                key[1],
                subject=result.get("subject"),
                at_source=tuple(
                    (str(kind), int(count)) for kind, count in (result.get("found") or {}).items()
                ),
                plans=FrozenDict(
                    {str(repository): ReferrersPlan.from_json(plan) for repository, plan in plans.items()}
                ),
                error=_text(result.get("error")),
                error_kind=_text(result.get("error_kind")),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return {
        (read.reference, read.platform): found.get((read.reference, read.platform))
        or ProbedReferrers(read.reference, read.platform, error=problem)
        for read in reads
    }


# ---------------------------------------------------------------------------------------------
# Copying


@dataclass(frozen=True)
class CopyReferrersRequest:
    """Copy `plan` from the source repository (`registry/repository`) to a destination one, for
    the image `subject`; first, when `signature_keys` (paths from the build root) are given,
    check that a cosign signature of `subject` verifies against one of them, and copy nothing
    otherwise."""

    source_repository: str
    subject: str
    destination_repository: str
    plan: ReferrersPlan
    # The Pants run that copies (see `Skopeo.copy`).
    run_id: int
    signature_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class CopiedReferrers:
    """What the probe did: `outcome` is `ok`, `unsigned` (the gate refused the image: nothing
    was written) or `error` (with `message`, one line, and `error_kind`, the probe's outcome for
    it)."""

    outcome: str
    message: str | None = None
    copied: tuple[ReferrerCopy, ...] = ()
    verified_by: str | None = None  # the key that verified the image's signature, with the gate
    error_kind: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def parse_copy_result(content: bytes) -> CopiedReferrers:
    try:
        result = json.loads(content)["copy"]
        return CopiedReferrers(
            outcome=str(result["outcome"]),
            message=result.get("message") if isinstance(result.get("message"), str) else None,
            copied=tuple(ReferrerCopy.from_json(item) for item in result.get("copied") or ()),
            verified_by=_text(result.get("verified_by")),
            error_kind=_text(result.get("error_kind")),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return CopiedReferrers("error", f"the registry probe wrote no readable result ({e})")
