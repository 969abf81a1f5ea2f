"""Finding what refers to an image and what a destination lacks of it (`find`), and copying that
behind the `require_signature` gate (`copy`), with `HEAD`s only when nothing changed."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import (
    AsyncIterable, AsyncIterator, Awaitable, Callable, Dict, FrozenSet, List, Optional, Protocol, Sequence, Tuple,
)  # fmt: skip

from docker_mirror.oci.media_types import (
    BUNDLE_PREDICATE_ANNOTATION,
    COSIGN_SIGN_PREDICATE,
    INDEX_MEDIA_TYPES,
    OCI_INDEX,
    SIGSTORE_BUNDLE_PREFIX,
)
from docker_mirror.probe.referrers import (
    COSIGN_TAG_KINDS,
    CopyBudget,
    Descriptor,
    ReferrersError,
    digest_tag,
    index_entries,
    listing_entries,
    listing_index,
    manifest_parts,
    merged_listing,
    missing_referrers,
    short,
    stale_tags,
    tag_kind,
    updated_tag_manifest,
)
from docker_mirror.oci.manifests import digest_of
from docker_mirror.oci.probe_protocol import CopyItem, CopyResult, Listing, Plan
from docker_mirror.probe.registry import RegistryError
from docker_mirror.probe.transfer import copy_manifest
from docker_mirror.probe.signatures import (
    MAX_SIGNATURE_DOCUMENT,
    PublicKey,
    Signature,
    Verdict,
    bundle_signatures,
    simple_signing_signatures,
    verify,
)

# Signatures read for the gate, at most: an image has a handful (and a bundle holds at most
# `MAX_SIGNATURES_PER_BUNDLE`).
MAX_SIGNATURES = 32
# An image index's platform manifests whose referrers are looked for, at most: official images
# list 6 to 8 platforms and as many attestation manifests.
MAX_PLATFORM_MANIFESTS = 64


@dataclass(frozen=True)
class Served:
    digest: str
    media_type: Optional[str]


class Registry(Protocol):
    """What this module needs of one registry (`distribution.Distribution` provides it). Every
    method raises `RegistryError` for anything but success and "not there"."""

    name: str

    async def head_manifest(self, repository: str, reference: str) -> Optional[Served]:
        """What `reference` (a tag or digest) serves; None if nothing (404)."""

    async def get_manifest(self, repository: str, reference: str) -> Optional[Tuple[bytes, str]]:
        """(body, media type), the body checked against `reference` when it is a digest; None
        if nothing (404)."""

    async def digest_tags(self, repository: str) -> Optional[FrozenSet[str]]:
        """Which tags of `repository` name a digest (`sha256-<hex>`, `sha256-<hex>.sig`...), as
        its tag list says, read once per run for every image; None when it was not read."""

    async def referrers(self, repository: str, digest: str) -> Optional[bytes]:
        """The referrers API's index for `digest` (every page's entries), or None when the
        registry has no referrers API."""

    async def read_blob(self, repository: str, digest: str, limit: int) -> bytes:
        """A small blob, whole (at most `limit` bytes), checked against its digest."""

    def blob_chunks(self, repository: str, digest: str, size: int) -> AsyncIterator[bytes]:
        """A blob streamed in chunks, checked against its size and digest by the end."""

    async def has_blob(self, repository: str, digest: str) -> bool:
        ...

    async def mount_blob(self, repository: str, digest: str, source_repository: str) -> bool:
        """Links a blob of another repository of this registry; False if the registry would
        rather have it uploaded."""

    async def put_blob(
        self, repository: str, digest: str, size: int, chunks: Callable[[], AsyncIterable[bytes]]
    ) -> None:
        """Uploads a blob; `chunks` makes its stream (afresh, should it be sent again)."""

    async def put_manifest(
        self, repository: str, reference: str, body: bytes, media_type: str
    ) -> bool:
        """Writes a manifest under a tag or its digest; True when the registry says it lists
        the manifest's subject as a referrer itself (the `OCI-Subject` header)."""


