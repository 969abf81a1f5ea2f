"""generation.py, through Pants' engine (RuleRunner) where it takes one, no network: copy-mode
targets, where images may come from and go to, and `require_signature` keys."""

from __future__ import annotations

import pytest
from docker_mirror.generation import (
    check_allowed_source_registries,
    plan_images,
    source_registry_allowed,
)
from docker_mirror.goals.package import DockerMirrorCopyPackageFieldSet
from docker_mirror.goals.publish import DockerMirrorCopyPublishFieldSet
from docker_mirror.spec_files.parser import SpecError
from docker_mirror.target_types import (
    DockerMirrorImageRegistriesField,
    DockerMirrorImageRepositoryField,
    DockerMirrorImageSkipPushField,
    DockerMirrorImageTagsField,
    DockerMirrorImageTarget,
    DockerMirrorPlatformField,
    DockerMirrorPlatformsField,
    DockerMirrorSourceImageField,
)
from docker_mirror_testutil.rule_runner_options import default_registry_args, generator_rule_runner
from pants.backend.docker.goals.package_image import DockerPackageFieldSet
from pants.backend.docker.goals.publish import PublishDockerImageFieldSet
from pants.backend.docker.target_types import DockerImageTarget
from pants.engine.addresses import Address
from pants.engine.internals.scheduler import ExecutionError
from pants.engine.target import Dependencies, DescriptionField, Tags
from pants.testutil.rule_runner import RuleRunner


# `method="copy"` ------------------------------------------------------------------------------

COPY_SPEC = (
    "127.0.0.1:5000/library/busybox:1.36\n"
    "--platform=linux/arm64 ghcr.io/org/app:1.4 AS app\n"
    "team/pinned@sha256:" + "a" * 64 + "\n"
)


@pytest.fixture
def rule_runner() -> RuleRunner:
    return generator_rule_runner(*default_registry_args())


def generated(rule_runner: RuleRunner, name: str):
    return rule_runner.get_target(Address("src", target_name="mirror", generated_name=name))


def test_copy_generates_mirror_targets_with_build_mode_names_and_fields(
    rule_runner: RuleRunner,
) -> None:
    rule_runner.write_files(
        {
            "src/BUILD": "docker_mirror_images(name='mirror', sources=['images.txt'], method='copy')",
            "src/images.txt": COPY_SPEC,
        }
    )
    busybox = generated(rule_runner, "127.0.0.1_5000/library/busybox")
    assert isinstance(busybox, DockerMirrorImageTarget)
    assert busybox[DockerMirrorSourceImageField].value == "127.0.0.1:5000/library/busybox:1.36"
    assert busybox[DockerMirrorPlatformField].value is None
    assert busybox[DockerMirrorImageRepositoryField].value == "library/busybox"
    assert busybox[DockerMirrorImageTagsField].value == ("1.36",)
    assert busybox[DockerMirrorImageRegistriesField].value == ("<all default registries>",)
    assert busybox[Dependencies].value == ("src/images.txt:mirror",)

    app = generated(rule_runner, "app")
    assert app[DockerMirrorSourceImageField].value == "ghcr.io/org/app:1.4"
    assert app[DockerMirrorPlatformField].value == "linux/arm64"
    assert app[DockerMirrorImageRepositoryField].value == "org/app"

    pinned = generated(rule_runner, "team/pinned")
    assert pinned[DockerMirrorImageTagsField].value == ("digest-sha256-" + "a" * 64,)

    # Published by this plugin's copy rules, never built or pushed by Pants' docker backend.
    for target in (busybox, app, pinned):
        assert DockerMirrorCopyPackageFieldSet.is_applicable(target)
        assert DockerMirrorCopyPublishFieldSet.is_applicable(target)
        assert not DockerPackageFieldSet.is_applicable(target)
        assert not PublishDockerImageFieldSet.is_applicable(target)


def test_both_methods_give_the_same_names_and_helper_dependencies(rule_runner: RuleRunner) -> None:
    def names_and_dependencies(method: str, target_type: type) -> dict[str, tuple[str, ...]]:
        rule_runner.write_files(
            {
                "src/BUILD": f"docker_mirror_images(name='mirror', sources=['*.images.txt'], method='{method}')",
                "src/a.images.txt": COPY_SPEC,
                "src/b.images.txt": "redis:7\n",
            }
        )
        targets = {
            name: generated(rule_runner, name)
            for name in ("127.0.0.1_5000/library/busybox", "app", "team/pinned", "redis")
        }
        assert all(isinstance(target, target_type) for target in targets.values())
        return {name: target[Dependencies].value for name, target in targets.items()}

    build = names_and_dependencies("build", DockerImageTarget)
    copy = names_and_dependencies("copy", DockerMirrorImageTarget)
    assert copy == build
    assert copy["redis"] == ("src/b.images.txt:mirror",)
    assert copy["app"] == ("src/a.images.txt:mirror",)


