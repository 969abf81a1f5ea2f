"""The plugin's targets and fields. With `method="build"` the generator makes `docker_image`
targets instead; `docker_mirror_image`'s fields share `docker_image`'s aliases but are distinct
classes, so that the docker backend neither builds nor pushes copy-mode targets."""

from __future__ import annotations

from typing import Iterable, Optional, Tuple

from docker_mirror.compat import UnmatchedBuildFileGlobs
from docker_mirror.oci.reference import ImageReference, is_valid_platform
from docker_mirror.key_paths import key_path_candidates
from pants.backend.docker.registries import ALL_DEFAULT_REGISTRIES
from pants.backend.docker.target_types import (
    DockerImageBuildArgsField,
    DockerImageBuildImageLabelsOptionField,
    DockerImageBuildPullOptionField,
    DockerImageRegistriesField,
    DockerImageSkipPushField,
    DockerImageSourceField,
    DockerImageTagsField,
    DockerImageTarget,
)
from pants.core.goals.package import OutputPathField
from pants.engine.addresses import Address
from pants.engine.fs import GlobExpansionConjunction, GlobMatchErrorBehavior, PathGlobs
from pants.engine.target import (
    COMMON_TARGET_FIELDS,
    AsyncFieldMixin,
    BoolField,
    Dependencies,
    InvalidFieldException,
    OptionalSingleSourceField,
    OverridesField,
    SourcesField,
    SpecialCasedDependencies,
    StringField,
    StringSequenceField,
    Target,
    TargetGenerator,
)
from pants.util.strutil import help_text, softwrap

SPEC_FORMAT_HELP = softwrap(
    """
    Spec file format: UTF-8 text, one image per line, the Dockerfile `FROM` syntax without the
    keyword:

        [--platform=<os>/<arch>[/<variant>]] <reference> [AS <name>]

    `<reference>` is an image reference as in the OCI distribution spec, read as Docker reads
    it: an optional registry host (the first path component, when it contains `.` or `:`, is
    `localhost`, or has an upper-case letter), lower-case path components (at most 255
    characters after the host, counting the `library/` Docker puts before a Docker Hub name
    without a namespace), an optional `:tag` and an optional `@sha256:<64 hex digits>`. Blank
    lines are ignored; `#` starts a comment at the start of a line or after whitespace. For
    example:

        # images.txt
        python:3.12-slim
        bitnami/redis:7.2 AS redis
        --platform=linux/arm64 ghcr.io/org/app:1.4@sha256:4f53...e1c2
        localhost:5000/team/app:2    # from a local registry

    A line outside this grammar (extra words, `$` variables, quotes, `;`, backslashes,
    upper-case paths, a bad tag or digest) is an error reported as `path:line: problem: line`,
    and then no image of the generator is generated, so nothing from a broken spec is
    published. Listing the same image twice is an error too, however it is spelt: `nginx`,
    `nginx:latest` and `docker.io/library/nginx:latest` are one image, as Docker reads them.
    """
)