@dataclass(frozen=True)
class Location:
    registry: Registry
    repository: str

    def __str__(self) -> str:
        # An archive says where in it: `registry/repository in the archive <path>`.
        where = getattr(self.registry, "where", None)
        return where(self.repository) if where is not None else f"{self.registry.name}/{self.repository}"


# ---------------------------------------------------------------------------------------------
# Finding


@dataclass
class ChildListing:
    """How the source lists the referrers of one platform manifest of an image index."""

    subject: str
    digest: str
    listing: Optional[Listing] = None  # read when it is known (the API's), or was needed


@dataclass
class Found:
    """What refers to `subject` at the source, and a plan per destination repository. For an
    image index, what refers to its platform manifests too: their cosign tags are in `tags`
    (each names its own digest), their listings in `child_listings`, and `children` are the
    platform manifests that have either."""

    subject: str
    tags: Tuple[Tuple[str, str], ...] = ()
    media_types: Dict[str, str] = field(default_factory=dict)
    listing_digest: Optional[str] = None
    listing: Optional[Listing] = None  # read when it is known (the API's), or was needed
    plans: List[Plan] = field(default_factory=list)  # one per destination, in order
    children: Tuple[str, ...] = ()
    child_listings: List[ChildListing] = field(default_factory=list)

    def _own(self, tag: str) -> bool:
        return tag.startswith(digest_tag(self.subject))

    def counts(self) -> Dict[str, int]:
        """By kind: the cosign tags, and the referrers listed, when the listing was read."""
        kinds = [tag_kind(tag) for tag, _ in self.tags if self._own(tag)]
        kinds += [entry.kind for entry in index_entries(self.listing.raw)] if self.listing else []
        return dict(Counter(kinds))

    def platform_counts(self) -> Dict[str, int]:
        """The same, of the platform manifests (listings counted once they are read)."""
        kinds = [tag_kind(tag) for tag, _ in self.tags if not self._own(tag)]
        kinds += [
            entry.kind
            for child in self.child_listings
            if child.listing is not None
            for entry in index_entries(child.listing.raw)
        ]
        return dict(Counter(kinds))


async def _source_listing(
    source: Location, subject: str, listed: Optional[FrozenSet[str]] = None
) -> Tuple[Optional[str], Optional[Listing], bool]:
    """(digest of the source's listing, the listing when it was read, whether the source has
    the referrers API): the API's answer, as `listing_index` writes it; or, without the API,
    the fallback tag's digest alone (its `HEAD`, unless the tag list `listed` says there is no
    such tag)."""
    answer = await source.registry.referrers(source.repository, subject)
    if answer is not None:
        entries = index_entries(answer, f"the referrers of {subject} at {source}")
        if not entries:
            return None, None, True
        listing = Listing.of(listing_index(entries))
        return listing.digest, listing, True
    tag = digest_tag(subject)
    if listed is not None and tag not in listed:
        return None, None, False
    served = await source.registry.head_manifest(source.repository, tag)
    return (served.digest if served else None), None, False


async def _read_listing(location: Location, digest: str, subject: str) -> Listing:
    got = await location.registry.get_manifest(location.repository, digest)
    if got is None:
        raise RegistryError("error", f"{location} no longer serves the referrers index {digest}")
    listing_entries(got[0], subject, f"the referrers index {digest} at {location} (the fallback tag {digest_tag(subject)})")
    return Listing(digest, got[0])


async def _destination_lists(destination: Location, subject: str) -> Tuple[Descriptor, ...]:
    """What the destination lists as referring to `subject`: by its referrers API, or its
    fallback tag."""
    answer = await destination.registry.referrers(destination.repository, subject)
    if answer is None:
        got = await destination.registry.get_manifest(destination.repository, digest_tag(subject))
        answer = got[0] if got else None
    return index_entries(answer, f"the referrers of {subject} at {destination}") if answer else ()


async def _listing_plan(
    source: Location, destination: Location, subject: str, digest: str, read: Optional[Listing]
) -> Tuple[Optional[Listing], Tuple[CopyItem, ...]]:
    """(the listing to write, the referrers it names that `destination` lacks), or (None, ())
    when the destination keeps the listing `digest` already."""
    if await destination.registry.head_manifest(destination.repository, digest):
        return None, ()
    listing = read or await _read_listing(source, digest, subject)
    return listing, missing_referrers(listing, await _destination_lists(destination, subject))


