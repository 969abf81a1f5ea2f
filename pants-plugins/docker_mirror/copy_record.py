"""A `method="copy"` image's source, resolved to a digest, and the JSON record `pants package`
writes about it: pure functions, no engine calls."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

from docker_mirror.destinations import Destination
from docker_mirror.manifests import ManifestError, parse_manifest, select_platform
from docker_mirror.skopeo import at_registry, describe_failure, registry_of
from docker_mirror.spec import ImageReference

RECORD_VERSION = 1


@dataclass(frozen=True)
class ResolvedSource:
    """The source of a mirrored image as the source registry serves it now, or why not."""

    reference: str
    platform: str | None
    # The digest of what is mirrored: the image index (or single manifest), or with `platform`
    # that platform's manifest. None when the source could not be resolved.
    digest: str | None = None
    media_type: str | None = None
    # The platforms of an index (attestations left out); None for a single manifest.
    platforms: tuple[str, ...] | None = None
    # With `platform`: the digest of the index the platform's manifest was picked from.
    index_digest: str | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        """The reference without tag or digest."""
        return ImageReference.parse(self.reference).name

    @property
    def pinned(self) -> str:
        """`<name>@<digest>`: what is copied, immune to a tag moving in the meantime."""
        assert self.digest is not None, "an unresolved source has nothing to pin"
        return f"{self.name}@{self.digest}"

    @property
    def lookup_reference(self) -> str:
        """What to ask the registry for: the digest when the reference has one, else the tag."""
        reference = ImageReference.parse(self.reference)
        if reference.digest is not None:
            return f"{reference.name}@{reference.digest}"
        return f"{reference.name}:{reference.tag or 'latest'}"

    @property
    def summary(self) -> str:
        """`sha256:<12 hex>, <what>`, e.g. `sha256:cdae6a0d2d62, 2 platforms: linux/amd64, ...`."""
        short = (self.digest or "")[: len("sha256:") + 12]
        if self.platform:
            what = f"the {self.platform} image"
        elif self.platforms is None:
            what = "a single-platform image"
        else:
            what = f"{len(self.platforms)} platforms: {', '.join(self.platforms)}"
        return f"{short}, {what}"


def resolve_source(
    reference: str,
    platform: str | None,
    *,
    exit_code: int,
    stdout: bytes,
    stderr: bytes,
) -> ResolvedSource:
    """The source as `skopeo inspect --raw <reference>` showed it (its exit code and output)."""
    unresolved = ResolvedSource(reference, platform)
    subject = f"source {at_registry(reference)}"
    if exit_code != 0:
        return _failed(unresolved, describe_failure(stderr, subject=subject))
    try:
        manifest = parse_manifest(stdout)
        if platform is None or not manifest.is_index:
            return ResolvedSource(
                reference,
                platform,
                digest=manifest.digest,
                media_type=manifest.media_type,
                platforms=manifest.platforms,
            )
        entry = select_platform(manifest, platform)
    except ManifestError as e:
        return _failed(unresolved, f"{subject}: {e}")
    return ResolvedSource(
        reference,
        platform,
        digest=entry.digest,
        media_type=entry.media_type,
        platforms=(entry.platform,),
        index_digest=manifest.digest,
    )


def _failed(source: ResolvedSource, error: str) -> ResolvedSource:
    return ResolvedSource(source.reference, source.platform, error=error)


def mirror_record(
    address: str, source: ResolvedSource, destinations: Sequence[Destination]
) -> bytes:
    """The JSON record of one mirrored image, as written under `dist/` by `pants package`."""
    record = {
        "version": RECORD_VERSION,
        "address": address,
        "source": {
            "reference": source.reference,
            "registry": registry_of(source.reference) or "docker.io",
            "platform": source.platform,
            "digest": source.digest,
            "media_type": source.media_type,
            "platforms": list(source.platforms) if source.platforms is not None else None,
            "index_digest": source.index_digest,
            "pinned": source.pinned if source.digest else None,
        },
        "destinations": [
            {
                "reference": destination.reference,
                "registry": destination.registry,
                "alias": destination.alias,
                "repository": destination.repository,
                "tag": destination.tag,
                "skip_push": destination.skipped_by is not None,
            }
            for destination in destinations
        ],
        "error": source.error,
    }
    return (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
