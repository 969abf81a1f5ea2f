"""Reading registries for `method="copy"`: what each source and destination serves now.

Each image needs its source's manifest and what its destinations serve. They are read in one
process per batch of images rather than one per reference (see `skopeo.READ_MANIFESTS_SCRIPT`),
which is what makes a re-mirror cheap. A batch is a run of `BATCH_SIZE` images of one generator
in address order: mirroring all of a generator's images reads every reference once, and
mirroring one image reads at most `BATCH_SIZE - 1` other images' references along with its own.
Every such process is cached for the current run only: registries change between runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from docker_mirror.compat import digest_contents, process_result, rule_call, targets
from docker_mirror.image_reference import ImageReference
from docker_mirror.target_types import (
    DockerMirrorImageRegistriesField,
    DockerMirrorImageRepositoryField,
    DockerMirrorImageSkipPushField,
    DockerMirrorImageTagsField,
    DockerMirrorPlatformField,
    DockerMirrorSourceImageField,
)
from docker_mirror.util_rules.destinations import Destination, mirror_destinations
from docker_mirror.util_rules.manifests import ManifestError, manifest_digest, parse_manifest, select_platform
from docker_mirror.util_rules.skopeo import ManifestRead, Skopeo, at_registry, describe_failure, manifest_reads
from pants.backend.docker.subsystems.docker_options import DockerOptions
from pants.engine.addresses import Address, Addresses
from pants.engine.rules import collect_rules, rule
from pants.engine.target import Target
from pants.engine.unions import UnionMembership
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

BATCH_SIZE = 32


def batch_images(
    images: Iterable[Address], size: int = BATCH_SIZE
) -> Mapping[Address, tuple[Address, ...]]:
    """Each image's batch: the images sorted by address, cut into runs of `size`."""
    ordered = sorted(set(images))
    batches: dict[Address, tuple[Address, ...]] = {}
    for start in range(0, len(ordered), size):
        batch = tuple(ordered[start : start + size])
        batches.update((address, batch) for address in batch)
    return batches


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
    media_type: str | None = None
    # The platforms of an index (attestations left out); None for a single manifest.
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
    def lookup_reference(self) -> str:
        """What to ask the registry for: the digest when the reference has one, else the tag."""
        return ImageReference.parse(self.reference).manifest_reference

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


def image_source(target: Target) -> ResolvedSource:
    """The source of a `docker_mirror_image`, not resolved yet."""
    return ResolvedSource(target[DockerMirrorSourceImageField].value, target[DockerMirrorPlatformField].value)


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


def references_to_read(
    images: Iterable[Target], docker: DockerOptions, union_membership: UnionMembership
) -> tuple[str, ...]:
    """Each source and each destination `publish` would write to, once, sorted."""
    references: set[str] = set()
    for target in images:
        references.add(image_source(target).lookup_reference)
        references.update(
            d.reference
            for d in destinations_to_check(
                image_destinations(target, docker, union_membership),
                skip_push=target[DockerMirrorImageSkipPushField].value,
            )
        )
    return tuple(sorted(references))


# ---------------------------------------------------------------------------------------------
# Rules


@dataclass(frozen=True)
class ReadManifestsRequest:
    references: tuple[str, ...]


@dataclass(frozen=True)
class ManifestReads:
    """What each reference of a batch served (`skopeo inspect --raw`), by reference."""

    by_reference: FrozenDict[str, ManifestRead]

    def served_digest(self, reference: str) -> str | None:
        """The digest `reference` serves now; None if it serves nothing (or cannot be read:
        then the copy is attempted, and reports the real problem)."""
        read = self.by_reference[reference]
        return manifest_digest(read.stdout) if read.exit_code == 0 else None


@rule(desc="Reading manifests from registries", level=LogLevel.DEBUG)
async def read_manifests(request: ReadManifestsRequest, skopeo: Skopeo) -> ManifestReads:
    if not request.references:
        return ManifestReads(FrozenDict())
    result = await process_result(skopeo.read_manifests(request.references))
    outputs = await digest_contents(result.output_digest)
    reads = manifest_reads(
        request.references,
        {file.path: file.content for file in outputs},
        batch_stderr=result.stderr,
    )
    return ManifestReads(FrozenDict((read.reference, read) for read in reads))


@dataclass(frozen=True)
class ImageBatchesRequest:
    generator: Address


@dataclass(frozen=True)
class ImageBatches:
    """The read batch of each `docker_mirror_image` a generator made (see `batch_images`)."""

    by_image: FrozenDict[Address, tuple[Address, ...]]


@rule(desc="Grouping mirrored images into batches of registry reads", level=LogLevel.DEBUG)
async def image_batches(request: ImageBatchesRequest) -> ImageBatches:
    generated = await targets(Addresses([request.generator]))
    images = (t.address for t in generated if t.has_field(DockerMirrorSourceImageField))
    return ImageBatches(FrozenDict(batch_images(images)))


@dataclass(frozen=True)
class BatchReadsRequest:
    images: tuple[Address, ...]


read_references = rule_call(read_manifests)


@rule(desc="Reading the manifests of a batch of mirrored images", level=LogLevel.DEBUG)
async def batch_reads(
    request: BatchReadsRequest, docker: DockerOptions, union_membership: UnionMembership
) -> ManifestReads:
    images = await targets(Addresses(request.images))
    return await read_references(
        ReadManifestsRequest(references_to_read(images, docker, union_membership))
    )


@dataclass(frozen=True)
class ImageReadsRequest:
    image: Address


batches_of = rule_call(image_batches)
read_batch = rule_call(batch_reads)


@rule(desc="Reading the manifests a mirrored image needs", level=LogLevel.DEBUG)
async def image_reads(request: ImageReadsRequest) -> ManifestReads:
    image = request.image
    batch: tuple[Address, ...] = (image,)
    if image.is_generated_target:
        batches = await batches_of(ImageBatchesRequest(image.maybe_convert_to_target_generator()))
        batch = batches.by_image.get(image, batch)
    return await read_batch(BatchReadsRequest(batch))


def rules():
    return collect_rules()
