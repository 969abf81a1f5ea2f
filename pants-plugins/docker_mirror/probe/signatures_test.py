"""Cosign signatures in both layouts, made here with `cryptography` as cosign makes them, against
keys of every kind a user may hand `require_signature`."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Optional, Tuple

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from docker_mirror.oci.media_types import COSIGN_SIGN_PREDICATE, COSIGN_SIMPLE_SIGNING
from docker_mirror.probe.signatures import (
    MAX_SIGNATURES_PER_BUNDLE,
    SIGNATURE_ANNOTATION,
    InvalidKey,
    PublicKey,
    bundle_signatures,
    load_public_key,
    pre_authentication_encoding,
    same_repository,
    simple_signing_signatures,
    verify,
)

IMAGE = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32


def key_pair(curve: ec.EllipticCurve = ec.SECP256R1()) -> Tuple[ec.EllipticCurvePrivateKey, bytes]:
    private = ec.generate_private_key(curve)
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, pem


def sign(private: ec.EllipticCurvePrivateKey, data: bytes) -> str:
    return base64.b64encode(private.sign(data, ec.ECDSA(hashes.SHA256()))).decode()


def simple_signing(
    digest: str, kind: str = "cosign container image signature", reference: str = "registry.example.com/app"
) -> bytes:
    return json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": reference},
                "image": {"docker-manifest-digest": digest},
                "type": kind,
            },
            "optional": None,
        }
    ).encode()


def sig_layer(payload: bytes, signature: Optional[str]) -> Tuple[dict, bytes]:
    descriptor = {
        "mediaType": COSIGN_SIMPLE_SIGNING,
        "digest": "sha256:" + hashlib.sha256(payload).hexdigest(),
        "size": len(payload),
        "annotations": {SIGNATURE_ANNOTATION: signature} if signature is not None else {},
    }
    return descriptor, payload


def bundle(private: ec.EllipticCurvePrivateKey, digest: str, predicate: str = COSIGN_SIGN_PREDICATE) -> bytes:
    statement = json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"digest": {"sha256": digest.split(":")[1]}}],
            "predicateType": predicate,
            "predicate": {},
        }
    ).encode()
    payload_type = "application/vnd.in-toto+json"
    signature = sign(private, pre_authentication_encoding(payload_type, statement))
    return json.dumps(
        {
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {"publicKey": {"hint": "x"}},
            "dsseEnvelope": {
                "payload": base64.b64encode(statement).decode(),
                "payloadType": payload_type,
                "signatures": [{"sig": signature, "keyid": ""}],
            },
        }
    ).encode()


@pytest.fixture
def keys() -> Tuple[ec.EllipticCurvePrivateKey, PublicKey]:
    private, pem = key_pair()
    return private, load_public_key("keys/cosign.pub", pem)


def test_a_tag_scheme_signature_of_the_digest_verifies(keys: Tuple[ec.EllipticCurvePrivateKey, PublicKey]) -> None:
    private, public = keys
    payload = simple_signing(IMAGE)
    found = simple_signing_signatures("sha256-ab.sig", [sig_layer(payload, sign(private, payload))])
    verdict = verify(IMAGE, found, [public])
    assert verdict.verified and verdict.key == "keys/cosign.pub"
    assert verdict.where == "sha256-ab.sig layer 1"


def test_one_good_signature_among_several_is_enough(keys: Tuple[ec.EllipticCurvePrivateKey, PublicKey]) -> None:
    private, public = keys
    stranger, _ = key_pair()
    payload = simple_signing(IMAGE)
    layers = [sig_layer(payload, sign(stranger, payload)), sig_layer(payload, sign(private, payload))]
    verdict = verify(IMAGE, simple_signing_signatures("t.sig", layers), [public])
    assert verdict.verified and verdict.where == "t.sig layer 2"


def test_another_key_is_refused_naming_the_key(keys: Tuple[ec.EllipticCurvePrivateKey, PublicKey]) -> None:
    _, public = keys
    stranger, _ = key_pair()
    payload = simple_signing(IMAGE)
    verdict = verify(IMAGE, simple_signing_signatures("t.sig", [sig_layer(payload, sign(stranger, payload))]), [public])
    assert not verdict.verified
    assert verdict.reason == "1 signature found, none verifies against keys/cosign.pub"


def test_a_signature_of_another_digest_is_refused(keys: Tuple[ec.EllipticCurvePrivateKey, PublicKey]) -> None:
    private, public = keys
    payload = simple_signing(OTHER)
    verdict = verify(IMAGE, simple_signing_signatures("t.sig", [sig_layer(payload, sign(private, payload))]), [public])
    assert not verdict.verified
    assert verdict.reason == f"t.sig layer 1 verifies against keys/cosign.pub but names {OTHER}, not {IMAGE}"


def test_a_tampered_payload_is_refused(keys: Tuple[ec.EllipticCurvePrivateKey, PublicKey]) -> None:
    private, public = keys
    signed = simple_signing(OTHER)
    tampered = simple_signing(IMAGE)
    found = simple_signing_signatures("t.sig", [sig_layer(tampered, sign(private, signed))])
    assert not verify(IMAGE, found, [public]).verified


def test_a_payload_that_is_not_an_image_signature_is_refused(keys: Tuple[ec.EllipticCurvePrivateKey, PublicKey]) -> None:
    private, public = keys
    payload = simple_signing(IMAGE, kind="something else")
    verdict = verify(IMAGE, simple_signing_signatures("t.sig", [sig_layer(payload, sign(private, payload))]), [public])
    assert not verdict.verified
    assert "not a cosign container image signature" in (verdict.reason or "")


def test_unreadable_layers_are_named(keys: Tuple[ec.EllipticCurvePrivateKey, PublicKey]) -> None:
    _, public = keys
    payload = simple_signing(IMAGE)
    layers = [sig_layer(payload, None), sig_layer(payload, "not base64!")]
    verdict = verify(IMAGE, simple_signing_signatures("t.sig", layers), [public])
    assert not verdict.verified
    assert verdict.reason == (
        "2 signatures found, none verifies against keys/cosign.pub (t.sig layer 1: it has no "
        "readable signature annotation; t.sig layer 2: it has no readable signature annotation)"
    )


def test_no_signature_at_all() -> None:
    _, pem = key_pair()
    verdict = verify(IMAGE, [], [load_public_key("k.pub", pem)])
    assert not verdict.verified and "no cosign signature" in (verdict.reason or "")


def test_any_of_several_keys(keys: Tuple[ec.EllipticCurvePrivateKey, PublicKey]) -> None:
    private, public = keys
    _, other_pem = key_pair()
    payload = simple_signing(IMAGE)
    found = simple_signing_signatures("t.sig", [sig_layer(payload, sign(private, payload))])
    verdict = verify(IMAGE, found, [load_public_key("old.pub", other_pem), public])
    assert verdict.verified and verdict.key == "keys/cosign.pub"


def test_a_cosign_v3_bundle_verifies(keys: Tuple[ec.EllipticCurvePrivateKey, PublicKey]) -> None:
    private, public = keys
    verdict = verify(IMAGE, bundle_signatures("referrer sha256:1", bundle(private, IMAGE)), [public])
    assert verdict.verified and verdict.where == "referrer sha256:1"


def test_a_bundle_for_another_digest_or_predicate_is_refused(keys: Tuple[ec.EllipticCurvePrivateKey, PublicKey]) -> None:
    private, public = keys
    other = verify(IMAGE, bundle_signatures("r", bundle(private, OTHER)), [public])
    assert not other.verified and f"names {OTHER}" in (other.reason or "")
    attestation = verify(
        IMAGE, bundle_signatures("r", bundle(private, IMAGE, "https://slsa.dev/provenance/v1")), [public]
    )
    assert not attestation.verified and "not a cosign signature" in (attestation.reason or "")


@pytest.mark.parametrize("raw", [b"", b"[", b"{}", b'{"dsseEnvelope": {"payload": "%%%"}}', b"[" * 100000])
def test_broken_bundles_are_reasons_not_crashes(raw: bytes, keys: Tuple[ec.EllipticCurvePrivateKey, PublicKey]) -> None:
    verdict = verify(IMAGE, bundle_signatures("r", raw), [keys[1]])
    assert not verdict.verified and verdict.reason


def test_keys_must_be_ecdsa_p256_pem() -> None:
    _, p384 = key_pair(ec.SECP384R1())
    rsa_pem = rsa.generate_private_key(65537, 2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    ed_pem = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for pem in (p384, rsa_pem, ed_pem):
        with pytest.raises(InvalidKey, match=r"^k\.pub: not an ECDSA P-256 public key"):
            load_public_key("k.pub", pem)
    with pytest.raises(InvalidKey, match=r"^k\.pub: not a PEM public key"):
        load_public_key("k.pub", b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")


def test_a_bundle_is_read_for_at_most_its_cap_of_signatures(keys: Tuple[ec.EllipticCurvePrivateKey, PublicKey]) -> None:
    """10,000 signatures in one DSSE envelope (the audit's 32 such bundles cost 310,000 ECDSA
    checks per key): only the first few are kept."""
    private, public = keys
    document = json.loads(bundle(private, IMAGE))
    good = document["dsseEnvelope"]["signatures"][0]
    document["dsseEnvelope"]["signatures"] = [{"sig": base64.b64encode(b"x" * 70).decode(), "keyid": ""}] * 10_000
    found = bundle_signatures("r", json.dumps(document).encode())
    assert len(found) == MAX_SIGNATURES_PER_BUNDLE
    assert not verify(IMAGE, found, [public]).verified
    # A good one past the cap is not seen; within it, it verifies.
    document["dsseEnvelope"]["signatures"][MAX_SIGNATURES_PER_BUNDLE - 1] = good
    assert verify(IMAGE, bundle_signatures("r", json.dumps(document).encode()), [public]).verified


def test_verification_stops_at_the_deadline_and_refuses(keys: Tuple[ec.EllipticCurvePrivateKey, PublicKey]) -> None:
    private, public = keys
    strangers = bundle_signatures("r", bundle(ec.generate_private_key(ec.SECP256R1()), IMAGE)) * 100
    good = bundle_signatures("good", bundle(private, IMAGE))
    ticks = iter(range(1000))
    verdict = verify(IMAGE, strangers + good, [public], deadline=10, clock=lambda: next(ticks))
    assert not verdict.verified
    assert verdict.reason == (
        f"verification stopped at the deadline after 10 checks (101 signatures, 1 keys), none a valid signature of {IMAGE}"
    )
    # Before the deadline, the same signatures verify.
    assert verify(IMAGE, strangers + good, [public], deadline=1000, clock=lambda: 0).verified
    # Past it from the start, nothing is checked.
    assert "after 0 checks" in (verify(IMAGE, good, [public], deadline=0, clock=lambda: 0).reason or "")


def test_with_an_identity_only_a_signature_for_the_source_repository_passes(
    keys: Tuple[ec.EllipticCurvePrivateKey, PublicKey]
) -> None:
    private, public = keys
    ours, theirs = simple_signing(IMAGE), simple_signing(IMAGE, reference="registry.example.com/other")
    mine = simple_signing_signatures("t.sig", [sig_layer(ours, sign(private, ours))])
    other = simple_signing_signatures("t.sig", [sig_layer(theirs, sign(private, theirs))])
    assert verify(IMAGE, mine, [public], identity="registry.example.com/app").verified
    assert verify(IMAGE, other, [public]).verified  # without an identity, any repository
    refused = verify(IMAGE, other, [public], identity="registry.example.com/app")
    assert not refused.verified
    assert refused.reason == (
        f"t.sig layer 1 verifies against keys/cosign.pub and names {IMAGE}, but it was signed for "
        "registry.example.com/other, not registry.example.com/app (`signature_identity`)"
    )
    # A Sigstore bundle names no repository.
    signed = bundle_signatures("referrer sha256:1", bundle(private, IMAGE))
    assert "names no repository" in (verify(IMAGE, signed, [public], identity="registry.example.com/app").reason or "")


@pytest.mark.parametrize(
    "signed_for, repository, same",
    [
        ("index.docker.io/library/python", "docker.io/library/python", True),
        ("docker.io/python:3.12", "docker.io/library/python", True),
        ("ghcr.io/team/app@sha256:" + "ab" * 32, "ghcr.io/team/app", True),
        ("GHCR.io/team/app", "ghcr.io/team/app", True),
        ("ghcr.io/team/app2", "ghcr.io/team/app", False),
        ("ghcr.io/team", "ghcr.io/team/app", False),
        ("not a reference", "ghcr.io/team/app", False),
        (None, "ghcr.io/team/app", False),
    ],
)
def test_the_signed_repository_is_read_as_docker_reads_it(signed_for: Optional[str], repository: str, same: bool) -> None:
    assert same_repository(signed_for, repository) is same
