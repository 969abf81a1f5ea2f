"""Tests for docker_mirror.spec_files.parser: the spec-file parser and the generated-name assignment."""

from __future__ import annotations

import dataclasses
import pickle
import random
import re
import time
from typing import Any, Callable, Optional

import pytest

from docker_mirror.oci.reference import ImageReference
from docker_mirror.spec_files.parser import (
    SpecEntry,
    SpecError,
    SpecLineError,
    assign_names,
    parse_spec,
    parse_spec_files,
)

PATH = "demo/images.txt"
HEX = "0123456789abcdef" * 4
DIGEST = f"sha256:{HEX}"
OTHER_HEX = "fedcba9876543210" * 4
OTHER_DIGEST = f"sha256:{OTHER_HEX}"

# Every character an accepted reference / FROM line may contain.
SAFE_REFERENCE = re.compile(r"[A-Za-z0-9._:/@\[\]-]+")
SAFE_FROM = re.compile(r"FROM (--platform=[a-z0-9._/-]+ )?[A-Za-z0-9._:/@\[\]-]+")


def entries_of(text: str, path: str = PATH) -> tuple[SpecEntry, ...]:
    return parse_spec(text.encode("utf-8"), path)


def one_entry(line: str) -> SpecEntry:
    entries = entries_of(line + "\n")
    assert len(entries) == 1
    return entries[0]


def spec_error(content: bytes, path: str = PATH) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_spec(content, path)
    return info.value


# --------------------------------------------------------------------------------------------
# Valid references


@pytest.mark.parametrize(
    "text, registry, repository, tag, digest",
    [
        ("python", None, "python", None, None),
        ("python:3.12", None, "python", "3.12", None),
        ("python:3.12-slim", None, "python", "3.12-slim", None),
        ("bitnami/redis:7", None, "bitnami/redis", "7", None),
        ("a/b/c/d/e:1", None, "a/b/c/d/e", "1", None),
        ("ghcr.io/org/app:1", "ghcr.io", "org/app", "1", None),
        ("registry-1.docker.io/library/python", "registry-1.docker.io", "library/python", None, None),
        ("docker.io/python", "docker.io", "python", None, None),
        ("localhost/app", "localhost", "app", None, None),
        ("localhost:5000/team/app:2", "localhost:5000", "team/app", "2", None),
        ("127.0.0.1:5000/app", "127.0.0.1:5000", "app", None, None),
        ("10.0.0.1/app:v1", "10.0.0.1", "app", "v1", None),
        ("[::1]:5000/app", "[::1]:5000", "app", None, None),
        ("[::1]/app", "[::1]", "app", None, None),
        ("[2001:DB8::1]:443/org/app:x", "[2001:DB8::1]:443", "org/app", "x", None),
        ("my-registry.example.com:8443/a/b", "my-registry.example.com:8443", "a/b", None, None),
        ("Registry.Example.COM/app", "Registry.Example.COM", "app", None, None),
        ("a-b_c/d.e__f/g-h/i--j:T_a.g-1", None, "a-b_c/d.e__f/g-h/i--j", "T_a.g-1", None),
        ("a---b/x.y.z", None, "a---b/x.y.z", None, None),
        ("python:_", None, "python", "_", None),
        ("python:" + "a" * 128, None, "python", "a" * 128, None),
        (f"python:3.12@{DIGEST}", None, "python", "3.12", DIGEST),
        (f"python@{DIGEST}", None, "python", None, DIGEST),
        (f"ghcr.io:443/org/app:1@{DIGEST}", "ghcr.io:443", "org/app", "1", DIGEST),
        # No '/' after it, so "localhost" is the repository and "5000" the tag (as in Docker).
        ("localhost:5000", None, "localhost", "5000", None),
        ("ghcr.io", None, "ghcr.io", None, None),
        # The path is limited to 255 characters, the host not counted; Docker counts the
        # `library/` it puts before a Docker Hub name without a namespace.
        ("x" * 247, None, "x" * 247, None, None),
        ("docker.io/" + "x" * 247, "docker.io", "x" * 247, None, None),
        ("a/" + "x" * 253, None, "a/" + "x" * 253, None, None),
        ("example.com/" + "x" * 255, "example.com", "x" * 255, None, None),
        # An upper-case first component is a registry host, as Docker reads it.
        ("LOCALDOMAIN/debian", "LOCALDOMAIN", "debian", None, None),
        ("Docker/docker", "Docker", "docker", None, None),
        ("dockerHub:5000/a", "dockerHub:5000", "a", None, None),
        # 64 hex digits are an image ID only alone.
        (HEX + ":latest", None, HEX, "latest", None),
        (f"{HEX}@{DIGEST}", None, HEX, None, DIGEST),
        ("docker.io/" + HEX, "docker.io", HEX, None, None),
    ],
)
def test_valid_reference(
    text: str, registry: Optional[str], repository: str, tag: Optional[str], digest: Optional[str]
) -> None:
    reference = ImageReference.parse(text)
    assert (reference.registry, reference.repository, reference.tag, reference.digest) == (
        registry,
        repository,
        tag,
        digest,
    )
    assert str(reference) == text
    assert reference.name == (f"{registry}/{repository}" if registry else repository)
    # The same through a spec line.
    assert one_entry(text).reference == reference


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty image reference"),
        ("-python", "must not start with '-'"),
        ("Python", 'invalid path component "Python": upper-case letters are not allowed'),
        ("ghcr.io/Org/app", 'invalid path component "Org" in image name "ghcr.io/Org/app": upper-case'),
        ("a//b", 'empty path component in image name "a//b"'),
        ("a/", 'empty path component in image name "a/"'),
        ("/a", 'empty path component in image name "/a"'),
        ("a..b", "separators . _ __ - must sit between lowercase letters or digits"),
        ("a___b", 'invalid path component "a___b": separators'),
        ("a-", 'invalid path component "a-": separators'),
        ("_a", 'invalid path component "_a": separators'),
        ("pyth\u00f6n", 'character "\u00f6" is not allowed'),
        ("python:", "empty tag after ':'"),
        ("python:-x", 'invalid tag "-x"'),
        ("python:.x", 'invalid tag ".x"'),
        ("python:a+b", 'invalid tag "a+b"'),
        ("python:" + "a" * 129, "tag is 129 characters long (at most 128 allowed)"),
        ("python@", "empty digest after '@'"),
        ("python@sha256:abc", 'invalid digest "sha256:abc"'),
        (f"python@sha256:{HEX.upper()}", "invalid digest"),
        (f"python@sha256:{HEX}0", "invalid digest"),
        (f"python@{HEX}", "invalid digest"),
        (f"python@sha512:{HEX}{HEX}", 'unsupported digest algorithm "sha512" (only sha256 is accepted; Docker also'),
        (f"python@md5:{HEX[:32]}", 'unsupported digest algorithm "md5" (only sha256 is accepted)'),
        (f"python@{DIGEST}@{DIGEST}", "invalid digest"),
        (f"@{DIGEST}", "missing image name"),
        (":3", "missing image name"),
        ("x" * 248, 'image path is 256 characters long (with the "library/" Docker puts before a Docker Hub name; at most 255 allowed)'),
        ("index.docker.io/" + "x" * 248, "image path is 256 characters long (with the"),
        ("example.com/" + "x" * 256, "image path is 256 characters long (the registry host not counted; at most 255 allowed)"),
        (HEX, f'"{HEX}" looks like an image ID (64 hex digits), not an image name'),
        ("docker/Docker", 'invalid path component "Docker" in image name "docker/Docker": upper-case'),
        ("LOCAL_DOMAIN/debian", 'invalid registry host "LOCAL_DOMAIN": invalid label "LOCAL_DOMAIN"'),
        # The deliberate differences from distribution/reference say so.
        (f"python@sha384:{HEX}{HEX[:32]}", 'unsupported digest algorithm "sha384" (only sha256 is accepted; Docker also takes sha384 and sha512, but'),
        ("[1:2:3]/app", 'invalid IPv6 address "1:2:3" in registry host "[1:2:3]" (Docker takes any hex digits and colons between brackets; this project takes only an IPv6 address'),
        ("a_b.c/d", 'invalid registry host "a_b.c": invalid label "a_b" (labels must match [a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?); a first component with \'.\' is a registry host here, where distribution/reference would read "a_b.c/d" as a path under no registry at all'),
        ("ex_ample.com/app", 'invalid registry host "ex_ample.com": invalid label "ex_ample"'),
        ("bad-.com/app", 'invalid label "bad-"'),
        ("a..com/app", 'invalid registry host "a..com": empty label'),
        ("localhost:port/app", 'invalid registry port "port" in "localhost:port" (digits only)'),
        ("localhost:/app", 'invalid registry port ""'),
        ("[::1/app", "missing ']' after IPv6 address"),
        ("[::g]:5000/app", 'invalid IPv6 address "::g"'),
        ("[1:2]:5000/app", 'invalid IPv6 address "1:2"'),
        ("[::1]x/app", "unexpected \"x\" after ']'"),
        ("[::1]:50a/app", 'invalid registry port "50a"'),
    ],
)
def test_invalid_reference(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        ImageReference.parse(text)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "parts",
    [
        (None, "Python", None, None),
        (None, "python", "bad tag", None),
        (None, "python", None, "sha256:abc"),
        ("", "python", None, None),
        # Must be written with the registry split off: otherwise str() would not round-trip.
        (None, "localhost/app", None, None),
        ("ghcr.io", "org/app\nRUN x", None, None),
        ("gh cr.io", "app", None, None),
        (None, 42, None, None),
    ],
)
def test_image_reference_constructor_validates(parts: tuple) -> None:
    with pytest.raises(ValueError):
        ImageReference(*parts)