async def _plan(found: Found, source: Location, destination: Location) -> Plan:
    tags = [tag for tag, _ in found.tags]
    served = await asyncio.gather(
        *(destination.registry.head_manifest(destination.repository, tag) for tag in tags)
    )
    destination_tags = {tag: s.digest if s else None for tag, s in zip(tags, served)}
    # A tag serving another manifest may have been merged with the destination's own
    # signatures: then the source's manifest is there under its digest.
    others = [digest for tag, digest in found.tags if destination_tags[tag] != digest]
    kept = await asyncio.gather(
        *(destination.registry.head_manifest(destination.repository, digest) for digest in others)
    )
    items = stale_tags(
        found.tags, destination_tags, [digest for digest, there in zip(others, kept) if there],
        found.media_types,
    )
    listing = None
    if found.listing_digest is not None:
        listing, missing = await _listing_plan(source, destination, found.subject, found.listing_digest, found.listing)
        found.listing = listing or found.listing
        items += missing
    child_listings: List[Tuple[str, Listing]] = []
    for child in found.child_listings:
        child_listing, missing = await _listing_plan(source, destination, child.subject, child.digest, child.listing)
        if child_listing is not None:
            child.listing = child_listing
            child_listings.append((child.subject, child_listing))
        items += missing
    return Plan(items, listing, found.children, tuple(child_listings))


async def _index_body(source: Location, subject: str, destinations: Sequence[Location]) -> bytes:
    """The body of the image index `subject`: from a destination that keeps it already (a
    re-mirror then asks the source for nothing more), else from the source."""
    for location in [*destinations, source]:
        got = await location.registry.get_manifest(location.repository, subject)
        if got is not None and digest_of(got[0]) == subject:
            return got[0]
    raise RegistryError("error", f"{source} no longer serves {subject}")


async def _platform_manifests(
    source: Location, subject: str, media_type: Optional[str], destinations: Sequence[Location],
    listed: Optional[FrozenSet[str]], api: bool,
) -> Tuple[str, ...]:  # fmt: skip
    """The platform manifests of `subject` whose referrers must be looked for: none for a
    single manifest; for an image index, its entries that are manifests, once the tag list
    `listed` names a digest tag of another manifest than `subject` (or cannot be read) or the
    source has the referrers API (its body is read only then)."""
    own = digest_tag(subject)
    if listed is not None and not api and all(tag.startswith(own) for tag in listed):
        return ()
    if media_type is None:  # an image pinned by digest: its `HEAD` says what it is
        served = await source.registry.head_manifest(source.repository, subject)
        media_type = served.media_type if served else None
    if media_type not in INDEX_MEDIA_TYPES:  # (the image's own read reports one not served)
        return ()
    parts = manifest_parts(await _index_body(source, subject, destinations), f"the image index {subject}")
    children = tuple(dict.fromkeys(entry.digest for entry in parts.manifests if not entry.is_index))
    if len(children) > MAX_PLATFORM_MANIFESTS:
        raise ReferrersError(
            f"the image index {short(subject)} lists more than {MAX_PLATFORM_MANIFESTS} manifests: "
            "their referrers are not looked for, and the image is not copied"
        )
    if listed is None or api:
        return children
    return tuple(child for child in children if any(tag.startswith(digest_tag(child)) for tag in listed))


async def _served_tags(
    source: Location, subject: str, listed: Optional[FrozenSet[str]]
) -> List[Tuple[str, Served]]:
    """cosign's tags of `subject` that the source serves: those the tag list names (all of
    them, by `HEAD`, without one)."""
    tags = [digest_tag(subject, suffix) for suffix in COSIGN_TAG_KINDS]
    tags = [tag for tag in tags if listed is None or tag in listed]
    served = await asyncio.gather(*(source.registry.head_manifest(source.repository, tag) for tag in tags))
    return [(tag, s) for tag, s in zip(tags, served) if s is not None]


