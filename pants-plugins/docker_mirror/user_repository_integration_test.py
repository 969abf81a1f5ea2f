"""End to end, from a user's side: the wheel, built by the real `./pants package`, installed
through `[GLOBAL].plugins` into a fresh git repository that keeps Pants' defaults (no `[changed]`
section, its own interpreter constraints), run by Pants with none of this repository's launcher
variables, under its own live pantsd as a developer would run it. Copy mode, loopback
registries; digests come from the registries' own API."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest
from docker_mirror.testutil.images import OciImage, push_oci_image
from docker_mirror.testutil.registries import Registry
from docker_mirror.testutil.user_repo import UserRepo, build_wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel-build"))


@pytest.fixture
def user(
    wheel: Path, registries: Callable[..., Registry], tmp_path: Path
) -> Iterator[tuple[UserRepo, Registry]]:
    mirror = registries()
    repo = UserRepo(tmp_path / "repo", wheel, mirror=mirror)
    yield repo, mirror
    repo.stop_daemon()


def overwrite(mirror: Registry, repository: str, tag: str) -> OciImage:
    """Pushes another image to `repository:tag` at the mirror, as a user's push by hand would
    (the same image every time)."""
    other = push_oci_image(f"{mirror.address}/{repository}:{tag}", "user-other", "linux/amd64")
    assert mirror.manifest_digest(repository, tag) == other.index
    return other


def test_every_repair_under_pantsd_copies_and_says_so(
    user: tuple[UserRepo, Registry], registries: Callable[..., Registry]
) -> None:
    """A run that finds the destination tag wrong copies it, in every round under one pantsd,
    even when a round sees exactly what an earlier round saw."""
    repo, mirror = user
    upstream = registries()
    image = push_oci_image(f"{upstream.address}/team/app:1.0", "user-app", "linux/amd64")
    repo.write(
        {
            "images/BUILD": "docker_mirror_images(name='mirror', method='copy')\n",
            "images/images.txt": f"{upstream.address}/team/app:1.0\n",
        }
    )
    destination = f"{mirror.address}/team/app:1.0"
    copied = f"✓ {destination} published to @mirror (copied from {upstream.address}/team/app:1.0"

    first = repo.pants("publish", "images::", daemon=True)
    assert first.returncode == 0, first
    assert copied in first.stderr, first
    assert mirror.manifest_digest("team/app", "1.0") == image.index

    # Overwrite twice, delete twice: rounds 2 and 4 see what rounds 1 and 3 saw.
    for round, damage in enumerate(("overwrite", "overwrite", "delete", "delete"), start=1):
        if damage == "overwrite":
            overwrite(mirror, "team/app", "1.0")
        else:
            mirror.delete_manifest("team/app", image.index)
            assert mirror.manifest_digest("team/app", "1.0") is None
        repaired = repo.pants("publish", "images::", daemon=True)
        assert repaired.returncode == 0, (round, damage, repaired)
        assert copied in repaired.stderr, (round, damage, repaired)
        assert mirror.manifest_digest("team/app", "1.0") == image.index, (round, damage, repaired)

    # And a run with nothing to repair says so, and writes nothing.
    before = len(mirror.access_log())
    untouched = repo.pants("publish", "images::", daemon=True)
    assert untouched.returncode == 0, untouched
    assert f"{destination} skipped (up to date" in untouched.stderr, untouched
    assert not [line for line in mirror.access_log()[before:] if '"PUT ' in line]
    assert len(repo.daemon_pids()) == 1
