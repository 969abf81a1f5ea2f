"""Turns parsed spec entries into the field values of the targets a generator makes, for both
methods."""

from __future__ import annotations

import base64
import binascii
import fnmatch
import os
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from docker_mirror.oci.reference import DOCKER_HUB, DOCKER_HUB_NAMES
from docker_mirror.spec_files.parser import SpecEntry, SpecError, SpecLineError, assign_names, parse_spec_files
from docker_mirror.target_types import (
    DockerMirrorImagesBuildArgsField,
    DockerMirrorImagesLabelsField,
    DockerMirrorImageSpecFileField,
    DockerMirrorImagesPullField,
    DockerMirrorPlatformField,
    DockerMirrorPlatformsField,
    DockerMirrorReferrersField,
    DockerMirrorRequireSignatureField,
    DockerMirrorSignatureIdentityField,
    DockerMirrorSourceImageField,
    TARGET_REPOSITORY,
)
from docker_mirror.oci.registry_access import split_registry_address
from pants.backend.docker.registries import DockerRegistries, DockerRegistryOptionsNotFoundError
from pants.backend.docker.target_types import (
    DockerImageBuildPullOptionField,
    DockerImageInstructionsField,
    DockerImageRegistriesField,
    DockerImageRepositoryField,
    DockerImageSkipPushField,
    DockerImageSourceField,
    DockerImageTagsField,
)
from pants.engine.internals.parametrize import Parametrize
from pants.engine.target import Dependencies, InvalidFieldException
from pants.util.strutil import softwrap

BUILD = "build"
COPY = "copy"

# Generator fields that only configure `docker build`.
BUILD_ONLY_FIELDS = (
    DockerMirrorImagesPullField.alias,
    DockerMirrorImagesBuildArgsField.alias,
    DockerMirrorImagesLabelsField.alias,
)
# Generator fields that only configure a registry-to-registry copy.
COPY_ONLY_FIELDS = (
    DockerMirrorReferrersField.alias,
    DockerMirrorRequireSignatureField.alias,
    DockerMirrorPlatformsField.alias,
    DockerMirrorSignatureIdentityField.alias,
)
# What `docker build` needs that a copied image has no use for.
_DOCKER_BUILD_VALUES = (
    DockerImageInstructionsField.alias,
    DockerImageSourceField.alias,
    DockerImageBuildPullOptionField.alias,
)
# What each spec line decides for its own image: `__defaults__` never replace these (the
# generator's fields and `overrides` may).
LINE_FIELDS = frozenset(
    {
        DockerImageInstructionsField.alias,
        DockerImageSourceField.alias,
        DockerMirrorImageSpecFileField.alias,
        DockerImageRepositoryField.alias,
        DockerImageTagsField.alias,
        DockerMirrorSourceImageField.alias,
        DockerMirrorPlatformField.alias,
    }
)


@dataclass(frozen=True)
class PlannedImage:
    """One image to generate: its generated name and its spec line."""

    name: str
    entry: SpecEntry


def plan_images(spec_files: Iterable[tuple[str, bytes]]) -> tuple[PlannedImage, ...]:
    """Parses the spec files of one generator and names their images; raises `SpecError`."""
    entries = parse_spec_files(sorted(spec_files))
    return tuple(PlannedImage(name, entry) for name, entry in assign_names(entries).items())


def applicable_defaults(
    defaults: Mapping[str, Any], *, target_alias: str, generator: str
) -> dict[str, Any]:
    """The `__defaults__` for the generated target type that apply to a generated image: all but
    the per-line fields. Refuses `parametrize`, which would make several images of one line."""
    parametrized = sorted(alias for alias, value in defaults.items() if isinstance(value, Parametrize))
    if parametrized:
        raise InvalidFieldException(
            softwrap(
                f"""
                `__defaults__` for `{target_alias}` parametrize {", ".join(f"`{a}`" for a in
                parametrized)}, which the images that {generator} generates cannot take: one
                spec line makes one image. Parametrize {generator} itself instead.
                """
            )
        )
    return {alias: value for alias, value in defaults.items() if alias not in LINE_FIELDS}