def test_generator_fields_and_overrides_apply_in_copy_mode(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            "src/BUILD": """docker_mirror_images(
                name='mirror',
                sources=['images.txt'],
                method='copy',
                registries=['@mirror'],
                image_tags=['mirrored'],
                skip_push=True,
                tags=['base'],
                description='mirrored',
                overrides={'app': {'image_tags': ['1.4', '1'], 'skip_push': False, 'repository': 'apps/app'}},
            )""",
            "src/images.txt": COPY_SPEC,
        }
    )
    busybox, app = generated(rule_runner, "127.0.0.1_5000/library/busybox"), generated(
        rule_runner, "app"
    )
    for image in (busybox, app):
        assert image[DockerMirrorImageRegistriesField].value == ("@mirror",)
        assert image[Tags].value == ("base",)
        assert image[DescriptionField].value == "mirrored"
    assert busybox[DockerMirrorImageTagsField].value == ("mirrored",)
    assert busybox[DockerMirrorImageSkipPushField].value is True
    assert app[DockerMirrorImageTagsField].value == ("1.4", "1")
    assert app[DockerMirrorImageSkipPushField].value is False
    assert app[DockerMirrorImageRepositoryField].value == "apps/app"


@pytest.mark.parametrize(
    "arguments, named",
    [
        ("pull=False", "`pull`"),
        ("extra_build_args=['A=1']", "`extra_build_args`"),
        ("image_labels={'a': 'b'}", "`image_labels`"),
        ("overrides={'app': {'pull': True}}", "`pull` (in `overrides` for 'app')"),
    ],
)
def test_build_only_fields_are_an_error_in_copy_mode(
    rule_runner: RuleRunner, arguments: str, named: str
) -> None:
    rule_runner.write_files(
        {
            "src/BUILD": f"docker_mirror_images(name='mirror', sources=['images.txt'], method='copy', {arguments})",
            "src/images.txt": COPY_SPEC,
        }
    )
    with pytest.raises(ExecutionError) as exc:
        generated(rule_runner, "app")
    message = str(exc.value)
    assert 'has `method="copy"`' in message and named in message
    assert "only apply to `docker build`" in message


def test_unknown_method_lists_the_choices(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            "src/BUILD": "docker_mirror_images(name='mirror', sources=['images.txt'], method='sync')",
            "src/images.txt": COPY_SPEC,
        }
    )
    with pytest.raises(ExecutionError) as exc:
        generated(rule_runner, "app")
    assert "method" in str(exc.value) and "'build', 'copy'" in str(exc.value)


def test_docker_mirror_image_can_be_declared_directly(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            "src/BUILD": (
                "docker_mirror_image(name='a', source_image='python:3.12', platform='linux/amd64')\n"
                "docker_mirror_image(name='bad', source_image='Python:3.12')\n"
                "docker_mirror_image(name='badplatform', source_image='python:3.12', platform='linux')\n"
            ),
        }
    )
    target = rule_runner.get_target(Address("src", target_name="a"))
    assert target[DockerMirrorImageTagsField].value == ("latest",)
    with pytest.raises(ExecutionError, match="not an image reference"):
        rule_runner.get_target(Address("src", target_name="bad"))
    with pytest.raises(ExecutionError, match="<os>/<arch>"):
        rule_runner.get_target(Address("src", target_name="badplatform"))


# Where images may come from and go to ---------------------------------------------------------
# Decided at generation, in both methods: `[docker-mirror].allowed_source_registries`, and no image
# without a destination registry (which would go to Docker Hub).

METHODS = ["build", "copy"]


