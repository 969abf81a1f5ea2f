"""Tests for docker_mirror_testutil.cosign's pure parts: the key as `cosign.pub` holds it, the
simple-signing payload, DSSE's pre-authentication encoding, signing and checking a signature."""

from __future__ import annotations

import base64
import json

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from docker_mirror_testutil.cosign import (
    _sign,
    _verifies,
    dsse_pae,
    generate_key,
    public_key_pem,
    signature_tag,
    simple_signing_payload,
)

DIGEST = "sha256:" + "0123456789abcdef" * 4


def test_the_public_key_is_a_pem_public_key_block_of_a_p256_key_as_cosign_pub() -> None:
    key = generate_key()
    pem = public_key_pem(key)

    lines = pem.decode().splitlines()
    assert lines[0] == "-----BEGIN PUBLIC KEY-----" and lines[-1] == "-----END PUBLIC KEY-----"
    assert pem.endswith(b"-----\n") and all(len(line) <= 64 for line in lines)
    loaded = serialization.load_pem_public_key(pem)
    assert isinstance(loaded, ec.EllipticCurvePublicKey) and loaded.curve.name == "secp256r1"
    # The PEM body is the SubjectPublicKeyInfo DER (id-ecPublicKey, prime256v1).
    der = base64.b64decode("".join(lines[1:-1]))
    assert der == key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_the_payload_is_the_simple_signing_document_cosign_writes() -> None:
    payload = simple_signing_payload("registry.example/team/app", DIGEST)
    assert payload == (
        b'{"critical":{"identity":{"docker-reference":"registry.example/team/app"},'
        b'"image":{"docker-manifest-digest":"' + DIGEST.encode() + b'"},'
        b'"type":"cosign container image signature"},"optional":null}'
    )
    annotated = json.loads(simple_signing_payload("r/a", DIGEST, {"b": "2", "a": "1"}))
    assert list(annotated["optional"].items()) == [("a", "1"), ("b", "2")]


def test_dsse_pae_is_the_dsse_spec_s_encoding() -> None:
    # The example of the DSSE protocol's specification.
    assert dsse_pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_a_signature_verifies_against_its_key_only_and_over_its_data_only() -> None:
    key, other = generate_key(), generate_key()
    signature = _sign(key, b"payload")

    assert _verifies(key.public_key(), signature, b"payload")
    assert not _verifies(other.public_key(), signature, b"payload")
    assert not _verifies(key.public_key(), signature, b"payload2")
    assert not _verifies(key.public_key(), "not base64!", b"payload")


def test_the_signature_tag_names_the_digest() -> None:
    assert signature_tag(DIGEST) == "sha256-" + DIGEST.split(":")[1] + ".sig"
