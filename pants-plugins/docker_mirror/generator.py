"""The rule behind `docker_mirror_images`: one target per spec-file line (see `generation`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from docker_mirror.compat import (
    AddressFamilyDir,
    UnmatchedBuildFileGlobs,
    address_families,
    address_family,
    concurrently,
    generator_requests,
    path_globs_contents,
    rule_call,
)
from docker_mirror.destination_clashes import (
    DestinationClash,
    MirroredImage,
    clash_message,
    find_destination_clashes,
    image_writes,
    mirrored_image,
)
from docker_mirror.generation import (
    COPY,
    PlannedImage,
    applicable_defaults,
    check_allowed_source_registries,
    check_build_method_fields,
    check_copy_method_fields,
    check_destination_clashes,
    check_override_names,
    has_destination_registry,
    image_field_values,
    no_destination_message,
    plan_images,
    signature_key_problem,
    spec_file_relative_path,
)
from docker_mirror.spec_files.parser import SpecError
from docker_mirror.util_rules.signature_keys import SignatureKeysRequest, resolve_signature_keys
from docker_mirror.util_rules import signature_keys as signature_keys_rules
from docker_mirror.subsystems.docker_mirror import DockerMirrorSubsystem
from docker_mirror.target_types import (
    DockerMirrorBuildImageTarget,
    DockerMirrorImagesMethodField,
    DockerMirrorImagesSourcesField,
    DockerMirrorImagesTargetGenerator,
    DockerMirrorImageTarget,
    DockerMirrorRequireSignatureField,
)
from pants.backend.docker.subsystems.docker_options import DockerOptions
from pants.base.specs import RawSpecsWithoutFileOwners, RecursiveGlobSpec
from pants.core.target_types import (
    TargetGeneratorSourcesHelperSourcesField,
    TargetGeneratorSourcesHelperTarget,
)
from pants.engine.addresses import Address
from pants.engine.fs import DigestContents
from pants.engine.internals.graph import ResolveTargetGeneratorRequests
from pants.engine.internals.mapper import AddressFamily
from pants.engine.rules import collect_rules, rule
from pants.engine.target import (
    GeneratedTargets,
    GenerateTargetsRequest,
    InvalidFieldException,
    InvalidTargetException,
    Target,
)
from pants.engine.unions import UnionMembership, UnionRule
from pants.util.logging import LogLevel


signature_keys = rule_call(resolve_signature_keys)


class GenerateFromDockerMirrorImagesRequest(GenerateTargetsRequest):
    generate_from = DockerMirrorImagesTargetGenerator


class DockerMirrorSpecError(InvalidTargetException):
    """A spec file does not parse, or names a registry that is not allowed; its message lists
    every bad line as `path:line: ...`."""


class DockerMirrorNoDestinationError(InvalidTargetException):
    """Images that would be pushed to Docker Hub because no registry was configured."""


class DockerMirrorDestinationClashError(InvalidTargetException):
    """Images of different generators that would overwrite each other at a destination."""


@dataclass(frozen=True)
class DestinationClashes:
    """Images of the repository's generators that would write different images to one
    destination reference (see `docker_mirror.destination_clashes`)."""

    clashes: tuple[DestinationClash, ...]


@rule(desc="Generate images to mirror from `docker_mirror_images` spec files", level=LogLevel.DEBUG)
async def generate_docker_mirror_images(
    request: GenerateFromDockerMirrorImagesRequest,
    union_membership: UnionMembership,
    unmatched_build_file_globs: UnmatchedBuildFileGlobs,
    subsystem: DockerMirrorSubsystem,
    docker: DockerOptions,
    clashes: DestinationClashes,
) -> GeneratedTargets:
    generator_address = request.template_address
    sources = request.generator[DockerMirrorImagesSourcesField]
    # The generator's `sources` is not a `SourcesField` (see its docstring): read the files here.
    contents, family = await concurrently(
        path_globs_contents(sources.path_globs(unmatched_build_file_globs)),
        address_family(AddressFamilyDir(generator_address.spec_path)),
    )
    if not contents:
        raise InvalidTargetException(
            f"{generator_address}: no spec file matches the `sources` globs {list(sources.globs)}."
        )
    method, planned = plan_generator(request, contents, family, subsystem)
    target_cls = generated_target_type(method)
    # Each image owns its own spec file (`spec_file`), so that `--changed-since` selects the images
    # of the files that changed. So does one private helper target per spec file, which the
    # file's images depend on: `docker-mirror-pin` finds a spec file given by name through it,
    # and a file whose lines generate no image still has an owner.
    helpers = [
        TargetGeneratorSourcesHelperTarget(
            {TargetGeneratorSourcesHelperSourcesField.alias: address.relative_file_path},
            address,
            union_membership,
        )
        for address in (helper_address(generator_address, file.path) for file in contents)
    ]
    docker_registries = docker.registries()
    homeless = [
        str(generator_address.create_generated(image.name))
        for image, values in planned
        if not has_destination_registry(values, docker_registries)
    ]
    if homeless:
        raise DockerMirrorNoDestinationError(
            no_destination_message(str(generator_address), homeless)
        )
    try:
        check_destination_clashes(planned)
    except SpecError as e:
        raise DockerMirrorSpecError(
            f"{generator_address}: images would overwrite each other, no image generated:\n{e}"
        ) from None
    clash = clash_message(str(generator_address), clashes.clashes)
    if clash:
        raise DockerMirrorDestinationClashError(clash)
    mirror_images = [
        target_cls(values, generator_address.create_generated(image.name), union_membership)
        for image, values in planned
    ]
    key_paths = tuple(
        dict.fromkeys(
            path
            for target in mirror_images
            if target.has_field(DockerMirrorRequireSignatureField)
            for path in target[DockerMirrorRequireSignatureField].value or ()
        )
    )
    if key_paths:
        keys = await signature_keys(
            SignatureKeysRequest(key_paths, generator_address.spec_path, str(generator_address))
        )
        check_signature_keys(keys.contents, generator=str(generator_address))
    return GeneratedTargets(request.generator, [*mirror_images, *helpers])


def generated_target_type(method: str) -> type[Target]:
    return DockerMirrorImageTarget if method == COPY else DockerMirrorBuildImageTarget


def helper_address(generator_address: Address, spec_path: str) -> Address:
    """The address of the private helper target that owns a spec file."""
    return Address(
        generator_address.spec_path,
        target_name=generator_address.target_name,
        relative_file_path=spec_file_relative_path(spec_path, generator_address.spec_path),
    )


def plan_generator(
    request: GenerateFromDockerMirrorImagesRequest,
    contents: DigestContents,
    family: AddressFamily,
    subsystem: DockerMirrorSubsystem,
) -> tuple[str, list[tuple[PlannedImage, dict[str, Any]]]]:
    """The method and the images of a generator with their field values, from its spec files;
    raises what is wrong with them, naming the generator."""
    generator_address = request.template_address
    try:
        images = plan_images((file.path, file.content) for file in contents)
    except SpecError as e:
        raise DockerMirrorSpecError(
            f"{generator_address}: invalid spec file, no image generated:\n{e}"
        ) from None
    try:
        check_allowed_source_registries(images, subsystem.allowed_source_registries)
    except SpecError as e:
        raise DockerMirrorSpecError(
            f"{generator_address}: a source registry is not allowed, no image generated:\n{e}"
        ) from None
    overrides = request.require_unparametrized_overrides()
    check_override_names(overrides, images, generator=str(generator_address))
    method = request.generator[DockerMirrorImagesMethodField].value
    if method == COPY:
        check_copy_method_fields(request.template, overrides, generator=str(generator_address))
    else:
        check_build_method_fields(request.template, overrides, generator=str(generator_address))
    target_alias = generated_target_type(method).alias
    defaults = applicable_defaults(
        family.defaults.get(target_alias, {}),
        target_alias=target_alias,
        generator=str(generator_address),
    )
    return method, [
        (
            image,
            image_field_values(
                image,
                method=method,
                defaults=defaults,
                template=request.template,
                overrides=overrides.get(image.name, {}),
                spec_file=spec_file_relative_path(image.entry.path, generator_address.spec_path),
                helper_spec=helper_address(generator_address, image.entry.path).spec,
            ),
        )
        for image in images
    ]


_CHECK = "the check that no two `docker_mirror_images` write different images to one tag"


@dataclass(frozen=True)
class GeneratorWritesRequest:
    address: Address


@dataclass(frozen=True)
class GeneratorWrites:
    """(destination reference, image) for every reference a generator's images would write."""

    writes: tuple[tuple[str, MirroredImage], ...]


