"""What refers to an image digest (cosign's tag scheme and OCI 1.1 referrers), and what a mirror
must copy so that the destination refers to it the same way: pure functions, no I/O."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Collection, Dict, Iterable, Mapping, Optional, Sequence, Tuple

from docker_mirror.oci import media_types
from docker_mirror.oci.manifests import digest_of
from docker_mirror.oci.probe_protocol import CopyItem, Listing
from docker_mirror.oci.media_types import (
    BUNDLE_PREDICATE_ANNOTATION,
    COSIGN_SIGN_PREDICATE,
    DIGEST,
    INDEX_MEDIA_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
)


# cosign's tag suffixes and what each holds.
COSIGN_TAG_KINDS = {"sig": "signature", "att": "attestation", "sbom": "SBOM"}

# What a referrer is, by its artifact type (or, for a Sigstore bundle, its predicate type).
_KIND_OF_ARTIFACT_TYPE = {
    media_types.COSIGN_SIGNATURE_ARTIFACT: "signature",
    media_types.NOTARY_SIGNATURE: "signature",
    media_types.COSIGN_ATTESTATION_ARTIFACT: "attestation",
    media_types.IN_TOTO: "attestation",
    media_types.DSSE_ENVELOPE: "attestation",
    media_types.COSIGN_SBOM_ARTIFACT: "SBOM",
    media_types.SPDX_JSON_APPLICATION: "SBOM",
    media_types.SPDX_JSON: "SBOM",
    media_types.SPDX: "SBOM",
    media_types.CYCLONEDX_JSON: "SBOM",
    media_types.CYCLONEDX_XML: "SBOM",
    media_types.SYFT_JSON: "SBOM",
}

# A referrer that is itself an index (a multi-platform SBOM, say) is copied with its children,
# to this depth; an image has a handful of referrers, and a listing more than this many is not
# a mirror's to copy.
MAX_DEPTH = 2
MAX_REFERRERS = 1000
# A listing is written at the destination as one manifest, which registries take up to 4 MiB;
# the referrers API's pages are read to this many bytes in all.
MAX_LISTING_BYTES = 4 * 1024 * 1024
# What copying one image's referrers may read and write: manifests (every one of each
# referrer's graph, its children too), and bytes (those manifests and the blobs they name,
# by their declared sizes, whether or not the destination has them).
MAX_COPY_MANIFESTS = 1024
MAX_COPY_BYTES = 1024 * 1024 * 1024


class ReferrersError(ValueError):
    """A manifest or listing that cannot be read as the schemes define it."""


class BoundExceeded(ReferrersError):
    """Copying an image's referrers would pass one of its bounds (manifests, bytes, time)."""


def digest_tag(digest: str, suffix: Optional[str] = None) -> str:
    """`sha256-<hex>` (the referrers fallback tag), or with `suffix` cosign's `sha256-<hex>.sig`."""
    if not DIGEST.fullmatch(digest):
        raise ReferrersError(f"not a sha256 digest: {digest!r}")
    tag = digest.replace(":", "-", 1)
    return f"{tag}.{suffix}" if suffix else tag


def _document(raw: bytes, what: str) -> Dict[str, Any]:
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        raise ReferrersError(f"{what} is not JSON") from None
    if not isinstance(document, dict):
        raise ReferrersError(f"{what} is not a JSON object")
    return document


