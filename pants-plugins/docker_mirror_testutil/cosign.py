"""Cosign-format signatures, attestations and SBOMs, made offline with `cryptography` and pushed
through the registry API, in the layout cosign v2 writes with its default tag scheme; and an
independent verifier, the tests' own oracle.

What this follows (sigstore/cosign v2.4, read from its sources):
- Keys: `cosign generate-key-pair` makes an ECDSA P-256 key and writes `cosign.pub` as a PEM
  "PUBLIC KEY" block of the PKIX (SubjectPublicKeyInfo) DER (`pkg/cosign/keys.go`,
  sigstore's `cryptoutils.MarshalPublicKeyToPEM`). `cosign.key` is the private key encrypted with
  a password (scrypt + secretbox); the tests keep the private key in memory instead.
- Tags (`pkg/oci/remote/remote.go`): `sha256-<hex>.sig`, `.att`, `.sbom` in the image's
  repository, `<hex>` the digest of the signed manifest.
- A signature (`cosign sign --key`, `pkg/oci/static/signature.go`, `pkg/oci/mutate`): an OCI
  image manifest whose config is an OCI image config and whose layers each hold one payload, a
  simple-signing JSON document (sigstore's `payload.Cosign`: `critical.identity.docker-reference`
  the repository, `critical.image.docker-manifest-digest` the digest, `critical.type`
  "cosign container image signature", `optional` its annotations or null), media type
  `application/vnd.dev.cosign.simplesigning.v1+json`, annotated with
  `dev.cosignproject.cosign/signature`: the base64 ASN.1 ECDSA signature (SHA-256) of the payload.
  Signing again appends a layer to the manifest the tag serves (`mutate.AppendSignatures`), so the
  tag moves to a new digest. The config is what go-containerregistry's `mutate.Append` makes of
  an empty image: `{"architecture":"","created":"0001-01-01T00:00:00Z","history":[...],"os":"",
  "rootfs":{"type":"layers","diff_ids":[...]},"config":{}}`, a history entry and a diff ID (the
  payload's digest: it is stored uncompressed) per layer.
- An attestation (`cosign attest --key`, `cmd/cosign/cli/attest/attest.go`): the same layout
  under `.att`; each layer a DSSE envelope (`application/vnd.dsse.envelope.v1+json`, sigstore's
  `dsse.WrapSigner`: `payloadType` `application/vnd.in-toto+json`, `payload` the base64 in-toto
  statement, `signatures` `[{"keyid":"","sig":<base64 signature of the DSSE PAE>}]`), annotated
  with `predicateType` and an empty `dev.cosignproject.cosign/signature`.
- An SBOM (`cosign attach sbom`, `cmd/cosign/cli/attach/sbom.go`, `pkg/oci/static/file.go`): a
  fresh one-layer image under `.sbom` (it replaces what the tag served), the layer the SBOM itself
  with its media type (`text/spdx+json` for SPDX JSON), no annotations.
- Not made: the Rekor bundle (`dev.sigstore.cosign/bundle`) that signing with the transparency
  log adds (these are `--tlog-upload=false` signatures), keyless certificates, and a creation
  time (`--record-creation-timestamp`).

JSON is written as Go writes it (`oci.go_json`), so the documents have the bytes cosign's would.
Needs `cryptography` (a test requirement); otherwise plain stdlib, for `benchmarks/` too.
"""

from __future__ import annotations

import base64
import json
import urllib.error
from typing import Any, Mapping, Optional

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from docker_mirror_testutil.oci import (
    OCI_CONFIG,
    descriptor,
    digest_tag,
    go_json,
    parse_json_object,
)
from docker_mirror_testutil.referrers import attach_artifact
from docker_mirror_testutil.registries import Registry
from docker_mirror.oci.manifests import OCI_MANIFEST, digest_of

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
IN_TOTO = "application/vnd.in-toto+json"
SPDX_JSON_TEXT = "text/spdx+json"  # what `cosign attach sbom --type spdx` names SPDX JSON
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
PREDICATE_TYPE_ANNOTATION = "predicateType"
SIGNATURE_TYPE = "cosign container image signature"
SLSA_PROVENANCE_V02 = "https://slsa.dev/provenance/v0.2"
IN_TOTO_STATEMENT_V01 = "https://in-toto.io/Statement/v0.1"
# Go's zero time, which go-containerregistry writes for an image made from nothing.
GO_ZERO_TIME = "0001-01-01T00:00:00Z"