@rule(desc="Find where a `docker_mirror_images` generator's images go", level=LogLevel.DEBUG)
async def generator_writes(
    request: GeneratorWritesRequest,
    subsystem: DockerMirrorSubsystem,
    docker: DockerOptions,
    union_membership: UnionMembership,
) -> GeneratorWrites:
    # A generator that is wrong in itself generates nothing, and its own generation says why:
    # it must not fail the generation of every other generator of the repository.
    try:
        resolved = await generator_requests(
            ResolveTargetGeneratorRequests(request.address, description_of_origin=_CHECK)
        )
    except (InvalidFieldException, InvalidTargetException):
        return GeneratorWrites(())
    generates = [r for r in resolved.requests if isinstance(r, GenerateFromDockerMirrorImagesRequest)]
    if not generates:
        return GeneratorWrites(())
    # `sources` cannot be parametrized: every parametrization reads the same files.
    contents, family = await concurrently(
        path_globs_contents(
            generates[0]
            .generator[DockerMirrorImagesSourcesField]
            .path_globs(UnmatchedBuildFileGlobs.ignore())
        ),
        address_family(AddressFamilyDir(request.address.spec_path)),
    )
    docker_registries = docker.registries()
    writes: list[tuple[str, MirroredImage]] = []
    for generate in generates:
        try:
            method, planned = plan_generator(generate, contents, family, subsystem)
        except (InvalidFieldException, InvalidTargetException, ValueError):
            continue
        address = generate.template_address
        for image, values in planned:
            target = address.create_generated(image.name)
            mirrored = mirrored_image(address, target, image.entry, method=method, values=values)
            writes.extend(
                image_writes(
                    target,
                    mirrored,
                    values,
                    docker_registries=docker_registries,
                    default_repository=docker.default_repository,
                    union_membership=union_membership,
                )
            )
    return GeneratorWrites(tuple(writes))


