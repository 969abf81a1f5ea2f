"""What copy mode and `docker-mirror-pin` read from registries, in one run of the registry probe per
generator and Pants run: source digests, destination tags, referrers."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import stat
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from docker_mirror.compat import (
    created_digest,
    digest_contents,
    process_result,
    rule_call,
    targets,
    venv_pex_process,
)
from docker_mirror.oci.manifests import (
    INDEX_MEDIA_TYPES,
    ManifestError,
    narrowed_index,
    parse_manifest,
    select_platform,
)
from docker_mirror.oci.probe_protocol import (
    ManifestRead,
    ManifestResult,
    ProbeRequest,
    ProbeResult,
    ReferrersRead,
    ReferrersResult,
    ResultError,
    encoded,
    parse_result,
)
from docker_mirror.oci.reference import ImageReference, registry_host
from docker_mirror.subsystems.docker_mirror import DockerMirrorSubsystem
from docker_mirror.subsystems.registry_probe import RegistryProbe
from docker_mirror.target_types import (
    DockerMirrorImageRegistriesField,
    DockerMirrorImageRepositoryField,
    DockerMirrorImageSkipPushField,
    DockerMirrorImageTagsField,
    DockerMirrorPlatformsField,
    DockerMirrorPlatformField,
    DockerMirrorReferrersField,
    DockerMirrorSourceImageField,
)
from docker_mirror.util_rules.destinations import Destination, mirror_destinations
from docker_mirror.util_rules.registry_client import RegistryClientEnvironment
from docker_mirror.util_rules.registry_failures import ACCESS_DENIED, access_denied, at_registry
from pants.backend.docker.subsystems.docker_options import DockerOptions
from pants.backend.python.util_rules.pex import VenvPexProcess
from pants.base.build_root import BuildRoot
from pants.engine.addresses import Address, Addresses
from pants.engine.fs import CreateDigest, Digest, FileContent
from pants.engine.process import ProcessCacheScope
from pants.engine.rules import collect_rules, rule
from pants.engine.target import Target
from pants.engine.unions import UnionMembership
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

logger = logging.getLogger(__name__)

REQUEST_FILE = "probe-request.json"
RESULT_FILE = "probe-result.json"

NOT_FOUND = "not_found"

# What a probe outcome means, in the words the summary uses for reads and copies alike (a 401 or
# 403 is `registry_failures.access_denied`).
OUTCOME_MEANINGS = {
    NOT_FOUND: "not found",
    "rate_limited": "rate limited",
    "unreachable": "registry unreachable",
    # The probe's own message says how to trust the registry's CA, or to list it as insecure.
    "tls": "TLS failed",
    "error": "failed",
}

# What the probe says of a 401 beyond its status: no credentials found, or whose were refused.
_WHY_UNAUTHORIZED = re.compile(
    r": (no credentials for \S+ in the Docker config or containers auth files|"
    r"it refused the credentials from .+|it redirected to .+)$"
)


def read_failure(result: ManifestResult, subject: str) -> str:
    """One line: `subject`, what went wrong in plain words, and the probe's own message; for a
    refusal, the registry and how to log in instead."""
    if result.outcome in ACCESS_DENIED:
        why = _WHY_UNAUTHORIZED.search(result.message or "")
        registry = registry_host(result.reference)
        return f"{subject}: {access_denied(result.outcome, registry, why and why.group(1))}"
    meaning = OUTCOME_MEANINGS.get(result.outcome, "failed")
    return f"{subject}: {meaning} ({result.message or result.outcome})"


def probe_settings(subsystem: DockerMirrorSubsystem) -> dict[str, Any]:
    """The `ProbeRequest` fields every request of the plugin takes from its options."""
    return dict(
        insecure_registries=tuple(subsystem.insecure_registries),
        max_concurrency_per_registry=subsystem.registry_concurrency,
        attempts=subsystem.retries + 1,
        timeout_seconds=float(subsystem.registry_timeout),
        max_retry_after_seconds=float(subsystem.max_retry_wait),
    )


def archive_settings(subsystem: DockerMirrorSubsystem, build_root: BuildRoot, sources: Iterable[str]) -> dict[str, Any]:
    """The `ProbeRequest` fields that make it read `sources` (references) from
    `[docker-mirror].from_archive` instead of their registries; none without it."""
    if not subsystem.from_archive:
        return {}
    repositories = {ImageReference.parse(source).archive_repository for source in sources}
    return dict(archive=os.path.join(build_root.path, subsystem.from_archive), archived=tuple(sorted(repositories)))


def provenance_settings(subsystem: DockerMirrorSubsystem, build_root: BuildRoot) -> dict[str, Any]:
    """The `ProbeRequest` field that makes it check, and write, the mirror's provenance
    attestation: the key's path (the probe reads the key itself: its bytes go through no argv,
    no Pants store, no log); none without `[docker-mirror].provenance_key`."""
    if not subsystem.provenance_key:
        return {}
    path = os.path.join(build_root.path, subsystem.provenance_key)
    _warn_if_open(path)
    return dict(provenance_key=path)


@functools.lru_cache(maxsize=None)
def _warn_if_open(path: str) -> None:
    """Once per key file and pantsd: a private key others may read is worth a warning."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # the probe says what is wrong with it
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            f"The `[docker-mirror].provenance_key` file {path} may be read by others than its owner "
            f"(mode {stat.S_IMODE(mode):o}): `chmod 600` it."
        )