def test_image_reference_constructor_accepts_valid_parts() -> None:
    reference = ImageReference("ghcr.io", "org/app", "1", DIGEST)
    assert str(reference) == f"ghcr.io/org/app:1@{DIGEST}"
    assert reference == ImageReference.parse(f"ghcr.io/org/app:1@{DIGEST}")


def test_image_reference_is_frozen() -> None:
    reference = ImageReference.parse("python:3")
    with pytest.raises(dataclasses.FrozenInstanceError):
        reference.tag = "4"  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# Valid spec lines and files


@pytest.mark.parametrize(
    "line, reference, platform, stage_name",
    [
        ("python:3.12", "python:3.12", None, None),
        ("  python:3.12  ", "python:3.12", None, None),
        ("\tpython:3.12\t", "python:3.12", None, None),
        ("--platform=linux/amd64 python:3.12", "python:3.12", "linux/amd64", None),
        ("--platform=linux/arm64/v8 python", "python", "linux/arm64/v8", None),
        ("--platform=linux/arm_64/v8.1-x python", "python", "linux/arm_64/v8.1-x", None),
        ("--platform=windows/amd64\tpython", "python", "windows/amd64", None),
        ("python AS base", "python", None, "base"),
        ("python as base", "python", None, "base"),
        ("python As base", "python", None, "base"),
        ("python aS base", "python", None, "base"),
        ("python\tAS\tbase", "python", None, "base"),
        ("python AS A.b-c_9", "python", None, "A.b-c_9"),
        ("python AS " + "x" * 128, "python", None, "x" * 128),
        (
            f"--platform=linux/arm64 ghcr.io/org/app:1@{DIGEST} AS app",
            f"ghcr.io/org/app:1@{DIGEST}",
            "linux/arm64",
            "app",
        ),
        # "as" is a valid image name: only a second word makes it the AS keyword.
        ("as", "as", None, None),
        ("as AS as", "as", None, "as"),
        ("--platform=linux/amd64 as", "as", "linux/amd64", None),
        ("python:3 # a comment", "python:3", None, None),
        ("python:3\t# a comment", "python:3", None, None),
        ("python:3 #", "python:3", None, None),
        ("python:3 #AS x", "python:3", None, None),
        ("python:3 AS x # comment $(id) \"'\\; caf\u00e9 \u2713", "python:3", None, "x"),
        ("localhost:5000/team/app:2    # from a local registry", "localhost:5000/team/app:2", None, None),
    ],
)
def test_valid_line(line: str, reference: str, platform: Optional[str], stage_name: Optional[str]) -> None:
    entry = one_entry(line)
    assert str(entry.reference) == reference
    assert entry.platform == platform
    assert entry.stage_name == stage_name
    assert entry.line == line
    assert entry.path == PATH
    assert entry.line_number == 1
    assert entry.location == f"{PATH}:1"


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\n\n",
        b"# only a comment",
        b"   # indented comment\n\t#tab comment\n",
        b" \t \n",
        b"\xef\xbb\xbf",
        b"\xef\xbb\xbf# comment\r\n\r\n",
        "# caf\u00e9 \u2713 non-ASCII is fine in comments\n".encode(),
    ],
)
def test_files_without_entries(content: bytes) -> None:
    assert parse_spec(content, PATH) == ()


