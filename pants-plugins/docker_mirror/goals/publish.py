"""`pants publish` of `docker_mirror_image`s. The copies run as `Process`es of the publish rule; each
`PublishPackages` only reports the copy's real outcome, so the summary tells the truth."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from docker_mirror.compat import concurrently, digest_contents, process_result, rule_call
from docker_mirror.goals.package import BuiltMirrorImage, short_digest, unread_referrers_message
from docker_mirror.target_types import (
    DockerMirrorImageRegistriesField,
    DockerMirrorImageSkipPushField,
    DockerMirrorSourceImageField,
)
from docker_mirror.util_rules.destinations import Destination
from docker_mirror.oci.reference import ImageReference, registry_host
from docker_mirror.oci.probe_protocol import CopyResult, Plan, ReferrersResult, counted
from docker_mirror.util_rules.referrers import CopyReferrersRequest, copy_referrers
from docker_mirror.util_rules.registry_reads import (
    GeneratorReadsRequest,
    RegistryReads,
    ResolvedSource,
    reads_of,
)
from docker_mirror.util_rules.registry_failures import uncopied_referrers
from docker_mirror.util_rules.skopeo import (
    DESTINATION_MANIFEST,
    CopyOutcome,
    Skopeo,
    at_registry,
    copy_outcome,
)
from pants.core.goals.publish import (
    PublishFieldSet,
    PublishOutputData,
    PublishPackages,
    PublishProcesses,
    PublishRequest,
)
from pants.core.util_rules.system_binaries import BashBinary
from pants.engine.addresses import Address
from pants.engine.fs import DigestContents
from pants.engine.internals.session import RunId
from pants.engine.process import InteractiveProcess, Process
from pants.engine.rules import collect_rules, rule
from pants.util.logging import LogLevel


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


def report_process(bash: str, *, exit_code: int) -> InteractiveProcess:
    """The process `publish` runs to report a copy that already ran: it exits with `exit_code`,
    and prints nothing, since the summary line says why (a failure is told once)."""
    return InteractiveProcess(argv=(bash, "-c", f"exit {int(exit_code)}"))


def _data(
    source: ResolvedSource, outcome: str, referrers: CopyResult | None = None
) -> PublishOutputData:
    copied = referrers.copied if referrers is not None and referrers.ok else ()
    return PublishOutputData(
        {
            "source": source.reference,
            "digest": source.digest,
            "mirror_outcome": outcome,
            "referrers_copied": tuple(item.digest for item in copied),
        }
    )


def referrers_note(referrers: CopyResult | None) -> str:
    """`; with 1 signature, 1 SBOM` when referrers were copied along, else nothing."""
    if referrers is None or not referrers.ok:
        return ""
    notes = []
    if referrers.verified_by:
        notes.append(f"signature verified by {referrers.verified_by}")
    copied = counted(_kinds(referrers))
    if copied:
        notes.append(f"with {copied}")
    return "".join(f"; {note}" for note in notes)


def _kinds(referrers: CopyResult) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in referrers.copied:
        counts[item.kind] = counts.get(item.kind, 0) + 1
    return counts


def skipped_packages(names: Sequence[str], reason: str) -> PublishPackages:
    return PublishPackages(names=tuple(names), description=f"({reason})")


def up_to_date_packages(
    source: ResolvedSource,
    destination: Destination,
    *,
    referrers: CopyResult | None = None,
    bash: str = "",
) -> PublishPackages:
    """A destination that already serves the source digest. If what refers to the image was
    copied to its repository meanwhile, that is reported as published (or failed) here."""
    already = f"{destination.registry_name} already serves {short_digest(source.digest)}"
    if referrers is None:
        return PublishPackages(
            names=(destination.reference,),
            description=f"(up to date: {already})",
            data=_data(source, "up-to-date"),
        )
    if not referrers.ok:
        error = referrers_failure(source, destination, referrers, image_was_stale=False)
        return PublishPackages(
            names=(destination.reference,),
            process=report_process(bash, exit_code=1),
            description=error,
            data=_data(source, "failed", referrers),
        )
    return PublishPackages(
        names=(destination.reference,),
        process=report_process(bash, exit_code=0),
        description=(
            f"{destination.registry_name} (the image was up to date: {already}"
            f"{referrers_note(referrers)})"
        ),
        data=_data(source, "referrers-copied", referrers),
    )


def referrers_failure(
    source: ResolvedSource,
    destination: Destination,
    referrers: CopyResult,
    *,
    image_was_stale: bool = True,
) -> str:
    """Why an image was not copied, or its referrers not: the gate refused it, or they could not
    be copied (then a stale image was not copied either: the mirror never serves it without
    them)."""
    if referrers.outcome == "unsigned":
        return f"`require_signature`: {referrers.message}"
    failure = uncopied_referrers(
        f"{source.reference} ({short_digest(source.digest)})",
        at_registry(destination.reference),
        (destination.registry, registry_host(source.reference)),
        referrers.message or "failed",
        referrers.error_kind,
    )
    return f"{failure}; so the image was not copied" if image_was_stale else failure


def unresolved_packages(
    source: ResolvedSource, destinations: Sequence[Destination], *, bash: str
) -> PublishPackages:
    """Every destination of a source that could not be resolved, reported as failed."""
    assert source.error is not None
    return PublishPackages(
        names=tuple(d.reference for d in destinations),
        process=report_process(bash, exit_code=1),
        description=source.error,
        data=_data(source, "failed"),
    )


def unread_referrers_packages(
    source: ResolvedSource,
    destinations: Sequence[Destination],
    referrers: ReferrersResult,
    *,
    unreadable: Sequence[str] = (),
    bash: str,
) -> PublishPackages:
    """Every destination of an image whose referrers could not be read: it is not copied, since
    the mirror would then serve it without its signatures. `unreadable`: the destinations whose
    own read failed (`BuiltMirrorImage.unreadable`), the likely cause."""
    return PublishPackages(
        names=tuple(d.reference for d in destinations),
        process=report_process(bash, exit_code=1),
        description=unread_referrers_message(source, referrers, unreadable),
        data=_data(source, "failed"),
    )


def destination_manifest(outputs: DigestContents) -> bytes | None:
    """What a copy's destination served after it (see `skopeo.GUARDED_COPY_SCRIPT`)."""
    return next((f.content for f in outputs if f.path == DESTINATION_MANIFEST), None)