def manifest_reads(references: Mapping[str, bool]) -> tuple[ManifestRead, ...]:
    """A read per reference (reference -> whether its body is needed), in order."""
    return tuple(ManifestRead(reference, need_body) for reference, need_body in sorted(references.items()))


def merge_needs(needs: Iterable[tuple[str, bool]]) -> dict[str, bool]:
    """One entry per reference; its body is needed if any asker needs it."""
    merged: dict[str, bool] = {}
    for reference, need_body in needs:
        merged[reference] = merged.get(reference, False) or need_body
    return merged


def merge_reads(reads: Iterable[ReferrersRead]) -> tuple[ReferrersRead, ...]:
    """One read per (reference, platform, platforms), with the destinations of all who ask."""
    merged: dict[tuple[str, str | None, tuple[str, ...]], set[str]] = {}
    for read in reads:
        merged.setdefault(read.key, set()).update(read.destinations)
    return tuple(
        ReferrersRead(reference, platform, tuple(sorted(destinations)), platforms)
        for (reference, platform, platforms), destinations in sorted(
            merged.items(), key=lambda item: (item[0][0], item[0][1] or "", item[0][2])
        )
    )


def probe_process(
    probe: RegistryProbe,
    input_digest: Digest,
    *,
    description: str,
    env: Mapping[str, str],
    cache_scope: ProcessCacheScope,
    argv: tuple[str, ...] = (REQUEST_FILE, RESULT_FILE),
    output_files: tuple[str, ...] = (RESULT_FILE,),
    append_only_caches: Mapping[str, str] | None = None,
) -> VenvPexProcess:
    """The probe, reading `REQUEST_FILE` from `input_digest` and writing `RESULT_FILE` (or
    another of its commands, by `argv`)."""
    return VenvPexProcess(
        probe.pex,
        argv=argv,
        description=description,
        input_digest=input_digest,
        output_files=output_files,
        extra_env=FrozenDict(env),
        level=LogLevel.DEBUG,
        cache_scope=cache_scope,
        append_only_caches=append_only_caches,
    )


def failed_probe_message(stderr: bytes, exit_code: int) -> str:
    """A probe process that failed, in one line: its last line of stderr."""
    lines = stderr.decode(errors="replace").strip().splitlines()
    return f"the registry probe failed: {lines[-1] if lines else f'exit code {exit_code}'}"


def read_result(contents: Iterable[FileContent]) -> tuple[ProbeResult | None, str]:
    """The probe's result file, and what to say of anything asked for that it holds no result for."""
    content = next((file.content for file in contents if file.path == RESULT_FILE), b"")
    try:
        return parse_result(content), "the registry probe gave no result for it"
    except ResultError as e:
        return None, f"the registry probe wrote no readable result ({e})"


