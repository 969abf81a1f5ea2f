"""From the images found in Kubernetes manifests to a spec file: pure functions, no engine calls.

`docker_mirror.extractor` (a separate program, with PyYAML) finds the `image:` of every
container; this module checks each against the reference grammar, and writes the spec file:
each image once, sorted, under a comment saying where it was found:

    # CronJob/backup, Deployment/web
    busybox:1.36

Re-extracting into an existing spec file keeps that file as it is, except for what the manifests
changed: a line whose image is still found stays byte for byte (its pin, `--platform=`, `AS`
name, spacing and comments included), and only its location comment (a comment line directly
above it in the form written here) is brought up to date; a line whose image is gone is removed
with its location comment; a new image is inserted before the first kept line that sorts after
it, or at the end. A line matches an image when both name the same repository and tag (`latest`
when there is none): a pinned line `nginx:1.25@sha256:...` keeps its digest when the manifests
say `nginx:1.25`. An image that the manifests pin by digest matches only a line with that digest.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from docker_mirror.generation import plan_images
from docker_mirror.image_reference import ImageReference
from docker_mirror.spec import SpecEntry, SpecError, parse_spec_files
from docker_mirror.untrusted_text import quote, shorten, visible

_UTF8_BOM = b"\xef\xbb\xbf"
# Kinds and names from the manifests end up in spec-file comments: only these characters, so a
# name can never end the comment line or be refused by the spec parser.
_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]", re.ASCII)
_MAX_NAME = 100
_MAX_LOCATIONS = 10
_LOCATION = r"[A-Za-z0-9._:?-]+/[A-Za-z0-9._:?-]+"
LOCATION_COMMENT = re.compile(
    rf"# {_LOCATION}(?:, {_LOCATION})*(?: and [0-9]+ more)?[ \t]*", re.ASCII
)
HEADER = (
    "# Container images of Kubernetes manifests, written by `pants docker-mirror-extract`;\n"
    "# pin them with `pants docker-mirror-pin`. Each image is listed once, under where it is used.\n"
)


class ExtractionError(Exception):
    """Problems that stop the extraction: nothing is written. One per line, compiler-style."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


def _safe(text: str) -> str:
    return _UNSAFE.sub("?", text)[:_MAX_NAME] or "?"


def location(kind: str, name: str) -> str:
    """`Kind/name`, as it is written in a comment."""
    return f"{_safe(kind)}/{_safe(name)}"


def location_comment(locations: Iterable[str]) -> str:
    ordered = sorted(set(locations))
    shown = ", ".join(ordered[:_MAX_LOCATIONS])
    more = len(ordered) - _MAX_LOCATIONS
    return f"# {shown}" + (f" and {more} more" if more > 0 else "")


def _describe_value(image: Mapping[str, Any]) -> str:
    kind = image.get("type") or "value"
    text = image.get("text")
    shown = f" {quote(str(text))}" if isinstance(text, str) and text else ""
    article = "an" if kind[:1] in "aeiou" else "a"
    return f"{article} {visible(kind)}{shown}, not a string"


def found_images(result: bytes) -> dict[str, frozenset[str]]:
    """Each valid image the extractor found (as written) -> where (`Kind/name`); raises
    `ExtractionError` with every problem: an unreadable file, an image that is not a string or
    not a valid reference (`file:document: Kind/name field (line N): ...`)."""
    try:
        files = json.loads(result)["files"]
    except (ValueError, KeyError, TypeError) as e:
        raise ExtractionError([f"the image extractor wrote no readable result ({e})"]) from None
    images: dict[str, set[str]] = {}
    problems: list[str] = []
    for file in files:
        path = visible(str(file.get("path")))
        if file.get("error"):
            problems.append(f"{path}: {visible(shorten(str(file['error']), 300))}")
            continue
        for image in file.get("images") or ():
            where = location(str(image.get("kind")), str(image.get("name")))
            line = f" (line {image['line']})" if isinstance(image.get("line"), int) else ""
            at = f"{path}:{image.get('document')}: {where} {visible(str(image.get('field')))}{line}"
            value = image.get("image")
            if not isinstance(value, str):
                problems.append(f"{at}: the image is {_describe_value(image)}")
                continue
            try:
                reference = ImageReference.parse(value)
            except ValueError as e:
                problems.append(f"{at}: {quote(value)} is not a valid image reference: {e}")
                continue
            images.setdefault(str(reference), set()).add(where)
    if problems:
        raise ExtractionError(problems)
    return {reference: frozenset(where) for reference, where in images.items()}


def _follows(reference: ImageReference) -> tuple[str, str | None]:
    """(name, tag) a line follows: `latest` without a tag, none for a digest-only line."""
    tag = reference.tag or ("latest" if reference.digest is None else None)
    return reference.name, tag


