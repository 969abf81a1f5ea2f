"""Which images of different generators would overwrite each other at their destination, from
spec lines through the generator's own planning and Pants' destination logic."""

from __future__ import annotations

from typing import Any, Mapping

import pytest
from docker_mirror.destination_clashes import (
    clash_message,
    find_destination_clashes,
    image_writes,
    mirrored_image,
)
from docker_mirror.generation import image_field_values, plan_images
from docker_mirror.goals.package_test import REGISTRIES
from pants.engine.addresses import Address
from pants.engine.unions import UnionMembership

# REGISTRIES: `@mirror`, the default, under `mirror/`; `@backup` with `skip_push`.
MIRROR = "127.0.0.1:5501/mirror"


def writes(
    directory: str,
    spec: str,
    *,
    method: str = "build",
    template: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[tuple[str, Any]]:
    """What the images of `<directory>:mirror` with this `images.txt` would write."""
    generator = Address(directory, target_name="mirror")
    found: list[tuple[str, Any]] = []
    for image in plan_images([(f"{directory}/images.txt", spec.encode())]):
        values = image_field_values(
            image,
            method=method,
            defaults={},
            template=template or {},
            overrides=(overrides or {}).get(image.name, {}),
            spec_file="images.txt",
            helper_spec=f"{directory}/images.txt:mirror",
        )
        target = generator.create_generated(image.name)
        found.extend(
            image_writes(
                target,
                mirrored_image(generator, target, image.entry, method=method, values=values),
                values,
                docker_registries=REGISTRIES,
                default_repository="{name}",
                union_membership=UnionMembership.from_rules([]),
            )
        )
    return found


def test_two_sources_that_drop_to_one_tag_clash_and_the_message_names_both() -> None:
    clashes = find_destination_clashes(
        [
            *writes("team-a", "ghcr.io/org/app:1\nredis:7\n"),
            *writes("team-b", "# team b\ndocker.io/org/app:1\n"),
            *writes("team-c", "org/app:2\n"),
        ]
    )

    assert [clash.references for clash in clashes] == [(f"{MIRROR}/org/app:1",)]
    message = clash_message("team-b:mirror", clashes)
    assert message == (
        "team-b:mirror: images of different generators would overwrite each other at their "
        "destination, no image generated:\n"
        f"{MIRROR}/org/app:1 would get different images from:\n"
        "  team-a/images.txt:1: team-a:mirror#ghcr.io/org/app mirrors ghcr.io/org/app:1\n"
        "  team-b/images.txt:2: team-b:mirror#docker.io/org/app mirrors docker.io/org/app:1\n"
        'Give one of them another destination: `repository="<prefix>/{target_repository}"` on '
        "its `docker_mirror_images` puts every image it mirrors under `<prefix>/`, or "
        "`repository` or `image_tags` in its `overrides` moves one image (see `pants help "
        "docker_mirror_images`)."
    )
    assert clash_message("team-a:mirror", clashes) == message.replace(
        "team-b:mirror: ", "team-a:mirror: ", 1
    )
    assert clash_message("team-c:mirror", clashes) is None


def test_the_same_image_however_spelt_is_no_clash() -> None:
    # Docker reads all three as docker.io/library/nginx:1.25; all go to `nginx:1.25`.
    same = [
        *writes("a", "nginx:1.25\n"),
        *writes("b", "docker.io/nginx:1.25  AS web\n"),
        *writes("c", "index.docker.io/nginx:1.25\n", template={"skip_push": False}),
    ]
    assert {reference for reference, _ in same} == {f"{MIRROR}/nginx:1.25"}
    assert find_destination_clashes(same) == ()


@pytest.mark.parametrize(
    "other",
    [
        pytest.param({"spec": "nginx:1.26\n", "template": {"image_tags": ["1.25"]}}, id="tag"),
        pytest.param({"spec": "--platform=linux/arm64 nginx:1.25\n"}, id="platform"),
        pytest.param({"spec": "nginx:1.25\n", "method": "copy"}, id="method"),
        pytest.param({"spec": "nginx:1.25\n", "template": {"image_labels": {"a": "b"}}}, id="labels"),
        pytest.param({"spec": "nginx:1.25@sha256:" + "a" * 64 + "\n",
                      "template": {"image_tags": ["1.25"]}}, id="pinned"),
    ],
)
def test_the_same_tag_mirrored_another_way_clashes(other: dict[str, Any]) -> None:
    clashes = find_destination_clashes([*writes("a", "nginx:1.25\n"), *writes("b", **other)])
    assert [clash.references for clash in clashes] == [(f"{MIRROR}/nginx:1.25",)]


def test_what_tells_same_source_images_apart_is_shown() -> None:
    clashes = find_destination_clashes(
        [*writes("a", "nginx:1.25\n"), *writes("b", "nginx:1.25\n", method="copy")]
    )
    message = clash_message("a:mirror", clashes) or ""
    assert 'a:mirror#nginx mirrors nginx:1.25 (method="build")' in message
    assert 'b:mirror#nginx mirrors nginx:1.25 (method="copy")' in message


def test_a_repository_prefix_or_other_tags_separate_them() -> None:
    team_a = writes("team-a", "ghcr.io/org/app:1\n")
    prefixed = writes("team-b", "docker.io/org/app:1\n", template={"repository": "hub/{target_repository}"})
    retagged = writes(
        "team-c", "quay.io/org/app:1\n", overrides={"quay.io/org/app": {"image_tags": ["1-quay"]}}
    )
    assert [reference for reference, _ in prefixed] == [f"{MIRROR}/hub/org/app:1"]
    assert [reference for reference, _ in retagged] == [f"{MIRROR}/org/app:1-quay"]
    assert find_destination_clashes([*team_a, *prefixed, *retagged]) == ()


def test_every_shared_reference_of_one_pair_is_one_clash() -> None:
    two_tags = {"image_tags": ["1", "stable"]}
    clashes = find_destination_clashes(
        [
            *writes("a", "ghcr.io/org/app:1\n", template=two_tags),
            *writes("b", "docker.io/org/app:1\n", template=two_tags),
        ]
    )
    assert [clash.references for clash in clashes] == [
        (f"{MIRROR}/org/app:1", f"{MIRROR}/org/app:stable")
    ]
    assert f"{MIRROR}/org/app:1, {MIRROR}/org/app:stable would get" in (
        clash_message("a:mirror", clashes) or ""
    )


@pytest.mark.parametrize(
    "template",
    [
        pytest.param({"skip_push": True}, id="skip_push"),
        pytest.param({"registries": ["@backup"]}, id="registry with skip_push"),
        pytest.param({"registries": ["@unknown"]}, id="unknown registry, which Pants reports"),
        pytest.param({"image_tags": ["{build_args.VERSION}"]}, id="known only to a build"),
    ],
)
def test_images_that_write_nowhere_known_write_nothing(template: dict[str, Any]) -> None:
    assert writes("a", "nginx:1.25\n", template=template) == []


def test_another_subset_of_platforms_clashes_and_the_same_one_however_written_does_not() -> None:
    whole = writes("a", "nginx:1.25\n", method="copy")
    subset = writes("b", "nginx:1.25\n", method="copy", template={"platforms": ["linux/amd64", "linux/arm64"]})
    same = writes("c", "nginx:1.25\n", method="copy", template={"platforms": ["linux/arm64/v8", "linux/amd64"]})
    clashes = find_destination_clashes([*whole, *subset])
    assert [clash.references for clash in clashes] == [(f"{MIRROR}/nginx:1.25",)]
    message = clash_message("a:mirror", clashes) or ""
    assert "a:mirror#nginx mirrors nginx:1.25 (every platform)" in message
    assert "b:mirror#nginx mirrors nginx:1.25 (platforms: linux/amd64, linux/arm64)" in message
    assert find_destination_clashes([*subset, *same]) == ()
