"""The `docker_mirror_image` target: one image mirrored registry to registry by `skopeo copy`.

`docker_mirror_images(method="copy")` generates these. The fields share their aliases and
meaning with `docker_image`'s (`registries`, `repository`, `image_tags`, `skip_push`) but are
distinct classes, so that Pants' docker backend neither builds nor pushes these targets.
"""

from __future__ import annotations

from typing import Optional

from docker_mirror.manifests import is_valid_platform
from docker_mirror.spec import ImageReference
from pants.backend.docker.registries import ALL_DEFAULT_REGISTRIES
from pants.core.goals.package import OutputPathField
from pants.engine.addresses import Address
from pants.engine.target import (
    COMMON_TARGET_FIELDS,
    BoolField,
    Dependencies,
    InvalidFieldException,
    StringField,
    StringSequenceField,
    Target,
)
from pants.util.strutil import help_text


class DockerMirrorSourceImageField(StringField):
    alias = "source_image"
    required = True
    help = help_text(
        """
        The image to mirror: a reference such as `python:3.12`, `ghcr.io/org/app:1.4` or
        `registry.example.com/team/app@sha256:<hex>` (the registry defaults to Docker Hub).

        The reference is resolved to a digest once per run (`pants package` records it); what is
        copied is that digest, so a tag that moves during the run cannot mix two images.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> str:
        value = super().compute_value(raw_value, address)
        assert value is not None  # required
        try:
            ImageReference.parse(value)
        except ValueError as e:
            raise InvalidFieldException(
                f"The `{cls.alias}` field of {address} is not an image reference: {e}"
            ) from None
        return value


class DockerMirrorPlatformField(StringField):
    alias = "platform"
    help = help_text(
        """
        Mirror just this platform of a multi-platform image, as `<os>/<arch>[/<variant>]`
        (e.g. `linux/arm64`): the destination then serves that platform's manifest, under the
        digest it has in the source's image index.

        By default every platform is mirrored, and the destination serves the source's image
        index under the source's digest, so `image@sha256:<index digest>` references resolve at
        the mirror as they do upstream.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> Optional[str]:
        value = super().compute_value(raw_value, address)
        if value is not None and not is_valid_platform(value):
            raise InvalidFieldException(
                f"The `{cls.alias}` field of {address} must be `<os>/<arch>[/<variant>]` in "
                f"lower case, e.g. `linux/arm64` or `linux/arm/v7`, not {value!r}."
            )
        return value


class DockerMirrorImageRegistriesField(StringSequenceField):
    alias = "registries"
    default = (ALL_DEFAULT_REGISTRIES,)
    help = help_text(
        """
        The registries to copy the image to: addresses, or `@alias`es of the
        `[docker].registries` configuration, resolved exactly as for `docker_image` (each
        registry's `repository`, `extra_image_tags` and `skip_push` apply). By default, every
        registry configured with `default = true`.

        Registries on loopback (`localhost`, `127.0.0.0/8`, `[::1]`) are reached over plain HTTP,
        as Docker does; every other registry over verified TLS, unless it is listed in
        `[docker-mirror].insecure_registries`.
        """
    )


class DockerMirrorImageRepositoryField(StringField):
    alias = "repository"
    help = help_text(
        """
        The repository to copy the image to, e.g. `library/python`. A registry's `repository`
        setting in `[docker].registries` can refer to it as `{target_repository}`; by default
        `[docker].default_repository` applies, as for `docker_image`.
        """
    )


class DockerMirrorImageTagsField(StringSequenceField):
    alias = "image_tags"
    default = ("latest",)
    help = help_text(
        """
        The tags to write the image under at each registry. Each tag is compared with the source
        digest before copying: a tag that already serves it is skipped.
        """
    )


class DockerMirrorImageSkipPushField(BoolField):
    alias = "skip_push"
    default = False
    help = "If true, `pants publish` copies this image nowhere (`pants package` still resolves it)."


class DockerMirrorImageDependenciesField(Dependencies):
    pass


class DockerMirrorImageOutputPathField(OutputPathField):
    help = help_text(
        """
        Where `pants package` writes the JSON record of the mirrored image (source reference,
        resolved digest, media type, platforms, destination references), relative to
        `--distdir`. By default `<dir with dots>/<name>.docker-mirror.json`.
        """
    )


class DockerMirrorImageTarget(Target):
    alias = "docker_mirror_image"
    core_fields = (
        *COMMON_TARGET_FIELDS,
        DockerMirrorSourceImageField,
        DockerMirrorPlatformField,
        DockerMirrorImageRegistriesField,
        DockerMirrorImageRepositoryField,
        DockerMirrorImageTagsField,
        DockerMirrorImageSkipPushField,
        DockerMirrorImageDependenciesField,
        DockerMirrorImageOutputPathField,
    )
    help = help_text(
        """
        An image mirrored registry to registry with `skopeo copy`, digest for digest, with no
        Docker engine: what `docker_mirror_images(method="copy")` generates for each spec line.

        `pants package` resolves the source to a digest (one manifest request, no blob), reads
        the digest each destination reference serves (batched with up to 31 other images of the
        same generator, in one process) and writes a JSON record under `dist/`. `pants publish`
        then compares, for every destination reference, that digest with the source's: equal is
        reported as up to date and costs nothing more; otherwise `skopeo copy --all
        --preserve-digests` copies every platform and the image index, keeping their digests
        (or, with `platform`, just that platform's manifest). A failing image is reported as
        failed without stopping the others.
        """
    )
