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
