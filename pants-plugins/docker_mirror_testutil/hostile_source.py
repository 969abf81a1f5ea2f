"""A hostile source repository for `HostileServer`: images, artifacts and referrers-API pages held
in memory and served as a registry would, so that a test can make it answer what no honest
registry does (pages of ~4 MiB, a thousand referrers of twenty manifests each, forged subjects).
Shared by the probe's tests and the end-to-end ones that run `./pants publish` against it."""

from __future__ import annotations

import json
from typing import Dict, List, Optional, Tuple

from docker_mirror.oci.manifests import digest_of
from docker_mirror_testutil.hostile_registry import Reply, Request

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"
SPDX = "application/spdx+json"
SIGSTORE_BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"


def descriptor(media_type: str, data: bytes, **extra: object) -> Dict[str, object]:
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data), **extra}


def subject_field(digest: str) -> Dict[str, object]:
    return {"mediaType": OCI_MANIFEST, "digest": digest, "size": 1}


def artifact(layer: bytes, subject: Optional[str], artifact_type: str = SPDX, **extra: object) -> bytes:
    """An OCI 1.1 artifact manifest: the empty config, one layer, and `subject` if any."""
    document: Dict[str, object] = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": descriptor(EMPTY_CONFIG, EMPTY), "layers": [descriptor(artifact_type, layer)],
        **extra,
    }  # fmt: skip
    if subject is not None:
        document["subject"] = subject_field(subject)
    return json.dumps(document).encode()


def index_body(manifests: List[Dict[str, object]], **extra: object) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests, **extra}).encode()


def hostile_page(size: int) -> bytes:
    """A referrers index of about `size` bytes of tiny descriptors: the most Python objects per
    byte a reader can be made to build."""
    entries, length, n = [], 60, 0
    while length < size - 200:
        entry = '{"mediaType":"a/b","digest":"sha256:%064x","size":%d}' % (n, n)
        entries.append(entry)
        length += len(entry) + 1
        n += 1
    return ('{"schemaVersion":2,"mediaType":"%s","manifests":[%s]}' % (OCI_INDEX, ",".join(entries))).encode()


class Source:
    """A hostile source repository (`team/app` unless told): manifests by digest and tag,
    blobs, and optionally the referrers API's answer for any digest (`pages`, each linked to the
    next); anything else is 404 (so no tag list, and no referrers API unless `pages`)."""

    def __init__(self, repository: str = "team/app") -> None:
        self.repository = repository
        self.manifests: Dict[str, Tuple[bytes, str]] = {}
        self.blobs: Dict[str, bytes] = {}
        self.pages: Optional[List[bytes]] = None

    def manifest(self, body: bytes, media_type: str = OCI_MANIFEST, tag: Optional[str] = None) -> str:
        self.manifests[digest_of(body)] = (body, media_type)
        if tag is not None:
            self.manifests[tag] = (body, media_type)
        return digest_of(body)

    def blob(self, data: bytes) -> str:
        self.blobs[digest_of(data)] = data
        return digest_of(data)

    def image(self, tag: str, label: str) -> str:
        """A small single-platform image (a config and one layer) under `tag`; its digest."""
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"label": label}},
                             "rootfs": {"type": "layers", "diff_ids": []}}).encode()  # fmt: skip
        layer = f"layer of {label}".encode()
        self.blob(config)
        self.blob(layer)
        body = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", layer)],
        }).encode()  # fmt: skip
        return self.manifest(body, tag=tag)

    def many_referrers(self, subject: str, count: int, children: int) -> None:
        """`count` referrers of `subject`, each an index of `children` manifests, listed by the
        referrers API in one page: a copy that takes them all writes `count * (children + 1)`
        manifests."""
        self.blob(EMPTY)
        referrers = []
        for n in range(count):
            entries = []
            for c in range(children):
                child = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
                                    "config": descriptor(EMPTY_CONFIG, EMPTY),
                                    "annotations": {"n": f"{n}.{c}"}}).encode()  # fmt: skip
                entries.append(descriptor(OCI_MANIFEST, child))
                self.manifest(child)
            body = index_body(entries, artifactType=SPDX, subject=subject_field(subject))
            self.manifest(body, OCI_INDEX)
            referrers.append(descriptor(OCI_INDEX, body, artifactType=SPDX))
        self.pages = [index_body(referrers)]

    def bundle_listing(self, subject: str, bundle: bytes, count: int, annotations: Dict[str, str]) -> bytes:
        """`count` Sigstore-bundle referrers of `subject`, each holding `bundle` (and
        `annotations`, on the manifest and its descriptor); the referrers index that lists them."""
        self.blob(EMPTY)
        self.blob(bundle)
        listing = []
        for n in range(count):
            body = artifact(bundle, subject, SIGSTORE_BUNDLE, annotations={**annotations, "n": str(n)})
            self.manifest(body)
            extra = {"annotations": annotations} if annotations else {}
            listing.append(descriptor(OCI_MANIFEST, body, artifactType=SIGSTORE_BUNDLE, **extra))
        return index_body(listing)

    def __call__(self, request: Request) -> Reply:
        prefix = f"/v2/{self.repository}/"
        path = request.path
        if path.startswith(prefix + "manifests/") and path[len(prefix + "manifests/"):] in self.manifests:
            body, media_type = self.manifests[path[len(prefix + "manifests/"):]]
            return Reply(200, [("Content-Type", media_type), ("Docker-Content-Digest", digest_of(body))], body)
        if path.startswith(prefix + "blobs/") and path[len(prefix + "blobs/"):] in self.blobs:
            return Reply(200, [("Content-Type", "application/octet-stream")], self.blobs[path[len(prefix + "blobs/"):]])
        if path.startswith(prefix + "referrers/") and self.pages is not None:
            number = int(request.target.partition("?page=")[2] or 0)
            headers = [("Content-Type", OCI_INDEX)]
            if number + 1 < len(self.pages):
                headers.append(("Link", f'<{path}?page={number + 1}>; rel="next"'))
            return Reply(200, headers, self.pages[number])
        return Reply(404, [("Content-Type", "application/json")], b'{"errors":[{"code":"NOT_FOUND"}]}')
