"""`pants publish` of `docker_mirror_image`s: copy what is stale, and report every destination.

Pants 2.17's publish goal runs the `InteractiveProcess` of each `PublishPackages` one after the
other, and renders a `PublishPackages` without a process as "skipped". The copies themselves run
earlier, concurrently, as `Process`es of the publish rule; each `PublishPackages` then carries an
`InteractiveProcess` that only reports the copy's real outcome (its message, its exit code), so
the summary says "published" or "failed" truthfully and a failure makes the run exit non-zero,
while the other images are still copied and reported. An up-to-date destination gets no process
at all and is rendered as "skipped (up to date: ...)".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from docker_mirror.compat import concurrently, digest_contents, process_result, rule_call
from docker_mirror.goals.package import BuiltMirrorImage
from docker_mirror.target_types import (
    DockerMirrorImageRegistriesField,
    DockerMirrorImageSkipPushField,
    DockerMirrorSourceImageField,
)
from docker_mirror.util_rules.destinations import Destination
from docker_mirror.util_rules.manifest_reads import ResolvedSource
from docker_mirror.util_rules.skopeo import (
    DESTINATION_MANIFEST,
    CopyOutcome,
    Skopeo,
    copy_outcome,
    reporter_script,
)
from pants.core.goals.publish import (
    PublishFieldSet,
    PublishOutputData,
    PublishPackages,
    PublishProcesses,
    PublishRequest,
)
from pants.core.util_rules.system_binaries import BashBinary
from pants.engine.fs import DigestContents
from pants.engine.process import InteractiveProcess, Process
from pants.engine.rules import collect_rules, rule
from pants.util.logging import LogLevel


def short_digest(digest: str | None) -> str:
    return (digest or "")[: len("sha256:") + 12]


def split_up_to_date(
    source_digest: str, destinations: Sequence[Destination], served: Mapping[str, str | None]
) -> tuple[tuple[Destination, ...], tuple[Destination, ...]]:
    """(up to date, to copy): a destination is up to date when it serves the source digest."""
    up_to_date = tuple(d for d in destinations if served.get(d.reference) == source_digest)
    stale = tuple(d for d in destinations if served.get(d.reference) != source_digest)
    return up_to_date, stale


def by_repository(destinations: Iterable[Destination]) -> tuple[tuple[Destination, ...], ...]:
    """Destinations grouped by registry and repository, in first-seen order.

    The tags of one repository are copied one after the other (the first copy uploads the
    blobs, the next ones find them there); different repositories are copied concurrently.
    """
    groups: dict[tuple[str, str], list[Destination]] = {}
    for destination in destinations:
        groups.setdefault((destination.registry, destination.repository), []).append(destination)
    return tuple(tuple(group) for group in groups.values())


def report_process(bash: str, *, exit_code: int, message: str | None) -> InteractiveProcess:
    """The process `publish` runs to report a copy that already ran: it prints `message` to
    stderr and exits with `exit_code`. The message travels in the environment, not in argv."""
    return InteractiveProcess(
        argv=(bash, "-c", reporter_script()),
        env={"DOCKER_MIRROR_MESSAGE": message or "", "DOCKER_MIRROR_EXIT_CODE": str(exit_code)},
    )


def _data(source: ResolvedSource, outcome: str) -> PublishOutputData:
    return PublishOutputData(
        {"source": source.reference, "digest": source.digest, "mirror_outcome": outcome}
    )


def skipped_packages(names: Sequence[str], reason: str) -> PublishPackages:
    return PublishPackages(names=tuple(names), description=f"({reason})")


def up_to_date_packages(source: ResolvedSource, destination: Destination) -> PublishPackages:
    return PublishPackages(
        names=(destination.reference,),
        description=(
            f"(up to date: {destination.registry_name} already serves "
            f"{short_digest(source.digest)})"
        ),
        data=_data(source, "up-to-date"),
    )


def unresolved_packages(
    source: ResolvedSource, destinations: Sequence[Destination], *, bash: str
) -> PublishPackages:
    """Every destination of a source that could not be resolved, reported as failed."""
    assert source.error is not None
    return PublishPackages(
        names=tuple(d.reference for d in destinations),
        process=report_process(bash, exit_code=1, message=f"docker-mirror: {source.error}"),
        description=source.error,
        data=_data(source, "failed"),
    )


def destination_manifest(outputs: DigestContents) -> bytes | None:
    """What a copy's destination served after it (see `skopeo.GUARDED_COPY_SCRIPT`)."""
    return next((f.content for f in outputs if f.path == DESTINATION_MANIFEST), None)


