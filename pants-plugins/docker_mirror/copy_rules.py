"""Engine rules of `method="copy"`: find `skopeo`, read registries, `package` and `publish`.

The registry work of a run is spread so that the engine can run it concurrently and nothing is
asked twice. `package` reads, in one process per batch of images (see `copy_batches`), every
source manifest and what every destination serves now; `publish` decides from those reads and
copies only what is stale, as `Process`es the engine runs in parallel (up to
`[GLOBAL].process_execution_local_parallelism` at a time). Every process that talks to a
registry is cached for the current run only (`ProcessCacheScope.PER_SESSION`): registries
change between runs. See `copy_publish` for how outcomes reach the publish summary.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from docker_mirror.copy_batches import batch_images, destinations_to_check
from docker_mirror.copy_publish import (
    CopyOutcome,
    by_repository,
    copied_packages,
    skipped_packages,
    split_up_to_date,
    unresolved_packages,
    up_to_date_packages,
)
from docker_mirror.copy_record import ResolvedSource, mirror_record, resolve_source
from docker_mirror.copy_target_types import (
    DockerMirrorImageOutputPathField,
    DockerMirrorImageRegistriesField,
    DockerMirrorImageRepositoryField,
    DockerMirrorImageSkipPushField,
    DockerMirrorImageTagsField,
    DockerMirrorPlatformField,
    DockerMirrorSourceImageField,
)
from docker_mirror.destinations import Destination, mirror_destinations
from docker_mirror.manifests import manifest_digest
from docker_mirror.skopeo import (
    DESTINATION_CHANGED_EXIT_CODE,
    INSTALL_HINT,
    UP_TO_DATE_OUTPUT,
    ManifestRead,
    Skopeo,
    at_registry,
    describe_failure,
    manifest_reads,
    skopeo_error_message,
)
from docker_mirror.subsystem import DockerMirrorSubsystem
from pants.backend.docker.subsystems.docker_options import DockerOptions
from pants.core.goals.package import BuiltPackage, BuiltPackageArtifact, PackageFieldSet
from pants.core.goals.publish import (
    PublishFieldSet,
    PublishOutputData,
    PublishPackages,
    PublishProcesses,
    PublishRequest,
)
from pants.core.util_rules.system_binaries import (
    BashBinary,
    BinaryNotFoundError,
    BinaryPathRequest,
    BinaryPaths,
    BinaryPathTest,
)
from pants.engine.addresses import Address, Addresses
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import CreateDigest, Digest, DigestContents, FileContent
from pants.engine.process import FallibleProcessResult, Process
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import Targets
from pants.engine.unions import UnionRule
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# skopeo


@rule(desc="Finding the `skopeo` binary", level=LogLevel.DEBUG)
async def find_skopeo(
    subsystem: DockerMirrorSubsystem,
    env_aware: DockerMirrorSubsystem.EnvironmentAware,
    bash: BashBinary,
) -> Skopeo:
    request = BinaryPathRequest(
        binary_name="skopeo",
        search_path=env_aware.executable_search_path,
        test=BinaryPathTest(args=["--version"]),
    )
    paths, env = await MultiGet(
        Get(BinaryPaths, BinaryPathRequest, request),
        Get(EnvironmentVars, EnvironmentVarsRequest(env_aware.env_vars)),
    )
    if not paths.first_path:
        raise BinaryNotFoundError.from_request(
            request,
            rationale='mirror images with `docker_mirror_images(method="copy")`',
            alternative_solution=INSTALL_HINT,
        )
    return Skopeo(
        path=paths.first_path.path,
        bash=bash.path,
        env=env,
        insecure_registries=tuple(subsystem.insecure_registries),
    )


# ---------------------------------------------------------------------------------------------
# Reading manifests, a batch of images at a time


@dataclass(frozen=True)
class DockerMirrorCopyPackageFieldSet(PackageFieldSet):
    required_fields = (DockerMirrorSourceImageField,)

    source_image: DockerMirrorSourceImageField
    platform: DockerMirrorPlatformField
    registries: DockerMirrorImageRegistriesField
    repository: DockerMirrorImageRepositoryField
    image_tags: DockerMirrorImageTagsField
    skip_push: DockerMirrorImageSkipPushField
    output_path: DockerMirrorImageOutputPathField


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
    result = await Get(
        FallibleProcessResult, Process, skopeo.read_manifests(request.references)
    )
    outputs = await Get(DigestContents, Digest, result.output_digest)
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
    """The read batch of each `docker_mirror_image` a generator made (see `copy_batches`)."""

    by_image: FrozenDict[Address, tuple[Address, ...]]


@rule(desc="Grouping mirrored images into batches of registry reads", level=LogLevel.DEBUG)
async def image_batches(request: ImageBatchesRequest) -> ImageBatches:
    generated = await Get(Targets, Addresses([request.generator]))
    images = (t.address for t in generated if DockerMirrorCopyPackageFieldSet.is_applicable(t))
    return ImageBatches(FrozenDict(batch_images(images)))


@dataclass(frozen=True)
class BatchReadsRequest:
    images: tuple[Address, ...]


@dataclass(frozen=True)
class ImageReadsRequest:
    image: Address


def _unresolved_source(field_set: DockerMirrorCopyPackageFieldSet) -> ResolvedSource:
    return ResolvedSource(field_set.source_image.value, field_set.platform.value)


def _destinations(
    field_set: DockerMirrorCopyPackageFieldSet, docker: DockerOptions
) -> tuple[Destination, ...]:
    return mirror_destinations(
        field_set.address,
        registries=field_set.registries.value,
        repository=field_set.repository.value,
        image_tags=field_set.image_tags.value,
        docker_registries=docker.registries(),
        default_repository=docker.default_repository,
    )


@rule(desc="Reading the manifests of a batch of mirrored images", level=LogLevel.DEBUG)
async def batch_reads(request: BatchReadsRequest, docker: DockerOptions) -> ManifestReads:
    targets = await Get(Targets, Addresses(request.images))
    references: set[str] = set()
    for target in targets:
        field_set = DockerMirrorCopyPackageFieldSet.create(target)
        references.add(_unresolved_source(field_set).lookup_reference)
        references.update(
            d.reference
            for d in destinations_to_check(
                _destinations(field_set, docker), skip_push=field_set.skip_push.value
            )
        )
    return await Get(ManifestReads, ReadManifestsRequest(tuple(sorted(references))))


@rule(desc="Reading the manifests a mirrored image needs", level=LogLevel.DEBUG)
async def image_reads(request: ImageReadsRequest) -> ManifestReads:
    image = request.image
    batch: tuple[Address, ...] = (image,)
    if image.is_generated_target:
        batches = await Get(
            ImageBatches, ImageBatchesRequest(image.maybe_convert_to_target_generator())
        )
        batch = batches.by_image.get(image, batch)
    return await Get(ManifestReads, BatchReadsRequest(batch))


# ---------------------------------------------------------------------------------------------
# package


@dataclass(frozen=True)
class BuiltMirrorImage(BuiltPackageArtifact):
    """The package of a `docker_mirror_image`: its JSON record, and what `publish` needs."""

    source: ResolvedSource = ResolvedSource("", None)
    destinations: tuple[Destination, ...] = ()
    # (reference, the digest it serves now or None) of each destination `publish` writes to.
    served: tuple[tuple[str, str | None], ...] = ()


@rule(desc="Resolving an image to mirror")
async def package_docker_mirror_image(
    field_set: DockerMirrorCopyPackageFieldSet, docker: DockerOptions
) -> BuiltPackage:
    # A source that cannot be resolved does not fail the rule: `publish` builds every package
    # before it publishes anything, so raising here would stop every other image of the run.
    # The failure is logged, recorded, and reported by `publish` as this image's failure.
    reads = await Get(ManifestReads, ImageReadsRequest(field_set.address))
    unresolved = _unresolved_source(field_set)
    read = reads.by_reference[unresolved.lookup_reference]
    source = resolve_source(
        unresolved.reference,
        unresolved.platform,
        exit_code=read.exit_code,
        stdout=read.stdout,
        stderr=read.stderr,
    )
    destinations = _destinations(field_set, docker)
    served = tuple(
        (d.reference, reads.served_digest(d.reference))
        for d in destinations_to_check(destinations, skip_push=field_set.skip_push.value)
    )
    relpath = field_set.output_path.value_or_default(file_ending="docker-mirror.json")
    digest = await Get(
        Digest,
        CreateDigest(
            [FileContent(relpath, mirror_record(str(field_set.address), source, destinations))]
        ),
    )
    if source.error:
        logger.error(f"{field_set.address}: {source.error}")
        line = f"Could not resolve {source.error}"
    else:
        line = f"Resolved {source.reference} to {source.summary}"
    return BuiltPackage(
        digest,
        (
            BuiltMirrorImage(
                relpath, (line,), source=source, destinations=destinations, served=served
            ),
        ),
    )


# ---------------------------------------------------------------------------------------------
# publish


class PublishDockerMirrorImageRequest(PublishRequest):
    pass


@dataclass(frozen=True)
class DockerMirrorCopyPublishFieldSet(PublishFieldSet):
    publish_request_type = PublishDockerMirrorImageRequest
    required_fields = (DockerMirrorSourceImageField,)

    source_image: DockerMirrorSourceImageField
    registries: DockerMirrorImageRegistriesField
    skip_push: DockerMirrorImageSkipPushField

    def get_output_data(self) -> PublishOutputData:
        return PublishOutputData(
            {
                "publisher": "docker-mirror",
                "registries": self.registries.value or (),
                **super().get_output_data(),
            }
        )


@dataclass(frozen=True)
class CopyToRepositoryRequest:
    """Copies one resolved source to tags of a single destination repository.

    `destinations` pairs each destination reference with the digest it served when it was
    checked (None: nothing), which the copy verifies before writing.
    """

    source: ResolvedSource
    destinations: tuple[tuple[str, str | None], ...]


@dataclass(frozen=True)
class CopyToRepositoryResult:
    outcomes: tuple[CopyOutcome, ...]


def _copy_outcome(
    source: ResolvedSource, destination: str, result: FallibleProcessResult
) -> CopyOutcome:
    if result.exit_code == 0:
        return CopyOutcome(destination, 0, up_to_date=UP_TO_DATE_OUTPUT in result.stdout)
    subject = f"copy from {source.reference} to {at_registry(destination)}"
    if result.exit_code == DESTINATION_CHANGED_EXIT_CODE:
        message = skopeo_error_message(result.stderr).replace("docker-mirror: ", "", 1)
        return CopyOutcome(destination, result.exit_code, f"{subject}: {message}")
    return CopyOutcome(
        destination, result.exit_code, describe_failure(result.stderr, subject=subject)
    )


@rule(desc="Copying an image to a repository", level=LogLevel.DEBUG)
async def copy_to_repository(
    request: CopyToRepositoryRequest, skopeo: Skopeo
) -> CopyToRepositoryResult:
    source = request.source
    assert source.digest is not None

    def copy(destination: str, seen: str | None) -> Process:
        return skopeo.copy(
            source.pinned, destination, platform=source.platform, want=source.digest, seen=seen
        )

    # The first tag uploads the blobs; the others then only add a manifest, concurrently.
    (first, first_seen), *others = request.destinations
    first_result = await Get(FallibleProcessResult, Process, copy(first, first_seen))
    first_outcome = _copy_outcome(source, first, first_result)
    if first_outcome.exit_code != 0:
        return CopyToRepositoryResult(
            (
                first_outcome,
                *(
                    CopyOutcome(
                        other, first_outcome.exit_code, f"not attempted: {first_outcome.error}"
                    )
                    for other, _ in others
                ),
            )
        )
    other_results = await MultiGet(
        Get(FallibleProcessResult, Process, copy(other, seen)) for other, seen in others
    )
    return CopyToRepositoryResult(
        (
            first_outcome,
            *(_copy_outcome(source, other, r) for (other, _), r in zip(others, other_results)),
        )
    )


@rule(desc="Mirroring an image registry to registry", level=LogLevel.DEBUG)
async def publish_docker_mirror_image(
    request: PublishDockerMirrorImageRequest, bash: BashBinary
) -> PublishProcesses:
    field_set = request.field_set
    images = [
        artifact
        for package in request.packages
        for artifact in package.artifacts
        if isinstance(artifact, BuiltMirrorImage)
    ]
    jobs: list[PublishPackages] = []
    for image in images:
        source, destinations = image.source, image.destinations
        if not destinations:
            jobs.append(
                skipped_packages(
                    (source.reference,),
                    "no destination: set `registries`, or a registry with `default = true` in "
                    "`[docker].registries`",
                )
            )
            continue
        if field_set.skip_push.value:
            jobs.append(
                skipped_packages(
                    [d.reference for d in destinations],
                    f"by `{field_set.skip_push.alias}` on {field_set.address}",
                )
            )
            continue
        pushed = [d for d in destinations if d.skipped_by is None]
        jobs.extend(
            skipped_packages((d.reference,), f"by {d.skipped_by}")
            for d in destinations
            if d.skipped_by is not None
        )
        if not pushed:
            continue
        if source.error or source.digest is None:
            jobs.append(unresolved_packages(source, pushed, bash=bash.path))
            continue

        # What each destination served when `package` read it, alongside the source.
        seen = dict(image.served)
        up_to_date, stale = split_up_to_date(source.digest, pushed, seen)
        jobs.extend(up_to_date_packages(source, d) for d in up_to_date)

        results = await MultiGet(
            Get(
                CopyToRepositoryResult,
                CopyToRepositoryRequest(
                    source, tuple((d.reference, seen.get(d.reference)) for d in group)
                ),
            )
            for group in by_repository(stale)
        )
        outcomes = {o.destination: o for result in results for o in result.outcomes}
        jobs.extend(
            copied_packages(source, d, outcomes[d.reference], bash=bash.path) for d in stale
        )
    return PublishProcesses(jobs)


def rules():
    return (
        *collect_rules(),
        UnionRule(PackageFieldSet, DockerMirrorCopyPackageFieldSet),
        *DockerMirrorCopyPublishFieldSet.rules(),
    )