@dataclass(frozen=True)
class Descriptor:
    """An OCI descriptor, with the JSON object it was read from kept as written (so that a
    listing the mirror writes carries every field the source gave: platform, annotations...)."""

    digest: str
    media_type: str
    size: int
    document: str  # the descriptor's JSON object, keys sorted

    @classmethod
    def read(cls, value: object, what: str) -> Descriptor:
        if not isinstance(value, dict):
            raise ReferrersError(f"{what} is not a descriptor")
        digest, size, media_type = value.get("digest"), value.get("size"), value.get("mediaType")
        if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
            raise ReferrersError(f"{what} has no sha256 digest (only sha256 is supported)")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ReferrersError(f"{what} has no valid size")
        if not isinstance(media_type, str) or not media_type:
            raise ReferrersError(f"{what} has no media type")
        return cls(digest, media_type, size, json.dumps(value, sort_keys=True, separators=(",", ":")))

    @property
    def fields(self) -> Dict[str, Any]:
        fields: Dict[str, Any] = json.loads(self.document)
        return fields

    @property
    def artifact_type(self) -> Optional[str]:
        value = self.fields.get("artifactType")
        return value if isinstance(value, str) else None

    @property
    def annotations(self) -> Mapping[str, str]:
        value = self.fields.get("annotations")
        if not isinstance(value, dict):
            return {}
        return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_MEDIA_TYPES

    @property
    def kind(self) -> str:
        """`signature`, `attestation`, `SBOM` or `artifact`, for the summary."""
        artifact_type = self.artifact_type or ""
        if artifact_type.startswith(media_types.SIGSTORE_BUNDLE_PREFIX):
            predicate = self.annotations.get(BUNDLE_PREDICATE_ANNOTATION)
            return "signature" if predicate == COSIGN_SIGN_PREDICATE else "attestation"
        return _KIND_OF_ARTIFACT_TYPE.get(artifact_type, "artifact")


def index_entries(raw: bytes, what: str = "the referrers index") -> Tuple[Descriptor, ...]:
    """The descriptors an image index lists: a referrers API answer, or a fallback index."""
    document = _document(raw, what)
    entries = document.get("manifests")
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise ReferrersError(f"{what} has no list of manifests")
    if len(entries) > MAX_REFERRERS:
        raise ReferrersError(f"{what} lists more than {MAX_REFERRERS} manifests")
    return tuple(Descriptor.read(entry, f"{what}'s entry {i + 1}") for i, entry in enumerate(entries))


def listing_index(entries: Iterable[Descriptor]) -> bytes:
    """The image index that lists `entries`, as the mirror writes it: one entry per digest, in
    digest order, so the same referrers always make the same bytes (and digest)."""
    unique = {entry.digest: entry for entry in entries}
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [unique[digest].fields for digest in sorted(unique)],
    }
    return json.dumps(document, separators=(",", ":")).encode()


def merged_listing(existing: Optional[bytes], additions: Sequence[Descriptor]) -> Optional[bytes]:
    """The destination's fallback index with `additions` listed too: every entry it had stays,
    with its fields as written, and the additions it lacks are appended. None when it lacks
    none (nothing to write). Without an existing index, the additions' own listing."""
    if existing is None:
        return listing_index(additions) if additions else None
    document = _document(existing, "the destination's fallback index")
    entries = document.get("manifests")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise ReferrersError("the destination's fallback index has no list of manifests")
    listed = {entry.get("digest") for entry in entries if isinstance(entry, dict)}
    missing = [a for a in additions if a.digest not in listed]
    if not missing:
        return None
    merged = dict(document)
    merged["manifests"] = entries + [a.fields for a in missing]
    merged.setdefault("schemaVersion", 2)
    merged.setdefault("mediaType", OCI_INDEX)
    return json.dumps(merged, separators=(",", ":")).encode()


@dataclass(frozen=True)
class ManifestParts:
    """What a manifest needs at the destination before it can be written there."""

    media_type: str
    config: Optional[Descriptor]
    layers: Tuple[Descriptor, ...]
    manifests: Tuple[Descriptor, ...]  # an index's children
    subject: Optional[str]

    @property
    def blobs(self) -> Tuple[Descriptor, ...]:
        return ((self.config,) if self.config else ()) + self.layers


