"""The mirror's provenance attestation (`provenance`): the statement, its DSSE envelope verified
here with `cryptography` as cosign verifies one, the append to a `.att` tag that keeps what it
holds, and keys refused without being shown. End to end: goals/publish_provenance_integration_test.py."""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from docker_mirror.oci.probe_protocol import Plan
from docker_mirror.probe.mirror_referrers_test import MemoryRegistry, run
from docker_mirror.probe.provenance import (
    KEY_ANNOTATION,
    ProvenanceKeyError,
    append_attestation,
    attested_by,
    envelope,
    load_provenance_key,
    statement,
)
from docker_mirror.probe.referrers import digest_tag
from docker_mirror.probe.signatures import pre_authentication_encoding
from docker_mirror.probe.transfer_test import image

WHEN = datetime.datetime(2026, 12, 8, 3, 0, tzinfo=datetime.timezone.utc)


def key_file(tmp_path: Path, key: object, password: bytes | None = None) -> str:
    path = tmp_path / "mirror.key"
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))  # type: ignore[attr-defined]
    return str(path)


def test_the_envelope_verifies_and_the_statement_says_what_was_copied_from_where(tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    key = load_provenance_key(key_file(tmp_path, private))
    subject, source_index = "sha256:" + "ab" * 32, "sha256:" + "cd" * 32
    payload = statement(
        subject=subject, destination="mirror.example/team/app", source="ghcr.io/team/app:1",
        source_digest=source_index, platforms=("linux/amd64",), verified_by="keys/cosign.pub",
        identity="ghcr.io/team/app", started=WHEN, finished=WHEN,
    )  # fmt: skip
    document = json.loads(envelope(key, payload))
    signed = base64.b64decode(document["payload"])
    private.public_key().verify(
        base64.b64decode(document["signatures"][0]["sig"]),
        pre_authentication_encoding(document["payloadType"], signed),
        ec.ECDSA(hashes.SHA256()),
    )
    said = json.loads(signed)
    assert said["predicateType"] == "https://slsa.dev/provenance/v1"
    assert said["subject"] == [{"name": "mirror.example/team/app", "digest": {"sha256": "ab" * 32}}]
    definition = said["predicate"]["buildDefinition"]
    assert definition["externalParameters"] == {
        "source": "ghcr.io/team/app:1", "destination": "mirror.example/team/app", "platforms": ["linux/amd64"]
    }
    assert definition["resolvedDependencies"] == [{"uri": "ghcr.io/team/app:1", "digest": {"sha256": "cd" * 32}}]
    assert said["predicate"]["runDetails"]["metadata"] == {"startedOn": "2026-12-08T03:00:00Z", "finishedOn": "2026-12-08T03:00:00Z"}
    assert said["predicate"]["runDetails"]["byproducts"] == [
        {"name": "require_signature", "annotations": {"verifiedBy": "keys/cosign.pub", "signedFor": "ghcr.io/team/app"}}
    ]


def test_the_attestation_is_appended_once_keeping_what_the_tag_holds(tmp_path: Path) -> None:
    key = load_provenance_key(key_file(tmp_path, ec.generate_private_key(ec.SECP256R1())))
    registry = MemoryRegistry("mirror", referrers_api=False)
    index, _, _ = image(registry)
    body = envelope(key, b"{}")
    assert run(append_attestation(registry, "app", index, key, body))
    first = registry.manifests[("app", registry.tags[("app", digest_tag(index, "att"))])][0]
    assert attested_by(first, key.key_id)
    assert not run(append_attestation(registry, "app", index, key, envelope(key, b"{}")))  # there already

    # A tag holding someone else's attestation keeps it, and gains ours after it.
    other = MemoryRegistry("other", referrers_api=False)
    index, _, _ = image(other)
    theirs = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                         "config": other.blob("app", b'{"rootfs":{"type":"layers","diff_ids":["x"]},"history":[{}]}'),
                         "layers": [other.blob("app", b"their envelope")]}).encode()  # fmt: skip
    other.manifest("app", theirs, tag=digest_tag(index, "att"))
    assert run(append_attestation(other, "app", index, key, body))
    merged = json.loads(other.manifests[("app", other.tags[("app", digest_tag(index, "att"))])][0])
    assert [layer.get("annotations", {}).get(KEY_ANNOTATION) for layer in merged["layers"]] == [None, key.key_id]


def test_keys_that_cannot_sign_are_refused_without_being_shown(tmp_path: Path) -> None:
    encrypted = key_file(tmp_path, ec.generate_private_key(ec.SECP256R1()), password=b"secret")
    with pytest.raises(ProvenanceKeyError, match="not an unencrypted PEM private key") as refused:
        load_provenance_key(encrypted)
    assert "BEGIN" not in str(refused.value)
    with pytest.raises(ProvenanceKeyError, match="not an ECDSA P-256 key"):
        load_provenance_key(key_file(tmp_path, ec.generate_private_key(ec.SECP384R1())))
    with pytest.raises(ProvenanceKeyError, match="not an ECDSA P-256 key"):
        load_provenance_key(key_file(tmp_path, rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    with pytest.raises(ProvenanceKeyError, match="cannot be read"):
        load_provenance_key(str(tmp_path / "missing.key"))


def test_a_plan_that_only_attests_is_not_empty_and_survives_the_round_trip() -> None:
    plan = Plan(attest=True)
    assert not plan.empty and plan.summary == "the mirror's provenance attestation"
    assert Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
    assert "attest" not in Plan().to_json()