@dataclass(frozen=True)
class RegistryReads:
    """What the probe read: a `ManifestResult` by reference, and what refers to each source
    digest asked for, by (reference, platform)."""

    by_reference: FrozenDict[str, ManifestResult]
    referrers: FrozenDict[tuple[str, str | None, tuple[str, ...]], ReferrersResult] = FrozenDict()

    @classmethod
    def answered(
        cls,
        result: ProbeResult | None,
        problem: str,
        references: Iterable[str],
        referrers: Sequence[ReferrersRead] = (),
    ) -> RegistryReads:
        """What `result` says of each of `references` and `referrers`; what it does not answer is
        an `error` (`problem`), so that a broken probe fails images instead of passing them as up
        to date, or letting them go without what refers to them."""
        manifests = {m.reference: m for m in result.results} if result else {}
        found = {r.key: r for r in result.referrers} if result else {}
        return cls(
            FrozenDict(
                {
                    reference: manifests.get(reference) or ManifestResult(reference, "error", message=problem)
                    for reference in references
                }
            ),
            FrozenDict(
                {
                    read.key: found.get(read.key)
                    or ReferrersResult(read.reference, read.platform, error=problem, platforms=read.platforms)
                    for read in referrers
                }
            ),
        )

    @functools.cached_property
    def fingerprint(self) -> str:
        """A digest of everything read. What is decided from these reads carries it, not the
        reads: every image of a generator shares them, and comparing them once per image cost
        pantsd O(N²) when it compared its packages (13 s for a no-op of 1,000 images)."""
        return hashlib.sha256(repr((self.by_reference, self.referrers)).encode()).hexdigest()

    def referrers_of(
        self, reference: str, platform: str | None, platforms: tuple[str, ...] = ()
    ) -> ReferrersResult:
        return self.referrers.get((reference, platform, platforms)) or ReferrersResult(
            reference, platform, error="they were not read", platforms=platforms
        )

    def get(self, reference: str) -> ManifestResult:
        return self.by_reference.get(reference) or ManifestResult(
            reference, "error", message="it was not read"
        )

    def served_digest(self, reference: str) -> str | None:
        """The digest `reference` serves now; None if it serves nothing, or could not be read
        (then a copy is attempted, and reports the real problem)."""
        probed = self.get(reference)
        return probed.digest if probed.found else None


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
    # With `platform`: the digest of the index the platform's manifest was picked from. With
    # `subset`: the digest of the source's index that `digest` is filtered from.
    index_digest: str | None = None
    error: str | None = None
    # `platforms` of the image: those asked for, and those of them the index does not have.
    subset: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    # With `subset`, every platform of the source's index.
    source_platforms: tuple[str, ...] | None = None
    # The archive it was read from instead of its registry (`[docker-mirror].from_archive`).
    archive: str | None = None

    @property
    def shown(self) -> str:
        """The reference, and the archive it was read from if any."""
        return f"{self.reference} in the archive {self.archive}" if self.archive else self.reference

    @property
    def pinned(self) -> str:
        """`<name>@<digest>`: what is copied, immune to a tag moving in the meantime (with
        `subset`, the source's index, which the filtered one is made from)."""
        assert self.digest is not None, "an unresolved source has nothing to pin"
        digest = self.index_digest if self.subset and self.index_digest else self.digest
        return ImageReference.parse(self.reference).pinned(digest)

    @property
    def summary(self) -> str:
        """`sha256:<12 hex>, <what>`, e.g. `sha256:cdae6a0d2d62, 2 platforms: linux/amd64, ...`."""
        short = (self.digest or "")[: len("sha256:") + 12]
        if self.subset and self.platforms is None and self.digest is not None:
            what = "a single-platform image, copied as it is (`platforms` picks from an index)"
        elif self.subset and self.platforms is not None:
            kept = f"{', '.join(self.platforms)}"
            if self.digest == self.index_digest:
                what = f"{len(self.platforms)} platforms: {kept} (all it has, so the source's index as it is"
            else:
                what = (
                    f"{len(self.platforms)} of {len(self.source_platforms or ())} platforms: {kept} "
                    f"(filtered from the source's index {(self.index_digest or '')[: len('sha256:') + 12]}, "
                    "whose own signatures do not name this digest"
                )
            if self.missing:
                what += f"; it has no {', '.join(self.missing)}"
            what += ")"
        elif self.platform:
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


def source_read(
    reference: str, platform: str | None, platforms: tuple[str, ...] = ()
) -> tuple[str, bool] | None:
    """What to ask the source registry for (reference, whether the body is needed), or None
    for a reference pinned by digest, which needs no request."""
    parsed = ImageReference.parse(reference)
    if parsed.digest is not None and platform is None and not platforms:
        return None
    # A `--platform=` line picks its platform's manifest from the image index's body, and
    # `platforms` filters it.
    return parsed.manifest_reference, platform is not None or bool(platforms)


def resolve_source(
    reference: str, platform: str | None, reads: RegistryReads, platforms: tuple[str, ...] = ()
) -> ResolvedSource:
    """The source as the registry probe saw it (see `source_read`)."""
    unresolved = ResolvedSource(reference, platform, subset=platforms)
    read = source_read(reference, platform, platforms)
    if read is None:
        return ResolvedSource(reference, None, digest=ImageReference.parse(reference).digest)
    probed = reads.get(read[0])
    subject = f"source {at_registry(reference)}"
    if not probed.found:
        return _failed(unresolved, read_failure(probed, subject))
    if platform is None and not platforms and probed.body is None:
        return ResolvedSource(
            reference, None, digest=probed.digest, media_type=probed.media_type
        )
    if probed.body is None:
        return _failed(unresolved, f"{subject}: the registry sent no image index")
    if platforms:
        try:
            manifest = parse_manifest(probed.body)
            narrowed = narrowed_index(probed.body, platforms)
        except ManifestError as e:
            return _failed(unresolved, f"{subject}: {e}")
        return ResolvedSource(
            reference,
            None,
            digest=narrowed.digest,
            media_type=manifest.media_type,
            platforms=narrowed.kept if manifest.is_index else None,
            index_digest=manifest.digest,
            subset=platforms,
            missing=narrowed.missing,
            source_platforms=manifest.platforms,
        )
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


