"""`pants publish` of `docker_mirror_image`s. The copies run as `Process`es of the publish rule; each
`PublishPackages` only reports the copy's real outcome, so the summary tells the truth."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from docker_mirror.compat import concurrently, rule_call
from docker_mirror.goals.package import BuiltMirrorImage, short_digest, unread_referrers_message
from docker_mirror.target_types import (
    DockerMirrorImageRegistriesField,
    DockerMirrorImageSkipPushField,
    DockerMirrorSourceImageField,
)
from docker_mirror.util_rules.destinations import Destination
from docker_mirror.oci.reference import ImageReference, registry_host
from docker_mirror.oci.probe_protocol import (
    CopyResult,
    Plan,
    ReferrersResult,
    TagCopy,
    TagOutcome,
    counted,
)
from docker_mirror.util_rules.copies import (
    CopyImageRequest,
    CopyOutcome,
    copy_image,
    tag_copy_outcome,
)
from docker_mirror.util_rules.registry_reads import (
    GeneratorReadsRequest,
    ResolvedSource,
    reads_of,
)
from docker_mirror.util_rules.registry_failures import at_registry, uncopied_referrers
from pants.core.goals.publish import (
    PublishFieldSet,
    PublishOutputData,
    PublishPackages,
    PublishProcesses,
    PublishRequest,
)
from pants.core.util_rules.system_binaries import BashBinary
from pants.engine.addresses import Address
from pants.engine.internals.session import RunId
from pants.engine.process import InteractiveProcess
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

    The tags of one repository are copied by one process (the image once, then each tag);
    different repositories are copied concurrently.
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
    if referrers.attested:
        notes.append("provenance attested")
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
    if source.subset and source.index_digest and source.digest != source.index_digest:
        already += f", the source's index {short_digest(source.index_digest)} filtered to {', '.join(source.platforms or ())}"
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
    if outcome.ok:
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
                f"{destination.registry_name} (copied from {source.shown}, {written.summary}"
                f"{referrers_note(referrers)})"
            ),
            data=_data(source, "copied", referrers),
        )
    return PublishPackages(
        names=(destination.reference,),
        process=report_process(bash, exit_code=1),
        description=outcome.error,
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
    """Copies one resolved source to a single destination repository, in one run of the registry
    probe: first what refers to it that the repository lacks (`referrers`; with
    `signature_keys`, after checking the image's signature), then the image to its stale tags.

    `tags` pairs each stale tag with the digest it served when it was checked (None: nothing),
    which the copy verifies before writing; it may be empty when only referrers are missing.
    """

    source: ResolvedSource
    tags: tuple[TagCopy, ...]
    # `registry/repository`.
    repository: str = ""
    referrers: Plan = Plan()
    # `require_signature`, checked only when the image itself is copied.
    signature_keys: tuple[str, ...] = ()
    signed_identity: str | None = None
    # Whose registry reads the copy was decided from, and their fingerprint (`BuiltMirrorImage`).
    reads_owner: Address | None = None
    reads_fingerprint: str | None = None

    def destination(self, tag: TagCopy) -> str:
        return f"{self.repository}:{tag.tag}"


@dataclass(frozen=True)
class CopyToRepositoryResult:
    outcomes: tuple[CopyOutcome, ...]
    # What the registry probe did of the gate and the referrers, when it had either to do.
    referrers: CopyResult | None = None
    # The image's own copy failed (each stale tag's outcome says why). What refers to it, which
    # goes after the image's manifests, was then not copied either (`referrers` says so).
    image_failed: bool = False


# Only a stale run's request meets it (see `copy_to_repository`); no summary shows it.
SUPERSEDED = "not copied: the registries changed since this copy was decided"


def gated_keys(request: CopyToRepositoryRequest) -> tuple[str, ...]:
    """`require_signature`'s keys, checked only when the image itself is copied."""
    return request.signature_keys if request.tags else ()


def has_referrers_step(request: CopyToRepositoryRequest) -> bool:
    """Whether the copy has the gate (the image is copied and `require_signature` is set) or
    referrers the repository lacks to see to, before the image."""
    return not request.referrers.empty or bool(gated_keys(request))


def copy_step(request: CopyToRepositoryRequest, run_id: int) -> CopyImageRequest:
    """What the registry probe is asked to do for the repository, in run `run_id`."""
    source = request.source
    assert source.digest is not None
    return CopyImageRequest(
        source_repository=ImageReference.parse(source.reference).name,
        subject=source.digest,
        destination_repository=request.repository,
        plan=request.referrers,
        signature_keys=gated_keys(request),
        identity=request.signed_identity if gated_keys(request) else None,
        provenance_source=source.reference if request.referrers.attest else None,
        run_id=run_id,
        tags=request.tags,
        platform=source.platform,
        platforms=source.subset if source.subset else (),
        index_digest=source.index_digest if source.subset else None,
    )


copy_image_of = rule_call(copy_image)


@rule(desc="Copying an image to a repository", level=LogLevel.DEBUG)
async def copy_to_repository(
    request: CopyToRepositoryRequest, run_id: RunId
) -> CopyToRepositoryResult:
    """Copies, in this run, what this run's registry reads decided.

    `run_id` makes this rule run again in every run, and its copy a process of its own (see
    `copies.copy_image`), so that no run reuses an earlier run's copy. And with pantsd, while it
    checks which of the previous run's results still hold, Pants re-runs that run's rules with
    their old requests, this one included, before it has read the registries anew (its graph
    "cleaning" runs every dependency at once): so a copy waits for this run's reads and goes on
    only if they are the ones it was decided from. Then it is the very copy this run's `publish`
    asks for, which shares its result; otherwise it writes nothing, and `publish` asks for
    another.
    """
    if request.reads_owner is not None:
        reads = await reads_of(GeneratorReadsRequest(request.reads_owner))
        if reads.fingerprint != request.reads_fingerprint:
            return CopyToRepositoryResult(
                tuple(CopyOutcome(request.destination(tag), SUPERSEDED) for tag in request.tags)
            )
    # One process: the gate, then the image's blobs and manifests, then what refers to it, then
    # the index and the tags, so that the mirror never serves the image without what refers to
    # it; and if the gate refuses the image, or they cannot be copied, no tag is written.
    result = await copy_image_of(copy_step(request, run_id))
    return repository_result(request, result)


def repository_result(request: CopyToRepositoryRequest, result: CopyResult) -> CopyToRepositoryResult:
    """What the probe's copy (`result`) did for each stale tag, and of the gate and referrers."""
    failed = image_failure(result)
    referrers: CopyResult | None = result if has_referrers_step(request) else None
    if referrers is not None and not referrers.ok and failed is not None:
        # Not the gate's nor the referrers' failure: the image's, which kept the referrers the
        # repository lacks from being copied (the gate, if any, had let the image through).
        referrers = (
            CopyResult("error", failed.message, error_kind=failed.error_kind)
            if not request.referrers.empty
            else None
        )
    elif referrers is not None and not referrers.ok:
        return CopyToRepositoryResult(
            tuple(
                CopyOutcome(request.destination(tag), f"not copied: {referrers.message}")
                for tag in request.tags
            ),
            referrers,
        )
    return CopyToRepositoryResult(
        tuple(
            tag_copy_outcome(
                request.source.reference,
                request.destination(tag),
                result.tag_outcome(tag.tag),
                result,
            )
            for tag in request.tags
        ),
        referrers,
        image_failed=failed is not None,
    )


def image_failure(result: CopyResult) -> TagOutcome | None:
    """The first tag the image's own copy failed, if it did: every tag is then "failed", where
    a refusal by the gate or a failure of the referrers leaves each "not_attempted"."""
    return next((tag for tag in result.tags if tag.outcome == "failed"), None)


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
    image_failed = result is not None and result.image_failed
    entries = []
    for index, destination in enumerate(group):
        reported = referrers if index == 0 or (referrers is not None and not referrers.ok) else None
        if destination in stale:
            outcome = outcomes[destination.reference]
            if referrers is not None and not referrers.ok and not image_failed:
                outcome = CopyOutcome(
                    destination.reference, referrers_failure(source, destination, referrers)
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
                tuple(TagCopy(d.tag, seen.get(d.reference)) for d in group if d in stale),
                repository=repository_of(group[0]),
                referrers=(
                    image.referrers.plan_for(repository_of(group[0]))
                    if image.referrers is not None
                    else Plan()
                ),
                signature_keys=image.signature_keys,
                signed_identity=image.signed_identity,
                reads_owner=image.reads_owner,
                reads_fingerprint=image.reads_fingerprint,
            )
            for index, group in enumerate(groups)
        }
        needed = {
            index: request
            for index, request in requests.items()
            if request.tags or has_referrers_step(request)
        }
        results = dict(zip(needed, await concurrently(copy_to(r) for r in needed.values())))
        for index, group in enumerate(groups):
            jobs.extend(
                repository_packages(source, group, stale, results.get(index), bash=bash.path)
            )
    return PublishProcesses(jobs)


def rules():
    return (*collect_rules(), *DockerMirrorCopyPublishFieldSet.rules())
