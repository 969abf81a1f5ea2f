"""The `docker_mirror_images` target generator and its fields."""

from __future__ import annotations

from typing import Iterable, Optional, Tuple

from pants.backend.docker.target_types import (
    DockerImageBuildArgsField,
    DockerImageBuildImageLabelsOptionField,
    DockerImageBuildPullOptionField,
    DockerImageRegistriesField,
    DockerImageSkipPushField,
    DockerImageTagsField,
    DockerImageTarget,
)
from pants.engine.addresses import Address
from pants.engine.fs import GlobExpansionConjunction, GlobMatchErrorBehavior, PathGlobs
from pants.engine.target import (
    COMMON_TARGET_FIELDS,
    AsyncFieldMixin,
    InvalidFieldException,
    OverridesField,
    SourcesField,
    StringField,
    StringSequenceField,
    TargetGenerator,
)
from pants.option.global_options import UnmatchedBuildFileGlobs
from pants.util.strutil import help_text

SPEC_FORMAT_HELP = help_text(
    """
    Spec file format: UTF-8 text, one image per line, the Dockerfile `FROM` syntax without the
    keyword:

        [--platform=<os>/<arch>[/<variant>]] <reference> [AS <name>]

    `<reference>` is an image reference as in the OCI distribution spec: an optional registry
    host (the first path component, when it contains `.` or `:` or is `localhost`), lower-case
    path components, an optional `:tag` and an optional `@sha256:<64 hex digits>`. Blank lines
    are ignored; `#` starts a comment at the start of a line or after whitespace. For example:

        # images.txt
        python:3.12-slim
        bitnami/redis:7.2 AS redis
        --platform=linux/arm64 ghcr.io/org/app:1.4@sha256:4f53...e1c2
        localhost:5000/team/app:2    # from a local registry

    A line outside this grammar (extra words, `$` variables, quotes, `;`, backslashes,
    upper-case paths, a bad tag or digest) is an error reported as `path:line: problem: line`,
    and then no image of the generator is generated, so nothing from a broken spec is
    published. Listing the same reference twice is an error too.
    """
)


class DockerMirrorSpecSourcesField(AsyncFieldMixin, StringSequenceField):
    """The generator's spec-file globs.

    Deliberately not a `SourcesField`: the generator owns no file. Each spec file is owned by its
    own `_generator_sources_helper` target, which only that file's images depend on. Were the
    generator an owner, Pants would report it as the owner of a deleted spec file (owners of
    deleted files are looked up among unexpanded targets), and `--changed-since` would then
    expand it to every image of every spec file of the generator.
    """

    alias = "sources"
    default = ("images.txt", "*.images.txt")
    help = help_text(
        """
        The spec files listing the images to mirror, as globs relative to this BUILD file's
        directory (`!` excludes a pattern; `../` is not allowed).

        Each spec file is owned by a private helper target `<dir>/<file>:<generator>` that only
        that file's images depend on; the generator itself owns no file. So, with
        `[changed] dependents = "direct"`, `pants --changed-since=<rev> publish` mirrors the
        images of exactly the spec files that changed: every image of an edited file, nothing
        for a deleted file, and every image of this generator when its BUILD file is edited.
        """
    ) + f"\n\n{SPEC_FORMAT_HELP}"

    @classmethod
    def compute_value(
        # `Optional`, not `X | None`: `pants help` evaluates this annotation on Python 3.9.
        cls, raw_value: Optional[Iterable[str]], address: Address
    ) -> Optional[Tuple[str, ...]]:
        value = super().compute_value(raw_value, address)
        if any(glob.lstrip("!").startswith("../") or "/../" in glob for glob in value or ()):
            raise InvalidFieldException(
                f"The {cls.alias!r} field in target {address} must not have globs with `../`: "
                f"spec files live in the BUILD file's directory or below. It was set to: "
                f"{sorted(value or ())}"
            )
        return value

    @property
    def globs(self) -> tuple[str, ...]:
        return self.value or ()

    def path_globs(self, unmatched_build_file_globs: UnmatchedBuildFileGlobs) -> PathGlobs:
        """The globs relative to the build root, matched as a `sources` field would be.

        Explicit globs must all match (else `[GLOBAL].unmatched_build_file_globs` applies); the
        default globs need only match one file, and an empty result is left to the caller.
        """
        explicit = set(self.globs) != set(self.default)
        return PathGlobs(
            (SourcesField.prefix_glob_with_dirpath(self.address.spec_path, g) for g in self.globs),
            conjunction=(
                GlobExpansionConjunction.all_match
                if explicit
                else GlobExpansionConjunction.any_match
            ),
            glob_match_error_behavior=(
                unmatched_build_file_globs.error_behavior
                if explicit
                else GlobMatchErrorBehavior.ignore
            ),
            description_of_origin=f"{self.address}'s `{self.alias}` field" if explicit else None,
        )


class DockerMirrorOverridesField(OverridesField):
    help = help_text(
        """
        Override the field values of individual generated images, keyed by generated name (see
        `docker_mirror_images`): a dictionary of names to a dictionary of field values, which
        replace the values given on the generator.

        For example:

            overrides={
                "python": {"image_tags": ["3.12", "3"]},
                ("bitnami/redis", "redis"): {"skip_push": True},
            }

        A name that no line of the spec files generates is an error listing the valid names.
        """
    )


