from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, Optional

import pytest

from docker_mirror.oci.probe_protocol import CopyItem, Listing
from docker_mirror.probe.referrers import (
    MAX_LISTING_BYTES,
    OCI_INDEX,
    OCI_MANIFEST,
    BoundExceeded,
    CopyBudget,
    Descriptor,
    ReferrersError,
    check_subject,
    digest_tag,
    index_entries,
    listing_entries,
    listing_index,
    manifest_parts,
    merged_listing,
    updated_tag_manifest,
    missing_referrers,
    stale_tags,
)

IMAGE = "sha256:" + "ab" * 32


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(name: str, artifact_type: Optional[str] = None, **extra: Any) -> Dict[str, Any]:
    value: Dict[str, Any] = {"mediaType": OCI_MANIFEST, "digest": digest(name.encode()), "size": len(name)}
    if artifact_type:
        value["artifactType"] = artifact_type
    value.update(extra)
    return value


def index(*entries: Dict[str, Any], **extra: Any) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(entries), **extra}).encode()


def test_digest_tags() -> None:
    assert digest_tag(IMAGE) == "sha256-" + "ab" * 32
    assert digest_tag(IMAGE, "sig") == "sha256-" + "ab" * 32 + ".sig"
    with pytest.raises(ReferrersError):
        digest_tag("sha512:" + "ab" * 64)


@pytest.mark.parametrize(
    "artifact_type, annotations, kind",
    [
        ("application/spdx+json", {}, "SBOM"),
        ("application/vnd.cyclonedx+json", {}, "SBOM"),
        ("application/vnd.cncf.notary.signature", {}, "signature"),
        ("application/vnd.dev.cosign.artifact.sig.v1+json", {}, "signature"),
        ("application/vnd.in-toto+json", {}, "attestation"),
        (
            "application/vnd.dev.sigstore.bundle.v0.3+json",
            {"dev.sigstore.bundle.predicateType": "https://sigstore.dev/cosign/sign/v1"},
            "signature",
        ),
        (
            "application/vnd.dev.sigstore.bundle.v0.3+json",
            {"dev.sigstore.bundle.predicateType": "https://slsa.dev/provenance/v1"},
            "attestation",
        ),
        ("application/x-something", {}, "artifact"),
        (None, {}, "artifact"),
    ],
)
def test_what_a_referrer_is(artifact_type: Optional[str], annotations: Dict[str, str], kind: str) -> None:
    entry = Descriptor.read(descriptor("x", artifact_type, annotations=annotations), "it")
    assert entry.kind == kind


@pytest.mark.parametrize(
    "value, message",
    [
        ("nope", "is not a descriptor"),
        ({"mediaType": OCI_MANIFEST, "digest": "sha512:" + "a" * 128, "size": 1}, "only sha256"),
        ({"mediaType": OCI_MANIFEST, "digest": IMAGE, "size": -1}, "no valid size"),
        ({"mediaType": OCI_MANIFEST, "digest": IMAGE, "size": True}, "no valid size"),
        ({"digest": IMAGE, "size": 1}, "no media type"),
    ],
)
def test_bad_descriptors(value: object, message: str) -> None:
    with pytest.raises(ReferrersError, match=message):
        Descriptor.read(value, "entry 1")


@pytest.mark.parametrize("raw", [b"", b"[]", b"[" * 100000, b'{"manifests": {}}'])
def test_unreadable_listings_are_errors(raw: bytes) -> None:
    with pytest.raises(ReferrersError):
        index_entries(raw)


def test_a_listing_is_the_same_bytes_whatever_the_order() -> None:
    a, b = descriptor("a", "application/spdx+json"), descriptor("b")
    entries = index_entries(index(a, b))
    assert listing_index(entries) == listing_index(reversed(entries))
    assert [e["digest"] for e in json.loads(listing_index(entries))["manifests"]] == sorted(
        [a["digest"], b["digest"]]
    )
    assert json.loads(listing_index(entries))["manifests"][0 if a["digest"] < b["digest"] else 1] == a


