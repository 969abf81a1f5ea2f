"""OCI 1.1 referrers for real: `docker-registry` 2.8 has no referrers API, so an artifact with a
`subject` is listed by its fallback tag, merged with what that tag lists; `ReferrersProxy` in front
of it serves the API as the distribution spec says, answers the push with `OCI-Subject` (so no
fallback tag is written), records every request, and streams blobs."""

from __future__ import annotations

import hashlib
import json
import os
import tracemalloc
import urllib.error
import urllib.request
from typing import Callable, Iterator

import pytest
from docker_mirror_testutil import cosign
from docker_mirror_testutil.fault_proxy import passthrough
from docker_mirror_testutil.images import OciImage, push_oci_image
from docker_mirror_testutil.machine import require_skopeo
from docker_mirror_testutil.oci import digest_tag
from docker_mirror_testutil.referrers import (
    ReferrersIndexError,
    add_to_fallback_index,
    attach_artifact,
    attach_spdx_sbom,
    listed_referrers,
    referrer_descriptor,
    referrers_api,
)
from docker_mirror_testutil.referrers_proxy import ReferrersProxy
from docker_mirror_testutil.registries import Registry, requests_for
from docker_mirror.oci.manifests import OCI_INDEX, OCI_MANIFEST, digest_of

REPOSITORY = "team/app"


@pytest.fixture
def registry(registries: Callable[..., Registry]) -> Registry:
    require_skopeo()
    return registries()


@pytest.fixture
def proxy(registry: Registry) -> Iterator[ReferrersProxy]:
    with ReferrersProxy.start(registry.address, passthrough()) as started:
        yield started


def _image(registry: Registry, label: str) -> OciImage:
    return push_oci_image(f"{registry.address}/{REPOSITORY}:{label}", label)


def test_without_the_api_an_artifact_is_listed_by_the_fallback_tag(registry: Registry) -> None:
    image = _image(registry, "fallback")
    assert referrers_api(registry, REPOSITORY, image.index) is None, "docker-registry 2.8: 404"

    sbom = attach_spdx_sbom(registry, REPOSITORY, image.index, name="fallback")

    manifest = json.loads(registry.skopeo_raw(REPOSITORY, sbom["digest"]))
    assert manifest["artifactType"] == "application/spdx+json"
    assert manifest["config"] == {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "size": 2,
        "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        "data": "e30=",
    }
    index_body, index_type = registry.manifest(REPOSITORY, image.index)
    assert manifest["subject"] == {
        "mediaType": index_type, "size": len(index_body), "digest": image.index
    }
    [layer] = manifest["layers"]
    assert layer["mediaType"] == "application/spdx+json"
    assert json.loads(registry.blob(REPOSITORY, layer["digest"]))["spdxVersion"] == "SPDX-2.3"
    fallback_body, fallback_type = registry.manifest(REPOSITORY, digest_tag(image.index))
    assert fallback_type == OCI_INDEX
    assert json.loads(fallback_body)["manifests"] == [sbom]
    assert sbom == {
        "mediaType": OCI_MANIFEST,
        "size": len(registry.skopeo_raw(REPOSITORY, sbom["digest"])),
        "digest": sbom["digest"],
        "artifactType": "application/spdx+json",
        "annotations": {
            "org.opencontainers.image.created": "2024-01-01T00:00:00Z",
            "org.opencontainers.image.title": "fallback.spdx.json",
        },
    }
    assert listed_referrers(registry, REPOSITORY, image.index) == [sbom]


def test_the_fallback_index_keeps_every_entry_it_lists_and_adds_none_twice(
    registry: Registry,
) -> None:
    image = _image(registry, "merge")
    # An entry someone else put there: a descriptor of a manifest this test never pushed itself.
    signature = cosign.sign(registry, REPOSITORY, image.index, cosign.generate_key())
    foreign = {
        **referrer_descriptor(registry.manifest(REPOSITORY, signature)[0]),
        "annotations": {"org.example.owner": "someone else"},
    }
    add_to_fallback_index(registry, REPOSITORY, image.index, foreign)

    first = attach_spdx_sbom(registry, REPOSITORY, image.index, name="merge")
    again = attach_spdx_sbom(registry, REPOSITORY, image.index, name="merge")
    other = attach_artifact(
        registry, REPOSITORY, image.index, "application/vnd.example.report", b"report",
        "text/plain",
    )

    assert again == first, "the same artifact has the same digest"
    assert listed_referrers(registry, REPOSITORY, image.index) == [foreign, first, other]
    # A fallback tag that serves something other than an index is not merged into.
    amd64 = image.manifests["linux/amd64"]
    registry.put_manifest(REPOSITORY, digest_tag(amd64), *registry.manifest(REPOSITORY, amd64))
    with pytest.raises(ReferrersIndexError, match="not an image index"):
        attach_spdx_sbom(registry, REPOSITORY, amd64)


