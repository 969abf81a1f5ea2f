"""End to end: the real `./pants publish` of a source whose cosign signature tag holds a manifest
whose `subject` is another image, one the destination already serves (mirrored earlier from a
trusted registry). The mirror refuses it, naming it: that image alone fails, neither its tag nor
the forged manifest is written, and the run's other image is published."""

from __future__ import annotations

import json
from typing import Callable

from docker_mirror_testutil.pants_repo import COPY_BUILD, NO_DOCKER, PantsRepo
from docker_mirror_testutil.pushes import push_image
from docker_mirror_testutil.registries import Registry
from docker_mirror.oci.manifests import OCI_MANIFEST, digest_of

EMPTY = b"{}"
SPDX = "application/spdx+json"
LAYER = b'{"spdxVersion":"SPDX-2.3","name":"backdoor-free, honest"}'


def forged_signature(registry: Registry, repository: str, subject: str, trusted: str) -> str:
    """Pushes, under `subject`'s cosign `.sig` tag, a manifest whose `subject` is `trusted`."""
    registry.put_blob(repository, EMPTY)
    registry.put_blob(repository, LAYER)
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": SPDX,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest_of(EMPTY), "size": 2},
            "layers": [{"mediaType": SPDX, "digest": digest_of(LAYER), "size": len(LAYER)}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": trusted, "size": 1},
        }
    ).encode()
    registry.put_manifest(repository, f"sha256-{subject.split(':')[1]}.sig", body, OCI_MANIFEST)
    return digest_of(body)


def test_a_signature_tag_naming_another_image_of_the_destination_fails_its_image_alone(
    registries: Callable[..., Registry], pants_repo: PantsRepo
) -> None:
    upstream, mirror = registries(), registries()
    trusted = push_image(mirror.address, "mirror/team/app", "trusted", "mirrored from a trusted registry")
    subject = push_image(upstream.address, "team/app", "1", "hostile")
    forged = forged_signature(upstream, "team/app", subject, trusted)
    honest = push_image(upstream.address, "team/other", "1", "honest")
    pants_repo.write(
        {"src/BUILD": COPY_BUILD, "src/images.txt": f"{upstream.address}/team/app:1\n{upstream.address}/team/other:1\n"}
    )
    seen = len(mirror.access_log())

    result = pants_repo.pants("publish", "src::", registry=mirror, env=NO_DOCKER)

    assert result.returncode != 0, result
    (failed,) = [line for line in result.stderr.splitlines() if line.startswith("✕")]
    assert failed.startswith(f"✕ {mirror.address}/mirror/team/app:1 "), failed
    assert forged in failed and f"names {trusted} as its subject, not the image being mirrored" in failed, failed
    assert f"✓ {mirror.address}/mirror/team/other:1 published to @mirror (copied from " in result.stderr, result
    assert mirror.manifest_digest("mirror/team/other", "1") == honest
    # Neither the tag nor the forged manifest nor its blobs were written. (The image's own blobs
    # may be: they go at once with the referrers' reads, each checked against its digest, and a
    # next run finds them there.)
    assert mirror.manifest_digest("mirror/team/app", "1") is None
    assert mirror.manifest_digest("mirror/team/app", forged) is None
    log = mirror.settled_access_log()[seen:]
    assert not [line for line in log if '"PUT /v2/mirror/team/app/manifests/' in line], log
    forged_blobs = (digest_of(EMPTY), digest_of(LAYER))
    assert not [line for line in log if "/v2/mirror/team/app/blobs/" in line and any(d in line for d in forged_blobs)
                and '"HEAD ' not in line], log  # fmt: skip
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result
