"""The `docker_mirror_images` generator through Pants' engine (RuleRunner), no network."""

from __future__ import annotations

import pytest
from docker_mirror_testutil.rule_runner_options import default_registry_args, generator_rule_runner
from pants.backend.docker.target_types import (
    DockerImageBuildPullOptionField,
    DockerImageInstructionsField,
    DockerImageRegistriesField,
    DockerImageRepositoryField,
    DockerImageSkipPushField,
    DockerImageSourceField,
    DockerImageTagsField,
    DockerImageTarget,
)
from pants.core.target_types import TargetGeneratorSourcesHelperTarget
from pants.engine.addresses import Address
from pants.engine.internals.scheduler import ExecutionError
from pants.engine.target import Dependencies, DescriptionField, Tags
from pants.testutil.rule_runner import RuleRunner


@pytest.fixture
def rule_runner() -> RuleRunner:
    return generator_rule_runner(*default_registry_args())


def generated(rule_runner: RuleRunner, name: str, *, directory: str = "src", generator: str = "mirror"):
    return rule_runner.get_target(Address(directory, target_name=generator, generated_name=name))


def test_one_image_per_line_with_fields(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            "src/BUILD": "docker_mirror_images(name='mirror', sources=['images.txt'])",
            "src/images.txt": (
                "# base images\n"
                "python:3.12-slim\n"
                "bitnami/redis:7.2 AS redis\n"
                "--platform=linux/arm64 ghcr.io/org/app:1.4\n"
                "localhost:5000/team/app@sha256:" + "a" * 64 + "\n"
                "busybox\n"
            ),
        }
    )
    python = generated(rule_runner, "python")
    assert isinstance(python, DockerImageTarget)
    assert python[DockerImageInstructionsField].value == ("FROM python:3.12-slim",)
    assert python[DockerImageRepositoryField].value == "python"
    assert python[DockerImageTagsField].value == ("3.12-slim",)
    assert python[DockerImageBuildPullOptionField].value is True
    # In place of `source`, the spec file it owns, which Pants' docker backend never reads as a
    # Dockerfile (generator_changed_test.py).
    assert python[DockerImageSourceField].alias == "spec_file"
    assert python[DockerImageSourceField].value == "images.txt"
    assert python[Dependencies].value == ("src/images.txt:mirror",)

    redis = generated(rule_runner, "redis")
    assert redis[DockerImageInstructionsField].value == ("FROM bitnami/redis:7.2",)
    assert redis[DockerImageRepositoryField].value == "bitnami/redis"
    assert redis[DockerImageTagsField].value == ("7.2",)

    app = generated(rule_runner, "ghcr.io/org/app")
    assert app[DockerImageInstructionsField].value == ("FROM --platform=linux/arm64 ghcr.io/org/app:1.4",)
    assert app[DockerImageRepositoryField].value == "org/app"

    local = generated(rule_runner, "localhost_5000/team/app")
    assert local[DockerImageRepositoryField].value == "team/app"
    assert local[DockerImageTagsField].value == ("digest-sha256-" + "a" * 64,)

    assert generated(rule_runner, "busybox")[DockerImageTagsField].value == ("latest",)


def test_generator_fields_apply_to_every_image_and_overrides_replace(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            "src/BUILD": """docker_mirror_images(
                name='mirror',
                sources=['*.images.txt'],
                registries=['@mirror'],
                skip_push=True,
                tags=['base'],
                description='mirrored',
                pull=False,
                overrides={'python': {'image_tags': ['3.12', '3'], 'skip_push': False}},
            )""",
            "src/a.images.txt": "python:3.12\n",
            "src/b.images.txt": "redis:7\n",
        }
    )
    python, redis = generated(rule_runner, "python"), generated(rule_runner, "redis")
    for image in (python, redis):
        assert image[DockerImageRegistriesField].value == ("@mirror",)
        assert image[Tags].value == ("base",)
        assert image[DescriptionField].value == "mirrored"
        assert image[DockerImageBuildPullOptionField].value is False
    assert python[DockerImageTagsField].value == ("3.12", "3")
    assert python[DockerImageSkipPushField].value is False
    assert redis[DockerImageTagsField].value == ("7",)
    assert redis[DockerImageSkipPushField].value is True
    # Each image depends on its own spec file's helper only.
    assert python[Dependencies].value == ("src/a.images.txt:mirror",)
    assert redis[Dependencies].value == ("src/b.images.txt:mirror",)


def test_generator_image_tags_replace_the_per_entry_default(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            "src/BUILD": "docker_mirror_images(name='mirror', sources=['images.txt'], image_tags=['mirrored'])",
            "src/images.txt": "python:3.12\n",
        }
    )
    assert generated(rule_runner, "python")[DockerImageTagsField].value == ("mirrored",)


def test_spec_files_in_subdirectories_get_their_own_helper(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            "src/BUILD": "docker_mirror_images(name='mirror', sources=['teams/**/*.txt'])",
            "src/teams/a/images.txt": "python:3.12\n",
            "src/teams/b/images.txt": "redis:7\n",
        }
    )
    helper = rule_runner.get_target(
        Address("src", target_name="mirror", relative_file_path="teams/a/images.txt")
    )
    assert isinstance(helper, TargetGeneratorSourcesHelperTarget)
    assert generated(rule_runner, "python")[Dependencies].value == ("src/teams/a/images.txt:../../mirror",)
    assert generated(rule_runner, "redis")[Dependencies].value == ("src/teams/b/images.txt:../../mirror",)