@pytest.mark.parametrize(
    "registry, allowed, expected",
    [
        # A line without a host names Docker Hub, `docker.io`; its other names count as it.
        ("docker.io", ["docker.io"], True),
        ("index.docker.io", ["docker.io"], True),
        ("registry-1.docker.io", ["docker.io"], True),
        ("docker.io", ["index.docker.io"], True),
        ("docker.io", ["ghcr.io"], False),
        # Globs: `*.gcr.io` is every subdomain, not gcr.io itself, nor a look-alike.
        ("eu.gcr.io", ["*.gcr.io"], True),
        ("us-docker.pkg.gcr.io", ["*.gcr.io"], True),
        ("gcr.io", ["*.gcr.io"], False),
        ("evilgcr.io", ["*.gcr.io"], False),
        ("eu.gcr.io.evil.com", ["*.gcr.io"], False),
        ("registry.k8s.io", ["docker.io", "*.gcr.io", "registry.k8s.io"], True),
        ("k8s.io", ["registry.k8s.io"], False),
        # Ports: an entry without one matches any; `host:port` only that port.
        ("registry.lan:5000", ["registry.lan"], True),
        ("registry.lan:5000", ["registry.lan:5000"], True),
        ("registry.lan:5001", ["registry.lan:5000"], False),
        ("registry.lan", ["registry.lan:5000"], False),
        ("localhost:5000", ["localhost"], True),
        ("127.0.0.1:5000", ["127.0.0.1:*"], True),
        ("[::1]:5000", ["[::1]"], True),
        # Case is ignored, on both sides.
        ("GHCR.io", ["ghcr.IO"], True),
        ("Registry.Lan:5000", ["registry.lan:5000"], True),
        # Blank entries match nothing.
        ("ghcr.io", ["", " "], False),
    ],
)
def test_allowlist_matching(registry: str, allowed: list[str], expected: bool) -> None:
    assert source_registry_allowed(registry, allowed) is expected


def test_the_allowlist_judges_each_line_by_its_image_as_docker_reads_it() -> None:
    spec = b"python\nindex.docker.io/library/redis:7\nDocker/docker\nLOCALDOMAIN/debian:12\n"
    with pytest.raises(SpecError) as info:
        check_allowed_source_registries(plan_images([("a.txt", spec)]), ["docker.io"])
    # An upper-case first component is a host (Docker's reading), so not Docker Hub.
    assert [str(e) for e in info.value.errors] == [
        f"a.txt:{n}: registry not allowed: {host} (not in "
        f"`[docker-mirror].allowed_source_registries`: docker.io): {line}"
        for n, host, line in [(3, "Docker", "Docker/docker"), (4, "LOCALDOMAIN", "LOCALDOMAIN/debian:12")]
    ]


def generate_images(rule_runner: RuleRunner, method: str, spec: str, build_extra: str = "") -> list[str]:
    """The addresses of the images that a generator of `method` makes of `spec`."""
    rule_runner.write_files(
        {
            "src/BUILD": (
                f"docker_mirror_images(name='mirror', sources=['images.txt'], method={method!r}"
                f"{build_extra})"
            ),
            "src/images.txt": spec,
        }
    )
    names = [line.split(":")[0] for line in spec.splitlines() if line and not line.startswith("#")]
    return [
        str(rule_runner.get_target(Address("src", target_name="mirror", generated_name=n)).address)
        for n in names
    ]


ALLOWLIST_SPEC = "# images\npython:3.12\nghcr.io/org/app:1\n\nquay.io/org/tool:2\nEvil.Example.com:443/x:1\n"


@pytest.mark.parametrize("method", METHODS)
def test_a_registry_that_is_not_allowed_is_refused_with_path_and_line(method: str) -> None:
    rule_runner = generator_rule_runner(
        *default_registry_args(), "--docker-mirror-allowed-source-registries=['docker.io', 'GHCR.io']"
    )
    with pytest.raises(ExecutionError) as exc:
        generate_images(rule_runner, method, ALLOWLIST_SPEC)
    message = str(exc.value)
    assert (
        "src/images.txt:5: registry not allowed: quay.io (not in "
        "`[docker-mirror].allowed_source_registries`: docker.io, GHCR.io)"
    ) in message
    assert "src/images.txt:6: registry not allowed: Evil.Example.com:443" in message
    assert "src/images.txt:2:" not in message and "src/images.txt:3:" not in message
    assert "no image generated" in message


@pytest.mark.parametrize("method", METHODS)
def test_allowed_registries_generate_and_an_empty_allowlist_allows_any(method: str) -> None:
    spec = "python:3.12\nghcr.io/org/app:1\neu.gcr.io/p/tool:3\n"
    allowed = generator_rule_runner(
        *default_registry_args(),
        "--docker-mirror-allowed-source-registries=['docker.io', 'ghcr.io', '*.gcr.io']",
    )
    assert len(generate_images(allowed, method, spec)) == 3
    assert len(generate_images(generator_rule_runner(*default_registry_args()), method, spec)) == 3