def matches(line: ImageReference, image: ImageReference) -> bool:
    """Whether an existing spec line stands for an image found in the manifests."""
    if image.digest is not None:
        return (line.name, line.tag, line.digest) == (image.name, image.tag, image.digest)
    return _follows(line) == _follows(image)


@dataclass(frozen=True)
class SpecUpdate:
    content: bytes
    added: tuple[tuple[str, frozenset[str]], ...] = ()
    # (line number in the old file, reference as written there)
    removed: tuple[tuple[int, str], ...] = ()
    kept: int = 0
    changed: bool = True


def new_spec(images: Mapping[str, frozenset[str]]) -> bytes:
    """A spec file listing `images`, each under its location comment, sorted."""
    body = "".join(
        f"{location_comment(where)}\n{reference}\n" for reference, where in sorted(images.items())
    )
    return (HEADER + "\n" + body).encode()


def update_spec(path: str, existing: bytes, images: Mapping[str, frozenset[str]]) -> SpecUpdate:
    """`existing` (a spec file) brought up to date with `images`; see the module docstring.
    Raises `ExtractionError` if `existing` is not a valid spec file."""
    try:
        entries = parse_spec_files([(path, existing)])
    except SpecError as e:
        raise ExtractionError(
            [f"{path} is not a valid spec file, so it is left as it is:", str(e)]
        ) from None
    bom = _UTF8_BOM if existing.startswith(_UTF8_BOM) else b""
    text = existing[len(bom) :].decode("utf-8")
    lines = text.split("\n")
    final_newline = text.endswith("\n")
    if final_newline:
        lines.pop()
    cr = "\r" if lines and lines[0].endswith("\r") else ""

    found = {reference: ImageReference.parse(reference) for reference in images}
    matched: dict[int, str] = {}  # line number -> image
    unmatched = dict(found)
    for entry in entries:
        image = next((r for r, parsed in unmatched.items() if matches(entry.reference, parsed)), None)
        if image is not None:
            matched[entry.line_number] = image
            del unmatched[image]

    def is_location_comment(index: int) -> bool:
        return index >= 0 and bool(LOCATION_COMMENT.fullmatch(lines[index].rstrip("\r")))

    by_line: dict[int, SpecEntry] = {entry.line_number: entry for entry in entries}
    removed: list[tuple[int, str]] = []
    # Each output block: (sort key or None, lines); a kept image's block starts at its location
    # comment, so that a new image inserted before it goes above the comment.
    out: list[tuple[str | None, list[str]]] = []
    index = 0
    while index < len(lines):
        number = index + 1
        comment_of_next = is_location_comment(index) and (number + 1) in by_line
        entry_number = number + 1 if comment_of_next else number
        if entry_number not in by_line:
            out.append((None, [lines[index]]))
            index += 1
            continue
        entry = by_line[entry_number]
        block_end = entry_number  # the entry's index + 1
        if entry_number not in matched:
            removed.append((entry_number, str(entry.reference)))
        else:
            image = matched[entry_number]
            block = [lines[entry_number - 1]]
            if comment_of_next:
                ending = "\r" if lines[index].endswith("\r") else ""
                block.insert(0, location_comment(images[image]) + ending)
            out.append((image, block))
        index = block_end

    added = sorted(unmatched)
    for image in added:
        block = [location_comment(images[image]) + cr, image + cr]
        position = next(
            (i for i, (key, _) in enumerate(out) if key is not None and key > image), len(out)
        )
        # Above the comment lines that sit directly over the image found: they are about it.
        while position < len(out) and position > 0 and _is_comment(out[position - 1]):
            position -= 1
        out.insert(position, (image, block))
    new_lines = [line for _, block in out for line in block]
    appended = bool(added) and out[-1][0] in added
    content = "\n".join(new_lines)
    if new_lines and (final_newline or appended):
        content += "\n"
    new_content = bom + content.encode("utf-8")
    return SpecUpdate(
        new_content,
        added=tuple((image, images[image]) for image in added),
        removed=tuple(removed),
        kept=len(matched),
        changed=new_content != existing,
    )


def _is_comment(block: tuple[str | None, list[str]]) -> bool:
    key, lines = block
    return key is None and lines[0].lstrip(" \t").startswith("#")


def check_generates(path: str, content: bytes) -> None:
    """Raises `ExtractionError` if `content` would not make images as one generator's only spec
    file (the same reference twice, or names that clash)."""
    try:
        plan_images([(path, content)])
    except SpecError as e:
        raise ExtractionError(
            [f"the images found would not make a valid spec file {path}:", str(e)]
        ) from None
