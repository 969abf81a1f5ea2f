"""From the images found in Kubernetes manifests to a spec file: each image once, sorted, under a
comment saying where it was found; re-extracting keeps every line whose image is still found."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from docker_mirror.generation import plan_images
from docker_mirror.oci.reference import ImageIdentity, ImageReference
from docker_mirror.spec_files.parser import SpecEntry, SpecError, parse_spec_files
from docker_mirror.oci.untrusted_text import quote, shorten, visible

_UTF8_BOM = b"\xef\xbb\xbf"
# Kinds and names from the manifests end up in spec-file comments: only these characters, so a
# name can never end the comment line or be refused by the spec parser.
_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]", re.ASCII)
_MAX_NAME = 100
_MAX_LOCATIONS = 10
NO_KIND = "(no kind)"
NO_NAME = "(no name)"
_LOCATION = r"(?:[A-Za-z0-9._:?-]+|\(no kind\))/(?:[A-Za-z0-9._:?-]+|\(no name\))"
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


def location(kind: str | None, name: str | None) -> str:
    """`Kind/name`, as it is written in a comment; `(no kind)` and `(no name)` for what an object
    does not have."""
    kind_text = NO_KIND if kind is None else _safe(kind)
    name_text = NO_NAME if name is None else _safe(name)
    return f"{kind_text}/{name_text}"


def _optional_text(value: Any) -> str | None:
    return None if value is None else str(value)


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


def _spelling(first: str, second: str) -> str:
    """Which of two spellings of one image to write: the shorter, then the first sorted."""
    return min(first, second, key=lambda text: (len(text), text))


def found_images(result: bytes) -> dict[str, frozenset[str]]:
    """Each valid image the extractor found -> where (`Kind/name`), one entry per image however
    spelt (see the module docstring); raises `ExtractionError` with every problem: an unreadable
    file, an image that is not a string or not a valid reference (`file:document: Kind/name field
    (line N): ...`)."""
    try:
        files = json.loads(result)["files"]
    except (ValueError, KeyError, TypeError) as e:
        raise ExtractionError([f"the image extractor wrote no readable result ({e})"]) from None
    spellings: dict[ImageIdentity, str] = {}
    places: dict[ImageIdentity, set[str]] = {}
    problems: list[str] = []
    for file in files:
        path = visible(str(file.get("path")))
        if file.get("error"):
            problems.append(f"{path}: {visible(shorten(str(file['error']), 300))}")
            continue
        for image in file.get("images") or ():
            where = location(_optional_text(image.get("kind")), _optional_text(image.get("name")))
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
            identity = reference.identity
            spellings[identity] = _spelling(spellings.get(identity, value), value)
            places.setdefault(identity, set()).add(where)
    if problems:
        raise ExtractionError(problems)
    return {spellings[identity]: frozenset(where) for identity, where in places.items()}


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

    # One image per identity, as `found_images` gives them. A line stands for an image when both
    # are the same image as Docker reads them, but for the digest of a line pinned to what the
    # image's tag serves.
    unmatched = {ImageReference.parse(reference).identity: reference for reference in images}
    matched: dict[int, str] = {}  # line number -> image
    for entry in entries:
        identity = entry.reference.identity
        image = unmatched.pop(identity, None) or unmatched.pop(identity.without_digest(), None)
        if image is not None:
            matched[entry.line_number] = image

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

    added = sorted(unmatched.values())
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