@pytest.mark.parametrize("method", METHODS)
def test_an_image_without_a_destination_registry_is_refused_with_how_to(method: str) -> None:
    # No `[docker].registries` default, no `registries`: Docker Hub, by accident.
    with pytest.raises(ExecutionError) as exc:
        generate_images(generator_rule_runner(), method, "python:3.12\nghcr.io/org/app:1\n")
    message = str(exc.value)
    assert "src:mirror: no destination registry for src:mirror#python, src:mirror#ghcr.io/org/app" in message
    assert "would be pushed to Docker Hub" in message
    assert "[docker.registries.mirror]" in message and 'registries=["docker.io"]' in message
    # Only images without one: an override with a registry takes its image out of the list.
    with pytest.raises(ExecutionError) as exc:
        generate_images(
            generator_rule_runner(), method, "python:3.12\nghcr.io/org/app:1\n",
            ", overrides={'python': {'registries': ['registry.lan:5000']}}",
        )  # fmt: skip
    assert "no destination registry for src:mirror#ghcr.io/org/app:" in str(exc.value)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "build_extra",
    [
        ", registries=['docker.io']",  # Docker Hub, on purpose
        ", registries=['registry.lan:5000']",
        ", skip_push=True",  # nothing is pushed at all
    ],
)
def test_a_named_destination_or_no_push_needs_no_default_registry(method: str, build_extra: str) -> None:
    assert len(generate_images(generator_rule_runner(), method, "python:3.12\n", build_extra)) == 1


@pytest.mark.parametrize("method", METHODS)
def test_a_default_registry_is_a_destination(method: str) -> None:
    assert len(generate_images(generator_rule_runner(*default_registry_args()), method, "python:3.12\n")) == 1
    # A configured registry that is not a default is not one.
    not_default = "--docker-registries={'m': {'address': 'registry.lan', 'default': False}}"
    with pytest.raises(ExecutionError, match="no destination registry"):
        generate_images(generator_rule_runner(not_default), method, "python:3.12\n")
    assert len(generate_images(generator_rule_runner(not_default), method, "python:3.12\n", ", registries=['@m']")) == 1


# `referrers` and `require_signature` ----------------------------------------------------------
# Only with `method="copy"`; the keys are checked at generation.


def pem(private_key: object) -> str:
    from cryptography.hazmat.primitives import serialization

    public = private_key.public_key()  # type: ignore[attr-defined]
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def p256_pem() -> str:
    from cryptography.hazmat.primitives.asymmetric import ec

    return pem(ec.generate_private_key(ec.SECP256R1()))


@pytest.mark.parametrize(
    "build_extra, named, why",
    [
        (", require_signature=['keys/cosign.pub']", "`require_signature`", "a rebuilt image has a digest of its own"),
        (", referrers=False", "`referrers`", "a rebuilt image has a digest of its own"),
        (", overrides={'python': {'referrers': True}}", "`referrers`", "a rebuilt image has a digest of its own"),
        (", platforms=['linux/amd64']", "`platforms`", "built for the platform of the engine that builds it"),
        (", signature_identity='source_repository'", "`signature_identity`", "a rebuilt image has a digest of its own"),
    ],
)
def test_copy_only_fields_are_refused_with_the_build_method(build_extra: str, named: str, why: str) -> None:
    rule_runner = generator_rule_runner(*default_registry_args())
    rule_runner.write_files({"keys/cosign.pub": p256_pem()})
    with pytest.raises(ExecutionError) as exc:
        generate_images(rule_runner, "build", "python:3.12\n", build_extra)
    message = str(exc.value)
    assert f'src:mirror has `method="build"` but sets {named}, which only apply to `method="copy"`' in message
    assert why in message


def rsa_pem() -> str:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return pem(rsa.generate_private_key(65537, 2048))


@pytest.mark.parametrize(
    "written, files",
    [
        # Beside the BUILD file, as `sources` are read.
        ("cosign.pub", {"src/cosign.pub": "good"}),
        ("./cosign.pub", {"src/cosign.pub": "good", "cosign.pub": "bad"}),
        ("../keys/cosign.pub", {"keys/cosign.pub": "good", "src/keys/cosign.pub": "bad"}),
        # From the build root, with `//`.
        ("//keys/cosign.pub", {"keys/cosign.pub": "good", "src/keys/cosign.pub": "bad"}),
        # A plain path that names a file from the build root only, as before: still that file.
        ("keys/cosign.pub", {"keys/cosign.pub": "good"}),
    ],
)
def test_signature_keys_are_read_from_the_build_file_or_with_slashes_from_the_build_root(
    written: str, files: dict[str, str]
) -> None:
    # Generation checks each key it resolves: a wrong pick would name the bad one.
    rule_runner = generator_rule_runner(*default_registry_args())
    rule_runner.write_files({path: p256_pem() if kind == "good" else rsa_pem() for path, kind in files.items()})
    assert len(generate_images(rule_runner, "copy", "python:3.12\n", f", require_signature=[{written!r}]")) == 1