async def find(
    source: Location, subject: str, destinations: Sequence[Location], media_type: Optional[str] = None,
    *, platform_manifests: Optional[Sequence[str]] = None,
) -> Found:  # fmt: skip
    """What refers to `subject` at `source` (of media type `media_type`, when known), and what
    each of `destinations` lacks of it: the source's tag list (one read for all images of its
    repository) says which of cosign's tags and the fallback tag exist, and only those get a
    `HEAD`; without it, all of them do. An image index's platform manifests are looked for the
    same way (`_platform_manifests`). With `platform_manifests` (the index is mirrored filtered,
    under another digest, which nothing at the source refers to), only those are."""
    listed = await source.registry.digest_tags(source.repository)
    if platform_manifests is None:
        served, (listing_digest, listing, api) = await asyncio.gather(
            _served_tags(source, subject, listed), _source_listing(source, subject, listed)
        )
        children = await _platform_manifests(source, subject, media_type, destinations, listed, api)
    else:
        served, listing_digest, listing, children = [], None, None, tuple(platform_manifests)
    of_children = await asyncio.gather(
        *(asyncio.gather(_served_tags(source, child, listed), _source_listing(source, child, listed))
          for child in children)
    )  # fmt: skip
    for child_tags, _ in of_children:
        served += child_tags
    found = Found(
        subject,
        tags=tuple((tag, s.digest) for tag, s in served),
        media_types={s.digest: s.media_type for _, s in served if s.media_type},
        listing_digest=listing_digest,
        listing=listing,
        child_listings=[
            ChildListing(child, digest, read)
            for child, (_, (digest, read, _)) in zip(children, of_children)
            if digest is not None
        ],
    )
    found.children = tuple(
        child
        for child, (child_tags, (digest, _, _)) in zip(children, of_children)
        if child_tags or digest is not None
    )
    for destination in destinations:
        found.plans.append(await _plan(found, source, destination))
    return found


# ---------------------------------------------------------------------------------------------
# The gate


async def _signatures(
    source: Location, subject: str, listing: Optional[Listing], budget: Optional[CopyBudget] = None
) -> List[Signature]:
    """Every cosign signature of `subject` at the source: the layers of its `.sig` manifest, and
    its Sigstore bundle referrers (read one after the other until `budget`'s deadline)."""
    found: List[Signature] = []
    tag = digest_tag(subject, "sig")
    got = await source.registry.get_manifest(source.repository, tag)
    if got is not None:
        layers = manifest_parts(got[0], f"{tag} at {source}").layers[:MAX_SIGNATURES]
        payloads = await asyncio.gather(
            *(source.registry.read_blob(source.repository, layer.digest, MAX_SIGNATURE_DOCUMENT)
              for layer in layers)
        )  # fmt: skip
        found += simple_signing_signatures(tag, [(l.fields, p) for l, p in zip(layers, payloads)])
    bundles = [
        entry for entry in (index_entries(listing.raw) if listing else ())
        if (entry.artifact_type or "").startswith(SIGSTORE_BUNDLE_PREFIX)
        and entry.annotations.get(BUNDLE_PREDICATE_ANNOTATION, COSIGN_SIGN_PREDICATE) == COSIGN_SIGN_PREDICATE
    ][:MAX_SIGNATURES]  # fmt: skip
    for entry in bundles:
        if budget is not None:
            budget.check_time("its signatures were read")
        where = f"referrer {entry.digest[:19]}"
        manifest = await source.registry.get_manifest(source.repository, entry.digest)
        layers = manifest_parts(manifest[0], where).layers if manifest else ()
        for layer in layers[:1]:
            bundle = await source.registry.read_blob(source.repository, layer.digest, MAX_SIGNATURE_DOCUMENT)
            found += bundle_signatures(where, bundle)
    return found


async def check_signature(
    source: Location, subject: str, keys: Sequence[PublicKey], listing: Optional[Listing],
    budget: Optional[CopyBudget] = None, identity: Optional[str] = None,
) -> Verdict:
    """Whether `subject` may enter the mirror (signed for the repository `identity`, if given);
    refused when `budget`'s deadline comes first."""
    signatures = await _signatures(source, subject, listing, budget)
    if budget is None or budget.deadline is None:
        return verify(subject, signatures, keys, identity=identity)
    return verify(subject, signatures, keys, deadline=budget.deadline, clock=budget.clock, identity=identity)


