"""Pushing small images straight through a registry's HTTP API (no engine, no skopeo): one
blob upload per blob and a manifest `PUT`, with an `Authorization` value when the registry
needs one. Fast enough to seed many tags; the standard library and the core only."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import urllib.request
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from docker_mirror.oci.manifests import digest_of

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MIB = 1024 * 1024


def _request(
    method: str, url: str, *, data: Optional[bytes] = None, headers: Optional[Dict[str, str]] = None,
    authorization: Optional[str] = None,
) -> Any:
    all_headers = dict(headers or {})
    if authorization:
        all_headers["Authorization"] = authorization
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    return urllib.request.urlopen(request, timeout=10)


def push_blob(address: str, repository: str, data: bytes, *, authorization: Optional[str] = None) -> str:
    base = f"http://{address}"
    digest = digest_of(data)
    with _request("POST", f"{base}/v2/{repository}/blobs/uploads/", data=b"",
                  authorization=authorization) as response:
        location = response.headers["Location"]
    if not location.startswith("http"):
        location = base + location
    separator = "&" if "?" in location else "?"
    _request(
        "PUT", f"{location}{separator}digest={digest}", data=data,
        headers={"Content-Type": "application/octet-stream"}, authorization=authorization,
    ).close()
    return digest


def push_manifest(
    address: str, repository: str, tag: str, manifest: bytes, media_type: str, *,
    authorization: Optional[str] = None,
) -> str:
    _request(
        "PUT", f"http://{address}/v2/{repository}/manifests/{tag}", data=manifest,
        headers={"Content-Type": media_type}, authorization=authorization,
    ).close()
    return digest_of(manifest)


def image_manifest(
    address: str, repository: str, label: str, *, platform: Tuple[str, str] = ("linux", "amd64"),
    authorization: Optional[str] = None, layer: Optional[bytes] = None,
) -> bytes:
    """Uploads the blobs of a one-layer image labelled `label` and returns its manifest; the
    layer is a line naming the label, or `layer`."""
    config = json.dumps(
        {"architecture": platform[1], "os": platform[0], "config": {"Labels": {"label": label}},
         "rootfs": {"type": "layers", "diff_ids": []}},
        sort_keys=True,
    ).encode()
    if layer is None:
        layer = f"layer of {label}\n".encode()
    config_digest = push_blob(address, repository, config, authorization=authorization)
    layer_digest = push_blob(address, repository, layer, authorization=authorization)
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": len(layer)}],
        },
        sort_keys=True,
    ).encode()


def push_image(
    address: str, repository: str, tag: str, label: Optional[str] = None, *,
    authorization: Optional[str] = None, layer: Optional[bytes] = None,
) -> str:
    """Pushes a single-platform image to `address/repository:tag` (a tiny one, or with the
    layer `layer`); returns its digest."""
    manifest = image_manifest(address, repository, label or f"{repository}:{tag}",
                              authorization=authorization, layer=layer)
    return push_manifest(address, repository, tag, manifest, OCI_MANIFEST, authorization=authorization)


def push_index(
    address: str, repository: str, tag: str, label: str, platforms: Sequence[Tuple[str, str]], *,
    authorization: Optional[str] = None, layers: Optional[Sequence[bytes]] = None,
) -> Tuple[str, bytes]:
    """Pushes a multi-platform image (each platform's layer a line naming it, or the one of
    `layers` in `platforms`' order); returns the index digest and its exact bytes."""
    entries: List[dict] = []
    for n, (os_name, arch) in enumerate(platforms):
        manifest = image_manifest(address, repository, f"{label} {os_name}/{arch}",
                                  platform=(os_name, arch), authorization=authorization,
                                  layer=layers[n] if layers else None)  # fmt: skip
        digest = push_manifest(address, repository, digest_of(manifest), manifest, OCI_MANIFEST,
                               authorization=authorization)
        entries.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": len(manifest),
                        "platform": {"os": os_name, "architecture": arch}})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries},
                       sort_keys=True).encode()
    return push_manifest(address, repository, tag, index, OCI_INDEX, authorization=authorization), index


def push_large_image(address: str, repository: str, size: int) -> Tuple[str, str]:
    """An image under the tag `1` whose one layer is `size` random bytes, streamed up (never
    whole in this process); (the manifest's digest, the layer's)."""
    block = os.urandom(MIB)
    hashed = hashlib.sha256()
    for start in range(0, size, MIB):
        hashed.update(block[: min(MIB, size - start)])
    digest = f"sha256:{hashed.hexdigest()}"
    connection = http.client.HTTPConnection(address, timeout=300)
    connection.request("POST", f"/v2/{repository}/blobs/uploads/", body=b"")
    answer = connection.getresponse()
    answer.read()
    location = str(answer.headers["Location"])
    separator = "&" if "?" in location else "?"

    def body() -> Iterator[bytes]:
        for start in range(0, size, MIB):
            yield block[: min(MIB, size - start)]

    connection.request("PUT", f"{location}{separator}digest={digest}", body=body(),
                       headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"})  # fmt: skip
    answer = connection.getresponse()
    answer.read()
    assert answer.status == 201, answer.status
    connection.close()
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(config),
                   "digest": push_blob(address, repository, config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": size, "digest": digest}],
    }).encode()  # fmt: skip
    return push_manifest(address, repository, "1", manifest, OCI_MANIFEST), digest
