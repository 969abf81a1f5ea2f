"""Different images that two generated images would write to one destination reference, across
every generator of the repository: a destination drops the source's host, so two sources can
land on one tag."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from docker_mirror.oci.reference import normalized_platform
from docker_mirror.spec_files.parser import SpecEntry
from docker_mirror.oci.untrusted_text import shorten, visible
from docker_mirror.util_rules.destinations import mirror_destinations
from pants.backend.docker.registries import DockerRegistries, DockerRegistryOptionsNotFoundError
from pants.backend.docker.target_types import (
    DockerImageBuildImageLabelsOptionField,
    DockerImageRegistriesField,
    DockerImageRepositoryField,
    DockerImageSkipPushField,
    DockerImageTagsField,
)
from pants.engine.addresses import Address
from pants.engine.unions import UnionMembership
from pants.util.value_interpolation import InterpolationError

_ECHO_LIMIT = 200


@dataclass(frozen=True)
class MirroredImage:
    """A generated image, as far as what it writes is concerned."""

    generator: str
    target: str
    location: str  # `path:line` of its spec line
    line: str
    method: str
    # The source as Docker reads it (`ImageIdentity`), and the platform of a `--platform=` line.
    source: str
    platform: tuple[str, str, str | None] | None
    # `image_labels` (`method="build"`): a label changes the image's digest.
    labels: tuple[tuple[str, str], ...]
    # `platforms` (`method="copy"`): a filtered index has a digest of its own.
    platforms: tuple[tuple[str, str, str | None], ...] = ()

    @property
    def content(self) -> tuple[Any, ...]:
        """Equal for two images that write the same manifests."""
        return (self.method, self.source, self.platform, self.labels, self.platforms)


def mirrored_image(
    generator: Address, target: Address, entry: SpecEntry, *, method: str, values: Mapping[str, Any]
) -> MirroredImage:
    labels = values.get(DockerImageBuildImageLabelsOptionField.alias) or {}
    return MirroredImage(
        generator=str(generator),
        target=str(target),
        location=f"{entry.path}:{entry.line_number}",
        line=visible(shorten(entry.line.strip(), _ECHO_LIMIT)),
        method=method,
        source=str(entry.reference.identity),
        platform=normalized_platform(entry.platform) if entry.platform else None,
        labels=tuple(sorted((str(k), str(v)) for k, v in dict(labels).items())),
        platforms=tuple(
            sorted({normalized_platform(str(p)) for p in values.get("platforms") or ()}, key=str)
        ),
    )


def image_writes(
    target: Address,
    image: MirroredImage,
    values: Mapping[str, Any],
    *,
    docker_registries: DockerRegistries,
    default_repository: str,
    union_membership: UnionMembership,
) -> tuple[tuple[str, MirroredImage], ...]:
    """(reference, image) for every destination reference the image would be written to, as
    Pants' docker backend resolves its `registries`, `repository` and `image_tags`.

    None for an image that is not pushed, and none where a value needs what only a build knows
    (`{build_args.NAME}`, `{pants.hash}`) or names an unknown registry: Pants reports the latter.
    """
    if values.get(DockerImageSkipPushField.alias):
        return ()
    try:
        destinations = mirror_destinations(
            target,
            registries=values.get(DockerImageRegistriesField.alias),
            repository=values.get(DockerImageRepositoryField.alias),
            image_tags=values.get(DockerImageTagsField.alias),
            docker_registries=docker_registries,
            default_repository=default_repository,
            union_membership=union_membership,
        )
    except (InterpolationError, DockerRegistryOptionsNotFoundError):
        return ()
    return tuple((d.reference, image) for d in destinations if d.skipped_by is None)


@dataclass(frozen=True)
class DestinationClash:
    """Destination references that images with different contents would be written to."""

    references: tuple[str, ...]
    images: tuple[MirroredImage, ...]


def find_destination_clashes(
    writes: Iterable[tuple[str, MirroredImage]]
) -> tuple[DestinationClash, ...]:
    """Every set of images that would write different contents to one reference, with all the
    references each set shares."""
    by_reference: dict[str, dict[MirroredImage, None]] = {}
    for reference, image in writes:
        by_reference.setdefault(reference, {})[image] = None
    references_of: dict[tuple[MirroredImage, ...], list[str]] = {}
    for reference, images in by_reference.items():
        if len({image.content for image in images}) > 1:
            key = tuple(sorted(images, key=lambda i: (i.target, i.location)))
            references_of.setdefault(key, []).append(reference)
    return tuple(
        DestinationClash(tuple(sorted(references)), images)
        for images, references in sorted(references_of.items(), key=lambda kv: sorted(kv[1]))
    )


def clash_message(generator: str, clashes: Sequence[DestinationClash]) -> str | None:
    """The error for `generator`, naming every image of the clashes it takes part in and
    saying how to separate them; None if it takes part in none."""
    own = [c for c in clashes if any(image.generator == generator for image in c.images)]
    if not own:
        return None
    blocks = [
        f"{', '.join(clash.references)} would get different images from:\n"
        + "\n".join(f"  {_described(image, clash.images)}" for image in clash.images)
        for clash in own
    ]
    return (
        f"{generator}: images of different generators would overwrite each other at their "
        "destination, no image generated:\n"
        + "\n".join(blocks)
        + "\nGive one of them another destination: "
        '`repository="<prefix>/{target_repository}"` on its `docker_mirror_images` puts every '
        "image it mirrors under `<prefix>/`, or `repository` or `image_tags` in its `overrides` "
        "moves one image (see `pants help docker_mirror_images`)."
    )


def _described(image: MirroredImage, images: Sequence[MirroredImage]) -> str:
    """`path:line: target mirrors line`, with what else tells it apart from `images`."""
    details = []
    if len({i.method for i in images}) > 1:
        details.append(f'method="{image.method}"')
    if len({i.labels for i in images}) > 1:
        details.append(f"image_labels={dict(image.labels)!r}")
    if len({i.platforms for i in images}) > 1:
        shown = ", ".join("/".join(part for part in p if part) for p in image.platforms)
        details.append(f"platforms: {shown}" if shown else "every platform")
    suffix = f" ({', '.join(details)})" if details else ""
    return f"{image.location}: {image.target} mirrors {image.line}{suffix}"