def test_colliding_names_get_tag_suffixes(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            "src/BUILD": "docker_mirror_images(name='mirror', sources=['images.txt'])",
            "src/images.txt": "python:3.11\npython:3.12\n",
        }
    )
    assert generated(rule_runner, "python_3.11")[DockerImageInstructionsField].value == ("FROM python:3.11",)
    assert generated(rule_runner, "python_3.12")[DockerImageInstructionsField].value == ("FROM python:3.12",)


def test_bad_line_fails_generation_with_path_and_line(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            "src/BUILD": "docker_mirror_images(name='mirror', sources=['images.txt'])",
            "src/images.txt": "python:3.12\nredis:7 RUN rm -rf /\nalpine:$VERSION\n",
        }
    )
    with pytest.raises(ExecutionError) as exc:
        generated(rule_runner, "python")
    message = str(exc.value)
    assert "src/images.txt:2: " in message and "redis:7 RUN rm -rf /" in message
    assert "src/images.txt:3: " in message and "alpine:$VERSION" in message
    assert "no image generated" in message


def test_duplicate_reference_across_files_names_both(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            "src/BUILD": "docker_mirror_images(name='mirror', sources=['*.txt'])",
            "src/a.txt": "python:3.12\n",
            "src/b.txt": "redis:7\npython:3.12\n",
        }
    )
    with pytest.raises(ExecutionError) as exc:
        generated(rule_runner, "redis")
    assert "src/b.txt:2: " in str(exc.value) and "src/a.txt:1" in str(exc.value)


def test_unknown_override_lists_valid_names(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            "src/BUILD": "docker_mirror_images(name='mirror', sources=['images.txt'], overrides={'pyton': {'skip_push': True}})",
            "src/images.txt": "python:3.12\nredis:7\n",
        }
    )
    with pytest.raises(ExecutionError) as exc:
        generated(rule_runner, "python")
    message = str(exc.value)
    assert "'pyton'" in message and "Valid names: 'python', 'redis'" in message


def test_no_matching_spec_file_is_an_error(rule_runner: RuleRunner) -> None:
    rule_runner.write_files({"src/BUILD": "docker_mirror_images(name='mirror', sources=['missing.txt'])"})
    with pytest.raises(ExecutionError) as exc:
        rule_runner.get_target(Address("src", target_name="mirror"))
        generated(rule_runner, "python")
    assert "missing.txt" in str(exc.value)


def test_two_sources_for_one_destination_are_refused(rule_runner: RuleRunner) -> None:
    # The destination drops the registry host: both lines would push `python:3.12`.
    rule_runner.write_files(
        {
            "src/BUILD": "docker_mirror_images(name='mirror', sources=['images.txt'])",
            "src/images.txt": "python:3.12\nevil.example.com/python:3.12\nredis:7\n",
        }
    )
    with pytest.raises(ExecutionError) as exc:
        generated(rule_runner, "redis")
    message = str(exc.value)
    assert (
        'src/images.txt:2: pushes to the same repository and tag "python:3.12" as the image on '
        "src/images.txt:1" in message
    ), message
    assert "no image generated" in message


def test_overrides_can_separate_two_sources_of_one_repository(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            "src/BUILD": (
                "docker_mirror_images(name='mirror', sources=['images.txt'], "
                "overrides={'mirror.example.com/python': {'image_tags': ['3.12-internal']}})"
            ),
            "src/images.txt": "python:3.12\nmirror.example.com/python:3.12\n",
        }
    )
    assert generated(rule_runner, "python")[DockerImageTagsField].value == ("3.12",)
    assert generated(rule_runner, "mirror.example.com/python")[DockerImageTagsField].value == (
        "3.12-internal",
    )


def test_two_generators_writing_different_images_to_one_tag_are_both_refused(
    rule_runner: RuleRunner,
) -> None:
    rule_runner.write_files(
        {
            "team-a/BUILD": "docker_mirror_images(name='mirror')",
            "team-a/images.txt": "ghcr.io/org/app:1\nredis:7\n",
            "team-b/BUILD": "docker_mirror_images(name='mirror', method='copy')",
            "team-b/images.txt": "docker.io/org/app:1\n",
            # Other tags of the same repositories: no clash.
            "team-c/BUILD": "docker_mirror_images(name='mirror')",
            "team-c/images.txt": "ghcr.io/org/app:2\nredis:6\n",
        }
    )
    for directory, name in (("team-a", "redis"), ("team-b", "docker.io/org/app")):
        with pytest.raises(ExecutionError) as exc:
            generated(rule_runner, name, directory=directory)
        message = str(exc.value)
        assert f"{directory}:mirror: images of different generators would overwrite" in message
        assert "registry.example.com/org/app:1 would get different images from:" in message
        assert (
            'team-a/images.txt:1: team-a:mirror#ghcr.io/org/app mirrors ghcr.io/org/app:1 (method="build")'
            in message
        )
        assert (
            "team-b/images.txt:1: team-b:mirror#docker.io/org/app mirrors docker.io/org/app:1 "
            '(method="copy")' in message
        )
        assert "team-c" not in message
    assert generated(rule_runner, "redis", directory="team-c")[DockerImageTagsField].value == ("6",)


def test_a_repository_with_target_repository_prefixes_every_image(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            "src/BUILD": (
                "docker_mirror_images(name='mirror', repository='hub/{target_repository}', "
                "overrides={'redis': {'repository': 'cache/{target_repository}'}})"
            ),
            "src/images.txt": "docker.io/org/app:1\nredis:7\n",
        }
    )
    assert generated(rule_runner, "docker.io/org/app")[DockerImageRepositoryField].value == "hub/org/app"
    assert generated(rule_runner, "redis")[DockerImageRepositoryField].value == "cache/redis"
