"""Tests for docker_mirror.extractor.yaml_documents: values as PyYAML means them, and hostile input
refused in bounded time."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from docker_mirror.extractor.yaml_documents import (
    MAX_ALIAS_NODES,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    Scalar,
    YamlRefused,
    read_documents,
)


def values(content: bytes) -> list:
    return [document.value for document in read_documents(content)]


def plain(value: object) -> object:
    """`value` with every `Scalar` replaced by what PyYAML's safe loader makes of it."""
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, Scalar):
        return yaml.safe_load(f"!!{value.kind} '{value.text}'" if value.kind != "null" else "~")
    return value


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\nb: [x, 'y', \"z\", 2.5, true, ~, 2001-12-14]\n",
        "---\nkind: Pod\n---\n# only a comment\n---\n- 1\n- {a: b}\n",
        "base: &base {x: 1, y: 2}\nm:\n  <<: *base\n  y: 3\nl: [*base, *base]\n",
        "m:\n  <<: [{a: 1}, {a: 2, b: 2}]\n  c: 3\n",
        "s: !!str 123\nt: \"yes\"\nu: yes\nv: 0x1F\nw: .inf\n",
        "\ufeffkind: Pod\r\nmetadata:\r\n  name: web\r\n",
    ],
)
def test_values_are_what_the_safe_loader_makes(text: str) -> None:
    assert [plain(v) for v in values(text.encode())] == list(yaml.safe_load_all(text))


def test_scalars_that_are_not_strings_keep_their_kind_and_text() -> None:
    (document,) = values(b"a: 1.0\nb: '1.0'\nc:\nd: [x]\ne: !custom x\n")
    assert document["a"] == Scalar("tag:yaml.org,2002:float", "1.0")
    assert document["b"] == "1.0"
    assert document["c"].kind == "null"
    assert document["e"].kind == "!custom"


def test_documents_are_numbered_and_image_lines_recorded() -> None:
    documents = list(read_documents(b"kind: A\n---\nc:\n  image: x:1\n"))
    assert [d.number for d in documents] == [1, 2]
    container = documents[1].value["c"]
    assert documents[1].image_lines[id(container)] == 4


def test_aliases_share_what_they_name() -> None:
    (document,) = values(b"a: &a {x: [1]}\nb: *a\n")
    assert document["a"] is document["b"]


def test_a_billion_laughs_is_refused_at_once() -> None:
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi"):
        levels.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    started = time.monotonic()
    with pytest.raises(YamlRefused, match=f"more than {MAX_ALIAS_NODES} nodes"):
        values("\n".join(levels).encode())
    assert time.monotonic() - started < 10


def test_many_small_aliases_are_fine() -> None:
    text = "a: &a x\nl: [" + ", ".join(["*a"] * 10_000) + "]\n"
    (document,) = values(text.encode())
    assert len(document["l"]) == 10_000


@pytest.mark.parametrize(
    "text, message",
    [
        ("a: &a [*a]", "alias \\*a refers to itself"),
        ("a: *nowhere", "alias \\*nowhere names no anchor"),
        ("a: [1, 2\nb: c", "invalid YAML: .* \\(line 2\\)"),
        ("a: !!python/object:os.system x", ""),
        ("? [a]\n: b\n", "a mapping or sequence as a mapping key"),
        ("<<: x\n", "a merge key"),
        ("a: '\\x00'", ""),
    ],
)
def test_invalid_or_unsupported_yaml_is_one_clear_error(text: str, message: str) -> None:
    try:
        values(text.encode())
    except YamlRefused as e:
        assert e.message and (not message or __import__("re").search(message, str(e))), e
    else:
        # A tag the safe loader would refuse is read as a non-string scalar, never run.
        assert not message


def test_deep_nesting_is_refused_before_the_parser_stack_overflows() -> None:
    # 10 MB of '[' crashes PyYAML's own composer (a C stack overflow, a segfault).
    content = b"[" * (10 * 1024 * 1024)
    started = time.monotonic()
    with pytest.raises(YamlRefused, match=f"nested more than {MAX_DEPTH} levels deep"):
        values(content)
    assert time.monotonic() - started < 10


def test_nesting_up_to_the_limit_is_read() -> None:
    depth = MAX_DEPTH
    (document,) = values(b"[" * depth + b"]" * depth)
    for _ in range(depth - 1):
        document = document[0]
    assert document == []


def test_a_file_over_the_size_limit_is_refused_unread() -> None:
    with pytest.raises(YamlRefused, match="more than"):
        values(b" " * (MAX_FILE_BYTES + 1))


def test_a_ten_megabyte_scalar_is_read_quickly() -> None:
    content = b"image: " + b"a" * (10 * 1024 * 1024) + b"\n"
    started = time.monotonic()
    (document,) = values(content)
    assert len(document["image"]) == 10 * 1024 * 1024
    assert time.monotonic() - started < 20


def test_invalid_utf8_is_an_error() -> None:
    with pytest.raises(YamlRefused, match="invalid YAML"):
        values(b"a: \xff\xfe\xfa\n")


def test_python_tags_are_never_constructed(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (document,) = values(
        f"a: !!python/object/apply:os.system ['touch {marker}']\n"
        "b: !!python/name:os.system\n".encode()
    )
    assert document["a"] == [f"touch {marker}"]
    assert isinstance(document["b"], Scalar) and document["b"].kind == "python/name:os.system"
    assert not marker.exists()