def test_the_proxy_serves_the_referrers_api_from_what_was_pushed_through_it(
    registry: Registry, proxy: ReferrersProxy
) -> None:
    image = _image(registry, "api")
    through = proxy.as_registry(registry)
    listed_before = referrers_api(through, REPOSITORY, image.index)
    assert listed_before == ([], None), "no referrers: 200 and an empty index"

    sbom = attach_spdx_sbom(through, REPOSITORY, image.index, name="api")
    # A cosign-style manifest with a subject and no artifactType: typed by its config.
    untyped = attach_artifact(
        through, REPOSITORY, image.index, None, b"note", "text/plain", annotations={}
    )

    assert untyped["artifactType"] == "application/vnd.oci.empty.v1+json"
    assert digest_tag(image.index) not in registry.tags(REPOSITORY), (
        "the push was answered with OCI-Subject: no fallback tag"
    )
    assert referrers_api(through, REPOSITORY, image.index) == ([sbom, untyped], None)
    assert listed_referrers(through, REPOSITORY, image.index) == [sbom, untyped]
    assert proxy.referrers(REPOSITORY, image.index) == [sbom, untyped]
    for manifest in (sbom, untyped):
        assert referrer_descriptor(registry.skopeo_raw(REPOSITORY, manifest["digest"])) == manifest
    # The artifactType filter, said in a header.
    assert referrers_api(through, REPOSITORY, image.index, "application/spdx+json") == (
        [sbom], "artifactType"
    )
    assert referrers_api(through, REPOSITORY, image.index, "application/none") == (
        [], "artifactType"
    )
    # Other repositories and digests list nothing; a malformed digest is a 400.
    assert referrers_api(through, "team/other", image.index) == ([], None)
    assert referrers_api(through, REPOSITORY, image.manifests["linux/amd64"]) == ([], None)
    with pytest.raises(urllib.error.HTTPError) as malformed:
        referrers_api(through, REPOSITORY, "sha256:xyz")
    assert malformed.value.code == 400
    assert json.load(malformed.value)["errors"][0]["code"] == "DIGEST_INVALID"

    # Every request is recorded; the registry never saw the referrers requests.
    referrers_gets = [
        r for r in proxy.requests() if r.method == "GET" and "/referrers/" in r.path
    ]
    assert [r.status for r in referrers_gets] == [200] * 7 + [400]
    assert not [line for line in registry.settled_access_log() if "/referrers/" in line]
    pushes = [r for r in proxy.requests() if r.method == "PUT" and "/manifests/" in r.path]
    assert [r.path for r in pushes] == [
        f"/v2/{REPOSITORY}/manifests/{sbom['digest']}",
        f"/v2/{REPOSITORY}/manifests/{untyped['digest']}",
    ]
    assert requests_for(
        registry.settled_access_log(), "PUT", f"/v2/{REPOSITORY}/manifests/{sbom['digest']}"
    ), "passed on to the registry"


def test_the_proxy_answers_a_push_with_oci_subject_and_forgets_a_deleted_referrer(
    registry: Registry, proxy: ReferrersProxy
) -> None:
    image = _image(registry, "subject")
    through = proxy.as_registry(registry)
    sbom = attach_spdx_sbom(registry, REPOSITORY, image.index, name="subject")  # not through it
    body = registry.skopeo_raw(REPOSITORY, sbom["digest"])
    assert proxy.referrers(REPOSITORY, image.index) == [], "it learns only what passes through"

    answer = through.put_manifest(REPOSITORY, sbom["digest"], body, OCI_MANIFEST)
    plain = through.put_manifest(REPOSITORY, "plain", *registry.manifest(REPOSITORY, "subject"))

    assert answer["OCI-Subject"] == image.index
    assert plain["OCI-Subject"] is None, "a manifest without a subject is answered as before"
    assert answer["Docker-Content-Digest"] == digest_of(body)
    assert referrers_api(through, REPOSITORY, image.index) == ([sbom], None)
    through.delete_manifest(REPOSITORY, sbom["digest"])
    assert referrers_api(through, REPOSITORY, image.index) == ([], None)
    # A push the registry refuses (its layer is missing) is not listed.
    broken = json.loads(body)
    broken["layers"][0]["digest"] = "sha256:" + "0" * 64
    with pytest.raises(urllib.error.HTTPError) as refused:
        through.put_manifest(REPOSITORY, "broken", json.dumps(broken).encode(), OCI_MANIFEST)
    assert refused.value.code == 400
    assert "OCI-Subject" not in refused.value.headers
    assert proxy.referrers(REPOSITORY, image.index) == []


def test_blobs_stream_through_the_proxy(registry: Registry, proxy: ReferrersProxy) -> None:
    """A blob 16 times the proxy's allowance passes both ways without the proxy (which runs in
    this process) ever holding it: tracemalloc sees every Python thread's allocations."""
    through = proxy.as_registry(registry)
    data = os.urandom(64 * 1024 * 1024)
    allowance = 4 * 1024 * 1024

    tracemalloc.start()
    try:
        digest = through.put_blob(REPOSITORY, data)
        upload_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        read = hashlib.sha256()
        with urllib.request.urlopen(
            f"http://{through.address}/v2/{REPOSITORY}/blobs/{digest}", timeout=60
        ) as response:
            while chunk := response.read(65536):
                read.update(chunk)
        download_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert f"sha256:{read.hexdigest()}" == digest == f"sha256:{hashlib.sha256(data).hexdigest()}"
    assert upload_peak < allowance and download_peak < allowance, (upload_peak, download_peak)
    assert [(r.method, r.status) for r in proxy.requests() if "/blobs/" in r.path] == [
        ("POST", 202), ("PUT", 201), ("GET", 200)
    ]
