"""Cosign signatures of an image digest checked offline against public keys (`require_signature`):
simple-signing payloads and Sigstore bundles, as `cosign verify --key` checks them."""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, List, Optional, Sequence, Tuple

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

from docker_mirror.oci.reference import InvalidReference, parse_reference
from docker_mirror.oci.media_types import (
    COSIGN_SIGN_PREDICATE,
    COSIGN_SIMPLE_SIGNING,
    IN_TOTO,
)

SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIMPLE_SIGNING_TYPE = "cosign container image signature"
# A signature payload is a few hundred bytes; a bundle a few KiB with its log entries.
MAX_SIGNATURE_DOCUMENT = 1024 * 1024
# Signatures read of one bundle's DSSE envelope, at most: cosign writes one.
MAX_SIGNATURES_PER_BUNDLE = 4


class InvalidKey(ValueError):
    """A `require_signature` key that is not an ECDSA P-256 public key in PEM."""


@dataclass(frozen=True)
class PublicKey:
    name: str  # where it came from, as the user wrote it: `keys/cosign.pub`
    key: "ec.EllipticCurvePublicKey"


# `cryptography` is imported by the functions that use it: only a run that checks signatures
# needs it, and it is a tenth of the probe's start-up (every copy and read pays the start-up).


def load_public_key(name: str, pem: bytes) -> PublicKey:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidKey(f"{name}: not a PEM public key (as `cosign generate-key-pair` writes cosign.pub)") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise InvalidKey(f"{name}: not an ECDSA P-256 public key (cosign's key type)")
    return PublicKey(name, key)


@dataclass(frozen=True)
class Signature:
    """One signature found for an image, in either layout: the bytes it signs, and what those
    bytes say was signed."""

    where: str  # for messages: `sha256-<hex>.sig layer 1`, `referrer sha256:<12 hex>`
    signed: bytes  # exactly the bytes the signature covers
    signature: bytes
    # The image digest the signed document names, or why it names none.
    names_digest: Optional[str]
    problem: Optional[str] = None
    # The repository it was signed for (a simple-signing payload's
    # `critical.identity.docker-reference`); None if it names none (Sigstore bundles).
    identity: Optional[str] = None


@dataclass(frozen=True)
class Verdict:
    """Whether an image may enter the mirror: `key` is the key that verified a signature naming
    its digest; otherwise `reason` says why not, in one line."""

    verified: bool
    key: Optional[str] = None
    where: Optional[str] = None
    reason: Optional[str] = None


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _b64(text: object) -> Optional[bytes]:
    if not isinstance(text, str):
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def simple_signing_signatures(
    tag: str, layers: Sequence[Tuple[dict, Optional[bytes]]]
) -> List[Signature]:
    """The signatures of a tag-scheme `.sig` manifest: `layers` pairs each layer descriptor
    with its blob (None if it could not be read)."""
    found = []
    for index, (descriptor, payload) in enumerate(layers, start=1):
        if descriptor.get("mediaType") != COSIGN_SIMPLE_SIGNING:
            continue
        where = f"{tag} layer {index}"
        annotations = descriptor.get("annotations")
        signature = _b64(annotations.get(SIGNATURE_ANNOTATION)) if isinstance(annotations, dict) else None
        if signature is None:
            found.append(Signature(where, b"", b"", None, "it has no readable signature annotation"))
            continue
        if payload is None:
            found.append(Signature(where, b"", signature, None, "its payload could not be read"))
            continue
        document = _json(payload)
        critical = document.get("critical") if isinstance(document, dict) else None
        image = critical.get("image") if isinstance(critical, dict) else None
        digest = image.get("docker-manifest-digest") if isinstance(image, dict) else None
        named = critical.get("identity") if isinstance(critical, dict) else None
        identity = named.get("docker-reference") if isinstance(named, dict) else None
        problem = None
        if not isinstance(digest, str):
            digest, problem = None, "its payload names no image digest"
        elif critical.get("type") != SIMPLE_SIGNING_TYPE:  # type: ignore[union-attr]
            digest, problem = None, "its payload is not a cosign container image signature"
        signed_for = identity if isinstance(identity, str) else None
        found.append(Signature(where, payload, signature, digest, problem, signed_for))
    return found


def same_repository(signed_for: Optional[str], repository: str) -> bool:
    """Whether a signature's `docker-reference` (as cosign writes it: `index.docker.io/library/x`,
    `ghcr.io/team/app`, a tag or digest beside it ignored) names `repository`, a source's
    `registry/repository` as an archive names it (Docker Hub's as `docker.io/library/x`)."""
    if signed_for is None:
        return False
    try:
        return parse_reference(signed_for).archive_repository == repository
    except InvalidReference:
        return False


