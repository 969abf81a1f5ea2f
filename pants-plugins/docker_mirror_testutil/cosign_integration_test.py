"""docker_mirror_testutil.cosign against a real `docker-registry`: what `sign`, `attest` and
`attach_sbom` push is cosign's layout, read back through the registry API and `skopeo inspect
--raw`; `verify_signature` accepts a signature made with the key, and refuses the others."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Callable

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from docker_mirror_testutil import cosign
from docker_mirror_testutil.images import OciImage, push_oci_image
from docker_mirror_testutil.machine import require_skopeo
from docker_mirror_testutil.oci import OCI_CONFIG, digest_tag
from docker_mirror_testutil.referrers import spdx_document
from docker_mirror_testutil.registries import Registry
from docker_mirror.oci.manifests import OCI_MANIFEST, digest_of

REPOSITORY = "team/signed"


def _image(registry: Registry, label: str) -> OciImage:
    require_skopeo()
    return push_oci_image(f"{registry.address}/{REPOSITORY}:{label}", label)


def _cosign_config(*diff_ids: str) -> bytes:
    """The config go-containerregistry writes for an image of these layers made from nothing."""
    history = ",".join(['{"created":"0001-01-01T00:00:00Z"}'] * len(diff_ids))
    layers = ",".join(f'"{diff_id}"' for diff_id in diff_ids)
    return (
        '{"architecture":"","created":"0001-01-01T00:00:00Z","history":[' + history + '],'
        '"os":"","rootfs":{"type":"layers","diff_ids":[' + layers + ']},"config":{}}'
    ).encode()


def test_a_signature_is_a_simple_signing_layer_under_the_sig_tag(
    registries: Callable[..., Registry],
) -> None:
    registry = registries()
    image = _image(registry, "sign")
    key = cosign.generate_key()

    signed = cosign.sign(registry, REPOSITORY, image.index, key)

    tag = digest_tag(image.index, "sig")
    assert registry.manifest_digest(REPOSITORY, tag) == signed
    raw = registry.skopeo_raw(REPOSITORY, tag)
    assert digest_of(raw) == signed
    manifest = json.loads(raw)
    assert manifest["mediaType"] == OCI_MANIFEST and manifest["schemaVersion"] == 2
    [layer] = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    assert list(layer["annotations"]) == ["dev.cosignproject.cosign/signature"]
    payload = registry.blob(REPOSITORY, layer["digest"])
    assert json.loads(payload) == {
        "critical": {
            "identity": {"docker-reference": f"{registry.address}/{REPOSITORY}"},
            "image": {"docker-manifest-digest": image.index},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
    # The annotation is an ECDSA P-256 / SHA-256 signature of the payload blob, by the key.
    key.public_key().verify(
        base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"]),
        payload,
        ec.ECDSA(hashes.SHA256()),
    )
    assert manifest["config"]["mediaType"] == OCI_CONFIG
    config = registry.blob(REPOSITORY, manifest["config"]["digest"])
    assert config == _cosign_config(layer["digest"])
    assert len(config) == 233  # the size of every one-signature config cosign pushes
    assert cosign.verify_signature(
        registry, REPOSITORY, image.index, cosign.public_key_pem(key)
    ) == json.loads(payload)


def test_signing_again_appends_a_layer_and_the_tag_serves_a_new_digest(
    registries: Callable[..., Registry],
) -> None:
    registry = registries()
    image = _image(registry, "append")
    first_key, second_key = cosign.generate_key(), cosign.generate_key()
    first = cosign.sign(registry, REPOSITORY, image.index, first_key)
    first_layer = json.loads(registry.skopeo_raw(REPOSITORY, first))["layers"][0]

    second = cosign.sign(registry, REPOSITORY, image.index, second_key)

    assert second != first
    assert registry.manifest_digest(REPOSITORY, cosign.signature_tag(image.index)) == second
    manifest = json.loads(registry.skopeo_raw(REPOSITORY, second))
    assert len(manifest["layers"]) == 2 and manifest["layers"][0] == first_layer
    config = registry.blob(REPOSITORY, manifest["config"]["digest"])
    assert config == _cosign_config(*(layer["digest"] for layer in manifest["layers"]))
    for key in (first_key, second_key):
        cosign.verify_signature(registry, REPOSITORY, image.index, cosign.public_key_pem(key))


def test_verify_signature_refuses_no_signature_another_key_and_a_payload_of_another_digest(
    registries: Callable[..., Registry],
) -> None:
    registry = registries()
    image, other_image = _image(registry, "verify"), _image(registry, "verify-other")
    key, other_key = cosign.generate_key(), cosign.generate_key()
    pem = cosign.public_key_pem(key)

    with pytest.raises(cosign.SignatureNotVerified, match="does not exist"):
        cosign.verify_signature(registry, REPOSITORY, image.index, pem)

    cosign.sign(registry, REPOSITORY, image.index, other_key)
    with pytest.raises(cosign.SignatureNotVerified, match="does not verify against the key"):
        cosign.verify_signature(registry, REPOSITORY, image.index, pem)

    # A valid signature by the key, of another digest, put under this digest's tag.
    moved = cosign.sign(registry, REPOSITORY, other_image.index, key)
    body, media_type = registry.manifest(REPOSITORY, moved)
    registry.put_manifest(REPOSITORY, cosign.signature_tag(image.index), body, media_type)
    with pytest.raises(cosign.SignatureNotVerified, match=f"names '{other_image.index}', not"):
        cosign.verify_signature(registry, REPOSITORY, image.index, pem)
    cosign.verify_signature(registry, REPOSITORY, other_image.index, pem)

    # A key that is not ECDSA P-256 is refused as such.
    pem_spki = (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    for other_pem in (
        ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(*pem_spki),
        ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(*pem_spki),
    ):
        with pytest.raises(cosign.SignatureNotVerified, match="not an ECDSA P-256 key"):
            cosign.verify_signature(registry, REPOSITORY, other_image.index, other_pem)


def test_an_attestation_is_a_signed_dsse_envelope_under_the_att_tag(
    registries: Callable[..., Registry],
) -> None:
    registry = registries()
    image = _image(registry, "attest")
    key = cosign.generate_key()

    attested = cosign.attest(registry, REPOSITORY, image.index, key)

    tag = digest_tag(image.index, "att")
    assert registry.manifest_digest(REPOSITORY, tag) == attested
    [layer] = json.loads(registry.skopeo_raw(REPOSITORY, tag))["layers"]
    assert layer["mediaType"] == "application/vnd.dsse.envelope.v1+json"
    assert layer["annotations"] == {
        "dev.cosignproject.cosign/signature": "",
        "predicateType": "https://slsa.dev/provenance/v0.2",
    }
    envelope = json.loads(registry.blob(REPOSITORY, layer["digest"]))
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    assert [list(s) for s in envelope["signatures"]] == [["keyid", "sig"]]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v0.1"
    assert statement["subject"][0]["digest"] == {"sha256": image.index.split(":")[1]}
    [verified] = cosign.verify_attestation(
        registry, REPOSITORY, image.index, cosign.public_key_pem(key)
    )
    assert verified == statement
    with pytest.raises(cosign.SignatureNotVerified, match="does not verify"):
        cosign.verify_attestation(
            registry, REPOSITORY, image.index, cosign.public_key_pem(cosign.generate_key())
        )


def test_an_sbom_is_a_one_layer_image_under_the_sbom_tag_and_replaces_the_last(
    registries: Callable[..., Registry],
) -> None:
    registry = registries()
    image = _image(registry, "sbom")
    cosign.attach_sbom(registry, REPOSITORY, image.index, spdx_document("first"))
    sbom = spdx_document("second")

    attached = cosign.attach_sbom(registry, REPOSITORY, image.index, sbom)

    tag = digest_tag(image.index, "sbom")
    assert registry.manifest_digest(REPOSITORY, tag) == attached
    manifest = json.loads(registry.skopeo_raw(REPOSITORY, tag))
    assert manifest["layers"] == [
        {
            "mediaType": "text/spdx+json",
            "size": len(sbom),
            "digest": f"sha256:{hashlib.sha256(sbom).hexdigest()}",
        }
    ]
    assert registry.blob(REPOSITORY, manifest["layers"][0]["digest"]) == sbom
    config = registry.blob(REPOSITORY, manifest["config"]["digest"])
    assert config == _cosign_config(manifest["layers"][0]["digest"])
