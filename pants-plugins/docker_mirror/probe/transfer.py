"""Copying a manifest graph (an index, its manifests, their config and layer blobs) from one
`Location` to another: the one implementation, for images and their referrers alike.

Every manifest of the graph is read (and handed to `accept`) before anything of it is written;
then blobs go first (several at once), each manifest after what it needs, the root last. What
the destination has is skipped (`HEAD`), so a copy cut short resumes where it stopped."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Awaitable, Callable, Dict, Iterable, List, Optional, Tuple, TypeVar

from docker_mirror.oci.manifests import ManifestError, narrowed_index
from docker_mirror.oci.media_types import DOCKER_MANIFEST_SCHEMA1
from docker_mirror.probe.referrers import MAX_DEPTH, Descriptor, ManifestParts, ReferrersError, manifest_parts
from docker_mirror.probe.registry import RegistryError

if TYPE_CHECKING:  # mirror_referrers imports this module
    from docker_mirror.probe.mirror_referrers import Location

# Blobs of one graph copied at once (skopeo copies 6 layers of an image at a time), and the
# manifests of one index level read or written at once.
MAX_CONCURRENT_BLOBS = 6
MAX_CONCURRENT_CHILDREN = 4

# Schema 1 (signed or not): refused, it has no digest that survives a copy.
SCHEMA1_MEDIA_TYPES = (DOCKER_MANIFEST_SCHEMA1, "application/vnd.docker.distribution.manifest.v1+prettyjws")

# Called with (digest, body) for every manifest read, before anything of it or its children is
# written; it may raise `ReferrersError` or `RegistryError` to stop the copy.
Accept = Callable[[str, bytes], None]

T = TypeVar("T")


def is_foreign(blob: Descriptor) -> bool:
    """A layer that `skopeo copy --preserve-digests` leaves where its `urls` say: a registry
    destination accepts foreign layer URLs, so a layer that has any is not copied, whatever its
    media type (containers/image copy/single.go, `AcceptsForeignLayerURLs`)."""
    urls = blob.fields.get("urls")
    return isinstance(urls, list) and len(urls) > 0


def _is_schema1(body: bytes, media_type: str) -> bool:
    if media_type in SCHEMA1_MEDIA_TYPES:
        return True
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return False
    return isinstance(document, dict) and document.get("schemaVersion") == 1


async def gather_all(awaitables: Iterable[Awaitable[T]]) -> List[T]:
    """Every result; at the first failure the others are cancelled (and waited for) before it
    is raised, so nothing of a failed copy goes on writing behind it."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


@dataclass
class Node:
    """A manifest read from the source: `present` if the destination has it already (then its
    children were not read)."""

    digest: str
    body: bytes
    media_type: str
    present: bool
    parts: Optional[ManifestParts] = None
    children: List["Node"] = field(default_factory=list)