@pytest.mark.parametrize(
    "line, platform, stage_name",
    [
        # Over 1 kB of code: these skip the whole-line regex and take the per-part checks.
        ("--platform=" + "a" * 1100 + "/b python:3", "a" * 1100 + "/b", None),
        ("python:3" + " " * 1100 + "AS x", None, "x"),
        ("python:3" + "\t" * 600 + "as" + " " * 600 + "x  # c", None, "x"),
    ],
)
def test_long_valid_lines(line: str, platform: Optional[str], stage_name: Optional[str]) -> None:
    entry = one_entry(line)
    assert str(entry.reference) == "python:3"
    assert entry.platform == platform
    assert entry.stage_name == stage_name
    assert entry.line == line


def test_file_line_numbers_comments_and_blank_lines() -> None:
    content = b"# header\n\npython:3.12\n  \n  # note\nbitnami/redis:7 AS cache # trailing\n"
    entries = parse_spec(content, PATH)
    assert [(e.line_number, str(e.reference), e.stage_name) for e in entries] == [
        (3, "python:3.12", None),
        (6, "bitnami/redis:7", "cache"),
    ]
    assert entries[1].line == "bitnami/redis:7 AS cache # trailing"
    assert [e.location for e in entries] == [f"{PATH}:3", f"{PATH}:6"]


@pytest.mark.parametrize(
    "content",
    [
        b"python:3.12\nredis:7\n",
        b"python:3.12\r\nredis:7\r\n",
        b"python:3.12\r\nredis:7",
        b"python:3.12\nredis:7",
        b"\xef\xbb\xbfpython:3.12\nredis:7\n",
        b"\xef\xbb\xbfpython:3.12\r\nredis:7\r\n",
        b"\tpython:3.12\t\n\t redis:7 \t",
    ],
)
def test_line_endings_bom_tabs_and_missing_final_newline(content: bytes) -> None:
    entries = parse_spec(content, PATH)
    assert [(e.line_number, str(e.reference)) for e in entries] == [(1, "python:3.12"), (2, "redis:7")]
    # The echoed line never keeps the line ending or the BOM.
    assert all("\r" not in e.line and "\ufeff" not in e.line for e in entries)
    assert entries[0].line.strip("\t") == "python:3.12"


def test_parse_spec_returns_a_tuple_in_file_order() -> None:
    entries = entries_of("b:1\na:1\nc:1\n")
    assert isinstance(entries, tuple)
    assert [str(e.reference) for e in entries] == ["b:1", "a:1", "c:1"]


# --------------------------------------------------------------------------------------------
# Derived values


@pytest.mark.parametrize(
    "line, instruction",
    [
        ("python:3.12", "FROM python:3.12"),
        ("python:3.12 AS base", "FROM python:3.12"),
        ("--platform=linux/arm64/v8 python:3.12", "FROM --platform=linux/arm64/v8 python:3.12"),
        (
            f"--platform=linux/amd64\tghcr.io/org/app:1@{DIGEST}  as app  # x",
            f"FROM --platform=linux/amd64 ghcr.io/org/app:1@{DIGEST}",
        ),
        ("[::1]:5000/app", "FROM [::1]:5000/app"),
        ("localhost:5000/team/app:2", "FROM localhost:5000/team/app:2"),
    ],
)
def test_from_instruction(line: str, instruction: str) -> None:
    entry = one_entry(line)
    assert entry.from_instruction == instruction
    assert SAFE_FROM.fullmatch(entry.from_instruction)


@pytest.mark.parametrize(
    "line, tag",
    [
        ("python:3.12", "3.12"),
        (f"python:3.12@{DIGEST}", "3.12"),
        (f"python@{DIGEST}", f"digest-sha256-{HEX}"),
        ("python", "latest"),
        ("localhost:5000/app", "latest"),
        ("localhost:5000", "5000"),
        ("python AS v1", "latest"),
    ],
)
def test_default_image_tag(line: str, tag: str) -> None:
    assert one_entry(line).default_image_tag == tag


@pytest.mark.parametrize(
    "kwargs",
    [
        {"platform": "linux"},
        {"platform": "linux/amd64 RUN"},
        {"platform": "Linux/amd64"},
        {"stage_name": "1x"},
        {"stage_name": "a b"},
        {"line_number": 0},
        {"reference": "python"},
    ],
)
def test_spec_entry_constructor_validates(kwargs: dict) -> None:
    values: dict[str, Any] = dict(
        path=PATH,
        line_number=1,
        line="python",
        reference=ImageReference.parse("python"),
        platform=None,
        stage_name=None,
    )
    values.update(kwargs)
    with pytest.raises(ValueError):
        SpecEntry(**values)


# --------------------------------------------------------------------------------------------
# Hostile and invalid lines: each is line 2 of a file whose other lines are valid.


