"""A second, independent model of the spec-file grammar, and the safety checks of the parser's
output, shared by the property tests, the fuzz-corpus replay and the fuzz harness.

The model is written from the OCI distribution reference grammar (distribution/reference,
`regexp.go`: `alphanumeric`, `separator`, `domainNameComponent`, `ipv6address`, `tag`) and the
README's rules, not from `spec.py`, and is deliberately simple and slow: it splits the line into
tokens and matches each against its own regex. The tests compare it with the parser, which has a
fast whole-line regex and a hand-written slow path; any disagreement is a bug in one of them.

It reads a reference as Docker does (`ParseNormalizedNamed` in normalize.go): the first component
is a host when it has `.` or `:`, is `localhost`, or has an upper-case letter; the path after the
host is at most 255 characters, `library/` counted for a Docker Hub name without a namespace; a
reference of exactly 64 lowercase hex digits is an image ID, not a name. Differences from
Docker's own parser are deliberate narrowings of what is accepted (the spec is a trust
boundary), never widenings:
- only `sha256:` digests with exactly 64 lowercase hex digits;
- an IPv6 host must be a real IPv6 address, not just hex digits and colons;
- a first component with `.` that is no valid host (`a_b.c/d`) is refused; Docker's regex would
  fall back to reading the whole name as a path under no registry.

Plain stdlib, so `fuzz/fuzz_spec.py` can import it outside Pants.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Optional, Sequence, Union

from docker_mirror.spec_files.parser import SpecEntry, SpecError, assign_names, parse_spec, parse_spec_files

# --------------------------------------------------------------------------------------------
# The grammar, from distribution/reference/regexp.go (ASCII only, as in Go's RE2).

ALPHANUMERIC = r"[a-z0-9]+"
SEPARATOR = r"(?:[._]|__|[-]+)"
PATH_COMPONENT = rf"{ALPHANUMERIC}(?:{SEPARATOR}{ALPHANUMERIC})*"
REMOTE_NAME = rf"{PATH_COMPONENT}(?:/{PATH_COMPONENT})*"
DOMAIN_NAME_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
DOMAIN_NAME = rf"{DOMAIN_NAME_COMPONENT}(?:\.{DOMAIN_NAME_COMPONENT})*"
IPV6_ADDRESS = r"\[(?P<ipv6>[a-fA-F0-9:]+)\]"
DOMAIN_AND_PORT = rf"(?:{DOMAIN_NAME}|{IPV6_ADDRESS})(?::[0-9]+)?"
TAG = r"[\w][\w.-]{0,127}"
# distribution accepts any registered algorithm; the spec accepts only canonical sha256.
DIGEST = r"sha256:[0-9a-f]{64}"
# distribution/reference's NameTotalLengthMax: on the path alone (not the domain) since 2024.
NAME_TOTAL_LENGTH_MAX = 255
# splitDockerDomain: Docker Hub's spellings, and where its official images live.
DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
IDENTIFIER = re.compile(r"[a-f0-9]{64}", re.ASCII)

_WITH_DOMAIN = re.compile(
    rf"(?P<domain>{DOMAIN_AND_PORT})/(?P<path>{REMOTE_NAME})(?::(?P<tag>{TAG}))?(?:@(?P<digest>{DIGEST}))?",
    re.ASCII,
)
_WITHOUT_DOMAIN = re.compile(
    rf"(?P<path>{REMOTE_NAME})(?::(?P<tag>{TAG}))?(?:@(?P<digest>{DIGEST}))?", re.ASCII
)

# Dockerfile `FROM` flags and stage names, as the README and `docker build` accept them.
PLATFORM_COMPONENT = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*", re.ASCII)
STAGE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,127}", re.ASCII)
AS_KEYWORDS = ("AS", "As", "aS", "as")


@dataclass(frozen=True)
class ModelReference:
    registry: Optional[str]
    repository: str
    tag: Optional[str]
    digest: Optional[str]


@dataclass(frozen=True)
class ModelEntry:
    platform: Optional[str]
    reference: ModelReference
    stage_name: Optional[str]


class Invalid:
    """The model's verdict for a line outside the grammar."""

    def __repr__(self) -> str:
        return "INVALID"


