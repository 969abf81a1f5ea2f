"""Property-based tests of the spec parser against the OCI distribution reference grammar.

Hypothesis strategies (`spec_strategies`, and the file and near-miss strategies below) generate
the grammar (registry hosts with ports, IPv4, IPv6 and localhost; path components with every
separator; tags; sha256 digests; platforms; AS names; comments; spaces and tabs; CRLF, a BOM, a
missing final newline) and near-miss mutations of it.
The parser is checked against `spec_grammar`, an independent model of the grammar, and against
the safety rules of what it may emit (`spec_grammar.check_entry_is_safe`).

Runs are bounded by default (profile `bounded`: 100 examples a test, about a minute in all).
For a long run by hand (`long`: 20,000 examples a test; HYPOTHESIS_MAX_EXAMPLES=2000 takes about
20 minutes for this file and trust_boundaries_test.py):

    HYPOTHESIS_PROFILE=long PYTHONPATH=pants-plugins python -m pytest pants-plugins/docker_mirror/spec_files/parser_properties_test.py
    ./pants test --no-test-timeouts --test-extra-env-vars="+['HYPOTHESIS_PROFILE=long']" \
        pants-plugins/docker_mirror/spec_files/parser_properties_test.py
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Tuple
from unittest import mock

import docker_mirror.oci.reference as reference_module
import docker_mirror.spec_files.parser as spec_module
from docker_mirror.oci.reference import ImageReference
from docker_mirror.spec_files.parser import (
    SpecEntry,
    SpecError,
    assign_names,
    parse_spec,
    parse_spec_files,
)
from hypothesis import assume, example, given, note
from hypothesis import strategies as st
from pants.engine.addresses import Address, AddressInput
from docker_mirror_testutil.spec_grammar import (
    INVALID,
    ModelEntry,
    ModelReference,
    check_entry_is_safe,
    check_name_is_safe,
    check_parse_outcome,
    check_spec_error,
    entry_as_model,
    model_file,
    model_identity,
    model_line,
)
from docker_mirror_testutil.spec_strategies import (
    LOWER_ALNUM,
    GeneratedLine,
    GeneratedReference,
    blank_lines,
    comment_lines,
    path_length,
    references,
    spec_lines,
)

PATH = "third_party/images.txt"
HEX = "0123456789abcdef" * 4


# --------------------------------------------------------------------------------------------
# Strategies: whole files


@dataclass(frozen=True)
class GeneratedFile:
    content: bytes
    lines: Tuple[object, ...]  # GeneratedLine or str (blank / comment line)

    @property
    def expected(self) -> List[Tuple[int, GeneratedLine]]:
        return [(n, line) for n, line in enumerate(self.lines, start=1) if isinstance(line, GeneratedLine)]


@st.composite
def spec_files(draw: st.DrawFn) -> GeneratedFile:
    lines = draw(st.lists(st.one_of(spec_lines(), blank_lines, comment_lines), max_size=10))
    texts = [line.text if isinstance(line, GeneratedLine) else line for line in lines]
    ending = draw(st.sampled_from(["\n", "\r\n", "mixed"]))
    endings = [
        draw(st.sampled_from(["\n", "\r\n"])) if ending == "mixed" else ending for _ in texts
    ]
    body = "".join(text + eol for text, eol in zip(texts, endings))
    # A final newline ends the last line (it does not start another one); it may be missing.
    if bool(texts) and draw(st.booleans()):
        body = body[: -len(endings[-1])]
    content = body.encode("utf-8")
    if draw(st.booleans()):
        content = b"\xef\xbb\xbf" + content
    return GeneratedFile(content, tuple(lines))


# --------------------------------------------------------------------------------------------
# Strategies: near misses, each outside the grammar by construction

# Characters no part of the grammar contains (and not '#', which may start a comment).
FORBIDDEN_ASCII = "$\"'`\\;|&<>(){}!*?,~^%+="
# Refused anywhere on a line, comments included.
UNPRINTABLE = [
    "\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\u00a0", "\u2028",
    "\u2029", "\u202e", "\u200b", "\ufeff", "\U000e0041",
]  # fmt: skip
NON_ASCII = ["\u00e9", "\u0131", "\u017f", "\uff21", "\u0663", "\U0001d7d8", "\u212a"]
BAD_TAGS = ["", ".x", "-x", "a" * 129, "a+b", "a~b", "\u00e4", "a$b", "a'b"]
BAD_DIGESTS = [
    "",
    "sha256:",
    "sha256:" + HEX[:63],
    "sha256:" + HEX + "0",
    "sha256:" + "A" * 64,
    "sha512:" + HEX + HEX,
    "md5:" + HEX[:32],
    HEX,
    "sha256-" + HEX,
    f"sha256:{HEX}@sha256:{HEX}",
]
BAD_HOSTS = [
    "ex_ample.com", "a..b", "-a.com", "a-.com", ".a.com", "a.com.", "localhost:", "localhost:port",
    "a.com:50x", "[::g]", "[1:2]", "[::1", "[::1]x", "[::ffff:1.2.3.4]", "a.com:-1",
]  # fmt: skip
BAD_PLATFORMS = [
    "", "linux", "linux/amd64/v8/x", "Linux/amd64", "linux//amd64", "linux/amd64/", "/linux/amd64",
    "linux/$ARCH", "linux/amd64;id", "linux/-amd64", "linux/amd64-",
]  # fmt: skip
BAD_STAGE_NAMES = ["1x", "-x", "_x", "x$", "x/y", "x:y", "\u00e9", "x" * 129, "x=y"]
EXTRA_WORDS = ["RUN", "rm", "x", "FROM", "&&", "AS", "as", "python:3", "-rf", "--pull"]
OPTIONS = ["--pull", "--build-arg=X=1", "--network=host", "-v", "--platform", "--", "-"]


def insert(text: str, position: int, piece: str) -> str:
    return text[:position] + piece + text[position:]


@st.composite
def near_misses(draw: st.DrawFn) -> Tuple[str, str]:
    """(kind, line): a valid line with one change that puts it outside the grammar."""
    line = draw(spec_lines())
    text, model, reference = line.text, line.model, line.reference
    start, end = line.reference_start, line.reference_start + len(reference.text)
    ref = reference.model
    name = f"{ref.registry}/{ref.repository}" if ref.registry else ref.repository
    suffix = (f":{ref.tag}" if ref.tag is not None else "") + (f"@{ref.digest}" if ref.digest else "")

    def with_reference(new_reference: str) -> str:
        return text[:start] + new_reference + text[end:]

    kinds = ["forbidden", "unprintable", "non_ascii", "bad_tag", "bad_digest", "extra_word",
             "option", "dash_reference", "bad_host", "too_long", "upper_case"]  # fmt: skip
    if model.platform is not None:
        kinds.append("bad_platform")
    if model.stage_name is not None:
        kinds += ["bad_stage_name", "drop_stage_name"]
    if model.platform is not None or model.stage_name is not None:
        kinds.append("drop_reference")
    kind = draw(st.sampled_from(kinds))

    if kind == "forbidden":
        mutated = insert(text, draw(st.integers(0, line.code_end)), draw(st.sampled_from(FORBIDDEN_ASCII)))
    elif kind == "unprintable":
        char = draw(st.sampled_from(UNPRINTABLE))
        mutated = insert(text, draw(st.integers(0, len(text))), char)
        # A CR just before the line feed is a CRLF line ending, not part of the line.
        assume(not mutated.endswith("\r"))
    elif kind == "non_ascii":
        mutated = insert(text, draw(st.integers(0, line.code_end)), draw(st.sampled_from(NON_ASCII)))
    elif kind == "bad_tag":
        tail = f"@{ref.digest}" if ref.digest else ""
        mutated = with_reference(f"{name}:{draw(st.sampled_from(BAD_TAGS))}{tail}")
    elif kind == "bad_digest":
        tag = f":{ref.tag}" if ref.tag is not None else ""
        mutated = with_reference(f"{name}{tag}@{draw(st.sampled_from(BAD_DIGESTS))}")
    elif kind == "extra_word":
        word = draw(st.sampled_from(EXTRA_WORDS))
        position = draw(st.sampled_from([start, end, line.code_end]))
        mutated = insert(text, position, f" {word} ")
    elif kind == "option":
        option = draw(st.sampled_from(OPTIONS))
        mutated = insert(text, draw(st.sampled_from([0, start])), f"{option} ")
    elif kind == "dash_reference":
        mutated = with_reference(draw(st.sampled_from(["-", "--"])) + reference.text)
    elif kind == "bad_host":
        mutated = with_reference(f"{draw(st.sampled_from(BAD_HOSTS))}/{ref.repository}{suffix}")
    elif kind == "too_long":
        # The last path component grows until the path (as Docker counts it) is one character
        # too long.
        mutated = with_reference(f"{name}{'x' * (256 - path_length(ref.registry, ref.repository))}{suffix}")
    elif kind == "upper_case":
        offset = start + reference.repository_offset
        # Without a host, an upper-case first component followed by '/' is a host (as Docker
        # reads it): upper-case a letter after it.
        first_end = ref.repository.find("/") + 1 if ref.registry is None else 0
        letters = [offset + i for i, c in enumerate(ref.repository) if c.isalpha() and i >= first_end]
        if not letters:  # an all-digit repository: add a letter
            mutated = insert(text, offset + first_end, "A")
        else:
            position = draw(st.sampled_from(letters))
            mutated = text[:position] + text[position].upper() + text[position + 1 :]
    elif kind == "bad_platform":
        mutated = text.replace(f"--platform={model.platform}", f"--platform={draw(st.sampled_from(BAD_PLATFORMS))}", 1)
    elif kind == "bad_stage_name":
        assert model.stage_name is not None
        stage_start = text.rindex(model.stage_name, 0, line.code_end)
        mutated = text[:stage_start] + draw(st.sampled_from(BAD_STAGE_NAMES)) + text[stage_start + len(model.stage_name) :]
    elif kind == "drop_stage_name":  # `AS` left dangling
        assert model.stage_name is not None
        stage_start = text.rindex(model.stage_name, 0, line.code_end)
        mutated = text[:stage_start] + text[stage_start + len(model.stage_name) :]
    else:  # drop_reference
        mutated = with_reference("")
    return kind, mutated


# --------------------------------------------------------------------------------------------
# Arbitrary lines: grammar pieces and hostile pieces glued together, and valid lines with a few
# random edits. Neither is valid or invalid by construction: the model decides.

PIECES = [
    "a", "b", "z", "0", "9", "A", "Z", ".", "_", "__", "-", ":", "/", "@", "[", "]", "::1", "5000",
    "localhost", "ex.com", "sha256:", HEX, " ", "\t", "  ", " AS ", " as ", "--platform=",
    "linux/amd64", "/v8", "#", " #", "$", "'", '"', "\\", ";", "\r", "\x00", "\u00e9", "\u00a0",
    "RUN", "-", "--",
]  # fmt: skip
glued_lines = st.lists(st.sampled_from(PIECES), max_size=12).map("".join)
EDIT_CHARS = list(LOWER_ALNUM[:6] + "AZ09._-:/@[]# \t$\\\"'") + ["\u00e9", "\x00", "\r"]


@st.composite
def edited_lines(draw: st.DrawFn) -> str:
    text = draw(spec_lines()).text
    for _ in range(draw(st.integers(1, 3))):
        position = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        char = draw(st.sampled_from(EDIT_CHARS))
        if action == "insert":
            text = insert(text, position, char)
        elif action == "delete":
            text = text[:position] + text[position + 1 :]
        else:
            text = text[:position] + char + text[position + 1 :]
    return text


arbitrary_lines = st.one_of(
    glued_lines, edited_lines(), st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
).filter(lambda text: "\n" not in text)


# --------------------------------------------------------------------------------------------
# Helpers


def parse_one_line(line: str) -> object:
    """Parses `line` as line 2 of a file between two valid lines; entry, or the SpecError."""
    content = f"python:3.12\n{line}\nredis:7\n".encode("utf-8")
    try:
        entries = parse_spec(content, PATH)
    except SpecError as error:
        check_spec_error(error, PATH, 4)
        return error
    assert [e.line_number for e in entries if e.line_number != 2] == [1, 3]
    middle = [e for e in entries if e.line_number == 2]
    return middle[0] if middle else None


# --------------------------------------------------------------------------------------------
# The grammar is accepted


@given(references())
@example(GeneratedReference("[::1]:5000/app", ModelReference("[::1]:5000", "app", None, None)))
@example(GeneratedReference("localhost:5000", ModelReference(None, "localhost", "5000", None)))
def test_every_grammar_reference_parses_and_round_trips(reference: GeneratedReference) -> None:
    parsed = ImageReference.parse(reference.text)
    assert (parsed.registry, parsed.repository, parsed.tag, parsed.digest) == (
        reference.model.registry,
        reference.model.repository,
        reference.model.tag,
        reference.model.digest,
    )
    assert str(parsed) == reference.text
    # Direct construction validates and agrees.
    assert ImageReference(parsed.registry, parsed.repository, parsed.tag, parsed.digest) == parsed
    (entry,) = parse_spec(f"{reference.text}\n".encode(), PATH)
    assert entry.from_instruction == f"FROM {reference.text}"
    check_entry_is_safe(entry)


@given(references())
@example(GeneratedReference("index.docker.io/a", ModelReference("index.docker.io", "a", None, None)))
@example(GeneratedReference("LOCALDOMAIN/a", ModelReference("LOCALDOMAIN", "a", None, None)))
@example(GeneratedReference("docker.io/0.0/library", ModelReference("docker.io", "0.0/library", None, None)))
def test_the_identity_of_a_reference_is_dockers_normalisation(reference: GeneratedReference) -> None:
    identity = ImageReference.parse(reference.text).identity
    assert (identity.registry, identity.repository, identity.tag, identity.digest) == (
        model_identity(reference.model)
    )
    # Both spellings of the identity are references to the same image.
    assert ImageReference.parse(str(identity)).identity == identity
    assert ImageReference.parse(identity.familiar).identity == identity
    assert len(identity.familiar) <= len(reference.text) + len(":latest")


@given(spec_lines())
def test_every_grammar_line_parses_to_the_same_from_line(line: GeneratedLine) -> None:
    note(repr(line.text))
    entry = parse_one_line(line.text)
    assert isinstance(entry, SpecEntry), entry
    assert entry_as_model(entry) == line.model
    assert entry.from_instruction == line.from_instruction
    assert entry.line == line.text
    check_entry_is_safe(entry)
    assert model_line(line.text) == line.model  # the model agrees with the strategy


@given(spec_files())
def test_every_grammar_file_parses_line_by_line(spec_file: GeneratedFile) -> None:
    entries = check_parse_outcome(spec_file.content, PATH)
    assert not isinstance(entries, SpecError), entries
    expected = spec_file.expected
    assert [e.line_number for e in entries] == [n for n, _ in expected]
    assert [entry_as_model(e) for e in entries] == [line.model for _, line in expected]
    assert [e.from_instruction for e in entries] == [line.from_instruction for _, line in expected]
    assert [e.line for e in entries] == [line.text for _, line in expected]
    # Across files, an image listed twice (however spelt) is an error naming the later line.
    references = [model_identity(entry_as_model(e).reference) for e in entries]
    try:
        parse_spec_files([(PATH, spec_file.content)])
    except SpecError as error:
        assert len(set(references)) < len(references)
        assert all("duplicate image" in e.message for e in error.errors)
        check_spec_error(error, PATH, len(spec_file.lines) + 1)
    else:
        assert len(set(references)) == len(references)


# --------------------------------------------------------------------------------------------
# Everything outside it is refused, with path:line:


@given(near_misses())
def test_near_misses_are_refused_with_path_and_line(case: Tuple[str, str]) -> None:
    kind, line = case
    note(f"{kind}: {line!r}")
    assert model_line(line) is INVALID, "the mutation should be outside the grammar"
    outcome = parse_one_line(line)
    assert isinstance(outcome, SpecError), f"accepted {kind} near miss {line!r}: {outcome}"
    assert {e.line_number for e in outcome.errors} == {2}
    for error in outcome.errors:
        assert str(error).startswith(f"{PATH}:2: ")


@given(arbitrary_lines)
@example("python:3 RUN rm -rf /")
@example("--platform=linux/amd64")
@example("as")
@example("AS x")
@example("a_b.c/d")
@example("Foo/bar")
@example("python:3#x")
@example("\ufeffpython")
def test_parser_agrees_with_the_grammar_model(line: str) -> None:
    note(repr(line))
    # A CR just before the line feed is a CRLF line ending.
    verdict = model_line(line[:-1] if line.endswith("\r") else line)
    outcome = parse_one_line(line)
    if verdict is INVALID:
        assert isinstance(outcome, SpecError), f"accepted a line outside the grammar: {line!r}"
        assert {e.line_number for e in outcome.errors} == {2}
    elif verdict is None:
        assert outcome is None
    else:
        assert isinstance(outcome, SpecEntry), f"refused a grammar line {line!r}: {outcome}"
        assert entry_as_model(outcome) == verdict
        check_entry_is_safe(outcome)


FILE_PIECES = [b"\n", b"\r\n", b"\r", b"\xef\xbb\xbf", b"\xff\xfe", b"\x00", b"\xff", b"\xc3",
               b"\xc3\xa9", b"\xed\xa0\x80", b"\xe2\x80\xa8", b"\t", b" ", b"#", b"python:3",
               b"--platform=linux/amd64 ", b" AS x", b"$(id)"]  # fmt: skip
odd_files = st.one_of(
    st.binary(max_size=64),
    st.lists(st.sampled_from(FILE_PIECES), max_size=12).map(b"".join),
    st.builds(
        lambda lines, eol: eol.join(line.encode("utf-8", "surrogatepass") for line in lines),
        st.lists(arbitrary_lines, max_size=4),
        st.sampled_from([b"\n", b"\r\n"]),
    ),
)


@given(odd_files)
@example(b"\xef\xbb\xbf\xef\xbb\xbfpython")
@example(b"\xff\xfe\x00\x00")
@example(b"python:3\r\r\n")
@example(b"\xed\xa0\x80")
def test_any_bytes_either_parse_safely_or_fail_with_path_and_line(content: bytes) -> None:
    outcome = check_parse_outcome(content, PATH)  # never another exception
    verdict = model_file(content)
    if isinstance(outcome, SpecError):
        assert verdict.bad_lines, f"refused a file the model accepts: {content!r}: {outcome}"
        assert {e.line_number for e in outcome.errors} == verdict.bad_lines
    else:
        assert not verdict.bad_lines, f"accepted a file with bad lines {sorted(verdict.bad_lines)}"
        assert [(e.line_number, entry_as_model(e)) for e in outcome] == list(verdict.entries)


# --------------------------------------------------------------------------------------------
# The two parser paths (whole-line regex, per-part checks) agree

NEVER = re.compile(r"(?!)")


def outcome_of(content: bytes) -> object:
    try:
        return parse_spec(content, PATH)
    except SpecError as error:
        return error.errors


@given(st.one_of(spec_lines().map(lambda line: line.text), near_misses().map(lambda c: c[1]), arbitrary_lines))
def test_fast_and_slow_paths_agree(line: str) -> None:
    content = f"{line}\n".encode("utf-8", "surrogatepass")
    fast = outcome_of(content)
    with mock.patch.object(spec_module, "_LINE", NEVER), mock.patch.object(reference_module, "_REFERENCE", NEVER):
        slow = outcome_of(content)
    assert fast == slow


# --------------------------------------------------------------------------------------------
# Generated names

# A small universe, so that names clash often and need suffixes.
small_references = st.builds(
    lambda registry, repository, tag, digest: GeneratedReference(
        (f"{registry}/" if registry else "")
        + repository
        + (f":{tag}" if tag else "")
        + (f"@sha256:{digest}" if digest else ""),
        ModelReference(registry, repository, tag, f"sha256:{digest}" if digest else None),
    ),
    st.sampled_from([None, None, "localhost:5000", "[::1]:5000", "ghcr.io"]),
    st.sampled_from(["python", "redis", "a/b", "python_3"]),
    st.sampled_from([None, "1", "3", "3.12", "latest"]),
    st.sampled_from([None, HEX, HEX[::-1]]),
)
name_lines = st.one_of(
    spec_lines(reference_strategy=small_references),
    st.builds(
        lambda reference, stage: GeneratedLine(
            f"{reference.text} AS {stage}", reference, 0, 0, ModelEntry(None, reference.model, stage)
        ),
        small_references,
        st.sampled_from(["python", "redis", "python_3", "python_latest", "x"]),
    ),
)


def names_or_error(lines: List[str]) -> object:
    entries = parse_spec("".join(f"{line}\n" for line in lines).encode("utf-8"), PATH)
    try:
        return {name: str(entry.reference) for name, entry in assign_names(entries).items()}
    except SpecError as error:
        check_spec_error(error, PATH, len(lines) + 1)
        return SpecError


@given(st.lists(st.one_of(name_lines, spec_lines()), max_size=8).flatmap(
    lambda lines: st.tuples(st.just(lines), st.permutations(lines))
))
def test_generated_names_are_valid_pants_names_and_stable_under_permutation(
    case: Tuple[List[GeneratedLine], List[GeneratedLine]]
) -> None:
    lines, permuted = case
    forward = names_or_error([line.text for line in lines])
    moved = names_or_error([line.text for line in permuted])
    # The same names for the same lines (or a clash either way), whatever the order.
    assert forward == moved
    if forward is SpecError:
        return
    assert isinstance(forward, dict)
    for name in forward:
        check_name_is_safe(name)
        address = Address("third_party", target_name="mirror", generated_name=name)
        parsed = AddressInput.parse(address.spec, description_of_origin="test").dir_to_address()
        assert parsed == address and parsed.generated_name == name