@pytest.mark.parametrize(
    "line, message",
    [
        ("python:3 RUN rm -rf /", 'unexpected "RUN rm -rf /" after the image reference'),
        ("python:3\tRUN x", 'unexpected "RUN x" after the image reference'),
        ("python:3;id", 'invalid tag "3;id"'),
        ("python:3&&id", 'invalid tag "3&&id"'),
        ("python:3|id", 'invalid tag "3|id"'),
        ("python:3>x", 'invalid tag "3>x"'),
        ("python:3 `id`", 'unexpected "`id`"'),
        ("$(id)", 'invalid path component "$(id)": character "$" is not allowed'),
        ("${X}", 'invalid path component "${X}": character "$" is not allowed'),
        ("python:${TAG}", 'invalid tag "${TAG}"'),
        ('"python"', "invalid path component '\"python\"': character '\"' is not allowed"),
        ("'python'", "invalid path component \"'python'\": character \"'\" is not allowed"),
        ("python\\", 'invalid path component "python\\": character "\\" is not allowed'),
        ("python;", 'character ";" is not allowed'),
        ("--build-arg=x python", 'unsupported option "--build-arg" (only --platform='),
        ("--pull python", 'unsupported option "--pull"'),
        ("--platform linux/amd64 python", "the form '--platform <value>' is not supported"),
        ("--platform=linux/amd64", "missing image reference after --platform=linux/amd64"),
        ("--platform=linux/amd64 AS x", "missing image reference before AS"),
        ("AS base", "missing image reference before AS"),
        ("AS", 'invalid path component "AS": upper-case letters are not allowed'),
        ("--platform=linux/amd64 --platform=linux/arm64 python", 'unexpected option "--platform=linux/arm64"'),
        ("python --platform=linux/amd64", 'unexpected "--platform=linux/amd64" after the image reference'),
        ("--platform= python", "empty --platform value"),
        ("--platform=linux python", 'invalid platform "linux": 1 component(s)'),
        ("--platform=linux/arm64/v8/x python", 'invalid platform "linux/arm64/v8/x": 4 component(s)'),
        ("--platform=Linux/amd64 python", 'invalid platform "Linux/amd64": invalid component "Linux"'),
        ("--platform=linux//amd64 python", 'invalid platform "linux//amd64": empty component'),
        ("--platform=linux/$ARCH python", 'invalid component "$ARCH"'),
        ("--platform=linux/amd64;id python", 'invalid component "amd64;id"'),
        ("-python", "image reference \"-python\" must not start with '-'"),
        ("python AS", "AS must be followed by a stage name"),
        ("python as", "as must be followed by a stage name"),
        ("python AS a b", 'AS takes exactly one stage name, got extra "b"'),
        ("python AS 1stage", 'invalid stage name "1stage" after AS'),
        ("python AS st$age", 'invalid stage name "st$age" after AS'),
        ("python AS " + "x" * 129, "invalid stage name"),
        ("python FROM x", 'unexpected "FROM x" after the image reference'),
        ("Python:3", 'invalid path component "Python": upper-case letters are not allowed'),
        ("python:-x", 'invalid tag "-x"'),
        ("python@sha256:abc", 'invalid digest "sha256:abc"'),
        (f"python@md5:{HEX[:32]}", 'unsupported digest algorithm "md5"'),
        ("python:3#comment", "'#' starts a comment only at the start of a line or after whitespace"),
        ("python#3", "'#' starts a comment only"),
        ("py\x00thon", "NUL character at column 3"),
        ("python:3\x1b[31m", "non-printable character U+001B (ESC) at column 9"),
        ("python:3\rRUN x", "non-printable character U+000D (CR) at column 9"),
        ("python:3\x0bRUN", "non-printable character U+000B at column 9"),
        ("python:3\x7f", "non-printable character U+007F (DEL) at column 9"),
        ("python:3\u00a0AS x", "non-printable character U+00A0 at column 9"),
        ("python:3\u2028RUN x", "non-printable character U+2028 at column 9"),
        ("python:3 # \u202e hidden", "non-printable character U+202E at column 12"),
        ("\ufeffpython", "non-printable character U+FEFF at column 1"),
        ("# comment with NUL \x00", "NUL character at column 20"),
        ("pyth\u00f6n:3", 'character "\u00f6" is not allowed'),
        ("python:3\u00e9", 'invalid tag "3\u00e9"'),
        ("x" * 300, "image path is 308 characters long"),
    ],
)
def test_invalid_line(line: str, message: str) -> None:
    content = f"python:3.12\n{line}\nredis:7\n".encode("utf-8")
    error = spec_error(content)
    assert len(error.errors) >= 1
    for line_error in error.errors:
        assert line_error.path == PATH
        assert line_error.line_number == 2
        assert line_error.line == line
        assert str(line_error).startswith(f"{PATH}:2: ")
    messages = [e.message for e in error.errors]
    assert any(message in m for m in messages), messages
    # The offending line is echoed (control characters made visible).
    first = str(error.errors[0])
    if len(line) > 200:
        assert first.endswith(f": {line[:200]}... ({len(line)} characters)")
    elif line.replace("\t", " ").isprintable():
        assert first.endswith(f": {line}")
    else:
        assert "\\x" in first or "\\u" in first
        assert not any(c != "\t" and not c.isprintable() for c in first)
    assert str(error) == "\n".join(str(e) for e in error.errors)


def test_invalid_line_exact_format() -> None:
    error = spec_error(b"python:3.12\npython:bad!\n")
    assert str(error) == (
        f'{PATH}:2: invalid tag "bad!" (allowed: [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}): python:bad!'
    )
    assert error.errors == (
        SpecLineError(
            PATH, 2, 'invalid tag "bad!" (allowed: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127})', "python:bad!"
        ),
    )


def test_control_characters_are_escaped_in_the_echo() -> None:
    error = spec_error(b"py\x00thon:3\x1b[2J\n")
    assert str(error) == f"{PATH}:1: NUL character at column 3: py\\x00thon:3\\x1b[2J"
    # The raw line is kept on the error for programmatic use.
    assert error.errors[0].line == "py\x00thon:3\x1b[2J"


def test_several_problems_on_one_line_are_all_reported() -> None:
    error = spec_error(b"--platform=LINUX/amd64 Python AS 9\n")
    assert [e.message.split(" ")[:2] for e in error.errors] == [
        ["invalid", "platform"],
        ["invalid", "path"],
        ["invalid", "stage"],
    ]
    assert all(str(e).startswith(f"{PATH}:1: ") for e in error.errors)


def test_all_errors_of_a_file_are_collected_in_line_order() -> None:
    content = b"python:3.12\nPython\nredis:7\n\n$(id)\npython:3 RUN x\nok:1\n"
    error = spec_error(content)
    assert [e.line_number for e in error.errors] == [2, 5, 6]
    assert [e.line for e in error.errors] == ["Python", "$(id)", "python:3 RUN x"]
    assert str(error).count("\n") == 2


def test_an_error_anywhere_means_no_entries() -> None:
    good = "".join(f"image{i}:1\n" for i in range(100))
    with pytest.raises(SpecError) as info:
        parse_spec((good + "BAD\n").encode(), PATH)
    assert [e.line_number for e in info.value.errors] == [101]
    with pytest.raises(SpecError):
        parse_spec_files([("a.txt", good.encode()), ("b.txt", b"python:3 x\n")])


def test_long_lines_are_shortened_in_the_message_only() -> None:
    line = "a" * 5000
    error = spec_error(line.encode())
    assert error.errors[0].line == line
    text = str(error)
    assert text.startswith(f"{PATH}:1: image path is 5008 characters long (with the ")
    assert text.endswith("... (5000 characters)")
    assert len(text) < 400


# --------------------------------------------------------------------------------------------
# Encoding problems


