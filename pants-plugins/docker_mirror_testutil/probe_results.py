"""Registry probe results for unit tests of what the plugin makes of them (no registry)."""

from __future__ import annotations

import json

from docker_mirror.oci.manifests import OCI_INDEX, OCI_MANIFEST, digest_of, parse_manifest
from docker_mirror.oci.probe_protocol import ManifestResult
from docker_mirror.util_rules.registry_reads import RegistryReads
from pants.util.frozendict import FrozenDict

# An image index of two platforms, as a registry serves it.
AMD64_DIGEST = "sha256:" + "1" * 64
ARM64_DIGEST = "sha256:" + "2" * 64
INDEX = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": AMD64_DIGEST,
                "size": 1,
                "platform": {"os": "linux", "architecture": "amd64"},
            },
            {
                "mediaType": OCI_MANIFEST,
                "digest": ARM64_DIGEST,
                "size": 1,
                "platform": {"os": "linux", "architecture": "arm64"},
            },
        ],
    }
).encode()


def served(reference: str, body: bytes, *, with_body: bool = True) -> ManifestResult:
    """`reference` serves the manifest `body`; the probe saw its body (a `GET`), or with
    `with_body=False` only its digest and media type (a `HEAD`)."""
    return ManifestResult(
        reference,
        "ok",
        digest=digest_of(body),
        media_type=parse_manifest(body).media_type,
        body=body if with_body else None,
    )


def failed(reference: str, outcome: str, message: str) -> ManifestResult:
    return ManifestResult(reference, outcome, message=message)


def probed(*manifests: ManifestResult) -> RegistryReads:
    return RegistryReads(FrozenDict((m.reference, m) for m in manifests))


def single_manifest(label: str) -> bytes:
    """A small single-platform OCI manifest, distinct per label."""
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "0" * 64, "size": 2},
            "layers": [],
            "annotations": {"label": label},
        }
    ).encode()