INVALID = Invalid()
# A line's meaning: None (blank or comment), an entry, or INVALID.
LineVerdict = Union[None, ModelEntry, Invalid]


def model_reference(text: str) -> Optional[ModelReference]:
    """`text` split into parts if the grammar accepts it as a reference, else None."""
    if IDENTIFIER.fullmatch(text):  # anchoredIdentifierRegexp: an image ID
        return None
    # Docker's rule (splitDockerDomain): the part before the first '/' is a registry host when
    # it contains '.' or ':', is `localhost`, or is not all lower case; otherwise the whole name
    # is a path.
    first, slash, _ = text.partition("/")
    has_domain = bool(slash) and (
        "." in first or ":" in first or first == "localhost" or first.lower() != first
    )
    match = (_WITH_DOMAIN if has_domain else _WITHOUT_DOMAIN).fullmatch(text)
    if match is None:
        return None
    domain = match["domain"] if has_domain else None
    if domain is not None and match["ipv6"] is not None:
        try:
            ipaddress.IPv6Address(match["ipv6"])
        except ValueError:
            return None
    path = match["path"]
    docker_hub = domain is None or domain in (DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN)
    normalized_path = OFFICIAL_REPO_PREFIX + path if docker_hub and "/" not in path else path
    if len(normalized_path) > NAME_TOTAL_LENGTH_MAX:
        return None
    return ModelReference(domain, match["path"], match["tag"], match["digest"])


def model_identity(reference: ModelReference) -> tuple[str, str, Optional[str], Optional[str]]:
    """The image a reference names, as Docker normalises it (splitDockerDomain, TagNameOnly):
    no host or `index.docker.io` is `docker.io`, a Docker Hub name without a namespace is under
    `library/`, and a reference without tag or digest is `:latest`."""
    domain = reference.registry or DEFAULT_DOMAIN
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    path = reference.repository
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_REPO_PREFIX + path
    tag = reference.tag
    if tag is None and reference.digest is None:
        tag = "latest"
    return domain, path, tag, reference.digest


def model_platform(text: str) -> bool:
    components = text.split("/")
    return 2 <= len(components) <= 3 and all(PLATFORM_COMPONENT.fullmatch(c) for c in components)


def model_line(line: str) -> LineVerdict:
    """The meaning of one line (line ending already removed) under the README's grammar."""
    # Control and invisible characters are refused anywhere, comments included.
    if any(not (c.isprintable() or c == "\t") for c in line):
        return INVALID
    # '#' starts a comment at the start of the line or after a space or tab.
    code = line
    for index, char in enumerate(line):
        if char == "#" and (index == 0 or line[index - 1] in " \t"):
            code = line[:index]
            break
    tokens = [token for token in re.split(r"[ \t]+", code) if token]
    if not tokens:
        return None
    platform = None
    if tokens[0].startswith("--platform="):
        platform = tokens[0][len("--platform=") :]
        if not model_platform(platform):
            return INVALID
        tokens = tokens[1:]
    if len(tokens) == 1:
        reference_text, stage_name = tokens[0], None
    elif len(tokens) == 3 and tokens[1] in AS_KEYWORDS:
        reference_text, stage_name = tokens[0], tokens[2]
        if not STAGE_NAME.fullmatch(stage_name):
            return INVALID
    else:
        return INVALID
    reference = model_reference(reference_text)
    if reference is None:
        return INVALID
    return ModelEntry(platform, reference, stage_name)


def entry_as_model(entry: SpecEntry) -> ModelEntry:
    reference = entry.reference
    return ModelEntry(
        entry.platform,
        ModelReference(reference.registry, reference.repository, reference.tag, reference.digest),
        entry.stage_name,
    )


# --------------------------------------------------------------------------------------------
# What the parser's output must look like, whatever the input.