def test_invalid_utf8_reports_the_line_of_each_bad_byte() -> None:
    content = b"python:3.12\nredis:7\xff\nok:1\n\xc3\x28bad\n"
    error = spec_error(content)
    assert [e.line_number for e in error.errors] == [2, 4]
    assert str(error.errors[0]) == (
        f"{PATH}:2: invalid UTF-8: byte 0xff at byte 8 of the line (invalid start byte): redis:7\\xff"
    )
    assert str(error.errors[1]).startswith(f"{PATH}:4: invalid UTF-8: byte 0xc3 at byte 1 of the line")
    assert str(error.errors[1]).endswith(": \\xc3(bad")


def test_invalid_utf8_and_other_errors_are_collected_together() -> None:
    error = spec_error(b"Python\r\nredis:7\xfe\r\n$x\r\n")
    assert [e.line_number for e in error.errors] == [1, 2, 3]
    assert "invalid UTF-8" in error.errors[1].message
    assert error.errors[1].line == "redis:7\\xfe"


def test_truncated_utf8_at_end_of_file() -> None:
    error = spec_error(b"python:3.12\npython\xc3")
    assert str(error).startswith(f"{PATH}:2: invalid UTF-8: byte 0xc3 at byte 7 of the line (unexpected end of data)")


@pytest.mark.parametrize(
    "content",
    ["python:3\n".encode("utf-16"), "python:3\n".encode("utf-16-be"), "python:3\n".encode("utf-32")],
)
def test_utf16_and_utf32_files_are_a_whole_file_error(content: bytes) -> None:
    if not content.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")):
        # utf-16-be without BOM: NUL bytes on every line instead.
        error = spec_error(content)
        assert error.errors[0].message.startswith("NUL character")
        return
    error = spec_error(content)
    assert str(error) == f"{PATH}: file starts with a UTF-16/UTF-32 byte order mark; spec files must be UTF-8"
    assert error.errors[0].line_number == 0


def test_non_bytes_content_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        parse_spec("python:3", PATH)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# SpecError / SpecLineError