def manifest_parts(raw: bytes, what: str = "the manifest") -> ManifestParts:
    document = _document(raw, what)
    media_type = document.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        media_type = OCI_INDEX if "manifests" in document else OCI_MANIFEST
    subject = document.get("subject")
    subject_digest = Descriptor.read(subject, f"{what}'s subject").digest if subject is not None else None
    if media_type in INDEX_MEDIA_TYPES:
        return ManifestParts(media_type, None, (), index_entries(raw, what), subject_digest)
    config = document.get("config")
    layers = document.get("layers") or []
    if not isinstance(layers, list):
        raise ReferrersError(f"{what} has no list of layers")
    return ManifestParts(
        media_type,
        Descriptor.read(config, f"{what}'s config") if config is not None else None,
        tuple(Descriptor.read(layer, f"{what}'s layer {i + 1}") for i, layer in enumerate(layers)),
        (),
        subject_digest,
    )


def short(digest: str) -> str:
    """`sha256:` and 12 hex digits, for messages kept to one line of 300 characters."""
    return digest[:19]


def check_subject(
    subject: Optional[str], image: str, what: str, children: Collection[str] = ()
) -> None:
    """Refuses a manifest whose `subject` names another image than the one being mirrored (or
    one of `children`, the platform manifests of its index): written at a destination with the
    referrers API, it would be listed as a referrer of that other image (an SBOM or attestation
    forged for an image mirrored from elsewhere)."""
    if subject is not None and subject != image and subject not in children:
        raise ReferrersError(
            f"{what} names {subject} as its subject, not the image being mirrored ({short(image)}): refused"
        )


def listing_entries(raw: bytes, image: str, what: str) -> Tuple[Descriptor, ...]:
    """The entries of a listing of `image`'s referrers (a fallback index, or one the mirror
    made of the referrers API's answer), refused unless it is an image index within the
    bounds that names no other subject: it is written at the destination as it is."""
    if len(raw) > MAX_LISTING_BYTES:
        raise ReferrersError(f"{what} is larger than {MAX_LISTING_BYTES} bytes")
    document = _document(raw, what)
    subject = document.get("subject")
    if subject is not None:
        check_subject(Descriptor.read(subject, f"{what}'s subject").digest, image, what)
    media_type = document.get("mediaType")
    if media_type is not None and media_type not in INDEX_MEDIA_TYPES:
        raise ReferrersError(f"{what} is not an image index (its media type is {media_type!r})")
    return index_entries(raw, what)


class CopyBudget:
    """The bounds of copying one image's referrers, checked on every manifest read before
    anything of it is written (`accept`, the transfer's hook): its `subject` must be the image
    or one of its platform manifests `children` (or absent), and the manifests, bytes and time
    spent so far must stay within bounds."""

    def __init__(
        self, image: str, where: str, *, deadline: Optional[float] = None,
        clock: Callable[[], float] = time.monotonic, max_manifests: int = MAX_COPY_MANIFESTS,
        max_bytes: int = MAX_COPY_BYTES, children: Collection[str] = (),
    ) -> None:  # fmt: skip
        self.image, self.where = image, where
        self.children = frozenset(children)
        self.deadline, self.clock = deadline, clock
        self.max_manifests, self.max_bytes = max_manifests, max_bytes
        self.manifests = 0
        self.bytes = 0

    def check_time(self, before: str) -> None:
        if self.deadline is not None and self.clock() >= self.deadline:
            raise BoundExceeded(f"the copy of the referrers of {short(self.image)} reached its deadline before {before}")

    def accept(self, digest: str, body: bytes) -> None:
        """Raises `ReferrersError` (`BoundExceeded` for a bound) if the manifest `digest` of
        body `body`, read at the source, must not be written."""
        what = f"manifest {digest} at {self.where}"
        parts = manifest_parts(body, what)
        check_subject(parts.subject, self.image, what, self.children)
        self.check_time(f"{short(digest)} was written")
        size = len(body) + sum(blob.size for blob in parts.blobs)
        if self.manifests + 1 > self.max_manifests:
            raise BoundExceeded(
                f"the referrers of {short(self.image)} are more than the {self.max_manifests} manifests "
                f"copied per image: stopped before {short(digest)}"
            )
        if self.bytes + size > self.max_bytes:
            raise BoundExceeded(
                f"the referrers of {short(self.image)} are more than the {self.max_bytes} bytes copied per "
                f"image: stopped before {short(digest)} ({size} bytes with its blobs)"
            )
        self.manifests += 1
        self.bytes += size


