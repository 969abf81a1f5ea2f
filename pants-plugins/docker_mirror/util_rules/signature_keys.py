"""The rule that reads the key files of `require_signature` (where they are: `key_paths`)."""

from __future__ import annotations

from dataclasses import dataclass

from docker_mirror.compat import path_globs_contents
from docker_mirror.key_paths import key_path_candidates, resolve_key_paths
from pants.engine.fs import GlobMatchErrorBehavior, PathGlobs
from pants.engine.rules import collect_rules, rule
from pants.engine.target import InvalidFieldException
from pants.util.logging import LogLevel


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