def test_spec_error_shape() -> None:
    error = spec_error(b"A\nB\n", "x/y.txt")
    assert isinstance(error, ValueError)
    assert isinstance(error.errors, tuple)
    assert all(isinstance(e, SpecLineError) for e in error.errors)
    assert str(error) == "\n".join(str(e) for e in error.errors)
    assert [str(e).split(": ")[0] for e in error.errors] == ["x/y.txt:1", "x/y.txt:2"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        error.errors[0].line_number = 3  # type: ignore[misc]


def test_spec_error_pickles_with_its_errors() -> None:
    error = spec_error(b"A\n")
    copy = pickle.loads(pickle.dumps(error))
    assert copy.errors == error.errors
    assert str(copy) == str(error)


def test_spec_line_error_str() -> None:
    assert str(SpecLineError("a.txt", 3, "bad thing", "line as written")) == "a.txt:3: bad thing: line as written"
    assert str(SpecLineError("a.txt", 0, "whole file", "")) == "a.txt: whole file"


# --------------------------------------------------------------------------------------------
# Several files and duplicates


def test_parse_spec_files_keeps_file_and_line_order() -> None:
    entries = parse_spec_files([("a.txt", b"python:3.12\nredis:7\n"), ("b.txt", b"# c\nnginx:1\n")])
    assert [(e.location, str(e.reference)) for e in entries] == [
        ("a.txt:1", "python:3.12"),
        ("a.txt:2", "redis:7"),
        ("b.txt:2", "nginx:1"),
    ]


def test_parse_spec_files_of_nothing() -> None:
    assert parse_spec_files([]) == ()


def test_duplicate_across_files_exact_message() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec_files(
            [("a.txt", b"# x\npython:3.12\n"), ("b.txt", b"redis:7\n\n\npython:3.12\n")]
        )
    assert str(info.value) == 'b.txt:4: duplicate image "python:3.12", first listed at a.txt:2: python:3.12'


def test_duplicate_in_one_file_ignores_platform_and_stage_name() -> None:
    content = b"--platform=linux/amd64 python:3.12\nredis:7\n--platform=linux/arm64 python:3.12 AS arm\n"
    with pytest.raises(SpecError) as info:
        parse_spec_files([("a.txt", content)])
    assert str(info.value) == (
        'a.txt:3: duplicate image "python:3.12", first listed at a.txt:1: '
        "--platform=linux/arm64 python:3.12 AS arm"
    )


def test_duplicate_is_reported_once_per_later_line() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec_files([("a.txt", b"x:1\nx:1\n"), ("b.txt", b"x:1\n")])
    assert [str(e) for e in info.value.errors] == [
        'a.txt:2: duplicate image "x:1", first listed at a.txt:1: x:1',
        'b.txt:1: duplicate image "x:1", first listed at a.txt:1: x:1',
    ]


def test_one_image_under_two_spellings_is_a_duplicate() -> None:
    # Docker reads all four as docker.io/library/nginx:latest (issue 18).
    content = b"nginx\nnginx:latest\nlibrary/nginx\ndocker.io/library/nginx:latest\n"
    with pytest.raises(SpecError) as info:
        parse_spec_files([("a.txt", content)])
    assert [str(e) for e in info.value.errors] == [
        f'a.txt:{n}: duplicate image "{text}", first listed at a.txt:1 as "nginx" (both are '
        f"docker.io/library/nginx:latest as Docker reads them): {text}"
        for n, text in [(2, "nginx:latest"), (3, "library/nginx"), (4, "docker.io/library/nginx:latest")]
    ]


@pytest.mark.parametrize(
    "first, second",
    [
        ("python", "docker.io/python"),
        ("python:3", "index.docker.io/library/python:3"),
        (f"python@{DIGEST}", f"docker.io/library/python@{DIGEST}"),
        ("ghcr.io/org/app", "ghcr.io/org/app:latest"),
    ],
)
def test_spellings_of_one_image_are_duplicates(first: str, second: str) -> None:
    with pytest.raises(SpecError, match="duplicate image"):
        parse_spec_files([("a.txt", f"{first}\n".encode()), ("b.txt", f"{second}\n".encode())])


@pytest.mark.parametrize(
    "first, second",
    [
        ("python:3.12", "python:3.11"),
        (f"python@{DIGEST}", f"python@{OTHER_DIGEST}"),
        (f"python:3@{DIGEST}", "python:3"),
        # A tag beside a digest is what the mirror pushes: two images.
        (f"python:3@{DIGEST}", f"python@{DIGEST}"),
        (f"python@{DIGEST}", "python"),
        # Docker's names for Docker Hub are `docker.io` and `index.docker.io`, not its API host.
        ("python", "registry-1.docker.io/library/python"),
        ("library/python", "library/library/python"),
        ("ghcr.io/python", "python"),
    ],
)
def test_not_duplicates(first: str, second: str) -> None:
    entries = parse_spec_files([("a.txt", f"{first}\n".encode()), ("b.txt", f"{second}\n".encode())])
    assert [str(e.reference) for e in entries] == [first, second]


def test_errors_of_all_files_and_duplicates_are_collected_in_order() -> None:
    files = [
        ("a.txt", b"python:3.12\nBad\n"),
        ("b.txt", b"$x\npython:3.12\nredis:7 extra\n"),
        ("c.txt", b"ok:1\n"),
    ]
    with pytest.raises(SpecError) as info:
        parse_spec_files(files)
    assert [(e.path, e.line_number) for e in info.value.errors] == [
        ("a.txt", 2),
        ("b.txt", 1),
        ("b.txt", 2),
        ("b.txt", 3),
    ]
    assert "duplicate image" in info.value.errors[2].message


# --------------------------------------------------------------------------------------------
# Generated names


# Pants 2.17 `BANNED_CHARS_IN_GENERATED_NAME`: names go into `dir:gen#<name>` addresses.
PANTS_BANNED_IN_GENERATED_NAME = set(":#!@?=")


def names_of(lines: list, path: str = PATH) -> dict:
    entries = entries_of("\n".join(lines) + "\n", path)
    return {name: str(entry.reference) for name, entry in assign_names(entries).items()}


def name_error(lines: list, path: str = PATH) -> SpecError:
    entries = entries_of("\n".join(lines) + "\n", path)
    with pytest.raises(SpecError) as info:
        assign_names(entries)
    return info.value


@pytest.mark.parametrize(
    "line, name",
    [
        ("python:3.12", "python"),
        ("bitnami/redis:7", "bitnami/redis"),
        ("ghcr.io/org/app:1", "ghcr.io/org/app"),
        ("localhost:5000/team/app:2", "localhost_5000/team/app"),
        ("[::1]:5000/app", "[__1]_5000/app"),
        (f"python@{DIGEST}", "python"),
        ("python:3.12 AS base", "base"),
        ("--platform=linux/arm64 python:3.12", "python"),
    ],
)
def test_default_names(line: str, name: str) -> None:
    assert list(names_of([line])) == [name]
    assert not set(name) & PANTS_BANNED_IN_GENERATED_NAME


def test_clashing_default_names_get_suffixes() -> None:
    assert names_of(["python:3.12", "python:3.11", f"python@{DIGEST}", "python", "redis:7"]) == {
        "python_3.12": "python:3.12",
        "python_3.11": "python:3.11",
        f"python_{HEX[:12]}": f"python@{DIGEST}",
        "python_latest": "python",
        "redis": "redis:7",
    }


def test_tag_wins_over_digest_for_the_suffix() -> None:
    assert names_of([f"python:3@{DIGEST}", "python:4"]) == {
        "python_3": f"python:3@{DIGEST}",
        "python_4": "python:4",
    }


def test_registry_prefixed_names_do_not_clash_with_unprefixed() -> None:
    assert names_of(["python:3", "docker.io/python:3", "localhost:5000/python"]) == {
        "python": "python:3",
        "docker.io/python": "docker.io/python:3",
        "localhost_5000/python": "localhost:5000/python",
    }


def test_an_as_name_cannot_take_another_lines_default_name() -> None:
    # Otherwise adding a line could silently rename `python` and take over its overrides.
    error = name_error(["python:3.12", "evil.example.com/x:1 AS python"])
    assert str(error) == (
        f'{PATH}:2: AS name "python" is the name of the image on {PATH}:1; '
        "choose another AS name: evil.example.com/x:1 AS python"
    )


def test_as_names_are_never_suffixed() -> None:
    assert names_of(["python:3.12 AS py", "python:3.11 AS py311"]) == {
        "py": "python:3.12",
        "py311": "python:3.11",
    }


def test_names_are_stable_when_lines_move() -> None:
    lines = ["python:3.12", "redis:7 AS cache", "python:3.11", f"nginx@{DIGEST}", "nginx:1", "alpine"]
    forward = names_of(lines)
    backward = names_of(list(reversed(lines)))
    assert forward == backward
    assert list(forward) == ["python_3.12", "cache", "python_3.11", f"nginx_{HEX[:12]}", "nginx_1", "alpine"]
    assert list(backward) == list(reversed(list(forward)))


def test_assign_names_returns_entries_in_entry_order() -> None:
    entries = entries_of("b:1\na:1\nc:1 AS z\n")
    result = assign_names(entries)
    assert list(result) == ["b", "a", "z"]
    assert list(result.values()) == list(entries)


def test_assign_names_of_nothing() -> None:
    assert assign_names(()) == {}


def test_duplicate_as_names_are_an_error() -> None:
    error = name_error(["python:3.12 AS base", "redis:7", "alpine:3 AS base"])
    assert str(error) == f'{PATH}:3: name "base" is also used by {PATH}:1: alpine:3 AS base'


def test_names_still_equal_after_suffixing_are_an_error() -> None:
    error = name_error(["python:3", f"python:3@{DIGEST}"])
    assert str(error) == f'{PATH}:2: name "python_3" is also used by {PATH}:1: python:3@{DIGEST}'


def test_suffixed_name_clashing_with_another_default_name_is_an_error() -> None:
    error = name_error(["python:3", "python:4", "python_3"])
    assert str(error) == f'{PATH}:3: name "python_3" is also used by {PATH}:1: python_3'


def test_suffixed_name_clashing_with_an_as_name_is_an_error() -> None:
    error = name_error(["python:3", "python:4", "redis AS python_4"])
    assert str(error) == f'{PATH}:3: name "python_4" is also used by {PATH}:2: redis AS python_4'


def test_all_name_clashes_are_reported_across_files() -> None:
    a = parse_spec(b"python:3 AS x\nredis:7 AS y\n", "a.txt")
    b = parse_spec(b"nginx AS x\nalpine AS y\n", "b.txt")
    with pytest.raises(SpecError) as info:
        assign_names(a + b)
    assert [str(e) for e in info.value.errors] == [
        'b.txt:1: name "x" is also used by a.txt:1: nginx AS x',
        'b.txt:2: name "y" is also used by a.txt:2: alpine AS y',
    ]


# --------------------------------------------------------------------------------------------
# Robustness: random input never crashes, and whatever is accepted is inside the grammar.


def test_random_lines_never_crash_and_accepted_lines_are_safe() -> None:
    rng = random.Random(1234)
    alphabet = list("abcxyzAZ09._-:/@[]#$;\\\"' \t`|&<>(){}!*?=\x00\x1b\r\u00e9\u202e") + [
        "sha256:",
        DIGEST,
        "--platform=",
        "linux/amd64",
        " AS ",
        "localhost:5000/",
        "[::1]:5000/",
    ]
    accepted = 0
    for _ in range(4000):
        line = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        try:
            entries = parse_spec(line.encode("utf-8"), PATH)
        except SpecError as e:
            assert e.errors and all(err.line_number == 1 for err in e.errors)
            assert all(str(err).startswith(f"{PATH}:1: ") for err in e.errors)
            continue
        for entry in entries:
            accepted += 1
            assert SAFE_REFERENCE.fullmatch(str(entry.reference))
            assert SAFE_FROM.fullmatch(entry.from_instruction)
            assert ImageReference.parse(str(entry.reference)) == entry.reference
            (name,) = assign_names(entries)
            assert not set(name) & PANTS_BANNED_IN_GENERATED_NAME
    assert accepted > 0  # the generator does produce some valid lines


def test_random_bytes_never_crash() -> None:
    rng = random.Random(99)
    for _ in range(500):
        content = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
        try:
            entries = parse_spec(content, PATH)
        except SpecError as e:
            assert e.errors
        else:
            for entry in entries:
                assert SAFE_FROM.fullmatch(entry.from_instruction)


# Valid lines are recognised by one whole-line regex; anything it rejects goes through the
# per-part checks. Both must agree: force the per-part checks and compare.

EQUIVALENCE_CORPUS = [
    "python",
    "python:3.12-slim",
    "bitnami/redis:7",
    "Bitnami/redis",
    "bitnami/Redis",
    "localhost/app",
    "Localhost/app",
    "localhost:5000",
    "localhost:5000/team/app:2",
    "localhost:/app",
    "a:1/b:2",
    "a-b/c",
    "a--b/c",
    "-a/b",
    "a_b/c",
    "a_b.c/d",
    "ex-ample.com/a",
    "ex_ample.com/a",
    "EXAMPLE.com/a",
    "1.2.3.4:5/a",
    "[::1]:5000/app",
    "[::1]/app",
    "[1:2]/app",
    "[::1]",
    "[::1]:5000",
    "ghcr.io",
    "ghcr.io/",
    "x" * 247,
    "x" * 248,
    "docker.io/" + "x" * 248,
    "a/" + "x" * 253,
    "a/" + "x" * 254,
    "LOCALDOMAIN/debian",
    "Docker/docker",
    "Foo_bar/x",
    "a/B/c",
    HEX,
    HEX + ":1",
    "library/" + HEX,
    "a.b/" + "x" * 251,
    "a.b/" + "x" * 252,
    "python:" + "a" * 128,
    "python:" + "a" * 129,
    f"python@{DIGEST}",
    f"python:1@{DIGEST}",
    f"python@{DIGEST}x",
    "--platform=linux/amd64 python",
    "--platform=linux/amd64/v8 python AS x",
    "--platform=linux python",
    "--platform=linux/amd64\t\tpython\tas\tX.y",
    "python AS AS",
    "python as as",
    "python AS",
    "python AS a b",
    "AS x",
    "python:3 RUN x",
    "python AS 1",
    "as",
    "AS",
    "as AS x",
    "as as as",
    "AS x",
    "--platform=linux/amd64 as",
    "--platform=linux/amd64 AS x",
    "localhostx.com/a",
    "localhost.com/a",
    "localhost:1/a",
    "a:1:2/b",
]


def parse_outcome(content: bytes) -> object:
    try:
        return parse_spec(content, PATH)
    except SpecError as e:
        return e.errors


def test_fast_and_slow_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    import docker_mirror.oci.reference as reference_module
    import docker_mirror.spec_files.parser as spec_module

    rng = random.Random(7)
    pieces = ["a", "b", "Z", "0", ".", "_", "-", ":", "/", "@", "[", "]", "::1", "5000", " ", "\t",
              "localhost", "ex.com", "sha256:", HEX, DIGEST, " AS ", " as ", "x", "--platform=",
              "linux/amd64", "/v8"]
    corpus = list(EQUIVALENCE_CORPUS)
    corpus += ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 8))) for _ in range(3000)]
    contents = [line.encode() for line in corpus]

    fast = [parse_outcome(c) for c in contents]
    never = re.compile(r"(?!)")
    monkeypatch.setattr(spec_module, "_LINE", never)
    monkeypatch.setattr(reference_module, "_REFERENCE", never)
    slow = [parse_outcome(c) for c in contents]

    mismatches = [(line, f, s) for line, f, s in zip(corpus, fast, slow) if f != s]
    assert mismatches == []
    accepted = sum(isinstance(outcome, tuple) and bool(outcome) and isinstance(outcome[0], SpecEntry)
                   for outcome in fast)
    assert accepted > 100


