"""End to end: the real `./pants package` and `./pants publish` mirror multi-platform images with
`method="copy"` between two real registries, with the Docker engine unreachable throughout:
digests and platforms kept, a missing image failing alone, and a second run copying nothing."""

from __future__ import annotations

import json
from typing import Callable

from docker_mirror.testutil.images import push_oci_image
from docker_mirror.testutil.machine import require_skopeo
from docker_mirror.testutil.pants_repo import PantsRepo
from docker_mirror.testutil.registries import Registry, requests_for

BUILD = "docker_mirror_images(name='mirror', sources=['images.txt'], method='copy')\n"
# Copy mode must never need a Docker engine: make any use of one fail.
NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


def test_copy_keeps_digests_and_platforms_isolates_failures_and_skips_what_is_there(
    registries: Callable[..., Registry], pants_repo: PantsRepo
) -> None:
    require_skopeo()
    upstream, mirror = registries(), registries()
    multi = push_oci_image(f"{upstream.address}/team/multi:1.0", "multi")
    tool = push_oci_image(
        f"{upstream.address}/library/tool:2", "tool", "linux/amd64", "linux/arm64", "linux/arm/v7"
    )
    arm64 = multi.manifests["linux/arm64"]
    present = (
        f"{upstream.address}/team/multi:1.0\n"
        f"--platform=linux/arm64 {upstream.address}/team/multi@{multi.index} AS multi-arm\n"
        f"{upstream.address}/library/tool:2\n"
    )
    pants_repo.write(
        {
            "src/BUILD": BUILD,
            "src/images.txt": present + f"{upstream.address}/team/missing:1\n",
        }
    )

    # First run: package (records under dist/) and publish, in one Pants run.
    first = pants_repo.pants("package", "publish", "src::", registry=mirror, env=NO_DOCKER)

    # The missing image fails, alone, naming image and registry; the run ends non-zero.
    assert first.returncode != 0, first
    summary = first.stderr
    assert (
        f"✕ {mirror.address}/mirror/team/missing:1 failed for source "
        f"{upstream.address}/team/missing:1 at registry {upstream.address}: not found"
    ) in summary, first
    assert "Traceback" not in first.stderr and "Traceback" not in first.stdout, first
    for published in (
        f"{mirror.address}/mirror/team/multi:1.0",
        f"{mirror.address}/mirror/team/multi:sha256-{multi.index.split(':')[1]}",
        f"{mirror.address}/mirror/library/tool:2",
    ):
        assert f"✓ {published} published to @mirror (copied from " in summary, first
    assert "3 platforms: linux/amd64, linux/arm64, linux/arm/v7" in summary, first

    # The destination serves the source's index digest, and every platform's manifest.
    assert mirror.manifest_digest("mirror/team/multi", "1.0") == multi.index
    for digest in multi.manifests.values():
        assert mirror.manifest_digest("mirror/team/multi", digest) == digest
    assert mirror.manifest_digest("mirror/library/tool", "2") == tool.index
    for digest in tool.manifests.values():
        assert mirror.manifest_digest("mirror/library/tool", digest) == digest
    # The --platform line: just that platform's manifest, under its upstream digest.
    assert (
        mirror.manifest_digest("mirror/team/multi", f"sha256-{multi.index.split(':')[1]}") == arm64
    )
    assert "mirror/team/missing" not in mirror.repositories()

    # `pants package` wrote what it resolved.
    record = json.loads(
        (
            pants_repo.root
            / "dist"
            / "src"
            / upstream.address.replace(".", "_").replace(":", "_")
            / "team"
            / "multi.docker-mirror.json"
        ).read_text()
    )
    assert record["source"]["digest"] == multi.index
    assert record["source"]["media_type"] == "application/vnd.oci.image.index.v1+json"
    assert record["source"]["platforms"] == ["linux/amd64", "linux/arm64"]
    assert [d["reference"] for d in record["destinations"]] == [
        f"{mirror.address}/mirror/team/multi:1.0"
    ]
    arm_record = json.loads(
        (pants_repo.root / "dist" / "src" / "multi-arm.docker-mirror.json").read_text()
    )
    assert (
        arm_record["source"]["digest"] == arm64
        and arm_record["source"]["index_digest"] == multi.index
    )

    # Second run, the missing line gone: everything is up to date and nothing is copied.
    pants_repo.write({"src/images.txt": present})
    seen_upstream, seen_mirror = len(upstream.access_log()), len(mirror.access_log())
    second = pants_repo.pants("publish", "src::", registry=mirror, env=NO_DOCKER)

    assert second.returncode == 0, second
    results = [line for line in second.stderr.splitlines() if line.startswith(("✓", "✕", "-"))]
    assert len(results) == 3, second
    assert all(
        " skipped (up to date: @mirror already serves sha256:" in line for line in results
    ), second
    # The reads this run must make are there: each source, and each destination tag.
    upstream_requests = upstream.settled_access_log()[seen_upstream:]
    mirror_requests = mirror.settled_access_log()[seen_mirror:]
    pinned_tag = f"sha256-{multi.index.split(':')[1]}"
    for path in (
        "/v2/team/multi/manifests/1.0",
        f"/v2/team/multi/manifests/{multi.index}",
        "/v2/library/tool/manifests/2",
    ):
        assert requests_for(upstream_requests, "GET", path), (path, upstream_requests)
    for path in (
        "/v2/mirror/team/multi/manifests/1.0",
        f"/v2/mirror/team/multi/manifests/{pinned_tag}",
        "/v2/mirror/library/tool/manifests/2",
    ):
        assert requests_for(mirror_requests, "GET", path), (path, mirror_requests)
    # Once the logs have settled: no blob, and nothing but reads.
    new_requests = upstream_requests + mirror_requests
    assert not [
        line
        for line in new_requests
        if "/blobs/" in line or not line.split('"')[1].startswith(("GET ", "HEAD "))
    ], new_requests
