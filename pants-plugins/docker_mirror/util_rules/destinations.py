"""Where a copy-mode image goes, resolved by Pants' own docker backend (`[docker].registries`,
aliases, repository templates, tags), so copy and build agree exactly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from pants.backend.docker.goals.package_image import DockerPackageFieldSet
from pants.backend.docker.registries import DockerRegistries
from pants.backend.docker.target_types import (
    DockerImageRegistriesField,
    DockerImageRepositoryField,
    DockerImageTagsField,
    DockerImageTarget,
)
from pants.engine.addresses import Address
from pants.engine.unions import UnionMembership
from pants.util.value_interpolation import InterpolationContext


@dataclass(frozen=True)
class Destination:
    """One image reference to write: `<registry>/<repository>:<tag>`."""

    registry: str
    alias: str | None
    repository: str
    tag: str
    # Why it is not pushed (a registry's `skip_push`), or None.
    skipped_by: str | None = None

    @property
    def reference(self) -> str:
        return f"{self.registry}/{self.repository}:{self.tag}"

    @property
    def registry_name(self) -> str:
        return f"@{self.alias}" if self.alias else self.registry


def mirror_destinations(
    address: Address,
    *,
    registries: Sequence[str] | None,
    repository: str | None,
    image_tags: Sequence[str] | None,
    docker_registries: DockerRegistries,
    default_repository: str,
    union_membership: UnionMembership,
) -> tuple[Destination, ...]:
    """Every destination reference, as `docker_image` would tag and push the same values.

    References under a registry's local alias (`use_local_alias`) name an engine-local image and
    are left out; so is everything when no registry applies (a reference without a registry
    would mean Docker Hub).
    """
    # Pants' own `docker_image` logic, on a `docker_image` with our values: `create` fills every
    # other field of the field set (their number grows with Pants versions) with its default.
    docker_image = DockerImageTarget(
        {
            DockerImageRegistriesField.alias: registries,
            DockerImageRepositoryField.alias: repository,
            DockerImageTagsField.alias: image_tags,
        },
        address,
        union_membership,
    )
    docker_field_set = DockerPackageFieldSet.create(docker_image)
    destinations: list[Destination] = []
    for ref_registry in docker_field_set.image_refs(
        default_repository=default_repository,
        registries=docker_registries,
        interpolation_context=InterpolationContext(),
    ):
        registry = ref_registry.registry
        if registry is None:
            continue
        name = f"@{registry.alias}" if registry.alias else registry.address
        skipped_by = f"`skip_push` on registry {name}" if registry.skip_push else None
        for tag in ref_registry.tags:
            if tag.uses_local_alias:
                continue
            destinations.append(
                Destination(
                    registry=registry.address,
                    alias=registry.alias or None,
                    repository=ref_registry.repository,
                    tag=tag.formatted,
                    skipped_by=skipped_by,
                )
            )
    return tuple(destinations)