# --------------------------------------------------------------------------------------------
# Performance: linear time, no catastrophic backtracking.

MEGABYTE = 1_000_000


# Generous: the suite shares 2 cores with end-to-end tests, and catastrophic backtracking on
# these inputs would take minutes; the growth-ratio tests below check linearity itself.
TIME_BOUND = 10.0


def fastest_run(function: Callable[[], object], attempts: int = 3) -> float:
    """The best wall-clock time of up to `attempts` runs, stopping at the first within bound.

    Retrying absorbs scheduler noise on a busy machine; code that is not linear-time misses the
    bound on every attempt (these inputs would take minutes with catastrophic backtracking).
    """
    best = float("inf")
    for _ in range(attempts):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
        if best < TIME_BOUND:
            break
    return best


def parse_ignoring_errors(content: bytes) -> None:
    try:
        parse_spec(content, PATH)
    except SpecError as e:
        str(e)  # formatting the message must be fast too


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"a" * MEGABYTE, id="one-long-name"),
        pytest.param(b"a-" * (MEGABYTE // 2) + b"!", id="separators-then-bad-char"),
        pytest.param(b"a__" * (MEGABYTE // 3) + b"_", id="underscores"),
        pytest.param(b"python:" + b"a" * MEGABYTE, id="long-tag"),
        pytest.param(b"python@sha256:" + b"a" * MEGABYTE, id="long-digest"),
        pytest.param(b"x." * (MEGABYTE // 2) + b"/app", id="long-host"),
        pytest.param(b"--platform=" + b"a/" * (MEGABYTE // 2) + b" python", id="long-platform"),
        pytest.param(b"python AS " + b"a" * MEGABYTE, id="long-stage-name"),
        pytest.param(b"a " * (MEGABYTE // 2), id="many-tokens"),
        pytest.param(b"python:3 #" + b"x" * MEGABYTE, id="long-comment"),
        pytest.param(b"\t" * MEGABYTE, id="only-tabs"),
        pytest.param(b"a" * MEGABYTE + b"\x00", id="nul-at-the-end"),
        pytest.param(b"a" * MEGABYTE + b"\xff", id="bad-utf8-at-the-end"),
        pytest.param("\u00e9".encode() * (MEGABYTE // 2), id="non-ascii"),
    ],
)
def test_one_megabyte_line_is_fast(content: bytes) -> None:
    assert len(content) >= MEGABYTE
    assert fastest_run(lambda: parse_ignoring_errors(content)) < TIME_BOUND


def test_one_megabyte_comment_line_still_parses() -> None:
    entries = parse_spec(b"python:3 #" + b"x" * MEGABYTE, PATH)
    assert [str(e.reference) for e in entries] == ["python:3"]


def test_fifty_thousand_valid_lines_are_fast() -> None:
    content = "".join(
        f"--platform=linux/amd64 registry.example.com:5000/team/app{i}:1.{i}  # image {i}\n"
        for i in range(50_000)
    ).encode()
    results: dict = {}

    def run() -> None:
        results["entries"] = parse_spec_files([("a.txt", content)])
        results["names"] = assign_names(results["entries"])

    assert fastest_run(run) < TIME_BOUND
    assert len(results["entries"]) == 50_000
    assert len(results["names"]) == 50_000
    assert str(results["names"]["registry.example.com_5000/team/app49999"].reference) == (
        "registry.example.com:5000/team/app49999:1.49999"
    )


def test_fifty_thousand_clashing_names_are_fast() -> None:
    entries = entries_of("".join(f"python:{i}\n" for i in range(50_000)))
    results: dict = {}

    def run() -> None:
        results["names"] = assign_names(entries)

    assert fastest_run(run) < TIME_BOUND
    assert list(results["names"])[:2] == ["python_0", "python_1"]
    assert len(results["names"]) == 50_000


@pytest.mark.parametrize(
    "line, count",
    [
        # About 1 kB each, so they reach the whole-line regex: none may backtrack badly.
        pytest.param(b"a-" * 500 + b"!", 2_000, id="separators"),
        pytest.param(b"a." * 120 + b"a/" + b"a__" * 250 + b"A", 2_000, id="host-then-path"),
        pytest.param(b"a-" * 500 + b"/x", 2_000, id="label-with-dashes"),
        pytest.param(b"--platform=" + b"a-" * 250 + b"/" + b"a." * 250 + b" x!", 2_000, id="platform"),
        pytest.param(b"[" + b":" * 1000 + b"]/a", 2_000, id="ipv6"),
        pytest.param(b"x AS " + b"a" * 1000 + b"!", 2_000, id="stage-name"),
        pytest.param(b"a/" * 500 + b"!", 2_000, id="many-components"),
        # Short hostile lines, many of them.
        pytest.param(b"python:3 RUN rm -rf /", 50_000, id="extra-tokens"),
        pytest.param(b"$(id)", 50_000, id="command-substitution"),
        pytest.param(b"py\x00thon", 50_000, id="nul"),
        pytest.param(b"py\xffthon", 50_000, id="bad-utf8"),
        pytest.param(b"a/" * 20 + b"A:1", 20_000, id="upper-case-after-path"),
    ],
)
def test_many_hostile_lines_are_fast(line: bytes, count: int) -> None:
    content = (line + b"\n") * count
    errors: list = []

    def run() -> None:
        with pytest.raises(SpecError) as info:
            parse_spec(content, PATH)
        str(info.value)
        errors[:] = info.value.errors

    assert fastest_run(run) < TIME_BOUND
    assert len(errors) >= count
    assert errors[-1].line_number == count


def best_times(*functions: Callable[[], object], attempts: int = 5) -> list[float]:
    """The best of `attempts` timings of each function, run in turns, so that a busy machine
    slows all of them alike rather than the one that happened to run while it was busy."""
    best = [float("inf")] * len(functions)
    for _ in range(attempts):
        for i, function in enumerate(functions):
            start = time.perf_counter()
            function()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


@pytest.mark.parametrize(
    "make_line",
    [
        # Short enough for the whole-line regex (<= 1 kB), then beyond it.
        pytest.param(lambda n: b"a-" * n + b"!", id="separators"),
        pytest.param(lambda n: b"a." * n + b"a/b!", id="host-labels"),
        pytest.param(lambda n: b"a/" * n + b"A", id="components"),
        pytest.param(lambda n: b"--platform=" + b"a-" * n + b"/b python!", id="platform"),
    ],
)
@pytest.mark.parametrize("size", [120, 30_000])
def test_time_grows_linearly_with_line_length(make_line: Callable[[int], bytes], size: int) -> None:
    # Independent of the machine's speed: 4x the input may take about 4x the time, not 16x.
    small = (make_line(size) + b"\n") * (100_000 // size + 1)
    large = (make_line(4 * size) + b"\n") * (100_000 // size + 1)
    runs = (lambda: parse_ignoring_errors(large), lambda: parse_ignoring_errors(small))
    large_time, small_time = best_times(*runs)
    if large_time / small_time >= 8:
        # Measured again, longer: a busy machine can slow one side of one measurement, while a
        # quadratic parser is 16x slower every time.
        large_time, small_time = best_times(*runs, attempts=15)
    assert large_time / small_time < 8


def test_fifty_thousand_invalid_lines_are_all_reported() -> None:
    content = b"Python:3 RUN x\n" * 50_000
    with pytest.raises(SpecError) as info:
        parse_spec(content, PATH)
    # Two problems per line: the upper-case path and the extra tokens.
    assert len(info.value.errors) == 100_000
    assert str(info.value).count("\n") == 100_000 - 1
    assert [e.line_number for e in info.value.errors[-2:]] == [50_000, 50_000]