# ---------------------------------------------------------------------------------------------
# Copying


async def _write_tag(
    source: Location, destination: Location, item: CopyItem, body: bytes, media_type: str
) -> None:
    """Writes a cosign tag: the source's manifest, or where the destination's holds signatures
    of its own, the two merged (see `updated_tag_manifest`); then the source's manifest is kept
    by its digest too, which the next run's `HEAD` finds."""
    assert item.tag is not None
    current = await destination.registry.get_manifest(destination.repository, item.tag)
    update: Optional[Tuple[bytes, Optional[bytes]]] = (body, None)
    if current is not None:
        config = manifest_parts(current[0], f"{item.tag} at {destination}").config
        config_body = (
            await destination.registry.read_blob(
                destination.repository, config.digest, MAX_SIGNATURE_DOCUMENT
            )
            if config is not None and config.size <= MAX_SIGNATURE_DOCUMENT
            else None
        )
        update = updated_tag_manifest(current[0], config_body, body)
    if update is None or update[0] != body:
        await destination.registry.put_manifest(destination.repository, item.digest, body, media_type)
    if update is None:
        return
    manifest, new_config = update
    if new_config is not None:

        async def whole() -> AsyncIterator[bytes]:
            yield new_config

        await destination.registry.put_blob(
            destination.repository, digest_of(new_config), len(new_config), whole
        )
    await destination.registry.put_manifest(destination.repository, item.tag, manifest, media_type)


async def _write_listing(destination: Location, subject: str, listing: Listing, lists_itself: bool) -> None:
    """Makes the destination list the source's referrers: a registry with the referrers API does
    by itself; on one without, the fallback tag gets the entries it lacks. Either way the
    source's listing is kept under its digest, which the next run's `HEAD` finds."""
    if not lists_itself:
        lists_itself = await destination.registry.referrers(destination.repository, subject) is not None
    if not lists_itself:
        tag = digest_tag(subject)
        current = await destination.registry.get_manifest(destination.repository, tag)
        if current is None:
            # The source's own bytes: the tag then serves the source's listing digest.
            await destination.registry.put_manifest(destination.repository, tag, listing.raw, OCI_INDEX)
            return
        merged = merged_listing(current[0], index_entries(listing.raw))
        if merged is not None:
            await destination.registry.put_manifest(destination.repository, tag, merged, OCI_INDEX)
    await destination.registry.put_manifest(destination.repository, listing.digest, listing.raw, OCI_INDEX)


