"""End to end: the real `./pants publish` with `platforms` mirrors a filtered image index between
real registries: the platforms left out are absent at the destination (manifest and layers), the
kept ones keep their digests and their own signatures, the record and the summary name both
digests, a re-run writes nothing, and `require_signature` verifies the source's index.

Also the evidence for a filtered index rather than a "sparse" one (the source's index as is,
with the left-out manifests absent): `docker-registry` 2.8 refuses a sparse index."""

from __future__ import annotations

import json
import urllib.error
from typing import Callable

import pytest

from docker_mirror_testutil import cosign
from docker_mirror_testutil.images import push_oci_image
from docker_mirror_testutil.machine import require_skopeo
from docker_mirror_testutil.oci import digest_tag
from docker_mirror_testutil.pants_repo import PantsRepo
from docker_mirror_testutil.registries import Registry

THREE = ("linux/amd64", "linux/arm64", "linux/s390x")
BUILD = (
    "docker_mirror_images(name='mirror', sources=['images.txt'], method='copy', "
    "platforms=['linux/amd64', 'linux/arm64']{extra})\n"
)


def layers(registry: Registry, repository: str, digest: str) -> list[str]:
    body, _ = registry.manifest(repository, digest)
    return [layer["digest"] for layer in json.loads(body)["layers"]]


def has_blob(registry: Registry, repository: str, digest: str) -> bool:
    try:
        registry.blob(repository, digest)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return False
        raise
    return True


def test_a_subset_of_platforms_is_mirrored_as_a_filtered_index_with_each_kept_platforms_signature(
    registries: Callable[..., Registry], pants_repo: PantsRepo
) -> None:
    require_skopeo()
    upstream, mirror = registries(), registries()
    key = cosign.generate_key()
    image = push_oci_image(f"{upstream.address}/team/app:1", "three platforms", *THREE)
    amd64, arm64, s390x = (image.manifests[p] for p in THREE)
    arm64_signature = cosign.sign(upstream, "team/app", arm64, key)
    s390x_signature = cosign.sign(upstream, "team/app", s390x, key)
    pants_repo.write({"src/BUILD": BUILD.format(extra=""), "src/images.txt": f"{upstream.address}/team/app:1\n"})

    first = pants_repo.pants("publish", "src::", registry=mirror, daemon=True)
    assert first.returncode == 0, first
    filtered = mirror.manifest_digest("mirror/team/app", "1")
    assert filtered is not None and filtered != image.index
    assert (
        f"✓ {mirror.address}/mirror/team/app:1 published to @mirror (copied from "
        f"{upstream.address}/team/app:1, {filtered[:19]}, 2 of 3 platforms: linux/amd64, linux/arm64 "
        f"(filtered from the source's index {image.index[:19]}, whose own signatures do not name "
        "this digest); with 1 signature)"
    ) in first.stderr, first

    # The destination's index lists the two platforms, under their upstream digests, and the
    # third is absent, manifest and layers; so is its signature.
    served = json.loads(mirror.manifest("mirror/team/app", "1")[0])
    assert [entry["digest"] for entry in served["manifests"]] == [amd64, arm64]
    assert mirror.manifest_digest("mirror/team/app", amd64) == amd64
    assert mirror.manifest_digest("mirror/team/app", arm64) == arm64
    assert mirror.manifest_digest("mirror/team/app", s390x) is None
    assert all(has_blob(mirror, "mirror/team/app", layer) for layer in layers(upstream, "team/app", arm64))
    assert not any(has_blob(mirror, "mirror/team/app", layer) for layer in layers(upstream, "team/app", s390x))
    assert mirror.manifest_digest("mirror/team/app", digest_tag(arm64, "sig")) == arm64_signature
    assert mirror.manifest_digest("mirror/team/app", digest_tag(s390x, "sig")) is None
    assert s390x_signature != arm64_signature
    cosign.verify_signature(mirror, "mirror/team/app", arm64, cosign.public_key_pem(key))

    # The record names both digests, and what was asked.
    package = pants_repo.pants("package", "src::", registry=mirror, daemon=True)
    assert package.returncode == 0, package
    (record_path,) = (pants_repo.root / "dist").rglob("app.docker-mirror.json")
    record = json.loads(record_path.read_text())
    assert record["source"]["digest"] == filtered
    assert record["source"]["index_digest"] == image.index
    assert record["source"]["platforms"] == ["linux/amd64", "linux/arm64"]
    assert record["source"]["platforms_asked"] == ["linux/amd64", "linux/arm64"]
    assert record["source"]["pinned"] == f"{upstream.address}/team/app@{image.index}"

    # A re-run: up to date, nothing written. The source is asked for its index (the filtered
    # one is made from its body), its tag list, and the kept platform's `.sig` tag by `HEAD`.
    before, before_upstream = len(mirror.settled_access_log()), len(upstream.settled_access_log())
    again = pants_repo.pants("publish", "src::", registry=mirror, daemon=True)
    assert again.returncode == 0, again
    assert (
        f"- {mirror.address}/mirror/team/app:1 skipped (up to date: @mirror already serves {filtered[:19]}, "
        f"the source's index {image.index[:19]} filtered to linux/amd64, linux/arm64)"
    ) in again.stderr, again
    assert not [line for line in mirror.settled_access_log()[before:] if '"PUT ' in line or '"POST ' in line]
    asked = [line.split('"')[1] for line in upstream.settled_access_log()[before_upstream:] if '"GET /v2/' in line or '"HEAD /v2/' in line]
    # (and once per registry and run, the referrers API, for a kept platform: answered 404)
    learned = [request for request in asked if "/referrers/" in request]
    assert len(learned) == 1 and learned[0].split()[1].rsplit("/", 1)[1] in (amd64, arm64), asked
    assert sorted(set(asked) - set(learned)) == [
        "GET /v2/team/app/manifests/1 HTTP/1.1",
        "GET /v2/team/app/tags/list?n=1000 HTTP/1.1",
        f"HEAD /v2/team/app/manifests/{digest_tag(arm64, 'sig')} HTTP/1.1",
    ] and len(asked) == 4, asked