def test_a_plain_key_path_that_names_a_file_in_both_places_is_refused_as_ambiguous() -> None:
    rule_runner = generator_rule_runner(*default_registry_args())
    rule_runner.write_files({"src/keys/cosign.pub": p256_pem(), "keys/cosign.pub": p256_pem()})
    with pytest.raises(ExecutionError) as exc:
        generate_images(rule_runner, "copy", "python:3.12\n", ", require_signature=['keys/cosign.pub']")
    assert (
        "`keys/cosign.pub` names both src/keys/cosign.pub (from the BUILD file) and keys/cosign.pub "
        "(from the build root): write `./keys/cosign.pub` for the first, or `//keys/cosign.pub` for the second"
    ) in str(exc.value)


@pytest.mark.parametrize(
    "path, message",
    [
        ("/etc/cosign.pub", "is not in the repository"),
        ("~/cosign.pub", "is not in the repository"),
        ("../../outside.pub", "is not a file in the repository"),
        ("//../outside.pub", "is not a file in the repository"),
    ],
)
def test_signature_keys_outside_the_repository_are_refused(path: str, message: str) -> None:
    rule_runner = generator_rule_runner(*default_registry_args())
    with pytest.raises(ExecutionError, match=message):
        generate_images(rule_runner, "copy", "python:3.12\n", f", require_signature=[{path!r}]")


def test_a_missing_signature_key_is_named_with_where_it_was_looked_for() -> None:
    rule_runner = generator_rule_runner(*default_registry_args())
    with pytest.raises(ExecutionError) as exc:
        generate_images(rule_runner, "copy", "python:3.12\n", ", require_signature=['keys/missing.pub']")
    assert (
        "src:mirror: a `require_signature` key is not found:\n`keys/missing.pub`: no such file "
        "(src/keys/missing.pub or keys/missing.pub); a path is read from the BUILD file's "
        "directory, like `sources`; `//keys/cosign.pub` starts at the build root"
    ) in str(exc.value)


def test_a_key_that_is_not_ecdsa_p256_is_named_at_generation() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    rule_runner = generator_rule_runner(*default_registry_args())
    rule_runner.write_files(
        {
            "keys/rsa.pub": pem(rsa.generate_private_key(65537, 2048)),
            "keys/p384.pub": pem(ec.generate_private_key(ec.SECP384R1())),
            "keys/cosign.key": "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nx\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
            "keys/good.pub": p256_pem(),
        }
    )
    with pytest.raises(ExecutionError) as exc:
        generate_images(
            rule_runner, "copy", "python:3.12\n",
            ", require_signature=['keys/good.pub', 'keys/rsa.pub', 'keys/p384.pub', 'keys/cosign.key']",
        )  # fmt: skip
    message = str(exc.value)
    assert "src:mirror: a `require_signature` key is not usable:" in message
    assert "keys/rsa.pub: not an ECDSA P-256 public key (cosign's key type)" in message
    assert "keys/p384.pub: not an ECDSA P-256 public key (cosign's key type)" in message
    assert "keys/cosign.key: not a PEM public key" in message
    assert "keys/good.pub" not in message


def test_platforms_reach_each_copied_image_and_a_lines_own_platform_wins() -> None:
    rule_runner = generator_rule_runner(*default_registry_args())
    rule_runner.write_files(
        {
            "src/BUILD": "docker_mirror_images(name='mirror', sources=['images.txt'], method='copy', "
            "platforms=['linux/amd64', 'linux/arm64'])",
            "src/images.txt": "python:3.12\n--platform=linux/arm64 redis:7\n",
        }
    )
    python = rule_runner.get_target(Address("src", target_name="mirror", generated_name="python"))
    redis = rule_runner.get_target(Address("src", target_name="mirror", generated_name="redis"))
    assert python[DockerMirrorPlatformsField].value == ("linux/amd64", "linux/arm64")
    assert python[DockerMirrorPlatformField].value is None
    assert redis[DockerMirrorPlatformsField].value is None
    assert redis[DockerMirrorPlatformField].value == "linux/arm64"


@pytest.mark.parametrize("platforms, message", [("['linux/AMD64']", "must list .<os>/<arch>."), ("[]", "is empty")])
def test_platforms_that_are_not_platforms_are_refused(platforms: str, message: str) -> None:
    rule_runner = generator_rule_runner(*default_registry_args())
    with pytest.raises(ExecutionError, match=message):
        generate_images(rule_runner, "copy", "python:3.12\n", f", platforms={platforms}")