def test_a_merged_listing_keeps_every_entry_and_its_fields() -> None:
    theirs = descriptor("theirs", "application/vnd.cncf.notary.signature", annotations={"x": "y"})
    ours = descriptor("ours", "application/spdx+json")
    existing = index(theirs, annotations={"keep": "me"})
    merged = json.loads(merged_listing(existing, index_entries(index(ours, theirs))) or b"")
    assert merged["manifests"] == [theirs, ours]
    assert merged["annotations"] == {"keep": "me"}
    assert merged_listing(existing, index_entries(index(theirs))) is None
    assert merged_listing(None, index_entries(index(ours))) == listing_index(index_entries(index(ours)))
    assert merged_listing(None, ()) is None


def test_manifest_parts() -> None:
    config = descriptor("config")
    layer = descriptor("layer")
    raw = json.dumps(
        {"mediaType": OCI_MANIFEST, "config": config, "layers": [layer], "subject": descriptor("image")}
    ).encode()
    parts = manifest_parts(raw)
    assert [b.digest for b in parts.blobs] == [config["digest"], layer["digest"]]
    assert parts.subject == digest(b"image") and parts.manifests == ()
    children = manifest_parts(index(descriptor("child")))
    assert children.blobs == () and [m.digest for m in children.manifests] == [digest(b"child")]


def sig_manifest(config: bytes, *layers: bytes) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config), "size": len(config)},
            "layers": [
                {"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": digest(l), "size": len(l)}
                for l in layers
            ],
        }
    ).encode()


def sig_config(*layers: bytes) -> bytes:
    return json.dumps(
        {"rootfs": {"type": "layers", "diff_ids": [digest(l) for l in layers]}, "history": [{"created": "0"}] * len(layers)}
    ).encode()


def test_a_tag_manifest_merged_with_the_destinations_own_signatures() -> None:
    theirs = sig_manifest(sig_config(b"upstream", b"ours-at-mirror"), b"upstream", b"ours-at-mirror")
    source = sig_manifest(sig_config(b"upstream", b"upstream-new"), b"upstream", b"upstream-new")
    merged = updated_tag_manifest(theirs, sig_config(b"upstream", b"ours-at-mirror"), source)
    assert merged is not None and merged[0] != source
    manifest_raw, config_raw = merged
    manifest = json.loads(manifest_raw)
    assert [l["digest"] for l in manifest["layers"]] == [digest(b"upstream"), digest(b"ours-at-mirror"), digest(b"upstream-new")]
    assert config_raw is not None and manifest["config"]["digest"] == digest(config_raw)
    assert json.loads(config_raw)["rootfs"]["diff_ids"] == [l["digest"] for l in manifest["layers"]]
    assert len(json.loads(config_raw)["history"]) == 3
    # Nothing to add: the destination holds every source layer.
    assert updated_tag_manifest(manifest_raw, config_raw, source) is None
    # An older copy of the source's (a subset of its layers) is replaced by the source's as is.
    older = sig_manifest(sig_config(b"upstream"), b"upstream")
    assert updated_tag_manifest(older, sig_config(b"upstream"), source) == (source, None)


def test_stale_tags_and_missing_referrers() -> None:
    sig, att = digest(b"sig"), digest(b"att")
    source = (("sha256-x.sig", sig), ("sha256-x.att", att))
    items = stale_tags(source, {"sha256-x.sig": sig, "sha256-x.att": digest(b"old")}, (), {})
    assert items == (CopyItem("attestation", att, OCI_MANIFEST, tag="sha256-x.att"),)
    # A destination that merged the tag with its own still keeps the source's digest.
    assert stale_tags(source, {"sha256-x.sig": sig}, [att], {}) == ()
    listing = Listing.of(index(descriptor("sbom", "application/spdx+json"), descriptor("sig2", "application/vnd.cncf.notary.signature")))
    missing = missing_referrers(listing, index_entries(index(descriptor("sbom"))))
    assert missing == (CopyItem("signature", digest(b"sig2"), OCI_MANIFEST),)
    assert CopyItem.from_json(missing[0].to_json()) == missing[0]


