"""Turns parsed spec entries into target field values: pure functions, no engine calls."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from docker_mirror.spec import SpecEntry, SpecError, SpecLineError, assign_names, parse_spec_files
from pants.backend.docker.target_types import (
    DockerImageBuildPullOptionField,
    DockerImageInstructionsField,
    DockerImageRegistriesField,
    DockerImageRepositoryField,
    DockerImageSourceField,
    DockerImageTagsField,
)
from pants.engine.target import Dependencies, InvalidFieldException
from pants.util.strutil import softwrap


@dataclass(frozen=True)
class PlannedImage:
    """One image to generate: its generated name, its spec line and its spec file's helper."""

    name: str
    entry: SpecEntry


def plan_images(spec_files: Iterable[tuple[str, bytes]]) -> tuple[PlannedImage, ...]:
    """Parses the spec files of one generator and names their images; raises `SpecError`."""
    entries = parse_spec_files(sorted(spec_files))
    return tuple(PlannedImage(name, entry) for name, entry in assign_names(entries).items())


def docker_image_field_values(
    image: PlannedImage,
    *,
    template: Mapping[str, Any],
    overrides: Mapping[str, Any],
    helper_spec: str,
) -> dict[str, Any]:
    """The field values of the `docker_image` that mirrors `image`.

    Precedence, lowest first: per-entry defaults, the generator's moved fields (`template`), then
    the image's `overrides`. The image always depends on its own spec file's helper target, so
    a change to that file (and only that file) marks the image as changed.
    """
    values: dict[str, Any] = {
        DockerImageTagsField.alias: [image.entry.default_image_tag],
        DockerImageBuildPullOptionField.alias: True,
        **template,
        DockerImageInstructionsField.alias: [image.entry.from_instruction],
        # No Dockerfile from the source tree, even if the directory happens to hold one.
        DockerImageSourceField.alias: None,
        DockerImageRepositoryField.alias: image.entry.reference.repository,
        Dependencies.alias: [helper_spec],
        **overrides,
    }
    if Dependencies.alias in overrides:
        values[Dependencies.alias] = [*overrides[Dependencies.alias], helper_spec]
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
                f"{first_at[clash].entry.location}; give one of them other `image_tags` or "
                "`registries` in `overrides`",
                image.entry.line,
            )
        )
    if errors:
        raise SpecError(errors)