def copied_packages(
    source: ResolvedSource,
    destination: Destination,
    outcome: CopyOutcome,
    *,
    bash: str,
    referrers: CopyResult | None = None,
) -> PublishPackages:
    """A destination that was stale: copied, found up to date by the copy after all, or failed.
    `referrers`: what refers to the image, copied to its repository just before (reported on the
    first destination of a repository only)."""
    if outcome.up_to_date:
        return up_to_date_packages(source, destination, referrers=referrers, bash=bash)
    if outcome.exit_code == 0:
        # The platforms as the destination serves them now: the source's body was not read.
        written = (
            dataclasses.replace(source, platforms=outcome.platforms)
            if outcome.platforms is not None and source.platform is None
            else source
        )
        return PublishPackages(
            names=(destination.reference,),
            process=report_process(bash, exit_code=0),
            description=(
                f"{destination.registry_name} (copied from {source.reference}, {written.summary}"
                f"{referrers_note(referrers)})"
            ),
            data=_data(source, "copied", referrers),
        )
    error = outcome.error or f"skopeo copy exited with {outcome.exit_code}"
    return PublishPackages(
        names=(destination.reference,),
        process=report_process(bash, exit_code=outcome.exit_code or 1),
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
    """Copies one resolved source to a single destination repository: first what refers to it
    that the repository lacks (`referrers`; with `signature_keys`, after checking the image's
    signature), then the image to its stale tags.

    `destinations` pairs each stale destination reference with the digest it served when it was
    checked (None: nothing), which the copy verifies before writing; it may be empty when only
    referrers are missing.
    """

    source: ResolvedSource
    destinations: tuple[tuple[str, str | None], ...]
    # `registry/repository`.
    repository: str = ""
    referrers: Plan = Plan()
    # `require_signature`, checked only when the image itself is copied.
    signature_keys: tuple[str, ...] = ()
    # The registry reads the copy was decided from, and whose they are (`BuiltMirrorImage`).
    reads_owner: Address | None = None
    reads: RegistryReads | None = None


@dataclass(frozen=True)
class CopyToRepositoryResult:
    outcomes: tuple[CopyOutcome, ...]
    # What the registry probe did before the image was copied, if it ran.
    referrers: CopyResult | None = None


# Only a stale run's request meets it (see `copy_to_repository`); no summary shows it.
SUPERSEDED = "not copied: the registries changed since this copy was decided"


def gated_keys(request: CopyToRepositoryRequest) -> tuple[str, ...]:
    """`require_signature`'s keys, checked only when the image itself is copied."""
    return request.signature_keys if request.destinations else ()


def has_referrers_step(request: CopyToRepositoryRequest) -> bool:
    return not request.referrers.empty or bool(gated_keys(request))


def referrers_step(request: CopyToRepositoryRequest, run_id: int) -> CopyReferrersRequest | None:
    """The registry probe's part of a copy, in run `run_id`: the gate (when the image is copied
    and `require_signature` is set) and the referrers the repository lacks; None when neither."""
    if not has_referrers_step(request):
        return None
    source = request.source
    assert source.digest is not None
    return CopyReferrersRequest(
        source_repository=ImageReference.parse(source.reference).name,
        subject=source.digest,
        destination_repository=request.repository,
        plan=request.referrers,
        signature_keys=gated_keys(request),
        run_id=run_id,
    )


copy_referrers_of = rule_call(copy_referrers)


@rule(desc="Copying an image to a repository", level=LogLevel.DEBUG)
async def copy_to_repository(
    request: CopyToRepositoryRequest, skopeo: Skopeo, run_id: RunId
) -> CopyToRepositoryResult:
    """Copies, in this run, what this run's registry reads decided.

    `run_id` makes this rule run again in every run, and its copies processes of their own (see
    `Skopeo.copy`), so that no run reuses an earlier run's copy. And with pantsd, while it checks
    which of the previous run's results still hold, Pants re-runs that run's rules with their
    old requests, this one included, before it has read the registries anew (its graph
    "cleaning" runs every dependency at once): so a copy waits for this run's reads and goes on
    only if they are the ones it was decided from. Then it is the very copy this run's `publish`
    asks for, which shares its result; otherwise it writes nothing, and `publish` asks for
    another.
    """
    if request.reads_owner is not None:
        reads = await reads_of(GeneratorReadsRequest(request.reads_owner))
        if reads != request.reads:
            return CopyToRepositoryResult(
                tuple(CopyOutcome(d, 1, SUPERSEDED) for d, _ in request.destinations)
            )
    source = request.source
    digest = source.digest
    assert digest is not None

    # What refers to the image goes first, so that the mirror never serves the image without
    # it; and if the gate refuses the image, or they cannot be copied, the image is not copied.
    step = referrers_step(request, run_id)
    referrers = await copy_referrers_of(step) if step is not None else None
    if referrers is not None and not referrers.ok:
        return CopyToRepositoryResult(
            tuple(CopyOutcome(d, 1, f"not copied: {referrers.message}") for d, _ in request.destinations),
            referrers,
        )
    if not request.destinations:
        return CopyToRepositoryResult((), referrers)

    def copy(destination: str, seen: str | None) -> Process:
        return skopeo.copy(
            source.pinned,
            destination,
            platform=source.platform,
            want=digest,
            seen=seen,
            run_id=run_id,
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
                        other,
                        first_outcome.exit_code,
                        f"{first_outcome.error}; this tag was not attempted after it",
                    )
                    for other, _ in others
                ),
            ),
            referrers,
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
        ),
        referrers,
    )


