"""Where the key files of `require_signature` are, from the paths a BUILD file gives: read from
the BUILD file's directory, `//` from the build root, an ambiguous path refused. Pure: the field
checks a path as it is written, the rule resolves it against the files that exist."""

from __future__ import annotations

import posixpath
from typing import Collection, Sequence

BUILD_ROOT = "//"
HOW_PATHS_READ = (
    "a path is read from the BUILD file's directory, like `sources`; `//keys/cosign.pub` "
    "starts at the build root"
)


def _in_repository(joined: str, path: str) -> str:
    normal = posixpath.normpath(joined)
    if normal in (".", "..") or normal.startswith("../"):
        raise ValueError(f"{path!r} is not a file in the repository")
    return normal


def key_path_candidates(path: str, build_file_dir: str) -> tuple[str, ...]:
    """The files (from the build root) that `path`, written in a BUILD file in
    `build_file_dir`, may name, the BUILD file's first. Raises ValueError for a path that is
    not in the repository."""
    if path.startswith(BUILD_ROOT):
        return (_in_repository(path[len(BUILD_ROOT) :], path),)
    if path.startswith(("/", "~")):
        raise ValueError(
            f"{path!r} is not in the repository: give a path from this BUILD file's directory, "
            f"or from the build root as `//path/to/cosign.pub`"
        )
    local = _in_repository(posixpath.join(build_file_dir, path), path)
    if path.startswith(("./", "../")) or path in (".", ".."):
        return (local,)
    try:
        from_root = _in_repository(path, path)
    except ValueError:
        return (local,)
    return (local,) if from_root == local else (local, from_root)


def resolve_key_paths(
    paths: Sequence[str], build_file_dir: str, existing: Collection[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(each path's file from the build root, what is wrong with those that name none or two),
    given the candidates that `existing` holds."""
    resolved: list[str] = []
    problems: list[str] = []
    for path in paths:
        candidates = key_path_candidates(path, build_file_dir)
        found = [candidate for candidate in candidates if candidate in existing]
        if len(found) == 1:
            resolved.append(found[0])
        elif not found:
            looked = " or ".join(candidates)
            problems.append(f"`{path}`: no such file ({looked}); {HOW_PATHS_READ}")
        else:
            local, from_root = found
            problems.append(
                f"`{path}` names both {local} (from the BUILD file) and {from_root} (from the "
                f"build root): write `./{path}` for the first, or `//{path}` for the second"
            )
    return tuple(resolved), tuple(problems)
