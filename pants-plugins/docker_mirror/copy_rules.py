"""Engine rules of `method="copy"`: find `skopeo`, resolve sources, `package` and `publish`.

The registry work of a run is spread so that the engine can run it concurrently and nothing is
asked twice: each source is resolved once (`skopeo inspect --raw`, shared by `package` and
`publish`); every destination reference is checked once; copies run as `Process`es of the
publish rules, which the engine runs in parallel (up to
`[GLOBAL].process_execution_local_parallelism` at a time). Every process that talks to a
registry is cached for the current run only (`ProcessCacheScope.PER_SESSION`): registries
change between runs. See `copy_publish` for how outcomes reach the publish summary.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

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
    Skopeo,
    at_registry,
    describe_failure,
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
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import CreateDigest, Digest, FileContent
from pants.engine.process import FallibleProcessResult, Process
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.unions import UnionRule
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
# Resolving a source


@dataclass(frozen=True)
class ResolveSourceRequest:
    reference: str
    platform: str | None


@rule(desc="Resolving a source image to a digest", level=LogLevel.DEBUG)
async def resolve_mirror_source(request: ResolveSourceRequest, skopeo: Skopeo) -> ResolvedSource:
    unresolved = ResolvedSource(request.reference, request.platform)
    result = await Get(
        FallibleProcessResult, Process, skopeo.inspect_raw(unresolved.lookup_reference)
    )
    return resolve_source(
        request.reference,
        request.platform,
        exit_code=result.exit_code,
        stdout=result.stdout,
        stderr=result.stderr,
    )


# ---------------------------------------------------------------------------------------------
# package


@dataclass(frozen=True)
class DockerMirrorCopyPackageFieldSet(PackageFieldSet):
    required_fields = (DockerMirrorSourceImageField,)

    source_image: DockerMirrorSourceImageField
    platform: DockerMirrorPlatformField
    registries: DockerMirrorImageRegistriesField
    repository: DockerMirrorImageRepositoryField
    image_tags: DockerMirrorImageTagsField
    output_path: DockerMirrorImageOutputPathField


@dataclass(frozen=True)
class BuiltMirrorImage(BuiltPackageArtifact):
    """The package of a `docker_mirror_image`: its JSON record, and what `publish` needs."""

    source: ResolvedSource = ResolvedSource("", None)
    destinations: tuple[Destination, ...] = ()


@rule(desc="Resolving an image to mirror")
async def package_docker_mirror_image(
    field_set: DockerMirrorCopyPackageFieldSet, docker: DockerOptions
) -> BuiltPackage:
    # A source that cannot be resolved does not fail the rule: `publish` builds every package
    # before it publishes anything, so raising here would stop every other image of the run.
    # The failure is logged, recorded, and reported by `publish` as this image's failure.
    source = await Get(
        ResolvedSource,
        ResolveSourceRequest(field_set.source_image.value, field_set.platform.value),
    )
    destinations = mirror_destinations(
        field_set.address,
        registries=field_set.registries.value,
        repository=field_set.repository.value,
        image_tags=field_set.image_tags.value,
        docker_registries=docker.registries(),
        default_repository=docker.default_repository,
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
        (BuiltMirrorImage(relpath, (line,), source=source, destinations=destinations),),
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
class DestinationDigestRequest:
    reference: str


@dataclass(frozen=True)
class DestinationDigest:
    """The digest a destination reference serves now; None if it serves nothing (or cannot be
    read: then the copy is attempted, and reports the real problem)."""

    reference: str
    digest: str | None


@rule(desc="Reading the digest a destination serves", level=LogLevel.DEBUG)
async def destination_digest(
    request: DestinationDigestRequest, skopeo: Skopeo
) -> DestinationDigest:
    result = await Get(FallibleProcessResult, Process, skopeo.inspect_raw(request.reference))
    digest = manifest_digest(result.stdout) if result.exit_code == 0 else None
    return DestinationDigest(request.reference, digest)


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

        served = await MultiGet(
            Get(DestinationDigest, DestinationDigestRequest(d.reference)) for d in pushed
        )
        seen = {s.reference: s.digest for s in served}
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