class SignatureNotVerified(Exception):
    """No signature (or attestation) of a digest verifies against a key; says why."""


def generate_key() -> ec.EllipticCurvePrivateKey:
    """A key as `cosign generate-key-pair` makes it: ECDSA on P-256."""
    return ec.generate_private_key(ec.SECP256R1())


def public_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The public half of `key`, as `cosign generate-key-pair` writes `cosign.pub`."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def signature_tag(digest: str) -> str:
    return digest_tag(digest, "sig")


def attestation_tag(digest: str) -> str:
    return digest_tag(digest, "att")


def sbom_tag(digest: str) -> str:
    return digest_tag(digest, "sbom")


def simple_signing_payload(
    docker_reference: str, digest: str, annotations: Optional[Mapping[str, Any]] = None
) -> bytes:
    """What `cosign sign` signs: the simple-signing document naming `digest`."""
    return go_json(
        {
            "critical": {
                "identity": {"docker-reference": docker_reference},
                "image": {"docker-manifest-digest": digest},
                "type": SIGNATURE_TYPE,
            },
            "optional": dict(sorted(annotations.items())) if annotations else None,
        }
    )


def dsse_pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what a DSSE signature signs."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> str:
    return base64.b64encode(key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()


def _default_reference(registry: Registry, repository: str) -> str:
    """What cosign writes as the repository's name: `<registry>/<repository>`."""
    return f"{registry.address}/{repository}"


def sign(
    registry: Registry,
    repository: str,
    digest: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    docker_reference: Optional[str] = None,
    annotations: Optional[Mapping[str, Any]] = None,
) -> str:
    """Signs `repository@digest` as `cosign sign --key --tlog-upload=false` does: pushes the
    payload and appends its layer to `sha256-<hex>.sig`. Returns the digest the tag then serves."""
    payload = simple_signing_payload(
        docker_reference or _default_reference(registry, repository), digest, annotations
    )
    return _append_layer(
        registry, repository, signature_tag(digest), payload, SIMPLE_SIGNING,
        {SIGNATURE_ANNOTATION: _sign(key, payload)},
    )


def attest(
    registry: Registry,
    repository: str,
    digest: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    predicate_type: str = SLSA_PROVENANCE_V02,
    predicate: Optional[Mapping[str, Any]] = None,
) -> str:
    """Attests `repository@digest` as `cosign attest --key --tlog-upload=false` does: an in-toto
    statement about the digest in a DSSE envelope signed with `key`, appended to
    `sha256-<hex>.att`. Returns the digest the tag then serves."""
    algorithm, _, encoded = digest.partition(":")
    statement = go_json(
        {
            "_type": IN_TOTO_STATEMENT_V01,
            "predicateType": predicate_type,
            "subject": [
                {"name": _default_reference(registry, repository), "digest": {algorithm: encoded}}
            ],
            "predicate": predicate if predicate is not None else {"builder": {"id": "testutil"}},
        }
    )
    envelope = go_json(
        {
            "payloadType": IN_TOTO,
            "payload": base64.b64encode(statement).decode(),
            "signatures": [{"keyid": "", "sig": _sign(key, dsse_pae(IN_TOTO, statement))}],
        }
    )
    return _append_layer(
        registry, repository, attestation_tag(digest), envelope, DSSE_ENVELOPE,
        {SIGNATURE_ANNOTATION: "", PREDICATE_TYPE_ANNOTATION: predicate_type},
    )


def attach_sbom(
    registry: Registry, repository: str, digest: str, sbom: bytes, media_type: str = SPDX_JSON_TEXT
) -> str:
    """Attaches `sbom` to `repository@digest` as `cosign attach sbom` does: a one-layer image
    under `sha256-<hex>.sbom`, replacing what the tag served. Returns its digest."""
    registry.put_blob(repository, sbom)
    return _put_image(
        registry, repository, sbom_tag(digest), _empty_config(), [descriptor(media_type, sbom)]
    )


def _empty_config() -> dict[str, Any]:
    """go-containerregistry's config of an empty image, fields in its order, ready for layers."""
    return {
        "architecture": "",
        "created": GO_ZERO_TIME,
        "history": [],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": {},
    }


def _served(registry: Registry, repository: str, reference: str) -> Optional[bytes]:
    """The manifest `repository:reference` serves, or None if there is none."""
    try:
        return registry.manifest(repository, reference)[0]
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def _append_layer(
    registry: Registry,
    repository: str,
    tag: str,
    blob: bytes,
    media_type: str,
    annotations: Mapping[str, str],
) -> str:
    """Pushes `blob` and appends it as a layer to the image `tag` serves (an empty one if none),
    as cosign appends a signature; returns the new manifest's digest."""
    registry.put_blob(repository, blob)
    served = _served(registry, repository, tag)
    if served is None:
        config, layers = _empty_config(), []
    else:
        manifest = parse_json_object(served, f"{repository}:{tag}")
        config = parse_json_object(
            registry.blob(repository, manifest["config"]["digest"]), f"the config of {tag}"
        )
        layers = manifest["layers"]
    return _put_image(
        registry, repository, tag, config, [*layers, descriptor(media_type, blob, annotations)]
    )


def _put_image(
    registry: Registry,
    repository: str,
    tag: str,
    config: dict[str, Any],
    layers: list[dict[str, Any]],
) -> str:
    """Puts an OCI image under `tag`: `config` (a diff ID and a history entry added for each layer
    past those it lists) and `layers` (descriptors of blobs already pushed), as
    go-containerregistry's `mutate.Append` and `remote.Write` do; returns its digest."""
    diff_ids = config["rootfs"]["diff_ids"]
    for layer in layers[len(diff_ids):]:
        diff_ids.append(layer["digest"])  # stored uncompressed: the diff ID is the digest
        config.setdefault("history", []).append({"created": GO_ZERO_TIME})
    config_blob = go_json(config)
    registry.put_blob(repository, config_blob)
    manifest = go_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config_blob),
            "layers": layers,
        }
    )
    registry.put_manifest(repository, tag, manifest, OCI_MANIFEST)
    return digest_of(manifest)


