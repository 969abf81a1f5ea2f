"""End to end: two `docker_mirror_images` generators in two directories that would write
different images to the same destination tag are refused by the real `./pants`, naming both
targets and both spec lines, before anything is written; a repository prefix on one of them
resolves it, and the same image listed by two generators is no clash."""

from __future__ import annotations

from typing import Callable

import pytest
from docker_mirror_testutil.images import push_oci_image
from docker_mirror_testutil.machine import require_skopeo
from docker_mirror_testutil.pants_repo import NO_DOCKER, PantsRepo
from docker_mirror_testutil.registries import Registry


def generator(method: str, extra: str = "") -> str:
    return f"docker_mirror_images(name='mirror', method='{method}'{extra})\n"


@pytest.mark.parametrize("method", ["copy", "build"])
def test_two_generators_writing_different_images_to_one_tag_are_refused(
    method: str, registries: Callable[..., Registry], pants_repo: PantsRepo
) -> None:
    require_skopeo()
    upstream_a, upstream_b, mirror = registries(), registries(), registries()
    source_a = f"{upstream_a.address}/library/nginx:1.25"
    source_b = f"{upstream_b.address}/library/nginx:1.25"
    push_oci_image(source_a, "team a's nginx")
    push_oci_image(source_b, "team b's nginx")
    pants_repo.write(
        {
            "team-a/BUILD": generator(method),
            "team-a/images.txt": f"{source_a}\n",
            "team-b/BUILD": generator(method),
            "team-b/images.txt": f"# team b's images\n{source_b}\n",
        }
    )

    result = pants_repo.pants("publish", "::", registry=mirror, env=NO_DOCKER)

    assert result.returncode != 0, result
    output = result.stdout + result.stderr
    destination = f"{mirror.address}/mirror/library/nginx:1.25"
    target_a = f"team-a:mirror#{upstream_a.address.replace(':', '_')}/library/nginx"
    target_b = f"team-b:mirror#{upstream_b.address.replace(':', '_')}/library/nginx"
    assert f"{destination} would get different images from" in output, result
    assert f"team-a/images.txt:1: {target_a} mirrors {source_a}" in output, result
    assert f"team-b/images.txt:2: {target_b} mirrors {source_b}" in output, result
    assert 'repository="<prefix>/{target_repository}"' in output, result
    assert "Traceback" not in output, result
    assert mirror.repositories() == []


def test_a_repository_prefix_resolves_the_clash_and_one_image_in_two_generators_is_none(
    registries: Callable[..., Registry], pants_repo: PantsRepo
) -> None:
    require_skopeo()
    upstream_a, upstream_b, mirror = registries(), registries(), registries()
    source_a = f"{upstream_a.address}/library/nginx:1.25"
    source_b = f"{upstream_b.address}/library/nginx:1.25"
    image_a = push_oci_image(source_a, "team a's nginx")
    image_b = push_oci_image(source_b, "team b's nginx")
    pants_repo.write(
        {
            "team-a/BUILD": generator("copy"),
            "team-a/images.txt": f"{source_a}\n",
            "team-b/BUILD": generator("copy", ", repository='team-b/{target_repository}'"),
            "team-b/images.txt": f"{source_b}\n",
            # The same image as team a's, to the same tag: both write the same digests.
            "team-c/BUILD": generator("copy"),
            "team-c/images.txt": f"{source_a}  AS nginx\n",
        }
    )

    result = pants_repo.pants("publish", "::", registry=mirror, env=NO_DOCKER)

    assert result.returncode == 0, result
    assert mirror.manifest_digest("mirror/library/nginx", "1.25") == image_a.index
    assert mirror.manifest_digest("mirror/team-b/library/nginx", "1.25") == image_b.index