def updated_tag_manifest(
    destination: bytes, destination_config: Optional[bytes], source: bytes
) -> Optional[Tuple[bytes, Optional[bytes]]]:
    """What to write under a cosign tag (`.sig`, `.att`, `.sbom`) that the destination already
    serves with another manifest: (manifest, its new config or None), or None to leave it.

    - The destination holds nothing the source lacks (an older copy of the source's): the
      source's manifest, as is.
    - It holds layers the source lacks (someone signed the mirrored image at the mirror): its
      manifest with the source's missing layers appended, as `cosign sign` appends a signature,
      and its config's `rootfs.diff_ids` extended to match (a new config blob).
    - It holds every source layer already: None.
    """
    have = manifest_parts(destination, "the destination's manifest")
    want = manifest_parts(source, "the source's manifest")
    # A layer is a signature by its descriptor as a whole: cosign's payload for one image is
    # the same bytes (one digest) whoever signs it, and the signature is in the annotations.
    present = {layer.document for layer in have.layers}
    wanted = {layer.document for layer in want.layers}
    if present <= wanted:
        return source, None
    missing = [layer for layer in want.layers if layer.document not in present]
    if not missing:
        return None
    document = _document(destination, "the destination's manifest")
    document["layers"] = list(document.get("layers") or []) + [layer.fields for layer in missing]
    config = None
    if destination_config is not None:
        try:
            config_document = json.loads(destination_config)
        except (ValueError, RecursionError):
            config_document = None
        rootfs = config_document.get("rootfs") if isinstance(config_document, dict) else None
        if isinstance(rootfs, dict) and isinstance(rootfs.get("diff_ids"), list):
            rootfs["diff_ids"] = list(rootfs["diff_ids"]) + [layer.digest for layer in missing]
            history = config_document.get("history")
            if isinstance(history, list) and history:
                config_document["history"] = history + [dict(history[-1]) for _ in missing]
            config = json.dumps(config_document, separators=(",", ":")).encode()
            document["config"] = dict(document["config"], digest=digest_of(config), size=len(config))
    return json.dumps(document, separators=(",", ":")).encode(), config


# ---------------------------------------------------------------------------------------------
# What to copy


def tag_kind(tag: str) -> str:
    return COSIGN_TAG_KINDS.get(tag.rpartition(".")[2], "artifact")


def stale_tags(
    source_tags: Iterable[Tuple[str, str]],
    destination_tags: Mapping[str, Optional[str]],
    kept_at_destination: Iterable[str],
    media_types: Mapping[str, str],
) -> Tuple[CopyItem, ...]:
    """The cosign tags ((tag, digest) at the source) to copy: those whose destination tag does
    not serve the source's digest, unless the destination keeps that digest already (it merged
    the tag with its own)."""
    kept = set(kept_at_destination)
    return tuple(
        CopyItem(tag_kind(tag), digest, media_types.get(digest, OCI_MANIFEST), tag=tag)
        for tag, digest in source_tags
        if destination_tags.get(tag) != digest and digest not in kept
    )


def missing_referrers(
    listing: Listing, destination_lists: Iterable[Descriptor]
) -> Tuple[CopyItem, ...]:
    """The referrers of `listing` that the destination does not list."""
    listed = {d.digest for d in destination_lists}
    return tuple(
        CopyItem(entry.kind, entry.digest, entry.media_type)
        for entry in index_entries(listing.raw)
        if entry.digest not in listed
    )
