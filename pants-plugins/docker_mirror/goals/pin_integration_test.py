"""End to end: a pinned spec line mirrors what was pinned, with the real `./pants publish`, a real
Docker engine and real registries, even after the tag moved upstream; what the mirror serves is
read back from the registry's API."""

from __future__ import annotations

from typing import Callable

from docker_mirror_testutil.images import make_image
from docker_mirror_testutil.pants_repo import PantsRepo
from docker_mirror_testutil.registries import Registry

BUILD = "docker_mirror_images(name='mirror', sources=['images.txt'])\n"


def test_build_method_publishes_the_pinned_digest_after_the_tag_moved(
    docker_engine: None, registries: Callable[[], Registry], pants_repo: PantsRepo
) -> None:
    upstream, mirror = registries(), registries()
    pinned = make_image(f"{upstream.address}/team/app:1.0", "app, as pinned")
    before = make_image(f"{upstream.address}/team/tool:2", "tool, before the move")
    pants_repo.write(
        {
            "src/BUILD": BUILD,
            "src/images.txt": (
                f"{upstream.address}/team/app:1.0@{pinned}  # pinned\n"
                # The control: an unpinned line follows its tag.
                f"{upstream.address}/team/tool:2\n"
            ),
        }
    )
    # Both tags move upstream after the spec file was written.
    moved = make_image(f"{upstream.address}/team/app:1.0", "app, after the move")
    moved_tool = make_image(f"{upstream.address}/team/tool:2", "tool, after the move")
    assert upstream.manifest_digest("team/app", "1.0") == moved != pinned
    assert moved_tool != before

    result = pants_repo.pants("publish", "src::", registry=mirror)

    assert result.returncode == 0, result
    # Pushed under the line's tag, with the pinned image; the unpinned line got the moved one.
    assert mirror.tags("mirror/team/app") == ["1.0"]
    assert mirror.manifest_digest("mirror/team/app", "1.0") == pinned
    assert mirror.manifest_digest("mirror/team/tool", "2") == moved_tool