class Transfer:
    """Copies manifest graphs from `source` to `destination`; each blob at most once per
    `Transfer`, however many manifests of it name it.
    `accept(digest, body)` sees every manifest read, before anything of it or its children is written, and may raise `ReferrersError` or `RegistryError` to stop the copy."""

    def __init__(
        self, source: Location, destination: Location, *, accept: Optional[Accept] = None,
        max_blobs: int = MAX_CONCURRENT_BLOBS, max_children: int = MAX_CONCURRENT_CHILDREN,
    ) -> None:
        self.source = source
        self.destination = destination
        self.accept = accept
        # What was done with each blob: "present", "mounted", "uploaded", "foreign".
        self.counts: "Counter[str]" = Counter()
        self._blob_slots = asyncio.Semaphore(max_blobs)
        # One bound per index level, so a parent holding a slot never waits on its children's.
        self._child_slots = [asyncio.Semaphore(max_children) for _ in range(MAX_DEPTH + 2)]
        self._blobs: Dict[str, "asyncio.Future[None]"] = {}

    async def read(self, digest: str, depth: int = 0) -> Node:
        """The graph under `digest`, as far as the destination lacks it, every manifest checked
        against its digest (by `get_manifest`) and by `accept`."""
        source, destination = self.source, self.destination
        got = await source.registry.get_manifest(source.repository, digest)
        if got is None:
            raise RegistryError("error", f"{source} no longer serves {digest}")
        body, media_type = got
        if _is_schema1(body, media_type):
            raise RegistryError(
                "error",
                f"{source}@{digest} is a Docker schema 1 manifest, which the mirror does not copy "
                f"(its digest does not survive a copy); push it again with a current Docker or buildx",
            )
        if self.accept is not None:
            self.accept(digest, body)
        if await destination.registry.head_manifest(destination.repository, digest):
            return Node(digest, body, media_type, present=True)
        parts = manifest_parts(body, f"{digest} at {source}")
        if parts.manifests and depth >= MAX_DEPTH:
            raise ReferrersError(f"{digest} at {source} nests indexes deeper than {MAX_DEPTH}")
        slots = self._child_slots[depth]

        async def child(descriptor: Descriptor) -> Node:
            async with slots:
                return await self.read(descriptor.digest, depth + 1)

        children = await gather_all(child(d) for d in parts.manifests)
        return Node(digest, body, media_type, False, parts, children)

    async def read_narrowed(self, index_digest: str, platforms: Tuple[str, ...], digest: str) -> Node:
        """The filtered index `digest`: the source's index `index_digest` with only `platforms`
        (`narrowed_index`), made again from the source's bytes, and the graphs of the manifests
        it keeps; a `RegistryError` unless it is still the bytes of `digest`."""
        source = self.source
        got = await source.registry.get_manifest(source.repository, index_digest)
        if got is None:
            raise RegistryError("error", f"{source} no longer serves {index_digest}")
        try:
            narrowed = narrowed_index(got[0], platforms)
        except ManifestError as e:
            raise RegistryError("error", f"{source}@{index_digest}: {e}") from None
        if narrowed.digest != digest:
            raise RegistryError(
                "error",
                f"{source}@{index_digest} with only {', '.join(platforms)} is {narrowed.digest}, "
                f"not the {digest} it was when it was read",
            )
        body, media_type = narrowed.body, got[1]
        if self.accept is not None:
            self.accept(digest, body)
        if await self.destination.registry.head_manifest(self.destination.repository, digest):
            return Node(digest, body, media_type, present=True)
        parts = manifest_parts(body, f"{digest} (of {index_digest} at {source})")
        slots = self._child_slots[0]

        async def child(descriptor: Descriptor) -> Node:
            async with slots:
                return await self.read(descriptor.digest, 1)

        children = await gather_all(child(d) for d in parts.manifests)
        return Node(digest, body, media_type, False, parts, children)

    async def write(self, node: Node, *, root: bool = True, depth: int = 0) -> bool:
        """Writes what `node` needs (its children's graphs and its blobs) and, with `root`, the
        manifest itself by digest; True when the destination says it lists the manifest's
        subject as a referrer by itself."""
        if node.present:
            return False
        assert node.parts is not None
        slots = self._child_slots[depth]

        async def child(child_node: Node) -> bool:
            async with slots:
                return await self.write(child_node, depth=depth + 1)

        await gather_all(child(c) for c in node.children)
        await gather_all(self.blob(b) for b in node.parts.blobs)
        if not root:
            return False
        destination = self.destination
        return await destination.registry.put_manifest(destination.repository, node.digest, node.body, node.media_type)

    def blob(self, blob: Descriptor) -> "asyncio.Future[None]":
        """Copies a blob once per `Transfer` (another manifest naming it waits for that copy)."""
        if blob.digest not in self._blobs:
            self._blobs[blob.digest] = asyncio.ensure_future(self._copy_blob(blob))
        return self._blobs[blob.digest]

    async def _copy_blob(self, blob: Descriptor) -> None:
        if is_foreign(blob):
            self.counts["foreign"] += 1
            return
        async with self._blob_slots:
            self.counts[await copy_blob(self.source, self.destination, blob)] += 1


async def copy_blob(source: Location, destination: Location, blob: Descriptor) -> str:
    """Skipped where the destination has it (`HEAD`), mounted from the source repository when
    both are on one registry, else streamed from the source (digest and size checked as it
    goes); what was done: "present", "mounted" or "uploaded"."""
    if await destination.registry.has_blob(destination.repository, blob.digest):
        return "present"
    if source.registry is destination.registry and await destination.registry.mount_blob(
        destination.repository, blob.digest, source.repository
    ):
        return "mounted"
    await destination.registry.put_blob(
        destination.repository, blob.digest, blob.size,
        lambda: source.registry.blob_chunks(source.repository, blob.digest, blob.size),
    )  # fmt: skip
    return "uploaded"


async def copy_manifest(
    source: Location, destination: Location, digest: str, *, write: bool = True,
    accept: Optional[Accept] = None, transfer: Optional[Transfer] = None,
) -> Tuple[bytes, str, bool]:
    """Copies what the manifest `digest` needs (its blobs; an index's children) and, with
    `write`, the manifest itself by digest, unless the destination has it; returns (its body, its
    media type, whether the destination lists its subject as a referrer by itself)."""
    transfer = transfer or Transfer(source, destination, accept=accept)
    node = await transfer.read(digest)
    lists_itself = await transfer.write(node, root=write)
    return node.body, node.media_type, lists_itself