# The fields below are given once on the generator and moved to every generated `docker_image`.
# They subclass the `docker_image` fields for their own help text and defaults; the values are
# passed on by alias.


class DockerMirrorRegistriesField(DockerImageRegistriesField):
    help = help_text(
        """
        The registries to push the mirrored images to: addresses, or `@alias`es of the
        `[docker].registries` configuration. By default, every registry configured with
        `default = true`.

        A registry's `repository` setting applies as for any `docker_image`; the repository of a
        mirrored image is its source path without the registry host, available as
        `{target_repository}`. So a registry configured with
        `repository = "mirror/{target_repository}"` receives `python:3.12` as
        `<registry>/mirror/python:3.12`.
        """
    )


class DockerMirrorImageTagsField(DockerImageTagsField):
    default = None
    help = help_text(
        """
        The tags to push every mirrored image under, replacing the per-image default.

        By default each image keeps the tag it has in the spec file; an image given by digest
        only (`name@sha256:<hex>`) is tagged `sha256-<hex>` (the full digest, so the tag
        identifies exactly one manifest); an image with neither a tag nor a digest is tagged
        `latest`. Set tags for a single image with `overrides`.
        """
    )


class DockerMirrorSkipPushField(DockerImageSkipPushField):
    help = "If true, `pants publish` pushes none of the generated images."


class DockerMirrorBuildArgsField(DockerImageBuildArgsField):
    help = help_text(
        """
        Build arguments (`NAME` or `NAME=value`) for every generated image's `docker build`, for
        use in tag and repository interpolation (`{build_args.NAME}`); the generated Dockerfile
        is a single `FROM` line and declares no `ARG`.
        """
    )


class DockerMirrorImageLabelsField(DockerImageBuildImageLabelsOptionField):
    help = help_text(
        """
        Labels to set on every generated image (`docker build --label`). A label changes the
        image configuration, so the mirrored image gets a new digest.
        """
    )


class DockerMirrorPullField(DockerImageBuildPullOptionField):
    default = True
    help = help_text(
        """
        If true (the default), `docker build --pull` fetches every source image afresh, so a
        moving tag such as `latest` is mirrored as the source registry serves it now rather than
        as the engine cached it.
        """
    )


class DockerMirrorMethodField(StringField):
    alias = "method"
    default = "build"
    valid_choices = ("build", "copy")
    help = help_text(
        """
        How the images are mirrored.

        `"build"` (the default) generates a `docker_image` per line whose Dockerfile is
        `FROM <line>`: `docker build` pulls one platform of the source and `docker push` writes
        it. It needs a Docker engine; it can add labels (`image_labels`) and build arguments.
        A multi-platform source arrives as one platform under a new digest, so references by
        the source's index digest do not resolve at the mirror.

        `"copy"` generates a `docker_mirror_image` per line, mirrored registry to registry with
        `skopeo copy --all --preserve-digests`: every platform, and the image index under the
        source's own digest, or just the line's `--platform=`. No Docker engine is involved, and
        a destination that already serves the source digest is skipped (reported as up to date)
        after a single manifest request. `pull`, `extra_build_args` and `image_labels` do not
        apply and are an error with `"copy"`. See `pants help docker_mirror_image` and
        `pants help docker-mirror`.
        """
    )


class DockerMirrorImagesTargetGenerator(TargetGenerator):
    alias = "docker_mirror_images"
    help = help_text(
        f"""
        Generate a `docker_image` for each image listed in spec files, to mirror images from
        one registry to another with `pants package` and `pants publish`.

        Each line becomes a `docker_image` whose Dockerfile is the single instruction
        `FROM <line>`; publishing it pushes the image to the configured registries. The
        generated target is addressed `<dir>:<generator>#<name>`, where `<name>` is the line's
        `AS` name if it has one, otherwise the reference without tag or digest (a registry
        host's `:` written as `_`): `python:3.12` is `#python`, `ghcr.io/org/app:1` is
        `#ghcr.io/org/app`, `localhost:5000/team/app:2` is `#localhost_5000/team/app`. When
        several lines would get the same name, each of them gets `_<tag>` appended
        (`_<first 12 hex digits of the digest>` without a tag): `#python_3.11`, `#python_3.12`.

        The pushed repository is the source path without the registry host (`bitnami/redis`);
        add a prefix with the registry's `repository` option in `[docker].registries`, e.g.
        `repository = "mirror/{{target_repository}}"`.

        With `method="copy"`, each line becomes a `docker_mirror_image` instead, with the same
        name, repository, tags and registries, copied registry to registry by `skopeo` with every
        platform and digest kept; see the `method` field.
        """
    ) + f"\n\n{SPEC_FORMAT_HELP}"
    generated_target_cls = DockerImageTarget
    core_fields = (
        *COMMON_TARGET_FIELDS,
        DockerMirrorSpecSourcesField,
        DockerMirrorOverridesField,
        DockerMirrorMethodField,
    )
    copied_fields = COMMON_TARGET_FIELDS
    moved_fields = (
        DockerMirrorRegistriesField,
        DockerMirrorImageTagsField,
        DockerMirrorSkipPushField,
        DockerMirrorBuildArgsField,
        DockerMirrorImageLabelsField,
        DockerMirrorPullField,
    )
