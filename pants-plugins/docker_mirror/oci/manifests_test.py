"""Digests, media types and platforms read from raw manifests."""

from __future__ import annotations

import hashlib
import json

import pytest
from docker_mirror.oci.reference import is_valid_platform
from docker_mirror.oci.manifests import ManifestError, NarrowedIndex, narrowed_index, parse_manifest, select_platform
from docker_mirror.oci.media_types import DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST


def digest_of(n: int) -> str:
    return "sha256:" + f"{n:02d}" * 32


def index(*platforms: dict, media_type: str | None = OCI_INDEX) -> bytes:
    document: dict = {
        "schemaVersion": 2,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": digest_of(i), "size": 1, "platform": platform}
            for i, platform in enumerate(platforms)
        ],
    }
    if media_type:
        document["mediaType"] = media_type
    return json.dumps(document).encode()


AMD64 = {"os": "linux", "architecture": "amd64"}
ARM64 = {"os": "linux", "architecture": "arm64", "variant": "v8"}
ARMV7 = {"os": "linux", "architecture": "arm", "variant": "v7"}
ATTESTATION = {"os": "unknown", "architecture": "unknown"}


def test_digest_is_the_sha256_of_the_exact_bytes() -> None:
    raw = index(AMD64, ARM64)
    assert parse_manifest(raw).digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    # Whitespace counts: the same JSON formatted differently is another manifest.
    assert parse_manifest(raw + b" ").digest != parse_manifest(raw).digest


def test_index_platforms_leave_out_attestations() -> None:
    manifest = parse_manifest(index(AMD64, ARM64, ATTESTATION))
    assert manifest.is_index and manifest.media_type == OCI_INDEX
    assert manifest.platforms == ("linux/amd64", "linux/arm64/v8")
    assert len(manifest.entries) == 3


def test_media_type_is_inferred_when_absent() -> None:
    assert parse_manifest(index(AMD64, media_type=None)).media_type == OCI_INDEX
    single = json.dumps({"schemaVersion": 2, "config": {}, "layers": []}).encode()
    assert parse_manifest(single).media_type == OCI_MANIFEST
    assert parse_manifest(single).platforms is None
    assert parse_manifest(index(AMD64, media_type=DOCKER_MANIFEST_LIST)).is_index


@pytest.mark.parametrize(
    "wanted, expected",
    [
        ("linux/amd64", 0),
        ("linux/arm64", 1),  # arm64 means arm64/v8
        ("linux/arm64/v8", 1),
        ("linux/arm", 2),  # arm means arm/v7
        ("linux/arm/v7", 2),
    ],
)
def test_select_platform(wanted: str, expected: int) -> None:
    manifest = parse_manifest(index(AMD64, ARM64, ARMV7, ATTESTATION))
    assert select_platform(manifest, wanted).digest == digest_of(expected)


def test_select_a_missing_platform_lists_the_available_ones() -> None:
    manifest = parse_manifest(index(AMD64, ATTESTATION))
    with pytest.raises(ManifestError, match=r"no linux/s390x image \(it has: linux/amd64\)"):
        select_platform(manifest, "linux/s390x")


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'{"manifests": [{"platform": {}}]}'])
def test_unreadable_manifests(raw: bytes) -> None:
    with pytest.raises(ManifestError):
        parse_manifest(raw)


def test_platform_syntax() -> None:
    assert is_valid_platform("linux/amd64")
    assert is_valid_platform("linux/arm/v7")
    assert not is_valid_platform("linux")
    assert not is_valid_platform("Linux/amd64")
    assert not is_valid_platform("linux/amd64/v1/x")
    assert not is_valid_platform("linux/amd64 --all")


def attested_index() -> bytes:
    """amd64, arm64/v8 and s390x, each with BuildKit's attestation manifest, and annotations."""
    platforms = [{"os": "linux", "architecture": "amd64"}, {"os": "linux", "architecture": "arm64", "variant": "v8"},
                 {"os": "linux", "architecture": "s390x"}]  # fmt: skip
    manifests = [
        {"mediaType": OCI_MANIFEST, "digest": digest_of(i), "size": 1, "platform": platform}
        for i, platform in enumerate(platforms)
    ]
    manifests += [
        {"mediaType": OCI_MANIFEST, "digest": digest_of(10 + i), "size": 1,
         "platform": {"os": "unknown", "architecture": "unknown"},
         "annotations": {"vnd.docker.reference.digest": digest_of(i), "vnd.docker.reference.type": "attestation-manifest"}}
        for i in range(3)
    ]  # fmt: skip
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests,
                       "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}}).encode()  # fmt: skip


def test_a_narrowed_index_keeps_the_platforms_asked_for_their_attestations_and_every_other_field() -> None:
    raw = attested_index()
    narrowed = narrowed_index(raw, ("linux/amd64", "linux/arm64"))
    document = json.loads(narrowed.body)
    assert [m["digest"] for m in document["manifests"]] == [digest_of(0), digest_of(1), digest_of(10), digest_of(11)]
    assert document["annotations"] == json.loads(raw)["annotations"]
    assert document["mediaType"] == OCI_INDEX and document["schemaVersion"] == 2
    assert narrowed.kept == ("linux/amd64", "linux/arm64/v8") and narrowed.missing == ()
    assert narrowed.manifests == (digest_of(0), digest_of(1), digest_of(10), digest_of(11))
    assert narrowed.digest == "sha256:" + hashlib.sha256(narrowed.body).hexdigest() != parse_manifest(raw).digest
    # The same bytes every time: the digest `package` records is the one the copy writes.
    assert narrowed_index(raw, ("linux/arm64", "linux/amd64")).body == narrowed.body


def test_a_narrowed_index_of_every_platform_is_the_source_and_a_missing_one_is_named() -> None:
    raw = attested_index()
    whole = narrowed_index(raw, ("linux/amd64", "linux/arm64/v8", "linux/s390x", "linux/riscv64"))
    assert whole.body == raw and whole.missing == ("linux/riscv64",)
    with pytest.raises(ManifestError, match=r"has none of the platforms windows/amd64 \(it has: linux/amd64"):
        narrowed_index(raw, ("windows/amd64",))
    single = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {}, "layers": []}).encode()
    assert narrowed_index(single, ("linux/amd64",)) == NarrowedIndex(single, (), (), ())
