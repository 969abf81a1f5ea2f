"""Tests for docker_mirror.goals.pinning: what pin, update and check do to a spec file, given what the
tags serve."""

from __future__ import annotations

import pytest
from docker_mirror.goals.pinning import (
    CHECK,
    PIN,
    UPDATE,
    Served,
    plan_file,
    references_to_resolve,
    short_digest,
)
from docker_mirror.spec_files.parser import parse_spec

PATH = "src/images.txt"
OLD = "sha256:" + "a" * 64
NEW = "sha256:" + "b" * 64
INDEX = "sha256:" + "c" * 64

SPEC = (
    "# base images\r\n"
    "python:3.12  # runtime\r\n"
    f"redis:7.2@{OLD} AS redis\r\n"
    f"--platform=linux/arm64 ghcr.io/org/app:1.4\r\n"
    f"alpine@{OLD}\r\n"
    "busybox\r\n"
).encode()


def served(**by_reference: str) -> dict:
    return {reference: Served(digest) for reference, digest in by_reference.items()}


@pytest.mark.parametrize(
    "mode, expected",
    [
        (PIN, {"python:3.12", "ghcr.io/org/app:1.4", "busybox:latest"}),
        (UPDATE, {"python:3.12", "redis:7.2", "ghcr.io/org/app:1.4", "busybox:latest"}),
        (CHECK, {"python:3.12", "redis:7.2", "ghcr.io/org/app:1.4", "busybox:latest"}),
    ],
)
def test_pinned_lines_need_no_request_unless_updated_or_checked(mode: str, expected: set) -> None:
    # A digest-only line has no tag to follow: never asked for.
    assert references_to_resolve(parse_spec(SPEC, PATH), mode) == expected


def test_pin_pins_unpinned_lines_keeps_pinned_ones_and_every_other_byte() -> None:
    answers = {
        "python:3.12": Served(NEW),
        "ghcr.io/org/app:1.4": Served(INDEX),
        "busybox:latest": Served(NEW),
    }

    result = plan_file(PATH, SPEC, answers, PIN)

    assert result.problems == ()
    assert result.changed
    assert result.content == (
        "# base images\r\n"
        f"python:3.12@{NEW}  # runtime\r\n"
        f"redis:7.2@{OLD} AS redis\r\n"
        f"--platform=linux/arm64 ghcr.io/org/app:1.4@{INDEX}\r\n"
        f"alpine@{OLD}\r\n"
        f"busybox:latest@{NEW}\r\n"
    ).encode()
    assert [str(change) for change in result.changes] == [
        f"src/images.txt:2: python:3.12 (unpinned) -> {NEW[:19]}…",
        f"src/images.txt:4: ghcr.io/org/app:1.4 (unpinned) -> {INDEX[:19]}…",
        f"src/images.txt:6: busybox:latest (unpinned) -> {NEW[:19]}…",
    ]


def test_update_rewrites_only_lines_whose_tag_moved() -> None:
    content = f"python:3.12@{OLD}\nredis:7.2@{OLD}\n".encode()

    result = plan_file(PATH, content, served(**{"python:3.12": NEW, "redis:7.2": OLD}), UPDATE)

    assert result.content == f"python:3.12@{NEW}\nredis:7.2@{OLD}\n".encode()
    assert [str(c) for c in result.changes] == [
        "src/images.txt:1: python:3.12 sha256:aaaaaaaaaaaa… -> sha256:bbbbbbbbbbbb…"
    ]
    assert result.lines_ok == 1


def test_nothing_moved_means_no_change_at_all() -> None:
    content = f"python:3.12@{OLD}\n".encode()
    result = plan_file(PATH, content, served(**{"python:3.12": OLD}), UPDATE)
    assert not result.changed and result.content is content and result.changes == ()


def test_check_writes_nothing_and_reports_unpinned_and_stale_lines() -> None:
    content = f"python:3.12\nredis:7.2@{OLD} AS redis\nnginx:1.25@{OLD}\n".encode()

    result = plan_file(
        PATH, content, served(**{"python:3.12": NEW, "redis:7.2": NEW, "nginx:1.25": OLD}), CHECK
    )

    assert not result.changed and result.content == content
    assert [str(problem) for problem in result.problems] == [
        "src/images.txt:1: unpinned: the tag serves sha256:bbbbbbbbbbbb…: python:3.12",
        f"src/images.txt:2: stale: the tag now serves sha256:bbbbbbbbbbbb…: redis:7.2@{OLD} AS redis",
    ]
    assert result.lines_ok == 1


def test_an_unresolvable_line_is_reported_and_the_others_are_still_pinned() -> None:
    content = b"python:3.12\nghcr.io/team/gone:1\n"
    answers = {
        "python:3.12": Served(NEW),
        "ghcr.io/team/gone:1": Served(problem="cannot resolve ghcr.io/team/gone:1: not found"),
    }

    result = plan_file(PATH, content, answers, PIN)

    assert result.content == f"python:3.12@{NEW}\nghcr.io/team/gone:1\n".encode()
    assert [str(p) for p in result.problems] == [
        "src/images.txt:2: cannot resolve ghcr.io/team/gone:1: not found: ghcr.io/team/gone:1"
    ]


@pytest.mark.parametrize(
    "digest", ["sha256:" + "A" * 64, "sha256:abc", "md5:" + "a" * 32, f"{NEW} AS x", f"{NEW}\nevil:1", ""]
)
def test_a_registry_answer_that_is_not_a_digest_is_never_written(digest: str) -> None:
    result = plan_file(PATH, b"python:3.12\n", {"python:3.12": Served(digest)}, PIN)

    assert result.content == b"python:3.12\n" and not result.changed
    assert len(result.problems) == 1
    assert "the registry answered" in result.problems[0].message


def test_a_file_that_does_not_parse_is_reported_and_left_alone() -> None:
    content = b"python:3.12\nredis:7 RUN rm -rf /\n"
    result = plan_file(PATH, content, served(**{"python:3.12": NEW}), PIN)
    assert result.content == content and not result.changed
    assert [p.line_number for p in result.problems] == [2]


def test_short_digest() -> None:
    assert short_digest(NEW) == "sha256:bbbbbbbbbbbb…"
    assert short_digest("sha256:abc") == "sha256:abc"


def test_every_spelling_of_one_tag_is_resolved_once_and_each_line_keeps_its_own() -> None:
    files = {
        "a.txt": b"nginx:1.25\nbusybox\n",
        "b.txt": b"docker.io/library/nginx:1.25\nindex.docker.io/library/busybox:latest\n",
    }
    entries = [entry for path, content in files.items() for entry in parse_spec(content, path)]
    # One request per image, named as Docker prints it.
    assert references_to_resolve(entries, PIN) == {"nginx:1.25", "busybox:latest"}
    answers = served(**{"nginx:1.25": NEW, "busybox:latest": OLD})
    assert [plan_file(path, content, answers, PIN).content for path, content in files.items()] == [
        f"nginx:1.25@{NEW}\nbusybox:latest@{OLD}\n".encode(),
        f"docker.io/library/nginx:1.25@{NEW}\nindex.docker.io/library/busybox:latest@{OLD}\n".encode(),
    ]
