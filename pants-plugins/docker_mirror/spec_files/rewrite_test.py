"""Tests for docker_mirror.spec_files.rewrite: a rewrite changes the references asked for, and no other
byte of the file."""

from __future__ import annotations

from typing import List, Tuple, Union

import pytest
from docker_mirror.spec_files.parser import SpecError, parse_spec
from docker_mirror.spec_files.rewrite import reference_span, rewrite_references
from docker_mirror_testutil.spec_strategies import (
    GeneratedLine,
    blank_lines,
    comment_lines,
    digests,
    spec_lines,
)
from hypothesis import given
from hypothesis import strategies as st

PATH = "src/images.txt"
DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    "line, reference",
    [
        ("python:3.12", "python:3.12"),
        ("  python:3.12  # comment", "python:3.12"),
        ("--platform=linux/arm64\t \tghcr.io/o/app:1 AS app", "ghcr.io/o/app:1"),
        ("\t--platform=linux/arm/v7 localhost:5000/a@" + DIGEST, "localhost:5000/a@" + DIGEST),
        ("[::1]:5000/team/app:2 as x#not a comment start", "[::1]:5000/team/app:2"),
    ],
)
def test_reference_span_finds_the_reference(line: str, reference: str) -> None:
    start, end = reference_span(line)
    assert line[start:end] == reference


def test_rewrites_only_the_reference_keeping_bom_crlf_comments_and_spacing() -> None:
    content = (
        b"\xef\xbb\xbf# base images\r\n"
        b"\r\n"
        b"  python:3.12   # the runtime\r\n"
        b"--platform=linux/arm64\tghcr.io/org/app:1.4  AS  app\n"
        b"busybox"
    )

    rewritten = rewrite_references(
        content,
        PATH,
        {3: f"python:3.12@{DIGEST}", 4: f"ghcr.io/org/app:1.4@{DIGEST}", 5: f"busybox:latest@{DIGEST}"},
    )

    assert rewritten == (
        b"\xef\xbb\xbf# base images\r\n"
        b"\r\n"
        b"  python:3.12@" + DIGEST.encode() + b"   # the runtime\r\n"
        b"--platform=linux/arm64\tghcr.io/org/app:1.4@" + DIGEST.encode() + b"  AS  app\n"
        b"busybox:latest@" + DIGEST.encode()
    )


def test_no_rewrite_returns_the_content_unchanged() -> None:
    content = b"python:3.12\r\n"
    assert rewrite_references(content, PATH, {}) is content


@pytest.mark.parametrize(
    "references, message",
    [
        ({1: "python:3.12"}, "src/images.txt:1: no image on this line"),
        ({2: "python:3.12;rm -rf /"}, "invalid registry port"),
        ({2: "python:3.12 AS evil"}, ""),
        ({2: "python:3.12\nevil:1"}, ""),
    ],
)
def test_refuses_lines_without_an_image_and_invalid_references(
    references: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        rewrite_references(b"# comment\npython:3.12\n", PATH, references)


def test_refuses_a_file_that_does_not_parse() -> None:
    with pytest.raises(SpecError, match="src/images.txt:2: "):
        rewrite_references(b"python:3.12\nredis:7 RUN x\n", PATH, {1: f"python:3.12@{DIGEST}"})


Line = Union[GeneratedLine, str]


@st.composite
def files(draw: st.DrawFn) -> Tuple[bytes, List[Tuple[Line, str]], bool]:
    """A valid spec file: its bytes, its lines with their endings, and whether it has a BOM."""
    lines = draw(st.lists(st.one_of(spec_lines(), blank_lines, comment_lines), max_size=8))
    endings = [draw(st.sampled_from(["\n", "\r\n"])) for _ in lines]
    if draw(st.booleans()) and lines:
        endings[-1] = ""  # no newline at the end of the file
    bom = draw(st.booleans())
    text = "".join((line.text if isinstance(line, GeneratedLine) else line) + eol for line, eol in zip(lines, endings))
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode(), list(zip(lines, endings)), bom


@given(files(), st.data())
def test_a_rewrite_changes_exactly_the_reference_bytes(
    spec_file: Tuple[bytes, List[Tuple[Line, str]], bool], data: st.DataObject
) -> None:
    content, lines, bom = spec_file
    new_references = {}
    expected = b"\xef\xbb\xbf" if bom else b""
    for number, (line, eol) in enumerate(lines, start=1):
        if not isinstance(line, GeneratedLine) or not data.draw(st.booleans()):
            expected += ((line.text if isinstance(line, GeneratedLine) else line) + eol).encode()
            continue
        model = line.reference.model
        name = f"{model.registry}/{model.repository}" if model.registry else model.repository
        new = f"{name}:{model.tag or 'latest'}@{data.draw(digests)}"
        new_references[number] = new
        start, end = line.reference_start, line.reference_start + len(line.reference.text)
        expected += (line.text[:start] + new + line.text[end:] + eol).encode()

    rewritten = rewrite_references(content, PATH, new_references)

    assert rewritten == expected
    before = {entry.line_number: entry for entry in parse_spec(content, PATH)}
    after = {entry.line_number: entry for entry in parse_spec(rewritten, PATH)}
    assert before.keys() == after.keys()
    for number, entry in after.items():
        assert entry.platform == before[number].platform
        assert entry.stage_name == before[number].stage_name
        assert str(entry.reference) == new_references.get(number, str(before[number].reference))