def copied_packages(
    source: ResolvedSource, destination: Destination, outcome: CopyOutcome, *, bash: str
) -> PublishPackages:
    if outcome.up_to_date:
        return up_to_date_packages(source, destination)
    if outcome.exit_code == 0:
        # The platforms as the destination serves them now: the source's body was not read.
        written = (
            dataclasses.replace(source, platforms=outcome.platforms)
            if outcome.platforms is not None and source.platform is None
            else source
        )
        return PublishPackages(
            names=(destination.reference,),
            process=report_process(bash, exit_code=0, message=None),
            description=(
                f"{destination.registry_name} (copied from {source.reference}, {written.summary})"
            ),
            data=_data(source, "copied"),
        )
    error = outcome.error or f"skopeo copy exited with {outcome.exit_code}"
    return PublishPackages(
        names=(destination.reference,),
        process=report_process(
            bash, exit_code=outcome.exit_code or 1, message=f"docker-mirror: {error}"
        ),
        description=error,
        data=_data(source, "failed"),
    )


# ---------------------------------------------------------------------------------------------
# Rules


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
    # The run whose reads decided the copy: a copy belongs to it (see `Skopeo.copy`).
    checked_in_run: int


@dataclass(frozen=True)
class CopyToRepositoryResult:
    outcomes: tuple[CopyOutcome, ...]


@rule(desc="Copying an image to a repository", level=LogLevel.DEBUG)
async def copy_to_repository(
    request: CopyToRepositoryRequest, skopeo: Skopeo
) -> CopyToRepositoryResult:
    source = request.source
    digest = source.digest
    assert digest is not None

    def copy(destination: str, seen: str | None) -> Process:
        return skopeo.copy(
            source.pinned,
            destination,
            platform=source.platform,
            want=digest,
            seen=seen,
            run_id=request.checked_in_run,
        )

    # The first tag uploads the blobs; the others then only add a manifest, concurrently.
    (first, first_seen), *others = request.destinations
    first_result = await process_result(copy(first, first_seen))
    first_written = await digest_contents(first_result.output_digest)
    first_outcome = copy_outcome(
        source.reference, first, first_result, destination_manifest(first_written)
    )
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
    other_results = await concurrently(process_result(copy(other, seen)) for other, seen in others)
    others_written = await concurrently(
        digest_contents(result.output_digest) for result in other_results
    )
    return CopyToRepositoryResult(
        (
            first_outcome,
            *(
                copy_outcome(source.reference, other, result, destination_manifest(written))
                for (other, _), result, written in zip(others, other_results, others_written)
            ),
        )
    )


copy_to = rule_call(copy_to_repository)


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

        results = await concurrently(
            copy_to(
                CopyToRepositoryRequest(
                    source,
                    tuple((d.reference, seen.get(d.reference)) for d in group),
                    checked_in_run=image.checked_in_run,
                )
            )
            for group in by_repository(stale)
        )
        outcomes = {o.destination: o for result in results for o in result.outcomes}
        jobs.extend(
            copied_packages(source, d, outcomes[d.reference], bash=bash.path) for d in stale
        )
    return PublishProcesses(jobs)


def rules():
    return (*collect_rules(), *DockerMirrorCopyPublishFieldSet.rules())
