"""Rewriting the references of some spec lines in place, every other byte of the file kept."""

from __future__ import annotations

from typing import Mapping

from docker_mirror.oci.reference import ImageReference
from docker_mirror.spec_files.parser import SpecEntry, parse_spec

_UTF8_BOM = b"\xef\xbb\xbf"
_BLANKS = " \t"
_PLATFORM_OPTION = "--platform="


def reference_span(line: str) -> tuple[int, int]:
    """Where the image reference is in a line that `spec` accepted (without its line ending):
    after the leading blanks and the `--platform=` option, up to the next blank or the end.

    A reference contains no blank and no `#` after a blank, so its end is the first blank:
    what follows (`AS <name>`, a comment) is left alone.
    """
    start = len(line) - len(line.lstrip(_BLANKS))
    if line.startswith(_PLATFORM_OPTION, start):
        while start < len(line) and line[start] not in _BLANKS:
            start += 1
        while start < len(line) and line[start] in _BLANKS:
            start += 1
    end = start
    while end < len(line) and line[end] not in _BLANKS:
        end += 1
    return start, end


def rewrite_references(content: bytes, path: str, references: Mapping[int, str]) -> bytes:
    """`content` with the image reference of each line number in `references` replaced by the
    given reference, and nothing else changed.

    Raises `SpecError` if `content` is not a valid spec file, and `ValueError` if a line number
    has no image or a new reference is not a valid one.
    """
    entries = {entry.line_number: entry for entry in parse_spec(content, path)}
    if not references:
        return content
    bom = _UTF8_BOM if content.startswith(_UTF8_BOM) else b""
    lines = content[len(bom) :].decode("utf-8").split("\n")
    for line_number, reference in sorted(references.items()):
        entry = entries.get(line_number)
        if entry is None:
            raise ValueError(f"{path}:{line_number}: no image on this line to rewrite")
        lines[line_number - 1] = _rewritten_line(lines[line_number - 1], entry, reference)
    return bom + "\n".join(lines).encode("utf-8")


def _rewritten_line(raw: str, entry: SpecEntry, reference: str) -> str:
    # Checked here as well as by the caller: the value lands verbatim in a Dockerfile `FROM`.
    if str(ImageReference.parse(reference)) != reference:  # pragma: no cover - parse round-trips
        raise ValueError(f"{entry.location}: not a canonical image reference: {reference!r}")
    # The parser removed exactly one CR before the line ending; keep it.
    cr = "\r" if raw.endswith("\r") else ""
    body = raw[: len(raw) - len(cr)]
    start, end = reference_span(body)
    written = body[start:end]
    if written != str(entry.reference):  # pragma: no cover - the grammar makes this impossible
        raise ValueError(f"{entry.location}: found {written!r} where the reference should be")
    return f"{body[:start]}{reference}{body[end:]}{cr}"
