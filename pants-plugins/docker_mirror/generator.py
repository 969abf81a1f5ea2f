"""The rule behind `docker_mirror_images`: one target per spec-file line (see `generation`)."""

from __future__ import annotations

from typing import Sequence

from docker_mirror.compat import (
    AddressFamilyDir,
    UnmatchedBuildFileGlobs,
    address_family,
    concurrently,
    path_globs_contents,
    rule_call,
)
from docker_mirror.generation import (
    COPY,
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
from docker_mirror.spec import SpecError
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
from pants.core.target_types import (
    TargetGeneratorSourcesHelperSourcesField,
    TargetGeneratorSourcesHelperTarget,
)
from pants.engine.addresses import Address
from pants.engine.rules import collect_rules, rule
from pants.engine.target import GeneratedTargets, GenerateTargetsRequest, InvalidTargetException
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


@rule(desc="Generate images to mirror from `docker_mirror_images` spec files", level=LogLevel.DEBUG)
async def generate_docker_mirror_images(
    request: GenerateFromDockerMirrorImagesRequest,
    union_membership: UnionMembership,
    unmatched_build_file_globs: UnmatchedBuildFileGlobs,
    subsystem: DockerMirrorSubsystem,
    docker: DockerOptions,
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

    # Each image owns its own spec file (`spec_file`), so that `--changed-since` selects the images
    # of the files that changed. So does one private helper target per spec file, which the
    # file's images depend on: `docker-mirror-pin` finds a spec file given by name through it,
    # and a file whose lines generate no image still has an owner.
    relative_paths = {
        file.path: spec_file_relative_path(file.path, generator_address.spec_path)
        for file in contents
    }
    helpers = {
        path: TargetGeneratorSourcesHelperTarget(
            {TargetGeneratorSourcesHelperSourcesField.alias: relative_path},
            Address(
                generator_address.spec_path,
                target_name=generator_address.target_name,
                relative_file_path=relative_path,
            ),
            union_membership,
        )
        for path, relative_path in relative_paths.items()
    }
    method = request.generator[DockerMirrorImagesMethodField].value
    if method == COPY:
        check_copy_method_fields(request.template, overrides, generator=str(generator_address))
    else:
        check_build_method_fields(request.template, overrides, generator=str(generator_address))
    target_cls = DockerMirrorImageTarget if method == COPY else DockerMirrorBuildImageTarget
    defaults = applicable_defaults(
        family.defaults.get(target_cls.alias, {}),
        target_alias=target_cls.alias,
        generator=str(generator_address),
    )
    planned = [
        (
            image,
            image_field_values(
                image,
                method=method,
                defaults=defaults,
                template=request.template,
                overrides=overrides.get(image.name, {}),
                spec_file=relative_paths[image.entry.path],
                helper_spec=helpers[image.entry.path].address.spec,
            ),
        )
        for image in images
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
    return GeneratedTargets(request.generator, [*mirror_images, *helpers.values()])


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