class DockerMirrorImagesSourcesField(AsyncFieldMixin, StringSequenceField):
    """The generator's spec-file globs.

    Deliberately not a `SourcesField`: the generator owns no file. Each spec file is owned by the
    images of its lines (their `spec_file`), and by a `_generator_sources_helper` target (for
    `docker-mirror-pin`, and for a file whose lines generate no image) that they depend on. Were
    the generator an owner, Pants would report it as the owner of a deleted spec file (owners of
    deleted files are looked up among unexpanded targets), and `--changed-since` would then
    expand it to every image of every spec file of the generator.
    """

    alias = "sources"
    default = ("images.txt", "*.images.txt")
    help = softwrap(
        """
        The spec files listing the images to mirror, as globs relative to this BUILD file's
        directory (`!` excludes a pattern; `../` is not allowed).

        Each spec file is owned by the images of its lines (their `spec_file` field) and by a
        private helper target `<dir>/<file>:<generator>`; the generator itself owns no file. So,
        with Pants' default `[changed]` settings, `pants --changed-since=<rev> publish` mirrors
        the images of exactly the spec files that changed: every image of an edited file,
        nothing for a deleted file, and every image of this generator when its BUILD file is
        edited. A spec file given as an argument stands for its images too:
        `pants publish src/images.txt`.
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
        behavior = (
            unmatched_build_file_globs.error_behavior if explicit else GlobMatchErrorBehavior.ignore
        )
        return PathGlobs(
            (SourcesField.prefix_glob_with_dirpath(self.address.spec_path, g) for g in self.globs),
            conjunction=(
                GlobExpansionConjunction.all_match
                if explicit
                else GlobExpansionConjunction.any_match
            ),
            glob_match_error_behavior=behavior,
            # Pants refuses one with `ignore`.
            description_of_origin=(
                f"{self.address}'s `{self.alias}` field"
                if behavior != GlobMatchErrorBehavior.ignore
                else None
            ),
        )


class DockerMirrorImagesOverridesField(OverridesField):
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


class DockerMirrorImagesRegistriesField(DockerImageRegistriesField):
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


# The placeholder a generator's `repository` takes for each line's own repository, named after
# the one a registry's `repository` template takes in `[docker].registries`.
TARGET_REPOSITORY = "{target_repository}"


class DockerMirrorImagesRepositoryField(StringField):
    alias = "repository"
    help = help_text(
        """
        The repository every mirrored image is pushed to, where `{target_repository}` stands
        for the image's own: its source path without the registry host (`nginx` for
        `nginx:1.25`, `org/app` for `ghcr.io/org/app:1`). By default `{target_repository}`
        alone.

        Give a generator a prefix when another generator mirrors other images under the same
        names: `ghcr.io/org/app` and `docker.io/org/app` both become `org/app`, and two
        generators that would push different images to the same tag are refused, naming both.
        With `repository="ghcr/{target_repository}"` this generator's images go to
        `<registry>/ghcr/org/app` instead. For one image, set `repository` (where
        `{target_repository}` works too) or `image_tags` in `overrides`. A registry's own
        `repository` template then applies on top, as for any `docker_image`:
        `mirror/{target_repository}` makes it `mirror/ghcr/org/app`.

        The same image listed by two generators (equal as Docker reads them, with the same
        `--platform=`, `platforms`, `method` and `image_labels`) is no clash: both write the
        same manifests.
        """
    )


class DockerMirrorImagesTagsField(DockerImageTagsField):
    # No default: without `image_tags` on the generator, each line's own tag applies.
    default = None  # type: ignore[assignment]
    help = help_text(
        """
        The tags to push every mirrored image under, replacing the per-image default.

        By default each image keeps the tag it has in the spec file; an image given by digest
        only (`name@sha256:<hex>`) is tagged `digest-sha256-<hex>` (the full digest, so the tag
        identifies exactly one manifest); an image with neither a tag nor a digest is tagged
        `latest`. Set tags for a single image with `overrides`.
        """
    )


class DockerMirrorImagesSkipPushField(DockerImageSkipPushField):
    help = "If true, `pants publish` pushes none of the generated images."


class DockerMirrorImagesBuildArgsField(DockerImageBuildArgsField):
    help = help_text(
        """
        Build arguments (`NAME` or `NAME=value`) for every generated image's `docker build`, for
        use in tag and repository interpolation (`{build_args.NAME}`); the generated Dockerfile
        is a single `FROM` line and declares no `ARG`.
        """
    )


class DockerMirrorImagesLabelsField(DockerImageBuildImageLabelsOptionField):
    help = help_text(
        """
        Labels to set on every generated image (`docker build --label`). A label changes the
        image configuration, so the mirrored image gets a new digest.
        """
    )


class DockerMirrorImagesPullField(DockerImageBuildPullOptionField):
    default = True
    help = help_text(
        """
        If true (the default), `docker build --pull` fetches every source image afresh, so a
        moving tag such as `latest` is mirrored as the source registry serves it now rather than
        as the engine cached it.
        """
    )


# ---------------------------------------------------------------------------------------------
# REQUEST COUNTS: what a re-mirror where nothing changed asks of registries, quoted by the help of
# `method`, `referrers` and `docker_mirror_image`. These are measured, not derived: see
# benchmarks/RESULTS.md, table 8 (requests from the registries' own access logs). Update them
# here, in this one place, when the probe's requests change, and re-run the benchmark.

# Per image, with `referrers` on (the default).
NO_OP_REQUESTS = (
    "5 manifest `HEAD`s at the source (the tag; cosign's `.sig`, `.att` and `.sbom` tags; the OCI "
    "fallback tag), and at the destination 1 per tag plus, per repository, 1 per cosign tag the "
    "source has and 1 for its referrers listing (5 in all for an image with a signature, an "
    "attestation, an SBOM and an OCI referrer; 1 for an image with nothing attached); and 1 "
    "`GET` per source registry and run, to learn whether it has the referrers API"
)
# Per image, with `referrers=False`.
NO_OP_REQUESTS_WITHOUT_REFERRERS = "1 manifest `HEAD` per source tag and 1 per destination tag"
# What a no-op never sends, either way.
NO_OP_PULLS = "no manifest `GET` (what Docker Hub counts as a pull) and no blob request"


class DockerMirrorImagesMethodField(StringField):
    alias = "method"
    default = "build"
    valid_choices = ("build", "copy")
    help = help_text(
        f"""
        How the images are mirrored.

        `"build"` (the default) generates a `docker_image` per line whose Dockerfile is
        `FROM <line>`: `docker build` pulls one platform of the source and `docker push` writes
        it. It needs a Docker engine; it can add labels (`image_labels`) and build arguments.
        A multi-platform source arrives as one platform under a new digest, so references by
        the source's index digest do not resolve at the mirror.

        `"copy"` generates a `docker_mirror_image` per line, mirrored registry to registry with
        every digest kept: every platform, and the image index under the source's own digest,
        or just the line's `--platform=`, with the signatures,
        attestations and SBOMs that refer to it (`referrers`), and optionally only if it is
        signed (`require_signature`). No Docker engine is involved, and a destination that
        already serves the source digest is skipped (reported as up to date) after
        {NO_OP_REQUESTS}; with `referrers=False`, after {NO_OP_REQUESTS_WITHOUT_REFERRERS}.
        Either way {NO_OP_PULLS}. `pull`, `extra_build_args` and `image_labels` do not apply
        and are an error with `"copy"`. See `pants help docker_mirror_image` and
        `pants help docker-mirror`.

        Signatures: a rebuilt image (`"build"`) has a digest of its own, so no upstream
        signature, attestation or SBOM names it and none is carried; verify what you run at the
        mirror with `"copy"`, which keeps the digests they name.
        """
    )


class DockerMirrorReferrersField(BoolField):
    alias = "referrers"
    default = True
    help = help_text(
        f"""
        With `method="copy"`: copy what refers to each image along with it, its signatures,
        attestations and SBOMs (the default). Both schemes signers use are carried:

        - cosign's tag scheme (cosign up to v2): the manifests tagged `sha256-<hex>.sig`,
          `.att` and `.sbom` beside the image are copied under the same tags. Where the
          destination's tag holds signatures of its own (the image was signed again at the
          mirror), the source's are appended to it, as `cosign sign` appends, and none is
          dropped.
        - OCI 1.1 referrers (cosign v3, notation, oras, SBOM tools): the manifests whose
          `subject` is the image, as the source lists them through its referrers API or its
          `sha256-<hex>` fallback tag, are written to the destination by digest. A destination
          with the referrers API lists them itself; on one without it they are added to its
          `sha256-<hex>` fallback tag, keeping every entry it already lists.

        `<hex>` is the digest the mirror serves: the image index, or with a `--platform=` line
        that platform's manifest. What refers to each platform manifest of an index (`cosign
        sign --recursive`, per-platform SBOMs) is copied with it too, under that manifest's own
        tags; with `platforms`, only the kept platforms' are, since the filtered index has a
        digest of its own. Every manifest and blob keeps its digest, so a signature
        verifies at the mirror as it does upstream (`cosign verify`, Kyverno, Sigstore
        policy-controller, Ratify). They are copied before the image, so the mirror never
        serves an image without them; if they cannot be copied, the image is not copied
        either and fails, naming the reason. Attestations that BuildKit stores inside the image
        index (`unknown/unknown` entries) are part of the image and are always copied.

        Cost of a re-mirror where nothing changed, per image: {NO_OP_REQUESTS}, where
        `referrers=False` asks {NO_OP_REQUESTS_WITHOUT_REFERRERS}; {NO_OP_PULLS}, so it stays
        free of pulls.
        What is added upstream later is copied by the next run, without copying the image again.

        `False` copies the image alone. With `method="build"` nothing of this is copied: a
        rebuilt image has a digest of its own, which no upstream signature names.
        """
    )


class DockerMirrorPlatformsField(StringSequenceField):
    alias = "platforms"
    help = help_text(
        """
        Mirror only these platforms of each multi-platform image, e.g. `["linux/amd64",
        "linux/arm64"]` (`<os>/<arch>[/<variant>]`, variants implied as containerd implies
        them: `linux/arm64` is `linux/arm64/v8`). Only with `method="copy"`; a spec line's
        `--platform=` overrides it for that line.

        The destination then serves a **filtered image index**: the source's index with only
        the entries of these platforms (and BuildKit's attestation manifests of them), every
        other field as written. Its digest is not the source's (unless the image has no other
        platform), so signatures of the source's index do not name it, while each kept
        platform's manifest keeps its digest, and its own signatures and SBOMs are copied with
        it. `require_signature` verifies the source's index, whose digest names every platform
        manifest. A listed platform the image does not have is left out and named in `pants
        package`; once the tag gains it, the source's index has a new digest and the next run
        mirrors it. An image with none of them fails; a single-platform image is copied as it
        is. `pants package` records both digests. Each run reads the source's index (a manifest
        `GET`, which Docker Hub counts as a pull), as a `--platform=` line does.
        """
    )

    @classmethod
    def compute_value(
        cls, raw_value: Optional[Iterable[str]], address: Address
    ) -> Optional[Tuple[str, ...]]:
        value = super().compute_value(raw_value, address)
        for platform in value or ():
            if not is_valid_platform(platform):
                raise InvalidFieldException(
                    f"The `{cls.alias}` field of {address} must list `<os>/<arch>[/<variant>]` "
                    f"in lower case, e.g. `linux/arm64` or `linux/arm/v7`, not {platform!r}."
                )
        if value is not None and not value:
            raise InvalidFieldException(
                f"The `{cls.alias}` field of {address} is empty: leave it out to mirror every platform."
            )
        return value


class DockerMirrorRequireSignatureField(StringSequenceField):
    alias = "require_signature"
    help = help_text(
        """
        With `method="copy"`: mirror an image only if a cosign signature of the very digest
        being mirrored verifies against one of these public keys. Each is a PEM file of an
        ECDSA P-256 public key, as `cosign generate-key-pair` writes `cosign.pub`, named as
        `sources` are: relative to this BUILD file's directory (`"cosign.pub"`,
        `"./cosign.pub"`, `"../keys/cosign.pub"`), or from the build root with a leading `//`
        (`"//keys/cosign.pub"`). A plain path that names no file beside the BUILD file but
        one from the build root names that one; where it names both, it is an error, to be
        written with `./` or `//`. The files are checked when the targets are generated
        (when it is packaged, for a `docker_mirror_image` written by hand).

        Before anything of an image is written, `pants publish` reads its signatures at the
        source in both layouts cosign uses, the `sha256-<hex>.sig` tag (cosign up to v2) and
        Sigstore bundles attached as referrers (cosign v3), and copies the image only if one
        verifies against a key and names the digest being mirrored (the image index, or a
        `--platform=` line's manifest). Otherwise that image fails alone, naming the image, the
        keys and the reason, and nothing of it is written: an unsigned image never enters the
        mirror. The signature is checked against the key alone, offline: transparency-log
        entries and keyless (certificate) signatures are not checked, as with
        `cosign verify --key cosign.pub --insecure-ignore-tlog`.

        An image the destination already serves is not copied, so it is not checked again.
        Not with `method="build"`, which is refused: a rebuilt image has a digest of its own,
        which no upstream signature names.
        """
    )

    @classmethod
    def compute_value(
        cls, raw_value: Optional[Iterable[str]], address: Address
    ) -> Optional[Tuple[str, ...]]:
        """The paths as written (which file each names is decided where files can be seen:
        `util_rules.signature_keys`, by `key_paths`); one outside the repository is refused here."""
        value = super().compute_value(raw_value, address)
        if value is None:
            return None
        try:
            for path in value:
                key_path_candidates(path, address.spec_path)
        except ValueError as e:
            raise InvalidFieldException(f"The `{cls.alias}` field of {address}: {e}.") from None
        return value


class DockerMirrorSignatureIdentityField(StringField):
    alias = "signature_identity"
    valid_choices = ("key", "source_repository")
    help = help_text(
        """
        With `require_signature`: what a verifying signature must say besides the digest.
        `"key"`: nothing more, as `cosign verify --key` without identity checks. A signature
        by the key of any image then admits it, so a source that serves an older signed
        release, or another repository's signed image, under the mirrored tag is mirrored.
        `"source_repository"`: the repository the signature was signed for, its
        `critical.identity.docker-reference` (cosign writes the repository it signs,
        `cosign sign --key cosign.pub ghcr.io/team/app@sha256:...`), must be the line's source
        repository; a Sigstore bundle (cosign v3), which names no repository, never passes.
        Unset: `[docker-mirror].signature_identity` (by default `"key"`).
        """
    )


class DockerMirrorImagesTargetGenerator(TargetGenerator):
    alias = "docker_mirror_images"
    help = softwrap(
        """
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
        add a prefix with this generator's `repository` field, e.g.
        `repository="team-b/{target_repository}"`, or per registry with its `repository`
        option in `[docker].registries`, e.g. `repository = "mirror/{target_repository}"`.
        Two generators that would push different images to the same tag are refused; the
        `repository` field says how to separate them.

        With `method="copy"`, each line becomes a `docker_mirror_image` instead, with the same
        name, repository, tags and registries, copied registry to registry with every platform
        and digest kept; see the `method` field.

        Field values of a generated image come, lowest precedence first, from `__defaults__` for
        its target type (`docker_image`, or `docker_mirror_image` with `method="copy"`), then
        from its spec line (the `FROM` line, `repository` and the default `image_tags`, which
        `__defaults__` never replace), then from this generator's fields (`__defaults__` for
        `docker_mirror_images` included), and last from `overrides`.
        """
    ) + f"\n\n{SPEC_FORMAT_HELP}"
    # No `generated_target_cls`: Pants 2.21+ would seed every generated target with
    # `__defaults__` for that one class, over the per-line values and whatever `method` makes.
    # The generator rule applies the defaults of the type it generates instead (`generation`).
    core_fields = (
        *COMMON_TARGET_FIELDS,
        DockerMirrorImagesSourcesField,
        DockerMirrorImagesOverridesField,
        DockerMirrorImagesMethodField,
    )
    copied_fields = COMMON_TARGET_FIELDS
    moved_fields = (
        DockerMirrorImagesRegistriesField,
        DockerMirrorImagesRepositoryField,
        DockerMirrorImagesTagsField,
        DockerMirrorImagesSkipPushField,
        DockerMirrorImagesBuildArgsField,
        DockerMirrorImagesLabelsField,
        DockerMirrorImagesPullField,
        DockerMirrorReferrersField,
        DockerMirrorRequireSignatureField,
        DockerMirrorPlatformsField,
        DockerMirrorSignatureIdentityField,
    )


# ---------------------------------------------------------------------------------------------
# docker_mirror_image


class DockerMirrorSourceImageField(StringField):
    alias = "source_image"
    required = True
    value: str
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


# ---------------------------------------------------------------------------------------------
# The spec file each generated image owns


class DockerMirrorImageSpecFileField(OptionalSingleSourceField):
    """The spec file a `docker_mirror_image` was generated from.

    A `SourcesField`: Pants' `Owners` matches changed files against `tgt.get(SourcesField)` only
    (`SecondaryOwnerMixin` is gone from 2.18 on). So a changed spec file selects its own images
    with Pants' default `[changed]` settings, and a spec file given as an argument stands for its
    images. It claims the file without reading it (`path_globs` is empty): the image is made from
    its line, which its other fields hold.
    """

    alias = "spec_file"
    uses_source_roots = False
    help = help_text(
        """
        The spec file this image's line is in, relative to the BUILD file's directory; set by
        `docker_mirror_images`. The image owns that file, so `pants --changed-since=<rev>` (with
        Pants' default `[changed]` settings) and a file argument (`pants publish
        src/images.txt`) select the images of that file. Nothing is read from it: the image is
        its `source_image` and `platform`.
        """
    )

    # `@final` in Pants 2.17's typing only (Pants' own `_lockfile` source field overrides it later).
    def path_globs(  # type: ignore[misc, unused-ignore]
        self, unmatched_build_file_globs: UnmatchedBuildFileGlobs
    ) -> PathGlobs:
        return PathGlobs(())


class DockerMirrorBuildSpecFileField(DockerImageSourceField):
    """The spec file a `method="build"` image was generated from, in place of `docker_image`'s
    `source` (see `DockerMirrorImageSpecFileField` for why a `SourcesField`).

    It takes `source`'s place because Pants' docker backend, like `Owners`, reads a target's
    first `SourcesField` (`tgt.get(SourcesField)`) for its Dockerfile: a second one would never be
    matched. It hydrates to no file, as `source=None` does, so the backend writes the Dockerfile
    from `instructions`.
    """

    alias = "spec_file"
    required = True
    uses_source_roots = False
    help = help_text(
        """
        The spec file this image's line is in, relative to the BUILD file's directory; set by
        `docker_mirror_images` in place of `source`: the image's Dockerfile is its
        `instructions`. The image owns that file, so `pants --changed-since=<rev>` (with Pants'
        default `[changed]` settings) and a file argument (`pants publish src/images.txt`)
        select the images of that file.
        """
    )

    # `@final` in Pants 2.17's typing only (Pants' own `_lockfile` source field overrides it later).
    def path_globs(  # type: ignore[misc, unused-ignore]
        self, unmatched_build_file_globs: UnmatchedBuildFileGlobs
    ) -> PathGlobs:
        return PathGlobs(())


class DockerMirrorBuildImageTarget(DockerImageTarget):
    """What `method="build"` generates: to Pants a `docker_image` (its alias, fields and rules;
    Pants' docker backend builds and pushes it), with `spec_file` for `source`. Not registered:
    BUILD files declare Pants' own `docker_image`."""

    core_fields = tuple(  # type: ignore[assignment]
        DockerMirrorBuildSpecFileField if field is DockerImageSourceField else field
        for field in DockerImageTarget.core_fields
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
        DockerMirrorReferrersField,
        DockerMirrorRequireSignatureField,
        DockerMirrorPlatformsField,
        DockerMirrorSignatureIdentityField,
        DockerMirrorImageSpecFileField,
    )
    help = help_text(
        f"""
        An image mirrored registry to registry, digest for digest, with no Docker engine or
        other tool: what `docker_mirror_images(method="copy")` generates for each spec line.

        `pants package` resolves the source to a digest and reads the digest each destination
        reference serves, and what refers to the image (`referrers`), together with every other
        image of the same generator, in one process per run. For an image already mirrored that
        is {NO_OP_REQUESTS}; with `referrers=False`, {NO_OP_REQUESTS_WITHOUT_REFERRERS}. A source
        pinned by digest needs no request of its own. It writes a JSON record under `dist/`. `pants publish` then compares, for every destination
        reference, that digest with the source's: equal is reported as up to date and costs
        nothing more; otherwise one process per destination repository copies every platform
        and the image index, keeping their digests (or, with `platform`, just that platform's
        manifest), and then points the stale tags at it. Before the image, what refers to it
        (signatures, attestations, SBOMs; see `referrers`) is copied to each destination
        repository that lacks it, after the `require_signature` check if one is set. A failing image is reported as failed
        without stopping the others.
        """
    )


# ---------------------------------------------------------------------------------------------
# The air gap: an archive of mirrored images


class DockerMirrorArchiveImagesField(SpecialCasedDependencies):
    alias = "images"
    required = True
    help = help_text(
        """
        The images the archive carries: addresses of `docker_mirror_images` targets (each
        stands for every image of its spec files) or of single `docker_mirror_image` targets,
        e.g. `[":base", "//third_party/images:tools"]`. Each image goes in as copy mode would
        mirror it: every platform (or its `platforms`), what refers to it (`referrers`), behind
        its `require_signature` check.
        """
    )


class DockerMirrorArchiveOutputPathField(OutputPathField):
    help = help_text(
        """
        Where `pants package` writes the archive, a tar of an OCI image layout, relative to
        `--distdir`. By default `<dir with dots>/<name>.tar`.
        """
    )


class DockerMirrorArchiveTarget(Target):
    alias = "docker_mirror_archive"
    core_fields = (*COMMON_TARGET_FIELDS, DockerMirrorArchiveImagesField, DockerMirrorArchiveOutputPathField)
    help = help_text(
        """
        An archive of mirrored images for an air gap: `pants package` writes one OCI image
        layout (image-spec 1.1) as a tar under `dist/`, with every image that `images` names,
        its signatures, attestations and SBOMs, each blob once. The same images always give
        the same bytes. Each image is named in `index.json` by its source,
        `registry/repository:tag` (`org.opencontainers.image.ref.name`), so `skopeo copy
        oci-archive:<tar>:<name> ...` reads it too.

        On the other side of the gap, `pants publish --docker-mirror-from-archive=<tar>` reads
        every source from the archive instead of its registry, and mirrors as usual. Blobs are
        kept in Pants' named cache between runs: packaging again fetches only what changed.
        See docs/air-gap.md.
        """
    )