def _public_key(public_key_pem: bytes) -> ec.EllipticCurvePublicKey:
    key = serialization.load_pem_public_key(public_key_pem)
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SignatureNotVerified("the public key is not an ECDSA P-256 key")
    return key


def _verifies(key: ec.EllipticCurvePublicKey, signature_b64: str, data: bytes) -> bool:
    try:
        key.verify(base64.b64decode(signature_b64, validate=True), data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def _layers(registry: Registry, repository: str, tag: str) -> list[dict[str, Any]]:
    served = _served(registry, repository, tag)
    if served is None:
        raise SignatureNotVerified(f"{registry.address}/{repository}:{tag} does not exist")
    layers = parse_json_object(served, f"{repository}:{tag}").get("layers")
    return layers if isinstance(layers, list) else []


def verify_signature(
    registry: Registry, repository: str, digest: str, public_key_pem: bytes
) -> dict[str, Any]:
    """The payload of a cosign signature of `repository@digest` that verifies against the key
    `public_key_pem` (as `cosign.pub`) and names `digest`, read through the registry API (the
    `.sig` tag, then the payload blobs). Raises `SignatureNotVerified`, with each layer's reason,
    when none does. Independent of the product's code: the tests' oracle."""
    key = _public_key(public_key_pem)
    reasons = []
    for index, layer in enumerate(_layers(registry, repository, signature_tag(digest))):
        if layer.get("mediaType") != SIMPLE_SIGNING:
            reasons.append(f"layer {index}: media type {layer.get('mediaType')!r}")
            continue
        payload = registry.blob(repository, layer["digest"])
        signature = (layer.get("annotations") or {}).get(SIGNATURE_ANNOTATION, "")
        if not _verifies(key, signature, payload):
            reasons.append(f"layer {index}: the signature does not verify against the key")
            continue
        critical = json.loads(payload).get("critical") or {}
        named = (critical.get("image") or {}).get("docker-manifest-digest")
        if critical.get("type") != SIGNATURE_TYPE or named != digest:
            reasons.append(f"layer {index}: the payload names {named!r}, not {digest}")
            continue
        return parse_json_object(payload, "the payload")
    raise SignatureNotVerified(
        f"no signature of {repository}@{digest} verifies: " + ("; ".join(reasons) or "no layers")
    )


def verify_attestation(
    registry: Registry, repository: str, digest: str, public_key_pem: bytes
) -> list[dict[str, Any]]:
    """The in-toto statements about `repository@digest` in its `.att` tag whose DSSE envelope
    verifies against the key. Raises `SignatureNotVerified` when none does."""
    key = _public_key(public_key_pem)
    algorithm, _, encoded = digest.partition(":")
    statements, reasons = [], []
    for index, layer in enumerate(_layers(registry, repository, attestation_tag(digest))):
        envelope = parse_json_object(registry.blob(repository, layer["digest"]), "an envelope")
        statement = base64.b64decode(envelope.get("payload", ""))
        pae = dsse_pae(str(envelope.get("payloadType")), statement)
        if not any(_verifies(key, s.get("sig", ""), pae) for s in envelope.get("signatures", [])):
            reasons.append(f"layer {index}: the envelope's signature does not verify")
            continue
        document = parse_json_object(statement, "the statement")
        subjects = document.get("subject") or []
        if not any(s.get("digest", {}).get(algorithm) == encoded for s in subjects):
            reasons.append(f"layer {index}: the statement is not about {digest}")
            continue
        statements.append(document)
    if not statements:
        raise SignatureNotVerified(
            f"no attestation of {repository}@{digest} verifies: " + "; ".join(reasons)
        )
    return statements


# ---------------------------------------------------------------------------------------------
# cosign v3: a Sigstore bundle attached as an OCI 1.1 referrer

SIGSTORE_BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
IN_TOTO_STATEMENT_V1 = "https://in-toto.io/Statement/v1"


def sign_bundle(
    registry: Registry, repository: str, digest: str, key: ec.EllipticCurvePrivateKey
) -> dict[str, Any]:
    """Signs `repository@digest` as cosign v3's `cosign sign --key` does by default
    (`cmd/cosign/cli/sign/sign.go` `signDigestBundle`, `pkg/oci/remote/write.go`
    `WriteAttestationNewBundleFormat`): an in-toto statement of predicate type
    `https://sigstore.dev/cosign/sign/v1` about the digest, in a DSSE envelope signed with `key`,
    in a Sigstore bundle (v0.3, its public-key hint, no transparency-log entry), pushed as an
    OCI 1.1 referrer whose annotations name the bundle's content and predicate type. Returns its
    referrer descriptor (listed by the fallback tag where the registry has no referrers API)."""
    algorithm, _, encoded = digest.partition(":")
    statement = go_json(
        {
            "_type": IN_TOTO_STATEMENT_V1,
            "subject": [{"digest": {algorithm: encoded}}],
            "predicateType": COSIGN_SIGN_PREDICATE,
            "predicate": {},
        }
    )
    bundle = go_json(
        {
            "mediaType": SIGSTORE_BUNDLE,
            "verificationMaterial": {"publicKey": {"hint": ""}},
            "dsseEnvelope": {
                "payload": base64.b64encode(statement).decode(),
                "payloadType": IN_TOTO,
                "signatures": [{"sig": _sign(key, dsse_pae(IN_TOTO, statement))}],
            },
        }
    )
    return attach_artifact(
        registry, repository, digest, SIGSTORE_BUNDLE, bundle, SIGSTORE_BUNDLE,
        annotations={
            "dev.sigstore.bundle.content": "dsse-envelope",
            "dev.sigstore.bundle.predicateType": COSIGN_SIGN_PREDICATE,
            "org.opencontainers.image.created": "2026-01-01T00:00:00Z",
        },
    )  # fmt: skip


def stranger_bundle(digest: str, count: int) -> bytes:
    """A Sigstore bundle for `digest` whose DSSE envelope holds `count` copies of a valid ECDSA
    signature by a key nobody trusts: each costs a verifier a full check (a hostile source's
    way to burn a mirror's CPU)."""
    algorithm, _, encoded = digest.partition(":")
    statement = json.dumps({"_type": IN_TOTO_STATEMENT_V1, "subject": [{"digest": {algorithm: encoded}}],
                            "predicateType": COSIGN_SIGN_PREDICATE, "predicate": {}}).encode()  # fmt: skip
    signature = _sign(generate_key(), dsse_pae(IN_TOTO, statement))
    return json.dumps({"mediaType": SIGSTORE_BUNDLE, "verificationMaterial": {"publicKey": {"hint": ""}}, "dsseEnvelope": {
        "payload": base64.b64encode(statement).decode(), "payloadType": IN_TOTO,
        "signatures": [{"sig": signature, "keyid": ""}] * count,
    }}).encode()  # fmt: skip