def pre_authentication_encoding(payload_type: str, payload: bytes) -> bytes:
    """What a DSSE signature covers (the DSSE protocol's PAE)."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def bundle_signatures(where: str, bundle: bytes) -> List[Signature]:
    """The signatures of a Sigstore bundle holding a cosign image signature (a DSSE envelope
    around an in-toto statement of predicate type `COSIGN_SIGN_PREDICATE`)."""
    document = _json(bundle)
    envelope = document.get("dsseEnvelope") if isinstance(document, dict) else None
    if not isinstance(envelope, dict):
        return [Signature(where, b"", b"", None, "the bundle holds no DSSE envelope")]
    payload = _b64(envelope.get("payload"))
    payload_type = envelope.get("payloadType")
    if payload is None or not isinstance(payload_type, str):
        return [Signature(where, b"", b"", None, "its DSSE envelope has no readable payload")]
    statement = _json(payload)
    digest, problem = None, None
    if payload_type != IN_TOTO or not isinstance(statement, dict):
        problem = "its DSSE payload is not an in-toto statement"
    elif statement.get("predicateType") != COSIGN_SIGN_PREDICATE:
        problem = f"its statement is not a cosign signature (predicate type {statement.get('predicateType')!r})"
    else:
        subjects = statement.get("subject")
        hexes = []
        for subject in subjects if isinstance(subjects, list) else []:
            digests = subject.get("digest") if isinstance(subject, dict) else None
            value = digests.get("sha256") if isinstance(digests, dict) else None
            if isinstance(value, str):
                hexes.append(value)
        if len(hexes) != 1:
            problem = "its statement does not name exactly one image digest"
        else:
            digest = f"sha256:{hexes[0]}"
    signed = pre_authentication_encoding(payload_type, payload)
    signatures = envelope.get("signatures")
    found = []
    for entry in signatures[:MAX_SIGNATURES_PER_BUNDLE] if isinstance(signatures, list) else []:
        signature = _b64(entry.get("sig")) if isinstance(entry, dict) else None
        if signature is not None:
            found.append(Signature(where, signed, signature, digest, problem))
    return found or [Signature(where, b"", b"", None, "its DSSE envelope holds no signature")]


def _verifies(key: PublicKey, signature: Signature) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key.key.verify(signature.signature, signature.signed, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def verify(
    digest: str, signatures: Iterable[Signature], keys: Sequence[PublicKey], *,
    deadline: Optional[float] = None, clock: Callable[[], float] = time.monotonic,
    identity: Optional[str] = None,
) -> Verdict:  # fmt: skip
    """Whether one of `signatures` verifies against one of `keys` and names `digest` (and, with
    `identity`, was signed for that repository: `same_repository`); with `deadline` (a `clock`
    time), not after it: then the image is refused (each ECDSA check costs about 0.1 ms of CPU,
    and nothing else runs meanwhile)."""
    signatures = list(signatures)
    key_names = ", ".join(key.name for key in keys)
    if not signatures:
        return Verdict(False, reason="it has no cosign signature (no `.sig` tag, no signature referrer)")
    # Why each signature fails, most telling first: a valid signature for another digest beats a
    # signature that verifies against no key.
    wrong_digest = []
    checked = 0
    for signature in signatures:
        for key in keys:
            if deadline is not None and clock() >= deadline:
                return Verdict(False, reason=(
                    f"verification stopped at the deadline after {checked} checks ({len(signatures)} "
                    f"signatures, {len(keys)} keys), none a valid signature of {digest}"
                ))  # fmt: skip
            checked += 1
            if not signature.signature or not signature.signed or not _verifies(key, signature):
                continue
            if signature.names_digest == digest and identity is not None and not same_repository(
                signature.identity, identity
            ):
                signed_for = f"was signed for {signature.identity}" if signature.identity else "names no repository"
                wrong_digest.append(
                    f"{signature.where} verifies against {key.name} and names {digest}, but it {signed_for}, "
                    f"not {identity} (`signature_identity`)"
                )
                continue
            if signature.names_digest == digest:
                return Verdict(True, key=key.name, where=signature.where)
            wrong_digest.append(
                f"{signature.where} verifies against {key.name} but "
                + (signature.problem or f"names {signature.names_digest}, not {digest}")
            )
    if wrong_digest:
        return Verdict(False, reason="; ".join(wrong_digest))
    broken = [f"{s.where}: {s.problem}" for s in signatures if s.problem and not s.signature]
    count = len(signatures)
    reason = (
        f"{count} signature{'s' if count != 1 else ''} found, none verifies against {key_names}"
    )
    if broken:
        reason += f" ({'; '.join(broken)})"
    return Verdict(False, reason=reason)
