"""Tests for docker_mirror_testutil.referrers and referrers_proxy's pure parts: how a referrer is
described (the distribution spec's rules), a query's `artifactType`, a chunked body."""

from __future__ import annotations

from docker_mirror_testutil.oci import descriptor, go_json
from docker_mirror_testutil.referrers import referrer_descriptor, subject_of
from docker_mirror_testutil.referrers_proxy import _artifact_types, _dechunked
from docker_mirror.oci.manifests import OCI_INDEX, OCI_MANIFEST

SUBJECT = "sha256:" + "5" * 64


def _manifest(**fields: object) -> bytes:
    return go_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor("application/vnd.example.config", b"{}"),
            "layers": [],
            "subject": {"mediaType": OCI_MANIFEST, "size": 1, "digest": SUBJECT},
            **fields,
        }
    )


def test_a_referrer_is_described_with_its_artifact_type_and_annotations() -> None:
    body = _manifest(artifactType="application/spdx+json", annotations={"z": "1", "a": "2"})
    assert referrer_descriptor(body) == {
        **descriptor(OCI_MANIFEST, body),
        "artifactType": "application/spdx+json",
        "annotations": {"a": "2", "z": "1"},
    }
    assert subject_of(body) == SUBJECT


def test_an_image_manifest_without_artifact_type_is_typed_by_its_config() -> None:
    body = _manifest()
    described = referrer_descriptor(body)
    assert described["artifactType"] == "application/vnd.example.config"
    assert "annotations" not in described


def test_an_index_without_artifact_type_has_none() -> None:
    body = go_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
    assert "artifactType" not in referrer_descriptor(body)
    assert subject_of(body) is None
    assert subject_of(b"not json") is None


def test_artifact_type_filters_are_percent_decoded_and_keep_a_plus() -> None:
    assert _artifact_types("artifactType=application%2Fspdx%2Bjson") == ["application/spdx+json"]
    assert _artifact_types("n=1&artifactType=application/spdx+json") == ["application/spdx+json"]
    assert _artifact_types("artifactType=") == [] and _artifact_types(None) == []


def test_a_chunked_body_is_decoded() -> None:
    raw = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\n"
    assert _dechunked(raw) == b"hello, world"
