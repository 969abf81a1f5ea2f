"""The mirror's own attestation of what it copied: a SLSA provenance v1 statement about the
destination's digest (where it came from, at which digest, whether the gate passed), in a DSSE
envelope signed with `[docker-mirror].provenance_key`, appended to the image's cosign `.att` tag
as `cosign attest` appends. `cosign verify-attestation --key <public key> --type
slsaprovenance1` verifies it (offline: `--insecure-ignore-tlog=true`)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from dataclasses import dataclass
from typing import Any, AsyncIterator, Dict, Optional

from docker_mirror.oci.manifests import digest_of
from docker_mirror.oci.media_types import OCI_MANIFEST
from docker_mirror.probe.referrers import ReferrersError, digest_tag, manifest_parts, updated_tag_manifest
from docker_mirror.probe.signatures import pre_authentication_encoding

SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
IN_TOTO_STATEMENT_V1 = "https://in-toto.io/Statement/v1"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
# cosign's annotations on an attestation layer, and the mirror's own: which key signed it (the
# SHA-256 of the public key's DER), so that a run finds its attestation without reading blobs.
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
PREDICATE_TYPE_ANNOTATION = "predicateType"
KEY_ANNOTATION = "dev.docker-mirror/provenance-key"
# URIs that name, and need not resolve: what kind of run made the image, and which builder.
BUILD_TYPE = "urn:docker-mirror:buildtype:registry-copy:v1"
BUILDER_ID = "urn:docker-mirror:builder:pants"
BUILDER_VERSION = "1"
MAX_KEY_BYTES = 64 * 1024


class ProvenanceKeyError(ValueError):
    """A key that cannot sign: named, never shown."""


@dataclass(frozen=True)
class ProvenanceKey:
    key: Any  # an `ec.EllipticCurvePrivateKey` (P-256)
    key_id: str  # `sha256:<hex>` of the public key's DER


def load_provenance_key(path: str) -> ProvenanceKey:
    """The PEM PKCS#8 (or SEC1) ECDSA P-256 private key at `path`, unencrypted. Its bytes are
    never part of a message."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        with open(path, "rb") as f:
            pem = f.read(MAX_KEY_BYTES + 1)
    except OSError as e:
        raise ProvenanceKeyError(f"the provenance key {path} cannot be read: {e.strerror}") from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (TypeError, ValueError):
        raise ProvenanceKeyError(
            f"the provenance key {path} is not an unencrypted PEM private key (an encrypted one, "
            "such as cosign's own format, is not read: export it with `openssl pkcs8 -nocrypt`)"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ProvenanceKeyError(f"the provenance key {path} is not an ECDSA P-256 key")
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return ProvenanceKey(key, f"sha256:{hashlib.sha256(der).hexdigest()}")


def _time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def statement(
    *, subject: str, destination: str, source: str, source_digest: str, platforms: tuple = (),
    verified_by: Optional[str] = None, identity: Optional[str] = None,
    started: datetime.datetime, finished: datetime.datetime,
) -> bytes:  # fmt: skip
    """The in-toto statement: `destination@subject` was copied from `source` (as written) at
    `source_digest` (the source's index, for a subset of `platforms`)."""
    external: Dict[str, Any] = {"source": source, "destination": destination}
    if platforms:
        external["platforms"] = list(platforms)
    run_details: Dict[str, Any] = {
        "builder": {"id": BUILDER_ID, "version": {"docker-mirror": BUILDER_VERSION}},
        "metadata": {"startedOn": _time(started), "finishedOn": _time(finished)},
    }
    if verified_by is not None:
        gate = {"verifiedBy": verified_by, **({"signedFor": identity} if identity else {})}
        run_details["byproducts"] = [{"name": "require_signature", "annotations": gate}]
    document = {
        "_type": IN_TOTO_STATEMENT_V1,
        "subject": [{"name": destination, "digest": {"sha256": subject.split(":", 1)[1]}}],
        "predicateType": SLSA_PROVENANCE_V1,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "resolvedDependencies": [{"uri": source, "digest": {"sha256": source_digest.split(":", 1)[1]}}],
            },
            "runDetails": run_details,
        },
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def envelope(key: ProvenanceKey, payload: bytes) -> bytes:
    """A DSSE envelope of `payload` signed with `key` (ECDSA P-256, SHA-256, over the PAE)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    signature = key.key.sign(pre_authentication_encoding(IN_TOTO_PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
    return json.dumps(
        {
            "payloadType": IN_TOTO_PAYLOAD_TYPE,
            "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": "", "sig": base64.b64encode(signature).decode()}],
        },
        separators=(",", ":"),
    ).encode()


def layer(key: ProvenanceKey, body: bytes) -> Dict[str, Any]:
    return {
        "mediaType": DSSE_ENVELOPE,
        "digest": digest_of(body),
        "size": len(body),
        "annotations": {SIGNATURE_ANNOTATION: "", PREDICATE_TYPE_ANNOTATION: SLSA_PROVENANCE_V1, KEY_ANNOTATION: key.key_id},
    }


def attestation_manifest(layer_descriptor: Dict[str, Any]) -> tuple:
    """(manifest, config) of a `.att` tag holding only this layer, as cosign writes one."""
    config = json.dumps(
        {"architecture": "", "config": {}, "created": "0001-01-01T00:00:00Z",
         "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
         "rootfs": {"type": "layers", "diff_ids": [layer_descriptor["digest"]]}},
        separators=(",", ":"),
    ).encode()  # fmt: skip
    manifest = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
         "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": len(config)},
         "layers": [layer_descriptor]},
        separators=(",", ":"),
    ).encode()  # fmt: skip
    return manifest, config


def attested_by(manifest: Optional[bytes], key_id: str) -> bool:
    """Whether a `.att` manifest holds a layer the mirror wrote with this key."""
    if manifest is None:
        return False
    try:
        layers = manifest_parts(manifest, "the destination's .att manifest").layers
    except ReferrersError:
        return False
    for descriptor in layers:
        annotations = descriptor.fields.get("annotations")
        if isinstance(annotations, dict) and annotations.get(KEY_ANNOTATION) == key_id:
            return True
    return False


async def append_attestation(registry: Any, repository: str, subject: str, key: ProvenanceKey, body: bytes) -> bool:
    """Appends the envelope `body` to `subject`'s `.att` tag in `repository` (a `Registry`),
    keeping what it holds; False if it holds an attestation by this key already."""
    tag = digest_tag(subject, "att")
    descriptor = layer(key, body)
    mine, config = attestation_manifest(descriptor)
    current = await registry.get_manifest(repository, tag)
    if current is not None and attested_by(current[0], key.key_id):
        return False

    async def one(data: bytes) -> AsyncIterator[bytes]:
        yield data

    await registry.put_blob(repository, descriptor["digest"], len(body), lambda: one(body))
    if current is None:
        await registry.put_blob(repository, digest_of(config), len(config), lambda: one(config))
        await registry.put_manifest(repository, tag, mine, OCI_MANIFEST)
        return True
    parts = manifest_parts(current[0], f"{tag} of {repository}")
    current_config = (
        await registry.read_blob(repository, parts.config.digest, 1024 * 1024)
        if parts.config is not None and parts.config.size <= 1024 * 1024
        else None
    )
    update = updated_tag_manifest(current[0], current_config, mine)
    if update is None:
        return False
    manifest, new_config = update
    if new_config is not None:
        await registry.put_blob(repository, digest_of(new_config), len(new_config), lambda: one(new_config))
    elif manifest == mine:  # the tag held nothing of its own: ours as is
        await registry.put_blob(repository, digest_of(config), len(config), lambda: one(config))
    await registry.put_manifest(repository, tag, manifest, current[1] or OCI_MANIFEST)
    return True