copy_to = rule_call(copy_to_repository)


def repository_of(destination: Destination) -> str:
    return f"{destination.registry}/{destination.repository}"


def repository_packages(
    source: ResolvedSource,
    group: Sequence[Destination],
    stale: Sequence[Destination],
    result: CopyToRepositoryResult | None,
    *,
    bash: str,
) -> list[PublishPackages]:
    """The summary entries of one destination repository's tags. What refers to the image is
    reported on the repository's first tag (it was copied once for all of them); a refused or
    failed referrers step fails every tag it kept from being copied, or that lacks it."""
    referrers = result.referrers if result is not None else None
    outcomes = {o.destination: o for o in result.outcomes} if result is not None else {}
    entries = []
    for index, destination in enumerate(group):
        reported = referrers if index == 0 or (referrers is not None and not referrers.ok) else None
        if destination in stale:
            outcome = outcomes[destination.reference]
            if referrers is not None and not referrers.ok:
                outcome = CopyOutcome(
                    destination.reference, 1, referrers_failure(source, destination, referrers)
                )
            entries.append(
                copied_packages(source, destination, outcome, bash=bash, referrers=reported)
            )
        else:
            entries.append(
                up_to_date_packages(source, destination, referrers=reported, bash=bash)
            )
    return entries


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
        if image.referrers is not None and image.referrers.error:
            jobs.append(
                unread_referrers_packages(
                    source, pushed, image.referrers, unreadable=image.unreadable, bash=bash.path
                )
            )
            continue

        # What each destination served when `package` read it, alongside the source.
        seen = dict(image.served)
        _, stale = split_up_to_date(source.digest, pushed, seen)
        groups = by_repository(pushed)
        requests = {
            index: CopyToRepositoryRequest(
                source,
                tuple((d.reference, seen.get(d.reference)) for d in group if d in stale),
                repository=repository_of(group[0]),
                referrers=(
                    image.referrers.plan_for(repository_of(group[0]))
                    if image.referrers is not None
                    else Plan()
                ),
                signature_keys=image.signature_keys,
                reads_owner=image.reads_owner,
                reads=image.reads,
            )
            for index, group in enumerate(groups)
        }
        needed = {
            index: request
            for index, request in requests.items()
            if request.destinations or has_referrers_step(request)
        }
        results = dict(zip(needed, await concurrently(copy_to(r) for r in needed.values())))
        for index, group in enumerate(groups):
            jobs.extend(
                repository_packages(source, group, stale, results.get(index), bash=bash.path)
            )
    return PublishProcesses(jobs)


def rules():
    return (*collect_rules(), *DockerMirrorCopyPublishFieldSet.rules())
