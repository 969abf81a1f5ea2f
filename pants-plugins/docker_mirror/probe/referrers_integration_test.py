"""Finding and copying referrers from a hostile source (a scripted server on loopback) into a real
`docker-registry`: whatever the source serves that is not the bytes of its digest, or beyond the
bounds, fails the copy, and nothing it served is written under a tag at the destination."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Callable, Dict, Iterator, Tuple

import pytest

from docker_mirror.probe.mirror_referrers import copy, find
from docker_mirror.oci.media_types import OCI_INDEX, OCI_MANIFEST
from docker_mirror.probe.referrers import MAX_REFERRERS, ReferrersError, digest_tag
from docker_mirror.probe.registry import RegistryError
from docker_mirror_testutil.hostile_registry import HostileServer, Reply, Request
from docker_mirror_testutil.probe_locations import location
from docker_mirror_testutil.registries import Registry, start_registry
from docker_mirror.oci.manifests import digest_of

SUBJECT = "sha256:" + "ab" * 32



@pytest.fixture(scope="module")
def destination(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    registry = start_registry(tmp_path_factory.mktemp("destination"))
    try:
        yield registry
    finally:
        registry.stop()


Content = Dict[str, Tuple[bytes, str]]  # path -> (body, content type)


def serving(content: Content) -> Callable[[Request], Reply]:
    """A source registry that serves `content` by path, with the digest headers a registry sends
    (the digest of the path, which is what it claims, whatever the bytes), and 404 otherwise;
    no referrers API."""

    def handler(request: Request) -> Reply:
        if request.path not in content:
            return Reply(404, [("Content-Type", "application/json")], b'{"errors":[{"code":"NOT_FOUND"}]}')
        body, content_type = content[request.path]
        claimed = request.path.rpartition("/")[2]
        headers = [("Content-Type", content_type)]
        if claimed.startswith("sha256:"):
            headers.append(("Docker-Content-Digest", claimed))
        return Reply(200, headers, body)

    return handler


def signature_manifest(layer: bytes, declared: bytes) -> Tuple[bytes, Content]:
    """A `.sig`-shaped manifest whose layer is declared as `declared`'s digest and size, while
    the source serves `layer` for it."""
    config = b"{}"
    manifest = json.dumps(
        {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(config), "size": 2},
            "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                        "digest": digest_of(declared), "size": len(declared)}],
        }
    ).encode()  # fmt: skip
    content = {
        f"/v2/team/app/manifests/{digest_tag(SUBJECT, 'sig')}": (manifest, OCI_MANIFEST),
        f"/v2/team/app/manifests/{digest_of(manifest)}": (manifest, OCI_MANIFEST),
        f"/v2/team/app/blobs/{digest_of(config)}": (config, "application/octet-stream"),
        f"/v2/team/app/blobs/{digest_of(declared)}": (layer, "application/octet-stream"),
    }
    return manifest, content


def mirror(content: Content, destination: Registry, home: Path) -> None:
    """Finds and copies the referrers of `SUBJECT` from a source serving `content`."""

    async def both() -> None:
        with HostileServer.start(serving(content)) as source_server:
            source = location(source_server.address, "team/app", home)
            target = location(destination.address, "mirror/team/app", home)
            found = await find(source, SUBJECT, [target])
            await copy(source, target, SUBJECT, found.plans[0])

    asyncio.run(both())


@pytest.mark.parametrize(
    "served, message",
    [
        (b"X" * 40, "with other bytes than its digest"),  # same size, other bytes
        (b"X" * 41, "larger than its 40 bytes"),
        (b"X" * 39, "with other bytes than its digest"),
    ],
)
def test_a_blob_that_is_not_its_digest_fails_the_copy_and_nothing_is_tagged(
    served: bytes, message: str, destination: Registry, tmp_path: Path
) -> None:
    declared = b"D" * 40
    _, content = signature_manifest(served, declared)
    with pytest.raises(RegistryError, match=message):
        mirror(content, destination, tmp_path)
    assert digest_tag(SUBJECT, "sig") not in destination.tags("mirror/team/app")


def test_a_manifest_that_is_not_its_digest_fails_the_copy(destination: Registry, tmp_path: Path) -> None:
    manifest, content = signature_manifest(b"D" * 40, b"D" * 40)
    forged = manifest.replace(b'"schemaVersion": 2', b'"schemaVersion":  2')
    content[f"/v2/team/app/manifests/{digest_of(manifest)}"] = (forged, OCI_MANIFEST)
    with pytest.raises(RegistryError, match="with a body whose digest sha256:[0-9a-f]{64} is not the sha256:[0-9a-f]{64} it announced"):
        mirror(content, destination, tmp_path)
    assert digest_tag(SUBJECT, "sig") not in destination.tags("mirror/team/app")


def test_a_listing_beyond_the_cap_is_refused(destination: Registry, tmp_path: Path) -> None:
    entries = [
        {"mediaType": OCI_MANIFEST, "digest": digest_of(str(i).encode()), "size": 1} for i in range(MAX_REFERRERS + 1)
    ]
    listing = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    content = {f"/v2/team/app/manifests/{digest_tag(SUBJECT)}": (listing, OCI_INDEX),
               f"/v2/team/app/manifests/{digest_of(listing)}": (listing, OCI_INDEX)}  # fmt: skip
    with pytest.raises(ReferrersError, match=f"lists more than {MAX_REFERRERS} manifests"):
        mirror(content, destination, tmp_path)
