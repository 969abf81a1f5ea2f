"""Where the key files of `require_signature` are: read from the BUILD file's directory, `//` from
the build root, an ambiguous path refused."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Collection, Sequence

from docker_mirror.compat import path_globs_contents
from pants.engine.fs import GlobMatchErrorBehavior, PathGlobs
from pants.engine.rules import collect_rules, rule
from pants.engine.target import InvalidFieldException
from pants.util.logging import LogLevel

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


# ---------------------------------------------------------------------------------------------
# Rules


@dataclass(frozen=True)
class SignatureKeysRequest:
    """The `require_signature` paths of `owner` (an address), written in a BUILD file in
    `build_file_dir`."""

    paths: tuple[str, ...]
    build_file_dir: str
    owner: str


@dataclass(frozen=True)
class SignatureKeys:
    """Each key file from the build root, in the order given, and its content."""

    paths: tuple[str, ...]
    contents: tuple[tuple[str, bytes], ...]


@rule(desc="Finding the `require_signature` keys", level=LogLevel.DEBUG)
async def resolve_signature_keys(request: SignatureKeysRequest) -> SignatureKeys:
    candidates = sorted(
        {c for path in request.paths for c in key_path_candidates(path, request.build_file_dir)}
    )
    contents = await path_globs_contents(
        PathGlobs(candidates, glob_match_error_behavior=GlobMatchErrorBehavior.ignore)
    )
    found = {file.path: file.content for file in contents}
    paths, problems = resolve_key_paths(request.paths, request.build_file_dir, found)
    if problems:
        raise InvalidFieldException(
            f"{request.owner}: a `require_signature` key is not found:\n" + "\n".join(problems)
        )
    return SignatureKeys(paths, tuple((path, found[path]) for path in dict.fromkeys(paths)))


def rules():
    return collect_rules()