writes_of = rule_call(generator_writes)


@rule(desc="Find images that generators would write to one tag", level=LogLevel.DEBUG)
async def find_repository_destination_clashes() -> DestinationClashes:
    # Every generator, read from the BUILD files, not `AllUnexpandedTargets`: resolving a
    # generator target generates its targets, which needs this rule, a cycle.
    families = await address_families(
        RawSpecsWithoutFileOwners(
            recursive_globs=(RecursiveGlobSpec(""),), description_of_origin=_CHECK
        )
    )
    writes = await concurrently(
        writes_of(GeneratorWritesRequest(address))
        for family in families
        for address, adaptor in family.addresses_to_target_adaptors.items()
        if adaptor.type_alias == DockerMirrorImagesTargetGenerator.alias
    )
    return DestinationClashes(
        find_destination_clashes(write for found in writes for write in found.writes)
    )


def check_signature_keys(keys: Sequence[tuple[str, bytes]], *, generator: str) -> None:
    """Refuses `require_signature` files that hold no ECDSA P-256 public key, so that a wrong
    key is named now rather than when the first image is published."""
    problems = [
        f"{path}: {problem}"
        for path, content in sorted(keys)
        for problem in [signature_key_problem(content)]
        if problem
    ]
    if problems:
        raise InvalidTargetException(
            f"{generator}: a `require_signature` key is not usable:\n" + "\n".join(problems)
        )


def rules():
    return (
        *collect_rules(),
        *signature_keys_rules.rules(),
        UnionRule(GenerateTargetsRequest, GenerateFromDockerMirrorImagesRequest),
    )