# A `FROM` line with nothing Docker, a shell or Pants would read as more than one image: ASCII,
# one space between words, no quotes, `$`, backslashes, braces or line breaks, and a reference
# starting with a letter, a digit or '[' (never '-', so never an option).
SAFE_FROM = re.compile(
    r"FROM (?:--platform=(?P<platform>[a-z0-9._-]+(?:/[a-z0-9._-]+){1,2}) )?"
    r"(?P<reference>[A-Za-z0-9\[][A-Za-z0-9._:/@\[\]-]*)",
    re.ASCII,
)
# Docker's tag grammar; a tag must not start with '-' (an option) or '.'.
SAFE_TAG = re.compile(TAG, re.ASCII)
SAFE_REPOSITORY = re.compile(REMOTE_NAME, re.ASCII)
# Pants 2.17 `BANNED_CHARS_IN_GENERATED_NAME`: names go into `dir:gen#<name>` addresses.
PANTS_BANNED_IN_GENERATED_NAME = frozenset(":#!@?=")
# Longest error line: the echo is cut at 200 characters and quotes at 80, each of which may be
# escaped to at most 10 characters (`\U0001f600`); a 1 MB line must not give a 1 MB message.
MAX_ERROR_LINE_LENGTH = 5000


def check_entry_is_safe(entry: SpecEntry) -> None:
    """Raises AssertionError unless `entry` yields a single, inert `FROM` line and safe values."""
    instruction = entry.from_instruction
    match = SAFE_FROM.fullmatch(instruction)
    assert match, f"unsafe FROM line {instruction!r}"
    # Implied by SAFE_FROM, spelled out: what would end the instruction, expand or quote.
    assert not set(instruction) & set("\n\r\t$'\"`\\{};|&<>()#*?!~")
    assert instruction.count(" ") == (2 if entry.platform else 1), instruction
    assert match["platform"] == entry.platform
    reference_text = match["reference"]
    assert not reference_text.startswith("-")
    # The independent model agrees on what the reference is.
    model = model_reference(reference_text)
    assert model is not None, f"reference outside the grammar: {reference_text!r}"
    assert model == entry_as_model(entry).reference, (model, entry.reference)
    if entry.platform is not None:
        assert model_platform(entry.platform), entry.platform
    if entry.stage_name is not None:
        assert STAGE_NAME.fullmatch(entry.stage_name), entry.stage_name
    # The values that become `docker build -t <repository>:<tag>` and Pants fields.
    tag = entry.default_image_tag
    assert SAFE_TAG.fullmatch(tag), tag
    assert SAFE_REPOSITORY.fullmatch(entry.reference.repository), entry.reference.repository
    # Round trip: the FROM line without its keyword is a spec line meaning the same image.
    (again,) = parse_spec(f"{instruction[len('FROM '):]}\n".encode("ascii"), "round-trip.txt")
    assert again.reference == entry.reference and again.platform == entry.platform
    assert again.from_instruction == instruction


def check_name_is_safe(name: str) -> None:
    assert name, "empty generated name"
    assert not set(name) & PANTS_BANNED_IN_GENERATED_NAME, name
    assert name.isascii() and name.isprintable() and " " not in name, name
    assert "{" not in name and "}" not in name, name


def check_spec_error(error: SpecError, path: str, line_count: int) -> None:
    """Raises AssertionError unless every line of `error` is `path:N: ...` or `path: ...`."""
    assert error.errors, "SpecError without errors"
    lines = str(error).split("\n")
    assert lines == [str(e) for e in error.errors]
    for line_error, text in zip(error.errors, lines):
        assert line_error.path == path
        if line_error.line_number == 0:
            assert text.startswith(f"{path}: "), text
        else:
            assert 1 <= line_error.line_number <= line_count, (line_error, line_count)
            assert text.startswith(f"{path}:{line_error.line_number}: "), text
        # Printable: untrusted text must not reach a terminal as control sequences.
        assert text.isprintable() or text.replace("\t", " ").isprintable(), repr(text)
        assert len(text) <= MAX_ERROR_LINE_LENGTH, len(text)


def line_count(content: bytes) -> int:
    return content.count(b"\n") + 1


