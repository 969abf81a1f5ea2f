"""End to end: the real `./pants publish` with `method="copy"` mirrors a multi-platform image
whose index holds BuildKit's attestation manifests (`unknown/unknown` entries, as `docker buildx
build --provenance --sbom` pushes them), and keeps them: the destination serves the same index
digest, and every attestation manifest and blob, read back through its registry API."""

from __future__ import annotations

import json
from typing import Callable

from docker_mirror_testutil.images import push_oci_image
from docker_mirror_testutil.machine import require_skopeo
from docker_mirror_testutil.pants_repo import COPY_BUILD, NO_DOCKER, PantsRepo
from docker_mirror_testutil.registries import Registry
from docker_mirror.oci.manifests import digest_of

UNKNOWN_PLATFORM = {"architecture": "unknown", "os": "unknown"}


def test_copy_keeps_the_attestation_manifests_of_an_index(
    registries: Callable[..., Registry], pants_repo: PantsRepo
) -> None:
    require_skopeo()
    upstream, mirror = registries(), registries()
    image = push_oci_image(
        f"{upstream.address}/team/attested:1.0", "attested", "linux/amd64", "linux/arm64",
        attestations=True,
    )
    # The source is what the test means it to be: an index with an attestation manifest per
    # platform, after the platforms, annotated as BuildKit annotates them.
    source_index, source_type = upstream.manifest("team/attested", "1.0")
    entries = json.loads(source_index)["manifests"]
    attestations = [entry for entry in entries if entry["platform"] == UNKNOWN_PLATFORM]
    assert [entry["digest"] for entry in entries] == [
        *image.manifests.values(), *image.attestations.values()
    ]
    assert [entry["annotations"] for entry in attestations] == [
        {"vnd.docker.reference.digest": image.manifests[platform],
         "vnd.docker.reference.type": "attestation-manifest"}
        for platform in image.attestations
    ]
    pants_repo.write(
        {"src/BUILD": COPY_BUILD, "src/images.txt": f"{upstream.address}/team/attested:1.0\n"}
    )

    result = pants_repo.pants("publish", "src::", registry=mirror, env=NO_DOCKER)

    assert result.returncode == 0, result
    destination = f"{mirror.address}/mirror/team/attested:1.0"
    assert f"✓ {destination} published to @mirror (copied from " in result.stderr, result
    assert "2 platforms: linux/amd64, linux/arm64" in result.stderr, result
    # The destination serves the source's index, byte for byte, under the tag.
    served_index, served_type = mirror.manifest("mirror/team/attested", "1.0")
    assert digest_of(served_index) == image.index
    assert (served_index, served_type) == (source_index, source_type)
    # Every manifest of the index, attestations included, and every blob each names, read back
    # through the destination's API (each checked against its digest) and equal to the source's.
    for entry in entries:
        served, _ = mirror.manifest("mirror/team/attested", entry["digest"])
        assert digest_of(served) == entry["digest"]
        manifest = json.loads(served)
        for blob in (manifest["config"], *manifest["layers"]):
            assert mirror.blob("mirror/team/attested", blob["digest"]) == upstream.blob(
                "team/attested", blob["digest"]
            )
    # Each attestation manifest holds in-toto statements (provenance and SPDX) about its
    # platform's manifest.
    for platform, digest in image.attestations.items():
        layers = json.loads(mirror.manifest("mirror/team/attested", digest)[0])["layers"]
        assert [layer["annotations"]["in-toto.io/predicate-type"] for layer in layers] == [
            "https://slsa.dev/provenance/v0.2", "https://spdx.dev/Document"
        ]
        for layer in layers:
            assert layer["mediaType"] == "application/vnd.in-toto+json"
            statement = json.loads(mirror.blob("mirror/team/attested", layer["digest"]))
            assert statement["subject"][0]["digest"] == {
                "sha256": image.manifests[platform].split(":")[1]
            }
