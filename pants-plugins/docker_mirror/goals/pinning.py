"""What `docker-mirror-pin` does to one spec file, in its three modes (pin, update, check)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from docker_mirror.oci.media_types import DIGEST
from docker_mirror.oci.reference import ImageReference
from docker_mirror.spec_files.parser import SpecEntry, SpecError, SpecLineError, parse_spec
from docker_mirror.spec_files.rewrite import rewrite_references
from docker_mirror.oci.untrusted_text import quote

PIN = "pin"
UPDATE = "update"
CHECK = "check"



def short_digest(digest: str) -> str:
    """`sha256:` and the first 12 hex digits, with `…` when that is not all of it."""
    short = digest[: len("sha256:") + 12]
    return short if short == digest else f"{short}…"


@dataclass(frozen=True)
class Served:
    """What a tag serves now, as the registry answered: its digest, or why there is none."""

    digest: str | None = None
    problem: str | None = None


def tag_reference(reference: ImageReference) -> str:
    """`name:tag` (`name:latest` without a tag): what a pin follows, digest left out, spelt as
    Docker prints it (`nginx:1.25` for `docker.io/library/nginx:1.25`), so that every spelling
    of one image is resolved once, and alike (`ImageIdentity`)."""
    return reference.identity.without_digest().familiar


def reference_to_resolve(entry: SpecEntry, mode: str) -> str | None:
    """The `name:tag` whose digest `mode` needs for `entry`, or None when it needs none."""
    reference = entry.reference
    if reference.digest is None:
        return tag_reference(reference)
    if reference.tag is None or mode == PIN:
        return None
    return tag_reference(reference)


def references_to_resolve(entries: Iterable[SpecEntry], mode: str) -> frozenset[str]:
    return frozenset(
        reference
        for reference in (reference_to_resolve(entry, mode) for entry in entries)
        if reference is not None
    )


@dataclass(frozen=True)
class PinChange:
    """One line whose digest changes (`old` is None for a line that was unpinned)."""

    path: str
    line_number: int
    tag_reference: str
    old: str | None
    new: str

    def __str__(self) -> str:
        old = short_digest(self.old) if self.old else "(unpinned)"
        return f"{self.path}:{self.line_number}: {self.tag_reference} {old} -> {short_digest(self.new)}"


@dataclass(frozen=True)
class FilePins:
    """The outcome for one spec file: its new content (equal to the old one in `check` mode or
    when no digest changed), the changed lines, and the problems, compiler-style."""

    path: str
    content: bytes
    changed: bool
    changes: tuple[PinChange, ...]
    problems: tuple[SpecLineError, ...]
    # Lines whose pin is current (`check`), or that were kept or pinned without a problem.
    lines_ok: int


def plan_file(path: str, content: bytes, served: Mapping[str, Served], mode: str) -> FilePins:
    """Pins, updates or checks the lines of one spec file against what the tags serve.

    `served` answers for every reference `references_to_resolve` gave for this file; a line
    whose tag cannot be resolved is a problem, and the file's other lines are still pinned.
    """
    try:
        entries = parse_spec(content, path)
    except SpecError as e:
        return FilePins(path, content, False, (), e.errors, 0)
    rewrites: dict[int, str] = {}
    changes: list[PinChange] = []
    problems: list[SpecLineError] = []
    lines_ok = 0
    for entry in entries:
        wanted = reference_to_resolve(entry, mode)
        if wanted is None:
            lines_ok += 1
            continue
        current = entry.reference.digest
        answer = served.get(wanted) or Served(problem=f"cannot resolve {wanted}: it was not read")
        problem = answer.problem
        if problem is None and (answer.digest is None or not DIGEST.fullmatch(answer.digest)):
            problem = (
                f"cannot resolve {wanted}: the registry answered "
                f"{quote(answer.digest or '')}, not a sha256 digest"
            )
        if problem is not None:
            problems.append(SpecLineError(path, entry.line_number, problem, entry.line))
            continue
        assert answer.digest is not None
        if answer.digest == current:
            lines_ok += 1
            continue
        if mode == CHECK:
            problems.append(
                SpecLineError(
                    path,
                    entry.line_number,
                    (
                        f"unpinned: the tag serves {short_digest(answer.digest)}"
                        if current is None
                        else f"stale: the tag now serves {short_digest(answer.digest)}"
                    ),
                    entry.line,
                )
            )
            continue
        reference = entry.reference
        pinned = ImageReference(
            reference.registry, reference.repository, reference.tag or "latest", answer.digest
        )
        rewrites[entry.line_number] = str(pinned)
        changes.append(PinChange(path, entry.line_number, wanted, current, answer.digest))
    new_content = rewrite_references(content, path, rewrites) if rewrites else content
    return FilePins(
        path, new_content, new_content != content, tuple(changes), tuple(problems), lines_ok
    )