def source_referrers(source: ResolvedSource, reads: RegistryReads) -> ReferrersResult | None:
    """What refers to the source's digest and what each destination repository lacks of it, as
    the probe read them with the source; None for a source that could not be resolved (its own
    error is reported instead)."""
    if source.digest is None:
        return None
    manifest_reference = ImageReference.parse(source.reference).manifest_reference
    referrers = reads.referrers_of(manifest_reference, source.platform, source.subset)
    # Those of a filtered index are its platform manifests', read with the source's index.
    read_for = source.index_digest if source.subset else source.digest
    if referrers.error is None and referrers.subject != read_for:
        return dataclasses.replace(
            referrers,
            error=f"they were read for {referrers.subject}, not for {read_for}",
        )
    return referrers


def _failed(source: ResolvedSource, error: str) -> ResolvedSource:
    return ResolvedSource(source.reference, source.platform, error=error, subset=source.subset)


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
        platforms = target[DockerMirrorPlatformsField].value or ()
        read = source_read(source, platform, platforms)
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
                    platforms,
                )
            )
    return merge_needs(needs), merge_reads(referrers)


def reads_owner(image: Address) -> Address:
    """Whose reads an image shares: its generator's, or its own if it was written by hand."""
    return image.maybe_convert_to_target_generator() if image.is_generated_target else image


# ---------------------------------------------------------------------------------------------
# Rules


@dataclass(frozen=True)
class RegistryReadsRequest:
    """References to read (reference -> whether its body is needed), what refers to which source
    digests, and who asks."""

    references: FrozenDict[str, bool]
    description: str
    referrers: tuple[ReferrersRead, ...] = ()
    # The source references, which `[docker-mirror].from_archive` reads from its archive.
    sources: tuple[str, ...] = ()


@rule(desc="Reading registries", level=LogLevel.DEBUG)
async def read_registries(
    request: RegistryReadsRequest,
    probe: RegistryProbe,
    subsystem: DockerMirrorSubsystem,
    environment: RegistryClientEnvironment,
    build_root: BuildRoot,
) -> RegistryReads:
    if not request.references and not request.referrers:
        return RegistryReads(FrozenDict())
    probe_request = ProbeRequest(
        manifest_reads(request.references),
        referrers=request.referrers,
        **probe_settings(subsystem),
        **archive_settings(subsystem, build_root, request.sources),
        **provenance_settings(subsystem, build_root),
    )
    input_digest = await created_digest(CreateDigest([FileContent(REQUEST_FILE, encoded(probe_request))]))
    process = await venv_pex_process(
        probe_process(
            probe,
            input_digest,
            description=(
                f"Reading {len(request.references)} image references for {request.description}"
            ),
            env=environment.env,
            # Registries change between runs: ask them again in every run, once per run.
            cache_scope=ProcessCacheScope.PER_SESSION,
        )
    )
    result = await process_result(process)
    if result.exit_code != 0:
        answer: ProbeResult | None = None
        problem = failed_probe_message(result.stderr, result.exit_code)
    else:
        answer, problem = read_result(await digest_contents(result.output_digest))
    return RegistryReads.answered(answer, problem, request.references, request.referrers)


@dataclass(frozen=True)
class GeneratorReadsRequest:
    """The reads of every `docker_mirror_image` that `owner` stands for."""

    owner: Address


registry_reads_for = rule_call(read_registries)


@rule(desc="Reading what a generator's images need from registries", level=LogLevel.DEBUG)
async def generator_reads(
    request: GeneratorReadsRequest, docker: DockerOptions, union_membership: UnionMembership
) -> RegistryReads:
    generated = await targets(Addresses([request.owner]))
    images = [target for target in generated if target.has_field(DockerMirrorSourceImageField)]
    references, referrers = reads_needed(images, docker, union_membership)
    sources = tuple(sorted({str(target[DockerMirrorSourceImageField].value) for target in images}))
    return await registry_reads_for(
        RegistryReadsRequest(
            FrozenDict(references), description=str(request.owner), referrers=referrers, sources=sources
        )
    )


reads_of = rule_call(generator_reads)


def rules():
    return collect_rules()
