"""Parser for `docker_mirror_images` spec files; pure stdlib, no Pants imports.

A spec file lists one image per line in the Dockerfile `FROM` syntax without the keyword:

    # comment
    python:3.12
    --platform=linux/arm64/v8 ghcr.io/org/app:1.2@sha256:<64 lowercase hex> AS app

This is a trust boundary: an accepted reference, platform and stage name end up verbatim in a
generated Dockerfile `FROM` line and in target names. Every part is checked with anchored
whitelist regexes (`fullmatch`, ASCII only), so no accepted value can contain whitespace,
quotes, `$`, `;`, backslashes, control characters or anything else outside the grammar.

Parsing is linear: the regexes have no nested ambiguous repetition, and the whole-line regex
(the fast path for valid lines) only ever sees length-bounded input. A line it does not accept
goes through per-part checks, which decide on their own and name the part that is wrong.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence, TypeVar

_T = TypeVar("_T")

# The grammar, as regex sources; error messages quote them so users see what is allowed.
_PATH_COMPONENT_SOURCE = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN_LABEL_SOURCE = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_IPV6_SOURCE = r"\[[0-9A-Fa-f:]+\]"
_TAG_SOURCE = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST_SOURCE = r"sha256:[0-9a-f]{64}"
_PLATFORM_COMPONENT_SOURCE = r"[a-z0-9]+(?:[._-][a-z0-9]+)*"
_STAGE_NAME_SOURCE = r"[A-Za-z][A-Za-z0-9_.-]{0,127}"

# Only what `_looks_like_host` calls a host: with a '.' or a port, `localhost`, or IPv6. So a
# plain first path component never takes a detour through this branch.
_HOST_SOURCE = (
    rf"(?:localhost|{_DOMAIN_LABEL_SOURCE}(?:\.{_DOMAIN_LABEL_SOURCE})+|{_IPV6_SOURCE})"
    rf"(?::[0-9]+)?|{_DOMAIN_LABEL_SOURCE}:[0-9]+"
)
_REFERENCE_SOURCE = (
    rf"(?:(?P<registry>{_HOST_SOURCE})/)?"
    rf"(?P<repository>{_PATH_COMPONENT_SOURCE}(?:/{_PATH_COMPONENT_SOURCE})*)"
    rf"(?::(?P<tag>{_TAG_SOURCE}))?"
    rf"(?:@(?P<digest>{_DIGEST_SOURCE}))?"
)
_PLATFORM_SOURCE = rf"{_PLATFORM_COMPONENT_SOURCE}(?:/{_PLATFORM_COMPONENT_SOURCE}){{1,2}}"

# re.ASCII so that classes never widen to Unicode; always used with fullmatch, never with `$`
# (which would also match before a trailing newline).
_PATH_COMPONENT = re.compile(_PATH_COMPONENT_SOURCE, re.ASCII)
_PATH = re.compile(rf"{_PATH_COMPONENT_SOURCE}(?:/{_PATH_COMPONENT_SOURCE})*", re.ASCII)
# With `.match` on path + "/": ends where the first invalid component starts.
_VALID_PATH_PREFIX = re.compile(rf"(?:{_PATH_COMPONENT_SOURCE}/)*", re.ASCII)
_PATH_FORBIDDEN_CHAR = re.compile(r"[^a-z0-9._-]", re.ASCII)
_DOMAIN_LABEL = re.compile(_DOMAIN_LABEL_SOURCE, re.ASCII)
_IPV6_BODY = re.compile(r"[0-9A-Fa-f:]+", re.ASCII)
_PORT = re.compile(r"[0-9]+", re.ASCII)
_TAG = re.compile(_TAG_SOURCE, re.ASCII)
_DIGEST = re.compile(_DIGEST_SOURCE, re.ASCII)
_DIGEST_ALGORITHM = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*", re.ASCII)
_PLATFORM = re.compile(_PLATFORM_SOURCE, re.ASCII)
_PLATFORM_COMPONENT = re.compile(_PLATFORM_COMPONENT_SOURCE, re.ASCII)
_STAGE_NAME = re.compile(_STAGE_NAME_SOURCE, re.ASCII)
_REFERENCE = re.compile(_REFERENCE_SOURCE, re.ASCII)
# A whole valid line (comment and surrounding blanks removed): one regex call per line keeps
# large files fast. Token separators are the same as in `_TOKEN_SEPARATOR`.
_LINE = re.compile(
    rf"(?:--platform=(?P<platform>{_PLATFORM_SOURCE})[ \t]+)?"
    rf"{_REFERENCE_SOURCE}"
    rf"(?:[ \t]+[Aa][Ss][ \t]+(?P<stage_name>{_STAGE_NAME_SOURCE}))?",
    re.ASCII,
)
# Defense in depth: the union of all characters any part of a reference may contain.
_REFERENCE_CHARS = re.compile(r"[A-Za-z0-9._:/@\[\]-]+", re.ASCII)

# Only space and tab separate tokens: other whitespace (NBSP, \v, \f) must stay inside a token
# and be refused there, instead of silently acting as a separator.
_TOKEN_SEPARATOR = re.compile(r"[ \t]+")
_BLANKS = " \t"
_COMMENT_START = re.compile(r"[ \t]#")

_MAX_NAME_LENGTH = 255
_MAX_TAG_LENGTH = 128
# Longer input skips the fast-path regexes, so they never run on unbounded text.
_FAST_PATH_MAX_LENGTH = 1024
_UTF8_BOM = b"\xef\xbb\xbf"
# The UTF-32 LE mark starts with the UTF-16 LE one, so these cover all four encodings.
_UTF16_OR_32_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")
# Keep messages readable when a line is huge (e.g. a 1 MB garbage line).
_ECHO_LIMIT = 200
_QUOTE_LIMIT = 80
_CONTROL_NAMES = {0x00: "NUL", 0x0A: "LF", 0x0D: "CR", 0x1B: "ESC", 0x7F: "DEL"}


# --------------------------------------------------------------------------------------------
# Display helpers: error messages echo untrusted text, so make it visible and bounded.


def _escape_char(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _visible(text: str) -> str:
    """`text` with non-printable characters escaped (tabs kept), so terminals show them."""
    if text.replace("\t", " ").isprintable():
        return text
    return "".join(c if c == "\t" or c.isprintable() else _escape_char(c) for c in text)


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def _quote(text: str) -> str:
    shown = _visible(_shorten(text, _QUOTE_LIMIT))
    # Switch quotes rather than escape, so a stray quote in the input stays recognisable.
    return f"'{shown}'" if '"' in shown and "'" not in shown else f'"{shown}"'


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
        return f"{self.location}: {self.message}: {_visible(_shorten(self.line, _ECHO_LIMIT))}"


class SpecError(ValueError):
    """All problems found in one parse; `str()` lists them one per line, compiler-style."""

    def __init__(self, errors: Iterable[SpecLineError]) -> None:
        self.errors: tuple[SpecLineError, ...] = tuple(errors)
        super().__init__("\n".join(str(error) for error in self.errors))

    def __reduce__(self) -> tuple[type[SpecError], tuple[tuple[SpecLineError, ...]]]:
        # The default would call SpecError(message) and lose `.errors`.
        return (SpecError, (self.errors,))


# --------------------------------------------------------------------------------------------
# Image references


def _build(cls: type[_T], values: tuple[Any, ...]) -> _T:
    """An instance of a frozen dataclass from values the parser has just validated.

    Skips `__post_init__`, whose re-validation (meant for direct construction) would double
    the cost of parsing large files; filling `__dict__` directly bypasses the frozen
    `__setattr__` just like the dataclass-generated `__init__` does, only faster.
    """
    instance = object.__new__(cls)
    instance.__dict__.update(zip(cls.__dataclass_fields__, values))  # type: ignore[attr-defined]
    return instance


def _looks_like_host(component: str) -> bool:
    # The distribution grammar's rule: otherwise `bitnami/redis` would read as host "bitnami".
    return "." in component or ":" in component or component == "localhost"


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _fast_name_ok(registry: str | None, repository: str) -> bool:
    """The rules the fast-path regexes cannot express; False sends to the slow path.

    A path component with '.' (like `a_b.c`) is valid, but as a first component followed by
    '/' it is a host, and an invalid one; lengths and IPv6 values are not checked by regexes.
    """
    if registry is None:
        if "/" in repository and _looks_like_host(repository.partition("/")[0]):
            return False
        return len(repository) <= _MAX_NAME_LENGTH
    if registry[0] == "[" and not _is_ipv6(registry[1 : registry.index("]")]):
        return False
    return len(registry) + 1 + len(repository) <= _MAX_NAME_LENGTH


def _check_registry(registry: str) -> None:
    if registry.startswith("["):
        end = registry.find("]")
        if end == -1:
            raise ValueError(
                f"invalid registry host {_quote(registry)}: missing ']' after IPv6 address"
            )
        body, rest = registry[1:end], registry[end + 1 :]
        if not _IPV6_BODY.fullmatch(body) or not _is_ipv6(body):
            raise ValueError(
                f"invalid IPv6 address {_quote(body)} in registry host {_quote(registry)}"
            )
        if rest and not rest.startswith(":"):
            raise ValueError(
                f"invalid registry host {_quote(registry)}: unexpected {_quote(rest)} after ']'"
            )
        port = rest[1:] if rest else None
    else:
        hostname, colon, port_text = registry.partition(":")
        port = port_text if colon else None
        for label in hostname.split("."):
            if not _DOMAIN_LABEL.fullmatch(label):
                what = "empty label" if not label else f"invalid label {_quote(label)}"
                raise ValueError(
                    f"invalid registry host {_quote(registry)}: {what} "
                    f"(labels must match {_DOMAIN_LABEL_SOURCE})"
                )
    if port is not None and not _PORT.fullmatch(port):
        raise ValueError(
            f"invalid registry port {_quote(port)} in {_quote(registry)} (digits only)"
        )


def _path_component_problem(component: str, name: str) -> ValueError:
    """The error for an invalid path component, saying what is wrong with it."""
    where = f" in image name {_quote(name)}" if component != name else ""
    if not component:
        return ValueError(f"empty path component{where}")
    bad_char = _PATH_FORBIDDEN_CHAR.search(component)
    if bad_char:
        problem = f"character {_quote(bad_char.group())} is not allowed"
        if _PATH_COMPONENT.fullmatch(component.lower()):
            problem = "upper-case letters are not allowed"
    else:
        problem = "separators . _ __ - must sit between lowercase letters or digits"
    return ValueError(
        f"invalid path component {_quote(component)}{where}: {problem} "
        f"(allowed: {_PATH_COMPONENT_SOURCE})"
    )


def _check_tag(tag: str) -> None:
    if _TAG.fullmatch(tag):
        return
    if not tag:
        raise ValueError("empty tag after ':'")
    if len(tag) > _MAX_TAG_LENGTH:
        raise ValueError(
            f"tag is {len(tag)} characters long (at most {_MAX_TAG_LENGTH} allowed)"
        )
    raise ValueError(f"invalid tag {_quote(tag)} (allowed: {_TAG_SOURCE})")


def _check_digest(digest: str) -> None:
    if _DIGEST.fullmatch(digest):
        return
    if not digest:
        raise ValueError("empty digest after '@'")
    algorithm, colon, _ = digest.partition(":")
    if colon and algorithm != "sha256" and _DIGEST_ALGORITHM.fullmatch(algorithm):
        raise ValueError(
            f"unsupported digest algorithm {_quote(algorithm)} (only sha256 is accepted)"
        )
    raise ValueError(
        f"invalid digest {_quote(digest)} (expected sha256: followed by 64 lowercase hex digits)"
    )


def _check_reference(text: str) -> tuple[str | None, str, str | None, str | None]:
    """The slow path: splits `text` by hand and checks each part, naming the first bad one."""
    if not text:
        raise ValueError("empty image reference")
    if text.startswith("-"):
        # Would be read as an option by `docker` and friends.
        raise ValueError(f"image reference {_quote(text)} must not start with '-'")
    name_and_tag, at, digest_text = text.partition("@")
    digest = digest_text if at else None
    # The tag colon is the last one after the last '/': earlier colons belong to a host:port.
    last_slash = name_and_tag.rfind("/")
    colon = name_and_tag.rfind(":")
    tag: str | None
    if colon > last_slash:
        name, tag = name_and_tag[:colon], name_and_tag[colon + 1 :]
    else:
        name, tag = name_and_tag, None
    if not name:
        raise ValueError(f"missing image name in {_quote(text)}")
    # Checked first: it also bounds the input of the regexes below.
    if len(name) > _MAX_NAME_LENGTH:
        raise ValueError(
            f"image name is {len(name)} characters long (at most {_MAX_NAME_LENGTH} allowed)"
        )
    registry: str | None = None
    path = name
    first, slash, rest = name.partition("/")
    if slash and _looks_like_host(first):
        registry, path = first, rest
        _check_registry(registry)
    # One regex call for the whole path, and one more to find the bad component if any.
    if not _PATH.fullmatch(path):
        start = _VALID_PATH_PREFIX.match(path + "/").end()  # type: ignore[union-attr]
        raise _path_component_problem(path[start:].partition("/")[0], name)
    if tag is not None:
        _check_tag(tag)
    if digest is not None:
        _check_digest(digest)
    if not _REFERENCE_CHARS.fullmatch(text):  # pragma: no cover - unreachable by construction
        raise ValueError(f"invalid character in image reference {_quote(text)}")
    return registry, path, tag, digest


def _split_reference(text: str) -> tuple[str | None, str, str | None, str | None]:
    """(registry, repository, tag, digest) of `text`; raises ValueError naming the bad part."""
    if len(text) <= _FAST_PATH_MAX_LENGTH:
        match = _REFERENCE.fullmatch(text)
        if match and _fast_name_ok(match["registry"], match["repository"]):
            return match["registry"], match["repository"], match["tag"], match["digest"]
    return _check_reference(text)


@dataclass(frozen=True)
class ImageReference:
    """An image reference as written, split into its parts; valid by construction."""

    registry: str | None
    repository: str
    tag: str | None
    digest: str | None

    def __post_init__(self) -> None:
        # Direct construction must not bypass validation: the value ends up in a Dockerfile.
        parts = (self.registry, self.repository, self.tag, self.digest)
        if not isinstance(self.repository, str) or not all(
            part is None or isinstance(part, str) for part in parts
        ):
            raise ValueError(f"image reference parts must be strings: {parts!r}")
        if _split_reference(str(self)) != parts:
            raise ValueError(f"image reference parts do not round-trip: {parts!r}")

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    @classmethod
    def parse(cls, text: str) -> ImageReference:
        return _build(cls, _split_reference(text))


# --------------------------------------------------------------------------------------------
# Spec entries


def _platform_problem(platform: str) -> str | None:
    if _PLATFORM.fullmatch(platform):
        return None
    expected = "expected <os>/<arch>[/<variant>], e.g. linux/amd64 or linux/arm64/v8"
    if not platform:
        return f"empty --platform value ({expected})"
    components = platform.split("/")
    if not 2 <= len(components) <= 3:
        return f"invalid platform {_quote(platform)}: {len(components)} component(s), {expected}"
    for component in components:
        if not _PLATFORM_COMPONENT.fullmatch(component):
            what = "empty component" if not component else f"invalid component {_quote(component)}"
            return (
                f"invalid platform {_quote(platform)}: {what} "
                f"(allowed: {_PLATFORM_COMPONENT_SOURCE})"
            )
    return f"invalid platform {_quote(platform)}"  # pragma: no cover - the checks above cover it


def _stage_name_problem(stage_name: str) -> str | None:
    if _STAGE_NAME.fullmatch(stage_name):
        return None
    return f"invalid stage name {_quote(stage_name)} after AS (allowed: {_STAGE_NAME_SOURCE})"


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
            problem = _platform_problem(self.platform)
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
            # ':' is not allowed in a tag; "sha256-<hex>" is the usual spelling.
            return self.reference.digest.replace(":", "-", 1)
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
        problem = _platform_problem(platform)
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
            f"unsupported option {_quote(option)} "
            "(only --platform=<os>/<arch>[/<variant>] is allowed)"
        )
    if problems and platform is None:
        # After an unknown option the meaning of the other tokens is a guess: stop here.
        return None, [SpecLineError(path, line_number, p, line) for p in problems]

    reference: ImageReference | None = None
    stage_name: str | None = None
    if not rest:
        problems.append(
            f"missing image reference after --platform={_shorten(platform, _QUOTE_LIMIT)}"
        )
    elif len(rest) == 2 and rest[0].lower() == "as":
        # "as" alone is a valid image name; "AS <name>" is a forgotten reference.
        problems.append("missing image reference before AS")
    else:
        token = rest[0]
        if token.startswith("--"):
            problems.append(
                f"unexpected option {_quote(token)} "
                "(only one --platform=..., before the reference, is allowed)"
            )
        else:
            try:
                # Straight to the checks that name the problem: the regexes already failed.
                reference = _build(ImageReference, _check_reference(token))
            except ValueError as e:
                hint = ""
                if "#" in token:
                    hint = "; '#' starts a comment only at the start of a line or after whitespace"
                problems.append(f"{e}{hint}")
        after = rest[1:]
        if after:
            if after[0].lower() != "as":
                problems.append(
                    f"unexpected {_quote(' '.join(after))} after the image reference "
                    "(only 'AS <name>' may follow it)"
                )
            elif len(after) == 1:
                problems.append(f"{after[0]} must be followed by a stage name")
            elif len(after) > 2:
                problems.append(
                    f"{after[0]} takes exactly one stage name, "
                    f"got extra {_quote(' '.join(after[2:]))}"
                )
            else:
                stage_name = after[1]
                problem = _stage_name_problem(stage_name)
                if problem:
                    problems.append(problem)

    if problems or reference is None:
        return None, [SpecLineError(path, line_number, p, line) for p in problems]
    return _build(SpecEntry, (path, line_number, line, reference, platform, stage_name)), []


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
    if len(code) <= _FAST_PATH_MAX_LENGTH:
        match = _LINE.fullmatch(code)
        if match:
            platform, registry, repository, tag, digest, stage_name = match.group(
                "platform", "registry", "repository", "tag", "digest", "stage_name"
            )
            if _fast_name_ok(registry, repository):
                reference = _build(ImageReference, (registry, repository, tag, digest))
                entry = _build(
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

    Raises SpecError listing the errors of all files, including references listed twice
    (compared as written, platform ignored: one generated image per reference).
    """
    all_entries: list[SpecEntry] = []
    all_errors: list[SpecLineError] = []
    first_seen: dict[str, SpecEntry] = {}
    for path, content in files:
        entries, errors = _parse_content(content, path)
        for entry in entries:
            key = str(entry.reference)
            first = first_seen.get(key)
            if first is not None:
                message = f"duplicate image {_quote(key)}, first listed at {first.location}"
                errors.append(SpecLineError(entry.path, entry.line_number, message, entry.line))
            else:
                first_seen[key] = entry
            all_entries.append(entry)
        # Stable sort: duplicates interleave with the file's other errors in line order.
        all_errors.extend(sorted(errors, key=lambda error: error.line_number))
    if all_errors:
        raise SpecError(all_errors)
    return tuple(all_entries)


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
                    f"AS name {_quote(name)} is the name of the image on {taken.location}; "
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
            message = f"name {_quote(name)} is also used by {first.location}"
            errors.append(SpecLineError(entry.path, entry.line_number, message, entry.line))
        else:
            names[name] = entry
    if errors:
        raise SpecError(errors)
    return names
