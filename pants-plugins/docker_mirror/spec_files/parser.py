"""Parser for spec files, a trust boundary: what it accepts ends up verbatim in a Dockerfile `FROM`
line and in target names. Linear time: no regex here backtracks."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from docker_mirror.oci.reference import (
    FAST_PATH_MAX_LENGTH,
    PLATFORM_SOURCE,
    REFERENCE_SOURCE,
    ImageIdentity,
    ImageReference,
    build_validated,
    check_reference,
    fast_name_ok,
    platform_problem,
)
from docker_mirror.oci.untrusted_text import QUOTE_LIMIT, quote, shorten, visible

_STAGE_NAME_SOURCE = r"[A-Za-z][A-Za-z0-9_.-]{0,127}"
_STAGE_NAME = re.compile(_STAGE_NAME_SOURCE, re.ASCII)
# A whole valid line (comment and surrounding blanks removed): one regex call per line keeps
# large files fast. Token separators are the same as in `_TOKEN_SEPARATOR`.
_LINE = re.compile(
    rf"(?:--platform=(?P<platform>{PLATFORM_SOURCE})[ \t]+)?"
    rf"{REFERENCE_SOURCE}"
    rf"(?:[ \t]+[Aa][Ss][ \t]+(?P<stage_name>{_STAGE_NAME_SOURCE}))?",
    re.ASCII,
)

# The tag of a digest-only line: `digest-sha256-<hex>`, the full digest, so it names one manifest.
DIGEST_TAG_PREFIX = "digest-"


# Only space and tab separate tokens: other whitespace (NBSP, \v, \f) must stay inside a token
# and be refused there, instead of silently acting as a separator.
_TOKEN_SEPARATOR = re.compile(r"[ \t]+")
_BLANKS = " \t"
_COMMENT_START = re.compile(r"[ \t]#")
_UTF8_BOM = b"\xef\xbb\xbf"
# The UTF-32 LE mark starts with the UTF-16 LE one, so these cover all four encodings.
_UTF16_OR_32_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")
# Keep messages readable when a line is huge (e.g. a 1 MB garbage line).
_ECHO_LIMIT = 200
_CONTROL_NAMES = {0x00: "NUL", 0x0A: "LF", 0x0D: "CR", 0x1B: "ESC", 0x7F: "DEL"}


# --------------------------------------------------------------------------------------------
# Errors


@dataclass(frozen=True)
class SpecLineError:
    """One problem in a spec file; `line_number` 0 means the whole file (then `line` is "")."""

    path: str
    line_number: int
    message: str
    line: str

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line_number}" if self.line_number > 0 else self.path

    def __str__(self) -> str:
        if self.line_number <= 0:
            return f"{self.path}: {self.message}"
        return f"{self.location}: {self.message}: {visible(shorten(self.line, _ECHO_LIMIT))}"


class SpecError(ValueError):
    """All problems found in one parse; `str()` lists them one per line, compiler-style."""

    def __init__(self, errors: Iterable[SpecLineError]) -> None:
        self.errors: tuple[SpecLineError, ...] = tuple(errors)
        super().__init__("\n".join(str(error) for error in self.errors))

    def __reduce__(self) -> tuple[type[SpecError], tuple[tuple[SpecLineError, ...]]]:
        # The default would call SpecError(message) and lose `.errors`.
        return (SpecError, (self.errors,))


# --------------------------------------------------------------------------------------------
# Spec entries


def _stage_name_problem(stage_name: str) -> str | None:
    if _STAGE_NAME.fullmatch(stage_name):
        return None
    return f"invalid stage name {quote(stage_name)} after AS (allowed: {_STAGE_NAME_SOURCE})"


@dataclass(frozen=True)
class SpecEntry:
    """One image line of a spec file."""

    path: str
    line_number: int
    line: str
    reference: ImageReference
    platform: str | None
    stage_name: str | None

    def __post_init__(self) -> None:
        # platform and stage_name end up in a Dockerfile / a target name: re-check them.
        if not isinstance(self.reference, ImageReference):
            raise ValueError(f"reference must be an ImageReference: {self.reference!r}")
        if self.line_number < 1:
            raise ValueError(f"line_number is 1-based: {self.line_number}")
        if self.platform is not None:
            problem = platform_problem(self.platform)
            if problem:
                raise ValueError(problem)
        if self.stage_name is not None:
            problem = _stage_name_problem(self.stage_name)
            if problem:
                raise ValueError(problem)

    @property
    def from_instruction(self) -> str:
        # No AS part: each mirrored image gets its own single-stage Dockerfile.
        platform = f"--platform={self.platform} " if self.platform else ""
        return f"FROM {platform}{self.reference}"

    @property
    def default_image_tag(self) -> str:
        if self.reference.tag is not None:
            return self.reference.tag
        if self.reference.digest is not None:
            # ':' is not allowed in a tag. Not "sha256-<hex>": OCI 1.1 reserves that for the
            # image's referrers (their fallback tag), which copy mode writes next to the image.
            return DIGEST_TAG_PREFIX + self.reference.digest.replace(":", "-", 1)
        return "latest"

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line_number}"


def _parse_tokens(
    path: str, line_number: int, line: str, tokens: list[str]
) -> tuple[SpecEntry | None, list[SpecLineError]]:
    """The slow path for one line: reports every problem it can tell apart."""
    problems: list[str] = []

    platform: str | None = None
    rest = tokens
    first = tokens[0]
    if first.startswith("--platform="):
        platform = first[len("--platform=") :]
        rest = tokens[1:]
        problem = platform_problem(platform)
        if problem:
            problems.append(problem)
    elif first == "--platform":
        problems.append(
            "use --platform=<os>/<arch>[/<variant>]; "
            "the form '--platform <value>' is not supported"
        )
    elif first.startswith("--"):
        option = first.partition("=")[0]
        problems.append(
            f"unsupported option {quote(option)} "
            "(only --platform=<os>/<arch>[/<variant>] is allowed)"
        )
    if problems and platform is None:
        # After an unknown option the meaning of the other tokens is a guess: stop here.
        return None, [SpecLineError(path, line_number, p, line) for p in problems]

    reference: ImageReference | None = None
    stage_name: str | None = None
    if not rest:
        problems.append(
            f"missing image reference after --platform={shorten(platform or '', QUOTE_LIMIT)}"
        )
    elif len(rest) == 2 and rest[0].lower() == "as":
        # "as" alone is a valid image name; "AS <name>" is a forgotten reference.
        problems.append("missing image reference before AS")
    else:
        token = rest[0]
        if token.startswith("--"):
            problems.append(
                f"unexpected option {quote(token)} "
                "(only one --platform=..., before the reference, is allowed)"
            )
        else:
            try:
                # Straight to the checks that name the problem: the regexes already failed.
                reference = build_validated(ImageReference, check_reference(token))
            except ValueError as e:
                hint = ""
                if "#" in token:
                    hint = "; '#' starts a comment only at the start of a line or after whitespace"
                problems.append(f"{e}{hint}")
        after = rest[1:]
        if after:
            if after[0].lower() != "as":
                problems.append(
                    f"unexpected {quote(' '.join(after))} after the image reference "
                    "(only 'AS <name>' may follow it)"
                )
            elif len(after) == 1:
                problems.append(f"{after[0]} must be followed by a stage name")
            elif len(after) > 2:
                problems.append(
                    f"{after[0]} takes exactly one stage name, "
                    f"got extra {quote(' '.join(after[2:]))}"
                )
            else:
                stage_name = after[1]
                problem = _stage_name_problem(stage_name)
                if problem:
                    problems.append(problem)

    if problems or reference is None:
        return None, [SpecLineError(path, line_number, p, line) for p in problems]
    return build_validated(SpecEntry, (path, line_number, line, reference, platform, stage_name)), []


def _unprintable_problem(line: str) -> str | None:
    if line.replace("\t", " ").isprintable():
        return None
    for column, char in enumerate(line, start=1):
        if char != "\t" and not char.isprintable():
            code = ord(char)
            if code == 0:
                return f"NUL character at column {column}"
            name = _CONTROL_NAMES.get(code)
            label = f"U+{code:04X}" + (f" ({name})" if name else "")
            return (
                f"non-printable character {label} at column {column} "
                "(control and invisible characters are not allowed)"
            )
    return None  # pragma: no cover - isprintable() said there is one


def _parse_line(
    path: str, line_number: int, line: str
) -> tuple[SpecEntry | None, list[SpecLineError]]:
    # Refused anywhere, comments included: a NUL or a terminal escape is never intended.
    if not line.isprintable():
        problem = _unprintable_problem(line)
        if problem:
            return None, [SpecLineError(path, line_number, problem, line)]
    code = line
    if "#" in code:
        if code.startswith("#"):
            return None, []
        comment = _COMMENT_START.search(code)
        if comment:
            code = code[: comment.start()]
    code = code.strip(_BLANKS)
    if not code:
        return None, []

    # The fast path: the one regex call that most lines need.
    if len(code) <= FAST_PATH_MAX_LENGTH:
        match = _LINE.fullmatch(code)
        if match:
            platform, registry, repository, tag, digest, stage_name = match.group(
                "platform", "registry", "repository", "tag", "digest", "stage_name"
            )
            if fast_name_ok(registry, repository):
                reference = build_validated(ImageReference, (registry, repository, tag, digest))
                entry = build_validated(
                    SpecEntry, (path, line_number, line, reference, platform, stage_name)
                )
                return entry, []

    tokens = [token for token in _TOKEN_SEPARATOR.split(code) if token]
    return _parse_tokens(path, line_number, line, tokens)


def _decode_lines(content: bytes, path: str) -> tuple[list[str], dict[int, SpecLineError]]:
    """Lines decoded one by one, so that every undecodable line gets its own error."""
    lines: list[str] = []
    errors: dict[int, SpecLineError] = {}
    # Splitting bytes on b"\n" is safe: 0x0A never occurs inside a multi-byte UTF-8 sequence.
    for line_number, raw in enumerate(content.split(b"\n"), start=1):
        body = raw[:-1] if raw.endswith(b"\r") else raw
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as e:
            shown = body.decode("utf-8", "backslashreplace")
            lines.append(shown)
            message = (
                f"invalid UTF-8: byte 0x{body[e.start]:02x} at byte {e.start + 1} "
                f"of the line ({e.reason})"
            )
            errors[line_number] = SpecLineError(path, line_number, message, shown)
        else:
            # With its CR, as when the whole file decodes: `_parse_content` removes exactly one
            # (removing it here too would turn a line "x\r\r" into a valid "x").
            lines.append(raw.decode("utf-8"))
    return lines, errors


def _parse_content(content: bytes, path: str) -> tuple[list[SpecEntry], list[SpecLineError]]:
    if not isinstance(content, (bytes, bytearray, memoryview)):
        raise TypeError(f"spec content must be bytes, not {type(content).__name__}")
    content = bytes(content)
    if content.startswith(_UTF16_OR_32_BOMS):
        message = "file starts with a UTF-16/UTF-32 byte order mark; spec files must be UTF-8"
        return [], [SpecLineError(path, 0, message, "")]
    if content.startswith(_UTF8_BOM):
        content = content[len(_UTF8_BOM) :]
    try:
        lines = content.decode("utf-8").split("\n")
        decode_errors: dict[int, SpecLineError] = {}
    except UnicodeDecodeError:
        lines, decode_errors = _decode_lines(content, path)

    entries: list[SpecEntry] = []
    errors: list[SpecLineError] = []
    for line_number, line in enumerate(lines, start=1):
        if line_number in decode_errors:
            errors.append(decode_errors[line_number])
            continue
        if line.endswith("\r"):
            line = line[:-1]
        entry, line_errors = _parse_line(path, line_number, line)
        errors.extend(line_errors)
        if entry is not None:
            entries.append(entry)
    return entries, errors


def parse_spec(content: bytes, path: str) -> tuple[SpecEntry, ...]:
    """The entries of one spec file; raises SpecError listing every bad line."""
    entries, errors = _parse_content(content, path)
    if errors:
        raise SpecError(errors)
    return tuple(entries)


def parse_spec_files(files: Iterable[tuple[str, bytes]]) -> tuple[SpecEntry, ...]:
    """The entries of the spec files of one generator, in order.

    Raises SpecError listing the errors of all files, including images listed twice, however
    spelt (`nginx` and `docker.io/library/nginx:latest`: compared by `ImageIdentity`, platform
    ignored: one generated image per image).
    """
    all_entries: list[SpecEntry] = []
    all_errors: list[SpecLineError] = []
    first_seen: dict[ImageIdentity, SpecEntry] = {}
    for path, content in files:
        entries, errors = _parse_content(content, path)
        for entry in entries:
            key = entry.reference.identity
            first = first_seen.get(key)
            if first is not None:
                errors.append(_duplicate(entry, first, key))
            else:
                first_seen[key] = entry
            all_entries.append(entry)
        # Stable sort: duplicates interleave with the file's other errors in line order.
        all_errors.extend(sorted(errors, key=lambda error: error.line_number))
    if all_errors:
        raise SpecError(all_errors)
    return tuple(all_entries)


def _duplicate(entry: SpecEntry, first: SpecEntry, identity: ImageIdentity) -> SpecLineError:
    written, earlier = str(entry.reference), str(first.reference)
    message = f"duplicate image {quote(written)}, first listed at {first.location}"
    if written != earlier:
        message += f" as {quote(earlier)} (both are {identity} as Docker reads them)"
    return SpecLineError(entry.path, entry.line_number, message, entry.line)


def _default_name(entry: SpecEntry) -> str:
    reference = entry.reference
    if reference.registry is None:
        return reference.repository
    # ':' separates a target name from its address in Pants: write host ports as '_'.
    return f"{reference.registry.replace(':', '_')}/{reference.repository}"


def _name_suffix(entry: SpecEntry) -> str:
    reference = entry.reference
    if reference.tag is not None:
        return reference.tag
    if reference.digest is not None:
        return reference.digest[len("sha256:") :][:12]
    return "latest"


def assign_names(entries: Sequence[SpecEntry]) -> dict[str, SpecEntry]:
    """Generated target name -> entry, in entry order; raises SpecError on name clashes.

    A name depends only on the entry's own content and on which other names exist, never on
    line order, so moving lines around keeps every name.
    """
    default_counts: dict[str, int] = {}
    first_with_default: dict[str, SpecEntry] = {}
    for entry in entries:
        if entry.stage_name is None:
            base = _default_name(entry)
            default_counts[base] = default_counts.get(base, 0) + 1
            first_with_default.setdefault(base, entry)

    names: dict[str, SpecEntry] = {}
    errors: list[SpecLineError] = []
    for entry in entries:
        if entry.stage_name is not None:
            name = entry.stage_name
            # An `AS` name must not take another line's default name: that would silently
            # rename the other image and hand it this line's `overrides` entry.
            taken = first_with_default.get(name)
            if taken is not None:
                message = (
                    f"AS name {quote(name)} is the name of the image on {taken.location}; "
                    "choose another AS name"
                )
                errors.append(SpecLineError(entry.path, entry.line_number, message, entry.line))
                continue
        else:
            name = _default_name(entry)
            if default_counts[name] > 1:
                name = f"{name}_{_name_suffix(entry)}"
        first = names.get(name)
        if first is not None:
            message = f"name {quote(name)} is also used by {first.location}"
            errors.append(SpecLineError(entry.path, entry.line_number, message, entry.line))
        else:
            names[name] = entry
    if errors:
        raise SpecError(errors)
    return names
