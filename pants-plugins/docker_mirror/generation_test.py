"""`docker_mirror_images(method="copy")` through Pants' engine (RuleRunner), no network."""

from __future__ import annotations

import pytest
from docker_mirror.goals.package import DockerMirrorCopyPackageFieldSet
from docker_mirror.goals.publish import DockerMirrorCopyPublishFieldSet
from docker_mirror.target_types import (
    DockerMirrorImageRegistriesField,
    DockerMirrorImageRepositoryField,
    DockerMirrorImageSkipPushField,
    DockerMirrorImageTagsField,
    DockerMirrorImageTarget,
    DockerMirrorPlatformField,
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

SPEC = (
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
            "src/images.txt": SPEC,
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
                "src/a.images.txt": SPEC,
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
            "src/images.txt": SPEC,
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
            "src/images.txt": SPEC,
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
            "src/images.txt": SPEC,
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
