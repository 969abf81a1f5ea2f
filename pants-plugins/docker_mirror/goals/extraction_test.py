"""Tests for docker_mirror.goals.extraction: the images found, checked, and written into new or existing
spec files with their comments and pins kept."""

from __future__ import annotations

import json

import pytest
from docker_mirror.goals.extraction import (
    ExtractionError,
    check_generates,
    found_images,
    location,
    new_spec,
    update_spec,
)
from docker_mirror.spec_files.parser import parse_spec

PATH = "deploy/images.txt"
PIN = "sha256:" + "c" * 64


def result(*images: dict, error: str | None = None, path: str = "deploy/all.yaml") -> bytes:
    return json.dumps({"version": 1, "files": [{"path": path, "error": error, "images": list(images)}]}).encode()


def image(value: object, kind: str | None = "Deployment", name: str | None = "web", document: int = 1, **extra: object) -> dict:
    fields = {"document": document, "kind": kind, "name": name, "line": 9,
              "field": "spec.template.spec.containers[0].image"}
    if isinstance(value, str):
        return {**fields, "image": value, **extra}
    return {**fields, "image": None, **extra}


def test_found_images_are_deduplicated_with_every_place_they_are_used() -> None:
    found = found_images(
        result(image("nginx:1.25"), image("busybox:1.36", "CronJob", "backup", 2), image("busybox:1.36"))
    )
    assert found == {
        "nginx:1.25": frozenset({"Deployment/web"}),
        "busybox:1.36": frozenset({"CronJob/backup", "Deployment/web"}),
    }


def test_one_image_under_several_spellings_is_one_line_in_its_shortest_spelling() -> None:
    # Issue 18: `nginx` here and `nginx:latest` there stopped the extraction with a name clash.
    found = found_images(
        result(
            image("nginx:latest", "Deployment", "a"),
            image("docker.io/library/nginx:latest", "Deployment", "b"),
            image("nginx", "Pod", "c"),
            image("library/nginx", "Pod", "d"),
            image("docker.io/bitnami/redis:7", "StatefulSet", "e"),
            image("index.docker.io/bitnami/redis:7", "StatefulSet", "f"),
        )
    )
    assert found == {
        "nginx": frozenset({"Deployment/a", "Deployment/b", "Pod/c", "Pod/d"}),
        "docker.io/bitnami/redis:7": frozenset({"StatefulSet/e", "StatefulSet/f"}),
    }
    spec = new_spec(found)
    check_generates(PATH, spec)
    assert spec.decode().split("\n\n", 1)[1] == (
        "# StatefulSet/e, StatefulSet/f\ndocker.io/bitnami/redis:7\n"
        "# Deployment/a, Deployment/b, Pod/c, Pod/d\nnginx\n"
    )


def test_the_spelling_does_not_depend_on_the_order_found() -> None:
    spellings = ["nginx:latest", "docker.io/library/nginx", "library/nginx", "nginx:latest"]
    for order in (spellings, spellings[::-1], spellings[1:] + spellings[:1]):
        assert list(found_images(result(*(image(text) for text in order)))) == ["nginx:latest"]


def test_an_object_without_a_kind_or_name_says_so() -> None:
    found = found_images(result(image("busybox", kind=None, name="busybox2"), image("a:1", kind=None, name=None)))
    assert found == {"busybox": frozenset({"(no kind)/busybox2"}), "a:1": frozenset({"(no kind)/(no name)"})}
    spec = new_spec(found)
    # The comments are location comments: brought up to date by the next extraction.
    update = update_spec(PATH, spec, {"busybox": frozenset({"Pod/busybox2"})})
    assert update.content.decode().split("\n\n", 1)[1] == "# Pod/busybox2\nbusybox\n"
    assert update.removed == ((5, "a:1"),)


def test_every_bad_image_and_file_is_reported_compiler_style() -> None:
    with pytest.raises(ExtractionError) as raised:
        found_images(
            json.dumps(
                {
                    "files": [
                        {"path": "a.yaml", "error": "invalid YAML: found x (line 3)", "images": []},
                        {"path": "b.yaml", "error": None, "images": [
                            image("{{ .Values.image }}", document=2),
                            image(None, document=3, type="int", text="123"),
                            image(None, document=3, type="mapping"),
                            image("nginx:1.25\nevil:1"),
                        ]},
                    ]
                }
            ).encode()
        )
    assert raised.value.problems[:4] == (
        "a.yaml: invalid YAML: found x (line 3)",
        'b.yaml:2: Deployment/web spec.template.spec.containers[0].image (line 9): "{{ .Values.image }}" is not a valid image reference: '
        'invalid path component "{{ .Values.image }}": character "{" is not allowed (allowed: [a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)',
        'b.yaml:3: Deployment/web spec.template.spec.containers[0].image (line 9): the image is an int "123", not a string',
        "b.yaml:3: Deployment/web spec.template.spec.containers[0].image (line 9): the image is a mapping, not a string",
    )
    # A control character is shown escaped, never printed.
    assert raised.value.problems[-1].startswith(
        'b.yaml:1: Deployment/web spec.template.spec.containers[0].image (line 9): "nginx:1.25\\x0aevil:1" '
        "is not a valid image reference: "
    )
    assert "\n" not in raised.value.problems[-1]


