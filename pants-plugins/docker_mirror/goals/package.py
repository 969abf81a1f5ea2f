"""`pants package` of a `docker_mirror_image`: its source resolved to a digest, what its
destinations serve, and a JSON record under `dist/`. A source that cannot be resolved is recorded,
not raised, so that `publish` still copies every other image."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from docker_mirror.compat import concurrently, created_digest, digest_subset, rule_call, targets
from docker_mirror.oci.reference import ImageReference, registry_host
from docker_mirror.subsystems.docker_mirror import DockerMirrorSubsystem
from docker_mirror.target_types import (
    DockerMirrorImageOutputPathField,
    DockerMirrorImageRegistriesField,
    DockerMirrorImageRepositoryField,
    DockerMirrorImageSkipPushField,
    DockerMirrorImageTagsField,
    DockerMirrorPlatformField,
    DockerMirrorPlatformsField,
    DockerMirrorReferrersField,
    DockerMirrorRequireSignatureField,
    DockerMirrorSignatureIdentityField,
    DockerMirrorSourceImageField,
)
from docker_mirror.util_rules.destinations import Destination, mirror_destinations
from docker_mirror.oci.probe_protocol import ReferrersResult
from docker_mirror.util_rules.registry_reads import (
    NOT_FOUND,
    GeneratorReadsRequest,
    RegistryReads,
    ResolvedSource,
    destinations_to_check,
    read_failure,
    reads_of,
    reads_owner,
    resolve_source,
    source_referrers,
)
from docker_mirror.util_rules.registry_failures import at_registry, unread_referrers
from docker_mirror.util_rules.signature_keys import SignatureKeysRequest, resolve_signature_keys
from pants.backend.docker.subsystems.docker_options import DockerOptions
from pants.core.goals.package import BuiltPackage, BuiltPackageArtifact, PackageFieldSet
from pants.engine.addresses import Address, Addresses
from pants.engine.fs import CreateDigest, Digest, DigestSubset, FileContent, PathGlobs
from pants.engine.rules import collect_rules, rule
from pants.engine.unions import UnionMembership, UnionRule
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

RECORD_VERSION = 1


@dataclass(frozen=True)
class DockerMirrorCopyPackageFieldSet(PackageFieldSet):
    required_fields = (DockerMirrorSourceImageField,)

    source_image: DockerMirrorSourceImageField
    platform: DockerMirrorPlatformField
    platforms: DockerMirrorPlatformsField
    registries: DockerMirrorImageRegistriesField
    repository: DockerMirrorImageRepositoryField
    image_tags: DockerMirrorImageTagsField
    skip_push: DockerMirrorImageSkipPushField
    output_path: DockerMirrorImageOutputPathField
    referrers: DockerMirrorReferrersField
    require_signature: DockerMirrorRequireSignatureField
    signature_identity: DockerMirrorSignatureIdentityField


@dataclass(frozen=True)
class BuiltMirrorImage(BuiltPackageArtifact):
    """The package of a `docker_mirror_image`: its JSON record, and what `publish` needs."""

    source: ResolvedSource = ResolvedSource("", None)
    destinations: tuple[Destination, ...] = ()
    # (reference, the digest it serves now or None) of each destination `publish` writes to.
    served: tuple[tuple[str, str | None], ...] = ()
    # What refers to the source digest, and what each destination repository lacks of it; None
    # when the image copies no referrers (`referrers=False`).
    referrers: ReferrersResult | None = None
    # `require_signature`: the keys (paths from the build root) a signature must verify against.
    signature_keys: tuple[str, ...] = ()
    # With `signature_identity="source_repository"`: the repository a verifying signature must
    # have been signed for.
    signed_identity: str | None = None
    # How each destination whose read failed (other than "not found") failed: refused, say.
    unreadable: tuple[str, ...] = ()
    # Whose registry reads these are, and their `fingerprint`: `publish` copies only while its
    # run's reads are still these (see `copy_to_repository`).
    reads_owner: Address | None = None
    reads_fingerprint: str | None = None


def short_digest(digest: str | None) -> str:
    return (digest or "")[: len("sha256:") + 12]


def unreadable_destinations(
    destinations: Sequence[Destination], reads: RegistryReads
) -> tuple[str, ...]:
    """How each of `destinations` failed its read, for those that did not answer with a digest
    or "not found" (a refusal, an unreachable registry): reported at `package`, before any copy
    is attempted (`publish` still attempts it, and reports what the copy meets)."""
    return tuple(
        read_failure(probed, f"destination {at_registry(destination.reference)}")
        for destination in destinations
        for probed in [reads.get(destination.reference)]
        if not probed.found and probed.outcome != NOT_FOUND
    )


def unread_referrers_message(
    source: ResolvedSource, referrers: ReferrersResult, unreadable: Sequence[str] = ()
) -> str:
    """Why an image whose referrers could not be read is not copied (see `unread_referrers`)."""
    return unread_referrers(
        f"{source.reference} ({short_digest(source.digest)})",
        registry_host(source.reference),
        referrers.error or "they could not be read",
        referrers.error_kind,
        unreadable,
    )


def package_line(
    source: ResolvedSource, referrers: ReferrersResult | None, unreadable: Sequence[str] = ()
) -> str:
    """What `pants package` says of an image: what its source resolved to, or why it did not,
    and anything that will keep it from being copied."""
    if source.error:
        return f"Could not resolve {source.error}"
    line = f"Resolved {source.shown} to {source.summary}"
    if referrers is not None and referrers.error:
        return f"{line}; {unread_referrers_message(source, referrers, unreadable)}"
    if unreadable:
        line += "; " + "; ".join(unreadable)
    if referrers is not None:
        line += f"; referrers at the source: {referrers.summary}"
    return line


def referrers_record(referrers: ReferrersResult | None) -> dict | None:
    """What refers to the source digest, as the record shows it: what the source has, by kind
    (of the image, and of its index's platform manifests), and what each destination repository
    lacks."""
    if referrers is None:
        return None
    return {
        "subject": referrers.subject,
        "at_source": dict(referrers.found),
        "of_platform_manifests": dict(referrers.on_platforms),
        "to_copy": {
            repository: [
                {"kind": item.kind, "digest": item.digest, "tag": item.tag} for item in plan.items
            ]
            for repository, plan in sorted(referrers.plans, key=lambda entry: entry[0])
            if plan.items
        },
        "error": referrers.error,
    }


def mirror_record(
    address: str,
    source: ResolvedSource,
    destinations: Sequence[Destination],
    referrers: ReferrersResult | None = None,
    signature_keys: Sequence[str] = (),
) -> bytes:
    """The JSON record of one mirrored image, as written under `dist/` by `pants package`."""
    record = {
        "version": RECORD_VERSION,
        "address": address,
        "source": {
            "reference": source.reference,
            "registry": registry_host(source.reference),
            "platform": source.platform,
            "digest": source.digest,
            "media_type": source.media_type,
            "platforms": list(source.platforms) if source.platforms is not None else None,
            "index_digest": source.index_digest,
            "pinned": source.pinned if source.digest else None,
            "archive": source.archive,
            # `platforms`: those asked for, and those of them the source's index lacks.
            "platforms_asked": list(source.subset) if source.subset else None,
            "platforms_missing": list(source.missing) if source.subset else None,
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
        "referrers": referrers_record(referrers),
        "require_signature": list(signature_keys),
    }
    return (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()


IDENTITY_MODES = ("key", "source_repository")


def required_identity(
    mode: str | None, default_mode: str, source: str, signature_keys: Sequence[str]
) -> str | None:
    """The repository a signature must have been signed for to pass `require_signature`
    (`signature_identity`, else `[docker-mirror].signature_identity`), or None."""
    chosen = mode or default_mode
    if chosen not in IDENTITY_MODES:
        raise ValueError(
            f"`[docker-mirror].signature_identity` must be one of {', '.join(IDENTITY_MODES)}, not {chosen!r}"
        )
    if not signature_keys or chosen == "key":
        return None
    return ImageReference.parse(source).archive_repository


def image_package(
    field_set: DockerMirrorCopyPackageFieldSet,
    reads: RegistryReads,
    signature_keys: tuple[str, ...],
    docker: DockerOptions,
    union_membership: UnionMembership,
    archive: str | None = None,
    identity_mode: str = "key",
) -> tuple[FileContent, BuiltMirrorImage]:
    """One image's record file and package artifact, from its generator's registry reads (of
    `archive` instead of the source registry, with `[docker-mirror].from_archive`)."""
    source = resolve_source(
        field_set.source_image.value, field_set.platform.value, reads, field_set.platforms.value or ()
    )
    if archive:
        source = dataclasses.replace(source, archive=archive)
    destinations = mirror_destinations(
        field_set.address,
        registries=field_set.registries.value,
        repository=field_set.repository.value,
        image_tags=field_set.image_tags.value,
        docker_registries=docker.registries(),
        default_repository=docker.default_repository,
        union_membership=union_membership,
    )
    to_check = destinations_to_check(destinations, skip_push=field_set.skip_push.value)
    served = tuple((d.reference, reads.served_digest(d.reference)) for d in to_check)
    unreadable = unreadable_destinations(to_check, reads)
    referrers = (
        source_referrers(source, reads) if field_set.referrers.value and served else None
    )
    relpath = field_set.output_path.value_or_default(file_ending="docker-mirror.json")
    record = mirror_record(str(field_set.address), source, destinations, referrers, signature_keys)
    artifact = BuiltMirrorImage(
        relpath,
        (package_line(source, referrers, unreadable),),
        source=source,
        destinations=destinations,
        served=served,
        referrers=referrers,
        signature_keys=signature_keys,
        signed_identity=required_identity(
            field_set.signature_identity.value, identity_mode, field_set.source_image.value or "", signature_keys
        ),
        unreadable=unreadable,
        reads_owner=reads_owner(field_set.address),
        reads_fingerprint=reads.fingerprint,
    )
    return FileContent(relpath, record), artifact


def shared_record_paths(records: Sequence[FileContent]) -> frozenset[str]:
    """The record paths that one digest can hold for all: each written by one image only (an
    `output_path` given to two images is left to each image's own digest, where Pants reports
    the clash as it would anyway)."""
    counts = Counter(record.path for record in records)
    return frozenset(path for path, count in counts.items() if count == 1)


@dataclass(frozen=True)
class GeneratorPackagesRequest:
    """The packages of every `docker_mirror_image` that `owner` stands for."""

    owner: Address


@dataclass(frozen=True)
class GeneratorPackages:
    """Every image package of a generator, and one digest holding their records.

    One digest for all, not one per image: up to Pants 2.23 every `CreateDigest` hashes alike
    (pantsbuild/pants#21725), so one per image made a no-op of N images cost O(N²) in pantsd.
    """

    digest: Digest
    shared_paths: frozenset[str]
    artifacts: FrozenDict[Address, BuiltMirrorImage]
    own_records: FrozenDict[Address, FileContent]


signature_keys_of = rule_call(resolve_signature_keys)


@rule(desc="Resolving a generator's images to mirror", level=LogLevel.DEBUG)
async def generator_packages(
    request: GeneratorPackagesRequest,
    docker: DockerOptions,
    union_membership: UnionMembership,
    subsystem: DockerMirrorSubsystem,
) -> GeneratorPackages:
    reads = await reads_of(GeneratorReadsRequest(request.owner))
    generated = await targets(Addresses([request.owner]))
    field_sets = [
        DockerMirrorCopyPackageFieldSet.create(target)
        for target in generated
        if DockerMirrorCopyPackageFieldSet.is_applicable(target)
    ]
    signed = [field_set for field_set in field_sets if field_set.require_signature.value]
    keys = await concurrently(
        signature_keys_of(
            SignatureKeysRequest(
                field_set.require_signature.value or (),
                field_set.address.spec_path,
                str(field_set.address),
            )
        )
        for field_set in signed
    )
    key_paths = {field_set.address: found.paths for field_set, found in zip(signed, keys)}
    packages = [
        image_package(
            field_set,
            reads,
            key_paths.get(field_set.address, ()),
            docker,
            union_membership,
            subsystem.from_archive,
            subsystem.signature_identity,
        )
        for field_set in field_sets
    ]
    records = [record for record, _ in packages]
    shared = shared_record_paths(records)
    digest = await created_digest(CreateDigest([r for r in records if r.path in shared]))
    return GeneratorPackages(
        digest,
        shared,
        FrozenDict(
            (field_set.address, artifact)
            for field_set, (_, artifact) in zip(field_sets, packages)
        ),
        FrozenDict(
            (field_set.address, record)
            for field_set, record in zip(field_sets, records)
            if record.path not in shared
        ),
    )


packages_of = rule_call(generator_packages)


@rule(desc="Resolving an image to mirror")
async def package_docker_mirror_image(field_set: DockerMirrorCopyPackageFieldSet) -> BuiltPackage:
    packages = await packages_of(GeneratorPackagesRequest(reads_owner(field_set.address)))
    artifact = packages.artifacts[field_set.address]
    if artifact.relpath in packages.shared_paths:
        digest = await digest_subset(
            DigestSubset(packages.digest, PathGlobs([artifact.relpath or ""]))
        )
    else:
        digest = await created_digest(CreateDigest([packages.own_records[field_set.address]]))
    return BuiltPackage(digest, (artifact,))


def rules():
    return (*collect_rules(), UnionRule(PackageFieldSet, DockerMirrorCopyPackageFieldSet))