class _Tally:
    """A destination registry that counts what is written to it, for the message of a copy
    that stops midway: which manifests, and how many blobs of how many bytes."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.name = registry.name
        self.manifests: List[str] = []
        self.blobs = 0
        self.blob_bytes = 0

    def summary(self) -> str:
        return f"{len(self.manifests)} manifests, {self.blobs} blobs ({self.blob_bytes} bytes)"

    async def head_manifest(self, repository: str, reference: str) -> Optional[Served]:
        return await self.registry.head_manifest(repository, reference)

    async def get_manifest(self, repository: str, reference: str) -> Optional[Tuple[bytes, str]]:
        return await self.registry.get_manifest(repository, reference)

    async def digest_tags(self, repository: str) -> Optional[FrozenSet[str]]:
        return await self.registry.digest_tags(repository)

    async def referrers(self, repository: str, digest: str) -> Optional[bytes]:
        return await self.registry.referrers(repository, digest)

    async def read_blob(self, repository: str, digest: str, limit: int) -> bytes:
        return await self.registry.read_blob(repository, digest, limit)

    def blob_chunks(self, repository: str, digest: str, size: int) -> AsyncIterator[bytes]:
        return self.registry.blob_chunks(repository, digest, size)

    async def has_blob(self, repository: str, digest: str) -> bool:
        return await self.registry.has_blob(repository, digest)

    async def mount_blob(self, repository: str, digest: str, source_repository: str) -> bool:
        mounted = await self.registry.mount_blob(repository, digest, source_repository)
        self.blobs += mounted
        return mounted

    async def put_blob(
        self, repository: str, digest: str, size: int, chunks: Callable[[], AsyncIterable[bytes]]
    ) -> None:
        await self.registry.put_blob(repository, digest, size, chunks)
        self.blobs += 1
        self.blob_bytes += size

    async def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> bool:
        lists_itself = await self.registry.put_manifest(repository, reference, body, media_type)
        self.manifests.append(reference)
        return lists_itself


def _stopped(error: Exception, destination: Location, written: _Tally, copied: Sequence[CopyItem], total: int) -> Exception:
    """`error`, its message saying what was written at `destination` before it."""
    what = f"; written at {destination} before it stopped: {written.summary()}, {len(copied)} of {total} referrers whole"
    if isinstance(error, RegistryError):
        return RegistryError(error.outcome, error.message + what)
    return type(error)(f"{error}{what}")


async def copy(
    source: Location,
    destination: Location,
    subject: str,
    plan: Plan,
    keys: Sequence[PublicKey] = (),
    *,
    image: Optional[Callable[[], Awaitable[None]]] = None,
    deadline: Optional[float] = None,
    signed: Optional[str] = None,
    identity: Optional[str] = None,
) -> CopyResult:
    """The gate first (with `keys`), then `image` (what of the image itself goes before its
    referrers, when the image is copied too), then every item of `plan`, then its listings.
    Every manifest of the referrers is checked as it is read (`CopyBudget`: its subject, and
    the bounds of manifests, bytes and time, `deadline` a `time.monotonic()` time) before
    anything of it is written; the listing before anything at all is."""
    budget = CopyBudget(subject, str(source), deadline=deadline, children=plan.children)
    listings = ([(subject, plan.listing)] if plan.listing is not None else []) + list(plan.child_listings)
    for listed_of, to_write in listings:
        if digest_of(to_write.raw) != to_write.digest:
            raise ReferrersError(f"the listing of {listed_of}'s referrers is not the bytes of {to_write.digest}")
        if listed_of != subject and listed_of not in plan.children:
            raise ReferrersError(f"the listing {to_write.digest} is of {listed_of}, not of a manifest of {subject}")
        listing_entries(to_write.raw, listed_of, f"the referrers index {to_write.digest} of {source}")
    verified_by = None
    if keys:
        # A filtered index (`signed`: the source's index) has no signature of its own: the
        # source's index names every manifest it keeps.
        signed = signed or subject
        listing = plan.listing if signed == subject else None
        if listing is None:
            digest, listing, _ = await _source_listing(source, signed)
            if listing is None and digest is not None:
                listing = await _read_listing(source, digest, signed)
        verdict = await check_signature(source, signed, keys, listing, budget, identity)
        if not verdict.verified:
            names = ", ".join(key.name for key in keys)
            return CopyResult(
                "unsigned",
                f"no cosign signature of {signed} at {source} verifies against {names}: "
                f"{verdict.reason}",
            )
        verified_by = verdict.key
    if image is not None:
        await image()
    written = _Tally(destination.registry)
    target = Location(written, destination.repository)
    if source.registry is destination.registry:  # blobs are mounted within a registry
        source = Location(written, source.repository)
    copied: List[CopyItem] = []
    lists_itself = False
    try:
        for item in plan.items:
            budget.check_time(f"{short(item.digest)} was read")
            # A cosign tag's manifest is written under the tag (which stores it by digest too).
            body, media_type, listed = await copy_manifest(
                source, target, item.digest, write=item.tag is None, accept=budget.accept
            )
            lists_itself = lists_itself or listed
            if item.tag is not None:
                await _write_tag(source, target, item, body, media_type)
            copied.append(item)
        for listed_of, to_write in listings:
            budget.check_time("the listing was written")
            await _write_listing(target, listed_of, to_write, lists_itself)
    except (RegistryError, ReferrersError) as e:
        if not written.manifests and not written.blobs:
            raise
        raise _stopped(e, destination, written, copied, len(plan.items)) from e
    return CopyResult("ok", copied=tuple(copied), verified_by=verified_by)
