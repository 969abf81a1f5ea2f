"""What `method="copy"` reads from registries: the digest each image's source serves, and what
each destination tag serves now.

All of a generator's images are read in one run of the registry probe per Pants run
(`docker_mirror.util_rules.probe`), whichever of them the run packages: the first image's
package asks for its generator's reads, the others find them done. A source pinned by digest
costs no request, unless a `--platform=` line needs its image index to find the platform.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable, Sequence

from docker_mirror.compat import rule_call, targets
from docker_mirror.oci.reference import ImageReference
from docker_mirror.target_types import (
    DockerMirrorImageRegistriesField,
    DockerMirrorImageRepositoryField,
    DockerMirrorImageSkipPushField,
    DockerMirrorImageTagsField,
    DockerMirrorPlatformField,
    DockerMirrorReferrersField,
    DockerMirrorSourceImageField,
)
from docker_mirror.util_rules.destinations import Destination, mirror_destinations
from docker_mirror.oci.manifests import (
    INDEX_MEDIA_TYPES,
    ManifestError,
    parse_manifest,
    select_platform,
)
from docker_mirror.util_rules.probe import ProbedManifests, ProbeRequest, merge_needs, run_probe
from docker_mirror.util_rules.referrers import ProbedReferrers, ReferrersRead, merge_reads
from docker_mirror.util_rules.skopeo import at_registry
from pants.backend.docker.subsystems.docker_options import DockerOptions
from pants.engine.addresses import Address, Addresses
from pants.engine.rules import collect_rules, rule
from pants.engine.target import Target
from pants.engine.unions import UnionMembership
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel


def destinations_to_check(
    destinations: Sequence[Destination], *, skip_push: bool
) -> tuple[Destination, ...]:
    """The destinations `publish` would write to, whose current digest it needs to know."""
    if skip_push:
        return ()
    return tuple(d for d in destinations if d.skipped_by is None)


@dataclass(frozen=True)
class ResolvedSource:
    """The source of a mirrored image as the source registry serves it now, or why not."""

    reference: str
    platform: str | None
    # The digest of what is mirrored: the image index (or single manifest), or with `platform`
    # that platform's manifest. None when the source could not be resolved.
    digest: str | None = None
    # Known when the registry was asked (not for a reference pinned by digest).
    media_type: str | None = None
    # The platforms of an index (attestations left out), when its body was read; None for a
    # single manifest, and when the body was not needed.
    platforms: tuple[str, ...] | None = None
    # With `platform`: the digest of the index the platform's manifest was picked from.
    index_digest: str | None = None
    error: str | None = None

    @property
    def pinned(self) -> str:
        """`<name>@<digest>`: what is copied, immune to a tag moving in the meantime."""
        assert self.digest is not None, "an unresolved source has nothing to pin"
        return ImageReference.parse(self.reference).pinned(self.digest)

    @property
    def summary(self) -> str:
        """`sha256:<12 hex>, <what>`, e.g. `sha256:cdae6a0d2d62, 2 platforms: linux/amd64, ...`."""
        short = (self.digest or "")[: len("sha256:") + 12]
        if self.platform:
            what = f"the {self.platform} image"
        elif self.platforms is not None:
            count = len(self.platforms)
            what = f"{count} platform{'s' if count != 1 else ''}: {', '.join(self.platforms)}"
        elif self.media_type is None:
            what = "pinned by digest"
        elif self.media_type in INDEX_MEDIA_TYPES:
            what = "an image index, every platform"
        else:
            what = "a single-platform image"
        return f"{short}, {what}"


def source_read(reference: str, platform: str | None) -> tuple[str, bool] | None:
    """What to ask the source registry for (reference, whether the body is needed), or None
    for a reference pinned by digest, which needs no request."""
    parsed = ImageReference.parse(reference)
    if parsed.digest is not None and platform is None:
        return None
    # A `--platform=` line picks its platform's manifest from the image index's body.
    return parsed.manifest_reference, platform is not None


def resolve_source(
    reference: str, platform: str | None, reads: ProbedManifests
) -> ResolvedSource:
    """The source as the registry probe saw it (see `source_read`)."""
    unresolved = ResolvedSource(reference, platform)
    read = source_read(reference, platform)
    if read is None:
        return ResolvedSource(reference, None, digest=ImageReference.parse(reference).digest)
    probed = reads.get(read[0])
    subject = f"source {at_registry(reference)}"
    if not probed.found:
        return _failed(unresolved, probed.describe_failure(subject))
    if platform is None and probed.body is None:
        return ResolvedSource(
            reference, None, digest=probed.digest, media_type=probed.media_type
        )
    if probed.body is None:
        return _failed(unresolved, f"{subject}: the registry sent no image index")
    try:
        manifest = parse_manifest(probed.body)
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


def source_referrers(source: ResolvedSource, reads: ProbedManifests) -> ProbedReferrers | None:
    """What refers to the source's digest and what each destination repository lacks of it, as
    the probe read them with the source; None for a source that could not be resolved (its own
    error is reported instead)."""
    if source.digest is None:
        return None
    manifest_reference = ImageReference.parse(source.reference).manifest_reference
    referrers = reads.referrers_of(manifest_reference, source.platform)
    if referrers.error is None and referrers.subject != source.digest:
        return dataclasses.replace(
            referrers,
            error=f"they were read for {referrers.subject}, not for {source.digest}",
        )
    return referrers


def _failed(source: ResolvedSource, error: str) -> ResolvedSource:
    return ResolvedSource(source.reference, source.platform, error=error)


def image_destinations(
    target: Target, docker: DockerOptions, union_membership: UnionMembership
) -> tuple[Destination, ...]:
    """Every destination reference of a `docker_mirror_image` (see `mirror_destinations`)."""
    return mirror_destinations(
        target.address,
        registries=target[DockerMirrorImageRegistriesField].value,
        repository=target[DockerMirrorImageRepositoryField].value,
        image_tags=target[DockerMirrorImageTagsField].value,
        docker_registries=docker.registries(),
        default_repository=docker.default_repository,
        union_membership=union_membership,
    )


def destination_repositories(destinations: Iterable[Destination]) -> tuple[str, ...]:
    """`registry/repository` of each destination, once, in first-seen order."""
    return tuple(dict.fromkeys(f"{d.registry}/{d.repository}" for d in destinations))


def reads_needed(
    images: Iterable[Target], docker: DockerOptions, union_membership: UnionMembership
) -> tuple[dict[str, bool], tuple[ReferrersRead, ...]]:
    """Each source to resolve and each destination `publish` would write to, once (reference ->
    whether its body is needed); and, for images that copy what refers to them, where to look
    for it: the source, and the destination repositories it would be copied to."""
    needs: list[tuple[str, bool]] = []
    referrers: list[ReferrersRead] = []
    for target in images:
        source, platform = target[DockerMirrorSourceImageField].value, target[DockerMirrorPlatformField].value
        read = source_read(source, platform)
        if read is not None:
            needs.append(read)
        to_check = destinations_to_check(
            image_destinations(target, docker, union_membership),
            skip_push=target[DockerMirrorImageSkipPushField].value,
        )
        needs.extend((d.reference, False) for d in to_check)
        if to_check and target[DockerMirrorReferrersField].value:
            referrers.append(
                ReferrersRead(
                    ImageReference.parse(source).manifest_reference,
                    platform,
                    destination_repositories(to_check),
                )
            )
    return merge_needs(needs), merge_reads(referrers)


def reads_owner(image: Address) -> Address:
    """Whose reads an image shares: its generator's, or its own if it was written by hand."""
    return image.maybe_convert_to_target_generator() if image.is_generated_target else image


# ---------------------------------------------------------------------------------------------
# Rules


@dataclass(frozen=True)
class GeneratorReadsRequest:
    """The reads of every `docker_mirror_image` that `owner` stands for."""

    owner: Address


probe = rule_call(run_probe)


@rule(desc="Reading what a generator's images need from registries", level=LogLevel.DEBUG)
async def generator_reads(
    request: GeneratorReadsRequest, docker: DockerOptions, union_membership: UnionMembership
) -> ProbedManifests:
    generated = await targets(Addresses([request.owner]))
    images = [target for target in generated if target.has_field(DockerMirrorSourceImageField)]
    references, referrers = reads_needed(images, docker, union_membership)
    return await probe(
        ProbeRequest(FrozenDict(references), description=str(request.owner), referrers=referrers)
    )


reads_of = rule_call(generator_reads)


def rules():
    return collect_rules()