def check_parse_outcome(content: bytes, path: str) -> Union[Sequence[SpecEntry], SpecError]:
    """Parses `content`; asserts the outcome is safe entries or a well-formed SpecError.

    Any other exception propagates: that is a parser bug.
    """
    try:
        entries = parse_spec(content, path)
    except SpecError as error:
        check_spec_error(error, path, line_count(content))
        return error
    for entry in entries:
        assert entry.path == path
        assert 1 <= entry.line_number <= line_count(content)
        check_entry_is_safe(entry)
    return entries


# --------------------------------------------------------------------------------------------
# Whole files


_OTHER_UNICODE_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")


@dataclass(frozen=True)
class FileVerdict:
    """What the model expects of a whole file: its entries, or the numbers of its bad lines.

    `bad_lines` holds 0 for a whole-file problem (a UTF-16/UTF-32 byte order mark).
    """

    entries: tuple[tuple[int, ModelEntry], ...]
    bad_lines: frozenset[int]


def model_file(content: bytes) -> FileVerdict:
    if content[:4].startswith(_OTHER_UNICODE_BOMS):
        return FileVerdict((), frozenset({0}))
    if content.startswith(b"\xef\xbb\xbf"):
        content = content[3:]
    entries: list[tuple[int, ModelEntry]] = []
    bad: set[int] = set()
    for number, raw in enumerate(content.split(b"\n"), start=1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            bad.add(number)
            continue
        verdict = model_line(line)
        if verdict is INVALID:
            bad.add(number)
        elif isinstance(verdict, ModelEntry):
            entries.append((number, verdict))
    return FileVerdict(tuple(entries), frozenset(bad))


# --------------------------------------------------------------------------------------------
# Everything at once: what the fuzz harness and the fuzz-corpus replay check for every input

_NEVER = re.compile(r"(?!)")


def _outcome(content: bytes, path: str) -> object:
    try:
        return parse_spec(content, path)
    except SpecError as error:
        return error.errors


def check_spec_input(content: bytes, path: str) -> Union[Sequence[SpecEntry], SpecError]:
    """All the checks for one spec file's bytes; raises AssertionError (or the parser's own
    unexpected exception) on a problem, else returns the entries or the SpecError.

    1. entries are safe, or the SpecError is well formed (`check_parse_outcome`);
    2. the parser agrees with the grammar model, line by line;
    3. its fast path (whole-line regex) and slow path (per-part checks) agree;
    4. `parse_spec_files` and `assign_names` raise only SpecError, and names are safe.
    """
    import docker_mirror.oci.reference as reference_module
    import docker_mirror.spec_files.parser as spec_module

    result = check_parse_outcome(content, path)

    verdict = model_file(content)
    if isinstance(result, SpecError):
        assert verdict.bad_lines, f"refused a file the grammar model accepts: {result}"
        assert {e.line_number for e in result.errors} == set(verdict.bad_lines), (result, verdict)
    else:
        assert not verdict.bad_lines, f"accepted bad lines {sorted(verdict.bad_lines)}"
        assert [(e.line_number, entry_as_model(e)) for e in result] == list(verdict.entries)

    saved = spec_module._LINE, reference_module._REFERENCE
    spec_module._LINE = reference_module._REFERENCE = _NEVER
    try:
        slow = _outcome(content, path)
    finally:
        spec_module._LINE, reference_module._REFERENCE = saved
    assert slow == _outcome(content, path), "the parser's fast and slow paths disagree"

    if not isinstance(result, SpecError):
        try:
            names = assign_names(parse_spec_files([(path, content)]))
        except SpecError as error:
            check_spec_error(error, path, line_count(content))
        else:
            for name in names:
                check_name_is_safe(name)
        if result:
            # The same file twice: each of its images is listed twice.
            try:
                parse_spec_files([(path, content), (f"{path}.again", content)])
            except SpecError as error:
                assert any("duplicate image" in e.message for e in error.errors)
            else:
                raise AssertionError("a file listed twice was accepted")
    return result
