"""Which targets Pants' change detection selects for changed spec files (no git, no network).

`pants --changed-since=<rev>` asks git for the changed files, then computes `ChangedAddresses`
from them (owners of the files, plus their dependents per `[changed] dependents`, by default
none); those addresses are the targets `publish` acts on, a generator among them standing for
ALL its images. Each generated image owns its spec file (`spec_file`), so the owners alone are
the images of the changed files. These tests request `ChangedAddresses` through Pants' own rules
for a given list of changed files. They leave out the docker backend's dependency inference (it
runs a Dockerfile parser); `changed_since_integration_test.py` runs the real
`./pants --changed-since` against git.
"""

from __future__ import annotations

import dataclasses

from pathlib import Path

import pytest
from docker_mirror import generator
from docker_mirror.generation import BUILD, COPY, PlannedImage, image_field_values
from docker_mirror.spec.parser import parse_spec
from docker_mirror.target_types import (
    DockerMirrorBuildImageTarget,
    DockerMirrorBuildSpecFileField,
    DockerMirrorImageSpecFileField,
    DockerMirrorImagesTargetGenerator,
    DockerMirrorImagesSourcesField,
    DockerMirrorImageTarget,
)
from docker_mirror_testutil.rule_runner_options import default_registry_args
from pants.backend.docker.goals.package_image import DockerPackageFieldSet
from pants.backend.docker.goals.publish import PublishDockerImageFieldSet
from pants.backend.docker.target_types import (
    DockerImageInstructionsField,
    DockerImageSourceField,
    DockerImageTarget,
)
from pants.backend.docker.util_rules import dockerfile
from pants.base.specs import FileLiteralSpec, RawSpecs
from pants.core.target_types import TargetGeneratorSourcesHelperTarget
from pants.engine.addresses import Address, Addresses
from pants.engine.internals.scheduler import ExecutionError
from pants.engine.rules import QueryRule
from pants.engine.target import (
    HydratedSources,
    HydrateSourcesRequest,
    SourcesField,
    SourcesPaths,
    SourcesPathsRequest,
)
from pants.engine.unions import UnionMembership
from pants.help.help_info_extracter import TargetFieldHelpInfo
from pants.testutil.rule_runner import RuleRunner
from pants.vcs import changed
from pants.util.dirutil import recursive_dirname
from pants.util.frozendict import FrozenDict
from pants.vcs.changed import ChangedAddresses, ChangedRequest, DependentsOption

NONE, DIRECT, TRANSITIVE = DependentsOption.NONE, DependentsOption.DIRECT, DependentsOption.TRANSITIVE


@pytest.fixture
def rule_runner() -> RuleRunner:
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
    rule_runner: RuleRunner, dependents: DependentsOption
) -> None:
    """With Pants' default (`NONE`) the owners alone: the file's images, which own it, and its
    helper. With dependents, also what depends on an image (`web:web`), as for any owned file."""
    expected = RUNTIME | (set() if dependents == NONE else {"web:web"})
    assert changed_addresses(rule_runner, ["base/runtime.images.txt"], dependents) == expected
    # Not the generator `base:images`: it would stand for its siblings' images too.


@pytest.mark.parametrize(
    "changed_file, expected",
    [
        ("copies/images.txt", {"copies/images.txt:mirror", "copies:mirror#team/tool", "copies:mirror#db"}),
        ("copies/other.images.txt", {"copies/other.images.txt:mirror", "copies:mirror#team/cli"}),
    ],
)
def test_copy_mode_images_own_their_spec_file_too(
    rule_runner: RuleRunner, changed_file: str, expected: set[str]
) -> None:
    assert changed_addresses(rule_runner, [changed_file], NONE) == expected


def test_an_added_spec_file_selects_its_images(rule_runner: RuleRunner) -> None:
    rule_runner.write_files({"base/new.images.txt": "nginx:1.25\n"})
    assert changed_addresses(rule_runner, ["base/new.images.txt"], NONE) == {
        "base/new.images.txt:images",
        "base:images#nginx",
    }


def test_a_spec_file_in_a_subdirectory_selects_its_images(rule_runner: RuleRunner) -> None:
    assert changed_addresses(rule_runner, ["base/more/extra.txt"], NONE) == {
        "base/more/extra.txt:../images",
        "base:images#alpine",
    }


def test_a_spec_file_given_as_an_argument_stands_for_its_images(rule_runner: RuleRunner) -> None:
    """`pants publish base/runtime.images.txt` publishes that file's images."""
    specs = RawSpecs(
        file_literals=(FileLiteralSpec("base/runtime.images.txt"), FileLiteralSpec("copies/images.txt")),
        description_of_origin="test",
    )
    assert {a.spec for a in rule_runner.request(Addresses, [specs])} == RUNTIME | {
        "copies/images.txt:mirror",
        "copies:mirror#team/tool",
        "copies:mirror#db",
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
    assert changed_addresses(rule_runner, ["apps/BUILD"], NONE) == {
        "apps/images.txt:main",
        "apps:main#team/app",
        "apps/edge.images.txt:edge",
        "apps:edge#team/proxy",
    }


def test_several_changed_files_select_the_union(rule_runner: RuleRunner) -> None:
    assert changed_addresses(
        rule_runner, ["base/runtime.images.txt", "apps/edge.images.txt", "README.md"], NONE
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
    rule_runner: RuleRunner,
) -> None:
    image = rule_runner.get_target(Address("base", target_name="images", generated_name="python"))
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
    dockerfile = rule_runner.request(
        HydratedSources,
        [HydrateSourcesRequest(source, for_sources_types=(DockerImageSourceField,), enable_codegen=True)],
    )
    assert dockerfile.snapshot.files == ("base/Dockerfile.images.python",)
    assert rule_runner.request(SourcesPaths, [SourcesPathsRequest(source)]).files == ()


def test_a_copy_mode_image_owns_its_spec_file_and_reads_nothing_of_it(rule_runner: RuleRunner) -> None:
    image = rule_runner.get_target(Address("copies", target_name="mirror", generated_name="db"))
    source = image.get(SourcesField)
    assert isinstance(source, DockerMirrorImageSpecFileField)
    assert source.value == "images.txt"
    assert source.filespec_matcher.matches(["copies/images.txt"]) == ["copies/images.txt"]
    assert rule_runner.request(SourcesPaths, [SourcesPathsRequest(source)]).files == ()


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