def image_field_values(
    image: PlannedImage,
    *,
    method: str,
    defaults: Mapping[str, Any],
    template: Mapping[str, Any],
    overrides: Mapping[str, Any],
    spec_file: str,
    helper_spec: str,
) -> dict[str, Any]:
    """The field values of the target that mirrors `image`: a `docker_image` with
    `method="build"`, a `docker_mirror_image` with `method="copy"`.

    Precedence, lowest first: `defaults` (see `applicable_defaults`), the spec line's values and
    the generator's own field defaults, the generator's fields (`template`), then the image's
    `overrides`; `{target_repository}` in the `repository` they give is the line's own. The
    image always owns its own spec file (`spec_file`, relative to the BUILD file's directory),
    so that a change to that file (and only that file) selects the image, and depends on that
    file's helper target.
    """
    entry = image.entry
    values: dict[str, Any] = {
        **defaults,
        DockerImageTagsField.alias: [entry.default_image_tag],
        DockerImageBuildPullOptionField.alias: True,
        **template,
        DockerImageInstructionsField.alias: [entry.from_instruction],
        DockerImageRepositoryField.alias: template.get(
            DockerImageRepositoryField.alias, TARGET_REPOSITORY
        ),
        **overrides,
        # In place of `source`: no Dockerfile from the source tree, even if the directory
        # happens to hold one (see `DockerMirrorBuildSpecFileField`).
        DockerMirrorImageSpecFileField.alias: spec_file,
    }
    repository = values[DockerImageRepositoryField.alias]
    if isinstance(repository, str):
        values[DockerImageRepositoryField.alias] = repository.replace(
            TARGET_REPOSITORY, entry.reference.repository
        )
    values[Dependencies.alias] = [
        *overrides.get(Dependencies.alias, defaults.get(Dependencies.alias, ())),
        helper_spec,
    ]
    if method == COPY:
        for alias in _DOCKER_BUILD_VALUES:
            values.pop(alias, None)
        values = {
            DockerMirrorSourceImageField.alias: str(entry.reference),
            DockerMirrorPlatformField.alias: entry.platform,
            **values,
        }
        if entry.platform is not None:  # the line's `--platform=` wins over `platforms`
            values.pop(DockerMirrorPlatformsField.alias, None)
    return values


def spec_file_relative_path(spec_path: str, build_file_dir: str) -> str:
    """A spec file's path relative to the generator's BUILD file directory."""
    return os.path.relpath(spec_path, build_file_dir or ".")


def check_override_names(
    overrides: Mapping[str, Any], images: Iterable[PlannedImage], *, generator: str
) -> None:
    """Refuses `overrides` keys that name no generated image, listing the valid names."""
    names = {image.name for image in images}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise InvalidFieldException(
            softwrap(
                f"""
                The `overrides` field of {generator} names images that its spec files do not
                generate: {", ".join(repr(n) for n in unknown)}. Valid names:
                {", ".join(repr(n) for n in sorted(names)) or "(none)"}.
                """
            )
        )


def check_copy_method_fields(
    template: Mapping[str, Any], overrides: Mapping[str, Mapping[str, Any]], *, generator: str
) -> None:
    """Refuses `docker build` fields given to a `method="copy"` generator or its `overrides`."""
    problems = [f"`{alias}`" for alias in BUILD_ONLY_FIELDS if alias in template]
    problems.extend(
        f"`{alias}` (in `overrides` for {name!r})"
        for name, values in sorted(overrides.items())
        for alias in BUILD_ONLY_FIELDS
        if alias in values
    )
    if problems:
        raise InvalidFieldException(
            softwrap(
                f"""
                {generator} has `method="copy"`, which copies images registry to registry as
                they are, but sets {", ".join(problems)}, which only apply to `docker build`
                (`method="build"`). Remove them, or use `method="build"` to change the images:
                a copy cannot add labels or build arguments, and always reads the source afresh.
                """
            )
        )


def check_build_method_fields(
    template: Mapping[str, Any], overrides: Mapping[str, Mapping[str, Any]], *, generator: str
) -> None:
    """Refuses copy-only fields given to a `method="build"` generator or its `overrides`."""
    given = {alias for alias in COPY_ONLY_FIELDS if alias in template}
    given.update(
        alias for values in overrides.values() for alias in COPY_ONLY_FIELDS if alias in values
    )
    if not given:
        return
    fields = ", ".join(f"`{alias}`" for alias in COPY_ONLY_FIELDS if alias in given)
    reasons = []
    if given - {DockerMirrorPlatformsField.alias}:
        reasons.append(
            "a rebuilt image has a digest of its own, which no signature, attestation or SBOM "
            "of the source names, so none can be carried to it or checked for it."
        )
    if DockerMirrorPlatformsField.alias in given:
        reasons.append(
            "a rebuilt image is built for the platform of the engine that builds it; a spec "
            "line's `--platform=` picks it."
        )
    raise InvalidFieldException(
        softwrap(
            f"""
            {generator} has `method="build"` but sets {fields}, which only apply to
            `method="copy"`: {" And ".join(reasons)} Use `method="copy"`, which copies the
            image under the source's digests with what refers to it, can require a signature
            first, and can keep only some platforms.
            """
        )
    )


_PEM_PUBLIC_KEY = re.compile(
    rb"-----BEGIN PUBLIC KEY-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END PUBLIC KEY-----"
)
# DER of the AlgorithmIdentifier of an elliptic-curve key on P-256 (id-ecPublicKey, prime256v1),
# which a SubjectPublicKeyInfo holds right after its two-byte header.
_P256_ALGORITHM = bytes.fromhex("301306072a8648ce3d020106082a8648ce3d030107")


