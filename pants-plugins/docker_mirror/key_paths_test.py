"""Which file a `require_signature` path names: pure functions."""

from __future__ import annotations

import pytest
from docker_mirror.key_paths import key_path_candidates, resolve_key_paths


@pytest.mark.parametrize(
    "path, build_file_dir, candidates",
    [
        ("cosign.pub", "src", ("src/cosign.pub", "cosign.pub")),
        ("keys/cosign.pub", "src/team", ("src/team/keys/cosign.pub", "keys/cosign.pub")),
        ("./cosign.pub", "src", ("src/cosign.pub",)),
        ("../keys/cosign.pub", "src/team", ("src/keys/cosign.pub",)),
        ("//keys/cosign.pub", "src", ("keys/cosign.pub",)),
        # A BUILD file at the build root: one place only.
        ("keys/cosign.pub", "", ("keys/cosign.pub",)),
        # A plain path that climbs out from the build root can only mean the BUILD file's.
        ("../cosign.pub", "src/team", ("src/cosign.pub",)),
    ],
)
def test_candidates(path: str, build_file_dir: str, candidates: tuple[str, ...]) -> None:
    assert key_path_candidates(path, build_file_dir) == candidates


@pytest.mark.parametrize("path", ["/etc/cosign.pub", "~/cosign.pub", "../../x.pub", "//../x.pub", "//", ".."])
def test_paths_outside_the_repository_are_refused(path: str) -> None:
    with pytest.raises(ValueError):
        key_path_candidates(path, "src")


def test_resolution_takes_the_one_file_that_exists_and_names_the_rest() -> None:
    resolved, problems = resolve_key_paths(
        ["cosign.pub", "keys/root.pub", "both.pub", "gone.pub"],
        "src",
        {"src/cosign.pub", "keys/root.pub", "src/both.pub", "both.pub"},
    )
    assert resolved == ("src/cosign.pub", "keys/root.pub")
    assert problems == (
        "`both.pub` names both src/both.pub (from the BUILD file) and both.pub (from the build "
        "root): write `./both.pub` for the first, or `//both.pub` for the second",
        "`gone.pub`: no such file (src/gone.pub or gone.pub); a path is read from the BUILD "
        "file's directory, like `sources`; `//keys/cosign.pub` starts at the build root",
    )