def test_names_from_manifests_cannot_break_out_of_their_comment() -> None:
    assert location("Deployment", "web\nevil.example.com/x:1 # ") == "Deployment/web?evil.example.com?x:1???"
    spec = new_spec({"nginx:1.25": frozenset({location("Pod", "a\r\nb\u202e")})})
    assert [str(e.reference) for e in parse_spec(spec, PATH)] == ["nginx:1.25"]


def test_a_new_spec_is_sorted_with_location_comments_and_parses() -> None:
    spec = new_spec({"redis:7": frozenset({"StatefulSet/cache"}), "busybox:1.36": frozenset({"Job/b", "CronJob/a"})})
    assert spec.decode().split("\n\n", 1)[1] == (
        "# CronJob/a, Job/b\nbusybox:1.36\n# StatefulSet/cache\nredis:7\n"
    )
    assert [str(e.reference) for e in parse_spec(spec, PATH)] == ["busybox:1.36", "redis:7"]


def test_update_keeps_comments_pins_platforms_and_names_and_refreshes_locations() -> None:
    existing = (
        "\ufeff# my images: do not edit by hand\r\n"
        "\r\n"
        "# Deployment/old\r\n"
        f"--platform=linux/arm64 nginx:1.25@{PIN}   AS web  # pinned 2026-01-01\r\n"
        "# StatefulSet/cache\r\n"
        "redis:6\r\n"
        "# keep this note\r\n"
        "zookeeper:3.9\r\n"
    ).encode()
    images = {
        "nginx:1.25": frozenset({"Deployment/web"}),
        "busybox:1.36": frozenset({"CronJob/backup"}),
        "zookeeper:3.9": frozenset({"StatefulSet/zk"}),
        "redis:7": frozenset({"StatefulSet/cache"}),
    }

    update = update_spec(PATH, existing, images)

    assert update.content.decode() == (
        "\ufeff# my images: do not edit by hand\r\n"
        "\r\n"
        "# CronJob/backup\r\n"
        "busybox:1.36\r\n"
        "# Deployment/web\r\n"
        f"--platform=linux/arm64 nginx:1.25@{PIN}   AS web  # pinned 2026-01-01\r\n"
        "# StatefulSet/cache\r\n"
        "redis:7\r\n"
        "# keep this note\r\n"
        "zookeeper:3.9\r\n"
    )
    assert [a for a, _ in update.added] == ["busybox:1.36", "redis:7"]
    assert update.removed == ((6, "redis:6"),)
    assert update.kept == 2 and update.changed


def test_an_unchanged_extraction_changes_no_byte() -> None:
    existing = f"# Deployment/web\nnginx:1.25@{PIN}\nredis:7".encode()
    update = update_spec(PATH, existing, {"nginx:1.25": frozenset({"Deployment/web"}), "redis:7": frozenset({"Pod/r"})})
    assert update.content == f"# Deployment/web\nnginx:1.25@{PIN}\nredis:7".encode()
    assert not update.changed and update.added == () and update.removed == ()


@pytest.mark.parametrize(
    "line, found, kept",
    [
        ("busybox:latest@" + PIN, "busybox", True),
        ("busybox", "busybox:latest", True),
        (f"nginx:1.25@{PIN}", f"nginx:1.25@{PIN}", True),
        (f"nginx:1.25@{PIN}", "nginx:1.25@sha256:" + "d" * 64, False),
        (f"nginx@{PIN}", "nginx", False),
        ("nginx:1.25", "nginx:1.26", False),
        # Spellings of one image: the line is kept as it is, pin and all (issue 18).
        ("docker.io/library/nginx:1.25", "nginx:1.25", True),
        (f"docker.io/library/nginx:1.25@{PIN}", "nginx:1.25", True),
        (f"index.docker.io/nginx@{PIN}", f"library/nginx@{PIN}", True),
        (f"nginx:latest@{PIN}", "docker.io/library/nginx", True),
        ("registry-1.docker.io/library/nginx:1.25", "nginx:1.25", False),
    ],
)
def test_which_lines_stand_for_which_images(line: str, found: str, kept: bool) -> None:
    update = update_spec(PATH, f"{line}\n".encode(), {found: frozenset({"Pod/x"})})
    assert (update.kept == 1) == kept
    if kept:
        assert update.content == f"{line}\n".encode()


def test_an_existing_file_that_does_not_parse_is_left_alone() -> None:
    with pytest.raises(ExtractionError, match="deploy/images.txt:1: "):
        update_spec(PATH, b"nginx:1.25 RUN x\n", {})


def test_images_that_would_clash_as_targets_are_refused() -> None:
    spec = new_spec({f"nginx:1.25@{PIN}": frozenset({"Pod/a"}), "nginx:1.25@sha256:" + "d" * 64: frozenset({"Pod/b"})})
    with pytest.raises(ExtractionError, match="is also used by"):
        check_generates(PATH, spec)