def signature_key_problem(content: bytes) -> str | None:
    """Why a `require_signature` file is not an ECDSA P-256 public key in PEM, or None.

    A check of its shape, so that a wrong file is named when the targets are generated; the
    registry probe loads the key for real before it verifies anything."""
    match = _PEM_PUBLIC_KEY.search(content)
    if match is None:
        return "not a PEM public key (`-----BEGIN PUBLIC KEY-----`), as `cosign generate-key-pair` writes cosign.pub"
    try:
        der = base64.b64decode(b"".join(match.group(1).split()), validate=True)
    except (binascii.Error, ValueError):
        return "its PEM block is not base64"
    if der[2 : 2 + len(_P256_ALGORITHM)] != _P256_ALGORITHM:
        return "not an ECDSA P-256 public key (cosign's key type)"
    return None


def check_destination_clashes(images: Iterable[tuple[PlannedImage, Mapping[str, Any]]]) -> None:
    """Refuses two images that would be pushed to the same repository and tag.

    The destination drops the source's registry host, so `python:3.12` and
    `evil.example.com/python:3.12` would both land on `<registry>/python:3.12`, and the last
    push would win. Raises `SpecError` naming both lines.
    """
    first_at: dict[tuple[str, str, str], PlannedImage] = {}
    errors: list[SpecLineError] = []
    for image, values in images:
        registries = values.get(DockerImageRegistriesField.alias) or ("<default>",)
        repository = values[DockerImageRepositoryField.alias]
        tags = values.get(DockerImageTagsField.alias) or ()
        keys = [(registry, repository, tag) for tag in tags for registry in registries]
        clash = next((key for key in keys if key in first_at), None)
        if clash is None:
            first_at.update((key, image) for key in keys)
            continue
        errors.append(
            SpecLineError(
                image.entry.path,
                image.entry.line_number,
                f'pushes to the same repository and tag "{repository}:{clash[2]}" as the image on '
                f"{first_at[clash].entry.location}; give one of them another `repository`, or "
                "other `image_tags` or `registries`, in `overrides`",
                image.entry.line,
            )
        )
    if errors:
        raise SpecError(errors)


def source_registry_allowed(registry: str, allowed: Sequence[str]) -> bool:
    """Whether `registry` (`host[:port]`, `docker.io` for Docker Hub) matches an entry of
    `allowed`: a host or a glob pattern (`*.gcr.io`), any port, or `host:port`. Case is
    ignored; Docker Hub's other names count as `docker.io`."""
    host, port = split_registry_address(registry)
    if host in DOCKER_HUB_NAMES:
        host = DOCKER_HUB
    for entry in allowed:
        entry_host, entry_port = split_registry_address(entry.strip())
        if not entry_host:
            continue
        if entry_host in DOCKER_HUB_NAMES:
            entry_host = DOCKER_HUB
        if not fnmatch.fnmatchcase(host, entry_host):
            continue
        if entry_port is None or (port is not None and fnmatch.fnmatchcase(port, entry_port)):
            return True
    return False


def check_allowed_source_registries(
    images: Iterable[PlannedImage], allowed: Sequence[str]
) -> None:
    """Refuses every line whose registry `[docker-mirror].allowed_source_registries` does not
    allow (when it is set), compiler-style; raises `SpecError`. A line's registry is that of its
    image as Docker reads it (`ImageIdentity`): `docker.io` without a host."""
    if not allowed:
        return
    patterns = ", ".join(allowed)
    errors = [
        SpecLineError(
            image.entry.path,
            image.entry.line_number,
            f"registry not allowed: {registry} (not in "
            f"`[docker-mirror].allowed_source_registries`: {patterns})",
            image.entry.line,
        )
        for image in images
        for registry in (image.entry.reference.identity.registry,)
        if not source_registry_allowed(registry, allowed)
    ]
    if errors:
        raise SpecError(sorted(errors, key=lambda e: (e.path, e.line_number)))


def has_destination_registry(values: Mapping[str, Any], registries: DockerRegistries) -> bool:
    """Whether an image with these field values is pushed to a registry: `registries` (by
    default every registry with `default = true`) names at least one, or the image is not
    pushed at all (`skip_push`). Without one, Pants' docker backend tags the image with no
    registry, and `docker push` sends it to Docker Hub."""
    if values.get(DockerImageSkipPushField.alias):
        return True
    names = values.get(DockerImageRegistriesField.alias, DockerImageRegistriesField.default)
    try:
        return any(True for _ in registries.get(*(names or ())))
    except DockerRegistryOptionsNotFoundError:
        return True  # an unknown `@alias`: Pants names it when it packages the image


def no_destination_message(generator: str, images: Sequence[str]) -> str:
    return softwrap(
        f"""
        {generator}: no destination registry for {", ".join(images)}: they have no
        `registries`, and no registry in `[docker].registries` has `default = true`, so they
        would be pushed to Docker Hub. Configure a destination, e.g. in pants.toml
        `[docker.registries.mirror]` with `address = "registry.example.com"` and `default =
        true`, or give the generator (or its `overrides`) `registries=["@mirror"]`; to push to
        Docker Hub on purpose, name it: `registries=["docker.io"]`. (Images with `skip_push=True`
        need none.)
        """
    )
