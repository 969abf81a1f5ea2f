"""Which targets Pants' change detection selects for changed spec files (no git, no network).

`pants --changed-since=<rev>` asks git for the changed files, then computes `ChangedAddresses`
from them (owners of the files, plus their dependents per `[changed] dependents`); those
addresses are the targets `publish` acts on, a generator among them standing for ALL its
images. These tests request `ChangedAddresses` through Pants' own rules for a given list of
changed files. They leave out the docker backend's dependency inference (it runs a Dockerfile
parser); `changed_since_integration_test.py` runs the real `./pants --changed-since` against git.
"""

from __future__ import annotations

import dataclasses

from pathlib import Path

import pytest
from docker_mirror import generator
from docker_mirror.target_types import (
    DockerMirrorImagesTargetGenerator,
    DockerMirrorImagesSourcesField,
)
from docker_mirror.testutil.rule_runner_options import default_registry_args
from pants.backend.docker.target_types import DockerImageInstructionsField, DockerImageTarget
from pants.core.target_types import TargetGeneratorSourcesHelperTarget
from pants.engine.addresses import Address
from pants.engine.internals.scheduler import ExecutionError
from pants.engine.rules import QueryRule
from pants.engine.target import SourcesField
from pants.engine.unions import UnionMembership
from pants.help.help_info_extracter import TargetFieldHelpInfo
from pants.testutil.rule_runner import RuleRunner
from pants.vcs import changed
from pants.util.dirutil import recursive_dirname
from pants.util.frozendict import FrozenDict
from pants.vcs.changed import ChangedAddresses, ChangedRequest, DependentsOption

DIRECT, TRANSITIVE = DependentsOption.DIRECT, DependentsOption.TRANSITIVE


@pytest.fixture
def rule_runner() -> RuleRunner:
    rule_runner = RuleRunner(
        bootstrap_args=default_registry_args(),
        rules=[
            *generator.rules(),
            *changed.rules(),
            QueryRule(ChangedAddresses, [ChangedRequest]),
        ],
        target_types=[
            DockerMirrorImagesTargetGenerator,
            DockerImageTarget,
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


@pytest.mark.parametrize("dependents", [DIRECT, TRANSITIVE])
def test_an_edited_spec_file_selects_its_images_and_no_sibling(
    rule_runner: RuleRunner, dependents: DependentsOption
) -> None:
    expected = RUNTIME | ({"web:web"} if dependents == TRANSITIVE else set())
    assert changed_addresses(rule_runner, ["base/runtime.images.txt"], dependents) == expected
    # Not the generator `base:images`: it would stand for its siblings' images too.


def test_an_added_spec_file_selects_its_images(rule_runner: RuleRunner) -> None:
    rule_runner.write_files({"base/new.images.txt": "nginx:1.25\n"})
    assert changed_addresses(rule_runner, ["base/new.images.txt"], DIRECT) == {
        "base/new.images.txt:images",
        "base:images#nginx",
    }


def test_without_dependents_only_the_helper_is_selected(rule_runner: RuleRunner) -> None:
    """Why pants.toml sets `[changed] dependents = "direct"`: the helper alone publishes nothing."""
    assert changed_addresses(rule_runner, ["base/runtime.images.txt"], DependentsOption.NONE) == {
        "base/runtime.images.txt:images"
    }


def test_a_spec_file_in_a_subdirectory_selects_its_images(rule_runner: RuleRunner) -> None:
    assert changed_addresses(rule_runner, ["base/more/extra.txt"], DIRECT) == {
        "base/more/extra.txt:../images",
        "base:images#alpine",
    }


@pytest.mark.parametrize("dependents", [DependentsOption.NONE, DIRECT, TRANSITIVE])
def test_a_deleted_spec_file_selects_nothing(
    rule_runner: RuleRunner, dependents: DependentsOption
) -> None:
    """Owners of a deleted file are looked up among unexpanded targets, generators included. The
    generator's `sources` is not a `SourcesField`, so it owns no file and is not selected (it
    would expand to every image of `base:images`)."""
    for deleted in ("base/tools.images.txt", "base/more/extra.txt"):
        delete_file(rule_runner, deleted)
        assert changed_addresses(rule_runner, [deleted], dependents) == set()


def test_an_edited_build_file_selects_every_image_it_generates(rule_runner: RuleRunner) -> None:
    """Pants marks every target of an edited BUILD file as changed: both generators of
    `apps/BUILD`, not just the one whose arguments changed."""
    assert changed_addresses(rule_runner, ["apps/BUILD"], DIRECT) == {
        "apps/images.txt:main",
        "apps:main#team/app",
        "apps/edge.images.txt:edge",
        "apps:edge#team/proxy",
    }


def test_several_changed_files_select_the_union(rule_runner: RuleRunner) -> None:
    assert changed_addresses(
        rule_runner, ["base/runtime.images.txt", "apps/edge.images.txt", "README.md"], DIRECT
    ) == RUNTIME | {"apps/edge.images.txt:edge", "apps:edge#team/proxy"}


# The generator's `sources` field --------------------------------------------------------------


def test_the_generator_owns_no_file_and_pants_help_describes_its_sources() -> None:
    assert not DockerMirrorImagesTargetGenerator.class_has_field(SourcesField, UnionMembership.from_rules([]))
    info = TargetFieldHelpInfo.create(DockerMirrorImagesSourcesField, provider="")
    assert info.alias == "sources"
    assert info.type_hint == "Iterable[str] | None"
    assert info.default == "('images.txt', '*.images.txt')"
    assert "a deleted file" in info.description


def test_sources_globs_exclude_with_bang_and_refuse_parent_directories(
    rule_runner: RuleRunner,
) -> None:
    rule_runner.write_files(
        {
            "excl/BUILD": "docker_mirror_images(name='m', sources=['*.txt', '!old.txt'])",
            "excl/new.txt": "python:3.12\n",
            "excl/old.txt": "python:2.7\n",
            "up/sub/BUILD": "docker_mirror_images(name='m', sources=['../images.txt'])",
        }
    )
    image = rule_runner.get_target(Address("excl", target_name="m", generated_name="python"))
    assert image[DockerImageInstructionsField].value == ("FROM python:3.12",)
    with pytest.raises(ExecutionError) as exc:
        rule_runner.get_target(Address("up/sub", target_name="m"))
    assert "must not have globs with `../`" in str(exc.value)
