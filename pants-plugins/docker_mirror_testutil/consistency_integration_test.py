"""`assert_destination_consistent` against a real registry: it must catch what it is for (a
missing blob, a tag overwritten with something else, a tag that vanished)."""

from __future__ import annotations

from typing import Callable

import pytest
from docker_mirror_testutil.consistency import BUILT, assert_destination_consistent
from docker_mirror_testutil.pushes import push_image
from docker_mirror_testutil.registries import Registry


def test_it_passes_a_correct_destination_and_catches_each_kind_of_damage(
    registries: Callable[..., Registry],
) -> None:
    registry = registries()
    mine = push_image(registry.address, "mirror/app", "1")
    theirs = push_image(registry.address, "mirror/app", "old", "theirs")
    sources = {("mirror/app", "1"): mine}
    before = {("mirror/app", "old"): theirs}
    assert_destination_consistent(registry, sources, before, must_exist=(("mirror/app", "1"),))
    assert_destination_consistent(registry, {("mirror/app", "1"): BUILT}, before)

    # A tag serving neither the source's digest nor what it served before.
    with pytest.raises(AssertionError, match="neither the source's"):
        assert_destination_consistent(registry, {("mirror/app", "1"): theirs}, before)
    # A pre-existing tag changed, or gone.
    with pytest.raises(AssertionError, match="mirror/app:old serves"):
        assert_destination_consistent(registry, sources, {("mirror/app", "old"): mine})
    with pytest.raises(AssertionError, match="now gone"):
        assert_destination_consistent(registry, sources, {**before, ("mirror/app", "2"): mine})
    # A tag that must exist and does not.
    with pytest.raises(AssertionError, match="serves None"):
        assert_destination_consistent(
            registry, {**sources, ("mirror/app", "3"): mine}, before,
            must_exist=(("mirror/app", "3"),),
        )  # fmt: skip
    # A blob gone from storage (as after an interrupted push that still wrote a tag).
    data = registry.state_dir / "data"
    blobs = [p for p in data.rglob("data") if "blobs" in p.parts and p.is_file()]
    removed = [p for p in blobs if p.read_bytes() == b"layer of mirror/app:1\n"]
    assert removed, blobs
    removed[0].unlink()
    with pytest.raises(AssertionError, match="missing or corrupt"):
        assert_destination_consistent(registry, sources, before)