def test_require_signature_with_a_subset_verifies_the_source_index(
    registries: Callable[..., Registry], pants_repo: PantsRepo
) -> None:
    require_skopeo()
    upstream, mirror = registries(), registries()
    key = cosign.generate_key()
    signed = push_oci_image(f"{upstream.address}/team/signed:1", "signed", *THREE)
    cosign.sign(upstream, "team/signed", signed.index, key)
    # Only a platform's manifest is signed: the index the subset is made from is not.
    platform_only = push_oci_image(f"{upstream.address}/team/platform-only:1", "platform only", *THREE)
    cosign.sign(upstream, "team/platform-only", platform_only.manifests["linux/amd64"], key)
    pants_repo.write(
        {
            "keys/cosign.pub": cosign.public_key_pem(key).decode(),
            "src/BUILD": BUILD.format(extra=", require_signature=['//keys/cosign.pub']"),
            "src/images.txt": f"{upstream.address}/team/signed:1\n{upstream.address}/team/platform-only:1\n",
        }
    )
    result = pants_repo.pants("publish", "src::", registry=mirror, daemon=True)
    assert result.returncode != 0, result
    assert f"✓ {mirror.address}/mirror/team/signed:1 published to @mirror" in result.stderr, result
    assert "signature verified by keys/cosign.pub" in result.stderr, result
    assert (
        f"✕ {mirror.address}/mirror/team/platform-only:1 failed for `require_signature`: no cosign signature of "
        f"{platform_only.index}"
    ) in result.stderr, result
    assert mirror.manifest_digest("mirror/team/platform-only", "1") is None


def test_docker_registry_refuses_a_sparse_index(registries: Callable[..., Registry]) -> None:
    """Why the destination gets a filtered index: the source's index pushed as it is, without
    the manifest of one of its platforms, is refused (`MANIFEST_BLOB_UNKNOWN`)."""
    require_skopeo()
    upstream, mirror = registries(), registries()
    image = push_oci_image(f"{upstream.address}/team/app:1", "sparse", *THREE)
    body, media_type = upstream.manifest("team/app", image.index)
    for platform in THREE[:2]:
        digest = image.manifests[platform]
        for layer in [json.loads(upstream.manifest("team/app", digest)[0])["config"]["digest"], *layers(upstream, "team/app", digest)]:
            mirror.put_blob("mirror/team/app", upstream.blob("team/app", layer))
        mirror.put_manifest_by_digest("mirror/team/app", *upstream.manifest("team/app", digest))
    with pytest.raises(urllib.error.HTTPError) as refused:
        mirror.put_manifest_by_digest("mirror/team/app", body, media_type)
    assert refused.value.code == 400
    assert b"MANIFEST_BLOB_UNKNOWN" in refused.value.read()
