"""Field values of the `docker_mirror_image` targets that `method="copy"` generates: pure
functions, no engine calls.

They are derived from `generation.docker_image_field_values`, the build mode's, so both modes
agree on names, repositories, tags, `overrides` precedence and the per-spec-file helper
dependency (which `--changed-since` relies on).
"""

from __future__ import annotations

from typing import Any, Mapping

from docker_mirror.copy_target_types import DockerMirrorPlatformField, DockerMirrorSourceImageField
from docker_mirror.generation import PlannedImage, docker_image_field_values
from docker_mirror.target_types import (
    DockerMirrorBuildArgsField,
    DockerMirrorImageLabelsField,
    DockerMirrorPullField,
)
from pants.backend.docker.target_types import (
    DockerImageBuildPullOptionField,
    DockerImageInstructionsField,
    DockerImageSourceField,
)
from pants.engine.target import InvalidFieldException
from pants.util.strutil import softwrap

COPY = "copy"
BUILD = "build"

# Generator fields that only configure `docker build`.
BUILD_ONLY_FIELDS = (
    DockerMirrorPullField.alias,
    DockerMirrorBuildArgsField.alias,
    DockerMirrorImageLabelsField.alias,
)
# What `docker_image_field_values` sets that a copied image has no use for.
_DOCKER_BUILD_VALUES = (
    DockerImageInstructionsField.alias,
    DockerImageSourceField.alias,
    DockerImageBuildPullOptionField.alias,
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


def copy_image_field_values(
    image: PlannedImage,
    *,
    template: Mapping[str, Any],
    overrides: Mapping[str, Any],
    helper_spec: str,
) -> dict[str, Any]:
    """The field values of the `docker_mirror_image` that copies `image`.

    The build mode's values (same precedence, same dependencies), without the Dockerfile, plus
    the source reference and platform of the spec line (which `overrides` may replace).
    """
    values = {
        DockerMirrorSourceImageField.alias: str(image.entry.reference),
        DockerMirrorPlatformField.alias: image.entry.platform,
        **docker_image_field_values(
            image, template=template, overrides=overrides, helper_spec=helper_spec
        ),
    }
    for alias in _DOCKER_BUILD_VALUES:
        values.pop(alias, None)
    return values