def test_a_listing_longer_than_the_cap_is_refused() -> None:
    from docker_mirror.probe.referrers import MAX_REFERRERS

    entries = [descriptor(f"r{i}") for i in range(MAX_REFERRERS + 1)]
    with pytest.raises(ReferrersError, match=f"lists more than {MAX_REFERRERS} manifests"):
        index_entries(index(*entries))
    assert len(index_entries(index(*entries[:MAX_REFERRERS]))) == MAX_REFERRERS


OTHER = "sha256:" + "66" * 32


def referrer(subject: Optional[str], *, blob_size: int = 2, name: str = "sbom") -> bytes:
    document: Dict[str, Any] = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest(b"{}"), "size": blob_size},
        "layers": [], "annotations": {"name": name},
    }  # fmt: skip
    if subject is not None:
        document["subject"] = {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1}
    return json.dumps(document).encode()


def test_a_subject_other_than_the_image_is_refused_naming_both() -> None:
    check_subject(None, IMAGE, "x")  # cosign's tag-scheme manifests have none
    check_subject(IMAGE, IMAGE, "x")
    with pytest.raises(ReferrersError) as refused:
        check_subject(OTHER, IMAGE, "referrer sha256:1 at src/app")
    assert str(refused.value) == (
        f"referrer sha256:1 at src/app names {OTHER} as its subject, not the image being mirrored "
        f"(sha256:abababababab): refused"
    )


def test_a_listing_must_be_an_index_of_the_image_within_the_bound() -> None:
    entries = (descriptor("sbom"),)
    assert [e.digest for e in listing_entries(index(*entries), IMAGE, "l")] == [digest(b"sbom")]
    own = {"mediaType": OCI_MANIFEST, "digest": IMAGE, "size": 1}
    assert len(listing_entries(index(*entries, subject=own), IMAGE, "l")) == 1
    with pytest.raises(ReferrersError, match=f"^the fallback index names {OTHER} as its subject, not the image"):
        listing_entries(index(*entries, subject=dict(own, digest=OTHER)), IMAGE, "the fallback index")
    # A "listing" that is a referrer manifest of another image (a fake fallback-tag digest).
    with pytest.raises(ReferrersError, match=f"names {OTHER} as its subject"):
        listing_entries(referrer(OTHER), IMAGE, "l")
    with pytest.raises(ReferrersError, match="is not an image index"):
        listing_entries(referrer(None), IMAGE, "l")
    with pytest.raises(ReferrersError, match=f"larger than {MAX_LISTING_BYTES} bytes"):
        listing_entries(index(*entries, padding="x" * MAX_LISTING_BYTES), IMAGE, "l")


def test_the_copy_budget_checks_each_manifest_before_it_is_written() -> None:
    budget = CopyBudget(IMAGE, "src/app", max_manifests=3, max_bytes=10_000)
    budget.accept("sha256:1", referrer(IMAGE))
    budget.accept("sha256:2", referrer(None))  # a child, or a cosign tag's manifest
    with pytest.raises(ReferrersError, match=f"^manifest sha256:3 at src/app names {OTHER} as its subject"):
        budget.accept("sha256:3", referrer(OTHER))
    assert budget.manifests == 2
    budget.accept("sha256:4", referrer(IMAGE))
    with pytest.raises(BoundExceeded, match="^the referrers of sha256:abababababab are more than the 3 manifests copied per image: stopped before sha256:5$"):
        budget.accept("sha256:5", referrer(IMAGE))


def test_the_copy_budget_counts_blobs_by_their_declared_size() -> None:
    budget = CopyBudget(IMAGE, "src/app", max_bytes=1_000_000)
    with pytest.raises(BoundExceeded, match="more than the 1000000 bytes copied per image: stopped before sha256:1 "):
        budget.accept("sha256:1", referrer(IMAGE, blob_size=10**12))
    assert budget.bytes == 0


def test_the_copy_budget_stops_at_its_deadline() -> None:
    now = [0.0]
    budget = CopyBudget(IMAGE, "src/app", deadline=5.0, clock=lambda: now[0])
    budget.accept("sha256:1", referrer(IMAGE))
    budget.check_time("x")
    now[0] = 5.0
    with pytest.raises(BoundExceeded, match="the copy of the referrers of sha256:abababababab reached its deadline before sha256:2 was written"):
        budget.accept("sha256:2", referrer(IMAGE))
