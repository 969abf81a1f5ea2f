"""Raw manifests as registries serve them: digests (the sha256 of the exact bytes), media types and
platforms."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from docker_mirror.oci.media_types import (
    DOCKER_MANIFEST_SCHEMA1,
    INDEX_MEDIA_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
)
from docker_mirror.oci.reference import normalized_platform



class ManifestError(ValueError):
    """A manifest that cannot be read, or a platform it does not hold."""


def digest_of(raw: bytes) -> str:
    """The digest a registry stores `raw` under, a manifest's or a blob's."""
    return f"sha256:{hashlib.sha256(raw).hexdigest()}"


@dataclass(frozen=True)
class PlatformManifest:
    """One entry of an image index: a platform's manifest."""

    platform: str
    digest: str
    media_type: str


@dataclass(frozen=True)
class Manifest:
    """What a raw manifest says about itself."""

    digest: str
    media_type: str
    # The entries of an image index (or Docker manifest list); empty for a single manifest.
    entries: tuple[PlatformManifest, ...]

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_MEDIA_TYPES

    @property
    def platforms(self) -> tuple[str, ...] | None:
        """The platforms of an index, attestations (`unknown/unknown`) left out; None for a
        single manifest, whose platform is only written in its config blob."""
        if not self.is_index:
            return None
        return tuple(e.platform for e in self.entries if e.platform != "unknown/unknown")


def format_platform(platform: dict) -> str:
    parts = [str(platform.get("os") or "unknown"), str(platform.get("architecture") or "unknown")]
    if platform.get("variant"):
        parts.append(str(platform["variant"]))
    return "/".join(parts)


def parse_manifest(raw: bytes) -> Manifest:
    """Digest, media type and (for an index) platform entries of a raw manifest."""
    try:
        document = json.loads(raw)
    except ValueError as e:
        raise ManifestError(f"the registry answered with something that is not JSON: {e}") from None
    if not isinstance(document, dict):
        raise ManifestError("the registry answered with JSON that is not a manifest")
    media_type = document.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        # `mediaType` is optional in OCI documents: tell them apart by their shape.
        if "manifests" in document:
            media_type = OCI_INDEX
        elif document.get("schemaVersion") == 1:
            media_type = DOCKER_MANIFEST_SCHEMA1
        else:
            media_type = OCI_MANIFEST
    entries: list[PlatformManifest] = []
    if media_type in INDEX_MEDIA_TYPES:
        for descriptor in document.get("manifests") or ():
            if not isinstance(descriptor, dict) or not isinstance(descriptor.get("digest"), str):
                raise ManifestError("the image index has an entry without a digest")
            entries.append(
                PlatformManifest(
                    platform=format_platform(descriptor.get("platform") or {}),
                    digest=descriptor["digest"],
                    media_type=str(descriptor.get("mediaType") or OCI_MANIFEST),
                )
            )
    return Manifest(digest_of(raw), media_type, tuple(entries))


def select_platform(manifest: Manifest, platform: str) -> PlatformManifest:
    """The entry of an image index for `platform`; raises ManifestError listing the choices."""
    wanted = normalized_platform(platform)
    for entry in manifest.entries:
        if entry.platform != "unknown/unknown" and normalized_platform(entry.platform) == wanted:
            return entry
    available = ", ".join(manifest.platforms or ()) or "none"
    raise ManifestError(f"the image index has no {platform} image (it has: {available})")


# BuildKit's attestation manifests (`unknown/unknown` entries) name the platform manifest they
# are about in this annotation.
ATTESTATION_OF = "vnd.docker.reference.digest"


@dataclass(frozen=True)
class NarrowedIndex:
    """An image index with only some of its platforms: `body` (the source's bytes when every
    platform is kept, so the digest stays the source's), the platforms kept and the digests of
    their manifests, and the platforms asked for that the index does not have."""

    body: bytes
    kept: tuple[str, ...]
    manifests: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def digest(self) -> str:
        return digest_of(self.body)


def narrowed_index(raw: bytes, platforms: tuple[str, ...]) -> NarrowedIndex:
    """The image index `raw` with only the entries of `platforms` (variants implied as
    containerd implies them: `linux/arm64` is `linux/arm64/v8`), and the attestation manifests
    of those: every other field kept as written. A new digest, unless nothing is left out (or
    `raw` is a single manifest, which has no platforms to pick from). Raises ManifestError when
    none of `platforms` is there."""
    manifest = parse_manifest(raw)
    if not manifest.is_index:  # nothing to pick from: copied as it is
        return NarrowedIndex(raw, (), (), ())
    wanted = {normalized_platform(platform): platform for platform in platforms}
    document = json.loads(raw)
    descriptors = document.get("manifests") or []
    kept_digests = {
        entry.digest
        for entry in manifest.entries
        if entry.platform != "unknown/unknown" and normalized_platform(entry.platform) in wanted
    }
    found = {
        normalized_platform(entry.platform)
        for entry in manifest.entries
        if entry.digest in kept_digests
    }
    missing = tuple(platform for key, platform in wanted.items() if key not in found)
    if not kept_digests:
        available = ", ".join(manifest.platforms or ()) or "none"
        raise ManifestError(
            f"the image index has none of the platforms {', '.join(platforms)} (it has: {available})"
        )

    def keep(descriptor: dict) -> bool:
        if descriptor["digest"] in kept_digests:
            return True
        annotations = descriptor.get("annotations")
        about = annotations.get(ATTESTATION_OF) if isinstance(annotations, dict) else None
        return format_platform(descriptor.get("platform") or {}) == "unknown/unknown" and about in kept_digests

    kept_descriptors = [d for d in descriptors if keep(d)]
    kept = tuple(
        dict.fromkeys(
            format_platform(d.get("platform") or {})
            for d in kept_descriptors
            if d["digest"] in kept_digests
        )
    )
    manifests = tuple(d["digest"] for d in kept_descriptors)
    if len(kept_descriptors) == len(descriptors):
        return NarrowedIndex(raw, kept, manifests, missing)
    narrowed = dict(document, manifests=kept_descriptors)
    return NarrowedIndex(json.dumps(narrowed, separators=(",", ":")).encode(), kept, manifests, missing)
